// Evacuate: refused while the source's compute service is up; after it is forced down the
// server is rebuilt on another host (ACTIVE, or SHUTOFF when it was stopped) with the source's
// allocations released; no host left is ERROR with a fault; the source agent coming back
// destroys its stale copy.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startComputeAgent } from '../../src/compute/agent/agent.js';
import type { FakeDriver } from '../../src/compute/virt/fake.js';
import { createLogger } from '../../src/core/log.js';
import { assertError, sleep, startComputeCloud, type ComputeCloud } from './harness.js';

describe('evacuate', () => {
  let cc: ComputeCloud;
  let imageId: string;
  const V = '2.79';
  const restarted: { close(): Promise<void> }[] = [];

  before(async () => {
    cc = await startComputeCloud({ DEFAULT: { report_interval: '0.5', service_down_time: '2' } }, 3);
    imageId = await cc.createImage({ visibility: 'public' });
    await cc.unlimitedQuota();
  });
  after(async () => {
    for (const agent of restarted) await agent.close();
    await cc?.close();
  });

  const evacuate = (id: string, body: Record<string, unknown>, microversion = V) => cc.post(`/servers/${id}/action`, { evacuate: body }, { microversion });
  const settled = (id: string) => cc.waitServer(id, (s) => s['OS-EXT-STS:task_state'] === null);
  const booted = async (name: string, hints?: Record<string, unknown>) => {
    return cc.bootActive({ name, imageRef: imageId }, { hints });
  };
  const serviceOf = async (host: string) => (await cc.get(`/os-services?binary=nova-compute&host=${host}`, { microversion: '2.53' })).body.services[0].id as string;
  const setService = async (host: string, body: Record<string, unknown>) => {
    const res = await cc.put(`/os-services/${await serviceOf(host)}`, body, { microversion: '2.53' });
    assert.equal(res.status, 200, res.text);
  };
  const providerOf = async (host: string) => (await cc.get(`/placement/resource_providers?name=${host}`)).body.resource_providers[0].uuid as string;
  const allocationHosts = async (consumer: string) => Object.keys(await cc.allocations(consumer)).sort();
  const driverOf = (host: string) => cc.cloud.agents.find((a) => a.host === host)!.driver as FakeDriver;

  it('is refused while the source compute service is up', async () => {
    const server = await booted('ev-up');
    const source = server['OS-EXT-SRV-ATTR:host'];
    assertError(await evacuate(server.id, {}), 400, `Compute service of ${source} is still in use.`);
    assertError(await evacuate(server.id, {}, '2.13'), 400, 'onSharedStorage');
    assertError(await evacuate(server.id, { host: 'nowhere' }), 404, 'Compute host nowhere not found.');
    assertError(await evacuate(server.id, { host: source }), 400, "The target host can't be the same one.");
    assertError(await evacuate(server.id, { force: true }, '2.29'), 400, "Can't force to a non-provided destination");
    assertError(await cc.post(`/servers/${server.id}/action`, { evacuate: {} }, { token: cc.demoToken, microversion: V }), 403);
    assert.equal((await cc.get(`/servers/${server.id}`)).body.server.status, 'ACTIVE');
  });

  it('rebuilds the server on another host once the source is forced down; the source coming back drops its copy', async () => {
    const server = await booted('ev-move');
    const stopped = await booted('ev-stopped', { same_host: server.id });
    const source = server['OS-EXT-SRV-ATTR:host'];
    assert.equal(stopped['OS-EXT-SRV-ATTR:host'], source);
    assert.equal((await cc.post(`/servers/${stopped.id}/action`, { 'os-stop': null })).status, 202);
    assert.equal((await settled(stopped.id)).status, 'SHUTOFF');
    await setService(source, { forced_down: true });
    try {
      const res = await evacuate(server.id, {});
      assert.equal(res.status, 200, res.text);
      const moved = await settled(server.id);
      assert.equal(moved.status, 'ACTIVE', JSON.stringify(moved.fault));
      const dest = moved['OS-EXT-SRV-ATTR:host'];
      assert.notEqual(dest, source);
      assert.deepEqual(await allocationHosts(server.id), [await providerOf(dest)], 'the source allocations are released');
      assert.equal(await driverOf(dest).powerState(server.id), 1);

      // Before 2.14 the password comes back; a stopped server ends stopped.
      const old = await evacuate(stopped.id, { onSharedStorage: false }, '2.13');
      assert.equal(old.status, 200, old.text);
      assert.equal(typeof old.body.adminPass, 'string');
      const movedStopped = await settled(stopped.id);
      assert.equal(movedStopped.status, 'SHUTOFF');
      assert.notEqual(movedStopped['OS-EXT-SRV-ATTR:host'], source);
      assert.equal(await driverOf(movedStopped['OS-EXT-SRV-ATTR:host']).powerState(stopped.id), 4);

      const actions = await cc.get(`/servers/${server.id}/os-instance-actions`);
      const action = actions.body.instanceActions.find((a: any) => a.action === 'evacuate');
      const detail = await cc.get(`/servers/${server.id}/os-instance-actions/${action.request_id}`);
      assert.deepEqual(detail.body.instanceAction.events.map((e: any) => [e.event, e.result]).sort(),
        [['compute_rebuild_instance', 'Success'], ['conductor_rebuild_server', 'Success']]);
      const [record] = await cc.cloud.compute.services.migrations.list({ instanceId: server.id });
      assert.equal(record.migrationType, 'evacuation');
      assert.equal(record.status, 'done');
      assert.deepEqual(await allocationHosts(record.uuid), []);
      assert.ok((await driverOf(source).listInstances()).includes(server.id), 'the dead host still has its copy');
    } finally {
      await setService(source, { forced_down: false });
    }

    // The source agent restarts (same hypervisor, its guests still there): it must not keep them.
    const old = cc.cloud.agents.find((a) => a.host === source)!;
    const driver = old.driver as FakeDriver;
    await old.close();
    const agent = await startComputeAgent({ config: cc.cloud.config, bus: cc.cloud.bus, host: source, driver, logger: createLogger('test-agent') });
    restarted.push(agent);
    await agent.registered;
    const deadline = Date.now() + 10_000;
    while ((await driver.listInstances()).some((u) => u === server.id || u === stopped.id)) {
      if (Date.now() > deadline) assert.fail('the source still has the evacuated instances');
      await sleep(50);
    }
    const [record] = await cc.cloud.compute.services.migrations.list({ instanceId: server.id });
    assert.equal(record.status, 'completed');
    assert.equal((await cc.get(`/servers/${server.id}`)).body.server.status, 'ACTIVE', 'the evacuated server is untouched');
  });

  it('ends in ERROR with a fault, its allocations back on the source, when no host is left', async () => {
    const server = await booted('ev-nohost');
    const source = server['OS-EXT-SRV-ATTR:host'];
    const others = cc.cloud.agents.map((a) => a.host).filter((h) => h !== source);
    await setService(source, { forced_down: true });
    for (const h of others) await setService(h, { status: 'disabled' });
    try {
      assert.equal((await evacuate(server.id, {})).status, 200);
      const failed = await settled(server.id);
      assert.equal(failed.status, 'ERROR');
      assert.match(failed.fault.message, /No valid host/);
      assert.equal(failed['OS-EXT-SRV-ATTR:host'], source);
      assert.deepEqual(await allocationHosts(server.id), [await providerOf(source)]);
      const [record] = await cc.cloud.compute.services.migrations.list({ instanceId: server.id });
      assert.equal(record.status, 'error');
      // ERROR may be evacuated again once a host is there.
      for (const h of others) await setService(h, { status: 'enabled' });
      assert.equal((await evacuate(server.id, { host: others[0] })).status, 200);
      const moved = await settled(server.id);
      assert.equal(moved.status, 'ACTIVE');
      assert.equal(moved['OS-EXT-SRV-ATTR:host'], others[0]);
    } finally {
      for (const h of others) await setService(h, { status: 'enabled' });
      await setService(source, { forced_down: false });
    }
  });
});
