// The default policy over HTTP: what a project member (demo), a system reader and a domain
// reader may and may not do, with Keystone's 403 body.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { DEMO_PASSWORD, assertError, startIdentityCloud, unique, type IdentityCloud } from './harness.js';

let ic: IdentityCloud;
let demo: string;
before(async () => {
  ic = await startIdentityCloud();
  demo = await ic.demoToken();
});
after(async () => { await ic?.close(); });

function assertForbidden(res: { status: number; body: any; text: string; headers: Headers }, action: string): void {
  assertError(res, 403);
  assert.equal(res.body.error.message, `You are not authorized to perform the requested action: ${action}.`);
}

describe('a project member (demo)', () => {
  it('cannot create users, projects, roles, domains, groups, services, endpoints or regions', async () => {
    assertForbidden(await ic.post('/users', { user: { name: unique('x') } }, { token: demo }), 'identity:create_user');
    assertForbidden(await ic.post('/projects', { project: { name: unique('x') } }, { token: demo }), 'identity:create_project');
    assertForbidden(await ic.post('/roles', { role: { name: unique('x') } }, { token: demo }), 'identity:create_role');
    assertForbidden(await ic.post('/domains', { domain: { name: unique('x') } }, { token: demo }), 'identity:create_domain');
    assertForbidden(await ic.post('/groups', { group: { name: unique('x') } }, { token: demo }), 'identity:create_group');
    assertForbidden(await ic.post('/services', { service: { type: 'x' } }, { token: demo }), 'identity:create_service');
    assertForbidden(await ic.post('/regions', { region: {} }, { token: demo }), 'identity:create_region');
    const services = await ic.cloud.identity.identity.listServices();
    assertForbidden(await ic.post('/endpoints', { endpoint: { service_id: services[0].id, interface: 'public', url: 'http://x' } }, { token: demo }), 'identity:create_endpoint');
    // Nothing was created behind the 403s.
    assert.equal((await ic.cloud.identity.identity.listUsers({ name: 'x' })).length, 0);
  });

  it('cannot grant roles, not even to itself, nor change or delete users and projects', async () => {
    assertForbidden(await ic.put(`/projects/${ic.ids.demoProject}/users/${ic.ids.demoUser}/roles/${ic.ids.admin}`, undefined, { token: demo }), 'identity:create_grant');
    assertForbidden(await ic.put(`/system/users/${ic.ids.demoUser}/roles/${ic.ids.admin}`, undefined, { token: demo }), 'identity:create_system_grant_for_user');
    assertForbidden(await ic.patch(`/users/${ic.ids.demoUser}`, { user: { enabled: true } }, { token: demo }), 'identity:update_user');
    assertForbidden(await ic.delete(`/users/${ic.ids.adminUser}`, { token: demo }), 'identity:delete_user');
    assertForbidden(await ic.patch(`/projects/${ic.ids.demoProject}`, { project: { description: 'mine' } }, { token: demo }), 'identity:update_project');
    assertForbidden(await ic.delete(`/projects/${ic.ids.adminProject}`, { token: demo }), 'identity:delete_project');
    assertForbidden(await ic.put(`/projects/${ic.ids.demoProject}/tags/mine`, undefined, { token: demo }), 'identity:create_project_tag');
    const token = await ic.passwordAuth({ id: ic.ids.demoUser }, DEMO_PASSWORD, { project: { id: ic.ids.demoProject } });
    assert.deepEqual(token.body.token.roles.map((r: any) => r.name).sort(), ['member', 'reader']);
  });

  it('cannot list users, roles, services, role assignments or other users\' projects', async () => {
    assertForbidden(await ic.get('/users', { token: demo }), 'identity:list_users');
    assertForbidden(await ic.get('/roles', { token: demo }), 'identity:list_roles');
    assertForbidden(await ic.get('/services', { token: demo }), 'identity:list_services');
    assertForbidden(await ic.get('/role_assignments', { token: demo }), 'identity:list_role_assignments');
    assertForbidden(await ic.get(`/users/${ic.ids.adminUser}/projects`, { token: demo }), 'identity:list_user_projects');
    assertForbidden(await ic.get('/domains', { token: demo }), 'identity:list_domains');
  });

  it('can read itself, its project, its domain and its own projects; not another user (403, even an unknown one)', async () => {
    const self = await ic.get(`/users/${ic.ids.demoUser}`, { token: demo });
    assert.equal(self.status, 200, self.text);
    assert.equal(self.body.user.name, 'demo');
    assertForbidden(await ic.get(`/users/${ic.ids.adminUser}`, { token: demo }), 'identity:get_user');
    assertForbidden(await ic.get(`/users/${'f'.repeat(32)}`, { token: demo }), 'identity:get_user');
    assert.equal((await ic.get(`/projects/${ic.ids.demoProject}`, { token: demo })).status, 200);
    assertForbidden(await ic.get(`/projects/${ic.ids.adminProject}`, { token: demo }), 'identity:get_project');
    assert.equal((await ic.get('/domains/default', { token: demo })).status, 200);
    const projects = await ic.get(`/users/${ic.ids.demoUser}/projects`, { token: demo });
    assert.equal(projects.status, 200, projects.text);
    assert.deepEqual(projects.body.projects.map((p: any) => p.id), [ic.ids.demoProject]);
    assert.equal((await ic.get(`/users/${ic.ids.demoUser}/groups`, { token: demo })).status, 200);
    assert.equal((await ic.get('/regions', { token: demo })).status, 200);
  });

  it('can change its own password with its token', async () => {
    const user = await ic.createUser(unique('self-service'), 'pw-before');
    await ic.grantProject(ic.ids.demoProject, user.id, ic.ids.member);
    const token = await ic.token({ id: user.id }, 'pw-before', { project: { id: ic.ids.demoProject } });
    const res = await ic.post(`/users/${user.id}/password`, { user: { original_password: 'pw-before', password: 'pw-after' } }, { token });
    assert.equal(res.status, 204, res.text);
    assert.equal((await ic.passwordAuth({ id: user.id }, 'pw-after')).status, 201);
    // Knowing nobody's password, it changes nobody else's.
    assertError(await ic.post(`/users/${ic.ids.adminUser}/password`, { user: { original_password: 'guess', password: 'pwned' } }, { token: demo }), 401);
  });

  it('manages its own application credentials, and only its own', async () => {
    const base = `/users/${ic.ids.demoUser}/application_credentials`;
    const created = await ic.post(base, { application_credential: { name: unique('demo-cred') } }, { token: demo });
    assert.equal(created.status, 201, created.text);
    const id = created.body.application_credential.id;
    assert.equal((await ic.get(base, { token: demo })).status, 200);
    assert.equal((await ic.get(`${base}/${id}`, { token: demo })).status, 200);
    assert.equal((await ic.delete(`${base}/${id}`, { token: demo })).status, 204);
    const others = `/users/${ic.ids.adminUser}/application_credentials`;
    assertForbidden(await ic.get(others, { token: demo }), 'identity:list_application_credentials');
    assertForbidden(await ic.post(others, { application_credential: { name: 'x' } }, { token: demo }), 'identity:create_application_credential');
  });
});

describe('a system reader and a domain reader', () => {
  it('a system-scoped reader reads everything and changes nothing', async () => {
    const user = await ic.createUser(unique('auditor'), 'pw-audit');
    await ic.admin('PUT', `/system/users/${user.id}/roles/${ic.ids.reader}`, undefined, 204);
    const token = await ic.token({ id: user.id }, 'pw-audit', { system: { all: true } });
    for (const path of ['/users', '/projects', '/roles', '/services', '/endpoints', '/domains', '/groups', '/role_assignments', `/users/${ic.ids.adminUser}`]) {
      const res = await ic.get(path, { token });
      assert.equal(res.status, 200, `${path}: ${res.text}`);
    }
    assertForbidden(await ic.post('/users', { user: { name: unique('x') } }, { token }), 'identity:create_user');
    assertForbidden(await ic.delete(`/users/${ic.ids.demoUser}`, { token }), 'identity:delete_user');
  });

  it('a domain-scoped reader reads the users of its domain only', async () => {
    const domain = (await ic.admin('POST', '/domains', { domain: { name: unique('ReaderDomain') } })).domain;
    const inside = (await ic.admin('POST', '/users', { user: { name: 'inside', domain_id: domain.id, password: 'pw-in' } })).user;
    await ic.admin('PUT', `/domains/${domain.id}/users/${inside.id}/roles/${ic.ids.reader}`, undefined, 204);
    const token = await ic.token({ id: inside.id }, 'pw-in', { domain: { id: domain.id } });
    const listed = await ic.get(`/users?domain_id=${domain.id}`, { token });
    assert.equal(listed.status, 200, listed.text);
    assert.deepEqual(listed.body.users.map((u: any) => u.id), [inside.id]);
    assert.equal((await ic.get(`/users/${inside.id}`, { token })).status, 200);
    assertForbidden(await ic.get(`/users/${ic.ids.demoUser}`, { token }), 'identity:get_user');
    assertForbidden(await ic.get('/users?domain_id=default', { token }), 'identity:list_users');
    assertForbidden(await ic.post('/users', { user: { name: 'more', domain_id: domain.id } }, { token }), 'identity:create_user');
  });
});
