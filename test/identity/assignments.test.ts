// Roles (global and domain-specific), implied roles, grants on projects, domains and the
// system for users and groups, OS-INHERIT grants, and GET /v3/role_assignments.
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

const createRole = async (name: string, extra: Record<string, unknown> = {}) => (await ic.admin('POST', '/roles', { role: { name, ...extra } })).role;

/** GET /v3/role_assignments?QUERY as the admin; the list. */
async function assignments(query: string): Promise<any[]> {
  const res = await ic.get(`/role_assignments?${query}`, { token: admin });
  assert.equal(res.status, 200, res.text);
  assert.ok(res.body.links && 'self' in res.body.links);
  return res.body.role_assignments;
}

/** A compact form of an assignment for comparisons: actor:id role scope. */
function brief(a: any): string {
  const actor = a.user ? `user:${a.user.id}` : `group:${a.group.id}`;
  const scope = a.scope.project ? `project:${a.scope.project.id}` : a.scope.domain ? `domain:${a.scope.domain.id}` : 'system';
  return `${actor} ${a.role.id} ${scope}${a.scope['OS-INHERIT:inherited_to'] ? ' inherited' : ''}`;
}

describe('roles', () => {
  it('global roles: create, show, list, filter by name, update, delete', async () => {
    const name = unique('auditor');
    const created = await ic.post('/roles', { role: { name, description: 'reads the books', colour: 'green' } }, { token: admin });
    assert.equal(created.status, 201, created.text);
    const role = created.body.role;
    assert.match(role.id, /^[0-9a-f]{32}$/);
    assert.equal(role.name, name);
    assert.equal(role.domain_id, null);
    assert.equal(role.description, 'reads the books');
    assert.equal(role.colour, 'green');
    assert.deepEqual(role.options, {});
    assert.equal(role.links.self, ic.v3(`/roles/${role.id}`));
    assert.deepEqual((await ic.get(`/roles/${role.id}`, { token: admin })).body.role, role);

    const all = await ic.get('/roles', { token: admin });
    const names = all.body.roles.map((r: any) => r.name);
    for (const n of ['admin', 'member', 'reader', name]) assert.ok(names.includes(n), `${n} missing from /v3/roles`);
    assert.deepEqual((await ic.get(`/roles?name=${name}`, { token: admin })).body.roles.map((r: any) => r.id), [role.id]);

    const updated = await ic.patch(`/roles/${role.id}`, { role: { description: 'audits' } }, { token: admin });
    assert.equal(updated.status, 200, updated.text);
    assert.equal(updated.body.role.description, 'audits');
    assert.equal(updated.body.role.name, name);
    assertError(await ic.post('/roles', { role: { name } }, { token: admin }), 409);
    assert.equal((await ic.delete(`/roles/${role.id}`, { token: admin })).status, 204);
    assertError(await ic.get(`/roles/${role.id}`, { token: admin }), 404);
  });

  it('domain-specific roles: listed by domain_id only, same name allowed, assignable only within the domain', async () => {
    const domain = (await ic.admin('POST', '/domains', { domain: { name: unique('RoleDomain') } })).domain;
    const name = unique('operator');
    const global = await createRole(name);
    const created = await ic.post('/roles', { role: { name, domain_id: domain.id } }, { token: admin });
    assert.equal(created.status, 201, created.text);
    const local = created.body.role;
    assert.equal(local.domain_id, domain.id);
    assertError(await ic.post('/roles', { role: { name, domain_id: domain.id } }, { token: admin }), 409);

    const globals = (await ic.get('/roles', { token: admin })).body.roles.map((r: any) => r.id);
    assert.ok(globals.includes(global.id) && !globals.includes(local.id));
    const locals = (await ic.get(`/roles?domain_id=${domain.id}`, { token: admin })).body.roles.map((r: any) => r.id);
    assert.deepEqual(locals, [local.id]);

    const inDomain = (await ic.admin('POST', '/projects', { project: { name: 'p', domain_id: domain.id } })).project;
    const user = await ic.createUser(unique('dr-user'), 'pw');
    assert.equal((await ic.put(`/projects/${inDomain.id}/users/${user.id}/roles/${local.id}`, undefined, { token: admin })).status, 204);
    assertError(await ic.put(`/projects/${ic.ids.demoProject}/users/${user.id}/roles/${local.id}`, undefined, { token: admin }), 403);
    // A domain-specific role cannot be implied.
    assertError(await ic.put(`/roles/${global.id}/implies/${local.id}`, undefined, { token: admin }), 403);
  });

  it('implied roles: create, show, check, list, role_inferences, delete; the effect on tokens', async () => {
    const prior = await createRole(unique('prior'));
    const implied = await createRole(unique('implied'));
    const created = await ic.put(`/roles/${prior.id}/implies/${implied.id}`, undefined, { token: admin });
    assert.equal(created.status, 201, created.text);
    assert.deepEqual(created.body.role_inference, {
      prior_role: { id: prior.id, name: prior.name, links: { self: ic.v3(`/roles/${prior.id}`) } },
      implies: { id: implied.id, name: implied.name, links: { self: ic.v3(`/roles/${implied.id}`) } },
    });
    assert.equal(created.body.links.self, ic.v3(`/roles/${prior.id}/implies/${implied.id}`));

    const shown = await ic.get(`/roles/${prior.id}/implies/${implied.id}`, { token: admin });
    assert.equal(shown.status, 200);
    assert.deepEqual(shown.body.role_inference, created.body.role_inference);
    assert.equal((await ic.head(`/roles/${prior.id}/implies/${implied.id}`, { token: admin })).status, 204);
    assert.equal((await ic.head(`/roles/${implied.id}/implies/${prior.id}`, { token: admin })).status, 404);

    const list = await ic.get(`/roles/${prior.id}/implies`, { token: admin });
    assert.equal(list.status, 200);
    assert.equal(list.body.role_inference.prior_role.id, prior.id);
    assert.deepEqual(list.body.role_inference.implies.map((r: any) => r.id), [implied.id]);

    const inferences = await ic.get('/role_inferences', { token: admin });
    assert.equal(inferences.status, 200);
    const ours = inferences.body.role_inferences.find((i: any) => i.prior_role.id === prior.id);
    assert.deepEqual(ours.implies.map((r: any) => r.id), [implied.id]);
    const adminRule = inferences.body.role_inferences.find((i: any) => i.prior_role.id === ic.ids.admin);
    assert.deepEqual(adminRule.implies.map((r: any) => r.name), ['member']);

    // A user granted the prior role gets both on a token.
    const project = await ic.createProject(unique('implied-project'));
    const user = await ic.createUser(unique('implied-user'), 'pw-imp');
    await ic.grantProject(project.id, user.id, prior.id);
    const token = await ic.passwordAuth({ id: user.id }, 'pw-imp', { project: { id: project.id } });
    assert.deepEqual(token.body.token.roles.map((r: any) => r.id).sort(), [prior.id, implied.id].sort());

    // A cycle is refused; so is implying admin (Keystone's prohibited_implied_role).
    assertError(await ic.put(`/roles/${implied.id}/implies/${prior.id}`, undefined, { token: admin }), 403);
    assertError(await ic.put(`/roles/${prior.id}/implies/${ic.ids.admin}`, undefined, { token: admin }), 403);
    assertError(await ic.put(`/roles/${prior.id}/implies/${'f'.repeat(32)}`, undefined, { token: admin }), 404);

    assert.equal((await ic.delete(`/roles/${prior.id}/implies/${implied.id}`, { token: admin })).status, 204);
    assertError(await ic.get(`/roles/${prior.id}/implies/${implied.id}`, { token: admin }), 404);
    assertError(await ic.delete(`/roles/${prior.id}/implies/${implied.id}`, { token: admin }), 404);
    const after = await ic.passwordAuth({ id: user.id }, 'pw-imp', { project: { id: project.id } });
    assert.deepEqual(after.body.token.roles.map((r: any) => r.id), [prior.id]);
  });
});

describe('grants', () => {
  it('user on a project: PUT, check (HEAD and GET), list, DELETE', async () => {
    const project = await ic.createProject(unique('grant-project'));
    const user = await ic.createUser(unique('grantee'), 'pw');
    const base = `/projects/${project.id}/users/${user.id}/roles`;
    assert.equal((await ic.head(`${base}/${ic.ids.member}`, { token: admin })).status, 404);
    const put = await ic.put(`${base}/${ic.ids.member}`, undefined, { token: admin });
    assert.equal(put.status, 204, put.text);
    assert.equal((await ic.put(`${base}/${ic.ids.member}`, undefined, { token: admin })).status, 204, 'granting twice is fine');
    assert.equal((await ic.head(`${base}/${ic.ids.member}`, { token: admin })).status, 204);
    assert.equal((await ic.get(`${base}/${ic.ids.member}`, { token: admin })).status, 204);
    const list = await ic.get(base, { token: admin });
    assert.equal(list.status, 200);
    assert.deepEqual(list.body.roles.map((r: any) => r.id), [ic.ids.member], 'lists direct grants, not implied roles');
    assert.equal(list.body.roles[0].name, 'member');
    assert.equal((await ic.delete(`${base}/${ic.ids.member}`, { token: admin })).status, 204);
    assertError(await ic.get(`${base}/${ic.ids.member}`, { token: admin }), 404);
    assertError(await ic.delete(`${base}/${ic.ids.member}`, { token: admin }), 404);
    assert.deepEqual((await ic.get(base, { token: admin })).body.roles, []);
  });

  it('unknown role, user, group or project is 404', async () => {
    const project = await ic.createProject(unique('grant-404'));
    const user = await ic.createUser(unique('grant-404-user'), 'pw');
    const nope = 'f'.repeat(32);
    assertError(await ic.put(`/projects/${project.id}/users/${user.id}/roles/${nope}`, undefined, { token: admin }), 404);
    assertError(await ic.put(`/projects/${project.id}/users/${nope}/roles/${ic.ids.member}`, undefined, { token: admin }), 404);
    assertError(await ic.put(`/projects/${project.id}/groups/${nope}/roles/${ic.ids.member}`, undefined, { token: admin }), 404);
    assertError(await ic.put(`/projects/${nope}/users/${user.id}/roles/${ic.ids.member}`, undefined, { token: admin }), 404);
    assertError(await ic.put(`/domains/${nope}/users/${user.id}/roles/${ic.ids.member}`, undefined, { token: admin }), 404);
    assertError(await ic.get(`/projects/${nope}/users/${user.id}/roles`, { token: admin }), 404);
  });

  it('group on a project: members get the role on tokens; leaving the group takes it away', async () => {
    const project = await ic.createProject(unique('group-grant'));
    const user = await ic.createUser(unique('grouped'), 'pw-g');
    const group = (await ic.admin('POST', '/groups', { group: { name: unique('grp') } })).group;
    await ic.admin('PUT', `/groups/${group.id}/users/${user.id}`, undefined, 204);
    assertError(await ic.passwordAuth({ id: user.id }, 'pw-g', { project: { id: project.id } }), 401);
    const base = `/projects/${project.id}/groups/${group.id}/roles`;
    assert.equal((await ic.put(`${base}/${ic.ids.member}`, undefined, { token: admin })).status, 204);
    assert.equal((await ic.head(`${base}/${ic.ids.member}`, { token: admin })).status, 204);
    assert.deepEqual((await ic.get(base, { token: admin })).body.roles.map((r: any) => r.id), [ic.ids.member]);
    const token = await ic.passwordAuth({ id: user.id }, 'pw-g', { project: { id: project.id } });
    assert.equal(token.status, 201, token.text);
    assert.deepEqual(token.body.token.roles.map((r: any) => r.name).sort(), ['member', 'reader']);
    assert.equal((await ic.delete(`${base}/${ic.ids.member}`, { token: admin })).status, 204);
    assertError(await ic.passwordAuth({ id: user.id }, 'pw-g', { project: { id: project.id } }), 401);
  });

  it('user and group on a domain', async () => {
    const domain = (await ic.admin('POST', '/domains', { domain: { name: unique('GrantDomain') } })).domain;
    const user = await ic.createUser(unique('dom-user'), 'pw-d');
    const group = (await ic.admin('POST', '/groups', { group: { name: unique('dom-group') } })).group;
    await ic.admin('PUT', `/groups/${group.id}/users/${user.id}`, undefined, 204);
    assert.equal((await ic.put(`/domains/${domain.id}/users/${user.id}/roles/${ic.ids.reader}`, undefined, { token: admin })).status, 204);
    assert.equal((await ic.put(`/domains/${domain.id}/groups/${group.id}/roles/${ic.ids.member}`, undefined, { token: admin })).status, 204);
    assert.equal((await ic.head(`/domains/${domain.id}/users/${user.id}/roles/${ic.ids.reader}`, { token: admin })).status, 204);
    assert.deepEqual((await ic.get(`/domains/${domain.id}/users/${user.id}/roles`, { token: admin })).body.roles.map((r: any) => r.id), [ic.ids.reader]);
    assert.deepEqual((await ic.get(`/domains/${domain.id}/groups/${group.id}/roles`, { token: admin })).body.roles.map((r: any) => r.id), [ic.ids.member]);
    const token = await ic.passwordAuth({ id: user.id }, 'pw-d', { domain: { id: domain.id } });
    assert.equal(token.status, 201, token.text);
    assert.deepEqual(token.body.token.roles.map((r: any) => r.name).sort(), ['member', 'reader']);
    assert.equal((await ic.delete(`/domains/${domain.id}/groups/${group.id}/roles/${ic.ids.member}`, { token: admin })).status, 204);
    assert.equal((await ic.head(`/domains/${domain.id}/groups/${group.id}/roles/${ic.ids.member}`, { token: admin })).status, 404);
  });

  it('system grants for users and groups', async () => {
    const user = await ic.createUser(unique('sys-user'), 'pw-s');
    const group = (await ic.admin('POST', '/groups', { group: { name: unique('sys-group') } })).group;
    const groupie = await ic.createUser(unique('sys-groupie'), 'pw-sg');
    await ic.admin('PUT', `/groups/${group.id}/users/${groupie.id}`, undefined, 204);
    assertError(await ic.passwordAuth({ id: user.id }, 'pw-s', { system: { all: true } }), 401);
    assert.equal((await ic.put(`/system/users/${user.id}/roles/${ic.ids.reader}`, undefined, { token: admin })).status, 204);
    assert.equal((await ic.put(`/system/groups/${group.id}/roles/${ic.ids.reader}`, undefined, { token: admin })).status, 204);
    assert.equal((await ic.head(`/system/users/${user.id}/roles/${ic.ids.reader}`, { token: admin })).status, 204);
    assert.equal((await ic.get(`/system/groups/${group.id}/roles/${ic.ids.reader}`, { token: admin })).status, 204);
    assert.deepEqual((await ic.get(`/system/users/${user.id}/roles`, { token: admin })).body.roles.map((r: any) => r.id), [ic.ids.reader]);
    assert.deepEqual((await ic.get(`/system/groups/${group.id}/roles`, { token: admin })).body.roles.map((r: any) => r.id), [ic.ids.reader]);
    for (const [id, pw] of [[user.id, 'pw-s'], [groupie.id, 'pw-sg']]) {
      const token = await ic.passwordAuth({ id }, pw, { system: { all: true } });
      assert.equal(token.status, 201, token.text);
      assert.deepEqual(token.body.token.roles.map((r: any) => r.name), ['reader']);
      assert.deepEqual(token.body.token.system, { all: true });
    }
    const res = await ic.get('/auth/system', { token: await ic.token({ id: user.id }, 'pw-s', 'unscoped') });
    assert.deepEqual(res.body.system, [{ all: true }]);
    assert.equal((await ic.delete(`/system/users/${user.id}/roles/${ic.ids.reader}`, { token: admin })).status, 204);
    assert.equal((await ic.head(`/system/users/${user.id}/roles/${ic.ids.reader}`, { token: admin })).status, 404);
    assertError(await ic.get(`/system/users/${user.id}/roles/${ic.ids.reader}`, { token: admin }), 404);
    assertError(await ic.passwordAuth({ id: user.id }, 'pw-s', { system: { all: true } }), 401);
  });

  it('OS-INHERIT on a domain: every project of the domain, not the domain itself', async () => {
    const domain = (await ic.admin('POST', '/domains', { domain: { name: unique('InheritDomain') } })).domain;
    const p1 = (await ic.admin('POST', '/projects', { project: { name: 'p1', domain_id: domain.id } })).project;
    const user = await ic.createUser(unique('heir'), 'pw-h');
    const path = `/OS-INHERIT/domains/${domain.id}/users/${user.id}/roles/${ic.ids.member}/inherited_to_projects`;
    assert.equal((await ic.put(path, undefined, { token: admin })).status, 204);
    assert.equal((await ic.head(path, { token: admin })).status, 204);
    assert.equal((await ic.get(path, { token: admin })).status, 204);
    const list = await ic.get(`/OS-INHERIT/domains/${domain.id}/users/${user.id}/roles/inherited_to_projects`, { token: admin });
    assert.deepEqual(list.body.roles.map((r: any) => r.id), [ic.ids.member]);
    // Not a direct grant on the domain.
    assert.deepEqual((await ic.get(`/domains/${domain.id}/users/${user.id}/roles`, { token: admin })).body.roles, []);
    assertError(await ic.passwordAuth({ id: user.id }, 'pw-h', { domain: { id: domain.id } }), 401);
    // Projects created before and after the grant are covered.
    const p2 = (await ic.admin('POST', '/projects', { project: { name: 'p2', domain_id: domain.id } })).project;
    for (const p of [p1, p2]) {
      const token = await ic.passwordAuth({ id: user.id }, 'pw-h', { project: { id: p.id } });
      assert.equal(token.status, 201, token.text);
      assert.ok(token.body.token.roles.some((r: any) => r.id === ic.ids.member));
    }
    const mine = await ic.get('/auth/projects', { token: await ic.token({ id: user.id }, 'pw-h', 'unscoped') });
    assert.deepEqual(mine.body.projects.map((p: any) => p.id).sort(), [p1.id, p2.id].sort());
    assert.equal((await ic.delete(path, { token: admin })).status, 204);
    assertError(await ic.passwordAuth({ id: user.id }, 'pw-h', { project: { id: p1.id } }), 401);
  });

  it('OS-INHERIT on a project: its subtree, not the project itself (groups too)', async () => {
    const parent = await ic.createProject(unique('inherit-parent'));
    const child = (await ic.admin('POST', '/projects', { project: { name: unique('inherit-child'), parent_id: parent.id } })).project;
    const user = await ic.createUser(unique('sub-heir'), 'pw-sh');
    const group = (await ic.admin('POST', '/groups', { group: { name: unique('heirs') } })).group;
    await ic.admin('PUT', `/groups/${group.id}/users/${user.id}`, undefined, 204);
    const path = `/OS-INHERIT/projects/${parent.id}/groups/${group.id}/roles/${ic.ids.reader}/inherited_to_projects`;
    assert.equal((await ic.put(path, undefined, { token: admin })).status, 204);
    assert.equal((await ic.head(path, { token: admin })).status, 204);
    assertError(await ic.passwordAuth({ id: user.id }, 'pw-sh', { project: { id: parent.id } }), 401);
    const token = await ic.passwordAuth({ id: user.id }, 'pw-sh', { project: { id: child.id } });
    assert.equal(token.status, 201, token.text);
    assert.deepEqual(token.body.token.roles.map((r: any) => r.name), ['reader']);
  });
});

describe('GET /v3/role_assignments', () => {
  let project: any, domain: any, user: any, groupUser: any, group: any, prior: any, implied: any;
  before(async () => {
    domain = (await ic.admin('POST', '/domains', { domain: { name: unique('RaDomain') } })).domain;
    project = (await ic.admin('POST', '/projects', { project: { name: 'ra-project', domain_id: domain.id } })).project;
    user = (await ic.admin('POST', '/users', { user: { name: 'ra-user', domain_id: domain.id, password: 'pw' } })).user;
    groupUser = (await ic.admin('POST', '/users', { user: { name: 'ra-group-user', domain_id: domain.id } })).user;
    group = (await ic.admin('POST', '/groups', { group: { name: 'ra-group', domain_id: domain.id } })).group;
    await ic.admin('PUT', `/groups/${group.id}/users/${groupUser.id}`, undefined, 204);
    prior = await createRole(unique('ra-prior'));
    implied = await createRole(unique('ra-implied'));
    await ic.admin('PUT', `/roles/${prior.id}/implies/${implied.id}`, undefined, 201);
    await ic.grantProject(project.id, user.id, prior.id);
    await ic.admin('PUT', `/projects/${project.id}/groups/${group.id}/roles/${ic.ids.reader}`, undefined, 204);
    await ic.admin('PUT', `/domains/${domain.id}/users/${user.id}/roles/${ic.ids.reader}`, undefined, 204);
    await ic.admin('PUT', `/OS-INHERIT/domains/${domain.id}/groups/${group.id}/roles/${prior.id}/inherited_to_projects`, undefined, 204);
    await ic.admin('PUT', `/system/users/${user.id}/roles/${ic.ids.reader}`, undefined, 204);
  });

  it('filters by user.id: direct assignments only, with their links', async () => {
    const list = await assignments(`user.id=${user.id}`);
    assert.deepEqual(list.map(brief).sort(), [
      `user:${user.id} ${prior.id} project:${project.id}`,
      `user:${user.id} ${ic.ids.reader} domain:${domain.id}`,
      `user:${user.id} ${ic.ids.reader} system`,
    ].sort());
    const onProject = list.find((a) => a.scope.project);
    assert.deepEqual(onProject, {
      role: { id: prior.id }, scope: { project: { id: project.id } }, user: { id: user.id },
      links: { assignment: ic.v3(`/projects/${project.id}/users/${user.id}/roles/${prior.id}`) },
    });
    const onSystem = list.find((a) => a.scope.system);
    assert.deepEqual(onSystem.scope, { system: { all: true } });
    assert.equal(onSystem.links.assignment, ic.v3(`/system/users/${user.id}/roles/${ic.ids.reader}`));
  });

  it('filters by group.id, scope.project.id, scope.domain.id, scope.system, role.id', async () => {
    assert.deepEqual((await assignments(`group.id=${group.id}`)).map(brief).sort(), [
      `group:${group.id} ${ic.ids.reader} project:${project.id}`,
      `group:${group.id} ${prior.id} domain:${domain.id} inherited`,
    ].sort());
    assert.deepEqual((await assignments(`scope.project.id=${project.id}`)).map(brief).sort(), [
      `user:${user.id} ${prior.id} project:${project.id}`,
      `group:${group.id} ${ic.ids.reader} project:${project.id}`,
    ].sort());
    assert.deepEqual((await assignments(`scope.domain.id=${domain.id}`)).map(brief).sort(), [
      `user:${user.id} ${ic.ids.reader} domain:${domain.id}`,
      `group:${group.id} ${prior.id} domain:${domain.id} inherited`,
    ].sort());
    const system = await assignments(`scope.system=all&user.id=${user.id}`);
    assert.deepEqual(system.map(brief), [`user:${user.id} ${ic.ids.reader} system`]);
    const adminSystem = await assignments('scope.system=all');
    assert.ok(adminSystem.some((a) => a.user?.id === ic.ids.adminUser && a.role.id === ic.ids.admin));
    assert.deepEqual((await assignments(`role.id=${prior.id}`)).map(brief).sort(), [
      `user:${user.id} ${prior.id} project:${project.id}`,
      `group:${group.id} ${prior.id} domain:${domain.id} inherited`,
    ].sort());
    const inherited = await assignments(`scope.OS-INHERIT:inherited_to=projects&group.id=${group.id}`);
    assert.deepEqual(inherited.map(brief), [`group:${group.id} ${prior.id} domain:${domain.id} inherited`]);
    assert.equal(inherited[0].links.assignment, ic.v3(`/OS-INHERIT/domains/${domain.id}/groups/${group.id}/roles/${prior.id}/inherited_to_projects`));
  });

  it('effective: groups expanded to users, inheritance applied, implied roles added', async () => {
    const list = await assignments(`effective&scope.project.id=${project.id}`);
    assert.ok(list.every((a) => a.user && !a.group), 'no group entries in effective mode');
    assert.deepEqual([...new Set(list.map(brief))].sort(), [
      `user:${user.id} ${prior.id} project:${project.id}`,
      `user:${user.id} ${implied.id} project:${project.id}`,
      `user:${groupUser.id} ${ic.ids.reader} project:${project.id}`,
      `user:${groupUser.id} ${prior.id} project:${project.id} inherited`,
      `user:${groupUser.id} ${implied.id} project:${project.id} inherited`,
    ].sort());
    const viaGroup = list.find((a) => a.user.id === groupUser.id && a.role.id === ic.ids.reader);
    assert.equal(viaGroup.links.membership, ic.v3(`/groups/${group.id}/users/${groupUser.id}`));
    assert.equal(viaGroup.links.assignment, ic.v3(`/projects/${project.id}/groups/${group.id}/roles/${ic.ids.reader}`));
    const viaInheritance = list.find((a) => a.user.id === groupUser.id && a.role.id === prior.id);
    assert.equal(viaInheritance.links.assignment, ic.v3(`/OS-INHERIT/domains/${domain.id}/groups/${group.id}/roles/${prior.id}/inherited_to_projects`));
    const viaImplication = list.find((a) => a.user.id === user.id && a.role.id === implied.id);
    assert.ok(viaImplication.links.prior_role, 'an implied role names its prior role');
    assert.equal(viaImplication.links.assignment, ic.v3(`/projects/${project.id}/users/${user.id}/roles/${prior.id}`));

    const forUser = await assignments(`effective&user.id=${groupUser.id}`);
    assert.ok(forUser.every((a) => a.user.id === groupUser.id));
    assert.ok(forUser.some((a) => a.role.id === ic.ids.reader && a.scope.project?.id === project.id));
    const byRole = await assignments(`effective&role.id=${implied.id}&scope.project.id=${project.id}`);
    assert.deepEqual(byRole.map((a) => a.user.id).sort(), [user.id, groupUser.id].sort());
  });

  it('include_subtree lists the assignments of the project and of the projects below it', async () => {
    const child = (await ic.admin('POST', '/projects', { project: { name: 'ra-child', parent_id: project.id, domain_id: domain.id } })).project;
    await ic.grantProject(child.id, groupUser.id, ic.ids.member);
    const direct = await assignments(`include_subtree&scope.project.id=${project.id}`);
    assert.deepEqual(direct.map(brief).sort(), [
      `user:${user.id} ${prior.id} project:${project.id}`,
      `group:${group.id} ${ic.ids.reader} project:${project.id}`,
      `user:${groupUser.id} ${ic.ids.member} project:${child.id}`,
    ].sort());
    const effective = await assignments(`effective&include_subtree=true&scope.project.id=${project.id}&user.id=${groupUser.id}`);
    const onChild = effective.filter((a) => a.scope.project.id === child.id).map((a) => a.role.id).sort();
    assert.deepEqual(onChild, [ic.ids.member, ic.ids.reader, prior.id, implied.id].sort());
    assert.deepEqual(await assignments(`scope.project.id=${child.id}&scope.OS-INHERIT:inherited_to=projects`), []);
    await ic.admin('DELETE', `/projects/${child.id}/users/${groupUser.id}/roles/${ic.ids.member}`);
    await ic.admin('DELETE', `/projects/${child.id}`);
  });

  it('include_names adds names and domains', async () => {
    const list = await assignments(`include_names&user.id=${user.id}&scope.project.id=${project.id}`);
    assert.equal(list.length, 1);
    assert.deepEqual(list[0].role, { id: prior.id, name: prior.name });
    assert.deepEqual(list[0].user, { id: user.id, name: 'ra-user', domain: { id: domain.id, name: domain.name } });
    assert.deepEqual(list[0].scope.project, { id: project.id, name: 'ra-project', domain: { id: domain.id, name: domain.name } });
    const groups = await assignments(`include_names=true&group.id=${group.id}&scope.domain.id=${domain.id}`);
    assert.deepEqual(groups[0].group, { id: group.id, name: 'ra-group', domain: { id: domain.id, name: domain.name } });
    assert.deepEqual(groups[0].scope.domain, { id: domain.id, name: domain.name });
  });

  it('contradictory filters are 400', async () => {
    for (const query of [
      `effective&group.id=${group.id}`,
      `scope.project.id=${project.id}&scope.domain.id=${domain.id}`,
      `scope.system=all&scope.project.id=${project.id}`,
      `user.id=${user.id}&group.id=${group.id}`,
      `effective&scope.OS-INHERIT:inherited_to=projects&scope.domain.id=${domain.id}`,
      'include_subtree',
    ]) {
      assertError(await ic.get(`/role_assignments?${query}`, { token: admin }), 400);
    }
  });
});
