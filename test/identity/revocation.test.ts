// Token revocation (explicit, and by the identity changes that revoke a user's tokens),
// token expiry, and Fernet key rotation, over HTTP.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { FernetKeyRepository } from '../../src/identity/fernet.js';
import { ADMIN_PASSWORD, DEMO_PASSWORD, assertError, sleep, startIdentityCloud, unique, type IdentityCloud } from './harness.js';

let ic: IdentityCloud;
before(async () => { ic = await startIdentityCloud(); });
after(async () => { await ic?.close(); });

/** A fresh user with the member role on a fresh project. */
async function memberOfNewProject(password: string): Promise<{ user: any; project: any }> {
  const project = await ic.createProject(unique('rev-project'));
  const user = await ic.createUser(unique('rev-user'), password, { default_project_id: project.id });
  await ic.grantProject(project.id, user.id, ic.ids.member);
  return { user, project };
}

async function assertValid(token: string): Promise<void> {
  const res = await ic.get('/auth/tokens', { token: await ic.adminToken(), subject: token });
  assert.equal(res.status, 200, `token should validate: ${res.text}`);
  const asAuth = await ic.get('/auth/projects', { token });
  assert.equal(asAuth.status, 200, `token should authenticate: ${asAuth.text}`);
}

/** A revoked token: 404 as X-Subject-Token (GET and HEAD), 401 as X-Auth-Token. */
async function assertRevoked(token: string): Promise<void> {
  assertError(await ic.get('/auth/tokens', { token: await ic.adminToken(), subject: token }), 404);
  assert.equal((await ic.head('/auth/tokens', { token: await ic.adminToken(), subject: token })).status, 404);
  assertError(await ic.get('/auth/projects', { token }), 401);
}

describe('revocation by identity changes', () => {
  it('disabling a user revokes its tokens; no new token while disabled; a fresh one after re-enabling', async () => {
    const { user, project } = await memberOfNewProject('pw-disable');
    const scoped = await ic.token({ id: user.id }, 'pw-disable', { project: { id: project.id } });
    const unscoped = await ic.token({ id: user.id }, 'pw-disable', 'unscoped');
    await assertValid(scoped);
    await ic.admin('PATCH', `/users/${user.id}`, { user: { enabled: false } });
    await assertRevoked(scoped);
    await assertRevoked(unscoped);
    assertError(await ic.passwordAuth({ id: user.id }, 'pw-disable'), 401);
    await ic.admin('PATCH', `/users/${user.id}`, { user: { enabled: true } });
    await assertRevoked(scoped); // re-enabling does not bring old tokens back
    await assertValid(await ic.token({ id: user.id }, 'pw-disable', { project: { id: project.id } }));
  });

  it('deleting a user revokes its tokens', async () => {
    const { user, project } = await memberOfNewProject('pw-delete');
    const token = await ic.token({ id: user.id }, 'pw-delete', { project: { id: project.id } });
    await assertValid(token);
    await ic.admin('DELETE', `/users/${user.id}`);
    await assertRevoked(token);
    assertError(await ic.passwordAuth({ id: user.id }, 'pw-delete'), 401);
  });

  it('a user changing its own password (POST /v3/users/{id}/password) revokes its tokens', async () => {
    const { user, project } = await memberOfNewProject('pw-old-self');
    const token = await ic.token({ id: user.id }, 'pw-old-self', { project: { id: project.id } });
    const other = await ic.token({ id: user.id }, 'pw-old-self', 'unscoped');
    const res = await ic.post(`/users/${user.id}/password`, { user: { original_password: 'pw-old-self', password: 'pw-new-self' } }, { token });
    assert.equal(res.status, 204, res.text);
    assert.equal(res.text, '');
    await assertRevoked(token);
    await assertRevoked(other);
    assertError(await ic.passwordAuth({ id: user.id }, 'pw-old-self'), 401);
    await assertValid(await ic.token({ id: user.id }, 'pw-new-self', { project: { id: project.id } }));
  });

  it('the wrong original password changes nothing and revokes nothing (401)', async () => {
    const { user, project } = await memberOfNewProject('pw-keep');
    const token = await ic.token({ id: user.id }, 'pw-keep', { project: { id: project.id } });
    assertError(await ic.post(`/users/${user.id}/password`, { user: { original_password: 'wrong', password: 'pw-other' } }, { token }), 401);
    await assertValid(token);
    await assertValid(await ic.token({ id: user.id }, 'pw-keep'));
    assertError(await ic.passwordAuth({ id: user.id }, 'pw-other'), 401);
  });

  it('an admin setting the password (PATCH /v3/users/{id}) revokes the user\'s tokens', async () => {
    const { user, project } = await memberOfNewProject('pw-old-admin');
    const token = await ic.token({ id: user.id }, 'pw-old-admin', { project: { id: project.id } });
    await ic.admin('PATCH', `/users/${user.id}`, { user: { password: 'pw-new-admin' } });
    await assertRevoked(token);
    assertError(await ic.passwordAuth({ id: user.id }, 'pw-old-admin'), 401);
    await assertValid(await ic.token({ id: user.id }, 'pw-new-admin', { project: { id: project.id } }));
  });

  it('changing other attributes of a user does not revoke its tokens', async () => {
    const { user, project } = await memberOfNewProject('pw-stay');
    const token = await ic.token({ id: user.id }, 'pw-stay', { project: { id: project.id } });
    await ic.admin('PATCH', `/users/${user.id}`, { user: { description: 'still me', email: 'me@example.org' } });
    await assertValid(token);
  });

  it('removing a role revokes the tokens on that project; a fresh token has the remaining roles', async () => {
    const { user, project } = await memberOfNewProject('pw-role');
    const observer = (await ic.admin('POST', '/roles', { role: { name: unique('observer') } })).role;
    await ic.grantProject(project.id, user.id, observer.id);
    const token = await ic.token({ id: user.id }, 'pw-role', { project: { id: project.id } });
    const before = await ic.get('/auth/tokens', { token: await ic.adminToken(), subject: token });
    assert.ok(before.body.token.roles.some((r: any) => r.id === observer.id));
    await ic.admin('DELETE', `/projects/${project.id}/users/${user.id}/roles/${observer.id}`);
    await assertRevoked(token);
    const fresh = await ic.passwordAuth({ id: user.id }, 'pw-role', { project: { id: project.id } });
    assert.equal(fresh.status, 201, fresh.text);
    assert.deepEqual(fresh.body.token.roles.map((r: any) => r.name).sort(), ['member', 'reader']);
    await assertValid(fresh.headers.get('x-subject-token')!);
  });

  it('removing the last role leaves no project token, an unscoped one still works', async () => {
    const { user, project } = await memberOfNewProject('pw-last-role');
    const token = await ic.token({ id: user.id }, 'pw-last-role', { project: { id: project.id } });
    await ic.admin('DELETE', `/projects/${project.id}/users/${user.id}/roles/${ic.ids.member}`);
    await assertRevoked(token);
    assertError(await ic.passwordAuth({ id: user.id }, 'pw-last-role', { project: { id: project.id } }), 401);
    await assertValid(await ic.token({ id: user.id }, 'pw-last-role', 'unscoped'));
  });

  it('leaving a group revokes the tokens that rested on the group\'s role', async () => {
    const project = await ic.createProject(unique('group-project'));
    const user = await ic.createUser(unique('group-user'), 'pw-group');
    const group = (await ic.admin('POST', '/groups', { group: { name: unique('group'), domain_id: 'default' } })).group;
    await ic.admin('PUT', `/projects/${project.id}/groups/${group.id}/roles/${ic.ids.member}`, undefined, 204);
    await ic.admin('PUT', `/groups/${group.id}/users/${user.id}`, undefined, 204);
    const token = await ic.token({ id: user.id }, 'pw-group', { project: { id: project.id } });
    await assertValid(token);
    await ic.admin('DELETE', `/groups/${group.id}/users/${user.id}`);
    await assertRevoked(token);
    assertError(await ic.passwordAuth({ id: user.id }, 'pw-group', { project: { id: project.id } }), 401);
  });

  it('disabling a project invalidates the tokens scoped to it, not the user\'s other tokens', async () => {
    const { user, project } = await memberOfNewProject('pw-project');
    const scoped = await ic.token({ id: user.id }, 'pw-project', { project: { id: project.id } });
    const unscoped = await ic.token({ id: user.id }, 'pw-project', 'unscoped');
    await ic.admin('PATCH', `/projects/${project.id}`, { project: { enabled: false } });
    await assertRevoked(scoped);
    await assertValid(unscoped);
  });
});

describe('revocation and new tokens in the same millisecond', () => {
  it('a token issued right after a password change, at the very same instant, is valid', async (t) => {
    const { user } = await memberOfNewProject('pw-same-ms');
    const { identity, tokens } = ic.cloud.identity;
    const old = await tokens.authenticate({ identity: { methods: ['password'], password: { user: { id: user.id, password: 'pw-same-ms' } } } });
    t.mock.timers.enable({ apis: ['Date'], now: Date.now() + 10 }); // the clock stands still from here
    try {
      await identity.updateUser(user.id, { password: 'pw-same-ms-2' });
      const fresh = await tokens.authenticate({ identity: { methods: ['password'], password: { user: { id: user.id, password: 'pw-same-ms-2' } } } });
      await assert.doesNotReject(tokens.validateToken(fresh.token), 'the fresh token must not match the revocation');
      await assert.rejects(tokens.validateToken(old.token), 'the old token is revoked');
    } finally {
      t.mock.timers.reset();
    }
  });
});

describe('Fernet key rotation', () => {
  it('tokens issued before a rotation still validate; tokens issued after too', async () => {
    const { user, project } = await memberOfNewProject('pw-rotate');
    const before = await ic.token({ id: user.id }, 'pw-rotate', { project: { id: project.id } });
    ic.cloud.identity.keys.rotate();
    await assertValid(before);
    const after = await ic.token({ id: user.id }, 'pw-rotate', { project: { id: project.id } });
    await assertValid(after);
    await assertValid(before);
  });

  it('a rotation by another process (keystone-manage style, same key directory) is picked up', async () => {
    const { user, project } = await memberOfNewProject('pw-rotate-2');
    const old = await ic.token({ id: user.id }, 'pw-rotate-2', { project: { id: project.id } });
    const repo = new FernetKeyRepository(join(ic.dataDir, 'fernet-keys'), 3);
    repo.rotate();
    const primary = repo.keys()[0];
    await sleep(1100); // the server re-reads the directory at most once a second
    ic.forgetAdminToken(); // signed with the key this rotation may have purged (the previous test rotated too)
    const fresh = await ic.token({ id: user.id }, 'pw-rotate-2', { project: { id: project.id } });
    await assertValid(old);
    await assertValid(fresh);
    // The fresh token was signed with the new primary: decrypting with that key alone works.
    const { Fernet } = await import('../../src/identity/fernet.js');
    assert.doesNotThrow(() => new Fernet({ keys: () => [primary] }).decrypt(fresh));
    // Two rotations later (3 active keys: staged, primary, one secondary) the oldest key is purged.
    repo.rotate();
    repo.rotate();
    await sleep(1100);
    ic.forgetAdminToken(); // it was signed with a purged key too
    await assertRevoked(old);
    await assertValid(await ic.token({ id: user.id }, 'pw-rotate-2', { project: { id: project.id } }));
  });
});

describe('token expiry', () => {
  let short: IdentityCloud;
  before(async () => { short = await startIdentityCloud({ token: { expiration: '2' } }); });
  after(async () => { await short?.close(); });

  it('a token expires after [token] expiration seconds: 404 as subject, 401 as X-Auth-Token', async () => {
    const res = await short.passwordAuth({ id: short.ids.demoUser }, DEMO_PASSWORD, 'unscoped');
    assert.equal(res.status, 201, res.text);
    const token = res.headers.get('x-subject-token')!;
    const lifetime = Date.parse(res.body.token.expires_at) - Date.parse(res.body.token.issued_at);
    assert.ok(lifetime > 1500 && lifetime <= 2000, `lifetime ${lifetime} ms`);
    // A rescoped token inherits the expiry and dies with its parent.
    await sleep(500);
    const rescoped = await short.post('/auth/tokens', { auth: { identity: { methods: ['token'], token: { id: token } }, scope: { project: { id: short.ids.demoProject } } } });
    assert.equal(rescoped.status, 201, rescoped.text);
    assert.equal(rescoped.body.token.expires_at, res.body.token.expires_at);
    const rescopedId = rescoped.headers.get('x-subject-token')!;
    assert.equal((await short.get('/auth/tokens', { token: rescopedId, subject: token })).status, 200);

    await sleep(Math.max(0, Date.parse(res.body.token.expires_at) - Date.now()) + 150);
    const admin = await short.token({ id: short.ids.adminUser }, ADMIN_PASSWORD, { project: { id: short.ids.adminProject } });
    assertError(await short.get('/auth/tokens', { token: admin, subject: token }), 404);
    assertError(await short.get('/auth/tokens', { token: admin, subject: rescopedId }), 404);
    assertError(await short.get('/auth/projects', { token }), 401);
    assertError(await short.get('/auth/projects', { token: rescopedId }), 401);
    // An expired token cannot be rescoped either.
    const late = await short.post('/auth/tokens', { auth: { identity: { methods: ['token'], token: { id: token } }, scope: { project: { id: short.ids.demoProject } } } });
    assert.ok(late.status === 401 || late.status === 404, `expected 401 or 404, got ${late.status}`);
  });
});
