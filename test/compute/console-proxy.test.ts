// The browser console end to end: a real QEMU (no guest, paused) is the VNC server; the fake
// driver is told its port ([fake_driver] vnc_port_base), so the console URL comes from the
// API as for any server. Then the noVNC page and its module graph load over HTTP, and the
// websocket proxy at the page's websockify path (and Nova's root path) hands out the RFB
// handshake, refusing bad, expired, stale and cross-origin requests before the upgrade.
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import WebSocket from 'ws';
import { sleep, startComputeCloud, type ComputeCloud } from './harness.js';
import { chromium, closed, nextMessage, openConsole, openInChromium, qemuMissing, refusedWith, startVncServer, stopVncServer, type Opened } from '../support/vnc.js';


describe('VNC console proxy and noVNC page', { skip: qemuMissing }, () => {
  let cc: ComputeCloud;
  let vnc: { child: ChildProcess; port: number };
  let server: any;
  let consoleUrl: string;
  let token: string;
  let imageId: string;

  const wsBase = () => cc.cloud.url.replace(/^http/, 'ws');
  const newConsoleUrl = async (id: string) => {
    const res = await cc.post(`/servers/${id}/remote-consoles`, { remote_console: { protocol: 'vnc', type: 'novnc' } }, { token: cc.demoToken, microversion: '2.6' });
    assert.equal(res.status, 200, res.text);
    return res.body.remote_console.url as string;
  };
  const tokenOf = (url: string) => new URLSearchParams(new URL(url).searchParams.get('path')!.slice(1)).get('token')!;

  before(async () => {
    vnc = await startVncServer();
    cc = await startComputeCloud({ fake_driver: { spawn_delay_ms: '0', vnc_port_base: String(vnc.port) } }, 1);
    imageId = await cc.createImage({ visibility: 'public' });
    server = await cc.bootActive({ name: 'console', imageRef: imageId }, { token: cc.demoToken });
    consoleUrl = await newConsoleUrl(server.id);
    token = tokenOf(consoleUrl);
  });
  after(async () => {
    await cc?.close();
    await stopVncServer(vnc);
  });

  it('answers a URL to the noVNC page this cloud serves, with the token in noVNC\'s path parameter', () => {
    assert.match(consoleUrl, new RegExp(`^${cc.cloud.url.replace(/[.]/g, '\\.')}/vnc/vnc_lite\\.html\\?path=%3Ftoken%3D[0-9a-f-]{36}$`));
  });

  it('serves the page as HTML, and every module of its noVNC client resolves', async () => {
    const page = await fetch(consoleUrl);
    assert.equal(page.status, 200);
    assert.match(page.headers.get('content-type') ?? '', /^text\/html/);
    const html = await page.text();
    const entry = /from '(\.\/novnc\/core\/rfb\.js)'/.exec(html);
    assert.ok(entry, 'the page imports noVNC\'s RFB module');
    // Walk the static import graph from rfb.js, as a browser would load it.
    const seen = new Set<string>();
    const queue = [new URL(entry[1]!, consoleUrl).href];
    while (queue.length) {
      const url = queue.shift()!;
      if (seen.has(url)) continue;
      seen.add(url);
      const res = await fetch(url);
      assert.equal(res.status, 200, `${url} answered ${res.status}`);
      assert.match(res.headers.get('content-type') ?? '', /^text\/javascript/, url);
      const source = await res.text();
      for (const m of source.matchAll(/(?:^|\n)\s*(?:import|export)\s[^;'"]*?from\s*["']([^"']+)["']|(?:^|\n)\s*import\s*["']([^"']+)["']/g)) {
        queue.push(new URL(m[1] ?? m[2]!, url).href);
      }
    }
    assert.ok(seen.size > 20, `only ${seen.size} modules`);
    assert.ok([...seen].some((u) => u.includes('/vnc/novnc/vendor/pako/')), 'the vendored inflate modules are served too');
    // Nothing but the client's modules is served from the package.
    assert.equal((await fetch(`${cc.cloud.url}/vnc/novnc/package.json`)).status, 404);
    assert.equal((await fetch(`${cc.cloud.url}/vnc/novnc/core/..%2f..%2f..%2fpackage.json`)).status, 404);
  });

  it('pipes the websocket to the VNC server: the RFB greeting arrives, and the client\'s answer reaches QEMU', async () => {
    const { ws, first, protocol } = await openConsole(`${wsBase()}/vnc/websockify?token=${token}`);
    try {
      assert.equal(protocol, 'binary');
      assert.equal(first.toString('latin1'), 'RFB 003.008\n');
      // Our version answer goes through; QEMU (no password) then offers its security types, None (1) among them.
      const security = nextMessage(ws);
      ws.send(Buffer.from('RFB 003.008\n', 'latin1'));
      const types = await security;
      assert.ok(types[0]! >= 1, `security type count ${types[0]}`);
      assert.ok([...types.subarray(1, 1 + types[0]!)].includes(1), `security types ${[...types]}`);
    } finally {
      ws.close();
    }
  });

  it('as Nova, the token stays good until it expires: Nova\'s root path and a client without subprotocols work too', async () => {
    const { ws, first, protocol } = await openConsole(`${wsBase()}/?token=${token}`, { protocols: [] });
    assert.equal(protocol, '');
    assert.equal(first.toString('latin1'), 'RFB 003.008\n');
    ws.close();
    await closed(ws);
  });

  it('takes the token from noVNC\'s cookie when the query has none', async () => {
    const opened = await new Promise<Opened>((resolve, reject) => {
      const ws = new WebSocket(`${wsBase()}/vnc/websockify`, ['binary'], { headers: { Cookie: `other=1; token=${token}` } });
      ws.once('error', reject);
      ws.once('message', (data: Buffer) => resolve({ ws, first: Buffer.from(data), protocol: ws.protocol }));
    });
    assert.equal(opened.first.toString('latin1'), 'RFB 003.008\n');
    opened.ws.close();
  });

  it('refuses a wrong or missing token with 401 before the upgrade', async () => {
    const wrong = await refusedWith(openConsole(`${wsBase()}/vnc/websockify?token=00000000-0000-4000-8000-000000000000`));
    assert.equal(wrong.status, 401);
    assert.match(wrong.body, /invalid console token/);
    assert.equal((await refusedWith(openConsole(`${wsBase()}/vnc/websockify`))).status, 401);
  });

  it('refuses an expired token', async () => {
    const url = await newConsoleUrl(server.id);
    const expiring = tokenOf(url);
    const hash = createHash('sha256').update(expiring).digest('hex');
    await cc.cloud.database.db.updateTable('compute_console_tokens').set({ expires_at: new Date(Date.now() - 1000).toISOString() }).where('token_hash', '=', hash).execute();
    assert.equal((await refusedWith(openConsole(`${wsBase()}/vnc/websockify?token=${expiring}`))).status, 401);
  });

  it('refuses a token whose console is no longer where the host says (Nova\'s validate_console_port)', async () => {
    const stale = await cc.cloud.compute.services.consoles.issueToken(server.id, 'novnc', { host: '127.0.0.1', port: vnc.port + 1, internalAccessPath: null });
    const refused = await refusedWith(openConsole(`${wsBase()}/vnc/websockify?token=${stale.token}`));
    assert.equal(refused.status, 401);
    assert.match(refused.body, /moved/);
  });

  it('checks a browser\'s Origin against this host, as Nova\'s proxy does', async () => {
    const host = new URL(cc.cloud.url).host;
    const sameHost = await openConsole(`${wsBase()}/vnc/websockify?token=${token}`, { origin: `http://${host}` });
    assert.equal(sameHost.first.toString('latin1'), 'RFB 003.008\n');
    sameHost.ws.close();
    const foreign = await refusedWith(openConsole(`${wsBase()}/vnc/websockify?token=${token}`, { origin: 'http://evil.example' }));
    assert.equal(foreign.status, 403);
    const wrongScheme = await refusedWith(openConsole(`${wsBase()}/vnc/websockify?token=${token}`, { origin: `https://${host}` }));
    assert.equal(wrongScheme.status, 403);
  });

  it('answers 502 when the VNC server does not listen, and refuses the token once the server is deleted', async () => {
    // The second fake server's console is on the port after QEMU's, where nothing listens.
    const second = await cc.bootActive({ name: 'console-2', imageRef: imageId }, { token: cc.demoToken });
    const url = await newConsoleUrl(second.id);
    const down = await refusedWith(openConsole(`${wsBase()}/vnc/websockify?token=${tokenOf(url)}`));
    assert.equal(down.status, 502);
    assert.equal((await cc.delete(`/servers/${second.id}`, { token: cc.demoToken })).status, 204);
    for (let i = 0; i < 50 && (await cc.get(`/servers/${second.id}`, { token: cc.demoToken })).status !== 404; i++) await sleep(100);
    assert.equal((await refusedWith(openConsole(`${wsBase()}/vnc/websockify?token=${tokenOf(url)}`))).status, 401);
  });

  it('a real browser (headless chromium) opens the console URL and noVNC connects to the VNC server', { skip: chromium ? false : 'chromium is not installed' }, async () => {
    const url = await newConsoleUrl(server.id);
    const { status, canvas } = await openInChromium(chromium!, url, (text) => text === 'Connected to QEMU');
    assert.equal(status, 'Connected to QEMU');
    // The framebuffer is drawn: noVNC's canvas has QEMU's size.
    assert.match(canvas, /^[1-9]\d*x[1-9]\d*$/);
  });

  it('ends the browser\'s websocket when the VNC server goes away', async () => {
    const { ws } = await openConsole(`${wsBase()}/vnc/websockify?token=${token}`);
    const gone = closed(ws);
    // Closing the cloud side is not this test's subject; QEMU's quitting is.
    process.kill(vnc.child.pid!, 'SIGTERM');
    await gone;
  });
});
