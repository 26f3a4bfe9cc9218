// Harness for the Image API integration tests: the real all-in-one cloud in-process on a
// random port with a temporary data dir, driven over real HTTP (global fetch) at /image.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Cloud } from '../../src/cli/cloud.js';
import type { ConfigValues } from '../../src/core/config.js';
import { ADMIN_PASSWORD, DEMO_PASSWORD, newProjectUser, projectToken, send, startTestCloud, type ApiResponse } from '../support/in-process.js';

export { ADMIN_PASSWORD, DEMO_PASSWORD, sleep, unique, type ApiResponse } from '../support/in-process.js';
export const JSON_PATCH = 'application/openstack-images-v2.1-json-patch';

export interface CallOptions {
  token?: string;
  body?: unknown;
  /** Raw bytes or a string sent as given (Content-Type from headers, octet-stream for bytes). */
  data?: Uint8Array | string;
  headers?: Record<string, string>;
}

export class ImageCloud {
  adminToken = '';
  demoToken = '';
  adminProject = '';
  demoProject = '';

  constructor(readonly cloud: Cloud, readonly dataDir: string) {}

  url(path: string): string {
    return /^https?:/.test(path) ? path : `${this.cloud.url}/image${path}`;
  }

  async call<T = any>(method: string, path: string, options: CallOptions = {}): Promise<ApiResponse<T>> {
    const headers: Record<string, string> = { Accept: 'application/json', ...options.headers };
    headers['X-Auth-Token'] ??= options.token ?? this.adminToken;
    if (headers['X-Auth-Token'] === '') delete headers['X-Auth-Token'];
    let body: BodyInit | undefined;
    if (options.data !== undefined) {
      body = options.data as BodyInit;
      headers['Content-Type'] ??= 'application/octet-stream';
    } else if (options.body !== undefined) {
      body = JSON.stringify(options.body);
      headers['Content-Type'] ??= 'application/json';
    }
    return send<T>(this.url(path), method, headers, body);
  }

  get = (path: string, options?: CallOptions) => this.call('GET', path, options);
  post = (path: string, body: unknown, options?: CallOptions) => this.call('POST', path, { ...options, body });
  delete = (path: string, options?: CallOptions) => this.call('DELETE', path, options);
  patch = (path: string, ops: unknown, options?: CallOptions) =>
    this.call('PATCH', path, { ...options, body: ops, headers: { 'Content-Type': JSON_PATCH, ...options?.headers } });

  /** Creates an image (201 expected) and returns its body. */
  async create(fields: Record<string, unknown> = {}, token?: string): Promise<any> {
    const res = await this.post('/v2/images', { disk_format: 'raw', container_format: 'bare', ...fields }, { token });
    assert.equal(res.status, 201, res.text);
    return res.body;
  }

  async upload(id: string, data: Uint8Array, token?: string): Promise<ApiResponse> {
    return this.call('PUT', `/v2/images/${id}/file`, { data, token });
  }

  async image(id: string, token?: string): Promise<any> {
    const res = await this.get(`/v2/images/${id}`, { token });
    assert.equal(res.status, 200, res.text);
    return res.body;
  }

  /** Files in DATA_DIR/images (the file store), ignoring nothing: partial files count too. */
  storedFiles(): string[] {
    const dir = join(this.dataDir, 'images');
    return existsSync(dir) ? readdirSync(dir) : [];
  }

  stagedFiles(): string[] {
    const dir = join(this.dataDir, 'image-staging');
    return existsSync(dir) ? readdirSync(dir) : [];
  }

  token = (user: string, password: string, project: string) => projectToken(this.cloud, user, password, project);
  /** A new user with `role` on a new project; returns its token and project id. */
  projectUser = (name: string, role = 'member') => newProjectUser(this.cloud, name, role);

  async close(): Promise<void> {
    await this.cloud.close();
    rmSync(this.dataDir, { recursive: true, force: true });
  }
}

export function startImageCloud(options: ConfigValues = {}): Promise<ImageCloud> {
  return startTestCloud('image', options, async (cloud, dataDir) => {
    const ic = new ImageCloud(cloud, dataDir);
    const admin = await ic.token('admin', ADMIN_PASSWORD, 'admin');
    const demo = await ic.token('demo', DEMO_PASSWORD, 'demo');
    ic.adminToken = admin.token;
    ic.adminProject = admin.projectId;
    ic.demoToken = demo.token;
    ic.demoProject = demo.projectId;
    return ic;
  });
}

/** Glance's JSON error body: {"message", "code": "404 Not Found", "title"}. */
export function assertError(res: ApiResponse, status: number, message?: RegExp | string): void {
  assert.equal(res.status, status, `expected ${status}, got ${res.status}: ${res.text}`);
  assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
  assert.ok(res.body && typeof res.body === 'object', `error body is not JSON: ${res.text}`);
  assert.deepEqual(Object.keys(res.body).sort(), ['code', 'message', 'title'], res.text);
  assert.equal(res.body.code, `${status} ${res.body.title}`);
  assert.ok(res.body.message.length > 0);
  if (typeof message === 'string') assert.ok(res.body.message.includes(message), `message "${res.body.message}" does not mention "${message}"`);
  else if (message) assert.match(res.body.message, message);
}

/** Runs qemu-img (installed by scripts/install-system-deps.sh) to build test images. */
export function qemuImg(...args: string[]): void {
  execFileSync('qemu-img', args, { stdio: 'pipe' });
}

export function scratchDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'nubo-image-scratch-'));
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  return dir;
}
