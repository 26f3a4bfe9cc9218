// Compatibility of the identity service (Keystone v3) with Debian's real `openstack` CLI:
// one `nubo up` cloud, driven command by command as an operator would. The tests run in
// order and build on each other (a project made early is used for role assignments later).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { openstack, openstackCliSkipReason, openstackFails, openstackJson, openstackOk, startCloud, type Cloud, type Env } from '../support/cloud.js';

const skip = openstackCliSkipReason();

describe('openstack CLI: identity', { skip }, () => {
  let cloud: Cloud;
  let admin: Env;

  before(async () => {
    if (skip) return;
    cloud = await startCloud();
    admin = cloud.adminEnv;
  });
  after(async () => {
    await cloud?.stop();
  });

  // Connection settings shared by every persona: where Keystone is, which region and interface.
  const base = (): Env => {
    const env: Env = {};
    for (const key of ['OS_AUTH_URL', 'OS_IDENTITY_API_VERSION', 'OS_REGION_NAME', 'OS_INTERFACE']) {
      if (admin[key] !== undefined) env[key] = admin[key];
    }
    return env;
  };
  const passwordEnv = (username: string, password: string, project: string): Env => ({
    ...base(),
    OS_USERNAME: username,
    OS_PASSWORD: password,
    OS_PROJECT_NAME: project,
    OS_USER_DOMAIN_NAME: 'Default',
    OS_PROJECT_DOMAIN_NAME: 'Default',
  });
  // Authenticates with an existing token, rescoped to the admin project (POST /v3/auth/tokens, method token).
  const tokenEnv = (token: string): Env => ({
    ...base(),
    OS_AUTH_TYPE: 'token',
    OS_TOKEN: token,
    OS_PROJECT_NAME: 'admin',
    OS_PROJECT_DOMAIN_NAME: 'Default',
  });
  const appCredEnv = (id: string, secret: string): Env => ({
    ...base(),
    OS_AUTH_TYPE: 'v3applicationcredential',
    OS_APPLICATION_CREDENTIAL_ID: id,
    OS_APPLICATION_CREDENTIAL_SECRET: secret,
  });

  const json = <T = any>(env: Env, args: string[]) => openstackJson<T>(env, args);
  const ok = openstackOk;
  const fails = openstackFails;
  const names = (rows: Array<{ Name: string }>) => rows.map((row) => row.Name);
  const NOT_AUTHENTICATED = /HTTP 401|The request you have made requires authentication/;
  const FORBIDDEN = /HTTP 403|You are not authorized/;

  // State built up by the tests, checked again after the restart.
  const ids: Record<string, string> = {};
  let cliUserPassword = 'cli-user-pass-1';
  let appCred: { id: string; secret: string } | undefined;
  let tokenBeforeRestart = '';

  it('writes openrc files for the bootstrap admin and demo users', () => {
    assert.match(admin.OS_AUTH_URL, new RegExp(`^http://127\\.0\\.0\\.1:${cloud.port}/identity/v3/?$`));
    assert.equal(admin.OS_IDENTITY_API_VERSION, '3');
    assert.equal(admin.OS_USERNAME, 'admin');
    assert.equal(admin.OS_PASSWORD, cloud.serverEnv.NUBO_ADMIN_PASSWORD);
    assert.equal(admin.OS_PROJECT_NAME, 'admin');
    assert.equal(admin.OS_USER_DOMAIN_NAME, 'Default');
    assert.equal(admin.OS_PROJECT_DOMAIN_NAME, 'Default');
    assert.equal(admin.OS_REGION_NAME, 'RegionOne');
    assert.equal(admin.OS_INTERFACE, 'public');
    const demo = cloud.demoEnv;
    assert.equal(demo.OS_AUTH_URL, admin.OS_AUTH_URL);
    assert.equal(demo.OS_USERNAME, 'demo');
    assert.equal(demo.OS_PASSWORD, cloud.serverEnv.NUBO_DEMO_PASSWORD);
    assert.equal(demo.OS_PROJECT_NAME, 'demo');
  });

  it('token issue', async () => {
    const token = await json(admin, ['token', 'issue']);
    assert.equal(typeof token.id, 'string');
    assert.ok(token.id.length > 20, `token id looks wrong: ${token.id}`);
    assert.ok(Date.parse(token.expires) > Date.now(), `token expires in the past: ${token.expires}`);
    const project = await json(admin, ['project', 'show', 'admin']);
    const user = await json(admin, ['user', 'show', 'admin']);
    assert.equal(token.project_id, project.id);
    assert.equal(token.user_id, user.id);
    ids.adminProject = project.id;
    ids.adminUser = user.id;
  });

  it('catalog list shows the identity service with public, internal and admin endpoints', async () => {
    const catalog = await json<Array<{ Name: string; Type: string; Endpoints: any[] }>>(admin, ['catalog', 'list']);
    const identity = catalog.find((service) => service.Type === 'identity');
    assert.ok(identity, `no identity service in ${JSON.stringify(catalog)}`);
    assert.equal(identity.Name, 'keystone');
    assert.deepEqual(identity.Endpoints.map((e) => e.interface).sort(), ['admin', 'internal', 'public']);
    for (const endpoint of identity.Endpoints) {
      assert.equal(endpoint.region_id ?? endpoint.region, 'RegionOne');
      assert.ok(endpoint.url.startsWith(`http://127.0.0.1:${cloud.port}/identity`), endpoint.url);
    }
  });

  it('endpoint list', async () => {
    const rows = await json<any[]>(admin, ['endpoint', 'list']);
    const identity = rows.filter((row) => row['Service Type'] === 'identity');
    assert.deepEqual(identity.map((row) => row.Interface).sort(), ['admin', 'internal', 'public']);
    for (const row of identity) {
      assert.equal(row.Region, 'RegionOne');
      assert.equal(row['Service Name'], 'keystone');
      assert.equal(row.Enabled, true);
    }
    const publicOnly = await json<any[]>(admin, ['endpoint', 'list', '--service', 'identity', '--interface', 'public']);
    assert.equal(publicOnly.length, 1);
    assert.equal(publicOnly[0].URL, identity.find((row) => row.Interface === 'public').URL);
  });

  it('domain create, list, show, set, delete', async () => {
    const created = await json(admin, ['domain', 'create', '--description', 'first', 'cli-dom']);
    assert.equal(created.name, 'cli-dom');
    assert.equal(created.description, 'first');
    assert.equal(created.enabled, true);
    const listed = await json<any[]>(admin, ['domain', 'list']);
    assert.ok(listed.some((row) => row.ID === 'default' && row.Name === 'Default'), JSON.stringify(listed));
    assert.ok(listed.some((row) => row.ID === created.id && row.Name === 'cli-dom' && row.Enabled === true));

    await ok(admin, ['domain', 'set', '--description', 'second', 'cli-dom']);
    assert.equal((await json(admin, ['domain', 'show', 'cli-dom'])).description, 'second');
    await ok(admin, ['domain', 'set', '--disable', 'cli-dom']);
    assert.equal((await json(admin, ['domain', 'show', 'cli-dom'])).enabled, false);
    await ok(admin, ['domain', 'set', '--enable', 'cli-dom']);
    assert.equal((await json(admin, ['domain', 'show', created.id])).enabled, true);

    // Keystone refuses to delete an enabled domain.
    await fails(admin, ['domain', 'delete', 'cli-dom'], /disable it first|HTTP 403/);
    await ok(admin, ['domain', 'set', '--disable', 'cli-dom']);
    await ok(admin, ['domain', 'delete', 'cli-dom']);
    await fails(admin, ['domain', 'show', 'cli-dom'], /No domain with a name or ID of 'cli-dom' exists/);
    assert.ok(!names(await json(admin, ['domain', 'list'])).includes('cli-dom'));

    // Kept for the rest of the suite (projects and group role assignments live in it).
    ids.workDomain = (await json(admin, ['domain', 'create', '--description', 'kept', 'cli-work'])).id;
  });

  it('project create, list, show, set, delete', async () => {
    const created = await json(admin, [
      'project', 'create', '--domain', 'cli-work', '--description', 'a project', '--tag', 'alpha', '--tag', 'beta', 'cli-proj',
    ]);
    assert.equal(created.name, 'cli-proj');
    assert.equal(created.domain_id, ids.workDomain);
    assert.equal(created.description, 'a project');
    assert.equal(created.enabled, true);
    assert.deepEqual([...created.tags].sort(), ['alpha', 'beta']);

    assert.deepEqual(await json(admin, ['project', 'list', '--domain', 'cli-work']), [{ ID: created.id, Name: 'cli-proj' }]);
    assert.ok(names(await json(admin, ['project', 'list'])).includes('cli-proj'));
    assert.deepEqual(names(await json(admin, ['project', 'list', '--tags', 'alpha'])), ['cli-proj']);
    const shown = await json(admin, ['project', 'show', '--domain', 'cli-work', 'cli-proj']);
    assert.equal(shown.id, created.id);
    assert.equal(shown.description, 'a project');

    await ok(admin, ['project', 'set', '--domain', 'cli-work', '--name', 'cli-proj-2', '--description', 'renamed', '--disable', 'cli-proj']);
    const changed = await json(admin, ['project', 'show', created.id]);
    assert.equal(changed.name, 'cli-proj-2');
    assert.equal(changed.description, 'renamed');
    assert.equal(changed.enabled, false);

    await ok(admin, ['project', 'delete', '--domain', 'cli-work', 'cli-proj-2']);
    await fails(admin, ['project', 'show', created.id], /No project with a name or ID/);
    assert.deepEqual(await json(admin, ['project', 'list', '--domain', 'cli-work']), []);

    // Kept: the project users get roles on and application credentials for.
    ids.appsProject = (await json(admin, ['project', 'create', '--domain', 'default', '--description', 'kept', 'cli-apps'])).id;
  });

  it('user create, list, show, set, delete', async () => {
    const created = await json(admin, [
      'user', 'create', '--domain', 'default', '--password', cliUserPassword, '--project', 'cli-apps',
      '--email', 'cli-user@example.com', 'cli-user',
    ]);
    assert.equal(created.name, 'cli-user');
    assert.equal(created.domain_id, 'default');
    assert.equal(created.default_project_id, ids.appsProject);
    assert.equal(created.email, 'cli-user@example.com');
    assert.equal(created.enabled, true);
    assert.equal(created.password, undefined, 'the password must not be echoed back');
    ids.cliUser = created.id;

    const listed = await json<any[]>(admin, ['user', 'list']);
    assert.deepEqual(names(listed).filter((n) => ['admin', 'demo', 'cli-user'].includes(n)).sort(), ['admin', 'cli-user', 'demo']);
    const shown = await json(admin, ['user', 'show', 'cli-user']);
    assert.equal(shown.id, created.id);
    assert.equal(shown.email, 'cli-user@example.com');

    // A role on its project lets the user get a project-scoped token with its password.
    await ok(admin, ['role', 'add', '--project', 'cli-apps', '--user', 'cli-user', 'member']);
    const token = await json(passwordEnv('cli-user', cliUserPassword, 'cli-apps'), ['token', 'issue']);
    assert.equal(token.user_id, created.id);
    assert.equal(token.project_id, ids.appsProject);

    await ok(admin, ['user', 'set', '--password', 'cli-user-pass-2', 'cli-user']);
    await fails(passwordEnv('cli-user', cliUserPassword, 'cli-apps'), ['token', 'issue'], NOT_AUTHENTICATED);
    cliUserPassword = 'cli-user-pass-2';
    await json(passwordEnv('cli-user', cliUserPassword, 'cli-apps'), ['token', 'issue']);

    await ok(admin, ['user', 'set', '--disable', 'cli-user']);
    assert.equal((await json(admin, ['user', 'show', 'cli-user'])).enabled, false);
    await fails(passwordEnv('cli-user', cliUserPassword, 'cli-apps'), ['token', 'issue'], NOT_AUTHENTICATED);
    await ok(admin, ['user', 'set', '--enable', 'cli-user']);
    assert.equal((await json(admin, ['user', 'show', 'cli-user'])).enabled, true);
    await json(passwordEnv('cli-user', cliUserPassword, 'cli-apps'), ['token', 'issue']);

    const temporary = await json(admin, ['user', 'create', '--domain', 'default', '--password', 'x-pass', 'cli-tmp-user']);
    await ok(admin, ['user', 'delete', 'cli-tmp-user']);
    await fails(admin, ['user', 'show', temporary.id], /No user with a name or ID/);
    assert.ok(!names(await json(admin, ['user', 'list'])).includes('cli-tmp-user'));
  });

  it('a user changes its own password (user password set)', async () => {
    const user = passwordEnv('cli-user', cliUserPassword, 'cli-apps');
    await ok(user, ['user', 'password', 'set', '--original-password', cliUserPassword, '--password', 'cli-user-pass-3']);
    cliUserPassword = 'cli-user-pass-3';
    await json(passwordEnv('cli-user', cliUserPassword, 'cli-apps'), ['token', 'issue']);
  });

  it('group create, add user, contains user, remove user', async () => {
    const created = await json(admin, ['group', 'create', '--domain', 'default', '--description', 'a group', 'cli-group']);
    assert.equal(created.name, 'cli-group');
    assert.equal(created.domain_id, 'default');
    assert.equal(created.description, 'a group');
    ids.group = created.id;
    assert.ok(names(await json(admin, ['group', 'list'])).includes('cli-group'));

    await ok(admin, ['group', 'add', 'user', 'cli-group', 'cli-user']);
    // `group contains user` exits 0 either way: the answer is the line it prints.
    assert.match(await ok(admin, ['group', 'contains', 'user', 'cli-group', 'cli-user']), /cli-user in group cli-group/);
    assert.deepEqual(names(await json(admin, ['user', 'list', '--group', 'cli-group'])), ['cli-user']);

    await ok(admin, ['group', 'remove', 'user', 'cli-group', 'cli-user']);
    const check = await openstack(admin, ['group', 'contains', 'user', 'cli-group', 'cli-user']);
    assert.match(check.stderr, /cli-user not in group cli-group/);
    assert.deepEqual(await json(admin, ['user', 'list', '--group', 'cli-group']), []);

    // Kept as a member for the persistence check.
    await ok(admin, ['group', 'add', 'user', 'cli-group', 'cli-user']);
  });

  it('role create, list, show, set, delete', async () => {
    const created = await json(admin, ['role', 'create', '--description', 'temporary', 'cli-role']);
    assert.equal(created.name, 'cli-role');
    assert.equal(created.description, 'temporary');
    const listed = names(await json(admin, ['role', 'list']));
    for (const name of ['admin', 'member', 'reader', 'cli-role']) assert.ok(listed.includes(name), `${name} missing from ${listed}`);
    assert.equal((await json(admin, ['role', 'show', 'cli-role'])).id, created.id);

    await ok(admin, ['role', 'set', '--name', 'cli-role-2', '--description', 'renamed', 'cli-role']);
    const changed = await json(admin, ['role', 'show', created.id]);
    assert.equal(changed.name, 'cli-role-2');
    assert.equal(changed.description, 'renamed');

    await ok(admin, ['role', 'delete', 'cli-role-2']);
    await fails(admin, ['role', 'show', created.id], /No role with a name or ID/);

    ids.observerRole = (await json(admin, ['role', 'create', 'cli-observer'])).id;
  });

  it('role add to a user on a project and to a group on a domain; role assignment list --names; role remove', async () => {
    await ok(admin, ['role', 'add', '--project', 'cli-apps', '--user', 'cli-user', 'cli-observer']);
    await ok(admin, ['role', 'add', '--domain', 'cli-work', '--group', 'cli-group', 'cli-observer']);

    // With --names the CLI prints name@domain for users, groups and projects, and the bare domain name.
    const rows = await json<any[]>(admin, ['role', 'assignment', 'list', '--names']);
    const find = (want: Record<string, string>) =>
      rows.find((row) => Object.entries(want).every(([key, value]) => row[key] === value));
    assert.ok(find({ Role: 'admin', User: 'admin@Default', Project: 'admin@Default' }), JSON.stringify(rows, null, 1));
    assert.ok(find({ Role: 'member', User: 'demo@Default', Project: 'demo@Default' }), JSON.stringify(rows, null, 1));
    assert.ok(find({ Role: 'member', User: 'cli-user@Default', Project: 'cli-apps@Default', Group: '', Domain: '' }));
    assert.ok(find({ Role: 'cli-observer', User: 'cli-user@Default', Project: 'cli-apps@Default' }), JSON.stringify(rows, null, 1));
    assert.ok(find({ Role: 'cli-observer', Group: 'cli-group@Default', Domain: 'cli-work', User: '', Project: '' }), JSON.stringify(rows, null, 1));

    // Filtered by user and project, and without names (ids).
    const forUser = await json<any[]>(admin, ['role', 'assignment', 'list', '--user', 'cli-user', '--project', 'cli-apps', '--names']);
    assert.deepEqual(forUser.map((row) => row.Role).sort(), ['cli-observer', 'member']);
    const byId = await json<any[]>(admin, ['role', 'assignment', 'list', '--group', 'cli-group']);
    assert.deepEqual(byId.map((row) => [row.Role, row.Group, row.Domain]), [[ids.observerRole, ids.group, ids.workDomain]]);

    await ok(admin, ['role', 'remove', '--domain', 'cli-work', '--group', 'cli-group', 'cli-observer']);
    assert.deepEqual(await json(admin, ['role', 'assignment', 'list', '--group', 'cli-group']), []);
    const remaining = await json<any[]>(admin, ['role', 'assignment', 'list', '--names']);
    assert.ok(!remaining.some((row) => row.Group === 'cli-group@Default'));
    assert.ok(remaining.some((row) => row.Role === 'cli-observer' && row.User === 'cli-user@Default'));
  });

  it('application credential create, authenticate with it, list, show, delete', async () => {
    const user = passwordEnv('cli-user', cliUserPassword, 'cli-apps');
    const fixed = await json(user, ['application', 'credential', 'create', '--secret', 'app-secret-1', '--description', 'ci', 'cli-appcred']);
    assert.equal(fixed.name, 'cli-appcred');
    assert.equal(fixed.secret, 'app-secret-1');
    assert.equal(fixed.project_id, ids.appsProject);
    assert.equal(fixed.description, 'ci');
    // The CLI joins the role names with spaces; by default the credential gets all the roles of the
    // token, implied ones included (member implies reader after bootstrap, as in Keystone).
    const roles = String(fixed.roles).split(' ');
    for (const role of ['cli-observer', 'member']) assert.ok(roles.includes(role), `${role} missing from roles "${fixed.roles}"`);
    const generated = await json(user, ['application', 'credential', 'create', 'cli-appcred-gen']);
    assert.equal(typeof generated.secret, 'string');
    assert.ok(generated.secret.length >= 16, `generated secret too short: ${generated.secret}`);

    // Application credential auth: no username, password or project in the environment.
    const token = await json(appCredEnv(fixed.id, fixed.secret), ['token', 'issue']);
    assert.equal(token.user_id, ids.cliUser);
    assert.equal(token.project_id, ids.appsProject);
    await json(appCredEnv(generated.id, generated.secret), ['token', 'issue']);
    await fails(appCredEnv(fixed.id, 'wrong-secret'), ['token', 'issue'], NOT_AUTHENTICATED);

    const listed = await json<any[]>(user, ['application', 'credential', 'list']);
    assert.deepEqual(listed.map((row) => row.Name).sort(), ['cli-appcred', 'cli-appcred-gen']);
    const row = listed.find((r) => r.Name === 'cli-appcred');
    assert.equal(row.ID, fixed.id);
    assert.equal(row['Project ID'], ids.appsProject);
    const shown = await json(user, ['application', 'credential', 'show', 'cli-appcred']);
    assert.equal(shown.id, fixed.id);
    assert.equal(shown.secret, undefined, 'show must not reveal the secret');

    await ok(user, ['application', 'credential', 'delete', 'cli-appcred-gen']);
    assert.deepEqual((await json<any[]>(user, ['application', 'credential', 'list'])).map((r) => r.Name), ['cli-appcred']);
    await fails(appCredEnv(generated.id, generated.secret), ['token', 'issue'], NOT_AUTHENTICATED);

    appCred = { id: fixed.id, secret: fixed.secret };
  });

  it('token revoke makes the token invalid', async () => {
    const token = (await json(admin, ['token', 'issue'])).id;
    // The token works before it is revoked...
    assert.ok(names(await json(tokenEnv(token), ['project', 'list'])).includes('admin'));
    await ok(admin, ['token', 'revoke', token]);
    // ...and no longer after (Keystone answers 404 when validating it, 401 when authenticating with it).
    await fails(tokenEnv(token), ['project', 'list'], /HTTP 401|HTTP 404|requires authentication|Could not find token/);
  });

  it('a user revokes its own token', async () => {
    const user = passwordEnv('cli-user', cliUserPassword, 'cli-apps');
    const token = (await json(user, ['token', 'issue'])).id;
    await ok(user, ['token', 'revoke', token]);
    const reuse: Env = { ...tokenEnv(token), OS_PROJECT_NAME: 'cli-apps' };
    await fails(reuse, ['token', 'issue'], /HTTP 401|HTTP 404|requires authentication|Could not find token/);
  });

  it('a wrong password is refused with 401', async () => {
    await fails({ ...admin, OS_PASSWORD: 'not-the-password' }, ['token', 'issue'], NOT_AUTHENTICATED);
    await fails({ ...admin, OS_USERNAME: 'nobody-here' }, ['token', 'issue'], NOT_AUTHENTICATED);
  });

  it('the demo user (member) may not create a user: 403', async () => {
    const demo = cloud.demoEnv;
    assert.ok((await json(demo, ['token', 'issue'])).project_id, 'the demo user gets a project-scoped token');
    await fails(demo, ['user', 'create', '--password', 'x-pass', 'demo-made-user'], FORBIDDEN);
    assert.ok(!names(await json(admin, ['user', 'list'])).includes('demo-made-user'));
  });

  it('keeps everything across a restart on the same data dir', async () => {
    tokenBeforeRestart = (await json(admin, ['token', 'issue'])).id;
    await cloud.restart();
    assert.deepEqual(cloud.lastExit, { code: 0, signal: null }, `SIGTERM should stop the server cleanly; output:\n${cloud.logs()}`);
    admin = cloud.adminEnv;

    const token = await json(admin, ['token', 'issue']);
    assert.equal(token.user_id, ids.adminUser);
    assert.equal(token.project_id, ids.adminProject);
    // Tokens issued before the restart stay valid: the Fernet keys are kept in the data dir.
    assert.ok(names(await json(tokenEnv(tokenBeforeRestart), ['project', 'list'])).includes('cli-apps'));

    assert.equal((await json(admin, ['domain', 'show', 'cli-work'])).id, ids.workDomain);
    assert.equal((await json(admin, ['project', 'show', 'cli-apps'])).id, ids.appsProject);
    const user = await json(admin, ['user', 'show', 'cli-user']);
    assert.equal(user.id, ids.cliUser);
    assert.equal(user.email, 'cli-user@example.com');
    assert.equal((await json(admin, ['role', 'show', 'cli-observer'])).id, ids.observerRole);
    assert.match(await ok(admin, ['group', 'contains', 'user', 'cli-group', 'cli-user']), /cli-user in group cli-group/);
    const roles = await json<any[]>(admin, ['role', 'assignment', 'list', '--user', 'cli-user', '--project', 'cli-apps', '--names']);
    assert.deepEqual(roles.map((row) => row.Role).sort(), ['cli-observer', 'member']);
    await json(passwordEnv('cli-user', cliUserPassword, 'cli-apps'), ['token', 'issue']);
    await json(cloud.demoEnv, ['token', 'issue']);
    // Depends on the application credential test having passed.
    assert.ok(appCred, 'no application credential was created earlier');
    assert.equal((await json(appCredEnv(appCred.id, appCred.secret), ['token', 'issue'])).user_id, ids.cliUser);
  });
});
