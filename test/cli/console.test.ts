// `openstack console url show` through Debian's real CLI against a `nubo up` cloud: the URL it
// prints opens Nubo's noVNC page, and the websocket that page opens gets the RFB handshake of a
// real VNC server (QEMU with no guest, the fake host told its port with [fake_driver] vnc_port_base).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { openstackCliSkipReason, openstackJson, startCloud, type Cloud, type Env } from '../support/cloud.js';
import { openConsole, qemuMissing, startVncServer, stopVncServer } from '../support/vnc.js';

const skip = openstackCliSkipReason() ?? qemuMissing;

describe('openstack CLI: console url show opens a noVNC console', { skip, concurrency: 1 }, () => {
  let cloud: Cloud;
  let admin: Env;
  let work: string;
  let vnc: Awaited<ReturnType<typeof startVncServer>> | undefined;
  let serverId = '';

  before(async () => {
    if (skip) return;
    work = mkdtempSync(join(tmpdir(), 'nubo-console-cli-'));
    vnc = await startVncServer();
    cloud = await startCloud({ env: { NUBO_COMPUTE__FAKE_HOSTS: '1', NUBO_COMPUTE__DRIVER: 'fake', NUBO_FAKE_DRIVER__VNC_PORT_BASE: String(vnc.port) } });
    // As the other CLI suites: server commands at the maximum microversion the compute version document announces.
    const endpoints = await openstackJson<Array<{ URL: string }>>(cloud.adminEnv, ['endpoint', 'list', '--service', 'compute', '--interface', 'public']);
    const doc = await (await fetch(endpoints[0]!.URL.replace(/\/$/, ''), { headers: { accept: 'application/json' } })).json() as { version: { version: string } };
    admin = { ...cloud.adminEnv, OS_COMPUTE_API_VERSION: doc.version.version };
    const disk = join(work, 'disk.raw');
    writeFileSync(disk, Buffer.alloc(1 << 20));
    const image = await openstackJson(admin, ['image', 'create', '--file', disk, '--disk-format', 'raw', '--container-format', 'bare', '--public', 'console-cli-img']);
    const server = await openstackJson(admin, ['server', 'create', '--wait', '--image', image.id, '--flavor', 'm1.tiny', '--nic', 'none', 'console-cli-vm']);
    assert.equal(server.status, 'ACTIVE');
    serverId = server.id;
  });
  after(async () => {
    await cloud?.stop();
    await stopVncServer(vnc);
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('prints a URL to the page Nubo serves; the page loads and its websocket reaches the VNC server', async () => {
    const shown = await openstackJson(admin, ['console', 'url', 'show', '--novnc', serverId]);
    assert.equal(shown.type, 'novnc');
    const url = new URL(shown.url);
    const endpoint = new URL(admin.OS_AUTH_URL!);
    assert.equal(url.origin, endpoint.origin, 'the console is served by the cloud itself');
    assert.equal(url.pathname, '/vnc/vnc_lite.html');
    const page = await fetch(url);
    assert.equal(page.status, 200);
    assert.match(page.headers.get('content-type') ?? '', /^text\/html/);
    // What the page opens: `websockify` + the path parameter, beside the page.
    const socketUrl = new URL(`websockify${url.searchParams.get('path')}`, url);
    socketUrl.protocol = 'ws:';
    const { ws, first } = await openConsole(socketUrl.href, { origin: url.origin });
    assert.equal(first.toString('latin1'), 'RFB 003.008\n');
    ws.close();
  });
});
