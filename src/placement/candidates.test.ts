// Allocation candidates over real providers (SQLite in memory): single hosts, nested trees,
// granular groups and group_policy, traits (required, forbidden, any-of), aggregates,
// in_tree, root_required, same_subtree, limit, and usage taken into account.
import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { migrateService, openDatabase } from '../db/index.js';
import { placementMigrations } from './db/migrations.js';
import { PlacementService } from './service.js';

describe('allocation candidates', () => {
  let placement: PlacementService;
  const agg1 = randomUUID();
  const agg2 = randomUUID();
  const ids: Record<string, string> = {};

  before(async () => {
    const database = await openDatabase('sqlite://:memory:');
    await migrateService(database, 'placement', placementMigrations);
    placement = new PlacementService({ database });
    const host = async (name: string, vcpu: number, traits: string[], aggregates: string[], parent?: string, inventories?: Record<string, { total: number }>) => {
      ids[name] = randomUUID();
      await placement.ensureProvider({ uuid: ids[name], name, inventories: inventories ?? { VCPU: { total: vcpu }, MEMORY_MB: { total: 8192 }, DISK_GB: { total: 100 } }, traits, parentProviderUuid: parent });
      if (aggregates.length) await placement.setProviderAggregates(ids[name], aggregates);
    };
    await host('small', 2, ['COMPUTE_NODE'], [agg1]);
    await host('big', 16, ['COMPUTE_NODE', 'HW_CPU_X86_AVX2'], [agg2]);
    await host('ssd', 8, ['COMPUTE_NODE', 'STORAGE_DISK_SSD'], [agg1, agg2]);
    // A nested host: compute node with memory/disk, two NUMA children with VCPU, a NIC with bandwidth.
    await host('nested', 0, ['COMPUTE_NODE'], [], undefined, { MEMORY_MB: { total: 4096 }, DISK_GB: { total: 50 } });
    await host('numa0', 0, ['HW_NUMA_ROOT'], [], ids.nested, { VCPU: { total: 4 } });
    await host('numa1', 0, ['HW_NUMA_ROOT', 'CUSTOM_FAST'], [], ids.nested, { VCPU: { total: 4 } });
    await host('nic', 0, ['CUSTOM_PHYSNET_A'], [], ids.numa1, { NET_BW_EGR_KILOBIT_PER_SEC: { total: 1000 } });
  });

  const hostsOf = (c: { allocation_requests: { allocations: Record<string, unknown> }[] }) =>
    c.allocation_requests.map((r) => Object.keys(r.allocations).map((u) => Object.entries(ids).find(([, id]) => id === u)![0]).sort().join('+'));

  it('finds hosts with capacity, honours usage, traits, aggregates and limit', async () => {
    const all = await placement.getAllocationCandidates({ unsuffixed: { resources: { VCPU: 2, MEMORY_MB: 1024 } } });
    assert.deepEqual(hostsOf(all), ['small', 'big', 'ssd', 'nested+numa0', 'nested+numa1']);
    assert.deepEqual(all.provider_summaries[ids.small].resources.VCPU, { capacity: 2, used: 0 });
    assert.equal(all.provider_summaries[ids.nic].parent_provider_uuid, ids.numa1, 'summaries cover the whole tree');
    assert.equal(all.provider_summaries[ids.nic].root_provider_uuid, ids.nested);
    assert.deepEqual(all.allocation_requests[0].mappings, { '': [ids.small] });

    await placement.putAllocations(randomUUID(), { allocations: { [ids.small]: { resources: { VCPU: 1 } } }, projectId: 'p', userId: 'u', consumerGeneration: null });
    assert.deepEqual(hostsOf(await placement.getAllocationCandidates({ unsuffixed: { resources: { VCPU: 2 } } })), ['big', 'ssd', 'numa0', 'numa1']);

    assert.deepEqual(hostsOf(await placement.getAllocationCandidates({ unsuffixed: { resources: { VCPU: 1 }, required: ['HW_CPU_X86_AVX2'] } })), ['big']);
    assert.deepEqual(hostsOf(await placement.getAllocationCandidates({ unsuffixed: { resources: { VCPU: 1 }, forbidden: ['HW_CPU_X86_AVX2', 'HW_NUMA_ROOT'] } })), ['small', 'ssd']);
    assert.deepEqual(hostsOf(await placement.getAllocationCandidates({ unsuffixed: { resources: { VCPU: 1 }, requiredAny: [['STORAGE_DISK_SSD', 'HW_CPU_X86_AVX2']] } })), ['big', 'ssd']);
    assert.deepEqual(hostsOf(await placement.getAllocationCandidates({ unsuffixed: { resources: { VCPU: 1 }, memberOf: [[agg1]] } })), ['small', 'ssd']);
    assert.deepEqual(hostsOf(await placement.getAllocationCandidates({ unsuffixed: { resources: { VCPU: 1 }, memberOf: [[agg1], [agg2]] } })), ['ssd']);
    assert.deepEqual(hostsOf(await placement.getAllocationCandidates({ unsuffixed: { resources: { VCPU: 1 }, forbiddenAggregates: [agg2] } })), ['small', 'numa0', 'numa1']);
    assert.deepEqual(hostsOf(await placement.getAllocationCandidates({ unsuffixed: { resources: { VCPU: 1 }, inTree: ids.numa0 } })), ['numa0', 'numa1']);
    const limited = await placement.getAllocationCandidates({ unsuffixed: { resources: { VCPU: 1 } }, limit: 2 });
    assert.deepEqual(hostsOf(limited), ['small', 'big']);
    assert.deepEqual(Object.keys(limited.provider_summaries).sort(), [ids.small, ids.big].sort());
    assert.deepEqual(hostsOf(await placement.getAllocationCandidates({ unsuffixed: { resources: { VCPU: 1 } }, rootRequired: ['STORAGE_DISK_SSD'] })), ['ssd']);
    assert.deepEqual(hostsOf(await placement.getAllocationCandidates({ unsuffixed: { resources: { VCPU: 100 } } })), []);
  });

  it('places granular groups on single providers, with group_policy and same_subtree', async () => {
    // Two NUMA cells of 3 VCPU each: only the nested host's two children, isolated.
    const isolated = await placement.getAllocationCandidates({
      unsuffixed: { resources: { MEMORY_MB: 1024 } },
      granular: { '1': { resources: { VCPU: 3 }, required: ['HW_NUMA_ROOT'] }, '2': { resources: { VCPU: 3 }, required: ['HW_NUMA_ROOT'] } },
      groupPolicy: 'isolate',
    });
    assert.deepEqual(hostsOf(isolated), ['nested+numa0+numa1', 'nested+numa0+numa1']);
    assert.deepEqual(isolated.allocation_requests[0].mappings, { '': [ids.nested], '1': [ids.numa0], '2': [ids.numa1] });
    // Without isolation both groups may land on one cell only if it has room: 3 + 3 > 4, so the same two answers.
    const none = await placement.getAllocationCandidates({
      unsuffixed: { resources: {} },
      granular: { '1': { resources: { VCPU: 2 } }, '2': { resources: { VCPU: 2 } } },
      groupPolicy: 'none',
      limit: 100,
    });
    const nestedCombos = none.allocation_requests.filter((r) => r.allocations[ids.numa0] || r.allocations[ids.numa1]);
    assert.ok(nestedCombos.some((r) => r.allocations[ids.numa0]?.resources.VCPU === 4), 'both groups on one cell, summed');
    // VCPU with bandwidth from the same subtree: numa1 holds the NIC, numa0 does not.
    const subtree = await placement.getAllocationCandidates({
      unsuffixed: { resources: {} },
      granular: { _CPU: { resources: { VCPU: 1 } }, _NET: { resources: { NET_BW_EGR_KILOBIT_PER_SEC: 100 }, required: ['CUSTOM_PHYSNET_A'] } },
      groupPolicy: 'none',
      sameSubtree: [['_CPU', '_NET']],
    });
    assert.deepEqual(hostsOf(subtree), ['nic+numa1']);
    assert.deepEqual(subtree.allocation_requests[0].mappings, { _CPU: [ids.numa1], _NET: [ids.nic] });
    const forbiddenFast = await placement.getAllocationCandidates({
      unsuffixed: { resources: {} },
      granular: { '1': { resources: { VCPU: 1 }, required: ['HW_NUMA_ROOT'], forbidden: ['CUSTOM_FAST'] } },
    });
    assert.deepEqual(hostsOf(forbiddenFast), ['numa0']);
  });

  it('lists providers by their own resources, traits and aggregates', async () => {
    const names = async (filters: Parameters<PlacementService['listProviders']>[0]) => (await placement.listProviders(filters)).map((p) => p.name);
    assert.deepEqual(await names({ group: { resources: { VCPU: 4 } } }), ['big', 'ssd', 'numa0', 'numa1']);
    assert.deepEqual(await names({ group: { resources: {}, required: ['HW_NUMA_ROOT'], forbidden: ['CUSTOM_FAST'] } }), ['numa0']);
    assert.deepEqual(await names({ group: { resources: {}, memberOf: [[agg1, agg2]] } }), ['small', 'big', 'ssd']);
    assert.deepEqual(await names({ inTree: ids.nic }), ['nested', 'numa0', 'numa1', 'nic']);
    assert.deepEqual(await names({ name: 'big' }), ['big']);
  });
});
