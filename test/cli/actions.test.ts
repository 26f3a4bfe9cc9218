// Server actions with Debian's real `openstack` CLI: one `nubo up` cloud with a fake compute
// host and [DEFAULT] reclaim_instance_interval set (an hour, so nothing is reclaimed while the
// suite runs), so `server delete` soft-deletes and `server restore` brings the server back.
// Two sub-suites run side by side, each on its own server: power actions (stop/start,
// pause/unpause, suspend/resume, reboot), and the rest (lock, state, consoles, events, soft
// delete). As in compute.test.ts, OS_COMPUTE_API_VERSION is the maximum the compute version
// document announces (OSC 6.0 turns 2.latest into novaclient's own maximum).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { openstackCliSkipReason, openstackFails, openstackJson, openstackOk, startCloud, type Cloud, type Env } from '../support/cloud.js';

const skip = openstackCliSkipReason();
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('openstack CLI: server actions', { skip, concurrency: true }, () => {
  let cloud: Cloud;
  let admin: Env;
  let demo: Env;
  let work: string;
  let imageId = '';
  const tag = `a${process.pid.toString(36)}`;
  const name = (what: string) => `cli-${tag}-${what}`;
  const json = <T = any>(env: Env, args: string[]) => openstackJson<T>(env, args);
  const LOCKED = /is locked|HTTP 409/i;

  /** Polls `server show` until the status is one of `statuses`. */
  async function waitStatus(env: Env, server: string, statuses: string[], timeoutMs = 30_000): Promise<any> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const shown = await json(env, ['server', 'show', server]);
      if (statuses.includes(shown.status) && !shown['OS-EXT-STS:task_state']) return shown;
      if (Date.now() > deadline) assert.fail(`server ${server} is ${shown.status}, expected ${statuses.join('|')}:\n${JSON.stringify(shown, null, 2)}`);
      await sleep(200);
    }
  }
  async function createServer(env: Env, what: string): Promise<string> {
    const created = await json(env, ['server', 'create', '--flavor', 'm1.tiny', '--image', imageId, '--nic', 'none', '--wait', name(what)]);
    assert.equal(created.status, 'ACTIVE', JSON.stringify(created));
    return created.id;
  }

  before(async () => {
    if (skip) return;
    work = mkdtempSync(join(tmpdir(), 'nubo-actions-cli-'));
    cloud = await startCloud({ env: { NUBO_COMPUTE__FAKE_HOSTS: '1', NUBO_COMPUTE__DRIVER: 'fake', NUBO_DEFAULT__RECLAIM_INSTANCE_INTERVAL: '3600' } });
    const endpoints = await json<Array<{ URL: string }>>(cloud.adminEnv, ['endpoint', 'list', '--service', 'compute', '--interface', 'public']);
    const response = await fetch(endpoints[0]!.URL.replace(/\/$/, ''), { headers: { accept: 'application/json' } });
    const doc = (await response.json()) as { version: { version: string } };
    assert.match(doc.version.version, /^2\.\d+$/);
    admin = { ...cloud.adminEnv, OS_COMPUTE_API_VERSION: doc.version.version };
    demo = { ...cloud.demoEnv, OS_COMPUTE_API_VERSION: doc.version.version };
    const disk = join(work, 'disk.raw');
    writeFileSync(disk, Buffer.alloc(1 << 20));
    imageId = (await json(admin, ['image', 'create', '--file', disk, '--disk-format', 'raw', '--container-format', 'bare', '--public', name('img')])).id;
  });
  after(async () => {
    await cloud?.stop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  describe('power', { concurrency: 1 }, () => {
    let server = '';

    it('server stop/start, pause/unpause, suspend/resume', async () => {
      server = await createServer(demo, 'power');
      const steps: [string, string, number][] = [
        ['stop', 'SHUTOFF', 4], ['start', 'ACTIVE', 1], ['pause', 'PAUSED', 3], ['unpause', 'ACTIVE', 1], ['suspend', 'SUSPENDED', 7], ['resume', 'ACTIVE', 1],
      ];
      for (const [command, status, power] of steps) {
        await openstackOk(demo, ['server', command, server]);
        const shown = await waitStatus(demo, server, [status]);
        // OSC 6.0 prints the raw power_state number in JSON (its table shows Running, Shutdown, ...).
        assert.equal(shown['OS-EXT-STS:power_state'], power, command);
      }
    });

    it('server reboot --soft --wait and --hard --wait', async () => {
      for (const kind of ['--soft', '--hard']) {
        await openstackOk(demo, ['server', 'reboot', kind, '--wait', server]);
        const shown = await json(demo, ['server', 'show', server]);
        assert.equal(shown.status, 'ACTIVE', kind);
      }
    });

    it('server event list and show record the actions with their events', async () => {
      const events = await json<Array<{ 'Request ID': string; Action: string }>>(admin, ['server', 'event', 'list', server]);
      assert.deepEqual(events.map((e) => e.Action).reverse(), ['create', 'stop', 'start', 'pause', 'unpause', 'suspend', 'resume', 'reboot', 'reboot']);
      const stop = events.find((e) => e.Action === 'stop')!;
      const shown = await json(admin, ['server', 'event', 'show', server, stop['Request ID']]);
      assert.equal(shown.action, 'stop');
      assert.equal(shown.instance_uuid ?? shown.server_id, server);
      const names = (shown.events as any[]).map((e) => [e.event, e.result]);
      assert.deepEqual(names, [['compute_stop_instance', 'Success']]);
    });
  });

  describe('lock, state, consoles, soft delete', { concurrency: 1 }, () => {
    let server = '';

    it('server lock (admin) refuses the owner with 409 until server unlock', async () => {
      server = await createServer(demo, 'other');
      await openstackOk(admin, ['server', 'lock', '--reason', 'maintenance', server]);
      const shown = await json(demo, ['server', 'show', server]);
      assert.equal(shown.locked, true);
      await openstackFails(demo, ['server', 'stop', server], LOCKED);
      await openstackFails(demo, ['server', 'delete', server], LOCKED);
      await openstackOk(admin, ['server', 'unlock', server]);
      assert.equal((await json(demo, ['server', 'show', server])).locked, false);
    });

    it('server set --state error, then --state active (admin)', async () => {
      await openstackOk(admin, ['server', 'set', '--state', 'error', server]);
      assert.equal((await json(admin, ['server', 'show', server])).status, 'ERROR');
      await openstackFails(demo, ['server', 'set', '--state', 'active', server], /HTTP 403|Policy doesn't allow|not authorized/i);
      await openstackOk(admin, ['server', 'set', '--state', 'active', server]);
      assert.equal((await json(admin, ['server', 'show', server])).status, 'ACTIVE');
    });

    it('console log show (with --lines) and console url show (noVNC)', async () => {
      const all = await openstackOk(demo, ['console', 'log', 'show', server]);
      assert.match(all, /fake console of/);
      const tail = await openstackOk(demo, ['console', 'log', 'show', '--lines', '1', server]);
      assert.equal(tail.trim().split('\n').length, 1, tail);
      assert.doesNotMatch(tail, /fake console of/);
      const url = await json(demo, ['console', 'url', 'show', server]);
      assert.equal(url.type, 'novnc');
      assert.match(url.url, /^http:\/\/127\.0\.0\.1:\d+\/vnc\/vnc_lite\.html\?path=%3Ftoken%3D[0-9a-f-]{36}$/);
    });

    it('server delete soft-deletes (SOFT_DELETED), server restore brings it back, server delete --force deletes it', async () => {
      await openstackOk(demo, ['server', 'delete', server]);
      const soft = await waitStatus(demo, server, ['SOFT_DELETED']);
      assert.equal(soft['OS-EXT-STS:vm_state'], 'soft-delete');
      await openstackOk(demo, ['server', 'restore', server]);
      await waitStatus(demo, server, ['ACTIVE']);
      await openstackFails(demo, ['server', 'restore', server], /HTTP 409|while it is in vm_state active/i);
      await openstackOk(demo, ['server', 'delete', '--force', server]);
      for (let i = 0; ; i++) {
        const result = await openstackFails(demo, ['server', 'show', server], /.*/).catch(() => undefined);
        if (result && /No server with a name or ID|could not be found|HTTP 404/i.test(result.stderr)) break;
        assert.ok(i < 50, 'server delete --force did not delete the server');
        await sleep(200);
      }
    });
  });
});
