// Live migration and evacuation with Debian's real `openstack` CLI (python-openstackclient
// 6.0): one `nubo up` cloud with three fake hosts whose live migrations take 8 s, so a
// migration can be listed, shown and aborted while it runs. The tests run in order.
//   server migrate --live-migration --host H --wait   (--host needs 2.30+)
//   server migration list --server S                  (GET /os-migrations?instance_uuid=S)
//   server migration show S ID, server migration abort S ID   (2.24+)
//   compute service set --down H nova-compute, server evacuate S
// `server evacuate` can exit 1 after a successful evacuation (the client chokes on Nova's empty
// 200 body; see /work/shared/notes/cli-facts.md): its effect is checked, not its exit code.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { openstack, openstackCliSkipReason, openstackJson, openstackOk, startCloud, type Cloud, type Env } from '../support/cloud.js';

const skip = openstackCliSkipReason();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('live migration and evacuate with the openstack CLI', { skip }, () => {
  let cloud: Cloud;
  let admin: Env;
  let work: string;
  let serverId = '';
  const hostOf = async (id: string) => (await openstackJson(admin, ['server', 'show', id]))['OS-EXT-SRV-ATTR:host'] as string;
  const hosts = ['fake-host-1', 'fake-host-2', 'fake-host-3'];

  before(async () => {
    if (skip) return;
    work = mkdtempSync(join(tmpdir(), 'nubo-live-cli-'));
    cloud = await startCloud({ env: { NUBO_COMPUTE__FAKE_HOSTS: '3', NUBO_COMPUTE__DRIVER: 'fake', NUBO_FAKE_DRIVER__LIVE_MIGRATION_DURATION_MS: '8000' } });
    const doc = (await (await fetch(`${cloud.url.replace(/\/identity.*$/, '')}/compute/v2.1`, { headers: { accept: 'application/json' } })).json()) as any;
    admin = { ...cloud.adminEnv, OS_COMPUTE_API_VERSION: doc.version.version };
    const disk = join(work, 'disk.raw');
    writeFileSync(disk, Buffer.alloc(1 << 20));
    await openstackOk(admin, ['image', 'create', '--public', '--disk-format', 'raw', '--container-format', 'bare', '--file', disk, 'lm-image']);
    const server = await openstackJson(admin, ['server', 'create', '--image', 'lm-image', '--flavor', 'm1.tiny', '--nic', 'none', '--wait', 'lm-cli']);
    assert.equal(server.status, 'ACTIVE');
    serverId = server.id;
  });
  after(async () => {
    await cloud?.stop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('server migrate --live-migration --host H --wait moves the server to H', async () => {
    const source = await hostOf(serverId);
    const dest = hosts.find((h) => h !== source)!;
    const out = await openstackOk(admin, ['server', 'migrate', '--live-migration', '--host', dest, '--wait', serverId]);
    assert.match(out, /Complete/);
    const shown = await openstackJson(admin, ['server', 'show', serverId]);
    assert.equal(shown.status, 'ACTIVE');
    assert.equal(shown['OS-EXT-SRV-ATTR:host'], dest);
    const list = await openstackJson<any[]>(admin, ['server', 'migration', 'list', '--server', serverId]);
    assert.equal(list.length, 1, JSON.stringify(list));
    assert.equal(list[0].Status, 'completed');
    assert.equal(list[0]['Source Compute'], source);
    assert.equal(list[0]['Dest Compute'], dest);
    assert.equal(list[0].Type, 'live-migration');
  });

  it('server migration list/show see a running migration, server migration abort stops it', async () => {
    const source = await hostOf(serverId);
    await openstackOk(admin, ['server', 'migrate', '--live-migration', serverId]);
    let running: any;
    for (let i = 0; i < 100 && !running; i++) {
      const list = await openstackJson<any[]>(admin, ['server', 'migration', 'list', '--server', serverId, '--status', 'running']);
      running = list[0];
      if (!running) await sleep(50);
    }
    assert.ok(running, 'a running migration is listed');
    const shown = await openstackJson(admin, ['server', 'migration', 'show', serverId, String(running.Id)]);
    assert.equal(shown.Status, 'running');
    assert.equal(shown['Source Compute'], source);
    assert.ok(Number(shown['Memory Total Bytes']) > 0, JSON.stringify(shown));
    await openstackOk(admin, ['server', 'migration', 'abort', serverId, String(running.Id)]);
    for (let i = 0; i < 100; i++) {
      const server = await openstackJson(admin, ['server', 'show', serverId]);
      if (server['OS-EXT-STS:task_state'] === null) break;
      await sleep(50);
    }
    const server = await openstackJson(admin, ['server', 'show', serverId]);
    assert.equal(server.status, 'ACTIVE');
    assert.equal(server['OS-EXT-SRV-ATTR:host'], source, 'still where it was');
    const [last] = await openstackJson<any[]>(admin, ['server', 'migration', 'list', '--server', serverId]);
    assert.equal(last.Status, 'cancelled');
  });

  it('server evacuate after compute service set --down rebuilds the server elsewhere', async () => {
    const source = await hostOf(serverId);
    const refused = await openstack(admin, ['server', 'evacuate', serverId]);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /is still in use/);
    await openstackOk(admin, ['compute', 'service', 'set', '--down', source, 'nova-compute']);
    try {
      await openstack(admin, ['server', 'evacuate', serverId]); // may exit 1 after success (cli-facts.md)
      let server: any;
      for (let i = 0; i < 200; i++) {
        server = await openstackJson(admin, ['server', 'show', serverId]);
        if (server['OS-EXT-STS:task_state'] === null && server['OS-EXT-SRV-ATTR:host'] !== source) break;
        await sleep(50);
      }
      assert.equal(server.status, 'ACTIVE');
      assert.notEqual(server['OS-EXT-SRV-ATTR:host'], source);
      const list = await openstackJson<any[]>(admin, ['server', 'migration', 'list', '--server', serverId, '--type', 'evacuation']);
      assert.equal(list[0].Status, 'done');
    } finally {
      await openstackOk(admin, ['compute', 'service', 'set', '--up', source, 'nova-compute']);
    }
  });
});
