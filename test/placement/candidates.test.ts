// GET /allocation_candidates over HTTP: the shapes of each microversion (1.10 list form,
// 1.12 dict form, 1.17 traits, 1.27 all classes, 1.29 nested summaries, 1.34 mappings),
// granular groups, forbidden traits, member_of, in_tree, limit, and query errors. The cloud's own
// (fake) compute hosts are providers too: answers are looked at for this test's providers only.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { assertError, startPlacementCloud, type PlacementCloud } from './harness.js';

describe('placement allocation candidates API', () => {
  let pc: PlacementCloud;
  let small: string;
  let big: string;
  let nested: string;
  let numa0: string;
  let numa1: string;
  const agg = randomUUID();
  const mine = () => new Set([small, big, nested, numa0, numa1]);
  /** The body with only this test's providers (requests that use others dropped). */
  const own = (body: any) => {
    const set = mine();
    const used = (r: any) => (Array.isArray(r.allocations) ? r.allocations.map((a: any) => a.resource_provider.uuid) : Object.keys(r.allocations));
    return {
      ...body,
      allocation_requests: body.allocation_requests.filter((r: any) => used(r).every((u: string) => set.has(u))),
      provider_summaries: Object.fromEntries(Object.entries(body.provider_summaries).filter(([u]) => set.has(u))),
    };
  };

  before(async () => {
    pc = await startPlacementCloud();
    small = await pc.provider('ac-small', { VCPU: { total: 2 }, MEMORY_MB: { total: 2048 }, DISK_GB: { total: 20 } });
    big = await pc.provider('ac-big', { VCPU: { total: 32 }, MEMORY_MB: { total: 65536 }, DISK_GB: { total: 500 } });
    const gen = (await pc.get(`/resource_providers/${big}`)).body.generation;
    assert.equal((await pc.put(`/resource_providers/${big}/traits`, { traits: ['HW_CPU_X86_AVX2', 'COMPUTE_NODE'], resource_provider_generation: gen }, '1.6')).status, 200);
    assert.equal((await pc.put(`/resource_providers/${small}/aggregates`, [agg], '1.1')).status, 200);
    nested = await pc.provider('ac-nested', { MEMORY_MB: { total: 8192 }, DISK_GB: { total: 100 } });
    numa0 = await pc.provider('ac-numa0', { VCPU: { total: 4 } }, { parent_provider_uuid: nested });
    numa1 = await pc.provider('ac-numa1', { VCPU: { total: 4 } }, { parent_provider_uuid: nested });
  });
  after(async () => { await pc?.close(); });

  it('answers in each microversion\'s shape', async () => {
    const q = '/allocation_candidates?resources=VCPU:1,MEMORY_MB:1024';
    const v10 = await pc.get(q, '1.10');
    assert.equal(v10.status, 200, v10.text);
    v10.body = own(v10.body);
    assert.deepEqual(v10.body.allocation_requests.find((r: any) => r.allocations[0].resource_provider.uuid === small),
      { allocations: [{ resource_provider: { uuid: small }, resources: { VCPU: 1, MEMORY_MB: 1024 } }] });
    assert.deepEqual(v10.body.provider_summaries[small], { resources: { VCPU: { capacity: 2, used: 0 }, MEMORY_MB: { capacity: 2048, used: 0 } } });

    const v17 = await pc.get(q, '1.17');
    v17.body = own(v17.body);
    assert.deepEqual(v17.body.allocation_requests.find((r: any) => r.allocations[big]), { allocations: { [big]: { resources: { VCPU: 1, MEMORY_MB: 1024 } } } });
    assert.deepEqual(v17.body.provider_summaries[big].traits, ['COMPUTE_NODE', 'HW_CPU_X86_AVX2']);
    assert.equal(v17.body.provider_summaries[big].resources.DISK_GB, undefined, 'only requested classes before 1.27');
    assert.equal(Object.keys(v17.body.provider_summaries).length, 2, 'no nested candidates or summaries before 1.29');

    const v29 = await pc.get(q, '1.29');
    v29.body = own(v29.body);
    assert.deepEqual(v29.body.provider_summaries[big].resources.DISK_GB, { capacity: 500, used: 0 });
    assert.equal(v29.body.provider_summaries[numa0].parent_provider_uuid, nested);
    assert.equal(v29.body.provider_summaries[numa0].root_provider_uuid, nested);
    const nestedRequests = v29.body.allocation_requests.filter((r: any) => r.allocations[nested]);
    assert.deepEqual(nestedRequests.map((r: any) => Object.keys(r.allocations).sort().join('+')).sort(), [[nested, numa0].sort().join('+'), [nested, numa1].sort().join('+')].sort());
    assert.equal(v29.body.allocation_requests[0].mappings, undefined);

    const v34 = await pc.get(q, '1.34');
    assert.deepEqual(v34.body.allocation_requests.find((r: any) => r.allocations[small]).mappings, { '': [small] });
  });

  it('filters by traits, aggregates, trees and limit, and places granular groups', async () => {
    const uuids = (res: any) => own(res.body).allocation_requests.map((r: any) => Object.keys(r.allocations).sort().join('+'));
    assert.deepEqual(uuids(await pc.get('/allocation_candidates?resources=VCPU:1&required=HW_CPU_X86_AVX2', '1.17')), [big]);
    assert.deepEqual(uuids(await pc.get('/allocation_candidates?resources=VCPU:1&required=!HW_CPU_X86_AVX2', '1.22')), [small]);
    assert.deepEqual(uuids(await pc.get('/allocation_candidates?resources=VCPU:1&required=in:HW_CPU_X86_AVX2,COMPUTE_NODE&required=COMPUTE_NODE', '1.39')), [big]);
    assert.deepEqual(uuids(await pc.get(`/allocation_candidates?resources=VCPU:1&member_of=in:${agg},${randomUUID()}`, '1.21')), [small]);
    assert.deepEqual(uuids(await pc.get(`/allocation_candidates?resources=VCPU:1&member_of=!${agg}`, '1.32')), [big, numa0, numa1]);
    assert.deepEqual(uuids(await pc.get(`/allocation_candidates?resources=VCPU:1,MEMORY_MB:1&in_tree=${numa1}`, '1.31')), [[nested, numa0].sort().join('+'), [nested, numa1].sort().join('+')]);
    const limited = await pc.get('/allocation_candidates?resources=VCPU:1&limit=1', '1.16');
    assert.equal(limited.body.allocation_requests.length, 1);
    assert.deepEqual(Object.keys(limited.body.provider_summaries), Object.keys(limited.body.allocation_requests[0].allocations), 'summaries of the returned candidates only');
    assert.deepEqual(uuids(await pc.get('/allocation_candidates?resources=VCPU:33', '1.16')), []);

    const granular = await pc.get('/allocation_candidates?resources=MEMORY_MB:1024&resources1=VCPU:3&resources2=VCPU:3&group_policy=isolate', '1.34');
    assert.equal(granular.status, 200, granular.text);
    assert.deepEqual(own(granular.body).allocation_requests.map((r: any) => r.mappings), [
      { '': [nested], '1': [numa0], '2': [numa1] },
      { '': [nested], '1': [numa1], '2': [numa0] },
    ]);
    const strings = await pc.get('/allocation_candidates?resources_CPU=VCPU:1&resources_MEM=MEMORY_MB:100&group_policy=none&same_subtree=_CPU,_MEM', '1.36');
    assert.equal(strings.status, 200, strings.text);
    assert.ok(own(strings.body).allocation_requests.length > 0);
    assert.ok(strings.body.allocation_requests.every((r: any) => r.mappings._CPU && r.mappings._MEM));
  });

  it('refuses bad queries with 400 in Placement\'s format', async () => {
    assertError(await pc.get('/allocation_candidates?resources=VCPU:1', '1.9'), 404);
    assertError(await pc.get('/allocation_candidates', '1.10'), 400);
    assertError(await pc.get('/allocation_candidates?resources=VCPU', '1.10'), 400);
    assertError(await pc.get('/allocation_candidates?resources=VCPU:0', '1.10'), 400);
    assertError(await pc.get('/allocation_candidates?resources=CUSTOM_NONE:1', '1.10'), 400);
    assertError(await pc.get('/allocation_candidates?resources=VCPU:1&required=CUSTOM_NONE', '1.17'), 400);
    assertError(await pc.get('/allocation_candidates?resources=VCPU:1&required=!COMPUTE_NODE', '1.21'), 400);
    assertError(await pc.get('/allocation_candidates?resources=VCPU:1&required=COMPUTE_NODE,!COMPUTE_NODE', '1.22'), 400);
    assertError(await pc.get('/allocation_candidates?resources=VCPU:1&limit=1', '1.15'), 400);
    assertError(await pc.get('/allocation_candidates?resources=VCPU:1&limit=0', '1.16'), 400);
    assertError(await pc.get('/allocation_candidates?resources=VCPU:1&member_of=x', '1.21'), 400);
    assertError(await pc.get('/allocation_candidates?resources1=VCPU:1&resources2=VCPU:1', '1.25'), 400);
    assertError(await pc.get('/allocation_candidates?resources1=VCPU:1&resources2=VCPU:1&group_policy=all', '1.25'), 400);
    assertError(await pc.get('/allocation_candidates?resources1=VCPU:1', '1.24'), 400);
    assertError(await pc.get('/allocation_candidates?required1=COMPUTE_NODE&resources=VCPU:1', '1.25'), 400);
    assertError(await pc.get('/allocation_candidates?resources=VCPU:1&bogus=1', '1.25'), 400);
    assertError(await pc.get('/allocation_candidates?resources=VCPU:1&required=in:COMPUTE_NODE', '1.38'), 400);
    assertError(await pc.get('/allocation_candidates?resources=VCPU:1', '1.30', { token: pc.demoToken }), 403);
  });
});
