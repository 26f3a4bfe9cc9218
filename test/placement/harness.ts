// Harness for the Placement API integration tests: the real all-in-one cloud in-process on a
// random port, driven over real HTTP at /placement with `OpenStack-API-Version: placement X`.
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import type { Cloud } from '../../src/cli/cloud.js';
import { ADMIN_PASSWORD, DEMO_PASSWORD, projectToken, send, startTestCloud, type ApiResponse } from '../support/in-process.js';

export { type ApiResponse } from '../support/in-process.js';

export interface CallOptions { token?: string; version?: string; body?: unknown; headers?: Record<string, string> }

export class PlacementCloud {
  adminToken = '';
  demoToken = '';
  constructor(readonly cloud: Cloud, readonly dataDir: string) {}

  async call<T = any>(method: string, path: string, options: CallOptions = {}): Promise<ApiResponse<T>> {
    const headers: Record<string, string> = { Accept: 'application/json', ...options.headers };
    const token = options.token ?? this.adminToken;
    if (token) headers['X-Auth-Token'] = token;
    if (options.version) headers['OpenStack-API-Version'] = `placement ${options.version}`;
    let body: string | undefined;
    if (options.body !== undefined) {
      body = JSON.stringify(options.body);
      headers['Content-Type'] = 'application/json';
    }
    return send<T>(`${this.cloud.url}/placement${path}`, method, headers, body);
  }

  get = (path: string, version?: string, options: CallOptions = {}) => this.call('GET', path, { ...options, version });
  put = (path: string, body: unknown, version?: string, options: CallOptions = {}) => this.call('PUT', path, { ...options, body, version });
  post = (path: string, body: unknown, version?: string, options: CallOptions = {}) => this.call('POST', path, { ...options, body, version });
  delete = (path: string, version?: string, options: CallOptions = {}) => this.call('DELETE', path, { ...options, version });

  async token(user: string, password: string, project: string): Promise<string> {
    return (await projectToken(this.cloud, user, password, project)).token;
  }

  /** Creates a provider (1.20 answers with its body) with inventories; returns its uuid. */
  async provider(name: string, inventories: Record<string, unknown> = {}, extra: Record<string, unknown> = {}): Promise<string> {
    const res = await this.post('/resource_providers', { name, ...extra }, '1.20');
    assert.equal(res.status, 201, res.text);
    const uuid = res.body.uuid as string;
    if (Object.keys(inventories).length) {
      const inv = await this.put(`/resource_providers/${uuid}/inventories`, { inventories, resource_provider_generation: res.body.generation }, '1.20');
      assert.equal(inv.status, 200, inv.text);
    }
    return uuid;
  }

  async close(): Promise<void> {
    await this.cloud.close();
    rmSync(this.dataDir, { recursive: true, force: true });
  }
}

export function startPlacementCloud(): Promise<PlacementCloud> {
  return startTestCloud('placement', {}, async (cloud, dataDir) => {
    const pc = new PlacementCloud(cloud, dataDir);
    pc.adminToken = await pc.token('admin', ADMIN_PASSWORD, 'admin');
    pc.demoToken = await pc.token('demo', DEMO_PASSWORD, 'demo');
    return pc;
  });
}

/** Placement's error body: {"errors": [{status, title, detail, code, request_id}]}. */
export function assertError(res: ApiResponse, status: number, code?: string, detail?: RegExp): void {
  assert.equal(res.status, status, `expected ${status}, got ${res.status}: ${res.text}`);
  assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
  const errors = res.body?.errors;
  assert.ok(Array.isArray(errors) && errors.length === 1, res.text);
  assert.deepEqual(Object.keys(errors[0]).sort(), ['code', 'detail', 'request_id', 'status', 'title']);
  assert.equal(errors[0].status, status);
  assert.match(errors[0].code, /^placement\./);
  if (code) assert.equal(errors[0].code, code, res.text);
  assert.equal(errors[0].request_id, res.headers.get('x-openstack-request-id'));
  if (detail) assert.match(errors[0].detail, detail);
}
