// Image records over HTTP: version discovery, schemas, create/show/list/update/delete,
// JSON-patch, protected, deactivate/reactivate, tags, filters, sorting and paging.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { assertError, JSON_PATCH, startImageCloud, unique, type ImageCloud } from './harness.js';

let ic: ImageCloud;
before(async () => { ic = await startImageCloud(); });
after(async () => { await ic?.close(); });

describe('image version discovery and schemas', () => {
  it('lists v2.x versions at /image (300) and at /image/v2, and is in the catalog', async () => {
    const root = await ic.get('/', { token: '' });
    assert.equal(root.status, 300);
    const versions = root.body.versions;
    assert.equal(versions[0].status, 'CURRENT');
    assert.ok(versions.some((v: any) => v.id === 'v2.0' && v.status === 'SUPPORTED'));
    assert.equal(versions[0].links[0].href, ic.url('/v2/'));
    assert.equal((await ic.get('/v2', { token: '' })).status, 200);
    const catalog = await fetch(`${ic.cloud.url}/identity/v3/auth/catalog`, { headers: { 'X-Auth-Token': ic.adminToken } }).then((r) => r.json()) as any;
    const image = catalog.catalog.find((s: any) => s.type === 'image');
    assert.equal(image.name, 'glance');
    assert.ok(image.endpoints.every((e: any) => e.url === `${ic.cloud.url}/image`));
  });

  it('publishes real JSON schemas', async () => {
    const image = (await ic.get('/v2/schemas/image')).body;
    assert.equal(image.name, 'image');
    assert.deepEqual(image.additionalProperties, { type: 'string' });
    for (const key of ['id', 'name', 'status', 'visibility', 'protected', 'os_hidden', 'checksum', 'os_hash_algo', 'os_hash_value', 'owner', 'size', 'virtual_size', 'disk_format', 'container_format', 'tags', 'min_ram', 'min_disk', 'self', 'file', 'schema', 'created_at', 'updated_at']) {
      assert.ok(image.properties[key], key);
    }
    assert.equal((await ic.get('/v2/schemas/images')).body.name, 'images');
    assert.equal((await ic.get('/v2/schemas/member')).body.name, 'member');
    assert.equal((await ic.get('/v2/schemas/members')).body.name, 'members');
    assertError(await ic.get('/v2/schemas/image', { token: '' }), 401);
  });
});

describe('image lifecycle', () => {
  it('creates (201), shows, updates with JSON-patch and deletes', async () => {
    const name = unique('cirros');
    const res = await ic.post('/v2/images', { name, disk_format: 'qcow2', container_format: 'bare', min_ram: 64, tags: ['a', 'b'], os_distro: 'cirros' });
    assert.equal(res.status, 201, res.text);
    const image = res.body;
    assert.match(image.id, /^[0-9a-f-]{36}$/);
    assert.equal(res.headers.get('location'), ic.url(`/v2/images/${image.id}`));
    assert.deepEqual({ ...image, id: undefined, created_at: undefined, updated_at: undefined }, {
      id: undefined, name, status: 'queued', visibility: 'shared', protected: false, os_hidden: false, checksum: null, os_hash_algo: null, os_hash_value: null,
      owner: ic.adminProject, size: null, virtual_size: null, min_ram: 64, min_disk: 0, disk_format: 'qcow2', container_format: 'bare',
      tags: ['a', 'b'], os_distro: 'cirros', self: `/v2/images/${image.id}`, file: `/v2/images/${image.id}/file`, schema: '/v2/schemas/image',
      created_at: undefined, updated_at: undefined,
    });
    assert.match(image.created_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);

    const patched = await ic.patch(`/v2/images/${image.id}`, [
      { op: 'replace', path: '/name', value: 'renamed' },
      { op: 'add', path: '/hw_disk_bus', value: 'virtio' },
      { op: 'remove', path: '/os_distro' },
      { op: 'replace', path: '/min_disk', value: 2 },
      { op: 'add', path: '/tags', value: ['c'] },
    ]);
    assert.equal(patched.status, 200, patched.text);
    assert.equal(patched.body.name, 'renamed');
    assert.equal(patched.body.hw_disk_bus, 'virtio');
    assert.equal(patched.body.os_distro, undefined);
    assert.equal(patched.body.min_disk, 2);
    assert.deepEqual(patched.body.tags, ['c']);
    assert.deepEqual((await ic.image(image.id)).hw_disk_bus, 'virtio');

    assert.equal((await ic.delete(`/v2/images/${image.id}`)).status, 204);
    assertError(await ic.get(`/v2/images/${image.id}`), 404, image.id);
    assertError(await ic.delete(`/v2/images/${image.id}`), 404);
  });

  it('refuses bad input with Glance errors', async () => {
    assertError(await ic.post('/v2/images', { disk_format: 'floppy' }), 400, 'floppy');
    assertError(await ic.post('/v2/images', { container_format: 'zip' }), 400, 'zip');
    assertError(await ic.post('/v2/images', { status: 'active' }), 403, "Attribute 'status' is read-only.");
    assertError(await ic.post('/v2/images', { size: 4 }), 403, 'read-only');
    assertError(await ic.post('/v2/images', { location: 'file:///etc/passwd' }), 403, 'reserved');
    assertError(await ic.post('/v2/images', { min_ram: 'lots' }), 400);
    assertError(await ic.post('/v2/images', { custom: 5 }), 400, "is not of type 'string'");
    assertError(await ic.post('/v2/images', { visibility: 'everyone' }), 400);
    assertError(await ic.post('/v2/images', { id: 'not-a-uuid' }), 400);
    const fixed = await ic.create({ id: '6c1d3c1e-3b0c-4b89-9d6c-5a8f3e0f9a11' });
    assertError(await ic.post('/v2/images', { id: fixed.id }), 409);
    assertError(await ic.call('POST', '/v2/images', { data: '{"name": ', headers: { 'Content-Type': 'application/json' } }), 400);

    const image = await ic.create();
    assertError(await ic.patch(`/v2/images/${image.id}`, [{ op: 'replace', path: '/status', value: 'active' }]), 403, "Attribute 'status' is read-only.");
    assertError(await ic.patch(`/v2/images/${image.id}`, [{ op: 'replace', path: '/checksum', value: 'x' }]), 403);
    assertError(await ic.patch(`/v2/images/${image.id}`, [{ op: 'remove', path: '/nothing' }]), 409, 'does not exist');
    assertError(await ic.patch(`/v2/images/${image.id}`, [{ op: 'replace', path: '/nothing', value: 'x' }]), 409);
    assertError(await ic.patch(`/v2/images/${image.id}`, [{ op: 'move', path: '/name' }]), 400);
    assertError(await ic.patch(`/v2/images/${image.id}`, [{ op: 'replace', path: '/a/b', value: 'x' }]), 400);
    assertError(await ic.patch(`/v2/images/${image.id}`, { op: 'replace' }), 400);
    assertError(await ic.call('PATCH', `/v2/images/${image.id}`, { body: [], headers: { 'Content-Type': 'application/json' } }), 415);
    assertError(await ic.patch(`/v2/images/${image.id}`, [{ op: 'replace', path: '/protected', value: 'yes' }]), 400);
    // Nothing of a refused patch was applied.
    assert.equal((await ic.image(image.id)).status, 'queued');
  });

  it('protects protected images from deletion', async () => {
    const image = await ic.create({ protected: true });
    assertError(await ic.delete(`/v2/images/${image.id}`), 403, 'is protected');
    await ic.patch(`/v2/images/${image.id}`, [{ op: 'replace', path: '/protected', value: false }]);
    assert.equal((await ic.delete(`/v2/images/${image.id}`)).status, 204);
  });

  it('deactivates and reactivates (admin only), refusing downloads meanwhile', async () => {
    const image = await ic.create({ visibility: 'public' });
    assertError(await ic.post(`/v2/images/${image.id}/actions/deactivate`, undefined), 400, "status 'queued'");
    assert.equal((await ic.upload(image.id, new Uint8Array([1, 2, 3]))).status, 204);
    assertError(await ic.post(`/v2/images/${image.id}/actions/deactivate`, undefined, { token: ic.demoToken }), 403);
    assert.equal((await ic.post(`/v2/images/${image.id}/actions/deactivate`, undefined)).status, 204);
    assert.equal((await ic.image(image.id)).status, 'deactivated');
    assertError(await ic.get(`/v2/images/${image.id}/file`, { token: ic.demoToken }), 403, 'deactivated');
    assert.equal((await ic.get(`/v2/images/${image.id}/file`)).status, 200, 'admins may still download it, as in Glance');
    assert.equal((await ic.post(`/v2/images/${image.id}/actions/reactivate`, undefined)).status, 204);
    assert.equal((await ic.image(image.id)).status, 'active');
    assert.equal((await ic.get(`/v2/images/${image.id}/file`)).status, 200);
  });

  it('adds and removes tags', async () => {
    const image = await ic.create();
    assert.equal((await ic.call('PUT', `/v2/images/${image.id}/tags/blue`)).status, 204);
    assert.equal((await ic.call('PUT', `/v2/images/${image.id}/tags/blue`)).status, 204);
    assert.equal((await ic.call('PUT', `/v2/images/${image.id}/tags/green`)).status, 204);
    assert.deepEqual((await ic.image(image.id)).tags, ['blue', 'green']);
    assert.equal((await ic.delete(`/v2/images/${image.id}/tags/blue`)).status, 204);
    assertError(await ic.delete(`/v2/images/${image.id}/tags/blue`), 404);
    assert.deepEqual((await ic.image(image.id)).tags, ['green']);
    assertError(await ic.call('PUT', `/v2/images/${image.id}/tags/${'x'.repeat(256)}`), 400);
  });
});

describe('image list', () => {
  const prefix = unique('list');
  const ids: string[] = [];
  before(async () => {
    for (let i = 0; i < 5; i++) {
      const image = await ic.create({ name: `${prefix}-${i}`, disk_format: i % 2 ? 'iso' : 'raw', tags: i < 2 ? ['even-two'] : [], os_hidden: i === 4, team: i === 3 ? 'red' : 'blue' });
      if (i === 1) await ic.upload(image.id, new Uint8Array(100));
      if (i === 2) await ic.upload(image.id, new Uint8Array(300));
      ids.push(image.id);
    }
  });
  const names = (res: any) => res.body.images.map((i: any) => i.name);

  it('filters by name, status, formats, size, tag, custom properties and os_hidden', async () => {
    const res = await ic.get(`/v2/images?name=${prefix}-1`);
    assert.deepEqual(names(res), [`${prefix}-1`]);
    assert.equal(res.body.first, '/v2/images');
    assert.equal(res.body.schema, '/v2/schemas/images');
    assert.deepEqual(names(await ic.get(`/v2/images?name=in:${prefix}-1,${prefix}-3&sort=name:asc`)), [`${prefix}-1`, `${prefix}-3`]);
    const mine = (res: any) => names(res).filter((n: string | null) => n?.startsWith(prefix)).sort();
    assert.deepEqual(mine(await ic.get('/v2/images?status=active')), [`${prefix}-1`, `${prefix}-2`]);
    assert.deepEqual(mine(await ic.get('/v2/images?disk_format=iso')), [`${prefix}-1`, `${prefix}-3`]);
    assert.deepEqual(mine(await ic.get('/v2/images?size_min=200')), [`${prefix}-2`]);
    assert.deepEqual(mine(await ic.get('/v2/images?size_max=200')), [`${prefix}-1`]);
    assert.deepEqual(mine(await ic.get('/v2/images?tag=even-two')), [`${prefix}-0`, `${prefix}-1`]);
    assert.deepEqual(mine(await ic.get('/v2/images?team=red')), [`${prefix}-3`]);
    assert.deepEqual(mine(await ic.get('/v2/images')), [0, 1, 2, 3].map((i) => `${prefix}-${i}`), 'os_hidden images are not listed by default');
    assert.deepEqual(mine(await ic.get('/v2/images?os_hidden=true')), [`${prefix}-4`]);
    assertError(await ic.get('/v2/images?size_min=big'), 400);
    assertError(await ic.get('/v2/images?os_hidden=maybe'), 400);
    assertError(await ic.get('/v2/images?visibility=everyone'), 400);
  });

  it('filters by time with operators', async () => {
    const first = await ic.image(ids[0]);
    const future = new Date(Date.now() + 3600_000).toISOString();
    const mine = (res: any) => names(res).filter((n: string | null) => n?.startsWith(prefix));
    assert.equal(mine(await ic.get(`/v2/images?created_at=gte:${first.created_at}`)).length, 4);
    assert.equal(mine(await ic.get(`/v2/images?created_at=gt:${future}`)).length, 0);
    assert.equal(mine(await ic.get(`/v2/images?updated_at=lt:${future}`)).length, 4);
    assert.equal(mine(await ic.get(`/v2/images?created_at=lte:2000-01-01T00:00:00Z`)).length, 0);
    assertError(await ic.get('/v2/images?created_at=between:2020-01-01T00:00:00Z'), 400, 'operator');
    assertError(await ic.get('/v2/images?created_at=gt:yesterday'), 400);
  });

  it('sorts with sort=key:dir and with sort_key/sort_dir', async () => {
    const filter = `name=in:${[0, 1, 2, 3].map((i) => `${prefix}-${i}`).join(',')}`;
    assert.deepEqual(names(await ic.get(`/v2/images?${filter}&sort=name:asc`)), [0, 1, 2, 3].map((i) => `${prefix}-${i}`));
    assert.deepEqual(names(await ic.get(`/v2/images?${filter}&sort=name:desc`)), [3, 2, 1, 0].map((i) => `${prefix}-${i}`));
    assert.deepEqual(names(await ic.get(`/v2/images?${filter}&sort=disk_format:asc,name:desc`)), [3, 1, 2, 0].map((i) => `${prefix}-${i}`));
    assert.deepEqual(names(await ic.get(`/v2/images?${filter}&sort_key=name&sort_dir=asc`)), [0, 1, 2, 3].map((i) => `${prefix}-${i}`));
    assertError(await ic.get('/v2/images?sort=color:asc'), 400, 'sort key');
    assertError(await ic.get('/v2/images?sort=name:up'), 400);
    assertError(await ic.get('/v2/images?sort=name&sort_key=name'), 400);
  });

  it('pages with limit and marker and a next link', async () => {
    const filter = `name=in:${[0, 1, 2, 3].map((i) => `${prefix}-${i}`).join(',')}&sort=name:asc`;
    const page1 = await ic.get(`/v2/images?${filter}&limit=3`);
    assert.deepEqual(names(page1), [0, 1, 2].map((i) => `${prefix}-${i}`));
    assert.match(page1.body.next, /^\/v2\/images\?.*marker=/);
    const page2 = await ic.get(page1.body.next);
    assert.deepEqual(names(page2), [`${prefix}-3`]);
    assert.equal(page2.body.next, undefined);
    assertError(await ic.get('/v2/images?marker=00000000-0000-0000-0000-000000000000'), 400, 'marker');
    assertError(await ic.get('/v2/images?limit=-1'), 400);
  });
});
