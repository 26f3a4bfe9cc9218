// Flavors over HTTP: the default m1.* flavors, list/detail filters, sorting and paging, create
// with Nova's validation and conflicts, description (2.55), extra specs in bodies (2.61), swap
// rendering (2.75), flavor access for private flavors, extra-spec CRUD and policy refusals.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { assertError, startComputeCloud, unique, type ComputeCloud } from './harness.js';

describe('flavors', () => {
  let cc: ComputeCloud;

  before(async () => { cc = await startComputeCloud({}, 1); });
  after(async () => cc?.close());

  const create = (flavor: Record<string, unknown>, microversion?: string, token?: string) =>
    cc.post('/flavors', { flavor: { ram: 256, vcpus: 1, disk: 1, ...flavor } }, { microversion, token });

  it('has the devstack defaults, listed in brief and in detail', async () => {
    const list = await cc.get('/flavors', { token: cc.demoToken });
    assert.equal(list.status, 200, list.text);
    const byId = Object.fromEntries(list.body.flavors.map((f: any) => [f.id, f]));
    assert.deepEqual(Object.keys(byId['1']).sort(), ['id', 'links', 'name']);
    assert.equal(byId['1'].name, 'm1.tiny');
    assert.match(byId['1'].links[0].href, /\/compute\/v2\.1\/flavors\/1$/);
    assert.equal(byId['1'].links[0].rel, 'self');
    assert.match(byId['1'].links[1].href, /\/compute\/flavors\/1$/);

    const detail = await cc.get('/flavors/detail', { token: cc.demoToken });
    const small = detail.body.flavors.find((f: any) => f.id === '2');
    assert.deepEqual({ ...small, links: undefined }, {
      id: '2', name: 'm1.small', ram: 2048, disk: 20, swap: '', 'OS-FLV-EXT-DATA:ephemeral': 0, 'OS-FLV-DISABLED:disabled': false,
      vcpus: 1, 'os-flavor-access:is_public': true, rxtx_factor: 1, links: undefined,
    });
    const xl = await cc.get('/flavors/5', { microversion: '2.75' });
    assert.equal(xl.body.flavor.swap, 0);
    assert.equal(xl.body.flavor.vcpus, 8);
    assert.equal(xl.body.flavor.ram, 16384);
    assert.equal(xl.body.flavor.description, null);
    assert.deepEqual(xl.body.flavor.extra_specs, {});
  });

  it('filters by minRam/minDisk, sorts and pages with a next link', async () => {
    const big = await cc.get('/flavors?minRam=4096&minDisk=40');
    assert.deepEqual(big.body.flavors.map((f: any) => f.id).filter((id: string) => ['1', '2', '3', '4', '5'].includes(id)), ['3', '4', '5']);
    const sorted = await cc.get('/flavors/detail?sort_key=memory_mb&sort_dir=desc');
    const rams = sorted.body.flavors.map((f: any) => f.ram);
    assert.deepEqual(rams, [...rams].sort((a: number, b: number) => b - a));
    const page = await cc.get('/flavors?limit=2');
    assert.equal(page.body.flavors.length, 2);
    assert.equal(page.body.flavors_links[0].rel, 'next');
    const next = new URL(page.body.flavors_links[0].href);
    assert.equal(next.searchParams.get('marker'), page.body.flavors[1].id);
    assert.equal(next.searchParams.get('limit'), '2');
    const second = await cc.get(`/flavors?limit=2&marker=${page.body.flavors[1].id}`);
    assert.notEqual(second.body.flavors[0].id, page.body.flavors[0].id);
    assertError(await cc.get('/flavors?marker=nope'), 400, 'marker [nope] not found');
    assertError(await cc.get('/flavors?minRam=abc'), 400, 'Invalid minRam filter [abc]');
    assertError(await cc.get('/flavors?sort_key=bogus'), 400, /Invalid input for query parameters sort_key/);
    assertError(await cc.get('/flavors?limit=-1'), 400, /query parameters limit/);
    // Unknown query parameters are ignored before 2.75 and refused from it.
    assert.equal((await cc.get('/flavors?foo=1')).status, 200);
    assertError(await cc.get('/flavors?foo=1', { microversion: '2.75' }), 400, /Additional properties are not allowed/);
  });

  it('creates flavors: generated UUID ids, the literal id "auto", numeric ids, strings for numbers', async () => {
    const generated = await create({ name: unique('gen') });
    assert.equal(generated.status, 200, generated.text);
    assert.match(generated.body.flavor.id, /^[0-9a-f-]{36}$/);
    assert.equal(generated.body.flavor['os-flavor-access:is_public'], true);
    assert.equal(generated.body.flavor.description, undefined);

    const auto = await create({ name: unique('auto'), id: 'auto' });
    assert.equal(auto.status, 200, auto.text);
    assert.equal(auto.body.flavor.id, 'auto');
    assert.equal((await cc.get('/flavors/auto')).body.flavor.id, 'auto');

    const numeric = await create({ name: unique('num'), id: 4242, ram: '1024', vcpus: '2', disk: '0', swap: 512, 'OS-FLV-EXT-DATA:ephemeral': 5, rxtx_factor: '2.5' });
    assert.equal(numeric.status, 200, numeric.text);
    assert.deepEqual([numeric.body.flavor.id, numeric.body.flavor.ram, numeric.body.flavor.vcpus, numeric.body.flavor.swap, numeric.body.flavor['OS-FLV-EXT-DATA:ephemeral'], numeric.body.flavor.rxtx_factor],
      ['4242', 1024, 2, 512, 5, 2.5]);

    const described = await create({ name: unique('desc'), description: 'for tests' }, '2.61');
    assert.equal(described.body.flavor.description, 'for tests');
    assert.deepEqual(described.body.flavor.extra_specs, {});
  });

  it('refuses duplicates with 409 and bad input with Nova\'s 400 messages', async () => {
    const name = unique('dup');
    const first = await create({ name, id: name });
    assert.equal(first.status, 200, first.text);
    assertError(await create({ name }), 409, `Flavor with name ${name} already exists.`);
    assertError(await create({ name: unique('other'), id: name }), 409, `Flavor with ID ${name} already exists.`);

    assertError(await create({ name: unique('bad'), ram: 0 }), 400, 'Invalid input for field/attribute ram. Value: 0. 0 is less than the minimum of 1');
    assertError(await create({ name: unique('bad'), vcpus: 'x' }), 400, /Invalid input for field\/attribute vcpus\. Value: x\. 'x' does not match/);
    assertError(await create({ name: unique('bad'), disk: -1 }), 400, 'Invalid input for field/attribute disk. Value: -1. -1 is less than the minimum of 0');
    assertError(await create({ name: unique('bad'), rxtx_factor: 0 }), 400, 'Invalid input for field/attribute rxtx_factor. Value: 0. 0 is less than or equal to the minimum of 0');
    assertError(await create({ name: unique('bad'), id: ' lead' }), 400, /Invalid input for field\/attribute id/);
    assertError(await create({ name: ' padded ' }), 400, "An invalid 'name' value was provided. The name must be: printable characters. Can not start or end with whitespace.");
    assertError(await create({ name: unique('bad'), extra: 1 }), 400, "Additional properties are not allowed ('extra' was unexpected)");
    assertError(await create({ name: unique('bad'), 'os-flavor-access:is_public': 'maybe' }), 400, /is_public/);
    // description only from 2.55
    assertError(await create({ name: unique('bad'), description: 'x' }), 400, "Additional properties are not allowed ('description' was unexpected)");
    const missing = await cc.post('/flavors', { flavor: { name: unique('bad'), ram: 1, vcpus: 1 } });
    assertError(missing, 400, "'disk' is a required property");
    assertError(await cc.post('/flavors', { flavour: {} }), 400, "'flavor' is a required property");
  });

  it('answers 403 to a non-admin on flavor management', async () => {
    assertError(await create({ name: unique('nope') }, undefined, cc.demoToken), 403, 'os_compute_api:os-flavor-manage:create');
    assertError(await cc.delete('/flavors/1', { token: cc.demoToken }), 403);
    assertError(await cc.put('/flavors/1', { flavor: { description: 'x' } }, { token: cc.demoToken, microversion: '2.55' }), 403);
  });

  it('updates the description from 2.55 and deletes flavors', async () => {
    const made = await create({ name: unique('upd') }, '2.55');
    const id = made.body.flavor.id;
    assertError(await cc.put(`/flavors/${id}`, { flavor: { description: 'x' } }), 404);
    const updated = await cc.put(`/flavors/${id}`, { flavor: { description: 'new words' } }, { microversion: '2.55' });
    assert.equal(updated.status, 200, updated.text);
    assert.equal(updated.body.flavor.description, 'new words');
    assertError(await cc.put(`/flavors/${id}`, { flavor: { name: 'x' } }, { microversion: '2.55' }), 400);
    const brief = await cc.get('/flavors', { microversion: '2.55' });
    assert.equal(brief.body.flavors.find((f: any) => f.id === id).description, 'new words');

    const deleted = await cc.delete(`/flavors/${id}`);
    assert.equal(deleted.status, 202);
    assertError(await cc.get(`/flavors/${id}`), 404, `Flavor ${id} could not be found.`);
    assertError(await cc.delete(`/flavors/${id}`), 404);
  });

  it('shares private flavors with projects (os-flavor-access)', async () => {
    const made = await create({ name: unique('private'), 'os-flavor-access:is_public': false });
    const id = made.body.flavor.id;
    assert.equal(made.body.flavor['os-flavor-access:is_public'], false);

    // Hidden from the demo project until shared.
    assert.ok(!(await cc.get('/flavors', { token: cc.demoToken })).body.flavors.some((f: any) => f.id === id));
    assertError(await cc.get(`/flavors/${id}`, { token: cc.demoToken }), 404);
    // Admins see it with is_public=false or none, not in the default (public) listing.
    assert.ok((await cc.get('/flavors?is_public=false')).body.flavors.some((f: any) => f.id === id));
    assert.ok((await cc.get('/flavors?is_public=none')).body.flavors.some((f: any) => f.id === id));
    assert.ok(!(await cc.get('/flavors?is_public=false')).body.flavors.some((f: any) => f.id === '1'));
    assertError(await cc.get('/flavors?is_public=perhaps'), 400, 'Invalid is_public filter [perhaps]');

    const added = await cc.post(`/flavors/${id}/action`, { addTenantAccess: { tenant: cc.demoProject } });
    assert.equal(added.status, 200, added.text);
    assert.deepEqual(added.body, { flavor_access: [{ flavor_id: id, tenant_id: cc.demoProject }] });
    assertError(await cc.post(`/flavors/${id}/action`, { addTenantAccess: { tenant: cc.demoProject } }), 409,
      `Flavor access already exists for flavor ${id} and project ${cc.demoProject} combination.`);
    assert.ok((await cc.get('/flavors', { token: cc.demoToken })).body.flavors.some((f: any) => f.id === id));
    assert.equal((await cc.get(`/flavors/${id}`, { token: cc.demoToken })).status, 200);
    assert.deepEqual((await cc.get(`/flavors/${id}/os-flavor-access`)).body.flavor_access, [{ flavor_id: id, tenant_id: cc.demoProject }]);
    assertError(await cc.get(`/flavors/${id}/os-flavor-access`, { token: cc.demoToken }), 403);
    assertError(await cc.post(`/flavors/${id}/action`, { addTenantAccess: { tenant: 'x' } }, { token: cc.demoToken }), 403);

    const removed = await cc.post(`/flavors/${id}/action`, { removeTenantAccess: { tenant: cc.demoProject } });
    assert.deepEqual(removed.body, { flavor_access: [] });
    assertError(await cc.post(`/flavors/${id}/action`, { removeTenantAccess: { tenant: cc.demoProject } }), 404,
      `Flavor access not found for ${id} / ${cc.demoProject} combination.`);

    // Public flavors: no access list, and adding access is a conflict from 2.7.
    assertError(await cc.get('/flavors/1/os-flavor-access'), 404, 'Access list not available for public flavors.');
    assertError(await cc.post('/flavors/1/action', { addTenantAccess: { tenant: cc.demoProject } }, { microversion: '2.7' }), 409, 'Can not add access to a public flavor.');
    assertError(await cc.post(`/flavors/${id}/action`, { addTenantAccess: {} }), 400, "'tenant' is a required property");
  });

  it('manages extra specs and embeds them in flavor bodies from 2.61', async () => {
    const made = await create({ name: unique('specs') });
    const id = made.body.flavor.id;
    const base = `/flavors/${id}/os-extra_specs`;
    const set = await cc.post(base, { extra_specs: { 'hw:cpu_policy': 'dedicated', 'trait:CUSTOM_X': 'required', 'quota:n': 5 } });
    assert.equal(set.status, 200, set.text);
    assert.deepEqual(set.body, { extra_specs: { 'hw:cpu_policy': 'dedicated', 'trait:CUSTOM_X': 'required', 'quota:n': 5 } });
    assert.deepEqual((await cc.get(base)).body, { extra_specs: { 'hw:cpu_policy': 'dedicated', 'trait:CUSTOM_X': 'required', 'quota:n': '5' } });
    assert.deepEqual((await cc.get(`${base}/hw:cpu_policy`)).body, { 'hw:cpu_policy': 'dedicated' });

    const put = await cc.put(`${base}/hw:cpu_policy`, { 'hw:cpu_policy': 'shared' });
    assert.equal(put.status, 200, put.text);
    assert.deepEqual(put.body, { 'hw:cpu_policy': 'shared' });
    assertError(await cc.put(`${base}/hw:cpu_policy`, { other: 'x' }), 400, 'Request body and URI mismatch');
    assertError(await cc.put(`${base}/hw:cpu_policy`, { a: '1', b: '2' }), 400);
    assertError(await cc.post(base, { extra_specs: { 'bad/key': 'x' } }), 400);

    const shown = await cc.get(`/flavors/${id}`, { microversion: '2.61' });
    assert.deepEqual(shown.body.flavor.extra_specs, { 'hw:cpu_policy': 'shared', 'trait:CUSTOM_X': 'required', 'quota:n': '5' });
    assert.equal((await cc.get(`/flavors/${id}`, { microversion: '2.60' })).body.flavor.extra_specs, undefined);
    // Members may read extra specs (in the flavor body too) but not change them.
    assert.equal((await cc.get(`/flavors/${id}`, { microversion: '2.61', token: cc.demoToken })).body.flavor.extra_specs['quota:n'], '5');
    assertError(await cc.post(base, { extra_specs: { a: 'b' } }, { token: cc.demoToken }), 403);
    assertError(await cc.delete(`${base}/quota:n`, { token: cc.demoToken }), 403);

    assert.equal((await cc.delete(`${base}/quota:n`)).status, 200);
    assertError(await cc.get(`${base}/quota:n`), 404, `Flavor ${id} has no extra specs with key quota:n.`);
    assertError(await cc.delete(`${base}/quota:n`), 404);
    assertError(await cc.get('/flavors/missing/os-extra_specs'), 404, 'Flavor missing could not be found.');
  });
});
