// Regions, services and endpoints: CRUD over HTTP, and how they shape the token's catalog
// and GET /v3/auth/catalog.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { assertError, startIdentityCloud, unique, type IdentityCloud } from './harness.js';

let ic: IdentityCloud;
let admin: string;
before(async () => {
  ic = await startIdentityCloud();
  admin = await ic.adminToken();
});
after(async () => { await ic?.close(); });

/** The catalog of a fresh demo token, and of GET /v3/auth/catalog. */
async function catalogs(): Promise<{ token: any[]; auth: any[] }> {
  const issued = await ic.passwordAuth({ id: ic.ids.demoUser }, 'demo-Pa55word', { project: { id: ic.ids.demoProject } });
  assert.equal(issued.status, 201, issued.text);
  const auth = await ic.get('/auth/catalog', { token: issued.headers.get('x-subject-token')! });
  assert.equal(auth.status, 200, auth.text);
  return { token: issued.body.token.catalog, auth: auth.body.catalog };
}

describe('regions', () => {
  it('the bootstrap region exists', async () => {
    const res = await ic.get('/regions/RegionOne', { token: admin });
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(res.body.region, { id: 'RegionOne', description: '', parent_region_id: null, links: { self: ic.v3('/regions/RegionOne') } });
  });

  it('create with a generated id (POST) or a chosen one (PUT); children; filter; update; delete', async () => {
    const posted = await ic.post('/regions', { region: { description: 'generated', site: 'dc1' } }, { token: admin });
    assert.equal(posted.status, 201, posted.text);
    assert.match(posted.body.region.id, /^[0-9a-f]{32}$/);
    assert.equal(posted.body.region.site, 'dc1');

    const parentId = unique('Europe');
    const put = await ic.put(`/regions/${parentId}`, { region: { description: 'EU' } }, { token: admin });
    assert.equal(put.status, 201, put.text);
    assert.equal(put.body.region.id, parentId);
    assertError(await ic.put(`/regions/${parentId}`, { region: {} }, { token: admin }), 409);
    assertError(await ic.post('/regions', { region: { id: parentId } }, { token: admin }), 409);
    assertError(await ic.put(`/regions/${unique('x')}`, { region: { id: 'something-else' } }, { token: admin }), 400);

    const childId = unique('Paris');
    const child = await ic.post('/regions', { region: { id: childId, parent_region_id: parentId } }, { token: admin });
    assert.equal(child.status, 201, child.text);
    assert.equal(child.body.region.parent_region_id, parentId);
    const children = await ic.get(`/regions?parent_region_id=${parentId}`, { token: admin });
    assert.deepEqual(children.body.regions.map((r: any) => r.id), [childId]);
    assertError(await ic.post('/regions', { region: { parent_region_id: 'no-such-region' } }, { token: admin }), 404);

    const updated = await ic.patch(`/regions/${childId}`, { region: { description: 'Ville lumière' } }, { token: admin });
    assert.equal(updated.status, 200, updated.text);
    assert.equal(updated.body.region.description, 'Ville lumière');
    assert.equal(updated.body.region.parent_region_id, parentId);
    // A region cannot become its own ancestor.
    assertError(await ic.patch(`/regions/${parentId}`, { region: { parent_region_id: childId } }, { token: admin }), 400);

    // Deleting a region deletes its children (Keystone), unless one of them has endpoints.
    const service = (await ic.admin('POST', '/services', { service: { type: unique('type'), name: 'svc' } })).service;
    const endpoint = (await ic.admin('POST', '/endpoints', { endpoint: { service_id: service.id, interface: 'public', url: 'http://paris.example:1234', region_id: childId } })).endpoint;
    assertError(await ic.delete(`/regions/${parentId}`, { token: admin }), 403);
    await ic.admin('DELETE', `/endpoints/${endpoint.id}`);
    assert.equal((await ic.delete(`/regions/${parentId}`, { token: admin })).status, 204);
    assertError(await ic.get(`/regions/${childId}`, { token: admin }), 404);
    assertError(await ic.get(`/regions/${parentId}`, { token: admin }), 404);
  });
});

describe('services and endpoints', () => {
  it('service CRUD with filters; endpoints CRUD with filters; both reach the catalog', async () => {
    const type = unique('compute-like');
    const created = await ic.post('/services', { service: { type, name: 'novaish', description: 'computes', owner: 'team-a' } }, { token: admin });
    assert.equal(created.status, 201, created.text);
    const service = created.body.service;
    assert.match(service.id, /^[0-9a-f]{32}$/);
    assert.equal(service.type, type);
    assert.equal(service.name, 'novaish');
    assert.equal(service.enabled, true);
    assert.equal(service.owner, 'team-a');
    assert.equal(service.links.self, ic.v3(`/services/${service.id}`));
    assert.deepEqual((await ic.get(`/services/${service.id}`, { token: admin })).body.service, service);
    assert.deepEqual((await ic.get(`/services?type=${type}`, { token: admin })).body.services.map((s: any) => s.id), [service.id]);
    assert.ok((await ic.get('/services?name=keystone', { token: admin })).body.services.every((s: any) => s.name === 'keystone'));

    const endpoints: any[] = [];
    for (const iface of ['public', 'internal', 'admin']) {
      const res = await ic.post('/endpoints', { endpoint: { service_id: service.id, interface: iface, url: `http://${iface}.example:8774/v2.1`, region_id: 'RegionOne' } }, { token: admin });
      assert.equal(res.status, 201, res.text);
      const e = res.body.endpoint;
      assert.equal(e.interface, iface);
      assert.equal(e.region_id, 'RegionOne');
      assert.equal(e.region, 'RegionOne');
      assert.equal(e.enabled, true);
      assert.equal(e.service_id, service.id);
      assert.equal(e.links.self, ic.v3(`/endpoints/${e.id}`));
      endpoints.push(e);
    }
    const byService = await ic.get(`/endpoints?service_id=${service.id}`, { token: admin });
    assert.deepEqual(byService.body.endpoints.map((e: any) => e.id).sort(), endpoints.map((e) => e.id).sort());
    const publicOnes = await ic.get(`/endpoints?service_id=${service.id}&interface=public`, { token: admin });
    assert.deepEqual(publicOnes.body.endpoints.map((e: any) => e.url), ['http://public.example:8774/v2.1']);
    assert.equal((await ic.get(`/endpoints?region_id=RegionOne&service_id=${service.id}`, { token: admin })).body.endpoints.length, 3);

    let { token, auth } = await catalogs();
    for (const catalog of [token, auth]) {
      const entry = catalog.find((s: any) => s.id === service.id);
      assert.ok(entry, 'the new service is in the catalog');
      assert.equal(entry.type, type);
      assert.equal(entry.name, 'novaish');
      assert.deepEqual(entry.endpoints.map((e: any) => e.interface).sort(), ['admin', 'internal', 'public']);
      const pub = entry.endpoints.find((e: any) => e.interface === 'public');
      assert.deepEqual(pub, { id: endpoints[0].id, interface: 'public', region: 'RegionOne', region_id: 'RegionOne', url: 'http://public.example:8774/v2.1' });
    }

    // A disabled endpoint leaves the catalog; a disabled service takes all of its endpoints along.
    const patched = await ic.patch(`/endpoints/${endpoints[2].id}`, { endpoint: { enabled: false, url: 'http://admin.example:9999/' } }, { token: admin });
    assert.equal(patched.status, 200, patched.text);
    assert.equal(patched.body.endpoint.enabled, false);
    assert.equal(patched.body.endpoint.url, 'http://admin.example:9999/');
    ({ token, auth } = await catalogs());
    assert.deepEqual(token.find((s: any) => s.id === service.id).endpoints.map((e: any) => e.interface).sort(), ['internal', 'public']);
    const off = await ic.patch(`/services/${service.id}`, { service: { enabled: false, description: 'resting' } }, { token: admin });
    assert.equal(off.status, 200, off.text);
    assert.equal(off.body.service.enabled, false);
    assert.equal(off.body.service.type, type);
    ({ token, auth } = await catalogs());
    assert.ok(!token.some((s: any) => s.id === service.id));
    assert.ok(!auth.some((s: any) => s.id === service.id));

    assert.equal((await ic.delete(`/endpoints/${endpoints[0].id}`, { token: admin })).status, 204);
    assertError(await ic.get(`/endpoints/${endpoints[0].id}`, { token: admin }), 404);
    // Deleting the service deletes its endpoints.
    assert.equal((await ic.delete(`/services/${service.id}`, { token: admin })).status, 204);
    assertError(await ic.get(`/services/${service.id}`, { token: admin }), 404);
    assertError(await ic.get(`/endpoints/${endpoints[1].id}`, { token: admin }), 404);
  });

  it('endpoint validation: interface, url, unknown service or region_id are 400; legacy region creates the region', async () => {
    const service = (await ic.admin('POST', '/services', { service: { type: unique('t') } })).service;
    assertError(await ic.post('/endpoints', { endpoint: { service_id: service.id, interface: 'private', url: 'http://x' } }, { token: admin }), 400);
    assertError(await ic.post('/endpoints', { endpoint: { service_id: service.id, interface: 'public', url: 'not a url' } }, { token: admin }), 400);
    assertError(await ic.post('/endpoints', { endpoint: { service_id: 'f'.repeat(32), interface: 'public', url: 'http://x' } }, { token: admin }), 400);
    assertError(await ic.post('/endpoints', { endpoint: { service_id: service.id, interface: 'public', url: 'http://x', region_id: 'Atlantis' } }, { token: admin }), 400);
    assertError(await ic.post('/endpoints', { endpoint: { interface: 'public', url: 'http://x' } }, { token: admin }), 400, 'service_id');
    const legacyRegion = unique('Legacy');
    const legacy = await ic.post('/endpoints', { endpoint: { service_id: service.id, interface: 'public', url: 'http://legacy.example', region: legacyRegion } }, { token: admin });
    assert.equal(legacy.status, 201, legacy.text);
    assert.equal(legacy.body.endpoint.region_id, legacyRegion);
    assert.equal((await ic.get(`/regions/${legacyRegion}`, { token: admin })).status, 200);
    assertError(await ic.patch(`/endpoints/${legacy.body.endpoint.id}`, { endpoint: { interface: 'sideways' } }, { token: admin }), 400);
    assertError(await ic.patch(`/endpoints/${'f'.repeat(32)}`, { endpoint: { url: 'http://y' } }, { token: admin }), 404);
  });

  it('a service needs a type', async () => {
    assertError(await ic.post('/services', { service: { name: 'typeless' } }, { token: admin }), 400, 'type');
  });
});
