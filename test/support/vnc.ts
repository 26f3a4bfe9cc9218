// A real VNC server for console tests (QEMU with no devices, stopped before its first
// instruction) and a websocket client that reads the first frame or the refusal.
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createServer, connect } from 'node:net';
import WebSocket from 'ws';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export const QEMU = 'qemu-system-x86_64';
export const qemuMissing = spawnSync(QEMU, ['--version']).status !== 0 ? `${QEMU} is not installed` : false;

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
