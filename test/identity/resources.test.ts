// Domains, projects (hierarchy, tags, enabled), users (options, extra attributes, filters)
// and groups with their members, over HTTP as the bootstrap admin.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { assertError, startIdentityCloud, unique, type IdentityCloud } from './harness.js';

const HEX_ID = /^[0-9a-f]{32}$/;

let ic: IdentityCloud;
let admin: string;
before(async () => {
  ic = await startIdentityCloud();
  admin = await ic.adminToken();
});
after(async () => { await ic?.close(); });

describe('domains', () => {
  it('create, show, list with filters, update, and delete only once disabled', async () => {
    const name = unique('Domain');
    const created = await ic.post('/domains', { domain: { name, description: 'for tests', ticket: 'OPS-1' } }, { token: admin });
    assert.equal(created.status, 201, created.text);
    const domain = created.body.domain;
    assert.match(domain.id, HEX_ID);
    assert.equal(domain.name, name);
    assert.equal(domain.description, 'for tests');
    assert.equal(domain.enabled, true);
    assert.equal(domain.ticket, 'OPS-1', 'extra attributes round-trip');
    assert.equal(domain.links.self, ic.v3(`/domains/${domain.id}`));

    const shown = await ic.get(`/domains/${domain.id}`, { token: admin });
    assert.equal(shown.status, 200);
    assert.deepEqual(shown.body.domain, domain);

    const byName = await ic.get(`/domains?name=${encodeURIComponent(name)}`, { token: admin });
    assert.deepEqual(byName.body.domains.map((d: any) => d.id), [domain.id]);
    const all = await ic.get('/domains', { token: admin });
    assert.ok(all.body.domains.some((d: any) => d.id === 'default' && d.name === 'Default'));
    assert.equal(all.body.links.self, ic.v3('/domains'));

    assertError(await ic.delete(`/domains/${domain.id}`, { token: admin }), 403);
    const disabled = await ic.patch(`/domains/${domain.id}`, { domain: { enabled: false, description: 'going away' } }, { token: admin });
    assert.equal(disabled.status, 200, disabled.text);
    assert.equal(disabled.body.domain.enabled, false);
    assert.equal(disabled.body.domain.description, 'going away');
    assert.equal(disabled.body.domain.ticket, 'OPS-1');
    const enabledOnly = await ic.get('/domains?enabled=false', { token: admin });
    assert.deepEqual(enabledOnly.body.domains.map((d: any) => d.id), [domain.id]);
    assert.equal((await ic.delete(`/domains/${domain.id}`, { token: admin })).status, 204);
    assertError(await ic.get(`/domains/${domain.id}`, { token: admin }), 404);
  });

  it('a duplicate name is 409', async () => {
    const name = unique('DupDomain');
    await ic.admin('POST', '/domains', { domain: { name } });
    assertError(await ic.post('/domains', { domain: { name } }, { token: admin }), 409);
  });

  it('deleting a domain removes its projects, users and groups', async () => {
    const domain = (await ic.admin('POST', '/domains', { domain: { name: unique('Doomed') } })).domain;
    const project = (await ic.admin('POST', '/projects', { project: { name: 'p', domain_id: domain.id } })).project;
    const user = (await ic.admin('POST', '/users', { user: { name: 'u', domain_id: domain.id, password: 'pw-u' } })).user;
    const group = (await ic.admin('POST', '/groups', { group: { name: 'g', domain_id: domain.id } })).group;
    await ic.admin('PATCH', `/domains/${domain.id}`, { domain: { enabled: false } });
    await ic.admin('DELETE', `/domains/${domain.id}`);
    assertError(await ic.get(`/projects/${project.id}`, { token: admin }), 404);
    assertError(await ic.get(`/users/${user.id}`, { token: admin }), 404);
    assertError(await ic.get(`/groups/${group.id}`, { token: admin }), 404);
  });

  it('users of a disabled domain cannot authenticate', async () => {
    const domain = (await ic.admin('POST', '/domains', { domain: { name: unique('Sleepy') } })).domain;
    const user = (await ic.admin('POST', '/users', { user: { name: 'sleeper', domain_id: domain.id, password: 'pw-sleep' } })).user;
    assert.equal((await ic.passwordAuth({ name: 'sleeper', domain: { id: domain.id } }, 'pw-sleep')).status, 201);
    await ic.admin('PATCH', `/domains/${domain.id}`, { domain: { enabled: false } });
    assertError(await ic.passwordAuth({ id: user.id }, 'pw-sleep'), 401);
  });
});

describe('projects', () => {
  it('a top-level project has its domain as parent_id; is_domain is false', async () => {
    const created = await ic.post('/projects', { project: { name: unique('top'), description: 'top level', domain_id: 'default', cost_center: 'cc-42' } }, { token: admin });
    assert.equal(created.status, 201, created.text);
    const project = created.body.project;
    assert.match(project.id, HEX_ID);
    assert.equal(project.domain_id, 'default');
    assert.equal(project.parent_id, 'default');
    assert.equal(project.is_domain, false);
    assert.equal(project.enabled, true);
    assert.equal(project.description, 'top level');
    assert.deepEqual(project.tags, []);
    assert.equal(project.cost_center, 'cc-42');
    assert.equal(project.links.self, ic.v3(`/projects/${project.id}`));
    const shown = await ic.get(`/projects/${project.id}`, { token: admin });
    assert.deepEqual(shown.body.project, project);
  });

  it('without domain_id the project lands in the domain of the token\'s project', async () => {
    const res = await ic.post('/projects', { project: { name: unique('implicit-domain') } }, { token: admin });
    assert.equal(res.status, 201, res.text);
    assert.equal(res.body.project.domain_id, 'default');
  });

  it('hierarchy: parent_id, parents_as_list, subtree_as_list, parent_id filter, leaf-only delete', async () => {
    const root = await ic.createProject(unique('root'));
    const child = (await ic.admin('POST', '/projects', { project: { name: unique('child'), parent_id: root.id } })).project;
    const grandchild = (await ic.admin('POST', '/projects', { project: { name: unique('grandchild'), parent_id: child.id } })).project;
    assert.equal(child.parent_id, root.id);
    assert.equal(child.domain_id, 'default');
    assert.equal(grandchild.parent_id, child.id);
    // Keystone lists only the parents and subtree projects the caller has a role on.
    for (const p of [root, child, grandchild]) await ic.grantProject(p.id, ic.ids.adminUser, ic.ids.reader);

    const parents = await ic.get(`/projects/${grandchild.id}?parents_as_list`, { token: admin });
    assert.equal(parents.status, 200, parents.text);
    assert.deepEqual(parents.body.project.parents.map((p: any) => p.project.id).sort(), [root.id, child.id].sort());
    assert.equal(parents.body.project.parents.find((p: any) => p.project.id === root.id).project.name, root.name);
    const subtree = await ic.get(`/projects/${root.id}?subtree_as_list=true`, { token: admin });
    assert.deepEqual(subtree.body.project.subtree.map((p: any) => p.project.id).sort(), [child.id, grandchild.id].sort());
    const both = await ic.get(`/projects/${child.id}?parents_as_list&subtree_as_list`, { token: admin });
    assert.deepEqual(both.body.project.parents.map((p: any) => p.project.id), [root.id]);
    assert.deepEqual(both.body.project.subtree.map((p: any) => p.project.id), [grandchild.id]);
    // A member of the child alone sees neither its parent nor the grandchild.
    const childMember = await ic.createUser(unique('child-member'), 'pw-cm');
    await ic.grantProject(child.id, childMember.id, ic.ids.member);
    const memberToken = await ic.token({ id: childMember.id }, 'pw-cm', { project: { id: child.id } });
    const hidden = await ic.get(`/projects/${child.id}?parents_as_list&subtree_as_list`, { token: memberToken });
    assert.equal(hidden.status, 200, hidden.text);
    assert.deepEqual(hidden.body.project.parents, []);
    assert.deepEqual(hidden.body.project.subtree, []);
    const plain = await ic.get(`/projects/${child.id}`, { token: admin });
    assert.equal(plain.body.project.parents, undefined);
    assert.equal(plain.body.project.subtree, undefined);

    const children = await ic.get(`/projects?parent_id=${root.id}`, { token: admin });
    assert.deepEqual(children.body.projects.map((p: any) => p.id), [child.id]);

    assertError(await ic.delete(`/projects/${root.id}`, { token: admin }), 403);
    // A parent in another domain, or an unknown parent, is refused.
    const other = (await ic.admin('POST', '/domains', { domain: { name: unique('OtherDomain') } })).domain;
    assertError(await ic.post('/projects', { project: { name: unique('cross'), parent_id: root.id, domain_id: other.id } }, { token: admin }), 400);
    assertError(await ic.post('/projects', { project: { name: unique('orphan'), parent_id: 'f'.repeat(32) } }, { token: admin }), 400);
    // Without domain_id the domain comes from the token, as in Keystone: a parent elsewhere is refused.
    const elsewhere = (await ic.admin('POST', '/projects', { project: { name: unique('elsewhere'), domain_id: other.id } })).project;
    assertError(await ic.post('/projects', { project: { name: unique('implicit'), parent_id: elsewhere.id } }, { token: admin }), 400);
    // A domain id as parent_id makes a top-level project of that domain.
    const top = await ic.post('/projects', { project: { name: unique('under-domain'), parent_id: other.id, domain_id: other.id } }, { token: admin });
    assert.equal(top.status, 201, top.text);
    assert.equal(top.body.project.parent_id, other.id);
    assert.equal(top.body.project.domain_id, other.id);
    assertError(await ic.post('/projects', { project: { name: unique('mismatch'), parent_id: other.id } }, { token: admin }), 400);
    // Children can be deleted, then the parent.
    await ic.admin('DELETE', `/projects/${grandchild.id}`);
    await ic.admin('DELETE', `/projects/${child.id}`);
    await ic.admin('DELETE', `/projects/${root.id}`);
    assertError(await ic.get(`/projects/${root.id}`, { token: admin }), 404);
  });

  it('disable and re-enable; the enabled filter; a parent with enabled children cannot be disabled', async () => {
    const parent = await ic.createProject(unique('en-parent'));
    const child = (await ic.admin('POST', '/projects', { project: { name: unique('en-child'), parent_id: parent.id } })).project;
    assertError(await ic.patch(`/projects/${parent.id}`, { project: { enabled: false } }, { token: admin }), 403);
    const off = await ic.patch(`/projects/${child.id}`, { project: { enabled: false } }, { token: admin });
    assert.equal(off.status, 200, off.text);
    assert.equal(off.body.project.enabled, false);
    const disabled = await ic.get('/projects?enabled=false', { token: admin });
    assert.ok(disabled.body.projects.some((p: any) => p.id === child.id));
    assert.ok(disabled.body.projects.every((p: any) => p.enabled === false));
    const enabled = await ic.get('/projects?enabled=true', { token: admin });
    assert.ok(!enabled.body.projects.some((p: any) => p.id === child.id));
    assert.ok(enabled.body.projects.some((p: any) => p.id === parent.id));
    const on = await ic.patch(`/projects/${child.id}`, { project: { enabled: true } }, { token: admin });
    assert.equal(on.body.project.enabled, true);
  });

  it('update name and description; duplicate names in a domain are 409; same name in another domain is fine', async () => {
    const a = await ic.createProject(unique('dup-a'));
    const b = await ic.createProject(unique('dup-b'));
    assertError(await ic.post('/projects', { project: { name: a.name, domain_id: 'default' } }, { token: admin }), 409);
    assertError(await ic.patch(`/projects/${b.id}`, { project: { name: a.name } }, { token: admin }), 409);
    const other = (await ic.admin('POST', '/domains', { domain: { name: unique('Elsewhere') } })).domain;
    const twin = await ic.post('/projects', { project: { name: a.name, domain_id: other.id } }, { token: admin });
    assert.equal(twin.status, 201, twin.text);
    const renamed = await ic.patch(`/projects/${b.id}`, { project: { name: unique('renamed'), description: 'new words' } }, { token: admin });
    assert.equal(renamed.status, 200);
    assert.equal(renamed.body.project.description, 'new words');
    assertError(await ic.patch(`/projects/${b.id}`, { project: { domain_id: other.id } }, { token: admin }), 400);
    const byName = await ic.get(`/projects?name=${encodeURIComponent(a.name)}&domain_id=default`, { token: admin });
    assert.deepEqual(byName.body.projects.map((p: any) => p.id), [a.id]);
  });

  it('the tags API: replace, list, check, add, remove, clear', async () => {
    const project = await ic.createProject(unique('tagged'), { tags: ['alpha'] });
    assert.deepEqual(project.tags, ['alpha']);
    const base = `/projects/${project.id}/tags`;
    const replaced = await ic.put(base, { tags: ['one', 'two', 'three'] }, { token: admin });
    assert.equal(replaced.status, 200, replaced.text);
    assert.deepEqual(replaced.body.tags, ['one', 'two', 'three']);
    const listed = await ic.get(base, { token: admin });
    assert.equal(listed.status, 200);
    assert.deepEqual([...listed.body.tags].sort(), ['one', 'three', 'two']);
    assert.equal(listed.body.links.self, ic.v3(base));

    const check = await ic.get(`${base}/two`, { token: admin });
    assert.equal(check.status, 204);
    assertError(await ic.get(`${base}/nine`, { token: admin }), 404);
    const added = await ic.put(`${base}/four`, undefined, { token: admin });
    assert.equal(added.status, 201, added.text);
    assert.equal(added.headers.get('location'), ic.v3(`${base}/four`));
    assert.equal((await ic.put(`${base}/four`, undefined, { token: admin })).status, 201, 'adding a present tag again is fine');
    const shown = await ic.get(`/projects/${project.id}`, { token: admin });
    assert.deepEqual([...shown.body.project.tags].sort(), ['four', 'one', 'three', 'two']);

    assert.equal((await ic.delete(`${base}/one`, { token: admin })).status, 204);
    assertError(await ic.delete(`${base}/one`, { token: admin }), 404);
    assert.deepEqual([...(await ic.get(base, { token: admin })).body.tags].sort(), ['four', 'three', 'two']);
    assert.equal((await ic.delete(base, { token: admin })).status, 204);
    assert.deepEqual((await ic.get(base, { token: admin })).body.tags, []);

    // Tags with a comma, too long, or too many are refused.
    assertError(await ic.put(`${base}/a,b`, undefined, { token: admin }), 400);
    assertError(await ic.put(base, { tags: ['x'.repeat(256)] }, { token: admin }), 400);
    assertError(await ic.put(base, { tags: Array.from({ length: 81 }, (_, i) => `t${i}`) }, { token: admin }), 400);
    assertError(await ic.get(`/projects/${'f'.repeat(32)}/tags`, { token: admin }), 404);
  });

  it('tag filters on GET /v3/projects: tags, tags-any, not-tags, not-tags-any', async () => {
    const marker = unique('m').replace(/-/g, '');
    const ab = await ic.createProject(unique('ab'), { tags: [marker, 'a', 'b'] });
    const a = await ic.createProject(unique('a'), { tags: [marker, 'a'] });
    const c = await ic.createProject(unique('c'), { tags: [marker, 'c'] });
    const ids = async (query: string) => {
      const res = await ic.get(`/projects?${query}`, { token: admin });
      assert.equal(res.status, 200, res.text);
      return res.body.projects.filter((p: any) => p.tags.includes(marker)).map((p: any) => p.id).sort();
    };
    assert.deepEqual(await ids(`tags=${marker},a,b`), [ab.id]);
    assert.deepEqual(await ids(`tags=${marker},a`), [ab.id, a.id].sort());
    assert.deepEqual(await ids(`tags-any=b,c`), [ab.id, c.id].sort());
    assert.deepEqual(await ids(`tags=${marker}&not-tags=a,b`), [a.id, c.id].sort());
    assert.deepEqual(await ids(`tags=${marker}&not-tags-any=a,b`), [c.id]);
  });
});

describe('users', () => {
  it('create with options and extra attributes: they round-trip, the password never shows', async () => {
    const name = unique('alice');
    const created = await ic.post('/users', {
      user: { name, password: 'pw-alice', domain_id: 'default', email: 'alice@example.org', description: 'Alice', options: { ignore_password_expiry: true } },
    }, { token: admin });
    assert.equal(created.status, 201, created.text);
    const user = created.body.user;
    assert.match(user.id, HEX_ID);
    assert.equal(user.name, name);
    assert.equal(user.domain_id, 'default');
    assert.equal(user.enabled, true);
    assert.equal(user.email, 'alice@example.org');
    assert.equal(user.description, 'Alice');
    assert.deepEqual(user.options, { ignore_password_expiry: true });
    assert.equal(user.password_expires_at, null);
    assert.equal(user.password, undefined);
    assert.ok(!created.text.includes('pw-alice'));
    assert.equal(user.links.self, ic.v3(`/users/${user.id}`));

    const shown = await ic.get(`/users/${user.id}`, { token: admin });
    assert.equal(shown.status, 200);
    assert.deepEqual(shown.body.user, user);

    const updated = await ic.patch(`/users/${user.id}`, { user: { email: 'alice@example.com', team: 'blue', options: { ignore_password_expiry: null, lock_password: true } } }, { token: admin });
    assert.equal(updated.status, 200, updated.text);
    assert.equal(updated.body.user.email, 'alice@example.com');
    assert.equal(updated.body.user.team, 'blue');
    assert.equal(updated.body.user.description, 'Alice');
    assert.deepEqual(updated.body.user.options, { lock_password: true });
    assertError(await ic.patch(`/users/${user.id}`, { user: { options: { no_such_option: true } } }, { token: admin }), 400);
    assertError(await ic.patch(`/users/${user.id}`, { user: { options: { lock_password: 'yes' } } }, { token: admin }), 400);
    assertError(await ic.patch(`/users/${user.id}`, { user: { options: { multi_factor_auth_rules: ['password'] } } }, { token: admin }), 400);
    const rules = await ic.patch(`/users/${user.id}`, { user: { options: { multi_factor_auth_rules: [['password', 'totp']] } } }, { token: admin });
    assert.equal(rules.status, 200, rules.text);
    assert.deepEqual(rules.body.user.options, { lock_password: true, multi_factor_auth_rules: [['password', 'totp']] });
  });

  it('a locked password cannot be changed by its owner', async () => {
    const user = await ic.createUser(unique('locked'), 'pw-locked', { options: { lock_password: true } });
    // Keystone needs no token for this call; a locked password is a 400 (PasswordSelfServiceDisabled).
    assertError(await ic.post(`/users/${user.id}/password`, { user: { original_password: 'pw-locked', password: 'pw-new' } }), 400, 'password policy disallowing password changes');
    const token = await ic.token({ id: user.id }, 'pw-locked');
    assertError(await ic.post(`/users/${user.id}/password`, { user: { original_password: 'pw-locked', password: 'pw-new' } }, { token }), 400);
    assertError(await ic.passwordAuth({ id: user.id }, 'pw-new'), 401);
    assert.equal((await ic.passwordAuth({ id: user.id }, 'pw-locked')).status, 201);
  });

  it('filters: name, domain_id, enabled', async () => {
    const prefix = unique('filter');
    const on = await ic.createUser(`${prefix}-on`, 'pw');
    const off = await ic.createUser(`${prefix}-off`, 'pw', { enabled: false });
    const other = (await ic.admin('POST', '/domains', { domain: { name: unique('UserDomain') } })).domain;
    const elsewhere = (await ic.admin('POST', '/users', { user: { name: `${prefix}-on`, domain_id: other.id } })).user;
    const names = async (query: string) => (await ic.get(`/users?${query}`, { token: admin })).body.users.map((u: any) => u.id).sort();
    assert.deepEqual(await names(`name=${prefix}-on`), [on.id, elsewhere.id].sort());
    assert.deepEqual(await names(`name=${prefix}-on&domain_id=default`), [on.id]);
    assert.deepEqual(await names(`domain_id=${other.id}`), [elsewhere.id]);
    const disabled = await names('enabled=false');
    assert.ok(disabled.includes(off.id) && !disabled.includes(on.id));
    const enabled = await names('enabled=true');
    assert.ok(enabled.includes(on.id) && !enabled.includes(off.id));
  });

  it('duplicate names in a domain are 409; a disabled user cannot authenticate', async () => {
    const name = unique('dupuser');
    const user = await ic.createUser(name, 'pw-dup');
    assertError(await ic.post('/users', { user: { name, domain_id: 'default' } }, { token: admin }), 409);
    await ic.admin('PATCH', `/users/${user.id}`, { user: { enabled: false } });
    assertError(await ic.passwordAuth({ id: user.id }, 'pw-dup'), 401);
  });

  it('a user without a password cannot authenticate', async () => {
    const user = (await ic.admin('POST', '/users', { user: { name: unique('nopass'), domain_id: 'default' } })).user;
    assertError(await ic.passwordAuth({ id: user.id }, ''), 401);
    assertError(await ic.passwordAuth({ id: user.id }, 'anything'), 401);
  });

  it('GET /v3/users/{id}/projects and /groups', async () => {
    const user = await ic.createUser(unique('member-of'), 'pw');
    const project = await ic.createProject(unique('theirs'));
    await ic.grantProject(project.id, user.id, ic.ids.member);
    const group = (await ic.admin('POST', '/groups', { group: { name: unique('club') } })).group;
    await ic.admin('PUT', `/groups/${group.id}/users/${user.id}`, undefined, 204);
    const projects = await ic.get(`/users/${user.id}/projects`, { token: admin });
    assert.equal(projects.status, 200);
    assert.deepEqual(projects.body.projects.map((p: any) => p.id), [project.id]);
    const groups = await ic.get(`/users/${user.id}/groups`, { token: admin });
    assert.deepEqual(groups.body.groups.map((g: any) => g.id), [group.id]);
  });

  it('delete: 204, then 404', async () => {
    const user = await ic.createUser(unique('gone'), 'pw');
    assert.equal((await ic.delete(`/users/${user.id}`, { token: admin })).status, 204);
    assertError(await ic.get(`/users/${user.id}`, { token: admin }), 404);
    assertError(await ic.delete(`/users/${user.id}`, { token: admin }), 404);
  });
});

describe('groups', () => {
  it('CRUD, membership (PUT, HEAD, GET, DELETE) and listing members', async () => {
    const name = unique('devs');
    const created = await ic.post('/groups', { group: { name, description: 'developers', domain_id: 'default', mailing_list: 'devs@example.org' } }, { token: admin });
    assert.equal(created.status, 201, created.text);
    const group = created.body.group;
    assert.match(group.id, HEX_ID);
    assert.equal(group.domain_id, 'default');
    assert.equal(group.description, 'developers');
    assert.equal(group.mailing_list, 'devs@example.org');
    assert.equal(group.links.self, ic.v3(`/groups/${group.id}`));
    assertError(await ic.post('/groups', { group: { name, domain_id: 'default' } }, { token: admin }), 409);

    const listed = await ic.get(`/groups?name=${name}`, { token: admin });
    assert.deepEqual(listed.body.groups.map((g: any) => g.id), [group.id]);
    const patched = await ic.patch(`/groups/${group.id}`, { group: { description: 'all developers' } }, { token: admin });
    assert.equal(patched.body.group.description, 'all developers');
    assert.equal(patched.body.group.name, name);

    const u1 = await ic.createUser(unique('dev1'), 'pw');
    const u2 = await ic.createUser(unique('dev2'), 'pw');
    assert.equal((await ic.head(`/groups/${group.id}/users/${u1.id}`, { token: admin })).status, 404);
    assertError(await ic.get(`/groups/${group.id}/users/${u1.id}`, { token: admin }), 404);
    for (const u of [u1, u2]) assert.equal((await ic.put(`/groups/${group.id}/users/${u.id}`, undefined, { token: admin })).status, 204);
    assert.equal((await ic.put(`/groups/${group.id}/users/${u1.id}`, undefined, { token: admin })).status, 204, 'adding twice is fine');
    assert.equal((await ic.head(`/groups/${group.id}/users/${u1.id}`, { token: admin })).status, 204);
    assert.equal((await ic.get(`/groups/${group.id}/users/${u1.id}`, { token: admin })).status, 204);
    const members = await ic.get(`/groups/${group.id}/users`, { token: admin });
    assert.deepEqual(members.body.users.map((u: any) => u.id).sort(), [u1.id, u2.id].sort());
    assert.equal((await ic.delete(`/groups/${group.id}/users/${u1.id}`, { token: admin })).status, 204);
    assert.equal((await ic.head(`/groups/${group.id}/users/${u1.id}`, { token: admin })).status, 404);
    assertError(await ic.delete(`/groups/${group.id}/users/${u1.id}`, { token: admin }), 404);
    assertError(await ic.put(`/groups/${group.id}/users/${'f'.repeat(32)}`, undefined, { token: admin }), 404);

    assert.equal((await ic.delete(`/groups/${group.id}`, { token: admin })).status, 204);
    assertError(await ic.get(`/groups/${group.id}`, { token: admin }), 404);
    assert.deepEqual((await ic.get(`/users/${u2.id}/groups`, { token: admin })).body.groups, []);
  });
});
