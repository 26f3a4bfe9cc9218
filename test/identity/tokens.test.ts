// Keystone v3 over HTTP: version discovery, request ids, and POST/GET/HEAD/DELETE
// /v3/auth/tokens with the password and token methods on every kind of scope.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { ADMIN_PASSWORD, DEMO_PASSWORD, assertError, startIdentityCloud, unique, type IdentityCloud } from './harness.js';

const REQUEST_ID = /^req-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const KEYSTONE_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/;

let ic: IdentityCloud;
before(async () => { ic = await startIdentityCloud(); });
after(async () => { await ic?.close(); });

describe('version discovery', () => {
  it('GET /identity answers 300 Multiple Choices with versions.values', async () => {
    const res = await ic.get(ic.root);
    assert.equal(res.status, 300);
    assert.match(res.headers.get('x-openstack-request-id') ?? '', REQUEST_ID);
    const values = res.body.versions.values;
    assert.ok(Array.isArray(values) && values.length >= 1);
    const v3 = values.find((v: any) => v.id.startsWith('v3.'));
    assert.ok(v3, 'no v3 version listed');
    assert.equal(v3.status, 'stable');
    assert.match(v3.updated, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/);
    assert.deepEqual(v3.links, [{ rel: 'self', href: `${ic.root}/v3/` }]);
    assert.deepEqual(v3['media-types'], [{ base: 'application/json', type: 'application/vnd.openstack.identity-v3+json' }]);
  });

  it('GET /identity/ (trailing slash) also lists the versions', async () => {
    const res = await ic.get(`${ic.root}/`);
    assert.equal(res.status, 300);
    assert.ok(res.body.versions.values.length >= 1);
  });

  it('GET /identity/v3 describes the version with 200, without a token', async () => {
    const res = await ic.get(ic.v3(''));
    assert.equal(res.status, 200);
    assert.match(res.body.version.id, /^v3\.\d+$/);
    assert.equal(res.body.version.status, 'stable');
    assert.equal(res.body.version.links[0].href, `${ic.root}/v3/`);
    assert.match(res.headers.get('x-openstack-request-id') ?? '', REQUEST_ID);
  });

  it('every response, errors included, carries its own X-OpenStack-Request-Id', async () => {
    const ok = await ic.get(ic.v3(''));
    const unauthorized = await ic.get('/users');
    const missing = await ic.get('/no-such-collection', { token: await ic.adminToken() });
    assertError(unauthorized, 401);
    assertError(missing, 404);
    const ids = [ok, unauthorized, missing].map((r) => r.headers.get('x-openstack-request-id') ?? '');
    for (const id of ids) assert.match(id, REQUEST_ID);
    assert.equal(new Set(ids).size, 3, 'request ids must differ between requests');
  });
});

describe('POST /v3/auth/tokens with a password', () => {
  it('by user id, scoped to a project by id: 201, X-Subject-Token and the full token body', async () => {
    const res = await ic.passwordAuth({ id: ic.ids.adminUser }, ADMIN_PASSWORD, { project: { id: ic.ids.adminProject } });
    assert.equal(res.status, 201, res.text);
    const subject = res.headers.get('x-subject-token');
    assert.ok(subject && subject.length > 20);
    assert.ok(!res.body.token.id, 'the token id travels in the header only');
    const token = res.body.token;
    assert.deepEqual(token.methods, ['password']);
    assert.deepEqual(token.user, { id: ic.ids.adminUser, name: 'admin', domain: { id: 'default', name: 'Default' }, password_expires_at: null });
    assert.deepEqual(token.project, { id: ic.ids.adminProject, name: 'admin', domain: { id: 'default', name: 'Default' } });
    assert.equal(token.is_domain, false);
    // admin implies member implies reader: all three are on the token.
    assert.deepEqual(token.roles.map((r: any) => r.name).sort(), ['admin', 'member', 'reader']);
    for (const role of token.roles) assert.match(role.id, /^[0-9a-f]{32}$/);
    assert.match(token.expires_at, KEYSTONE_TIME);
    assert.match(token.issued_at, KEYSTONE_TIME);
    const lifetime = Date.parse(token.expires_at) - Date.parse(token.issued_at);
    assert.ok(Math.abs(lifetime - 3600_000) < 2000, `default lifetime is an hour, got ${lifetime} ms`);
    assert.equal(token.audit_ids.length, 1);
    assert.match(token.audit_ids[0], /^[A-Za-z0-9_-]{22}$/);
    // The catalog: the identity service with its three interfaces.
    const identity = token.catalog.find((s: any) => s.type === 'identity');
    assert.ok(identity, 'no identity service in the catalog');
    assert.equal(identity.name, 'keystone');
    assert.deepEqual(identity.endpoints.map((e: any) => e.interface).sort(), ['admin', 'internal', 'public']);
    for (const e of identity.endpoints) {
      assert.equal(e.url, ic.root);
      assert.equal(e.region_id, 'RegionOne');
      assert.equal(e.region, 'RegionOne');
    }
  });

  it('by name and domain id, and by name and domain name', async () => {
    const byDomainId = await ic.passwordAuth({ name: 'demo', domain: { id: 'default' } }, DEMO_PASSWORD, { project: { id: ic.ids.demoProject } });
    assert.equal(byDomainId.status, 201, byDomainId.text);
    assert.equal(byDomainId.body.token.user.id, ic.ids.demoUser);
    const byDomainName = await ic.passwordAuth({ name: 'demo', domain: { name: 'Default' } }, DEMO_PASSWORD, { project: { id: ic.ids.demoProject } });
    assert.equal(byDomainName.status, 201, byDomainName.text);
    assert.equal(byDomainName.body.token.user.id, ic.ids.demoUser);
    assert.deepEqual(byDomainName.body.token.roles.map((r: any) => r.name).sort(), ['member', 'reader']);
  });

  it('project scope by name with its domain id or domain name', async () => {
    for (const domain of [{ id: 'default' }, { name: 'Default' }]) {
      const res = await ic.passwordAuth({ id: ic.ids.demoUser }, DEMO_PASSWORD, { project: { name: 'demo', domain } });
      assert.equal(res.status, 201, res.text);
      assert.equal(res.body.token.project.id, ic.ids.demoProject);
    }
  });

  it('without a scope, a user with a default project gets a token on it', async () => {
    const res = await ic.passwordAuth({ id: ic.ids.demoUser }, DEMO_PASSWORD);
    assert.equal(res.status, 201, res.text);
    assert.equal(res.body.token.project?.id, ic.ids.demoProject);
  });

  it('unscoped: no project, no roles, no catalog', async () => {
    const name = unique('loner');
    const user = await ic.createUser(name, 'loner-pass');
    for (const scope of [undefined, 'unscoped' as const]) {
      const res = await ic.passwordAuth({ id: user.id }, 'loner-pass', scope);
      assert.equal(res.status, 201, res.text);
      const token = res.body.token;
      assert.equal(token.user.id, user.id);
      for (const key of ['project', 'domain', 'system', 'roles', 'catalog']) assert.equal(token[key], undefined, `unscoped token has ${key}`);
    }
    // "scope": "unscoped" (or older keystoneauth's {"unscoped": {}}) wins over the default project.
    for (const scope of ['unscoped', { unscoped: {} }] as const) {
      const res = await ic.passwordAuth({ id: ic.ids.demoUser }, DEMO_PASSWORD, scope as any);
      assert.equal(res.status, 201, res.text);
      assert.equal(res.body.token.project, undefined);
    }
    // More than one scope, or none of the known ones, is a 400.
    assertError(await ic.passwordAuth({ id: ic.ids.demoUser }, DEMO_PASSWORD, { project: { id: ic.ids.demoProject }, system: { all: true } } as any), 400);
    assertError(await ic.passwordAuth({ id: ic.ids.demoUser }, DEMO_PASSWORD, {} as any), 400);
  });

  it('domain scope, by domain id and by domain name', async () => {
    const user = await ic.createUser(unique('domain-admin'), 'pw-domain');
    await ic.admin('PUT', `/domains/default/users/${user.id}/roles/${ic.ids.admin}`, undefined, 204);
    for (const domain of [{ id: 'default' }, { name: 'Default' }]) {
      const res = await ic.passwordAuth({ id: user.id }, 'pw-domain', { domain });
      assert.equal(res.status, 201, res.text);
      assert.deepEqual(res.body.token.domain, { id: 'default', name: 'Default' });
      assert.equal(res.body.token.project, undefined);
      assert.deepEqual(res.body.token.roles.map((r: any) => r.name).sort(), ['admin', 'member', 'reader']);
      assert.ok(Array.isArray(res.body.token.catalog));
    }
    // Without a role on the domain there is no domain-scoped token.
    const denied = await ic.passwordAuth({ id: ic.ids.demoUser }, DEMO_PASSWORD, { domain: { id: 'default' } });
    assertError(denied, 401);
  });

  it('system scope for the admin; refused to a user without a system role', async () => {
    const res = await ic.passwordAuth({ id: ic.ids.adminUser }, ADMIN_PASSWORD, { system: { all: true } });
    assert.equal(res.status, 201, res.text);
    assert.deepEqual(res.body.token.system, { all: true });
    assert.equal(res.body.token.project, undefined);
    assert.deepEqual(res.body.token.roles.map((r: any) => r.name).sort(), ['admin', 'member', 'reader']);
    assertError(await ic.passwordAuth({ id: ic.ids.demoUser }, DEMO_PASSWORD, { system: { all: true } }), 401);
  });

  it('?nocatalog leaves the catalog out and keeps everything else', async () => {
    const res = await ic.passwordAuth({ id: ic.ids.demoUser }, DEMO_PASSWORD, { project: { id: ic.ids.demoProject } }, '?nocatalog');
    assert.equal(res.status, 201, res.text);
    assert.equal(res.body.token.catalog, undefined);
    assert.ok(res.body.token.roles.length > 0);
  });

  it('a project the user has no role on, an unknown project and a wrong password are 401', async () => {
    assertError(await ic.passwordAuth({ id: ic.ids.demoUser }, DEMO_PASSWORD, { project: { id: ic.ids.adminProject } }), 401);
    assertError(await ic.passwordAuth({ id: ic.ids.demoUser }, DEMO_PASSWORD, { project: { id: 'f'.repeat(32) } }), 401);
    assertError(await ic.passwordAuth({ id: ic.ids.demoUser }, 'not-the-password'), 401);
    assertError(await ic.passwordAuth({ name: 'nobody', domain: { id: 'default' } }, 'x'), 401);
    assertError(await ic.passwordAuth({ name: 'demo', domain: { name: 'NoSuchDomain' } }, DEMO_PASSWORD), 401);
  });

  it('a disabled project cannot be scoped to', async () => {
    const project = await ic.createProject(unique('soon-disabled'));
    await ic.grantProject(project.id, ic.ids.demoUser, ic.ids.member);
    const ok = await ic.passwordAuth({ id: ic.ids.demoUser }, DEMO_PASSWORD, { project: { id: project.id } });
    assert.equal(ok.status, 201, ok.text);
    await ic.admin('PATCH', `/projects/${project.id}`, { project: { enabled: false } });
    assertError(await ic.passwordAuth({ id: ic.ids.demoUser }, DEMO_PASSWORD, { project: { id: project.id } }), 401);
  });
});

describe('GET, HEAD and DELETE /v3/auth/tokens', () => {
  it('GET validates the subject token: 200, the same body, X-Subject-Token echoed', async () => {
    const issued = await ic.passwordAuth({ id: ic.ids.demoUser }, DEMO_PASSWORD, { project: { id: ic.ids.demoProject } });
    const subject = issued.headers.get('x-subject-token')!;
    const res = await ic.get('/auth/tokens', { token: await ic.adminToken(), subject });
    assert.equal(res.status, 200, res.text);
    assert.equal(res.headers.get('x-subject-token'), subject);
    assert.deepEqual(res.body, issued.body);
    const noCatalog = await ic.get('/auth/tokens?nocatalog', { token: await ic.adminToken(), subject });
    assert.equal(noCatalog.status, 200);
    assert.equal(noCatalog.body.token.catalog, undefined);
    assert.deepEqual(noCatalog.body.token.roles, issued.body.token.roles);
  });

  it('a user may validate its own token; not somebody else\'s', async () => {
    const demo = await ic.demoToken();
    const own = await ic.get('/auth/tokens', { token: demo, subject: demo });
    assert.equal(own.status, 200, own.text);
    assertError(await ic.get('/auth/tokens', { token: demo, subject: await ic.adminToken() }), 403);
  });

  it('HEAD answers 200 without a body', async () => {
    const demo = await ic.demoToken();
    const res = await ic.head('/auth/tokens', { token: await ic.adminToken(), subject: demo });
    assert.equal(res.status, 200);
    assert.equal(res.text, '');
    assert.equal(res.headers.get('x-subject-token'), demo);
  });

  it('an unknown or malformed subject token is 404; a missing one too', async () => {
    const admin = await ic.adminToken();
    assertError(await ic.get('/auth/tokens', { token: admin, subject: 'gAAAAABnot-a-token' }), 404);
    assertError(await ic.get('/auth/tokens', { token: admin, subject: admin.slice(0, -4) + 'AAAA' }), 404);
    const head = await ic.head('/auth/tokens', { token: admin, subject: 'garbage' });
    assert.equal(head.status, 404);
    assertError(await ic.get('/auth/tokens', { token: admin }), 404);
  });

  it('no X-Auth-Token, or a bad one, is 401', async () => {
    const demo = await ic.demoToken();
    assertError(await ic.get('/auth/tokens', { subject: demo }), 401);
    assertError(await ic.get('/auth/tokens', { token: 'garbage', subject: demo }), 401);
  });

  it('DELETE revokes: 204, then 404 as a subject and 401 as X-Auth-Token; other tokens live on', async () => {
    const doomed = await ic.demoToken();
    const survivor = await ic.demoToken();
    const res = await ic.delete('/auth/tokens', { token: await ic.adminToken(), subject: doomed });
    assert.equal(res.status, 204);
    assert.equal(res.text, '');
    assertError(await ic.get('/auth/tokens', { token: await ic.adminToken(), subject: doomed }), 404);
    assertError(await ic.get('/auth/projects', { token: doomed }), 401);
    assertError(await ic.delete('/auth/tokens', { token: await ic.adminToken(), subject: doomed }), 404);
    const still = await ic.get('/auth/tokens', { token: survivor, subject: survivor });
    assert.equal(still.status, 200, still.text);
  });

  it('a user may revoke its own token with itself', async () => {
    const demo = await ic.demoToken();
    assert.equal((await ic.delete('/auth/tokens', { token: demo, subject: demo })).status, 204);
    assertError(await ic.get('/auth/tokens', { token: await ic.adminToken(), subject: demo }), 404);
  });
});

describe('the token method', () => {
  it('rescopes an unscoped token to a project without extending its expiry', async () => {
    const unscoped = await ic.passwordAuth({ id: ic.ids.demoUser }, DEMO_PASSWORD, 'unscoped');
    assert.equal(unscoped.status, 201);
    const id = unscoped.headers.get('x-subject-token')!;
    await new Promise((resolve) => setTimeout(resolve, 20));
    const res = await ic.post('/auth/tokens', { auth: { identity: { methods: ['token'], token: { id } }, scope: { project: { id: ic.ids.demoProject } } } });
    assert.equal(res.status, 201, res.text);
    const token = res.body.token;
    assert.equal(token.project.id, ic.ids.demoProject);
    assert.equal(token.user.id, ic.ids.demoUser);
    assert.equal(token.expires_at, unscoped.body.token.expires_at, 'a rescoped token keeps the original expiry');
    assert.ok(Date.parse(token.issued_at) >= Date.parse(unscoped.body.token.issued_at));
    assert.deepEqual([...token.methods].sort(), ['password', 'token']);
    // The new token has its own audit id and carries the original's as the chain id.
    assert.equal(token.audit_ids.length, 2);
    assert.equal(token.audit_ids[1], unscoped.body.token.audit_ids[0]);
    assert.notEqual(token.audit_ids[0], token.audit_ids[1]);
    assert.ok(token.catalog.length > 0);
    const rescoped = res.headers.get('x-subject-token')!;
    assert.notEqual(rescoped, id);
    const check = await ic.get('/auth/tokens', { token: rescoped, subject: rescoped });
    assert.equal(check.status, 200, check.text);
  });

  it('cannot reach a project the user has no role on; a bad token id is refused', async () => {
    const unscoped = await ic.token({ id: ic.ids.demoUser }, DEMO_PASSWORD, 'unscoped');
    assertError(await ic.post('/auth/tokens', { auth: { identity: { methods: ['token'], token: { id: unscoped } }, scope: { project: { id: ic.ids.adminProject } } } }), 401);
    const bad = await ic.post('/auth/tokens', { auth: { identity: { methods: ['token'], token: { id: 'not-a-token' } }, scope: { project: { id: ic.ids.demoProject } } } });
    assert.ok(bad.status === 401 || bad.status === 404, `expected 401 or 404, got ${bad.status}`);
    assertError(bad, bad.status);
  });

  it('a project token rescopes to another project; a system token may not become a project or domain token', async () => {
    const other = await ic.createProject(unique('rescope-target'));
    await ic.grantProject(other.id, ic.ids.demoUser, ic.ids.reader);
    const scoped = await ic.demoToken();
    const res = await ic.post('/auth/tokens', { auth: { identity: { methods: ['token'], token: { id: scoped } }, scope: { project: { id: other.id } } } });
    assert.equal(res.status, 201, res.text);
    assert.equal(res.body.token.project.id, other.id);
    assert.deepEqual(res.body.token.roles.map((r: any) => r.name), ['reader']);

    const system = await ic.token({ id: ic.ids.adminUser }, ADMIN_PASSWORD, { system: { all: true } });
    for (const scope of [{ project: { id: ic.ids.adminProject } }, { domain: { id: 'default' } }]) {
      assertError(await ic.post('/auth/tokens', { auth: { identity: { methods: ['token'], token: { id: system } }, scope } }), 403);
    }
  });

  it('a revoked token cannot be rescoped', async () => {
    const unscoped = await ic.token({ id: ic.ids.demoUser }, DEMO_PASSWORD, 'unscoped');
    assert.equal((await ic.delete('/auth/tokens', { token: unscoped, subject: unscoped })).status, 204);
    const res = await ic.post('/auth/tokens', { auth: { identity: { methods: ['token'], token: { id: unscoped } }, scope: { project: { id: ic.ids.demoProject } } } });
    assert.ok(res.status === 401 || res.status === 404, `expected 401 or 404, got ${res.status}`);
  });
});

describe('/v3/auth/projects, /v3/auth/domains, /v3/auth/system and /v3/auth/catalog', () => {
  it('/v3/auth/projects lists the projects the token\'s user has roles on', async () => {
    const res = await ic.get('/auth/projects', { token: await ic.demoToken() });
    assert.equal(res.status, 200, res.text);
    const ids = res.body.projects.map((p: any) => p.id);
    assert.ok(ids.includes(ic.ids.demoProject));
    assert.ok(!ids.includes(ic.ids.adminProject));
    const demo = res.body.projects.find((p: any) => p.id === ic.ids.demoProject);
    assert.equal(demo.name, 'demo');
    assert.equal(demo.domain_id, 'default');
    assert.equal(demo.links.self, ic.v3(`/projects/${ic.ids.demoProject}`));
    assert.equal(res.body.links.self, ic.v3('/auth/projects'));
    // An unscoped token works too.
    const unscoped = await ic.token({ id: ic.ids.demoUser }, DEMO_PASSWORD, 'unscoped');
    const again = await ic.get('/auth/projects', { token: unscoped });
    assert.deepEqual(again.body.projects.map((p: any) => p.id).sort(), [...ids].sort());
  });

  it('/v3/auth/domains lists domains with a role; empty for demo', async () => {
    const demo = await ic.get('/auth/domains', { token: await ic.demoToken() });
    assert.equal(demo.status, 200);
    assert.deepEqual(demo.body.domains, []);
    const user = await ic.createUser(unique('dom-reader'), 'pw-dr');
    await ic.admin('PUT', `/domains/default/users/${user.id}/roles/${ic.ids.reader}`, undefined, 204);
    const token = await ic.token({ id: user.id }, 'pw-dr', 'unscoped');
    const res = await ic.get('/auth/domains', { token });
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(res.body.domains.map((d: any) => d.id), ['default']);
    assert.equal(res.body.domains[0].name, 'Default');
  });

  it('/v3/auth/system: [{all: true}] for the admin, [] for demo', async () => {
    const admin = await ic.get('/auth/system', { token: await ic.adminToken() });
    assert.equal(admin.status, 200);
    assert.deepEqual(admin.body.system, [{ all: true }]);
    const demo = await ic.get('/auth/system', { token: await ic.demoToken() });
    assert.deepEqual(demo.body.system, []);
  });

  it('/v3/auth/catalog returns the catalog of the token; 403 for an unscoped token', async () => {
    const res = await ic.get('/auth/catalog', { token: await ic.demoToken() });
    assert.equal(res.status, 200, res.text);
    const identity = res.body.catalog.find((s: any) => s.type === 'identity');
    assert.ok(identity);
    assert.equal(identity.endpoints.length, 3);
    assert.equal(res.body.links.self, ic.v3('/auth/catalog'));
    const unscoped = await ic.token({ id: ic.ids.demoUser }, DEMO_PASSWORD, 'unscoped');
    assertError(await ic.get('/auth/catalog', { token: unscoped }), 403);
  });

  it('all of them need a token', async () => {
    for (const path of ['/auth/projects', '/auth/domains', '/auth/system', '/auth/catalog']) assertError(await ic.get(path), 401);
  });
});
