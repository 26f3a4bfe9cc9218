// The Placement API over HTTP on the real all-in-one cloud: version discovery and
// microversions, errors in Placement's format, policy, resource providers and trees,
// inventories, resource classes, traits, aggregates, allocations, usages.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { assertError, startPlacementCloud, type PlacementCloud } from './harness.js';

describe('placement API', () => {
  let pc: PlacementCloud;
  before(async () => { pc = await startPlacementCloud(); });
  after(async () => { await pc?.close(); });

  it('discovers versions, negotiates microversions and is in the catalog', async () => {
    const root = await pc.call('GET', '/', { token: '' });
    assert.equal(root.status, 200, root.text);
    assert.equal(root.body.versions[0].min_version, '1.0');
    assert.equal(root.body.versions[0].max_version, '1.39');
    assert.equal(root.body.versions[0].status, 'CURRENT');
    const latest = await pc.get('/resource_providers', 'latest');
    assert.equal(latest.headers.get('openstack-api-version'), 'placement 1.39');
    assert.match(latest.headers.get('vary') ?? '', /openstack-api-version/);
    assert.equal((await pc.get('/resource_providers')).headers.get('openstack-api-version'), 'placement 1.0');
    assertError(await pc.get('/resource_providers', '1.99'), 406);
    assertError(await pc.get('/resource_providers', 'one'), 400);
    assertError(await pc.call('GET', '/resource_providers', { token: '' }), 401);
    assertError(await pc.get('/traits', '1.5'), 404, 'placement.undefined_code');
    assertError(await pc.get('/resource_providers', '1.30', { token: pc.demoToken }), 403);
    const catalog = await fetch(`${pc.cloud.url}/identity/v3/auth/catalog`, { headers: { 'X-Auth-Token': pc.adminToken } }).then((r) => r.json()) as any;
    assert.ok(catalog.catalog.some((s: any) => s.type === 'placement' && s.endpoints.some((e: any) => e.url.endsWith('/placement'))));
  });

  it('manages resource providers and trees with generations', async () => {
    const old = await pc.post('/resource_providers', { name: 'rp-old' });
    assert.equal(old.status, 201);
    assert.equal(old.text, '', 'no body before 1.20');
    const location = old.headers.get('location')!;
    assert.match(location, /\/placement\/resource_providers\/[0-9a-f-]{36}$/);
    const oldUuid = location.split('/').pop()!;
    const shown = await pc.get(`/resource_providers/${oldUuid}`, '1.0');
    assert.deepEqual(Object.keys(shown.body).sort(), ['generation', 'links', 'name', 'uuid']);
    assert.deepEqual(shown.body.links.map((l: any) => l.rel), ['self', 'inventories', 'usages']);

    const parent = await pc.post('/resource_providers', { name: 'cn-a', uuid: randomUUID() }, '1.20');
    assert.equal(parent.status, 201);
    assert.equal(parent.body.root_provider_uuid, parent.body.uuid);
    assert.equal(parent.body.parent_provider_uuid, null);
    assert.deepEqual(parent.body.links.map((l: any) => l.rel), ['self', 'inventories', 'usages', 'aggregates', 'traits', 'allocations']);
    const child = await pc.post('/resource_providers', { name: 'cn-a-numa0', parent_provider_uuid: parent.body.uuid }, '1.20');
    assert.equal(child.body.root_provider_uuid, parent.body.uuid);
    assertError(await pc.post('/resource_providers', { name: 'cn-a' }, '1.20'), 409, 'placement.duplicate_name');
    assertError(await pc.post('/resource_providers', { name: 'x', bogus: 1 }, '1.20'), 400);
    assertError(await pc.post('/resource_providers', { name: 'x', parent_provider_uuid: parent.body.uuid }, '1.13'), 400);
    assertError(await pc.get(`/resource_providers/${randomUUID()}`, '1.20'), 404, 'placement.resource_provider.not_found');

    const inTree = await pc.get(`/resource_providers?in_tree=${child.body.uuid}`, '1.14');
    assert.deepEqual(inTree.body.resource_providers.map((p: any) => p.name).sort(), ['cn-a', 'cn-a-numa0']);
    assert.deepEqual((await pc.get('/resource_providers?name=rp-old', '1.14')).body.resource_providers.map((p: any) => p.uuid), [oldUuid]);
    assertError(await pc.get('/resource_providers?in_tree=x', '1.14'), 400, 'placement.query.bad_value');
    assertError(await pc.get('/resource_providers?in_tree=' + oldUuid, '1.13'), 400);

    const renamed = await pc.put(`/resource_providers/${child.body.uuid}`, { name: 'numa-0' }, '1.20');
    assert.equal(renamed.status, 200, renamed.text);
    assert.equal(renamed.body.name, 'numa-0');
    assertError(await pc.put(`/resource_providers/${child.body.uuid}`, { name: 'numa-0', parent_provider_uuid: null }, '1.36'), 400);
    const unparented = await pc.put(`/resource_providers/${child.body.uuid}`, { name: 'numa-0', parent_provider_uuid: null }, '1.37');
    assert.equal(unparented.status, 200, unparented.text);
    assert.equal(unparented.body.root_provider_uuid, child.body.uuid);

    assertError(await pc.delete(`/resource_providers/${randomUUID()}`), 404, 'placement.resource_provider.not_found');
    assert.equal((await pc.delete(`/resource_providers/${oldUuid}`)).status, 204);
  });

  it('sets inventories, classes, traits and aggregates with generation checks', async () => {
    const rp = await pc.provider('cn-inv');
    let res = await pc.put(`/resource_providers/${rp}/inventories`, {
      resource_provider_generation: 0,
      inventories: { VCPU: { total: 8, allocation_ratio: 4.0 }, MEMORY_MB: { total: 2048, reserved: 256, max_unit: 1024 } },
    });
    assert.equal(res.status, 200, res.text);
    assert.equal(res.body.resource_provider_generation, 1);
    assert.deepEqual(res.body.inventories.VCPU, { allocation_ratio: 4, max_unit: 2147483647, min_unit: 1, reserved: 0, step_size: 1, total: 8 });
    res = await pc.put(`/resource_providers/${rp}/inventories`, { resource_provider_generation: 0, inventories: {} });
    assertError(res, 409, 'placement.concurrent_update', /generation/);
    assertError(await pc.put(`/resource_providers/${rp}/inventories`, { inventories: {} }), 400);
    assertError(await pc.put(`/resource_providers/${rp}/inventories`, { resource_provider_generation: 1, inventories: { VCPU: { total: 0 } } }), 400);

    // One class at a time.
    res = await pc.post(`/resource_providers/${rp}/inventories`, { resource_class: 'DISK_GB', total: 100, resource_provider_generation: 1 });
    assert.equal(res.status, 201, res.text);
    assert.equal(res.body.resource_provider_generation, 2);
    res = await pc.put(`/resource_providers/${rp}/inventories/DISK_GB`, { total: 200, resource_provider_generation: 2 });
    assert.equal(res.body.total, 200);
    assert.equal((await pc.get(`/resource_providers/${rp}/inventories/DISK_GB`)).body.resource_provider_generation, 3);
    assertError(await pc.get(`/resource_providers/${rp}/inventories/PCI_DEVICE`), 404);
    assert.equal((await pc.delete(`/resource_providers/${rp}/inventories/DISK_GB`)).status, 204);

    // Resource classes.
    assert.ok((await pc.get('/resource_classes', '1.2')).body.resource_classes.some((c: any) => c.name === 'VCPU'));
    assert.equal((await pc.post('/resource_classes', { name: 'CUSTOM_GPU_SLICE' }, '1.2')).status, 201);
    assertError(await pc.post('/resource_classes', { name: 'CUSTOM_GPU_SLICE' }, '1.2'), 409, 'placement.duplicate_name');
    assertError(await pc.post('/resource_classes', { name: 'GPU' }, '1.2'), 400);
    assert.equal((await pc.put('/resource_classes/CUSTOM_FPGA_X', undefined, '1.7')).status, 201);
    assert.equal((await pc.put('/resource_classes/CUSTOM_FPGA_X', undefined, '1.7')).status, 204);
    assert.equal((await pc.get('/resource_classes/CUSTOM_FPGA_X', '1.7')).body.name, 'CUSTOM_FPGA_X');
    assertError(await pc.delete('/resource_classes/VCPU', '1.7'), 400);
    assert.equal((await pc.delete('/resource_classes/CUSTOM_FPGA_X', '1.7')).status, 204);

    // Traits.
    assert.equal((await pc.get('/traits/COMPUTE_NODE', '1.6')).status, 204);
    assert.equal((await pc.put('/traits/CUSTOM_RAID', undefined, '1.6')).status, 201);
    assert.equal((await pc.put('/traits/CUSTOM_RAID', undefined, '1.6')).status, 204);
    assertError(await pc.put('/traits/RAID', undefined, '1.6'), 400);
    assert.deepEqual((await pc.get('/traits?name=startswith:CUSTOM_', '1.6')).body.traits, ['CUSTOM_RAID']);
    const gen = (await pc.get(`/resource_providers/${rp}`)).body.generation;
    res = await pc.put(`/resource_providers/${rp}/traits`, { traits: ['CUSTOM_RAID', 'HW_CPU_X86_AVX2'], resource_provider_generation: gen }, '1.6');
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(res.body, { traits: ['CUSTOM_RAID', 'HW_CPU_X86_AVX2'], resource_provider_generation: gen + 1 });
    assertError(await pc.put(`/resource_providers/${rp}/traits`, { traits: ['CUSTOM_NOPE'], resource_provider_generation: gen + 1 }, '1.6'), 400);
    assertError(await pc.put(`/resource_providers/${rp}/traits`, { traits: [], resource_provider_generation: gen }, '1.6'), 409, 'placement.concurrent_update');
    const associated = (await pc.get('/traits?associated=true', '1.6')).body.traits;
    assert.ok(associated.includes('CUSTOM_RAID') && associated.includes('HW_CPU_X86_AVX2'), associated.join());
    assert.ok(!(await pc.get('/traits?associated=false', '1.6')).body.traits.includes('CUSTOM_RAID'));
    assertError(await pc.delete('/traits/CUSTOM_RAID', '1.6'), 409);

    // Aggregates: a list body before 1.19, generations from 1.19.
    const agg = randomUUID();
    res = await pc.put(`/resource_providers/${rp}/aggregates`, [agg], '1.1');
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(res.body, { aggregates: [agg] });
    const g = (await pc.get(`/resource_providers/${rp}/aggregates`, '1.19')).body;
    assert.deepEqual(g.aggregates, [agg]);
    res = await pc.put(`/resource_providers/${rp}/aggregates`, { aggregates: [], resource_provider_generation: g.resource_provider_generation - 1 }, '1.19');
    assertError(res, 409, 'placement.concurrent_update');
    res = await pc.put(`/resource_providers/${rp}/aggregates`, { aggregates: [agg, randomUUID()], resource_provider_generation: g.resource_provider_generation }, '1.19');
    assert.equal(res.body.aggregates.length, 2);
    const members = await pc.get(`/resource_providers?member_of=in:${agg},${randomUUID()}`, '1.3');
    assert.deepEqual(members.body.resource_providers.map((p: any) => p.uuid), [rp]);
    const capable = await pc.get('/resource_providers?resources=VCPU:32,MEMORY_MB:1024&required=HW_CPU_X86_AVX2', '1.18');
    assert.deepEqual(capable.body.resource_providers.map((p: any) => p.uuid), [rp]);
    assert.deepEqual((await pc.get('/resource_providers?resources=VCPU:33', '1.4')).body.resource_providers, []);
    assertError(await pc.get('/resource_providers?resources=CUSTOM_UNKNOWN:1', '1.4'), 400);
  });

  it('claims, reads, moves and frees allocations; reports usages', async () => {
    const rp = await pc.provider('cn-alloc', { VCPU: { total: 4 }, MEMORY_MB: { total: 4096 }, DISK_GB: { total: 40, step_size: 10 } });
    const vm = randomUUID();
    const body = (vcpu: number, generation: number | null) => ({
      allocations: { [rp]: { resources: { VCPU: vcpu, MEMORY_MB: 512 } } }, project_id: 'proj-a', user_id: 'user-a', consumer_generation: generation,
    });
    assertError(await pc.put(`/allocations/${vm}`, { allocations: { [rp]: { resources: { VCPU: 1 } } }, project_id: 'p', user_id: 'u' }, '1.28'), 400);
    let res = await pc.put(`/allocations/${vm}`, body(2, null), '1.28');
    assert.equal(res.status, 204, res.text);
    res = await pc.get(`/allocations/${vm}`, '1.28');
    assert.deepEqual(res.body, {
      allocations: { [rp]: { generation: 2, resources: { MEMORY_MB: 512, VCPU: 2 } } }, project_id: 'proj-a', user_id: 'user-a', consumer_generation: 1,
    });
    assertError(await pc.put(`/allocations/${vm}`, body(3, null), '1.28'), 409, 'placement.concurrent_update');
    assert.equal((await pc.put(`/allocations/${vm}`, body(3, 1), '1.28')).status, 204);
    assertError(await pc.put(`/allocations/${randomUUID()}`, body(2, null), '1.28'), 409, 'placement.undefined_code', /exceed the capacity/);
    assertError(await pc.put(`/allocations/${randomUUID()}`, { ...body(1, null), allocations: { [rp]: { resources: { DISK_GB: 5 } } } }, '1.28'), 409, 'placement.undefined_code', /constraints/);
    assertError(await pc.put(`/allocations/${randomUUID()}`, { ...body(1, null), allocations: { [randomUUID()]: { resources: { VCPU: 1 } } } }, '1.28'), 400);

    // The list form of 1.0 and the 1.38 consumer types.
    const old = randomUUID();
    res = await pc.put(`/allocations/${old}`, { allocations: [{ resource_provider: { uuid: rp }, resources: { DISK_GB: 10 } }] }, '1.0');
    assert.equal(res.status, 204, res.text);
    assert.deepEqual((await pc.get(`/allocations/${old}`, '1.0')).body, { allocations: { [rp]: { generation: 4, resources: { DISK_GB: 10 } } } });
    const typed = randomUUID();
    assertError(await pc.put(`/allocations/${typed}`, body(1, null), '1.38'), 400);
    assert.equal((await pc.put(`/allocations/${typed}`, { ...body(1, null), consumer_type: 'MIGRATION' }, '1.38')).status, 204);
    assert.equal((await pc.get(`/allocations/${typed}`, '1.38')).body.consumer_type, 'MIGRATION');

    res = await pc.get(`/resource_providers/${rp}/allocations`);
    assert.deepEqual(Object.keys(res.body.allocations).sort(), [vm, old, typed].sort());
    assert.deepEqual((await pc.get(`/resource_providers/${rp}/usages`)).body, { usages: { DISK_GB: 10, MEMORY_MB: 1024, VCPU: 4 }, resource_provider_generation: 5 });
    assert.deepEqual((await pc.get('/usages?project_id=proj-a', '1.9')).body, { usages: { MEMORY_MB: 1024, VCPU: 4 } });
    assert.deepEqual((await pc.get('/usages?project_id=proj-a&user_id=nobody', '1.9')).body, { usages: {} });
    assert.deepEqual((await pc.get('/usages?project_id=proj-a', '1.38')).body.usages.MIGRATION, { consumer_count: 1, MEMORY_MB: 512, VCPU: 1 });
    assertError(await pc.get('/usages', '1.9'), 400);
    assertError(await pc.delete(`/resource_providers/${rp}/inventories`, '1.5'), 409, 'placement.inventory.inuse');
    assertError(await pc.delete(`/resource_providers/${rp}`), 409, 'placement.resource_provider.inuse');

    // POST /allocations: move vm's allocations to a migration consumer atomically.
    const migration = randomUUID();
    res = await pc.post('/allocations', {
      [vm]: { allocations: {}, project_id: 'proj-a', user_id: 'user-a', consumer_generation: 2 },
      [migration]: { allocations: { [rp]: { resources: { VCPU: 3, MEMORY_MB: 512 } } }, project_id: 'proj-a', user_id: 'user-a', consumer_generation: null },
    }, '1.28');
    assert.equal(res.status, 204, res.text);
    assert.deepEqual((await pc.get(`/allocations/${vm}`, '1.28')).body, { allocations: {} });
    assert.equal((await pc.get(`/allocations/${migration}`, '1.28')).body.allocations[rp].resources.VCPU, 3);
    assertError(await pc.post('/allocations', {}, '1.12'), 404);

    assert.equal((await pc.delete(`/allocations/${migration}`)).status, 204);
    assertError(await pc.delete(`/allocations/${migration}`), 404);
  });
});
