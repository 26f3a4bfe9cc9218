import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PolicyEngine, type Credentials } from './policy.js';
import { Forbidden } from '../core/errors.js';

const member: Credentials = { user_id: 'u1', user_domain_id: 'd1', project_id: 'p1', project_domain_id: 'd1', roles: ['member', 'reader'] };
const admin: Credentials = { ...member, roles: ['admin', 'member', 'reader'] };
const noRoles: Credentials = { roles: [] };

/** Evaluates one rule string under the action name "x". */
function allows(rule: string, creds: Credentials, target: Record<string, unknown> = {}): boolean {
  return new PolicyEngine({ x: rule }).enforce('x', target, creds);
}

describe('policy rule constructs', () => {
  it('@ and the empty rule always allow; ! never does', () => {
    assert.equal(allows('@', noRoles), true);
    assert.equal(allows('', noRoles), true);
    assert.equal(allows('   ', noRoles), true);
    assert.equal(allows('!', admin), false);
  });

  it('role checks are case-insensitive and need the role', () => {
    assert.equal(allows('role:admin', admin), true);
    assert.equal(allows('role:ADMIN', admin), true);
    assert.equal(allows('role:admin', { roles: ['Admin'] }), true);
    assert.equal(allows('role:admin', member), false);
    assert.equal(allows('role:compute:admin', { roles: ['compute:admin'] }), true); // first colon splits
  });

  it('role checks substitute from the target; a missing value denies', () => {
    assert.equal(allows('role:%(role_name)s', member, { role_name: 'Member' }), true);
    assert.equal(allows('role:%(role_name)s', member, { role_name: 'admin' }), false);
    assert.equal(allows('role:%(role_name)s', member, {}), false);
  });

  it('generic checks compare a credential attribute with a target value', () => {
    assert.equal(allows('user_id:%(user_id)s', member, { user_id: 'u1' }), true);
    assert.equal(allows('user_id:%(user_id)s', member, { user_id: 'u2' }), false);
    assert.equal(allows('project_id:%(project_id)s', noRoles, { project_id: 'p1' }), false); // attribute absent
  });

  it('a generic check whose target value is missing is false', () => {
    assert.equal(allows('user_id:%(user_id)s', member, {}), false);
    assert.equal(allows('user_id:%(user_id)s', member, { user_id: null }), false);
    assert.equal(allows('user_id:%(target.user.id)s', member, { target: { user: {} } }), false);
  });

  it('target paths resolve nested objects, flat dotted keys, and a mix', () => {
    assert.equal(allows('project_id:%(target.project.id)s', member, { target: { project: { id: 'p1' } } }), true);
    assert.equal(allows('project_id:%(target.project.id)s', member, { 'target.project.id': 'p1' }), true);
    assert.equal(allows('project_id:%(target.project.id)s', member, { target: { 'project.id': 'p1' } }), true);
    assert.equal(allows('project_id:%(target.project.id)s', member, { 'target.project.id': 'p2' }), false);
  });

  it('substitution keeps surrounding text and %% is a percent sign', () => {
    assert.equal(allows('name:pre-%(x)s-%%', { roles: [], name: 'pre-7-%' }, { x: 7 }), true);
  });

  it('literal right sides: strings, quoted strings, True/False as Python prints them, numbers', () => {
    assert.equal(allows('system_scope:all', { roles: [], system_scope: 'all' }), true);
    assert.equal(allows('system_scope:all', member), false);
    assert.equal(allows("domain_id:'d1'", { roles: [], domain_id: 'd1' }), true);
    assert.equal(allows('is_admin_project:True', { roles: [], is_admin_project: true }), true);
    assert.equal(allows('is_admin_project:True', { roles: [], is_admin_project: false }), false);
    assert.equal(allows('is_admin_project:False', { roles: [], is_admin_project: false }), true);
    assert.equal(allows('level:3', { roles: [], level: 3 }), true);
    assert.equal(allows('level:3', { roles: [], level: 4 }), false);
  });

  it('is_admin:True tests the context admin flag', () => {
    assert.equal(allows('is_admin:True', { roles: [], is_admin: true }), true);
    assert.equal(allows('is_admin:True', { roles: ['admin'] }), false);
  });

  it('a literal left side compares with the target value', () => {
    assert.equal(allows("'member':%(role.name)s", noRoles, { role: { name: 'member' } }), true);
    assert.equal(allows('"member":%(role.name)s', noRoles, { role: { name: 'admin' } }), false);
    assert.equal(allows('True:%(user.enabled)s', noRoles, { user: { enabled: true } }), true);
    assert.equal(allows('True:%(user.enabled)s', noRoles, { user: { enabled: false } }), false);
    assert.equal(allows('5:%(count)s', noRoles, { count: 5 }), true);
  });

  it('credential attributes may be dotted paths, and lists match on any element', () => {
    const creds: Credentials = { ...member, token: { domain: { id: 'd1' } }, groups: [{ id: 'g1' }, { id: 'g2' }] };
    assert.equal(allows('token.domain.id:%(domain_id)s', creds, { domain_id: 'd1' }), true);
    assert.equal(allows('token.domain.id:%(domain_id)s', creds, { domain_id: 'd2' }), false);
    assert.equal(allows('token.project.id:%(id)s', creds, { id: 'p1' }), false);
    assert.equal(allows('groups.id:g2', creds), true);
    assert.equal(allows('roles:reader', creds), true);
  });

  it('paths cannot reach inherited properties', () => {
    assert.equal(allows('constructor:%(x)s', member, { x: 'function Object() { [native code] }' }), false);
    assert.equal(allows('user_id:%(toString)s', member, {}), false);
  });

  it('not, and, or, parentheses', () => {
    assert.equal(allows('not role:admin', member), true);
    assert.equal(allows('not role:admin', admin), false);
    assert.equal(allows('role:admin and role:member', admin), true);
    assert.equal(allows('role:admin and role:member', member), false);
    assert.equal(allows('role:admin or role:member', member), true);
    assert.equal(allows('role:admin or role:nobody', member), false);
    assert.equal(allows('(role:admin or role:member) and user_id:%(user_id)s', member, { user_id: 'u1' }), true);
    assert.equal(allows('((role:admin))', admin), true);
    assert.equal(allows('not not role:member', member), true);
    assert.equal(allows('role:member AND NOT role:admin', member), true); // keywords are case-insensitive
  });
});

describe('policy operator precedence (not > and > or)', () => {
  const a: Credentials = { roles: ['a'] };
  const b: Credentials = { roles: ['b'] };
  const c: Credentials = { roles: ['c'] };

  it('and binds tighter than or', () => {
    // a or (b and c)
    assert.equal(allows('role:a or role:b and role:c', a), true);
    assert.equal(allows('role:a or role:b and role:c', b), false);
    // (a and b) or c
    assert.equal(allows('role:a and role:b or role:c', c), true);
    assert.equal(allows('role:a and role:b or role:c', a), false);
  });

  it('not binds tighter than and / or', () => {
    // (not a) and b
    assert.equal(allows('not role:a and role:b', b), true);
    assert.equal(allows('not role:a and role:b', noRoles), false);
    // (not a) or b
    assert.equal(allows('not role:a or role:b', a), false);
    assert.equal(allows('not (role:a or role:b)', noRoles), true);
    assert.equal(allows('not (role:a or role:b)', b), false);
  });
});

describe('policy rule references', () => {
  it('rule: evaluates another named rule', () => {
    const engine = new PolicyEngine({ admin_required: 'role:admin', owner: 'user_id:%(user_id)s', x: 'rule:admin_required or rule:owner' });
    assert.equal(engine.enforce('x', { user_id: 'u9' }, admin), true);
    assert.equal(engine.enforce('x', { user_id: 'u1' }, member), true);
    assert.equal(engine.enforce('x', { user_id: 'u9' }, member), false);
  });

  it('a reference to an unknown rule denies', () => {
    assert.equal(allows('rule:nowhere', admin), false);
    assert.equal(allows('not rule:nowhere', admin), true);
  });

  it('a rule that refers to itself, directly or in a cycle, denies instead of looping', () => {
    const engine = new PolicyEngine({ self: 'rule:self', a: 'rule:b', b: 'rule:a', c: 'role:admin and rule:c' });
    assert.equal(engine.enforce('self', {}, admin), false);
    assert.equal(engine.enforce('a', {}, admin), false);
    assert.equal(engine.enforce('c', {}, admin), false);
  });

  it('using the same rule twice in one expression is not a cycle', () => {
    const engine = new PolicyEngine({ r: 'role:member', x: 'rule:r and (rule:r or !)' });
    assert.equal(engine.enforce('x', {}, member), true);
  });

  it('an action with no rule uses the default rule, else denies', () => {
    assert.equal(new PolicyEngine({}).enforce('identity:anything', {}, admin), false);
    const engine = new PolicyEngine({ default: 'role:admin' });
    assert.equal(engine.enforce('identity:anything', {}, admin), true);
    assert.equal(engine.enforce('identity:anything', {}, member), false);
  });

  it('register adds defaults; the same rule again is fine, another rule under a known name is a clash', () => {
    const engine = new PolicyEngine({ x: 'role:admin' });
    engine.register({ x: 'role:admin', y: '@' });
    assert.equal(engine.enforce('x', {}, member), false);
    assert.equal(engine.enforce('y', {}, noRoles), true);
    assert.throws(() => engine.register({ x: 'role:member' }), /Policy rule x is registered twice: "role:admin" and "role:member"/);
    assert.equal(engine.enforce('x', {}, member), false);
  });
});

describe('malformed policy rules', () => {
  const bad: Record<string, RegExp> = {
    'role:admin or': /unexpected end of rule/,
    'and role:admin': /unexpected "and"/,
    '(role:admin': /expected "\)"/,
    'role:admin)': /unexpected "\)"/,
    'role:admin role:member': /unexpected "role:member"/,
    admin: /not a check/,
    'role:': /not a check/,
    ':x': /not a check/,
    '()': /unexpected "\)"/,
    'user_id:%(user_id)d': /bad substitution/,
    'user_id:100%': /bad substitution/,
    'http://example.com/check': /not supported/,
  };
  for (const [rule, reason] of Object.entries(bad)) {
    it(`rejects ${JSON.stringify(rule)} naming the rule`, () => {
      assert.throws(() => new PolicyEngine({ 'identity:broken': rule }), (err: Error) => {
        assert.match(err.message, /Invalid policy rule "identity:broken"/);
        assert.match(err.message, reason);
        return true;
      });
    });
  }

  it('a rejected register leaves the engine unchanged', () => {
    const engine = new PolicyEngine({ x: 'role:admin' });
    assert.throws(() => engine.register({ z: '@', y: 'role:' }), /"y"/);
    assert.equal(engine.enforce('z', {}, member), false);
    assert.equal(engine.enforce('x', {}, member), false);
  });
});

describe('policy overrides from a file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'nubo-policy-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const file = (name: string, text: string) => {
    const path = join(dir, name);
    writeFileSync(path, text);
    return path;
  };

  it('loads YAML overrides that replace defaults and keep the rest', () => {
    const engine = new PolicyEngine({ 'identity:get_user': 'role:admin', 'identity:list_users': 'role:admin' });
    engine.loadOverrides(file('policy.yaml', '# operator overrides\n"identity:get_user": "role:reader"\n"identity:new_rule": "!"\n'));
    assert.equal(engine.enforce('identity:get_user', {}, member), true);
    assert.equal(engine.enforce('identity:list_users', {}, member), false);
    assert.equal(engine.enforce('identity:new_rule', {}, admin), false);
  });

  it('loads JSON overrides', () => {
    const engine = new PolicyEngine({ 'identity:get_user': 'role:admin' });
    engine.loadOverrides(file('policy.json', JSON.stringify({ 'identity:get_user': 'user_id:%(target.user.id)s', default: '@' })));
    assert.equal(engine.enforce('identity:get_user', { target: { user: { id: 'u1' } } }, member), true);
    assert.equal(engine.enforce('identity:get_user', { target: { user: { id: 'u2' } } }, admin), false);
    assert.equal(engine.enforce('unregistered', {}, noRoles), true);
  });

  it('overrides win over defaults registered later', () => {
    const engine = new PolicyEngine();
    engine.loadOverrides(file('later.yaml', '"compute:start": "role:member"\n'));
    engine.register({ 'compute:start': 'role:admin' });
    assert.equal(engine.enforce('compute:start', {}, member), true);
  });

  it('an empty policy file changes nothing', () => {
    const engine = new PolicyEngine({ x: 'role:admin' });
    engine.loadOverrides(file('empty.yaml', ''));
    assert.equal(engine.enforce('x', {}, admin), true);
  });

  it('rejects a malformed rule in the file, naming rule and file', () => {
    const path = file('bad.yaml', '"identity:get_user": "role:reader and"\n');
    const engine = new PolicyEngine({ 'identity:get_user': 'role:admin' });
    assert.throws(() => engine.loadOverrides(path), (err: Error) => err.message.includes('"identity:get_user"') && err.message.includes(path));
    assert.equal(engine.enforce('identity:get_user', {}, member), false); // defaults still in force
  });

  it('rejects non-string rules, non-mapping files, unparseable and missing files', () => {
    const engine = new PolicyEngine();
    assert.throws(() => engine.loadOverrides(file('num.yaml', '"x": 3\n')), /Invalid policy rule "x".*expected a rule string/);
    assert.throws(() => engine.loadOverrides(file('list.yaml', '- "role:admin"\n')), /must map rule names/);
    assert.throws(() => engine.loadOverrides(file('broken.json', '{"x": ')), /Cannot read policy file/);
    assert.throws(() => engine.loadOverrides(join(dir, 'absent.yaml')), /Cannot read policy file/);
  });
});

describe('authorize', () => {
  const engine = new PolicyEngine({ 'identity:delete_user': 'role:admin' });

  it('returns when allowed', () => {
    assert.doesNotThrow(() => engine.authorize('identity:delete_user', {}, admin));
  });

  it("throws Forbidden (403) with Keystone's message when denied", () => {
    assert.throws(() => engine.authorize('identity:delete_user', {}, member), (err: unknown) => {
      assert.ok(err instanceof Forbidden);
      assert.equal(err.status, 403);
      assert.equal(err.message, 'You are not authorized to perform the requested action: identity:delete_user.');
      return true;
    });
  });
});

describe('Keystone-style rules', () => {
  const engine = new PolicyEngine({
    'identity:get_user':
      '(role:reader and system_scope:all) or (role:reader and token.domain.id:%(target.user.domain_id)s) or user_id:%(target.user.id)s',
    'identity:get_project':
      '(role:reader and system_scope:all) or (role:reader and domain_id:%(target.project.domain_id)s) or project_id:%(target.project.id)s',
    'identity:update_project': '(role:admin and system_scope:all) or (role:admin and domain_id:%(target.project.domain_id)s)',
  });
  const systemReader: Credentials = { user_id: 'sys', user_domain_id: 'default', system_scope: 'all', roles: ['reader'] };
  const domainReader: Credentials = { user_id: 'dr', user_domain_id: 'd1', domain_id: 'd1', roles: ['reader'], token: { domain: { id: 'd1' } } };
  const projectMember: Credentials = { user_id: 'pm', user_domain_id: 'd1', project_id: 'p1', project_domain_id: 'd1', roles: ['member', 'reader'] };
  const userInD1 = { target: { user: { id: 'alice', domain_id: 'd1' } } };
  const userInD2 = { 'target.user.id': 'bob', 'target.user.domain_id': 'd2' }; // flattened, as Keystone passes it

  it('identity:get_user', () => {
    assert.equal(engine.enforce('identity:get_user', userInD1, systemReader), true);
    assert.equal(engine.enforce('identity:get_user', userInD2, systemReader), true);
    assert.equal(engine.enforce('identity:get_user', userInD1, domainReader), true);
    assert.equal(engine.enforce('identity:get_user', userInD2, domainReader), false);
    assert.equal(engine.enforce('identity:get_user', userInD1, projectMember), false); // project-scoped: no token.domain
    assert.equal(engine.enforce('identity:get_user', { target: { user: { id: 'pm', domain_id: 'd1' } } }, projectMember), true); // self
    assert.equal(engine.enforce('identity:get_user', userInD1, { ...systemReader, roles: [] }), false);
  });

  it('identity:get_project and identity:update_project', () => {
    const p1 = { target: { project: { id: 'p1', domain_id: 'd1' } } };
    const p2 = { target: { project: { id: 'p2', domain_id: 'd2' } } };
    assert.equal(engine.enforce('identity:get_project', p1, projectMember), true);
    assert.equal(engine.enforce('identity:get_project', p2, projectMember), false);
    assert.equal(engine.enforce('identity:get_project', p1, domainReader), true);
    assert.equal(engine.enforce('identity:get_project', p2, domainReader), false);
    assert.equal(engine.enforce('identity:get_project', p2, systemReader), true);
    assert.equal(engine.enforce('identity:update_project', p1, domainReader), false);
    assert.equal(engine.enforce('identity:update_project', p1, { ...domainReader, roles: ['admin', 'member', 'reader'] }), true);
    assert.equal(engine.enforce('identity:update_project', p2, { ...systemReader, roles: ['admin', 'reader'] }), true);
  });
});
