// Server groups over HTTP: create with policies (< 2.64, soft policies from 2.15) or policy and
// rules (≥ 2.64), the views per microversion, members from real server creates, list with
// all_projects and limit/offset, policy refusals, quotas (server_groups, server_group_members).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { assertError, startComputeCloud, unique, type ComputeCloud } from './harness.js';

describe('server groups', () => {
  let cc: ComputeCloud;
  let imageId: string;

  before(async () => {
    cc = await startComputeCloud({ quota: { server_groups: '4', server_group_members: '2' } }, 2);
    imageId = await cc.createImage({ visibility: 'public' });
  });
  after(async () => cc?.close());

  const create = (group: Record<string, unknown>, microversion?: string, token?: string) =>
    cc.post('/os-server-groups', { server_group: group }, { microversion, token });

  it('creates and shows groups in the shape of each microversion', async () => {
    const old = await create({ name: 'web', policies: ['anti-affinity'] });
    assert.equal(old.status, 200, old.text);
    assert.deepEqual(Object.keys(old.body.server_group).sort(), ['id', 'members', 'metadata', 'name', 'policies']);
    assert.deepEqual(old.body.server_group.policies, ['anti-affinity']);
    assert.deepEqual(old.body.server_group.metadata, {});
    assert.deepEqual(old.body.server_group.members, []);
    const id = old.body.server_group.id;

    const v213 = await cc.get(`/os-server-groups/${id}`, { microversion: '2.13' });
    assert.equal(v213.body.server_group.project_id, cc.adminProject);
    assert.equal(v213.body.server_group.user_id, cc.adminUser);
    const v264 = await cc.get(`/os-server-groups/${id}`, { microversion: '2.64' });
    assert.deepEqual(v264.body.server_group, { id, name: 'web', policy: 'anti-affinity', rules: {}, members: [], project_id: cc.adminProject, user_id: cc.adminUser });

    const ruled = await create({ name: 'spread', policy: 'anti-affinity', rules: { max_server_per_host: '3' } }, '2.64');
    assert.equal(ruled.status, 200, ruled.text);
    assert.deepEqual(ruled.body.server_group.rules, { max_server_per_host: 3 });
    assert.deepEqual((await cc.get(`/os-server-groups/${ruled.body.server_group.id}`)).body.server_group.policies, ['anti-affinity']);

    for (const gid of [id, ruled.body.server_group.id]) assert.equal((await cc.delete(`/os-server-groups/${gid}`)).status, 204);
    assertError(await cc.get(`/os-server-groups/${id}`), 404, `Instance group ${id} could not be found.`);
    assertError(await cc.delete(`/os-server-groups/${id}`), 404);
  });

  it('validates the body as each microversion does', async () => {
    assertError(await create({ name: 'x', policies: ['soft-affinity'] }), 400, /'soft-affinity' is not one of \['anti-affinity', 'affinity'\]/);
    const soft = await create({ name: 'x', policies: ['soft-affinity'] }, '2.15');
    assert.equal(soft.status, 200, soft.text);
    await cc.delete(`/os-server-groups/${soft.body.server_group.id}`);
    assertError(await create({ name: 'x', policies: ['affinity', 'anti-affinity'] }), 400, /is too long/);
    assertError(await create({ name: 'x', policies: [] }), 400, /policies/);
    assertError(await create({ name: 'x' }), 400, "'policies' is a required property");
    assertError(await create({ name: 'x', policies: ['affinity'] }, '2.64'), 400, "'policy' is a required property");
    assertError(await create({ name: 'x', policy: 'affinity', rules: { max_server_per_host: 2 } }, '2.64'), 400, 'Only anti-affinity policy supports rules.');
    assertError(await create({ name: 'x', policy: 'anti-affinity', rules: { max_server_per_host: 0 } }, '2.64'), 400, /less than the minimum of 1/);
    assertError(await create({ name: 'x', policy: 'anti-affinity', rules: { other: 1 } }, '2.64'), 400, "('other' was unexpected)");
    assertError(await create({ name: ' x', policies: ['affinity'] }), 400, "An invalid 'name' value was provided.");
    assertError(await create({ name: 'x'.repeat(256), policies: ['affinity'] }), 400, /is too long/);
  });

  it('lists the caller\'s groups, all projects for admins, with limit and offset', async () => {
    const mine = await create({ name: unique('demo'), policies: ['affinity'] }, undefined, cc.demoToken);
    assert.equal(mine.status, 200, mine.text);
    const adminGroups = [];
    for (let i = 0; i < 3; i++) adminGroups.push((await create({ name: `a${i}`, policies: ['affinity'] })).body.server_group.id);

    const demoList = await cc.get('/os-server-groups', { token: cc.demoToken });
    assert.deepEqual(demoList.body.server_groups.map((g: any) => g.id), [mine.body.server_group.id]);
    // all_projects is ignored for non-admins.
    assert.equal((await cc.get('/os-server-groups?all_projects=True', { token: cc.demoToken })).body.server_groups.length, 1);
    const adminList = await cc.get('/os-server-groups');
    assert.deepEqual(adminList.body.server_groups.map((g: any) => g.id), adminGroups);
    const all = await cc.get('/os-server-groups?all_projects=1');
    assert.equal(all.body.server_groups.length, 4);
    const paged = await cc.get('/os-server-groups?limit=1&offset=1');
    assert.deepEqual(paged.body.server_groups.map((g: any) => g.id), [adminGroups[1]]);
    assertError(await cc.get('/os-server-groups?limit=x'), 400, /query parameters limit/);

    // Someone else's group: reading or deleting it is refused by policy.
    assertError(await cc.get(`/os-server-groups/${adminGroups[0]}`, { token: cc.demoToken }), 403, 'os_compute_api:os-server-groups:show');
    assertError(await cc.delete(`/os-server-groups/${adminGroups[0]}`, { token: cc.demoToken }), 403);
    // A reader cannot create.
    const reader = await cc.projectUser(unique('reader'), 'reader');
    assertError(await create({ name: 'r', policies: ['affinity'] }, undefined, reader.token), 403, 'os_compute_api:os-server-groups:create');

    // [quota] server_groups = 4 per project: the admin project has 3, one more, then 403.
    assert.equal((await create({ name: 'a3', policies: ['affinity'] })).status, 200);
    assertError(await create({ name: 'a4', policies: ['affinity'] }), 403, 'Quota exceeded, too many server groups.');
    for (const g of (await cc.get('/os-server-groups')).body.server_groups) await cc.delete(`/os-server-groups/${g.id}`);
    await cc.delete(`/os-server-groups/${mine.body.server_group.id}`, { token: cc.demoToken });
  });

  it('records members from server create and enforces server_group_members', async () => {
    const group = (await create({ name: 'members', policies: ['soft-anti-affinity'] }, '2.15')).body.server_group;
    const hints = { group: group.id };
    const a = await cc.boot({ name: 'm-a', imageRef: imageId }, { hints });
    const b = await cc.boot({ name: 'm-b', imageRef: imageId }, { hints });
    await cc.waitServer(a.id);
    await cc.waitServer(b.id);
    const shown = await cc.get(`/os-server-groups/${group.id}`);
    assert.deepEqual([...shown.body.server_group.members].sort(), [a.id, b.id].sort());
    // [quota] server_group_members = 2.
    const third = await cc.post('/servers', { server: { name: 'm-c', imageRef: imageId, flavorRef: '1', networks: 'none' }, 'os:scheduler_hints': hints }, { microversion: '2.79' });
    assertError(third, 403, 'Quota exceeded, too many servers in group');

    // A deleted server leaves the group.
    assert.equal((await cc.delete(`/servers/${a.id}`)).status, 204);
    await cc.waitServer(a.id, (s) => s.status === 'DELETED');
    assert.deepEqual((await cc.get(`/os-server-groups/${group.id}`)).body.server_group.members, [b.id]);
    const again = await cc.boot({ name: 'm-d', imageRef: imageId }, { hints });
    await cc.waitServer(again.id);
    assert.equal((await cc.get(`/os-server-groups/${group.id}`)).body.server_group.members.length, 2);
    for (const s of [b, again]) await cc.delete(`/servers/${s.id}`);
  });
});
