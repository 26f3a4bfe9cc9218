// HostService on SQLite with the real PlacementService: liveness (service_down_time, forced
// down), enable/disable keeping COMPUTE_STATUS_DISABLED in step, Nova's rules for updates and
// deletes, zones, usage from Placement, statistics, host_status, control services.
import { afterEach, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { Config } from '../core/config.js';
import { BadRequest, Conflict, NotFound } from '../core/errors.js';
import { createLogger, setLogLevel } from '../core/log.js';
import { migrateService, openDatabase, type Database } from '../db/index.js';
import { placementMigrations } from '../placement/db/migrations.js';
import { PlacementService } from '../placement/service.js';
import { computeMigrations } from './db/migrations.js';
import { HostService } from './hosts.js';
import type { HostReport } from './rpc.js';

setLogLevel(process.env.NUBO_LOG_LEVEL ?? 'error');
const logger = createLogger('test');

const report = (host: string, extra: Partial<HostReport> = {}): HostReport => ({
  host, nodename: host, hypervisorType: 'fake', hypervisorVersion: 1000, hostIp: '192.0.2.1', vcpus: 8, memoryMb: 16384, localGb: 200,
  cpuInfo: { arch: 'x86_64' }, supportedInstances: [['x86_64', 'fake', 'hvm']], traits: ['COMPUTE_NODE'], capabilities: { supportsPause: true },
  cpuAllocationRatio: 4, ramAllocationRatio: 1, diskAllocationRatio: 1, reservedHostMemoryMb: 512, reservedHostDiskMb: 1024, reservedHostCpus: 0,
  ...extra,
});

describe('HostService', () => {
  let database: Database;
  let placement: PlacementService;
  let hosts: HostService;
  let now: Date;

  beforeEach(async () => {
    database = await openDatabase('sqlite://:memory:');
    await migrateService(database, 'placement', placementMigrations);
    await migrateService(database, 'compute', computeMigrations);
    placement = new PlacementService({ database });
    now = new Date('2030-01-01T00:00:00.000Z');
    hosts = new HostService({ config: new Config({ DEFAULT: { service_down_time: '60', host: 'ctl-1' } }, {}), database, placement, logger, now: () => now });
  });
  afterEach(async () => {
    hosts.close();
    await database.close();
  });

  async function addInstance(host: string, node: string, extra: Record<string, unknown> = {}): Promise<string> {
    const id = randomUUID();
    const at = new Date().toISOString();
    await database.db.insertInto('compute_instances').values({
      id, name: `vm-${id.slice(0, 4)}`, project_id: 'p', user_id: 'u', hostname: 'vm', host, node, flavor_id: 'f',
      flavor: JSON.stringify({ vcpus: 2, memoryMb: 1024, rootGb: 10 }), vm_state: 'active', reservation_id: 'r-1', request: '{}',
      created_at: at, updated_at: at, ...extra,
    }).execute();
    return id;
  }

  it('is up while heartbeats are within service_down_time, down after, and down when forced', async () => {
    const { serviceId } = await hosts.registerHost(report('h1'));
    assert.equal(await hosts.isHostUp('h1'), true);
    now = new Date(now.getTime() + 59_000);
    assert.equal(await hosts.isHostUp('h1'), true);
    now = new Date(now.getTime() + 2_000);
    assert.equal(await hosts.isHostUp('h1'), false);
    assert.equal(await hosts.hostStatus('h1'), 'UNKNOWN');
    await hosts.heartbeat('h1');
    assert.equal(await hosts.isHostUp('h1'), true);
    assert.equal(await hosts.hostStatus('h1'), 'UP');
    await hosts.updateService(serviceId, { forcedDown: true });
    assert.equal(await hosts.isHostUp('h1'), false);
    assert.equal(await hosts.hostStatus('h1'), 'DOWN');
    await hosts.updateService(serviceId, { forcedDown: false, disabled: true });
    assert.equal(await hosts.hostStatus('h1'), 'MAINTENANCE');
    assert.equal(await hosts.hostStatus('nowhere'), '');
    assert.equal(await hosts.isHostUp('nowhere'), false);
    await assert.rejects(hosts.heartbeat('nowhere'), NotFound);
  });

  it('keeps COMPUTE_STATUS_DISABLED on the provider in step with the service', async () => {
    const { serviceId, nodeId } = await hosts.registerHost(report('h1', { traits: ['COMPUTE_NODE', 'CUSTOM_GOLD'] }));
    const traits = async () => (await placement.getProviderTraits(nodeId)).traits.sort();
    assert.deepEqual(await traits(), ['COMPUTE_NODE', 'CUSTOM_GOLD']);
    const disabled = await hosts.updateService(serviceId, { disabled: true, disabledReason: 'broken fan' });
    assert.equal(disabled.disabledReason, 'broken fan');
    assert.deepEqual(await traits(), ['COMPUTE_NODE', 'COMPUTE_STATUS_DISABLED', 'CUSTOM_GOLD']);
    const enabled = await hosts.updateServiceByHostBinary('h1', 'nova-compute', { disabled: false });
    assert.equal(enabled.disabledReason, null, 'enabling clears the reason');
    assert.deepEqual(await traits(), ['COMPUTE_NODE', 'CUSTOM_GOLD']);
    // A disabled host is offered by Placement no more.
    await hosts.updateService(serviceId, { disabled: true });
    const candidates = await placement.getAllocationCandidates({ unsuffixed: { resources: { VCPU: 1 }, forbidden: ['COMPUTE_STATUS_DISABLED'] } });
    assert.equal(candidates.allocation_requests.length, 0);
  });

  it('applies Nova\'s rules to updates: only nova-compute services, NotFound for unknown ones', async () => {
    const [conductor] = await hosts.registerControlServices();
    assert.equal(conductor.binary, 'nova-conductor');
    assert.equal(conductor.host, 'ctl-1');
    await assert.rejects(hosts.updateService(conductor.id, { disabled: true }), (e: Error) => e instanceof BadRequest && /Updating a nova-conductor service is not supported/.test(e.message));
    await assert.rejects(hosts.updateServiceByHostBinary('ctl-1', 'nova-scheduler', { disabled: true }), BadRequest);
    await assert.rejects(hosts.updateServiceByHostBinary('ghost', 'nova-compute', { disabled: true }), (e: Error) => e instanceof NotFound && /Could not find binary nova-compute on host ghost/.test(e.message));
    await assert.rejects(hosts.getService(randomUUID()), NotFound);
  });

  it('registers the control services once per host and lists every service with its zone', async () => {
    await hosts.registerControlServices();
    await hosts.registerControlServices('ctl-1');
    await hosts.registerHost(report('h1'));
    await hosts.registerHost(report('h2'));
    const aggregate = await database.db.insertInto('compute_aggregates').values({ id: 1, uuid: randomUUID(), name: 'az-agg', created_at: now.toISOString() }).execute();
    assert.ok(aggregate);
    await database.db.insertInto('compute_aggregate_metadata').values({ aggregate_id: 1, key: 'availability_zone', value: 'zone-a' }).execute();
    await database.db.insertInto('compute_aggregate_hosts').values({ aggregate_id: 1, host: 'h2' }).execute();
    const services = await hosts.listServices();
    assert.deepEqual(services.map((s) => `${s.host}/${s.binary}`).sort(), ['ctl-1/nova-conductor', 'ctl-1/nova-scheduler', 'h1/nova-compute', 'h2/nova-compute']);
    const zones = await hosts.zonesOf(services);
    const zoneOf = (host: string, binary: string) => zones.get(services.find((s) => s.host === host && s.binary === binary)!.id);
    assert.equal(zoneOf('ctl-1', 'nova-conductor'), 'internal');
    assert.equal(zoneOf('h1', 'nova-compute'), 'nova');
    assert.equal(zoneOf('h2', 'nova-compute'), 'zone-a');
    assert.deepEqual((await hosts.listServices({ binary: 'nova-compute', host: 'h2' })).map((s) => s.host), ['h2']);
  });

  it('refuses to delete a compute service hosting instances; otherwise removes node, provider and aggregate membership', async () => {
    const { serviceId, nodeId } = await hosts.registerHost(report('h1'));
    const instance = await addInstance('h1', 'h1');
    await assert.rejects(hosts.deleteService(serviceId), (e: Error) => e instanceof Conflict && /hosting instances/.test(e.message));
    await database.db.updateTable('compute_instances').set({ deleted_at: new Date().toISOString() }).where('id', '=', instance).execute();
    await database.db.insertInto('compute_aggregates').values({ id: 7, uuid: randomUUID(), name: 'agg', created_at: now.toISOString() }).execute();
    await database.db.insertInto('compute_aggregate_hosts').values({ aggregate_id: 7, host: 'h1' }).execute();
    await hosts.deleteService(serviceId);
    await assert.rejects(hosts.getService(serviceId), NotFound);
    await assert.rejects(hosts.getNode(nodeId), NotFound);
    await assert.rejects(placement.getProvider(nodeId), NotFound);
    assert.deepEqual(await database.db.selectFrom('compute_aggregate_hosts').selectAll().execute(), []);
    await assert.rejects(hosts.deleteService(serviceId), NotFound);
    const [scheduler] = (await hosts.registerControlServices()).filter((s) => s.binary === 'nova-scheduler');
    await hosts.deleteService(scheduler.id);
    assert.deepEqual((await hosts.listServices()).map((s) => s.binary), ['nova-conductor']);
  });

  it('reports usage from Placement plus reservations, instance counts, and statistics of enabled hosts', async () => {
    const a = await hosts.registerHost(report('h1'));
    const b = await hosts.registerHost(report('h2', { vcpus: 4, memoryMb: 8192, localGb: 100 }));
    await placement.putAllocations(randomUUID(), { allocations: { [a.nodeId]: { resources: { VCPU: 2, MEMORY_MB: 1024, DISK_GB: 10 } } }, projectId: 'p', userId: 'u', consumerGeneration: null });
    await addInstance('h1', 'h1');
    await addInstance('h1', 'h1', { vm_state: 'building', task_state: 'spawning' });
    const nodes = await hosts.listNodes();
    const usage = await hosts.usageOf(nodes);
    assert.deepEqual(usage.get(a.nodeId), {
      vcpusUsed: 2, memoryMbUsed: 512 + 1024, localGbUsed: 1 + 10, freeRamMb: 16384 - 1536, freeDiskGb: 200 - 11, diskAvailableLeast: 189,
      runningVms: 2, currentWorkload: 1,
    });
    assert.equal(usage.get(b.nodeId)!.vcpusUsed, 0);
    assert.equal(usage.get(b.nodeId)!.memoryMbUsed, 512);
    const all = await hosts.statistics();
    assert.deepEqual([all.count, all.vcpus, all.memory_mb, all.vcpus_used, all.running_vms], [2, 12, 24576, 2, 2]);
    await hosts.updateService(b.serviceId, { disabled: true });
    const enabledOnly = await hosts.statistics();
    assert.deepEqual([enabledOnly.count, enabledOnly.vcpus, enabledOnly.local_gb], [1, 8, 200]);
    assert.deepEqual((await hosts.instancesOf([nodes[0]])).get(nodes[0].id)!.length, 2);
    assert.deepEqual((await hosts.listNodes({ pattern: 'H2' })).map((n) => n.hypervisorHostname), ['h2']);
  });

  it('counts build failures per host and resets them on success', async () => {
    const { nodeId } = await hosts.registerHost(report('h1'));
    await hosts.recordBuildResult('h1', false);
    await hosts.recordBuildResult('h1', false);
    assert.equal((await hosts.getNode(nodeId)).failedBuilds, 2);
    await hosts.recordBuildResult('h1', true);
    assert.equal((await hosts.getNode(nodeId)).failedBuilds, 0);
    assert.equal(await hosts.hostExists('h1'), true);
    assert.equal(await hosts.hostExists('h9'), false);
  });

  it('refuses malformed host reports', async () => {
    await assert.rejects(hosts.registerHost(report('', {})), /host must be a non-empty string/);
    await assert.rejects(hosts.registerHost(report('h1', { vcpus: 0 })), /vcpus must be a positive integer/);
    await assert.rejects(hosts.registerHost(report('h1', { cpuAllocationRatio: -1 })), /cpuAllocationRatio/);
    await assert.rejects(hosts.registerHost(undefined as unknown as HostReport), BadRequest);
    assert.deepEqual(await hosts.listServices(), []);
  });

  it('adopts a provider left behind under the node name instead of failing on the name', async () => {
    const leftover = randomUUID();
    await placement.ensureProvider({ uuid: leftover, name: 'h1', inventories: { VCPU: { total: 1 } }, traits: [] });
    const { nodeId } = await hosts.registerHost(report('h1'));
    assert.equal(nodeId, leftover);
    assert.equal((await placement.getInventories(nodeId)).inventories.VCPU.total, 8);
  });
});
