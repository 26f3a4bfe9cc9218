// selectDestinations end to end: real compute tables on SQLite, the real PlacementService,
// each driver. Hosts are rows in compute_services/compute_nodes plus their resource providers.
import { describe, it, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { Config, type ConfigValues } from '../../core/config.js';
import { createLogger, setLogLevel } from '../../core/log.js';
import { openDatabase, migrateService, type Database } from '../../db/index.js';
import { placementMigrations } from '../../placement/db/migrations.js';
import { PlacementService } from '../../placement/service.js';
import { computeMigrations } from '../db/migrations.js';
import { COMPUTE_BINARY } from '../rpc.js';
import { HostManager } from './host-manager.js';
import { createScheduler, NoValidHost, type RequestSpec, type Scheduler, type SchedulerPlacement } from './index.js';
import { makeSpec } from './testing.js';

setLogLevel('silent');
const logger = createLogger('test');

interface HostOptions { vcpus?: number; memoryMb?: number; localGb?: number; heartbeatAgoSeconds?: number; disabled?: boolean; forcedDown?: boolean; traits?: string[]; failedBuilds?: number }

class Cloud {
  readonly nodes = new Map<string, string>();
  private aggregateId = 0;
  constructor(readonly database: Database, readonly placement: PlacementService) {}

  static async create(): Promise<Cloud> {
    const database = await openDatabase('sqlite://:memory:');
    await migrateService(database, 'compute', computeMigrations);
    await migrateService(database, 'placement', placementMigrations);
    return new Cloud(database, new PlacementService({ database, logger }));
  }

  async addHost(host: string, o: HostOptions = {}): Promise<string> {
    const now = new Date();
    const serviceId = randomUUID(), nodeId = randomUUID();
    const beat = new Date(now.getTime() - (o.heartbeatAgoSeconds ?? 0) * 1000).toISOString();
    await this.database.db.insertInto('compute_services').values({
      id: serviceId, host, binary: COMPUTE_BINARY, topic: 'compute', disabled: o.disabled ? 1 : 0, forced_down: o.forcedDown ? 1 : 0,
      report_count: 1, version: 1, created_at: beat, updated_at: beat,
    }).execute();
    const vcpus = o.vcpus ?? 8, memoryMb = o.memoryMb ?? 8192, localGb = o.localGb ?? 100;
    await this.database.db.insertInto('compute_nodes').values({
      id: nodeId, service_id: serviceId, host, hypervisor_hostname: `${host}.node`, hypervisor_type: 'QEMU', hypervisor_version: 7002000,
      host_ip: '192.0.2.1', vcpus, memory_mb: memoryMb, local_gb: localGb, cpu_allocation_ratio: 1, ram_allocation_ratio: 1,
      disk_allocation_ratio: 1, reserved_host_memory_mb: 0, reserved_host_disk_mb: 0, reserved_host_cpus: 0, cpu_info: '{"arch":"x86_64"}',
      supported_instances: JSON.stringify([['x86_64', 'qemu', 'hvm']]), capabilities: '{}', traits: JSON.stringify(o.traits ?? []),
      failed_builds: o.failedBuilds ?? 0, created_at: now.toISOString(), updated_at: now.toISOString(),
    }).execute();
    await this.placement.ensureProvider({
      uuid: nodeId, name: `${host}.node`, traits: o.traits ?? [],
      inventories: { VCPU: { total: vcpus }, MEMORY_MB: { total: memoryMb }, DISK_GB: { total: localGb } },
    });
    this.nodes.set(host, nodeId);
    return nodeId;
  }

  /** An aggregate with these hosts and metadata; mirrored into Placement aggregates unless told not to. */
  async addAggregate(hosts: string[], metadata: Record<string, string>, mirror = true): Promise<string> {
    const id = ++this.aggregateId, uuid = randomUUID();
    await this.database.db.insertInto('compute_aggregates').values({ id, uuid, name: `agg${id}`, created_at: new Date().toISOString() }).execute();
    for (const [key, value] of Object.entries(metadata)) await this.database.db.insertInto('compute_aggregate_metadata').values({ aggregate_id: id, key, value }).execute();
    for (const host of hosts) {
      await this.database.db.insertInto('compute_aggregate_hosts').values({ aggregate_id: id, host }).execute();
      if (mirror) {
        const rp = this.nodes.get(host)!;
        await this.placement.setProviderAggregates(rp, [...await this.placement.getProviderAggregates(rp), uuid]);
      }
    }
    return uuid;
  }

  /** A live instance on a host, as the conductor records it (flavor snapshot included). */
  async addInstance(id: string, host: string, flavor = { vcpus: 1, memoryMb: 512, rootGb: 1, ephemeralGb: 0, swapMb: 0 }): Promise<void> {
    const now = new Date().toISOString();
    await this.database.db.insertInto('compute_instances').values({
      id, name: id, project_id: 'p', user_id: 'u', hostname: id, host, node: `${host}.node`, flavor_id: 'f', flavor: JSON.stringify(flavor),
      vm_state: 'active', reservation_id: 'r-1', request: '{}', created_at: now, updated_at: now,
    }).execute();
  }

  scheduler(config: ConfigValues = {}, extra: { placement?: SchedulerPlacement; random?: () => number } = {}): Scheduler {
    return createScheduler({ config: new Config(config, {}), database: this.database, placement: extra.placement ?? this.placement, logger, random: extra.random });
  }

  async allocationsOf(consumer: string): Promise<Record<string, Record<string, number>>> {
    const a = await this.placement.getAllocations(consumer);
    return Object.fromEntries(Object.entries(a.allocations).map(([rp, v]) => [rp, v.resources]));
  }
}

const uuids = (n: number) => Array.from({ length: n }, () => randomUUID());

describe('scheduler end to end (SQLite, real Placement)', () => {
  let cloud: Cloud;
  let schedulers: Scheduler[] = [];
  const make = (config: ConfigValues = {}, extra: Parameters<Cloud['scheduler']>[1] = {}) => {
    const s = cloud.scheduler(config, extra);
    schedulers.push(s);
    return s;
  };
  beforeEach(async () => { cloud = await Cloud.create(); schedulers = []; });
  afterEach(async () => { for (const s of schedulers) await s.close(); await cloud.database.close(); });

  it('reads host states: liveness, zones, instances and usage', async () => {
    await cloud.addHost('up');
    await cloud.addHost('stale', { heartbeatAgoSeconds: 120 });
    await cloud.addHost('forced', { forcedDown: true });
    await cloud.addHost('off', { disabled: true, failedBuilds: 2 });
    await cloud.addAggregate(['up'], { availability_zone: 'az1' });
    await cloud.addInstance('i-1', 'up', { vcpus: 2, memoryMb: 1024, rootGb: 10, ephemeralGb: 0, swapMb: 1024 });
    const states = await new HostManager({ config: new Config({}, {}), database: cloud.database }).getHostStates();
    const by = Object.fromEntries(states.map((s) => [s.host, s]));
    assert.equal(by.up.service.up, true);
    assert.equal(by.stale.service.up, false, 'heartbeat older than service_down_time');
    assert.equal(by.forced.service.up, false, 'forced down');
    assert.equal(by.off.service.disabled, true);
    assert.equal(by.off.failedBuilds, 2);
    assert.equal(by.up.availabilityZone, 'az1');
    assert.equal(by.stale.availabilityZone, 'nova');
    assert.deepEqual([...by.up.instanceUuids], ['i-1']);
    assert.deepEqual(by.up.used, { VCPU: 2, MEMORY_MB: 1024, DISK_GB: 11 });
    assert.equal(by.up.freeRamMb, 8192 - 1024);
    await cloud.addInstance('i-2', 'up');
    const named = await new HostManager({ config: new Config({}, {}), database: cloud.database }).getHostStates({ instances: ['i-2', 'unknown'] });
    const up = named.find((s) => s.host === 'up')!;
    assert.deepEqual([...up.instanceUuids], ['i-2'], 'only the named instances are read');
    assert.equal(up.numInstances, 2, 'but all are counted');
    assert.deepEqual(up.used, { VCPU: 0, MEMORY_MB: 0, DISK_GB: 0 }, 'usage is left to Placement');
    const lenient = await new HostManager({ config: new Config({ DEFAULT: { service_down_time: '300', default_availability_zone: 'zz' } }, {}), database: cloud.database }).getHostStates();
    assert.equal(lenient.find((s) => s.host === 'stale')!.service.up, true);
    assert.equal(lenient.find((s) => s.host === 'stale')!.availabilityZone, 'zz');
  });

  it('keeps what it read of the hosts between calls and still sees every change', async () => {
    let nowMs = Date.now();
    const manager = new HostManager({ config: new Config({}, {}), database: cloud.database, now: () => new Date(nowMs) });
    const db = cloud.database.db;
    await cloud.addHost('a');
    await cloud.addHost('b');
    const read = async () => Object.fromEntries((await manager.getHostStates({ instances: [] })).map((s) => [s.host, s]));
    let by = await read();
    assert.deepEqual([by.a.service.up, by.a.service.disabled, by.b.service.up, by.b.service.disabled], [true, false, true, false]);

    await db.updateTable('compute_services').set({ disabled: 1, disabled_reason: 'maintenance' }).where('host', '=', 'b').execute();
    // Later than the row's own updated_at (written with the real clock by addHost), however slow the machine.
    await db.updateTable('compute_nodes').set({ traits: '["CUSTOM_NEW"]', updated_at: new Date(Date.now() + 1000).toISOString() }).where('host', '=', 'a').execute();
    await db.updateTable('compute_nodes').set({ failed_builds: 3 }).where('host', '=', 'a').execute();
    await cloud.addAggregate(['a'], { availability_zone: 'az9' });
    by = await read();
    assert.equal(by.b.service.disabled, true, 'a disabled service is seen at once');
    assert.equal(by.b.service.disabledReason, 'maintenance');
    assert.deepEqual(by.a.traits, ['CUSTOM_NEW'], 'a node whose updated_at changed is read again');
    assert.equal(by.a.failedBuilds, 3);
    assert.equal(by.a.availabilityZone, 'az9');

    nowMs += 61_000;
    by = await read();
    assert.deepEqual([by.a.service.up, by.b.service.up], [false, false], 'no heartbeat for service_down_time: down');
    await db.updateTable('compute_services').set({ updated_at: new Date(nowMs).toISOString() }).where('host', '=', 'a').execute();
    await db.updateTable('compute_services').set({ forced_down: 1 }).where('host', '=', 'b').execute();
    by = await read();
    assert.equal(by.a.service.up, true, 'a heartbeat again: up at once');
    assert.equal(by.b.service.forcedDown, true);

    await cloud.addHost('c');
    await db.deleteFrom('compute_nodes').where('host', '=', 'b').execute();
    await db.deleteFrom('compute_services').where('host', '=', 'b').execute();
    by = await read();
    assert.deepEqual(Object.keys(by).sort(), ['a', 'c']);
    assert.equal(by.c.service.disabled, false);
  });

  it('picks the best weighed host, claims it in Placement and returns alternates', async () => {
    await cloud.addHost('small', { memoryMb: 2048 });
    await cloud.addHost('big', { memoryMb: 16384 });
    await cloud.addHost('medium', { memoryMb: 8192 });
    await cloud.addHost('tiny', { memoryMb: 1024 });
    const [id] = uuids(1);
    const [selection] = await make().selectDestinations(makeSpec({ instanceUuids: [id] }));
    assert.equal(selection.host, 'big');
    assert.equal(selection.nodename, 'big.node');
    assert.equal(selection.providerUuid, cloud.nodes.get('big'));
    assert.deepEqual(await cloud.allocationsOf(id), { [cloud.nodes.get('big')!]: { VCPU: 1, MEMORY_MB: 512, DISK_GB: 1 } });
    assert.deepEqual(selection.alternates.map((a) => a.host), ['medium', 'small'], 'max_attempts 3: two alternates, best first');
    assert.deepEqual(selection.alternates[0].allocationRequest.allocations, { [cloud.nodes.get('medium')!]: { resources: { VCPU: 1, MEMORY_MB: 512, DISK_GB: 1 } } });
    assert.deepEqual(await cloud.allocationsOf(selection.alternates[0].host), {}, 'alternates are not claimed');

    const [none] = await make({ scheduler: { max_attempts: '1' } }).selectDestinations(makeSpec({ instanceUuids: uuids(1) }));
    assert.deepEqual(none.alternates, []);
    const stacked = await make({ filter_scheduler: { ram_weight_multiplier: '-1' } }).selectDestinations(makeSpec({ instanceUuids: uuids(1) }));
    assert.equal(stacked[0].host, 'tiny', 'a negative multiplier stacks');
  });

  it('NoValidHost when Placement has no candidate, saying what was asked', async () => {
    await cloud.addHost('a', { traits: ['CUSTOM_X'] });
    const scheduler = make();
    await assert.rejects(scheduler.selectDestinations(makeSpec({}, { vcpus: 64, extraSpecs: { 'trait:CUSTOM_X': 'required' } })), (err: Error) => {
      assert.ok(err instanceof NoValidHost);
      assert.equal(err.message, 'No valid host was found. There are not enough hosts available: Placement found no host with VCPU=64, MEMORY_MB=512, DISK_GB=1 (required traits CUSTOM_X).');
      return true;
    });
    await assert.rejects(scheduler.selectDestinations(makeSpec({}, { extraSpecs: { 'trait:CUSTOM_Y': 'required' } })),
      { message: 'No valid host was found. There are not enough hosts available: Placement found no host with VCPU=1, MEMORY_MB=512, DISK_GB=1 (required traits CUSTOM_Y).' });
    const [ok] = await scheduler.selectDestinations(makeSpec({}, { extraSpecs: { 'trait:CUSTOM_X': 'required' } }));
    assert.equal(ok.host, 'a');
  });

  it('NoValidHost when the filters remove every host, with per-filter counts', async () => {
    await cloud.addHost('a');
    await cloud.addHost('b');
    await cloud.addHost('c', { heartbeatAgoSeconds: 600 });
    await cloud.addAggregate(['c'], { availability_zone: 'az1' });
    const spec = makeSpec({ availabilityZone: 'az1' });
    await assert.rejects(make({ scheduler: { query_placement_for_availability_zone: 'false' } }).selectDestinations(spec), (err: Error) => {
      assert.ok(err instanceof NoValidHost);
      assert.equal(err.message, 'No valid host was found. Filter ComputeFilter returned 0 hosts; removed by filter: AvailabilityZoneFilter 2 of 3, ComputeFilter 1 of 1.');
      return true;
    });
    // With the AZ prefilter Placement only offers the zone's host.
    await assert.rejects(make().selectDestinations(spec),
      { message: 'No valid host was found. Filter ComputeFilter returned 0 hosts; removed by filter: ComputeFilter 1 of 1.' });
    await assert.rejects(make().selectDestinations(makeSpec({ availabilityZone: 'elsewhere' })),
      { message: 'No valid host was found. Filter AvailabilityZoneFilter returned 0 hosts; removed by filter: AvailabilityZoneFilter 3 of 3.' });
    const [nova] = await make().selectDestinations(makeSpec({ availabilityZone: 'nova' }));
    assert.ok(['a', 'b'].includes(nova.host), 'hosts in no zoned aggregate are in the default zone');
  });

  it('the AZ prefilter asks Placement for the zone\'s aggregates', async () => {
    await cloud.addHost('a', { memoryMb: 16384 });
    await cloud.addHost('b', { memoryMb: 4096 });
    await cloud.addHost('c', { memoryMb: 2048 });
    await cloud.addAggregate(['b', 'c'], { availability_zone: 'az1' });
    const queries: unknown[] = [];
    const spy: SchedulerPlacement = {
      getAllocationCandidates: async (q) => { queries.push(q); return cloud.placement.getAllocationCandidates(q); },
      putAllocations: (c, b) => cloud.placement.putAllocations(c, b),
      deleteAllocations: (c) => cloud.placement.deleteAllocations(c),
    };
    const [s] = await make({}, { placement: spy }).selectDestinations(makeSpec({ availabilityZone: 'az1' }));
    assert.equal(s.host, 'b');
    assert.deepEqual(s.alternates.map((a) => a.host), ['c'], 'only zone members are candidates');
    assert.equal((queries[0] as { unsuffixed: { memberOf: string[][] } }).unsuffixed.memberOf.length, 1);
    assert.equal((queries[0] as { limit: number }).limit, 1000);
  });

  it('anti-affinity spreads 3 instances over 3 hosts, and fails on 2 hosts releasing its claims', async () => {
    await cloud.addHost('a');
    await cloud.addHost('b');
    await cloud.addHost('c');
    const ids = uuids(3);
    const group = { id: 'g1', policy: 'anti-affinity' as const, rules: {}, members: ids };
    const selections = await make().selectDestinations(makeSpec({ instanceUuids: ids, group }));
    assert.deepEqual(selections.map((s) => s.instanceUuid), ids);
    assert.equal(new Set(selections.map((s) => s.host)).size, 3);
    for (const s of selections) assert.deepEqual(await cloud.allocationsOf(s.instanceUuid), { [s.providerUuid]: { VCPU: 1, MEMORY_MB: 512, DISK_GB: 1 } });
    assert.deepEqual(selections[0].alternates, [], 'every host is selected: no alternates left');

    const two = await Cloud.create();
    try {
      await two.addHost('x');
      await two.addHost('y');
      const more = uuids(3);
      const s2 = two.scheduler();
      await assert.rejects(s2.selectDestinations(makeSpec({ instanceUuids: more, group: { ...group, members: more } })), {
        message: 'No valid host was found. Filter ServerGroupAntiAffinityFilter returned 0 hosts; removed by filter: ServerGroupAntiAffinityFilter 2 of 2.',
      });
      for (const id of more) assert.deepEqual(await two.allocationsOf(id), {}, 'the request released what it had claimed');
      const twoPerHost = await s2.selectDestinations(makeSpec({ instanceUuids: more, group: { ...group, members: more, rules: { max_server_per_host: 2 } } }));
      const counts = twoPerHost.reduce<Record<string, number>>((m, s) => ({ ...m, [s.host]: (m[s.host] ?? 0) + 1 }), {});
      assert.deepEqual(Object.values(counts).sort(), [1, 2]);
    } finally { await two.database.close(); }
  });

  it('anti-affinity avoids hosts of existing members', async () => {
    await cloud.addHost('a', { memoryMb: 16384 });
    await cloud.addHost('b');
    await cloud.addInstance('old-member', 'a');
    const [id] = uuids(1);
    const [s] = await make().selectDestinations(makeSpec({ instanceUuids: [id], group: { id: 'g', policy: 'anti-affinity', rules: {}, members: ['old-member', id] } }));
    assert.equal(s.host, 'b');
  });

  it('affinity keeps the group together', async () => {
    await cloud.addHost('a', { memoryMb: 16384 });
    await cloud.addHost('b', { memoryMb: 4096 });
    await cloud.addHost('c', { memoryMb: 8192 });
    await cloud.addInstance('member-0', 'b');
    const ids = uuids(2);
    const group = { id: 'g', policy: 'affinity' as const, rules: {}, members: ['member-0', ...ids] };
    const selections = await make().selectDestinations(makeSpec({ instanceUuids: ids, group }));
    assert.deepEqual(selections.map((s) => s.host), ['b', 'b'], 'where the existing member is, not the emptiest host');
    const fresh = uuids(3);
    const together = await make().selectDestinations(makeSpec({ instanceUuids: fresh, group: { id: 'g2', policy: 'affinity', rules: {}, members: fresh } }));
    assert.deepEqual(together.map((s) => s.host), ['a', 'a', 'a']);
    await assert.rejects(make().selectDestinations(makeSpec({ instanceUuids: uuids(1), group: { id: 'g3', policy: 'affinity', rules: {}, members: ['member-0'] }, ignoreHosts: ['b'] })),
      { message: 'No valid host was found. Filter ServerGroupAffinityFilter returned 0 hosts; removed by filter: RetryFilter 1 of 3, ServerGroupAffinityFilter 2 of 2.' });
  });

  it('soft anti-affinity spreads by weight but still places when hosts run out', async () => {
    await cloud.addHost('a');
    await cloud.addHost('b');
    const ids = uuids(3);
    const selections = await make().selectDestinations(makeSpec({ instanceUuids: ids, group: { id: 'g', policy: 'soft-anti-affinity', rules: {}, members: ids } }));
    const hosts = selections.map((s) => s.host);
    assert.notEqual(hosts[0], hosts[1]);
    assert.equal(hosts.length, 3);
  });

  it('consumes in-request: the resource guards and weighers see the request\'s own instances', async () => {
    await cloud.addHost('a', { memoryMb: 4096 });
    await cloud.addHost('b', { memoryMb: 3072 });
    const spread = await make().selectDestinations(makeSpec({ instanceUuids: uuids(2) }, { memoryMb: 2048 }));
    assert.deepEqual(spread.map((s) => s.host), ['a', 'b'], 'a has 2048 left after the first, b 3072');
    const fresh = await Cloud.create();
    try {
      await fresh.addHost('a', { memoryMb: 4096 });
      await fresh.addHost('b', { memoryMb: 3072 });
      const guarded = await fresh.scheduler({ filter_scheduler: { ram_weight_multiplier: '-1' } })
        .selectDestinations(makeSpec({ instanceUuids: uuids(2) }, { memoryMb: 3000 }));
      assert.deepEqual(guarded.map((s) => s.host), ['b', 'a'], 'stacking would reuse b, but RamFilter knows it is full');
    } finally { await fresh.database.close(); }
  });

  it('on a claim Conflict it tries the next best host', async () => {
    await cloud.addHost('a', { memoryMb: 16384 });
    await cloud.addHost('b', { memoryMb: 8192 });
    await cloud.addHost('c', { memoryMb: 4096 });
    const racer = randomUUID();
    let raced = false;
    // The real Placement, with another consumer taking host a's memory between candidates and claim.
    const racing: SchedulerPlacement = {
      getAllocationCandidates: (q) => cloud.placement.getAllocationCandidates(q),
      putAllocations: async (consumer, body) => {
        if (!raced) {
          raced = true;
          await cloud.placement.putAllocations(racer, { allocations: { [cloud.nodes.get('a')!]: { resources: { MEMORY_MB: 16384 } } }, projectId: 'p2', userId: 'u2', consumerGeneration: null });
        }
        return cloud.placement.putAllocations(consumer, body);
      },
      deleteAllocations: (c) => cloud.placement.deleteAllocations(c),
    };
    const [id] = uuids(1);
    const [s] = await make({}, { placement: racing }).selectDestinations(makeSpec({ instanceUuids: [id] }));
    assert.equal(s.host, 'b');
    assert.deepEqual(await cloud.allocationsOf(id), { [cloud.nodes.get('b')!]: { VCPU: 1, MEMORY_MB: 512, DISK_GB: 1 } });
    assert.deepEqual(s.alternates.map((a) => a.host), ['c'], 'the refused host is no alternate');
  });

  it('NoValidHost when Placement refuses every claim', async () => {
    await cloud.addHost('a');
    const racing: SchedulerPlacement = {
      getAllocationCandidates: (q) => cloud.placement.getAllocationCandidates(q),
      putAllocations: async (consumer, body) => {
        await cloud.placement.putAllocations(randomUUID(), { allocations: { [cloud.nodes.get('a')!]: { resources: { VCPU: 8 } } }, projectId: 'p', userId: 'u', consumerGeneration: null });
        return cloud.placement.putAllocations(consumer, body);
      },
      deleteAllocations: (c) => cloud.placement.deleteAllocations(c),
    };
    await assert.rejects(make({}, { placement: racing }).selectDestinations(makeSpec()),
      { message: 'No valid host was found. There are not enough hosts available: Placement refused the claim on every host that passed the filters (a).' });
  });

  it('honours ignoreHosts, a requested destination and different_host', async () => {
    await cloud.addHost('a', { memoryMb: 16384 });
    await cloud.addHost('b', { disabled: true });
    await cloud.addHost('c');
    await cloud.addInstance('neighbour', 'a');
    const s = make();
    assert.equal((await s.selectDestinations(makeSpec({ instanceUuids: uuids(1), ignoreHosts: ['a'] })))[0].host, 'c');
    assert.equal((await s.selectDestinations(makeSpec({ instanceUuids: uuids(1), schedulerHints: { different_host: ['neighbour'] } })))[0].host, 'c',
      'DifferentHostFilter is enabled by default: the emptier host a is avoided');
    const noHints = make({ filter_scheduler: { enabled_filters: 'ComputeFilter' } });
    assert.equal((await noHints.selectDestinations(makeSpec({ instanceUuids: uuids(1), schedulerHints: { different_host: ['neighbour'] } })))[0].host, 'a',
      'without DifferentHostFilter the hint does nothing');
    const forced = await s.selectDestinations(makeSpec({ instanceUuids: uuids(1), requestedHost: 'b' }));
    assert.equal(forced[0].host, 'b', 'a forced host skips the filters (even a disabled service), as in Nova');
    assert.deepEqual(forced[0].alternates, []);
    const byNode = await s.selectDestinations(makeSpec({ instanceUuids: uuids(1), requestedNode: 'c.node' }));
    assert.equal(byNode[0].nodename, 'c.node');
    await assert.rejects(s.selectDestinations(makeSpec({ requestedHost: 'nowhere' })),
      { message: 'No valid host was found. The requested destination (host nowhere) is not a compute node.' });
    const withHint = make({ filter_scheduler: { enabled_filters: 'ComputeFilter,DifferentHostFilter,SameHostFilter' } });
    assert.equal((await withHint.selectDestinations(makeSpec({ instanceUuids: uuids(1), schedulerHints: { different_host: 'neighbour' } })))[0].host, 'c');
    assert.equal((await withHint.selectDestinations(makeSpec({ instanceUuids: uuids(1), schedulerHints: { same_host: ['neighbour'] } })))[0].host, 'a');
  });

  it('BuildFailureWeigher steers away from failing hosts', async () => {
    await cloud.addHost('a', { memoryMb: 16384, failedBuilds: 1 });
    await cloud.addHost('b');
    assert.equal((await make().selectDestinations(makeSpec()))[0].host, 'b');
  });

  it('host_subset_size picks at random among the N best', async () => {
    await cloud.addHost('a', { memoryMb: 16384 });
    await cloud.addHost('b', { memoryMb: 8192 });
    await cloud.addHost('c', { memoryMb: 1024 });
    const picks = new Set<string>();
    let r = 0;
    const seq = [0.1, 0.9, 0.5, 0.7];
    const s = make({ filter_scheduler: { host_subset_size: '2', weight_classes: 'RAMWeigher' } }, { random: () => seq[r++ % seq.length] });
    for (let i = 0; i < 4; i++) picks.add((await s.selectDestinations(makeSpec({ instanceUuids: uuids(1) })))[0].host);
    assert.deepEqual([...picks].sort(), ['a', 'b']);
  });

  it('the random driver filters but does not weigh', async () => {
    await cloud.addHost('a', { memoryMb: 16384 });
    await cloud.addHost('b', { disabled: true });
    await cloud.addHost('c', { memoryMb: 1024 });
    const s = make({ scheduler: { driver: 'random' } }, { random: () => 0 });
    assert.equal(s.driver, 'random');
    const [sel] = await s.selectDestinations(makeSpec());
    assert.equal(sel.host, 'c', 'the shuffle puts c first; weighing would have chosen a');
    assert.deepEqual(sel.alternates.map((a) => a.host), ['a'], 'the disabled host is filtered out');
    const seen = new Set<string>();
    const real = make({ scheduler: { driver: 'random' } });
    for (let i = 0; i < 12; i++) seen.add((await real.selectDestinations(makeSpec({ instanceUuids: uuids(1) }, { vcpus: 0, memoryMb: 64, rootGb: 0 })))[0].host);
    assert.ok(!seen.has('b'));
    assert.deepEqual([...seen].sort(), ['a', 'c']);
  });

  it('the caching driver serves cached host states, updates them after each claim and refreshes in the background', async () => {
    await cloud.addHost('a', { memoryMb: 16384 });
    await cloud.addHost('b');
    const s = make({ scheduler: { driver: 'caching', cache_refresh_seconds: '1' } });
    const first = randomUUID();
    const group = { id: 'g', policy: 'anti-affinity' as const, rules: {}, members: [first] };
    assert.equal((await s.selectDestinations(makeSpec({ instanceUuids: [first], group })))[0].host, 'a');
    // No compute_instances row records `first` on a: only the cache's in-process update knows it.
    const second = randomUUID();
    assert.equal((await s.selectDestinations(makeSpec({ instanceUuids: [second], group: { ...group, members: [first, second] } })))[0].host, 'b');
    const unfiltered = make();
    assert.equal((await unfiltered.selectDestinations(makeSpec({ instanceUuids: [randomUUID()], group: { ...group, members: [first, randomUUID()] } })))[0].host, 'a',
      'the filter driver reads the tables, which do not show it yet');

    await cloud.addHost('z-huge', { memoryMb: 65536 });
    assert.notEqual((await s.selectDestinations(makeSpec({ instanceUuids: uuids(1) })))[0].host, 'z-huge', 'not in the cache yet');
    await new Promise((r) => setTimeout(r, 1300));
    assert.equal((await s.selectDestinations(makeSpec({ instanceUuids: uuids(1) })))[0].host, 'z-huge', 'picked up by the background refresh');
    assert.equal((await s.selectDestinations(makeSpec({ instanceUuids: [randomUUID()], group: { ...group, members: [first, randomUUID()] } })))[0].host !== 'a', true,
      'claims survive the refresh while the tables lag');
  });

  it('refuses an unknown driver, filter or weigher', () => {
    assert.throws(() => cloud.scheduler({ scheduler: { driver: 'magic' } }), /unknown driver "magic"/);
    assert.throws(() => cloud.scheduler({ filter_scheduler: { enabled_filters: 'Nope' } }), /unknown filter/);
    assert.throws(() => cloud.scheduler({ filter_scheduler: { weight_classes: 'Nope' } }), /unknown weigher/);
  });
});

export type { RequestSpec };
