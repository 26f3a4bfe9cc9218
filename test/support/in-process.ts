// Shared by the in-process integration harnesses (test/identity, test/image): the real
// all-in-one cloud in this process on a random port with a temporary data dir and fast
// bcrypt, and one way to send a request over real HTTP and read the answer.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startCloud, type Cloud } from '../../src/cli/cloud.js';
import { Config, type ConfigValues } from '../../src/core/config.js';

export const ADMIN_PASSWORD = 'admin-Pa55word';
export const DEMO_PASSWORD = 'demo-Pa55word';

export interface ApiResponse<T = any> {
  status: number;
  headers: Headers;
  /** The parsed JSON body, or undefined when the body is empty or not JSON. */
  body: T;
  text: string;
}

/** Sends one request with the global fetch and parses a JSON answer when there is one. */
export async function send<T = any>(url: string, method: string, headers: Record<string, string>, body?: BodyInit): Promise<ApiResponse<T>> {
  const response = await fetch(url, { method, headers, body });
  const text = await response.text();
  let parsed: unknown;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    parsed = undefined;
  }
  return { status: response.status, headers: response.headers, body: parsed as T, text };
}

/**
 * Starts a cloud with the given extra options on top of quiet logs and bcrypt cost 4, then
 * lets the harness prepare its handle; a failure on the way stops the cloud and removes its data.
 */
export async function startTestCloud<T>(name: string, options: ConfigValues, prepare: (cloud: Cloud, dataDir: string) => Promise<T>): Promise<T> {
  const dataDir = mkdtempSync(join(tmpdir(), `nubo-${name}-test-`));
  const values: ConfigValues = { DEFAULT: { log_level: 'warn' }, identity: { password_hash_rounds: '4' } };
  for (const [section, opts] of Object.entries(options)) values[section] = { ...(values[section] ?? {}), ...opts };
  let cloud: Cloud | undefined;
  try {
    cloud = await startCloud({ dataDir, host: '127.0.0.1', port: 0, adminPassword: ADMIN_PASSWORD, demoPassword: DEMO_PASSWORD, config: new Config(values, {}) });
    return await prepare(cloud, dataDir);
  } catch (err) {
    await cloud?.close();
    rmSync(dataDir, { recursive: true, force: true });
    throw err;
  }
}

export interface ProjectToken { token: string; projectId: string; userId: string }

/** A project-scoped token for a user of the Default domain, by password. */
export async function projectToken(cloud: Cloud, user: string, password: string, project: string): Promise<ProjectToken> {
  const res = await send(`${cloud.url}/identity/v3/auth/tokens`, 'POST', { 'Content-Type': 'application/json' },
    JSON.stringify({ auth: { identity: { methods: ['password'], password: { user: { name: user, domain: { id: 'default' }, password } } }, scope: { project: { name: project, domain: { id: 'default' } } } } }));
  if (res.status !== 201) throw new Error(`token for ${user} on ${project}: ${res.status} ${res.text}`);
  return { token: res.headers.get('x-subject-token')!, projectId: res.body.token.project.id, userId: res.body.token.user.id };
}

/** A new user `NAME-user` with `role` on a new project `NAME-project`, and its token. */
export async function newProjectUser(cloud: Cloud, name: string, role = 'member'): Promise<ProjectToken> {
  const identity = cloud.identity.identity;
  const project = await identity.createProject({ name: `${name}-project`, domain_id: 'default' });
  const user = await identity.createUser({ name: `${name}-user`, password: 'pw-' + name, domain_id: 'default' });
  const roleRef = await identity.findRoleByName(role);
  await identity.grantRole({ actor_type: 'user', actor_id: user.id, target_type: 'project', target_id: project.id, role_id: roleRef.id, inherited: false });
  return projectToken(cloud, `${name}-user`, 'pw-' + name, `${name}-project`);
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A unique name for test fixtures. */
let counter = 0;
export function unique(prefix: string): string {
  counter++;
  return `${prefix}-${process.pid}-${counter}`;
}

export interface ServiceCallOptions {
  token?: string;
  body?: unknown;
  headers?: Record<string, string>;
}

/**
 * What a service's test harness does over real HTTP: JSON calls with a token (the admin's by
 * default; '' sends none) to paths under the service's root ('/servers' → /compute/v2.1/servers),
 * another service's path ('/image/...') or a full URL, and tokens for other users.
 */
export class ServiceClient<O extends ServiceCallOptions = ServiceCallOptions> {
  adminToken = '';
  demoToken = '';
  adminProject = '';
  demoProject = '';
  adminUser = '';
  demoUser = '';

  constructor(readonly cloud: Cloud, readonly dataDir: string, private readonly serviceRoot: string) {}

  url(path: string): string {
    if (/^https?:/.test(path)) return path;
    if (/^\/(identity|image|placement|compute|networking|volume)(\/|$)/.test(path)) return `${this.cloud.url}${path}`;
    return `${this.cloud.url}${this.serviceRoot}${path}`;
  }

  /** Headers a service adds from its own options (a microversion, say). */
  protected headersFor(_options: O): Record<string, string> {
    return {};
  }

  async call<T = any>(method: string, path: string, options: O = {} as O): Promise<ApiResponse<T>> {
    const headers: Record<string, string> = { Accept: 'application/json', ...this.headersFor(options), ...options.headers };
    headers['X-Auth-Token'] ??= options.token ?? this.adminToken;
    if (headers['X-Auth-Token'] === '') delete headers['X-Auth-Token'];
    let body: string | undefined;
    if (options.body !== undefined) {
      body = JSON.stringify(options.body);
      headers['Content-Type'] ??= 'application/json';
    }
    return send<T>(this.url(path), method, headers, body);
  }

  get = (path: string, options?: O) => this.call('GET', path, options);
  post = (path: string, body: unknown, options?: O) => this.call('POST', path, { ...options, body } as O);
  put = (path: string, body: unknown, options?: O) => this.call('PUT', path, { ...options, body } as O);
  delete = (path: string, options?: O) => this.call('DELETE', path, options);

  token = (user: string, password: string, project: string) => projectToken(this.cloud, user, password, project);
  /** A new user with `role` on a new project; returns its token, project id and user id. */
  projectUser = (name: string, role = 'member'): Promise<ProjectToken> => newProjectUser(this.cloud, name, role);
}
