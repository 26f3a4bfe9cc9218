// Harness for the Identity API integration tests: starts the real all-in-one cloud
// in-process on a random port with a temporary data dir, and drives Keystone v3 over
// real HTTP with the global fetch. One server per test file; close it in `after`.
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import type { Cloud } from '../../src/cli/cloud.js';
import type { ConfigValues } from '../../src/core/config.js';
import { ADMIN_PASSWORD, DEMO_PASSWORD, send, startTestCloud, type ApiResponse } from '../support/in-process.js';

export { ADMIN_PASSWORD, DEMO_PASSWORD, sleep, unique, type ApiResponse } from '../support/in-process.js';

export interface CallOptions {
  /** X-Auth-Token. */
  token?: string;
  /** X-Subject-Token. */
  subject?: string;
  /** A value to send as JSON. */
  body?: unknown;
  /** A body sent exactly as given (with Content-Type: application/json unless headers say otherwise). */
  raw?: string;
  headers?: Record<string, string>;
}

export type Scope =
  | { project: { id: string } | { name: string; domain: { id: string } | { name: string } } }
  | { domain: { id: string } | { name: string } }
  | { system: { all: true } }
  | 'unscoped';

export type UserRef = { id: string } | { name: string; domain: { id: string } | { name: string } };

/** The HTTP titles Keystone puts in error bodies. */
export const TITLES: Record<number, string> = {
  400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 405: 'Method Not Allowed', 409: 'Conflict', 413: 'Request Entity Too Large', 415: 'Unsupported Media Type',
};

export class IdentityCloud {
  private adminTokenCache?: string;
  ids: { adminUser: string; demoUser: string; adminProject: string; demoProject: string; admin: string; member: string; reader: string } = {} as any;

  constructor(readonly cloud: Cloud, readonly dataDir: string) {}

  /** http://127.0.0.1:PORT/identity */
  get root(): string {
    return `${this.cloud.url}/identity`;
  }

  /** An absolute URL for a path under /identity/v3. */
  v3(path: string): string {
    return `${this.root}/v3${path}`;
  }

  /** Any request; `path` is under /identity/v3 unless it is an absolute URL. */
  async call<T = any>(method: string, path: string, options: CallOptions = {}): Promise<ApiResponse<T>> {
    const headers: Record<string, string> = { Accept: 'application/json', ...options.headers };
    if (options.token !== undefined) headers['X-Auth-Token'] = options.token;
    if (options.subject !== undefined) headers['X-Subject-Token'] = options.subject;
    let body: string | undefined;
    if (options.raw !== undefined) body = options.raw;
    else if (options.body !== undefined) body = JSON.stringify(options.body);
    if (body !== undefined && !Object.keys(headers).some((h) => h.toLowerCase() === 'content-type')) headers['Content-Type'] = 'application/json';
    return send<T>(/^https?:/.test(path) ? path : this.v3(path), method, headers, body);
  }

  get = (path: string, options?: CallOptions) => this.call('GET', path, options);
  head = (path: string, options?: CallOptions) => this.call('HEAD', path, options);
  post = (path: string, body: unknown, options?: CallOptions) => this.call('POST', path, { ...options, body });
  put = (path: string, body?: unknown, options?: CallOptions) => this.call('PUT', path, { ...options, body });
  patch = (path: string, body: unknown, options?: CallOptions) => this.call('PATCH', path, { ...options, body });
  delete = (path: string, options?: CallOptions) => this.call('DELETE', path, options);

  /** POST /v3/auth/tokens with the password method. */
  passwordAuth(user: UserRef, password: string, scope?: Scope, query = ''): Promise<ApiResponse> {
    const auth: Record<string, unknown> = { identity: { methods: ['password'], password: { user: { ...user, password } } } };
    if (scope !== undefined) auth.scope = scope;
    return this.post(`/auth/tokens${query}`, { auth });
  }

  /** A token (X-Subject-Token) for the user; fails the test unless the server answers 201. */
  async token(user: UserRef, password: string, scope?: Scope): Promise<string> {
    const res = await this.passwordAuth(user, password, scope);
    assert.equal(res.status, 201, `password authentication failed: ${res.text}`);
    const token = res.headers.get('x-subject-token');
    assert.ok(token, 'X-Subject-Token header missing');
    return token;
  }

  /** A project-scoped token for the bootstrap admin (on project admin), issued once per server. */
  async adminToken(): Promise<string> {
    this.adminTokenCache ??= await this.token({ name: 'admin', domain: { id: 'default' } }, ADMIN_PASSWORD, { project: { name: 'admin', domain: { id: 'default' } } });
    return this.adminTokenCache;
  }

  /** Drops the cached admin token (after a change that invalidates it, e.g. a key purge). */
  forgetAdminToken(): void {
    this.adminTokenCache = undefined;
  }

  async demoToken(): Promise<string> {
    return this.token({ name: 'demo', domain: { name: 'Default' } }, DEMO_PASSWORD, { project: { name: 'demo', domain: { id: 'default' } } });
  }

  /** Issues a request as the admin and asserts its status; returns the body. */
  async admin(method: string, path: string, body?: unknown, expected?: number): Promise<any> {
    const res = await this.call(method, path, { token: await this.adminToken(), body });
    const wanted = expected ?? (method === 'POST' ? 201 : method === 'DELETE' ? 204 : 200);
    assert.equal(res.status, wanted, `${method} ${path} answered ${res.status}: ${res.text}`);
    return res.body;
  }

  /** Creates a user in the default domain (unless given) with a password. */
  async createUser(name: string, password: string, extra: Record<string, unknown> = {}): Promise<any> {
    return (await this.admin('POST', '/users', { user: { name, password, domain_id: 'default', ...extra } })).user;
  }

  async createProject(name: string, extra: Record<string, unknown> = {}): Promise<any> {
    return (await this.admin('POST', '/projects', { project: { name, domain_id: 'default', ...extra } })).project;
  }

  /** Grants a role (by id) to a user on a project. */
  async grantProject(projectId: string, userId: string, roleId: string): Promise<void> {
    await this.admin('PUT', `/projects/${projectId}/users/${userId}/roles/${roleId}`, undefined, 204);
  }

  async close(): Promise<void> {
    await this.cloud.close();
    rmSync(this.dataDir, { recursive: true, force: true });
  }
}

/** Starts a cloud with fast bcrypt and the given extra options; looks up the bootstrap ids. */
export function startIdentityCloud(options: ConfigValues = {}): Promise<IdentityCloud> {
  return startTestCloud('identity', options, async (cloud, dataDir) => {
    const ic = new IdentityCloud(cloud, dataDir);
    const svc = cloud.identity.identity;
    const adminUser = await svc.findUserByName('admin', 'default');
    const demoUser = await svc.findUserByName('demo', 'default');
    ic.ids = {
      adminUser: adminUser.id, demoUser: demoUser.id,
      adminProject: (await svc.findProjectByName('admin', 'default')).id, demoProject: (await svc.findProjectByName('demo', 'default')).id,
      admin: (await svc.findRoleByName('admin')).id, member: (await svc.findRoleByName('member')).id, reader: (await svc.findRoleByName('reader')).id,
    };
    return ic;
  });
}

/**
 * Asserts a Keystone error: the status, and a body that is exactly
 * {"error": {"code": N, "title": "...", "message": "..."}} with code equal to the status.
 */
export function assertError(res: ApiResponse, status: number, message?: RegExp | string): void {
  assert.equal(res.status, status, `expected ${status}, got ${res.status}: ${res.text}`);
  assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
  assert.ok(res.body && typeof res.body === 'object', `error body is not JSON: ${res.text}`);
  assert.deepEqual(Object.keys(res.body), ['error'], res.text);
  assert.deepEqual(Object.keys(res.body.error).sort(), ['code', 'message', 'title'], res.text);
  assert.equal(res.body.error.code, status);
  assert.equal(res.body.error.title, TITLES[status] ?? res.body.error.title);
  assert.equal(typeof res.body.error.message, 'string');
  assert.ok(res.body.error.message.length > 0, 'empty error message');
  if (typeof message === 'string') assert.ok(res.body.error.message.includes(message), `message "${res.body.error.message}" does not mention "${message}"`);
  else if (message) assert.match(res.body.error.message, message);
}
