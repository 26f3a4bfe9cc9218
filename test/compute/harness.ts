// Harness for the Compute API integration tests: the real all-in-one cloud in-process on a
// random port (fake hypervisor hosts), driven over real HTTP at /compute/v2.1.
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import type { Cloud } from '../../src/cli/cloud.js';
import type { ConfigValues } from '../../src/core/config.js';
import { ADMIN_PASSWORD, DEMO_PASSWORD, ServiceClient, send, sleep, startTestCloud, type ApiResponse, type ServiceCallOptions } from '../support/in-process.js';

export { ADMIN_PASSWORD, DEMO_PASSWORD, sleep, unique, type ApiResponse } from '../support/in-process.js';

export interface CallOptions extends ServiceCallOptions {
  /** Microversion sent as `OpenStack-API-Version: compute X.Y` (default: none, i.e. 2.1). */
  microversion?: string;
}

export class ComputeCloud extends ServiceClient<CallOptions> {
  constructor(cloud: Cloud, dataDir: string) {
    super(cloud, dataDir, '/compute/v2.1');
  }

  protected override headersFor(options: CallOptions): Record<string, string> {
    return options.microversion ? { 'OpenStack-API-Version': `compute ${options.microversion}` } : {};
  }

  /** Polls GET /servers/{id} until `done(server)` holds (default: status is not BUILD); returns the server. */
  async waitServer(id: string, done: (server: any) => boolean = (s) => s.status !== 'BUILD', token?: string, timeoutMs = 20_000): Promise<any> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const res = await this.get(`/servers/${id}`, { token, microversion: '2.79' });
      if (res.status === 404 && done({ status: 'DELETED' })) return { status: 'DELETED' };
      assert.equal(res.status, 200, res.text);
      if (done(res.body.server)) return res.body.server;
      if (Date.now() > deadline) assert.fail(`server ${id} still ${res.body.server.status}/${res.body.server['OS-EXT-STS:task_state']} after ${timeoutMs} ms`);
      await sleep(50);
    }
  }

  /** An active image in the Image service (a few bytes of raw data) to boot from; returns its id. */
  async createImage(fields: Record<string, unknown> = {}, token?: string): Promise<string> {
    const created = await this.post('/image/v2/images', { name: 'boot-image', disk_format: 'raw', container_format: 'bare', ...fields }, { token });
    assert.equal(created.status, 201, created.text);
    const upload = await send(this.url(`/image/v2/images/${created.body.id}/file`), 'PUT',
      { 'X-Auth-Token': token ?? this.adminToken, 'Content-Type': 'application/octet-stream' }, new Uint8Array(4096));
    assert.equal(upload.status, 204, upload.text);
    return created.body.id;
  }

  /** Boots a server (202 expected) and returns the create response's server body. */
  async boot(fields: Record<string, unknown>, options: CallOptions & { hints?: Record<string, unknown> } = {}): Promise<any> {
    const body: Record<string, unknown> = { server: { name: 'vm', flavorRef: '1', networks: 'none', ...fields } };
    if (options.hints) body['os:scheduler_hints'] = options.hints;
    const res = await this.post('/servers', body, { microversion: '2.79', ...options });
    assert.equal(res.status, 202, res.text);
    return res.body.server;
  }

  /** Boots a server and waits for it to be ACTIVE (asserted); returns the server at 2.79. */
  async bootActive(fields: Record<string, unknown>, options: CallOptions & { hints?: Record<string, unknown> } = {}): Promise<any> {
    const created = await this.boot(fields, options);
    const server = await this.waitServer(created.id, undefined, options.token);
    assert.equal(server.status, 'ACTIVE', JSON.stringify(server.fault));
    return server;
  }

  /** POST /servers/{id}/action, at 2.79 unless told otherwise. */
  act = (id: string, body: unknown, options: CallOptions = {}) => this.post(`/servers/${id}/action`, body, { microversion: '2.79', ...options });

  /** Waits until the server has no task state (an action ended); returns it. */
  settled = (id: string, token?: string) => this.waitServer(id, (s) => s['OS-EXT-STS:task_state'] === null, token);

  /** What Placement holds for a consumer (an instance or a migration): provider uuid → { resources, generation }. */
  async allocations(consumer: string): Promise<Record<string, { resources: Record<string, number> }>> {
    const res = await this.get(`/placement/allocations/${consumer}`, { headers: { 'OpenStack-API-Version': 'placement 1.28' } });
    assert.equal(res.status, 200, res.text);
    return res.body.allocations;
  }

  /** Lifts the instances, cores and ram quotas of a project (the admin's by default): tests that keep servers. */
  async unlimitedQuota(projectId = this.adminProject): Promise<void> {
    const res = await this.put(`/os-quota-sets/${projectId}`, { quota_set: { instances: -1, cores: -1, ram: -1 } });
    assert.equal(res.status, 200, res.text);
  }

  async close(): Promise<void> {
    await this.cloud.close();
    rmSync(this.dataDir, { recursive: true, force: true });
  }
}

/** Starts the cloud with `hosts` fake compute hosts (default 2) plus any other options. */
export function startComputeCloud(options: ConfigValues = {}, hosts = 2): Promise<ComputeCloud> {
  const values: ConfigValues = { ...options, compute: { driver: 'fake', fake_hosts: String(hosts), ...(options.compute ?? {}) } };
  return startTestCloud('compute', values, async (cloud, dataDir) => {
    const cc = new ComputeCloud(cloud, dataDir);
    const admin = await cc.token('admin', ADMIN_PASSWORD, 'admin');
    const demo = await cc.token('demo', DEMO_PASSWORD, 'demo');
    Object.assign(cc, { adminToken: admin.token, adminProject: admin.projectId, adminUser: admin.userId, demoToken: demo.token, demoProject: demo.projectId, demoUser: demo.userId });
    return cc;
  });
}

/** Nova's error body: {"<kind>": {"code": N, "message": "..."}} with one key. */
export function assertError(res: ApiResponse, status: number, message?: RegExp | string): void {
  assert.equal(res.status, status, `expected ${status}, got ${res.status}: ${res.text}`);
  assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
  const keys = Object.keys(res.body ?? {});
  assert.equal(keys.length, 1, res.text);
  const inner = res.body[keys[0]];
  assert.equal(inner.code, status, res.text);
  assert.ok(typeof inner.message === 'string' && inner.message.length > 0, res.text);
  if (typeof message === 'string') assert.ok(inner.message.includes(message), `message "${inner.message}" does not mention "${message}"`);
  else if (message) assert.match(inner.message, message);
}
