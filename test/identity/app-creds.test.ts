// Application credentials over HTTP: self-service CRUD, role subsets, expiry, the
// unrestricted flag, and authentication with the application_credential method.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { assertError, sleep, startIdentityCloud, unique, type IdentityCloud } from './harness.js';

let ic: IdentityCloud;
let user: any;
let project: any;
let observer: any;
let userToken: string;
const PASSWORD = 'pw-app-cred-owner';

before(async () => {
  ic = await startIdentityCloud();
  project = await ic.createProject(unique('ac-project'));
  user = await ic.createUser(unique('ac-user'), PASSWORD, { default_project_id: project.id });
  observer = (await ic.admin('POST', '/roles', { role: { name: unique('observer') } })).role;
  await ic.grantProject(project.id, user.id, ic.ids.member);
  await ic.grantProject(project.id, user.id, observer.id);
  userToken = await ic.token({ id: user.id }, PASSWORD, { project: { id: project.id } });
});
after(async () => { await ic?.close(); });

const base = () => `/users/${user.id}/application_credentials`;

async function createCredential(body: Record<string, unknown>, token = userToken): Promise<any> {
  const res = await ic.post(base(), { application_credential: body }, { token });
  assert.equal(res.status, 201, res.text);
  return res.body.application_credential;
}

function appCredAuth(ref: Record<string, unknown>, scope?: unknown) {
  const auth: Record<string, unknown> = { identity: { methods: ['application_credential'], application_credential: ref } };
  if (scope !== undefined) auth.scope = scope;
  return ic.post('/auth/tokens', { auth });
}

describe('application credential CRUD', () => {
  it('create returns the secret once; show and list never do', async () => {
    const name = unique('ci-bot');
    const credential = await createCredential({ name, description: 'for CI' });
    assert.match(credential.id, /^[0-9a-f]{32}$/);
    assert.equal(credential.name, name);
    assert.equal(credential.description, 'for CI');
    assert.equal(credential.user_id, user.id);
    assert.equal(credential.project_id, project.id);
    assert.equal(credential.unrestricted, false);
    assert.equal(credential.expires_at, null);
    assert.equal(typeof credential.secret, 'string');
    assert.ok(credential.secret.length >= 32);
    // Without roles, the credential gets all of the user's roles on the project (implied ones included).
    assert.deepEqual(credential.roles.map((r: any) => r.id).sort(), [ic.ids.member, ic.ids.reader, observer.id].sort());
    assert.equal(credential.links.self, ic.v3(`${base()}/${credential.id}`));

    const shown = await ic.get(`${base()}/${credential.id}`, { token: userToken });
    assert.equal(shown.status, 200, shown.text);
    assert.equal(shown.body.application_credential.secret, undefined);
    assert.equal(shown.body.application_credential.name, name);
    const listed = await ic.get(base(), { token: userToken });
    assert.equal(listed.status, 200);
    const mine = listed.body.application_credentials.find((c: any) => c.id === credential.id);
    assert.ok(mine);
    assert.equal(mine.secret, undefined);
    assert.ok(!listed.text.includes(credential.secret));
    assert.deepEqual((await ic.get(`${base()}?name=${name}`, { token: userToken })).body.application_credentials.map((c: any) => c.id), [credential.id]);
    // The admin may look at them too.
    assert.equal((await ic.get(base(), { token: await ic.adminToken() })).status, 200);

    assertError(await ic.post(base(), { application_credential: { name } }, { token: userToken }), 409);
    assert.equal((await ic.delete(`${base()}/${credential.id}`, { token: userToken })).status, 204);
    assertError(await ic.get(`${base()}/${credential.id}`, { token: userToken }), 404);
    assertError(await ic.delete(`${base()}/${credential.id}`, { token: userToken }), 404);
  });

  it('a chosen secret works; a role the user lacks on the project is refused (400)', async () => {
    const credential = await createCredential({ name: unique('chosen'), secret: 'my-own-secret-value' });
    assert.equal(credential.secret, 'my-own-secret-value');
    assert.equal((await appCredAuth({ id: credential.id, secret: 'my-own-secret-value' })).status, 201);
    assertError(await ic.post(base(), { application_credential: { name: unique('greedy'), roles: [{ id: ic.ids.admin }] } }, { token: userToken }), 400);
    assertError(await ic.post(base(), { application_credential: { name: unique('greedy'), roles: [{ name: 'admin' }] } }, { token: userToken }), 400);
  });

  it('an expiry in the past is 400; nobody creates credentials for somebody else', async () => {
    assertError(await ic.post(base(), { application_credential: { name: unique('stale'), expires_at: '2001-01-01T00:00:00Z' } }, { token: userToken }), 400);
    assertError(await ic.post(base(), { application_credential: { name: unique('garbled'), expires_at: 'next tuesday' } }, { token: userToken }), 400);
    const demo = await ic.demoToken();
    assertError(await ic.post(base(), { application_credential: { name: unique('theft') } }, { token: demo }), 403);
    assertError(await ic.get(base(), { token: demo }), 403);
  });
});

describe('authenticating with an application credential', () => {
  it('by id: a token on the credential\'s project with only the credential\'s roles', async () => {
    const credential = await createCredential({ name: unique('reader-only'), roles: [{ id: ic.ids.reader }] });
    assert.deepEqual(credential.roles.map((r: any) => r.id), [ic.ids.reader]);
    const res = await appCredAuth({ id: credential.id, secret: credential.secret });
    assert.equal(res.status, 201, res.text);
    const token = res.body.token;
    assert.deepEqual(token.methods, ['application_credential']);
    assert.equal(token.user.id, user.id);
    assert.equal(token.project.id, project.id);
    assert.deepEqual(token.roles.map((r: any) => r.id), [ic.ids.reader]);
    assert.deepEqual(token.application_credential, { id: credential.id, name: credential.name, restricted: true });
    assert.ok(Array.isArray(token.catalog));
    const subject = res.headers.get('x-subject-token')!;
    const validated = await ic.get('/auth/tokens', { token: await ic.adminToken(), subject });
    assert.equal(validated.status, 200, validated.text);
    assert.deepEqual(validated.body.token.roles.map((r: any) => r.id), [ic.ids.reader]);
  });

  it('by name with the user given by id or by name and domain', async () => {
    const name = unique('by-name');
    const credential = await createCredential({ name, roles: [{ name: 'member' }] });
    // Keystone adds the roles a given role implies.
    assert.deepEqual(credential.roles.map((r: any) => r.name).sort(), ['member', 'reader']);
    for (const who of [{ id: user.id }, { name: user.name, domain: { id: 'default' } }, { name: user.name, domain: { name: 'Default' } }]) {
      const res = await appCredAuth({ name, user: who, secret: credential.secret });
      assert.equal(res.status, 201, res.text);
      assert.deepEqual(res.body.token.roles.map((r: any) => r.name).sort(), ['member', 'reader']);
    }
  });

  it('a wrong secret, an unknown id or name, or any scope is 401', async () => {
    const credential = await createCredential({ name: unique('strict') });
    assertError(await appCredAuth({ id: credential.id, secret: 'wrong' }), 401);
    assertError(await appCredAuth({ id: 'f'.repeat(32), secret: credential.secret }), 401);
    assertError(await appCredAuth({ name: 'nope', user: { id: user.id }, secret: credential.secret }), 401);
    // As in Keystone, an application credential may not ask for a scope, not even its own project.
    assertError(await appCredAuth({ id: credential.id, secret: credential.secret }, { project: { id: ic.ids.demoProject } }), 401);
    assertError(await appCredAuth({ id: credential.id, secret: credential.secret }, { project: { id: project.id } }), 401, 'cannot request a scope');
  });

  it('deleting the credential revokes its tokens', async () => {
    const credential = await createCredential({ name: unique('short-lived') });
    const res = await appCredAuth({ id: credential.id, secret: credential.secret });
    const token = res.headers.get('x-subject-token')!;
    assert.equal((await ic.get('/auth/projects', { token })).status, 200);
    await ic.admin('DELETE', `${base()}/${credential.id}`);
    assertError(await ic.get('/auth/projects', { token }), 401);
    assertError(await ic.get('/auth/tokens', { token: await ic.adminToken(), subject: token }), 404);
    assertError(await appCredAuth({ id: credential.id, secret: credential.secret }), 401);
  });

  it('an expiring credential caps its tokens and stops working when it expires', async () => {
    const expiresAt = new Date(Date.now() + 1500);
    const credential = await createCredential({ name: unique('expiring'), expires_at: expiresAt.toISOString() });
    assert.equal(Date.parse(credential.expires_at), expiresAt.getTime());
    const res = await appCredAuth({ id: credential.id, secret: credential.secret });
    assert.equal(res.status, 201, res.text);
    assert.ok(Date.parse(res.body.token.expires_at) <= expiresAt.getTime(), 'the token does not outlive the credential');
    const token = res.headers.get('x-subject-token')!;
    await sleep(Math.max(0, expiresAt.getTime() - Date.now()) + 100);
    assertError(await appCredAuth({ id: credential.id, secret: credential.secret }), 401);
    assertError(await ic.get('/auth/projects', { token }), 401);
  });

  it('a restricted credential\'s token cannot manage credentials; an unrestricted one\'s can', async () => {
    const restricted = await createCredential({ name: unique('restricted') });
    const restrictedToken = (await appCredAuth({ id: restricted.id, secret: restricted.secret })).headers.get('x-subject-token')!;
    assertError(await ic.post(base(), { application_credential: { name: unique('child') } }, { token: restrictedToken }), 403);
    assertError(await ic.delete(`${base()}/${restricted.id}`, { token: restrictedToken }), 403);

    const unrestricted = await createCredential({ name: unique('unrestricted'), unrestricted: true });
    assert.equal(unrestricted.unrestricted, true);
    const res = await appCredAuth({ id: unrestricted.id, secret: unrestricted.secret });
    assert.deepEqual(res.body.token.application_credential, { id: unrestricted.id, name: unrestricted.name, restricted: false });
    const child = await ic.post(base(), { application_credential: { name: unique('child') } }, { token: res.headers.get('x-subject-token')! });
    assert.equal(child.status, 201, child.text);
    assert.equal(child.body.application_credential.project_id, project.id);

    // A credential made with an application credential's token never has more roles than it.
    const narrow = await createCredential({ name: unique('narrow'), unrestricted: true, roles: [{ id: ic.ids.reader }] });
    const narrowToken = (await appCredAuth({ id: narrow.id, secret: narrow.secret })).headers.get('x-subject-token')!;
    const inherited = await ic.post(base(), { application_credential: { name: unique('narrow-child') } }, { token: narrowToken });
    assert.equal(inherited.status, 201, inherited.text);
    assert.deepEqual(inherited.body.application_credential.roles.map((r: any) => r.id), [ic.ids.reader]);
    assertError(await ic.post(base(), { application_credential: { name: unique('wider'), roles: [{ id: observer.id }] } }, { token: narrowToken }), 400);
  });

  it('an application credential token cannot be rescoped', async () => {
    const credential = await createCredential({ name: unique('no-rescope') });
    const token = (await appCredAuth({ id: credential.id, secret: credential.secret })).headers.get('x-subject-token')!;
    const res = await ic.post('/auth/tokens', { auth: { identity: { methods: ['token'], token: { id: token } }, scope: { project: { id: ic.ids.demoProject } } } });
    assert.ok(res.status === 401 || res.status === 403, `expected a refusal, got ${res.status}`);
    assertError(res, res.status);
  });
});
