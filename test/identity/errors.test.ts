// Bad input over HTTP: every error is a 4xx in Keystone's exact format
// {"error": {"code", "title", "message"}}, never a 500, and changes nothing.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { ADMIN_PASSWORD, DEMO_PASSWORD, assertError, startIdentityCloud, unique, type ApiResponse, type IdentityCloud } from './harness.js';

let ic: IdentityCloud;
let admin: string;
let fixtures: { user: any; project: any; group: any; role: any; service: any; endpoint: any; domain: any };

before(async () => {
  ic = await startIdentityCloud();
  admin = await ic.adminToken();
  const user = await ic.createUser(unique('err-user'), 'pw-err');
  const project = await ic.createProject(unique('err-project'));
  const group = (await ic.admin('POST', '/groups', { group: { name: unique('err-group') } })).group;
  const role = (await ic.admin('POST', '/roles', { role: { name: unique('err-role') } })).role;
  const service = (await ic.admin('POST', '/services', { service: { type: unique('err-type') } })).service;
  const endpoint = (await ic.admin('POST', '/endpoints', { endpoint: { service_id: service.id, interface: 'public', url: 'http://err.example' } })).endpoint;
  const domain = (await ic.admin('POST', '/domains', { domain: { name: unique('ErrDomain') } })).domain;
  fixtures = { user, project, group, role, service, endpoint, domain };
});
after(async () => { await ic?.close(); });

const NOPE = 'f'.repeat(32);
const LONG = 'n'.repeat(256);

/** A client error in Keystone's format (any 4xx unless a status is given) — never a 5xx. */
function assertClientError(res: ApiResponse, what: string, status?: number): void {
  assert.ok(res.status >= 400 && res.status < 500, `${what}: expected a 4xx, got ${res.status}: ${res.text}`);
  if (status !== undefined) assert.equal(res.status, status, `${what}: expected ${status}, got ${res.status}: ${res.text}`);
  try {
    assertError(res, res.status);
  } catch (err) {
    throw new Error(`${what}: ${(err as Error).message}\n${res.text.slice(0, 500)}`);
  }
}

describe('malformed requests', () => {
  it('a body that is not JSON is 400', async () => {
    for (const [path, raw] of [['/users', '{"user": '], ['/auth/tokens', 'not json'], ['/projects', '{"project": {"name": "x",}}'], ['/roles', "{'role': {}}"]] as const) {
      const res = await ic.call('POST', path, { raw, token: admin });
      assertError(res, 400);
    }
  });

  it('a missing required field is 400 and the message names it', async () => {
    const cases: [string, string, unknown, string][] = [
      ['POST', '/users', { user: {} }, 'name'],
      ['POST', '/projects', { project: { description: 'x' } }, 'name'],
      ['POST', '/domains', { domain: {} }, 'name'],
      ['POST', '/groups', { group: {} }, 'name'],
      ['POST', '/roles', { role: {} }, 'name'],
      ['POST', '/services', { service: {} }, 'type'],
      ['POST', '/endpoints', { endpoint: { interface: 'public', url: 'http://x' } }, 'service_id'],
      ['POST', '/endpoints', { endpoint: { service_id: NOPE, interface: 'public' } }, 'url'],
      ['POST', '/users', {}, 'user'],
      ['POST', '/auth/tokens', {}, 'auth'],
      ['POST', '/auth/tokens', { auth: {} }, 'identity'],
      ['POST', '/auth/tokens', { auth: { identity: {} } }, 'methods'],
      ['POST', '/auth/tokens', { auth: { identity: { methods: ['token'], token: {} } } }, 'id'],
      ['POST', `/users/${NOPE}/password`, { user: { password: 'x' } }, 'original_password'],
      ['PUT', `/projects/${NOPE}/tags`, {}, 'tags'],
    ];
    for (const [method, path, body, field] of cases) {
      const res = await ic.call(method, path, { body, token: admin });
      assertError(res, 400);
      assert.match(res.body.error.message, new RegExp(`\\b${field}\\b`), `${method} ${path} ${JSON.stringify(body)}: the message should name '${field}': ${res.body.error.message}`);
    }
  });

  it('wrong types are 400', async () => {
    const cases: [string, string, unknown][] = [
      ['POST', '/users', { user: { name: 5 } }],
      ['POST', '/users', { user: { name: 'x', enabled: 'yes' } }],
      ['POST', '/users', { user: { name: 'x', password: 42 } }],
      ['POST', '/users', { user: { name: 'x', options: 'none' } }],
      ['POST', '/projects', { project: { name: 'x', tags: 'a,b' } }],
      ['POST', '/projects', { project: { name: 'x', enabled: 0 } }],
      ['POST', '/projects', { project: { name: 'x', tags: [1, 2] } }],
      ['POST', '/domains', { domain: { name: ['x'] } }],
      ['POST', '/roles', { role: { name: { en: 'x' } } }],
      ['POST', '/services', { service: { type: 'x', enabled: 'true' } }],
      ['POST', '/regions', { region: { description: 7 } }],
      ['PATCH', `/users/${fixtures.user.id}`, { user: { enabled: null } }],
      ['PATCH', `/projects/${fixtures.project.id}`, { project: { description: 5 } }],
      ['PUT', `/projects/${fixtures.project.id}/tags`, { tags: 'single' }],
      ['POST', `/users/${fixtures.user.id}/password`, { user: { original_password: 1, password: 2 } }],
      ['POST', '/auth/tokens', { auth: { identity: { methods: 'password' } } }],
      ['POST', '/auth/tokens', { auth: { identity: { methods: [1] } } }],
      ['POST', '/auth/tokens', { auth: { identity: { methods: ['password'], password: { user: { name: 'admin', domain: { id: 'default' }, password: 5 } } } } }],
      ['POST', '/auth/tokens', { auth: { identity: { methods: ['password'], password: { user: { id: ic?.ids.adminUser, password: ADMIN_PASSWORD } } }, scope: 5 } }],
      ['POST', '/auth/tokens', { auth: { identity: { methods: ['password'], password: { user: { id: ic?.ids.adminUser, password: ADMIN_PASSWORD } } }, scope: { system: { all: 'yes' } } } }],
    ];
    for (const [method, path, body] of cases) {
      const res = await ic.call(method, path, { body, token: admin });
      assertError(res, 400);
    }
  });

  it('arrays, nulls and scalars where objects belong are 400', async () => {
    for (const path of ['/users', '/projects', '/domains', '/groups', '/roles', '/services', '/endpoints', '/regions', '/auth/tokens']) {
      for (const raw of ['[]', 'null', '"user"', '42', 'true']) {
        assertClientError(await ic.call('POST', path, { raw, token: admin }), `POST ${path} ${raw}`, 400);
      }
    }
    const key = { '/users': 'user', '/projects': 'project', '/domains': 'domain', '/groups': 'group', '/roles': 'role', '/services': 'service', '/endpoints': 'endpoint', '/regions': 'region' };
    for (const [path, k] of Object.entries(key)) {
      for (const value of [[], null, 'x', 3, [{ name: 'x' }]]) {
        assertClientError(await ic.post(path, { [k]: value }, { token: admin }), `POST ${path} {${k}: ${JSON.stringify(value)}}`, 400);
      }
    }
    for (const auth of [[], null, { identity: [] }, { identity: null }, { identity: { methods: null } }, { identity: { methods: [] } },
      { identity: { methods: ['password'], password: [] } }, { identity: { methods: ['password'], password: { user: null } } },
      { identity: { methods: ['password'], password: { user: [] } } }, { identity: { methods: ['password'], password: { user: { password: 'x' } } } },
      { identity: { methods: ['password'], password: { user: { name: 'admin', password: 'x', domain: {} } } } },
      { identity: { methods: ['password'], password: { user: { name: 'admin', password: 'x', domain: 'default' } } } },
      { identity: { methods: ['token'], token: null } }, { identity: { methods: ['token'], token: { id: 5 } } },
      { identity: { methods: ['application_credential'], application_credential: null } },
      { identity: { methods: ['application_credential'], application_credential: { secret: 'x' } } },
      { identity: { methods: ['application_credential'], application_credential: { id: {}, secret: 'x' } } },
      { identity: { methods: ['application_credential'], application_credential: { id: 'x', secret: ['x'] } } },
      { identity: { methods: ['application_credential'], application_credential: { name: 'x', user: 'someone', secret: 'x' } } },
    ]) {
      assertClientError(await ic.post('/auth/tokens', { auth }), `auth ${JSON.stringify(auth)}`, 400);
    }
  });

  it('non-string ids are 400, never a 500', async () => {
    const cases: [string, string, unknown][] = [
      ['POST', '/users', { user: { name: unique('x'), domain_id: 5 } }],
      ['POST', '/users', { user: { name: unique('x'), default_project_id: 5 } }],
      ['POST', '/projects', { project: { name: unique('x'), domain_id: {} } }],
      ['POST', '/projects', { project: { name: unique('x'), parent_id: 5 } }],
      ['POST', '/groups', { group: { name: unique('x'), domain_id: [] } }],
      ['POST', '/roles', { role: { name: unique('x'), domain_id: 5 } }],
      ['POST', '/endpoints', { endpoint: { service_id: 5, interface: 'public', url: 'http://x' } }],
      ['POST', '/endpoints', { endpoint: { service_id: fixtures.service.id, interface: 'public', url: 'http://x', region_id: 5 } }],
      ['POST', '/regions', { region: { id: 5 } }],
      ['POST', '/regions', { region: { parent_region_id: 5 } }],
      ['PATCH', `/endpoints/${fixtures.endpoint.id}`, { endpoint: { service_id: [] } }],
      ['POST', '/auth/tokens', { auth: { identity: { methods: ['password'], password: { user: { id: 5, password: 'x' } } } } }],
      ['POST', '/auth/tokens', { auth: { identity: { methods: ['password'], password: { user: { name: 'admin', domain: { id: 5 }, password: 'x' } } } } }],
      ['POST', '/auth/tokens', { auth: { identity: { methods: ['password'], password: { user: { id: ic?.ids.adminUser, password: ADMIN_PASSWORD } } }, scope: { project: { id: 5 } } } }],
      ['POST', '/auth/tokens', { auth: { identity: { methods: ['password'], password: { user: { id: ic?.ids.adminUser, password: ADMIN_PASSWORD } } }, scope: { project: { name: 'admin', domain: { id: {} } } } } }],
      ['POST', '/auth/tokens', { auth: { identity: { methods: ['password'], password: { user: { id: ic?.ids.adminUser, password: ADMIN_PASSWORD } } }, scope: { domain: { name: 7 } } } }],
      ['POST', `/users/${fixtures.user.id}/application_credentials`, { application_credential: { name: 'x', roles: [{ id: 5 }] } }],
    ];
    for (const [method, path, body] of cases) {
      assertClientError(await ic.call(method, path, { body, token: admin }), `${method} ${path} ${JSON.stringify(body)}`, 400);
    }
  });

  it('names longer than 255 characters, or blank, are 400', async () => {
    for (const [path, key] of [['/users', 'user'], ['/projects', 'project'], ['/domains', 'domain'], ['/groups', 'group'], ['/roles', 'role']] as const) {
      assertError(await ic.post(path, { [key]: { name: LONG } }, { token: admin }), 400);
      assertError(await ic.post(path, { [key]: { name: '' } }, { token: admin }), 400);
      assertError(await ic.post(path, { [key]: { name: '   ' } }, { token: admin }), 400);
    }
    assertError(await ic.patch(`/users/${fixtures.user.id}`, { user: { name: LONG } }, { token: admin }), 400);
    assertError(await ic.patch(`/projects/${fixtures.project.id}`, { project: { name: LONG } }, { token: admin }), 400);
    assertError(await ic.post('/services', { service: { type: LONG } }, { token: admin }), 400);
    assertError(await ic.put(`/regions/${'r'.repeat(300)}`, { region: {} }, { token: admin }), 400);
    assertError(await ic.post(`/users/${fixtures.user.id}/application_credentials`, { application_credential: { name: LONG } }, { token: admin }), 400);
    // Nothing named LONG exists afterwards.
    assert.equal((await ic.cloud.identity.identity.listUsers({ name: LONG })).length, 0);
  });

  it('an id in a PATCH body that differs from the URL is 400', async () => {
    assertError(await ic.patch(`/users/${fixtures.user.id}`, { user: { id: NOPE } }, { token: admin }), 400);
    assertError(await ic.patch(`/projects/${fixtures.project.id}`, { project: { id: NOPE } }, { token: admin }), 400);
    assertError(await ic.patch(`/roles/${fixtures.role.id}`, { role: { id: NOPE } }, { token: admin }), 400);
    assertError(await ic.patch(`/services/${fixtures.service.id}`, { service: { id: NOPE } }, { token: admin }), 400);
    const same = await ic.patch(`/users/${fixtures.user.id}`, { user: { id: fixtures.user.id, description: 'same id is fine' } }, { token: admin });
    assert.equal(same.status, 200, same.text);
  });

  it('a long unknown id is 404; a huge body is 413', async () => {
    assertError(await ic.get(`/users/${'u'.repeat(400)}`, { token: admin }), 404);
    assertError(await ic.post('/users', { user: { name: 'x', description: 'd'.repeat(2 * 1024 * 1024) } }, { token: admin }), 413);
  });
});

describe('unknown things, duplicates, credentials', () => {
  it('unknown ids are 404', async () => {
    for (const path of [`/users/${NOPE}`, `/projects/${NOPE}`, `/groups/${NOPE}`, `/roles/${NOPE}`, `/domains/${NOPE}`, '/regions/Nowhere',
      `/services/${NOPE}`, `/endpoints/${NOPE}`, `/groups/${NOPE}/users`, `/projects/${NOPE}/tags`, `/users/${NOPE}/groups`,
      `/roles/${NOPE}/implies`, `/users/${fixtures.user.id}/application_credentials/${NOPE}`]) {
      assertError(await ic.get(path, { token: admin }), 404);
    }
    for (const path of [`/users/${NOPE}`, `/projects/${NOPE}`, `/groups/${NOPE}`, `/roles/${NOPE}`, `/domains/${NOPE}`, '/regions/Nowhere', `/services/${NOPE}`, `/endpoints/${NOPE}`]) {
      assertError(await ic.delete(path, { token: admin }), 404);
    }
    assertError(await ic.patch(`/users/${NOPE}`, { user: { description: 'x' } }, { token: admin }), 404);
    assertError(await ic.patch(`/projects/${NOPE}`, { project: { description: 'x' } }, { token: admin }), 404);
    assertError(await ic.put(`/groups/${fixtures.group.id}/users/${NOPE}`, undefined, { token: admin }), 404);
    assertError(await ic.put(`/projects/${fixtures.project.id}/users/${fixtures.user.id}/roles/${NOPE}`, undefined, { token: admin }), 404);
    assertError(await ic.get('/no/such/route', { token: admin }), 404);
    assertError(await ic.get(`${ic.root}/v2.0/tenants`, { token: admin }), 404);
  });

  it('duplicates are 409', async () => {
    assertError(await ic.post('/users', { user: { name: fixtures.user.name, domain_id: 'default' } }, { token: admin }), 409);
    assertError(await ic.post('/projects', { project: { name: fixtures.project.name, domain_id: 'default' } }, { token: admin }), 409);
    assertError(await ic.post('/groups', { group: { name: fixtures.group.name, domain_id: 'default' } }, { token: admin }), 409);
    assertError(await ic.post('/roles', { role: { name: fixtures.role.name } }, { token: admin }), 409);
    assertError(await ic.post('/domains', { domain: { name: fixtures.domain.name } }, { token: admin }), 409);
    assertError(await ic.put('/regions/RegionOne', { region: {} }, { token: admin }), 409);
    assertError(await ic.patch(`/domains/${fixtures.domain.id}`, { domain: { name: 'Default' } }, { token: admin }), 409);
  });

  it('a wrong password, an unknown user and a missing or bad token are 401', async () => {
    assertError(await ic.passwordAuth({ id: ic.ids.adminUser }, 'wrong'), 401);
    assertError(await ic.passwordAuth({ name: 'admin', domain: { id: 'default' } }, DEMO_PASSWORD), 401);
    assertError(await ic.passwordAuth({ id: NOPE }, 'x'), 401);
    assertError(await ic.passwordAuth({ name: 'admin', domain: { id: NOPE } }, ADMIN_PASSWORD), 401);
    assertError(await ic.post('/auth/tokens', { auth: { identity: { methods: ['totp'] } } }), 401);
    assertError(await ic.get('/users'), 401);
    assertError(await ic.get('/users', { token: '' }), 401);
    assertError(await ic.get('/users', { token: 'x'.repeat(5000) }), 401);
    assertError(await ic.get('/users', { token: admin.slice(0, 40) }), 401);
    // The 401 for a wrong password says nothing about which part was wrong.
    const a = await ic.passwordAuth({ id: ic.ids.adminUser }, 'wrong');
    const b = await ic.passwordAuth({ id: NOPE }, 'wrong');
    assert.equal(a.body.error.message, b.body.error.message);
  });

  it('errors change nothing: a failed create leaves no half-made user', async () => {
    const name = unique('half');
    assertError(await ic.post('/users', { user: { name, domain_id: NOPE } }, { token: admin }), 400);
    assertError(await ic.post('/users', { user: { name, options: { bogus: true } } }, { token: admin }), 400);
    assert.equal((await ic.cloud.identity.identity.listUsers({ name })).length, 0);
  });
});
