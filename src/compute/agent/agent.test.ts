// The compute agent against the real parts: the memory bus, the real HostService and
// PlacementService on SQLite, with the conductor's host handlers serving CONDUCTOR_TOPIC.
// Registration (also when the conductor comes later), the provider it gets, heartbeats,
// the RPC methods the agent serves, and many agents in one process.
import { afterEach, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Config, type ConfigValues } from '../../core/config.js';
import { BadRequest, InternalError, NotFound } from '../../core/errors.js';
import { createLogger, setLogLevel } from '../../core/log.js';
import { migrateService, openDatabase, type Database } from '../../db/index.js';
import { MemoryBroker, MemoryBus } from '../../bus/index.js';
import type { Subscription } from '../../bus/types.js';
import { placementMigrations } from '../../placement/db/migrations.js';
import { PlacementService } from '../../placement/service.js';
import { computeMigrations } from '../db/migrations.js';
import { HostService } from '../hosts.js';
import { hostHandlers } from '../conductor/host-handlers.js';
import { agentClient, CONDUCTOR_TOPIC, PowerState, type InstanceSpec } from '../rpc.js';
import { FakeDriver, fakeDriverSettings } from '../virt/fake.js';
import { startComputeAgent, uptimeLine, type ComputeAgent } from './agent.js';

setLogLevel(process.env.NUBO_LOG_LEVEL ?? 'error');
const logger = createLogger('test');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until<T>(what: string, probe: () => Promise<T | undefined | false>, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

const spec = (name: string, uuid: string): InstanceSpec => ({
  uuid, name, hostname: name, projectId: 'p', userId: 'u',
  flavor: { id: 'f', name: 'm1.tiny', vcpus: 1, memoryMb: 512, rootGb: 1, ephemeralGb: 0, swapMb: 0, extraSpecs: {} },
  image: null, keyData: null, userData: null, metadata: {}, configDrive: false, adminPass: null,
});

describe('compute agent', () => {
  let database: Database;
  let placement: PlacementService;
  let hosts: HostService;
  let broker: MemoryBroker;
  let controllerBus: MemoryBus;
  let agentBus: MemoryBus;
  let conductor: Subscription | undefined;
  const agents: ComputeAgent[] = [];

  const config = (values: ConfigValues = {}) =>
    new Config({ ...values, DEFAULT: { report_interval: '0.05', rpc_response_timeout: '2', ...(values.DEFAULT ?? {}) } }, {});
  const serveConductor = async () => { conductor = await controllerBus.serve(CONDUCTOR_TOPIC, { ...hostHandlers(hosts) }); };
  const start = async (host: string, values: ConfigValues = {}, driver?: FakeDriver) => {
    const agent = await startComputeAgent({ config: config(values), bus: agentBus, host, logger, driver });
    agents.push(agent);
    return agent;
  };

  beforeEach(async () => {
    database = await openDatabase('sqlite://:memory:');
    await migrateService(database, 'placement', placementMigrations);
    await migrateService(database, 'compute', computeMigrations);
    placement = new PlacementService({ database });
    hosts = new HostService({ config: new Config({ DEFAULT: { service_down_time: '60' } }, {}), database, placement, logger });
    broker = new MemoryBroker();
    controllerBus = new MemoryBus({ broker, timeoutMs: 2000 });
    agentBus = new MemoryBus({ broker, timeoutMs: 2000 });
    conductor = undefined;
  });

  afterEach(async () => {
    await Promise.all(agents.splice(0).map((a) => a.close()));
    hosts.close();
    await agentBus.close();
    await controllerBus.close();
    await database.close();
  });

  it('registers its host: service, node and a resource provider with inventories and traits', async () => {
    await serveConductor();
    const agent = await start('cn-1', {
      DEFAULT: { cpu_allocation_ratio: '16', ram_allocation_ratio: '1.5', reserved_host_memory_mb: '1024', reserved_host_disk_mb: '2048', reserved_host_cpus: '1', my_ip: '10.0.0.5' },
      fake_driver: { vcpus: '32', memory_mb: '65536', local_gb: '500' },
    });
    const { serviceId, nodeId } = await agent.registered;

    const [service] = await hosts.listServices({ host: 'cn-1' });
    assert.equal(service.id, serviceId);
    assert.equal(service.binary, 'nova-compute');
    assert.equal(service.topic, 'compute');
    assert.equal(hosts.isUp(service), true);
    const node = await hosts.getNode(nodeId);
    assert.equal(node.hypervisorHostname, 'cn-1');
    assert.equal(node.hypervisorType, 'fake');
    assert.equal(node.hypervisorVersion, 1000);
    assert.equal(node.hostIp, '10.0.0.5');
    assert.equal(node.serviceId, serviceId);
    assert.equal(node.capabilities.supportsLiveMigration, true);

    const provider = await placement.getProvider(nodeId);
    assert.equal(provider.name, 'cn-1');
    const { inventories } = await placement.getInventories(nodeId);
    assert.deepEqual(
      { total: inventories.VCPU.total, reserved: inventories.VCPU.reserved, ratio: inventories.VCPU.allocation_ratio, max: inventories.VCPU.max_unit, min: inventories.VCPU.min_unit, step: inventories.VCPU.step_size },
      { total: 32, reserved: 1, ratio: 16, max: 32, min: 1, step: 1 });
    assert.deepEqual([inventories.MEMORY_MB.total, inventories.MEMORY_MB.reserved, inventories.MEMORY_MB.allocation_ratio], [65536, 1024, 1.5]);
    assert.deepEqual([inventories.DISK_GB.total, inventories.DISK_GB.reserved, inventories.DISK_GB.allocation_ratio], [500, 2, 1]);
    const { traits } = await placement.getProviderTraits(nodeId);
    assert.ok(traits.includes('COMPUTE_NODE'));
    assert.ok(traits.includes('COMPUTE_IMAGE_TYPE_QCOW2'));
    assert.ok(!traits.includes('COMPUTE_STATUS_DISABLED'));
  });

  it('uses Nova\'s defaults: cpu ratio 4.0, 512 MB reserved, host_ip 127.0.0.1', async () => {
    await serveConductor();
    const agent = await start('cn-defaults');
    const report = await agent.hostReport();
    assert.deepEqual(
      [report.cpuAllocationRatio, report.ramAllocationRatio, report.diskAllocationRatio, report.reservedHostMemoryMb, report.reservedHostDiskMb, report.reservedHostCpus, report.hostIp, report.vcpus],
      [4, 1, 1, 512, 0, 0, '127.0.0.1', 8]);
    const { nodeId } = await agent.registered;
    const { inventories } = await placement.getInventories(nodeId);
    assert.equal(inventories.MEMORY_MB.reserved, 512);
    assert.equal(inventories.VCPU.allocation_ratio, 4);
  });

  it('refuses bad ratios and reservations at start', async () => {
    await assert.rejects(start('bad', { DEFAULT: { cpu_allocation_ratio: '0' } }), (e: Error) => e instanceof BadRequest && /cpu_allocation_ratio/.test(e.message));
    await assert.rejects(start('bad', { DEFAULT: { reserved_host_memory_mb: '-5' } }), /reserved_host_memory_mb/);
    await assert.rejects(start('bad', { DEFAULT: { report_interval: '0' } }), /report_interval/);
  });

  it('keeps the node uuid across restarts, and re-registration keeps a disabled service disabled', async () => {
    await serveConductor();
    const first = await start('cn-2');
    const ids = await first.registered;
    await hosts.updateService(ids.serviceId, { disabled: true, disabledReason: 'maintenance' });
    assert.ok((await placement.getProviderTraits(ids.nodeId)).traits.includes('COMPUTE_STATUS_DISABLED'));
    await first.close();

    const second = await start('cn-2', { fake_driver: { vcpus: '12' } });
    const again = await second.registered;
    assert.deepEqual(again, ids);
    assert.equal((await placement.getInventories(ids.nodeId)).inventories.VCPU.total, 12, 'the new size reached Placement');
    const service = await hosts.getService(ids.serviceId);
    assert.equal(service.disabled, true);
    assert.equal(service.disabledReason, 'maintenance');
    assert.ok((await placement.getProviderTraits(ids.nodeId)).traits.includes('COMPUTE_STATUS_DISABLED'), 'the trait survives a re-registration');
    await hosts.updateService(ids.serviceId, { disabled: false });
    assert.ok(!(await placement.getProviderTraits(ids.nodeId)).traits.includes('COMPUTE_STATUS_DISABLED'));
  });

  it('retries registration until a conductor answers', async () => {
    const agent = await start('cn-late', { DEFAULT: { rpc_response_timeout: '0.1' } });
    await sleep(300);
    assert.deepEqual(await hosts.listServices({ host: 'cn-late' }), [], 'nobody served the topic yet');
    await serveConductor();
    const ids = await agent.registered;
    assert.equal((await hosts.getService(ids.serviceId)).host, 'cn-late');
  });

  it('heartbeats every report_interval', async () => {
    await serveConductor();
    const agent = await start('cn-beat');
    const { serviceId } = await agent.registered;
    const before = await hosts.getService(serviceId);
    const after = await until('heartbeats', async () => {
      const s = await hosts.getService(serviceId);
      return s.reportCount >= before.reportCount + 3 && s;
    });
    assert.ok(after.lastSeenUp! >= before.lastSeenUp!);
    await agent.close();
    const stopped = (await hosts.getService(serviceId)).reportCount;
    await sleep(200);
    assert.equal((await hosts.getService(serviceId)).reportCount, stopped, 'no heartbeats after close');
  });

  it('is reported down once heartbeats stop for service_down_time, and up again when they resume', async () => {
    await serveConductor();
    const strict = new HostService({ config: new Config({ DEFAULT: { service_down_time: '0.3' } }, {}), database, placement, logger });
    const agent = await start('cn-down');
    const { serviceId } = await agent.registered;
    assert.equal(await strict.isHostUp('cn-down'), true);
    await agent.close();
    await until('the service to be down', async () => !(await strict.isHostUp('cn-down')));
    assert.equal(strict.isUp(await strict.getService(serviceId)), false);
    const back = await start('cn-down');
    await back.registered;
    assert.equal(await strict.isHostUp('cn-down'), true);
    await strict.updateService(serviceId, { forcedDown: true });
    assert.equal(await strict.isHostUp('cn-down'), false, 'forced down wins over heartbeats');
  });

  it('serves spawn, power state, list and destroy on compute.<host>', async () => {
    await serveConductor();
    const driver = new FakeDriver(fakeDriverSettings(new Config({ fake_driver: { fail_spawn_name_pattern: 'doomed' } }, {})));
    const agent = await start('cn-rpc', {}, driver);
    await agent.registered;
    const rpc = agentClient(controllerBus, 'cn-rpc', 2000);
    assert.deepEqual(await rpc.spawnInstance({ instance: spec('vm-1', 'u-1') }), { powerState: PowerState.RUNNING });
    assert.deepEqual(await rpc.getPowerState({ uuid: 'u-1' }), { powerState: PowerState.RUNNING });
    assert.deepEqual(await rpc.getPowerState({ uuid: 'u-2' }), { powerState: null });
    assert.deepEqual(await rpc.listInstances({}), { uuids: ['u-1'] });
    await assert.rejects(rpc.spawnInstance({ instance: spec('doomed-vm', 'u-3') }), (e: Error) => e instanceof InternalError && /fail_spawn_name_pattern/.test(e.message));
    assert.deepEqual(await rpc.listInstances({}), { uuids: ['u-1'] }, 'a failed spawn leaves nothing');
    driver.setPowerState('u-1', PowerState.SHUTDOWN);
    assert.deepEqual(await rpc.getPowerState({ uuid: 'u-1' }), { powerState: PowerState.SHUTDOWN });
    await rpc.destroyInstance({ uuid: 'u-1' });
    await rpc.destroyInstance({ uuid: 'u-1' });
    assert.deepEqual(await rpc.listInstances({}), { uuids: [] });
    await assert.rejects(rpc.destroyInstance({ uuid: 42 as unknown as string }), BadRequest);
    assert.match((await rpc.getHostUptime({})).uptime, /^ \d\d:\d\d:\d\d up .*,  load average: /);
    assert.equal(await hosts.hostUptime('cn-rpc'), null, 'a HostService without a bus cannot ask');
    const withBus = new HostService({ config: new Config({ DEFAULT: { rpc_response_timeout: '0.2' } }, {}), database, placement, logger, bus: controllerBus });
    assert.match((await withBus.hostUptime('cn-rpc'))!, /load average/);
    await assert.rejects(withBus.hostUptime('no-such-host'), (e: Error) => e instanceof BadRequest && /Compute service of no-such-host is unavailable/.test(e.message));
  });

  it('formats the uptime as uptime(1) does', () => {
    const at = new Date(2030, 0, 1, 8, 32, 11);
    assert.equal(uptimeLine(at, 93 * 86400 + 18 * 3600 + 25 * 60, [0.2, 0.123, 0.14]), ' 08:32:11 up 93 days, 18:25,  load average: 0.20, 0.12, 0.14');
    assert.equal(uptimeLine(at, 86400 + 59, [1, 2, 3]), ' 08:32:11 up 1 day, 0 min,  load average: 1.00, 2.00, 3.00');
    assert.equal(uptimeLine(at, 7 * 60, [0, 0, 0]), ' 08:32:11 up 7 min,  load average: 0.00, 0.00, 0.00');
  });

  it('a deleted service gets NotFound heartbeats and is not recreated until the agent restarts', async () => {
    await serveConductor();
    const agent = await start('cn-del');
    const { serviceId } = await agent.registered;
    await hosts.deleteService(serviceId);
    await assert.rejects(hosts.heartbeat('cn-del'), NotFound);
    await sleep(200);
    assert.deepEqual(await hosts.listServices({ host: 'cn-del' }), []);
    await agent.close();
    const again = await start('cn-del');
    const ids = await again.registered;
    assert.notEqual(ids.serviceId, serviceId);
  });

  it('runs many agents in one process over one bus', async () => {
    await serveConductor();
    const count = 200;
    const started = await Promise.all(Array.from({ length: count }, (_, i) => start(`many-${i + 1}`, { DEFAULT: { report_interval: '1' } })));
    await Promise.all(started.map((a) => a.registered));
    const services = await hosts.listServices({ binary: 'nova-compute' });
    assert.equal(services.length, count);
    const nodes = await hosts.listNodes();
    assert.equal(new Set(nodes.map((n) => n.id)).size, count);
    assert.equal((await placement.listProviders()).length, count);
    const stats = await hosts.statistics();
    assert.equal(stats.count, count);
    assert.equal(stats.vcpus, 8 * count);
  });
});
