// Live migration between fake hosts: scheduler-chosen and given destinations, progress while
// the transfer runs, abort, force-complete, failure rollback, refusals, the allocations at
// each point and the instance action's events.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { FakeDriver } from '../../src/compute/virt/fake.js';
import { assertError, sleep, startComputeCloud, type ComputeCloud } from './harness.js';

describe('live migration', () => {
  let cc: ComputeCloud;
  let imageId: string;
  const V = '2.79';

  before(async () => {
    cc = await startComputeCloud({ DEFAULT: { report_interval: '0.5', service_down_time: '2' }, conductor: { live_migration_poll_interval_ms: '20' } }, 3);
    imageId = await cc.createImage({ visibility: 'public' });
    await cc.unlimitedQuota();
  });
  after(async () => cc?.close());

  const driverOf = (host: string) => cc.cloud.agents.find((a) => a.host === host)!.driver as FakeDriver;
  const setDuration = (ms: number) => { for (const a of cc.cloud.agents) (a.driver as FakeDriver).settings.liveMigrationDurationMs = ms; };
  const live = (id: string, body: Record<string, unknown>, options: { token?: string; microversion?: string } = {}) =>
    cc.post(`/servers/${id}/action`, { 'os-migrateLive': body }, { microversion: V, ...options });
  const settled = (id: string) => cc.waitServer(id, (s) => s['OS-EXT-STS:task_state'] === null);
  const booted = async (name: string) => {
    return cc.bootActive({ name, imageRef: imageId });
  };
  const providerOf = async (host: string) => {
    const res = await cc.get(`/placement/resource_providers?name=${host}`);
    return res.body.resource_providers[0].uuid as string;
  };
  const allocationHosts = async (consumer: string) => Object.keys(await cc.allocations(consumer)).sort();
  const otherHost = (host: string) => cc.cloud.agents.map((a) => a.host).find((h) => h !== host)!;
  /** Polls GET /servers/{id}/migrations until a migration matches. */
  const waitMigration = async (id: string, done: (m: any) => boolean, timeoutMs = 10_000) => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const res = await cc.get(`/servers/${id}/migrations`, { microversion: V });
      assert.equal(res.status, 200, res.text);
      const found = res.body.migrations.find(done);
      if (found) return found;
      if (Date.now() > deadline) assert.fail(`no matching migration: ${res.text}`);
      await sleep(20);
    }
  };
  const events = async (id: string, action: string) => {
    const actions = await cc.get(`/servers/${id}/os-instance-actions`);
    const found = actions.body.instanceActions.find((a: any) => a.action === action);
    assert.ok(found, `no ${action} action: ${actions.text}`);
    const detail = await cc.get(`/servers/${id}/os-instance-actions/${found.request_id}`, { microversion: '2.51' });
    return { message: found.message, events: detail.body.instanceAction.events.map((e: any) => [e.event, e.result]).sort() };
  };

  it('moves a running server to the host the scheduler picks, then drops the source allocations', async () => {
    setDuration(0);
    const server = await booted('lm-scheduled');
    const source = server['OS-EXT-SRV-ATTR:host'];
    const res = await live(server.id, { host: null, block_migration: 'auto' });
    assert.equal(res.status, 202, res.text);
    assert.equal(res.text, '');
    const moved = await settled(server.id);
    assert.equal(moved.status, 'ACTIVE');
    assert.notEqual(moved['OS-EXT-SRV-ATTR:host'], source);
    const dest = moved['OS-EXT-SRV-ATTR:host'];
    assert.deepEqual(await allocationHosts(server.id), [await providerOf(dest)]);
    assert.ok(!(await driverOf(source).listInstances()).includes(server.id), 'the source dropped it');
    assert.equal(await driverOf(dest).powerState(server.id), 1, 'the destination runs it');
    const { message, events: list } = await events(server.id, 'live-migration');
    assert.equal(message, null);
    assert.deepEqual(list, [['compute_live_migration', 'Success'], ['compute_post_live_migration_at_destination', 'Success'],
      ['compute_pre_live_migration', 'Success'], ['conductor_live_migrate_instance', 'Success']]);
    assert.deepEqual((await cc.get(`/servers/${server.id}/migrations`, { microversion: V })).body.migrations, [], 'nothing in progress');
    const records = await cc.cloud.compute.services.migrations.list({ instanceId: server.id });
    assert.equal(records[0].status, 'completed');
    assert.deepEqual(await allocationHosts(records[0].uuid), [], 'the migration holds nothing');
  });

  it('moves to a given host, showing progress and the split allocations while it runs; a paused server stays paused', async () => {
    setDuration(1500);
    const server = await booted('lm-given');
    const source = server['OS-EXT-SRV-ATTR:host'];
    const dest = otherHost(source);
    assert.equal((await cc.post(`/servers/${server.id}/action`, { pause: null }, { microversion: V })).status, 202);
    assert.equal((await settled(server.id)).status, 'PAUSED');
    assert.equal((await live(server.id, { host: dest, block_migration: false })).status, 202);
    const running = await waitMigration(server.id, (m) => m.status === 'running' && m.memory_processed_bytes > 0);
    assert.equal(running.source_compute, source);
    assert.equal(running.dest_compute, dest);
    assert.equal(running.memory_total_bytes, 512 * 1024 * 1024);
    assert.ok(running.memory_processed_bytes + running.memory_remaining_bytes === running.memory_total_bytes);
    assert.equal(running.disk_total_bytes, 0, 'no block migration');
    assert.equal(running.server_uuid, server.id);
    const shown = await cc.get(`/servers/${server.id}/migrations/${running.id}`, { microversion: V });
    assert.equal(shown.status, 200, shown.text);
    assert.equal(shown.body.migration.uuid, running.uuid);
    const during = (await cc.get(`/servers/${server.id}`, { microversion: V })).body.server;
    assert.equal(during.status, 'MIGRATING');
    assert.equal(during['OS-EXT-STS:task_state'], 'migrating');
    assert.deepEqual(await allocationHosts(server.id), [await providerOf(dest)], 'the instance holds the destination');
    assert.deepEqual(await allocationHosts(running.uuid), [await providerOf(source)], 'the migration holds the source');
    const moved = await settled(server.id);
    assert.equal(moved.status, 'PAUSED');
    assert.equal(moved['OS-EXT-STS:power_state'], 3);
    assert.equal(moved['OS-EXT-SRV-ATTR:host'], dest);
    assert.deepEqual(await allocationHosts(running.uuid), []);
    assertError(await cc.get(`/servers/${server.id}/migrations/${running.id}`, { microversion: V }), 404, 'is not in progress');
  });

  it('aborts a running migration: the server stays ACTIVE where it was, its allocations back', async () => {
    setDuration(5000);
    const server = await booted('lm-abort');
    const source = server['OS-EXT-SRV-ATTR:host'];
    assert.equal((await live(server.id, { host: null, block_migration: 'auto' })).status, 202);
    const running = await waitMigration(server.id, (m) => m.status === 'running');
    const aborted = await cc.delete(`/servers/${server.id}/migrations/${running.id}`, { microversion: V });
    assert.equal(aborted.status, 202, aborted.text);
    const back = await settled(server.id);
    assert.equal(back.status, 'ACTIVE');
    assert.equal(back['OS-EXT-SRV-ATTR:host'], source);
    assert.deepEqual(await allocationHosts(server.id), [await providerOf(source)]);
    assert.deepEqual(await allocationHosts(running.uuid), []);
    assert.ok(!(await driverOf(running.dest_compute).listInstances()).includes(server.id), 'nothing left on the destination');
    assert.equal(await driverOf(source).powerState(server.id), 1);
    const [record] = await cc.cloud.compute.services.migrations.list({ instanceId: server.id });
    assert.equal(record.status, 'cancelled');
    assert.equal((await events(server.id, 'live_migration_cancel')).events[0][1], 'Success');
    assertError(await cc.delete(`/servers/${server.id}/migrations/${running.id}`, { microversion: V }), 409, 'task_state null');
  });

  it('force-completes a running migration', async () => {
    setDuration(60_000);
    const server = await booted('lm-force');
    assert.equal((await live(server.id, { host: null, block_migration: true })).status, 202);
    const running = await waitMigration(server.id, (m) => m.status === 'running' && m.memory_total_bytes !== null);
    assert.ok(running.disk_total_bytes > 0, 'block migration copies the disk');
    const res = await cc.post(`/servers/${server.id}/migrations/${running.id}/action`, { force_complete: null }, { microversion: V });
    assert.equal(res.status, 202, res.text);
    const moved = await settled(server.id);
    assert.equal(moved.status, 'ACTIVE');
    assert.equal(moved['OS-EXT-SRV-ATTR:host'], running.dest_compute);
    assertError(await cc.post(`/servers/${server.id}/migrations/${running.id}/action`, { force_complete: null }, { microversion: V }), 409, 'task_state null');
    assertError(await cc.post(`/servers/${server.id}/migrations/${running.id}/action`, { force_complete: null }, { microversion: '2.21' }), 404);
  });

  it('rolls back to the source when the transfer fails, with an Error event and a fault', async () => {
    setDuration(50);
    const server = await booted('lm-fails');
    const source = server['OS-EXT-SRV-ATTR:host'];
    driverOf(source).settings.liveMigrationFails = true;
    try {
      assert.equal((await live(server.id, { host: null, block_migration: 'auto' })).status, 202);
      const back = await settled(server.id);
      assert.equal(back.status, 'ACTIVE');
      assert.equal(back['OS-EXT-SRV-ATTR:host'], source);
      assert.deepEqual(await allocationHosts(server.id), [await providerOf(source)]);
      const { message, events: list } = await events(server.id, 'live-migration');
      assert.equal(message, 'Error');
      assert.deepEqual(list.find((e: string[]) => e[0] === 'compute_live_migration'), ['compute_live_migration', 'Error']);
      const [record] = await cc.cloud.compute.services.migrations.list({ instanceId: server.id });
      assert.equal(record.status, 'failed');
      assert.deepEqual(await allocationHosts(record.uuid), []);
      for (const agent of cc.cloud.agents) if (agent.host !== source) assert.ok(!(await agent.driver.listInstances()).includes(server.id));
    } finally {
      driverOf(source).settings.liveMigrationFails = false;
    }
  });

  it('refuses what Nova refuses', async () => {
    setDuration(0);
    const server = await booted('lm-refusals');
    const source = server['OS-EXT-SRV-ATTR:host'];
    const dest = otherHost(source);
    assertError(await live(server.id, { host: null, block_migration: 'auto' }, { token: cc.demoToken }), 403);
    assertError(await live(server.id, { host: source, block_migration: 'auto' }), 400, `Unable to migrate instance (${server.id}) to current host (${source}).`);
    assertError(await live(server.id, { host: 'nowhere', block_migration: 'auto' }), 400, 'Compute host nowhere could not be found.');
    assertError(await live(server.id, { host: null, block_migration: 'sometimes' }), 400);
    assertError(await live(server.id, { host: null }), 400, 'block_migration');
    assertError(await live(server.id, { host: null, block_migration: 'auto' }, { microversion: '2.24' }), 400);
    assertError(await live(server.id, { host: null, block_migration: true, force: true }), 400, 'Additional properties');
    assertError(await live(server.id, { host: null, block_migration: true, force: true }, { microversion: '2.30' }), 400, "Can't force to a non-provided destination");
    assertError(await cc.get(`/servers/${server.id}/migrations`, { microversion: '2.22' }), 404);

    // The destination's compute service is down: 400 in Nova's words.
    const services = await cc.get(`/os-services?binary=nova-compute&host=${dest}`, { microversion: '2.53' });
    const destService = services.body.services[0].id;
    assert.equal((await cc.put(`/os-services/${destService}`, { forced_down: true }, { microversion: '2.53' })).status, 200);
    try {
      assertError(await live(server.id, { host: dest, block_migration: 'auto' }), 400, `Compute service of ${dest} is unavailable at this time.`);
    } finally {
      await cc.put(`/os-services/${destService}`, { forced_down: false }, { microversion: '2.53' });
    }
    // A disabled destination does not pass the scheduler: before 2.34 a 400, from 2.34 the migration ends in error.
    assert.equal((await cc.put(`/os-services/${destService}`, { status: 'disabled' }, { microversion: '2.53' })).status, 200);
    try {
      assertError(await live(server.id, { host: dest, block_migration: 'auto' }, { microversion: '2.30' }), 400, 'Migration pre-check error');
      assert.equal((await settled(server.id)).status, 'ACTIVE');
      assert.equal((await live(server.id, { host: dest, block_migration: 'auto' })).status, 202);
      const back = await settled(server.id);
      assert.equal(back.status, 'ACTIVE');
      assert.equal(back['OS-EXT-SRV-ATTR:host'], source);
      assert.deepEqual(await allocationHosts(server.id), [await providerOf(source)]);
      const statuses = (await cc.cloud.compute.services.migrations.list({ instanceId: server.id })).map((m) => m.status);
      assert.deepEqual(statuses, ['error', 'error']);
      // Forced (2.30–2.67), the filters are not asked.
      assert.equal((await live(server.id, { host: dest, block_migration: 'auto', force: true }, { microversion: '2.30' })).status, 202);
      assert.equal((await settled(server.id))['OS-EXT-SRV-ATTR:host'], dest);
    } finally {
      await cc.put(`/os-services/${destService}`, { status: 'enabled' }, { microversion: '2.53' });
    }

    assert.equal((await cc.post(`/servers/${server.id}/action`, { 'os-stop': null })).status, 202);
    await settled(server.id);
    assertError(await live(server.id, { host: null, block_migration: 'auto' }), 409, `Cannot 'os-migrateLive' instance ${server.id} while it is in vm_state stopped`);
    assertError(await cc.delete(`/servers/${server.id}/migrations/1`, { microversion: V }), 409);
  });
});
