// Shelve, snapshots, rescue and rebuild through Debian's real `openstack` CLI, against one
// `nubo up` cloud with two fake compute hosts. The server commands run with
// OS_COMPUTE_API_VERSION at the maximum the compute version document announces (see
// test/cli/compute.test.ts for why). Tests run in order and build on each other.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { openstackCliSkipReason, openstackJson, openstackOk, startCloud, type Cloud, type Env } from '../support/cloud.js';

const skip = openstackCliSkipReason();
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('openstack CLI: shelve, snapshots, rescue, rebuild', { skip, concurrency: 1 }, () => {
  let cloud: Cloud;
  let admin: Env;
  let work: string;
  let imageId = '';
  let serverId = '';
  let snapshotId = '';
  const tag = `s${process.pid.toString(36)}`;
  const name = (what: string) => `cli-${tag}-${what}`;
  const json = <T = any>(env: Env, args: string[]) => openstackJson<T>(env, args);

  async function waitStatus(server: string, statuses: string[], timeoutMs = 30_000): Promise<any> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const shown = await json(admin, ['server', 'show', server]);
      if (statuses.includes(shown.status) && shown['OS-EXT-STS:task_state'] === null) return shown;
      if (Date.now() > deadline) assert.fail(`server ${server} is ${shown.status}, expected ${statuses.join('|')}:\n${JSON.stringify(shown, null, 2)}`);
      await sleep(250);
    }
  }

  before(async () => {
    if (skip) return;
    work = mkdtempSync(join(tmpdir(), 'nubo-shelve-cli-'));
    cloud = await startCloud({ env: { NUBO_COMPUTE__FAKE_HOSTS: '2', NUBO_COMPUTE__DRIVER: 'fake' } });
    const endpoints = await json<Array<{ URL: string }>>(cloud.adminEnv, ['endpoint', 'list', '--service', 'compute', '--interface', 'public']);
    const doc = await (await fetch(endpoints[0]!.URL.replace(/\/$/, ''), { headers: { accept: 'application/json' } })).json() as { version: { version: string } };
    admin = { ...cloud.adminEnv, OS_COMPUTE_API_VERSION: doc.version.version };
    const disk = join(work, 'disk.raw');
    writeFileSync(disk, Buffer.alloc(1 << 20));
    imageId = (await json(admin, ['image', 'create', '--file', disk, '--disk-format', 'raw', '--container-format', 'bare', '--public', name('img')])).id;
    const server = await json(admin, ['server', 'create', '--wait', '--image', imageId, '--flavor', 'm1.tiny', '--nic', 'none', name('vm')]);
    assert.equal(server.status, 'ACTIVE');
    serverId = server.id;
  });
  after(async () => {
    await cloud?.stop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('server shelve offloads the server (shelved_offload_time 0); server unshelve brings it back ACTIVE', async () => {
    await openstackOk(admin, ['server', 'shelve', '--wait', serverId]);
    const shelved = await waitStatus(serverId, ['SHELVED_OFFLOADED']);
    assert.equal(shelved['OS-EXT-SRV-ATTR:host'], null);
    const images = await json<Array<{ Name: string; Status: string }>>(admin, ['image', 'list']);
    assert.ok(images.some((i) => i.Name === `${name('vm')}-shelved` && i.Status === 'active'), JSON.stringify(images));
    await openstackOk(admin, ['server', 'unshelve', '--wait', serverId]);
    const back = await waitStatus(serverId, ['ACTIVE']);
    assert.ok(back['OS-EXT-SRV-ATTR:host']);
    const after = await json<Array<{ Name: string }>>(admin, ['image', 'list']);
    assert.ok(!after.some((i) => i.Name === `${name('vm')}-shelved`), 'the shelved image is deleted on unshelve');
  });

  it('server image create --wait makes an active snapshot; server create --image <snapshot> --wait boots from it', async () => {
    const image = await json(admin, ['server', 'image', 'create', '--wait', '--name', name('snap'), '--property', 'purpose=cli', serverId]);
    assert.equal(image.name, name('snap'));
    snapshotId = image.id;
    const shown = await json(admin, ['image', 'show', snapshotId]);
    assert.equal(shown.status, 'active');
    const properties = typeof shown.properties === 'string' ? shown.properties : JSON.stringify(shown.properties);
    assert.match(properties, /image_type.*snapshot/);
    assert.match(properties, new RegExp(`instance_uuid.*${serverId}`));
    assert.match(properties, /purpose.*cli/);
    const second = await json(admin, ['server', 'create', '--wait', '--image', snapshotId, '--flavor', 'm1.tiny', '--nic', 'none', name('from-snap')]);
    assert.equal(second.status, 'ACTIVE');
    await openstackOk(admin, ['server', 'delete', '--wait', second.id]);
  });

  it('server rescue / server unrescue', async () => {
    await openstackOk(admin, ['server', 'rescue', '--password', 'r3scue', serverId]);
    assert.equal((await waitStatus(serverId, ['RESCUE'])).status, 'RESCUE');
    await openstackOk(admin, ['server', 'unrescue', serverId]);
    assert.equal((await waitStatus(serverId, ['ACTIVE'])).status, 'ACTIVE');
    await openstackOk(admin, ['server', 'rescue', '--image', snapshotId, serverId]);
    await waitStatus(serverId, ['RESCUE']);
    await openstackOk(admin, ['server', 'unrescue', serverId]);
    await waitStatus(serverId, ['ACTIVE']);
  });

  it('server rebuild --image switches the image and keeps the server', async () => {
    // With --wait the CLI prints "Complete" before the table, so its output is not JSON: check with show.
    await openstackOk(admin, ['server', 'rebuild', '--wait', '--image', snapshotId, '--name', name('rebuilt'), '--property', 'rebuilt=yes', serverId]);
    const shown = await waitStatus(serverId, ['ACTIVE']);
    assert.equal(shown.name, name('rebuilt'));
    assert.match(JSON.stringify(shown.image), new RegExp(snapshotId));
    assert.match(JSON.stringify(shown.properties), /rebuilt/);
    await openstackOk(admin, ['server', 'delete', '--wait', serverId]);
  });
});
