// Resize and cold migration with Debian's real `openstack` CLI (python-openstackclient 6.0):
// `server resize --flavor F --wait`, `server resize confirm|revert`, `server migrate --wait`
// (and `--host` at 2.56), `server migrate confirm` (deprecated there in favour of
// `server migration confirm`), and `server migration list`. One `nubo up` cloud, three fake hosts.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { openstackCliSkipReason, openstackJson, openstackOk, startCloud, type Cloud, type Env } from '../support/cloud.js';

const skip = openstackCliSkipReason();
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('openstack CLI: resize and cold migration', { skip }, () => {
  let cloud: Cloud;
  let admin: Env;
  let work: string;
  const json = <T = any>(env: Env, args: string[]) => openstackJson<T>(env, args, { timeoutMs: 90_000 });

  async function waitStatus(server: string, statuses: string[], timeoutMs = 30_000): Promise<any> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const shown = await json(admin, ['server', 'show', server]);
      if (statuses.includes(shown.status) && !shown['OS-EXT-STS:task_state']) return shown;
      if (Date.now() > deadline) assert.fail(`server ${server} is ${shown.status}, expected ${statuses.join('|')}`);
      await sleep(250);
    }
  }

  before(async () => {
    if (skip) return;
    work = mkdtempSync(join(tmpdir(), 'nubo-resize-cli-'));
    cloud = await startCloud({ env: { NUBO_COMPUTE__FAKE_HOSTS: '3', NUBO_COMPUTE__DRIVER: 'fake' } });
    const doc = await (await fetch(cloud.url.replace(/\/identity\/v3\/?$/, '/compute/v2.1'), { headers: { accept: 'application/json' } })).json() as any;
    admin = { ...cloud.adminEnv, OS_COMPUTE_API_VERSION: doc.version.version };
    const disk = join(work, 'disk.raw');
    writeFileSync(disk, Buffer.alloc(1 << 16));
    await json(admin, ['image', 'create', '--file', disk, '--disk-format', 'raw', '--container-format', 'bare', '--public', 'rz-img']);
    await json(admin, ['flavor', 'create', '--ram', '128', '--disk', '1', '--vcpus', '1', 'rz-small']);
    await json(admin, ['flavor', 'create', '--ram', '256', '--disk', '2', '--vcpus', '2', 'rz-big']);
    await json(admin, ['flavor', 'create', '--ram', '512', '--disk', '2', '--vcpus', '1', 'rz-wide']);
  });
  after(async () => {
    await cloud?.stop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('server resize --wait, resize confirm; resize again and resize revert', async () => {
    await json(admin, ['server', 'create', '--image', 'rz-img', '--flavor', 'rz-small', '--nic', 'none', '--wait', 'rz-1']);
    const before = await json(admin, ['server', 'show', 'rz-1']);
    await openstackOk(admin, ['server', 'resize', '--flavor', 'rz-big', '--wait', 'rz-1']);
    const resized = await waitStatus('rz-1', ['VERIFY_RESIZE']);
    assert.match(JSON.stringify(resized.flavor), /rz-big/);
    assert.notEqual(resized['OS-EXT-SRV-ATTR:host'], before['OS-EXT-SRV-ATTR:host']);
    await openstackOk(admin, ['server', 'resize', 'confirm', 'rz-1']);
    const confirmed = await waitStatus('rz-1', ['ACTIVE']);
    assert.match(JSON.stringify(confirmed.flavor), /rz-big/);

    await openstackOk(admin, ['server', 'resize', '--flavor', 'rz-wide', '--wait', 'rz-1']);
    assert.match(JSON.stringify((await waitStatus('rz-1', ['VERIFY_RESIZE'])).flavor), /rz-wide/);
    await openstackOk(admin, ['server', 'resize', 'revert', 'rz-1']);
    const reverted = await waitStatus('rz-1', ['ACTIVE']);
    assert.match(JSON.stringify(reverted.flavor), /rz-big/);
    assert.equal(reverted['OS-EXT-SRV-ATTR:host'], confirmed['OS-EXT-SRV-ATTR:host']);
  });

  it('server migrate --wait, server migrate confirm; migrate --host, server migration confirm; server migration list', async () => {
    await json(admin, ['server', 'create', '--image', 'rz-img', '--flavor', 'rz-small', '--nic', 'none', '--wait', 'rz-2']);
    const source = (await json(admin, ['server', 'show', 'rz-2']))['OS-EXT-SRV-ATTR:host'];
    await openstackOk(admin, ['server', 'migrate', '--wait', 'rz-2']);
    const moved = await waitStatus('rz-2', ['VERIFY_RESIZE']);
    assert.notEqual(moved['OS-EXT-SRV-ATTR:host'], source);
    await openstackOk(admin, ['server', 'migrate', 'confirm', 'rz-2']);
    const here = (await waitStatus('rz-2', ['ACTIVE']))['OS-EXT-SRV-ATTR:host'];

    const target = ['fake-host-1', 'fake-host-2', 'fake-host-3'].find((h) => h !== here)!;
    await openstackOk(admin, ['server', 'migrate', '--host', target, '--wait', 'rz-2']);
    assert.equal((await waitStatus('rz-2', ['VERIFY_RESIZE']))['OS-EXT-SRV-ATTR:host'], target);
    await openstackOk(admin, ['server', 'migration', 'confirm', 'rz-2']);
    await waitStatus('rz-2', ['ACTIVE']);

    const rows = await json<any[]>(admin, ['server', 'migration', 'list', '--server', 'rz-2']);
    assert.equal(rows.length, 2, JSON.stringify(rows));
    for (const row of rows) {
      assert.equal(row.Status, 'confirmed');
      assert.equal(row.Type, 'migration');
      assert.match(row.UUID, /^[0-9a-f-]{36}$/);
    }
    assert.equal(rows[0]['Dest Compute'], target);
    const all = await json<any[]>(admin, ['server', 'migration', 'list', '--type', 'resize']);
    assert.ok(all.length >= 2 && all.every((r) => r.Type === 'resize'), JSON.stringify(all));
  });
});
