// The browser console of a real QEMU instance (`[compute] driver = qemu`; a blank qcow2 is enough:
// QEMU runs and serves VNC while SeaBIOS finds nothing to boot): the URL the API answers opens
// Nubo's page, the websocket beside it gets the RFB handshake through the proxy, headless
// chromium (when installed) connects with noVNC, and the token dies with the server.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ADMIN_PASSWORD, ComputeCloud, sleep } from '../compute/harness.js';
import { send, startTestCloud } from '../support/in-process.js';
import { chromium, nextMessage, openConsole, openInChromium, refusedWith } from '../support/vnc.js';
import { missingTool } from '../support/tools.js';

const skip = missingTool('qemu-system-x86_64', 'qemu-img');

describe('QEMU driver: the VNC console through the proxy', { skip, timeout: 180_000 }, () => {
  let cc: ComputeCloud;
  let serverId = '';
  let consoleUrl = '';

  /** The websocket Nubo's page opens for a console URL: `websockify` + its path parameter, beside the page. */
  const socketOf = (url: string) => {
    const page = new URL(url);
    const socket = new URL(`websockify${page.searchParams.get('path')}`, page);
    socket.protocol = 'ws:';
    return socket.href;
  };

  before(async () => {
    const work = mkdtempSync(join(tmpdir(), 'nubo-qemu-console-'));
    const made = spawnSync('qemu-img', ['create', '-q', '-f', 'qcow2', join(work, 'blank.qcow2'), '64M'], { encoding: 'utf8' });
    assert.equal(made.status, 0, made.stderr);
    const blank = readFileSync(join(work, 'blank.qcow2'));
    rmSync(work, { recursive: true, force: true });
    cc = await startTestCloud('vm-console', { compute: { driver: 'qemu' }, qemu: { accelerator: 'tcg' }, scheduler: { max_attempts: '1' } }, async (cloud, dataDir) => {
      const c = new ComputeCloud(cloud, dataDir);
      const admin = await c.token('admin', ADMIN_PASSWORD, 'admin');
      Object.assign(c, { adminToken: admin.token, adminProject: admin.projectId, adminUser: admin.userId });
      return c;
    });
    const created = await cc.post('/image/v2/images', { name: 'blank', disk_format: 'qcow2', container_format: 'bare' });
    assert.equal(created.status, 201, created.text);
    const upload = await send(cc.url(`/image/v2/images/${created.body.id}/file`), 'PUT', { 'X-Auth-Token': cc.adminToken, 'Content-Type': 'application/octet-stream' }, new Uint8Array(blank));
    assert.equal(upload.status, 204, upload.text);
    const server = await cc.boot({ name: 'console-vm', imageRef: created.body.id });
    const active = await cc.waitServer(server.id, (s) => s.status !== 'BUILD', undefined, 90_000);
    assert.equal(active.status, 'ACTIVE', JSON.stringify(active.fault));
    serverId = server.id;
  });

  after(async () => {
    // QEMUs outlive the agent: end whatever a failed test left running before the cloud and its directory go.
    const driver = cc?.cloud.agents[0]?.driver;
    for (const uuid of (await driver?.listInstances()) ?? []) await driver!.destroy(uuid);
    await cc?.close();
  });

  it('the console URL opens Nubo\'s page, and its websocket speaks RFB with the instance\'s QEMU', async () => {
    const res = await cc.post(`/servers/${serverId}/remote-consoles`, { remote_console: { protocol: 'vnc', type: 'novnc' } }, { microversion: '2.6' });
    assert.equal(res.status, 200, res.text);
    consoleUrl = res.body.remote_console.url;
    assert.ok(consoleUrl.startsWith(`${cc.cloud.url}/vnc/vnc_lite.html?path=%3Ftoken%3D`), consoleUrl);
    const page = await fetch(consoleUrl);
    assert.equal(page.status, 200);
    assert.match(page.headers.get('content-type') ?? '', /^text\/html/);
    const { ws, first, protocol } = await openConsole(socketOf(consoleUrl), { origin: cc.cloud.url });
    try {
      assert.equal(protocol, 'binary');
      assert.equal(first.toString('latin1'), 'RFB 003.008\n');
      const security = nextMessage(ws);
      ws.send(Buffer.from('RFB 003.008\n', 'latin1'));
      const types = await security;
      assert.ok([...types.subarray(1, 1 + types[0]!)].includes(1), `security types ${[...types]}`);
    } finally {
      ws.close();
    }
  });

  it('headless chromium connects to the instance with noVNC', { skip: chromium ? false : 'chromium is not installed' }, async () => {
    const { status, canvas } = await openInChromium(chromium!, consoleUrl, (text) => text.startsWith('Connected'));
    assert.match(status, /^Connected to QEMU/);
    assert.match(canvas, /^[1-9]\d*x[1-9]\d*$/);
  });

  it('the token is refused once the server is deleted', async () => {
    assert.equal((await cc.delete(`/servers/${serverId}`)).status, 204);
    for (let i = 0; i < 300 && (await cc.get(`/servers/${serverId}`)).status !== 404; i++) await sleep(100);
    assert.equal((await refusedWith(openConsole(socketOf(consoleUrl)))).status, 401);
  });
});

