// Placement storage and claims on every engine: providers, trees, inventories, traits,
// aggregates, allocations and usages behave the same on SQLite, PostgreSQL and MariaDB, and
// concurrent claims from two "controller processes" (two connections pools, two services with
// their own in-memory views) never oversubscribe a provider.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { BadRequest, Conflict, NotFound } from '../core/errors.js';
import { openDatabase, migrateService, type Database } from '../db/index.js';
import { testEngines, type TestDatabase } from '../db/testing.js';
import { placementMigrations } from './db/migrations.js';
import { codeOf } from './errors.js';
import { PlacementService } from './service.js';

const compute = { VCPU: { total: 8, allocation_ratio: 2 }, MEMORY_MB: { total: 4096, reserved: 512 }, DISK_GB: { total: 100, max_unit: 50, step_size: 5 } };

async function rejectsWithCode(promise: Promise<unknown>, type: Function, code?: string): Promise<void> {
  await assert.rejects(promise, (err: any) => {
    assert.ok(err instanceof type, `expected ${type.name}, got ${err?.constructor?.name}: ${err?.message}`);
    if (code) assert.equal(codeOf(err), code);
    return true;
  });
}

/** Same database, reached the way a second controller process would: its own connections. */
async function openTwice(engine: string, target: TestDatabase): Promise<{ a: Database; b: Database; cleanup: () => void }> {
  if (engine !== 'sqlite') {
    return { a: await openDatabase(target.connection), b: await openDatabase(target.connection), cleanup: () => undefined };
  }
  const dir = mkdtempSync(join(tmpdir(), 'nubo-placement-'));
  const url = `sqlite://${join(dir, 'placement.sqlite')}`;
  return { a: await openDatabase(url), b: await openDatabase(url), cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

for (const engine of testEngines()) {
  describe(`placement storage on ${engine.engine}`, { skip: engine.skip }, () => {
    it('keeps providers, trees, inventories, traits, aggregates, allocations and usages', async () => {
      const target = await engine.create();
      const database = await openDatabase(target.connection);
      try {
        await migrateService(database, 'placement', placementMigrations);
        assert.deepEqual(await migrateService(database, 'placement', placementMigrations), []);
        const placement = new PlacementService({ database });

        // Providers and trees.
        const root = await placement.createProvider({ name: 'cn1' });
        assert.equal(root.generation, 0);
        assert.equal(root.root_provider_uuid, root.uuid);
        const numa = await placement.createProvider({ name: 'cn1-numa0', parent_provider_uuid: root.uuid });
        assert.equal(numa.root_provider_uuid, root.uuid);
        await rejectsWithCode(placement.createProvider({ name: 'cn1' }), Conflict, 'placement.duplicate_name');
        await rejectsWithCode(placement.createProvider({ name: 'x', parent_provider_uuid: randomUUID() }), BadRequest);
        await rejectsWithCode(placement.getProvider(randomUUID()), NotFound);
        assert.deepEqual((await placement.listProviders({ inTree: numa.uuid })).map((p) => p.name), ['cn1', 'cn1-numa0']);
        await rejectsWithCode(placement.updateProvider(numa.uuid, { name: 'n', parent_provider_uuid: null }, { allowReparent: false }), BadRequest);
        await rejectsWithCode(placement.updateProvider(root.uuid, { name: 'cn1', parent_provider_uuid: numa.uuid }, { allowReparent: true }), BadRequest);
        await rejectsWithCode(placement.deleteProvider(root.uuid), Conflict, 'placement.resource_provider.cannot_delete_parent');

        // Inventories with generations.
        const inv = await placement.setInventories(root.uuid, 0, compute);
        assert.equal(inv.generation, 1);
        assert.deepEqual(inv.inventories.MEMORY_MB, { total: 4096, reserved: 512, min_unit: 1, max_unit: 2147483647, step_size: 1, allocation_ratio: 1 });
        await rejectsWithCode(placement.setInventories(root.uuid, 0, compute), Conflict, 'placement.concurrent_update');
        await rejectsWithCode(placement.setInventories(root.uuid, 1, { VCPU: { total: 1, reserved: 2 } }), BadRequest);
        await rejectsWithCode(placement.setInventories(root.uuid, 1, { CUSTOM_NOPE: { total: 1 } }), BadRequest);
        await placement.createResourceClass('CUSTOM_GOLD');
        await rejectsWithCode(placement.createResourceClass('CUSTOM_GOLD'), Conflict);
        await rejectsWithCode(placement.createResourceClass('GOLD'), BadRequest);
        await placement.addInventory(numa.uuid, 0, 'CUSTOM_GOLD', { total: 3 });
        await rejectsWithCode(placement.addInventory(numa.uuid, 1, 'CUSTOM_GOLD', { total: 3 }), Conflict);
        await rejectsWithCode(placement.deleteResourceClass('CUSTOM_GOLD'), Conflict);
        await rejectsWithCode(placement.deleteResourceClass('VCPU'), BadRequest);

        // Traits and aggregates.
        assert.equal(await placement.ensureTrait('CUSTOM_FAST'), true);
        assert.equal(await placement.ensureTrait('CUSTOM_FAST'), false);
        await rejectsWithCode(placement.setProviderTraits(root.uuid, 1, ['CUSTOM_SLOW']), BadRequest);
        const traits = await placement.setProviderTraits(root.uuid, 1, ['HW_CPU_X86_AVX2', 'CUSTOM_FAST', 'COMPUTE_NODE']);
        assert.deepEqual(traits, { generation: 2, traits: ['COMPUTE_NODE', 'CUSTOM_FAST', 'HW_CPU_X86_AVX2'] });
        await rejectsWithCode(placement.deleteTrait('CUSTOM_FAST'), Conflict);
        assert.deepEqual(await placement.listTraits({ prefix: 'CUSTOM_' }), ['CUSTOM_FAST']);
        assert.deepEqual(await placement.listTraits({ associated: true }), ['COMPUTE_NODE', 'CUSTOM_FAST', 'HW_CPU_X86_AVX2']);
        const agg = randomUUID();
        await placement.setProviderAggregates(root.uuid, [agg]);
        assert.deepEqual(await placement.getProviderAggregates(root.uuid), [agg]);
        await rejectsWithCode(placement.setProviderAggregates(root.uuid, [], 0), Conflict, 'placement.concurrent_update');

        // Allocations: capacity (8*2 VCPU, 4096-512 MB), constraints, consumer generations.
        const gen = (await placement.getProvider(root.uuid)).generation;
        const vm1 = randomUUID();
        await placement.putAllocations(vm1, { allocations: { [root.uuid]: { resources: { VCPU: 10, MEMORY_MB: 2048, DISK_GB: 20 } } }, projectId: 'p1', userId: 'u1', consumerGeneration: null });
        const got = await placement.getAllocations(vm1);
        assert.equal(got.consumerGeneration, 1);
        assert.deepEqual(got.allocations[root.uuid], { resources: { DISK_GB: 20, MEMORY_MB: 2048, VCPU: 10 }, generation: gen + 1 });
        assert.equal(got.projectId, 'p1');
        const vm2 = randomUUID();
        const tooMuch = { allocations: { [root.uuid]: { resources: { VCPU: 7 } } }, projectId: 'p1', userId: 'u2', consumerGeneration: null };
        await rejectsWithCode(placement.putAllocations(vm2, tooMuch), Conflict);
        await rejectsWithCode(placement.putAllocations(vm2, { ...tooMuch, allocations: { [root.uuid]: { resources: { DISK_GB: 55 } } } }), Conflict);
        await rejectsWithCode(placement.putAllocations(vm2, { ...tooMuch, allocations: { [root.uuid]: { resources: { DISK_GB: 7 } } } }), Conflict);
        await rejectsWithCode(placement.putAllocations(vm2, { ...tooMuch, allocations: { [numa.uuid]: { resources: { VCPU: 1 } } } }), Conflict);
        await rejectsWithCode(placement.putAllocations(vm2, { ...tooMuch, allocations: { [randomUUID()]: { resources: { VCPU: 1 } } } }), BadRequest);
        await rejectsWithCode(placement.putAllocations(vm1, { ...tooMuch, consumerGeneration: null }), Conflict, 'placement.concurrent_update');
        await rejectsWithCode(placement.putAllocations(vm1, { ...tooMuch, consumerGeneration: 5 }), Conflict, 'placement.concurrent_update');
        assert.deepEqual((await placement.getAllocations(vm2)).allocations, {}, 'a refused claim leaves nothing behind');
        await placement.putAllocations(vm2, { ...tooMuch, allocations: { [root.uuid]: { resources: { VCPU: 6 } }, [numa.uuid]: { resources: { CUSTOM_GOLD: 3 } } } });
        assert.deepEqual(await placement.usagesOfProject('p1'), { CUSTOM_GOLD: 3, DISK_GB: 20, MEMORY_MB: 2048, VCPU: 16 });
        assert.deepEqual(await placement.usagesOfProject('p1', 'u2'), { CUSTOM_GOLD: 3, VCPU: 6 });
        assert.deepEqual((await placement.getProviderUsages(root.uuid)).usages, { DISK_GB: 20, MEMORY_MB: 2048, VCPU: 16 });
        await rejectsWithCode(placement.setInventories(root.uuid, (await placement.getProvider(root.uuid)).generation, { MEMORY_MB: { total: 4096 } }), Conflict, 'placement.inventory.inuse');
        await rejectsWithCode(placement.deleteInventory(numa.uuid, 'CUSTOM_GOLD'), Conflict, 'placement.inventory.inuse');
        await rejectsWithCode(placement.deleteProvider(numa.uuid), Conflict, 'placement.resource_provider.inuse');

        // POST /allocations semantics: a move from vm1 to a migration consumer, atomically.
        const migration = randomUUID();
        await rejectsWithCode(placement.postAllocations({
          [vm1]: { allocations: {}, projectId: 'p1', userId: 'u1', consumerGeneration: 1 },
          [migration]: { allocations: { [root.uuid]: { resources: { VCPU: 99 } } }, projectId: 'p1', userId: 'u1', consumerGeneration: null },
        }), Conflict);
        assert.equal((await placement.getAllocations(vm1)).allocations[root.uuid].resources.VCPU, 10, 'nothing moved when one part failed');
        await placement.postAllocations({
          [vm1]: { allocations: {}, projectId: 'p1', userId: 'u1', consumerGeneration: 1 },
          [migration]: { allocations: { [root.uuid]: { resources: { VCPU: 10, MEMORY_MB: 2048 } } }, projectId: 'p1', userId: 'u1', consumerGeneration: null },
        });
        assert.deepEqual(await placement.getAllocations(vm1), { allocations: {}, consumerGeneration: null });
        assert.equal((await placement.getAllocations(migration)).allocations[root.uuid].resources.MEMORY_MB, 2048);
        assert.equal(await placement.deleteAllocations(migration), true);
        assert.equal(await placement.deleteAllocations(migration), false);

        // The agents' helper: idempotent, no generation bump when nothing changes.
        const host = randomUUID();
        await placement.ensureProvider({ uuid: host, name: 'cn2', inventories: { VCPU: { total: 4, reserved: 0, min_unit: 1, max_unit: 4, step_size: 1, allocation_ratio: 16 } }, traits: ['COMPUTE_NODE', 'CUSTOM_ZONE_A'] });
        const first = await placement.getProvider(host);
        await placement.ensureProvider({ uuid: host, name: 'cn2', inventories: { VCPU: { total: 4, reserved: 0, min_unit: 1, max_unit: 4, step_size: 1, allocation_ratio: 16 } }, traits: ['COMPUTE_NODE', 'CUSTOM_ZONE_A'] });
        assert.equal((await placement.getProvider(host)).generation, first.generation);
        await placement.ensureProvider({ uuid: host, name: 'cn2', inventories: { VCPU: { total: 8 } }, traits: [] });
        assert.equal((await placement.getInventories(host)).inventories.VCPU.total, 8);
        assert.deepEqual((await placement.getProviderTraits(host)).traits, []);
        await placement.deleteProvider(host);
        await rejectsWithCode(placement.deleteProvider(host), NotFound);
      } finally {
        await database.close();
        await target.drop();
      }
    });

    it('never oversubscribes under concurrent claims from two processes, and both views stay exact', async () => {
      const target = await engine.create();
      const { a, b, cleanup } = await openTwice(engine.engine, target);
      try {
        await migrateService(a, 'placement', placementMigrations);
        const one = new PlacementService({ database: a });
        const two = new PlacementService({ database: b });
        const hosts: string[] = [];
        for (let i = 0; i < 2; i++) {
          const uuid = randomUUID();
          hosts.push(uuid);
          await one.ensureProvider({ uuid, name: `host-${i}`, inventories: { VCPU: { total: 5 }, MEMORY_MB: { total: 5000 } }, traits: [] });
        }
        // Both views see both hosts (two's view loads from scratch, one's catches up).
        const request = { unsuffixed: { resources: { VCPU: 1, MEMORY_MB: 100 } } };
        assert.equal((await two.getAllocationCandidates(request)).allocation_requests.length, 2);
        assert.equal((await one.getAllocationCandidates(request)).allocation_requests.length, 2);

        // 24 claims of 1 VCPU on hosts with 5 each, half through each process, all at once: exactly 10 succeed.
        const attempts = Array.from({ length: 24 }, (_, i) => {
          const service = i % 2 === 0 ? one : two;
          const host = hosts[i % 4 < 2 ? 0 : 1];
          return service.putAllocations(randomUUID(), { allocations: { [host]: { resources: { VCPU: 1, MEMORY_MB: 100 } } }, projectId: 'p', userId: 'u', consumerGeneration: null });
        });
        const results = await Promise.allSettled(attempts);
        const failures = results.filter((r) => r.status === 'rejected') as PromiseRejectedResult[];
        for (const f of failures) assert.ok(f.reason instanceof Conflict, `unexpected failure: ${f.reason?.stack ?? f.reason}`);
        assert.equal(results.length - failures.length, 10);
        for (const host of hosts) assert.equal((await one.getProviderUsages(host)).usages.VCPU, 5);

        // A new consumer created twice at once: one wins, the other gets a consumer generation conflict.
        const consumer = randomUUID();
        await one.setInventories(hosts[0], (await one.getProvider(hosts[0])).generation, { VCPU: { total: 50 }, MEMORY_MB: { total: 5000 } });
        const racing = await Promise.allSettled([one, two].map((s) => s.putAllocations(consumer, {
          allocations: { [hosts[0]]: { resources: { VCPU: 1 } } }, projectId: 'p', userId: 'u', consumerGeneration: null,
        })));
        assert.equal(racing.filter((r) => r.status === 'fulfilled').length, 1);
        const lost = racing.find((r) => r.status === 'rejected') as PromiseRejectedResult;
        assert.equal(codeOf(lost.reason), 'placement.concurrent_update');

        // What one process wrote, the other's candidates see at once.
        const candidates = await two.getAllocationCandidates({ unsuffixed: { resources: { VCPU: 40 } } });
        assert.deepEqual(candidates.allocation_requests.map((r) => Object.keys(r.allocations)[0]), [hosts[0]]);
        assert.deepEqual(candidates.provider_summaries[hosts[0]].resources.VCPU, { capacity: 50, used: 6 });
        await two.deleteProvider(hosts[1]).catch((err) => assert.ok(err instanceof Conflict));
        await one.setProviderAggregates(hosts[1], [randomUUID()]);
        assert.equal((await two.getProviderAggregates(hosts[1])).length, 1);
      } finally {
        await a.close();
        await b.close();
        cleanup();
        await target.drop();
      }
    });
  });
}
