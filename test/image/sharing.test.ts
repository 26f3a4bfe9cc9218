// Visibility and members over HTTP, as the demo user and users of other projects.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { assertError, startImageCloud, unique, type ImageCloud } from './harness.js';

let ic: ImageCloud;
let other: { token: string; projectId: string };
let reader: { token: string; projectId: string };
before(async () => {
  ic = await startImageCloud();
  other = await ic.projectUser(unique('other'));
  reader = await ic.projectUser(unique('reader'), 'reader');
});
after(async () => { await ic?.close(); });

const ids = (res: any): string[] => res.body.images.map((i: any) => i.id);

describe('image visibility', () => {
  it('owner, public, community and shared images are seen as Glance does', async () => {
    const demo = ic.demoToken;
    const priv = await ic.create({ name: 'private', visibility: 'private' }, demo);
    const shared = await ic.create({ name: 'shared' }, demo);
    const community = await ic.create({ name: 'community', visibility: 'community' }, demo);
    const pub = await ic.create({ name: 'public', visibility: 'public' });
    assert.equal(priv.owner, ic.demoProject);

    // Only admins may publicize.
    assertError(await ic.post('/v2/images', { visibility: 'public' }, { token: demo }), 403, 'publicize_image');
    assertError(await ic.patch(`/v2/images/${priv.id}`, [{ op: 'replace', path: '/visibility', value: 'public' }], { token: demo }), 403, 'publicize_image');
    assertError(await ic.post('/v2/images', { owner: other.projectId }, { token: demo }), 403);

    // Another project: sees public; community on request and by id; never private or shared.
    const list = await ic.get('/v2/images', { token: other.token });
    assert.ok(ids(list).includes(pub.id));
    for (const hidden of [priv.id, shared.id, community.id]) assert.ok(!ids(list).includes(hidden));
    assert.deepEqual(ids(await ic.get('/v2/images?visibility=community', { token: other.token })), [community.id]);
    assert.equal((await ic.get(`/v2/images/${community.id}`, { token: other.token })).status, 200);
    assertError(await ic.get(`/v2/images/${priv.id}`, { token: other.token }), 404);
    assertError(await ic.get(`/v2/images/${shared.id}`, { token: other.token }), 404);
    // Seeing is not owning.
    assertError(await ic.patch(`/v2/images/${pub.id}`, [{ op: 'replace', path: '/name', value: 'x' }], { token: other.token }), 403);
    assertError(await ic.delete(`/v2/images/${community.id}`, { token: other.token }), 403);

    // The owner sees its own (not others' community images by default); the admin sees all.
    const own = ids(await ic.get('/v2/images', { token: demo }));
    for (const id of [priv.id, shared.id, community.id, pub.id]) assert.ok(own.includes(id));
    const all = ids(await ic.get('/v2/images', { token: ic.adminToken }));
    for (const id of [priv.id, shared.id, community.id, pub.id]) assert.ok(all.includes(id));
  });
});

describe('image members', () => {
  it('shares an image: pending, accepted, rejected, removed', async () => {
    const demo = ic.demoToken;
    const image = await ic.create({ name: 'to-share' }, demo);
    const priv = await ic.create({ name: 'not-shareable', visibility: 'private' }, demo);
    assertError(await ic.post(`/v2/images/${priv.id}/members`, { member: other.projectId }, { token: demo }), 403, 'Only shared images have members.');

    const added = await ic.post(`/v2/images/${image.id}/members`, { member: other.projectId }, { token: demo });
    assert.equal(added.status, 200, added.text);
    assert.deepEqual(Object.keys(added.body).sort(), ['created_at', 'image_id', 'member_id', 'schema', 'status', 'updated_at']);
    assert.equal(added.body.status, 'pending');
    assert.equal(added.body.schema, '/v2/schemas/member');
    assertError(await ic.post(`/v2/images/${image.id}/members`, { member: other.projectId }, { token: demo }), 409);
    assertError(await ic.post(`/v2/images/${image.id}/members`, {}, { token: demo }), 400);

    // Pending: visible by id and with member_status=pending, not in the default list.
    assert.equal((await ic.get(`/v2/images/${image.id}`, { token: other.token })).status, 200);
    assert.ok(!ids(await ic.get('/v2/images', { token: other.token })).includes(image.id));
    assert.deepEqual(ids(await ic.get('/v2/images?member_status=pending&visibility=shared', { token: other.token })), [image.id]);

    // Only the member changes its status; the owner cannot.
    assertError(await ic.call('PUT', `/v2/images/${image.id}/members/${other.projectId}`, { body: { status: 'accepted' }, token: demo }), 403);
    assertError(await ic.call('PUT', `/v2/images/${image.id}/members/${other.projectId}`, { body: { status: 'maybe' }, token: other.token }), 400);
    const accepted = await ic.call('PUT', `/v2/images/${image.id}/members/${other.projectId}`, { body: { status: 'accepted' }, token: other.token });
    assert.equal(accepted.status, 200, accepted.text);
    assert.equal(accepted.body.status, 'accepted');
    assert.ok(ids(await ic.get('/v2/images', { token: other.token })).includes(image.id));
    // A member may read but not change the image.
    assertError(await ic.patch(`/v2/images/${image.id}`, [{ op: 'replace', path: '/name', value: 'mine' }], { token: other.token }), 403);

    const members = await ic.get(`/v2/images/${image.id}/members`, { token: demo });
    assert.deepEqual(members.body.members.map((m: any) => [m.member_id, m.status]), [[other.projectId, 'accepted']]);
    assert.equal(members.body.schema, '/v2/schemas/members');
    assert.equal((await ic.get(`/v2/images/${image.id}/members/${other.projectId}`, { token: other.token })).body.status, 'accepted');

    await ic.call('PUT', `/v2/images/${image.id}/members/${other.projectId}`, { body: { status: 'rejected' }, token: other.token });
    assert.ok(!ids(await ic.get('/v2/images', { token: other.token })).includes(image.id));
    assert.deepEqual(ids(await ic.get('/v2/images?member_status=rejected&visibility=shared', { token: other.token })), [image.id]);

    assertError(await ic.delete(`/v2/images/${image.id}/members/${other.projectId}`, { token: other.token }), 403);
    assert.equal((await ic.delete(`/v2/images/${image.id}/members/${other.projectId}`, { token: demo })).status, 204);
    assertError(await ic.get(`/v2/images/${image.id}`, { token: other.token }), 404);
    assertError(await ic.delete(`/v2/images/${image.id}/members/${other.projectId}`, { token: demo }), 404);
  });

  it('a reader reads but cannot create or change images', async () => {
    assertError(await ic.post('/v2/images', { name: 'nope' }, { token: reader.token }), 403);
    assert.equal((await ic.get('/v2/images', { token: reader.token })).status, 200);
  });
});
