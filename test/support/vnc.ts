// A real VNC server for console tests (QEMU with no devices, stopped before its first
// instruction) and a websocket client that reads the first frame or the refusal.
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { missingTool } from './tools.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export const QEMU = 'qemu-system-x86_64';
export const qemuMissing = missingTool(QEMU);

/** Whether nothing listens on 127.0.0.1:port now. */
const portFree = (port: number) => new Promise<boolean>((resolve) => {
  const server = createServer();
  server.once('error', () => resolve(false));
  server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
});

const accepts = (port: number) => new Promise<boolean>((resolve) => {
  const socket = connect({ host: '127.0.0.1', port });
  socket.once('connect', () => { socket.destroy(); resolve(true); });
  socket.once('error', () => resolve(false));
});

/** QEMU with no devices, stopped before the first instruction, serving VNC on a free display (two free ports: ours and the next). */
export async function startVncServer(): Promise<{ child: ChildProcess; port: number }> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const display = 40 + Math.floor(Math.random() * 50);
    const port = 5900 + display;
    if (!(await portFree(port)) || !(await portFree(port + 1))) continue;
    const child = spawn(QEMU, ['-accel', 'tcg', '-nodefaults', '-S', '-display', 'none', '-vnc', `127.0.0.1:${display}`], { stdio: ['ignore', 'ignore', 'pipe'] });
    let exited = false;
    child.once('exit', () => { exited = true; });
    for (let i = 0; i < 100 && !exited; i++) {
      if (await accepts(port)) return { child, port };
      await sleep(100);
    }
    child.kill('SIGKILL');
  }
  throw new Error('could not start QEMU on a free VNC display');
}

export interface Opened { ws: WebSocket; first: Buffer; protocol: string }

/** Opens a websocket and waits for its first message; rejects with the HTTP status when the upgrade is refused. */
export function openConsole(url: string, options: { protocols?: string[]; origin?: string } = {}): Promise<Opened> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, options.protocols ?? ['binary'], { headers: options.origin ? { Origin: options.origin } : {} });
    ws.once('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (c: Buffer) => { body += c.toString(); });
      res.on('end', () => reject(Object.assign(new Error(`HTTP ${res.statusCode}: ${body}`), { status: res.statusCode, body })));
    });
    ws.once('error', reject);
    ws.once('message', (data: Buffer) => resolve({ ws, first: Buffer.from(data), protocol: ws.protocol }));
  });
}

export const nextMessage = (ws: WebSocket) => new Promise<Buffer>((resolve) => ws.once('message', (data: Buffer) => resolve(Buffer.from(data))));
export const closed = (ws: WebSocket) => new Promise<void>((resolve) => (ws.readyState === ws.CLOSED ? resolve() : ws.once('close', () => resolve())));

export async function refusedWith(promise: Promise<Opened>): Promise<{ status: number; body: string }> {
  try {
    const opened = await promise;
    opened.ws.close();
  } catch (err) {
    return err as { status: number; body: string };
  }
  assert.fail('the websocket was opened');
}


/** Stops the VNC server by its PID and waits for it to exit. */
export async function stopVncServer(vnc: { child: ChildProcess } | undefined): Promise<void> {
  const child = vnc?.child;
  if (!child?.pid || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  process.kill(child.pid, 'SIGTERM');
  await exited;
}

/** The chromium binary when one is installed (browser tests are skipped without it). */
export const chromium = ['chromium', 'chromium-browser'].find((name) => spawnSync(name, ['--version'], { stdio: 'ignore' }).status === 0);

/**
 * Opens `url` in headless chromium and reads Nubo's console page over the DevTools protocol until its status line
 * satisfies `done` (or 20 s pass); returns that line and noVNC's canvas size ("WxH", '' when none).
 */
export async function openInChromium(browser: string, url: string, done: (status: string) => boolean): Promise<{ status: string; canvas: string }> {
  const profile = mkdtempSync(join(tmpdir(), 'nubo-console-chromium-'));
  const child = spawn(browser, ['--headless=new', '--no-sandbox', '--disable-gpu', '--no-first-run', `--user-data-dir=${profile}`, '--remote-debugging-port=0', url], { stdio: ['ignore', 'ignore', 'pipe'] });
  try {
    const devtools = await new Promise<string>((resolve, reject) => {
      let log = '';
      child.stderr!.on('data', (chunk: Buffer) => {
        log += chunk.toString();
        const m = /DevTools listening on (ws:\/\/\S+)/.exec(log);
        if (m) resolve(m[1]!);
      });
      child.once('exit', () => reject(new Error(`chromium exited: ${log.slice(-1000)}`)));
    });
    const base = new URL(devtools);
    let pageSocket: string | undefined;
    for (let i = 0; i < 100 && !pageSocket; i++) {
      const targets = await (await fetch(`http://${base.host}/json/list`)).json() as { type: string; url: string; webSocketDebuggerUrl: string }[];
      pageSocket = targets.find((t) => t.type === 'page' && t.url.includes('/vnc/vnc_lite.html'))?.webSocketDebuggerUrl;
      if (!pageSocket) await sleep(100);
    }
    if (!pageSocket) throw new Error('chromium does not show the console page');
    const cdp = new WebSocket(pageSocket);
    await new Promise((resolve, reject) => { cdp.once('open', resolve); cdp.once('error', reject); });
    let id = 0;
    const evaluate = (expression: string) => new Promise<any>((resolve) => {
      const callId = ++id;
      const onMessage = (data: Buffer) => {
        const message = JSON.parse(data.toString());
        if (message.id !== callId) return;
        cdp.off('message', onMessage);
        resolve(message.result?.result?.value);
      };
      cdp.on('message', onMessage);
      cdp.send(JSON.stringify({ id: callId, method: 'Runtime.evaluate', params: { expression, returnByValue: true } }));
    });
    let status = '';
    for (let i = 0; i < 200; i++) {
      // Before the page has loaded there is no status line yet.
      status = (await evaluate("document.getElementById('status')?.textContent ?? ''")) ?? '';
      if (done(status)) break;
      await sleep(100);
    }
    const canvas = await evaluate("(() => { const c = document.querySelector('#screen canvas'); return c ? c.width + 'x' + c.height : ''; })()");
    cdp.close();
    return { status, canvas: canvas ?? '' };
  } finally {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    }
    // Chromium's helper processes may still write to the profile for a moment after the browser exits.
    for (let attempt = 0; ; attempt++) {
      try {
        rmSync(profile, { recursive: true, force: true });
        break;
      } catch (err) {
        if (attempt >= 20) throw err;
        await sleep(250);
      }
    }
  }
}
