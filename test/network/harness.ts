// Harness for the Networking API integration tests: the real all-in-one cloud in-process on a
// random port (fake compute hosts, each with its no-op network agent), driven over real HTTP
// at /networking/v2.0. Shared by every test/network suite.
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import type { Cloud } from '../../src/cli/cloud.js';
import type { ConfigValues } from '../../src/core/config.js';
import { ADMIN_PASSWORD, DEMO_PASSWORD, ServiceClient, sleep, startTestCloud, type ApiResponse, type ServiceCallOptions } from '../support/in-process.js';

export { ADMIN_PASSWORD, DEMO_PASSWORD, sleep, unique, type ApiResponse, type ProjectToken } from '../support/in-process.js';

export type CallOptions = ServiceCallOptions;

export class NetworkCloud extends ServiceClient {
  constructor(cloud: Cloud, dataDir: string) {
    super(cloud, dataDir, '/networking/v2.0');
  }

  /** POST /networks (201 asserted); returns the network. */
  async network(fields: Record<string, unknown> = {}, token?: string): Promise<any> {
    const res = await this.post('/networks', { network: { name: 'net', ...fields } }, { token });
    assert.equal(res.status, 201, res.text);
    return res.body.network;
  }

  /** POST /subnets (201 asserted); returns the subnet. */
  async subnet(networkId: string, fields: Record<string, unknown> = {}, token?: string): Promise<any> {
    const res = await this.post('/subnets', { subnet: { network_id: networkId, ip_version: 4, cidr: '10.0.0.0/24', ...fields } }, { token });
    assert.equal(res.status, 201, res.text);
    return res.body.subnet;
  }

  /** POST /ports (201 asserted); returns the port. */
  async port(networkId: string, fields: Record<string, unknown> = {}, token?: string): Promise<any> {
    const res = await this.post('/ports', { port: { network_id: networkId, ...fields } }, { token });
    assert.equal(res.status, 201, res.text);
    return res.body.port;
  }

  /** Polls GET /ports/{id} until `done(port)` holds; returns the port. */
  async waitPort(id: string, done: (port: any) => boolean, timeoutMs = 10_000): Promise<any> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const res = await this.get(`/ports/${id}`);
      assert.equal(res.status, 200, res.text);
      if (done(res.body.port)) return res.body.port;
      if (Date.now() > deadline) assert.fail(`port ${id} still ${res.body.port.status} after ${timeoutMs} ms`);
      await sleep(20);
    }
  }

  async close(): Promise<void> {
    await this.cloud.close();
    rmSync(this.dataDir, { recursive: true, force: true });
  }
}

/** Starts the cloud with `hosts` fake compute hosts (default 1), each with a no-op network agent, plus any other options. */
export function startNetworkCloud(options: ConfigValues = {}, hosts = 1): Promise<NetworkCloud> {
  const values: ConfigValues = { ...options, compute: { driver: 'fake', fake_hosts: String(hosts), ...(options.compute ?? {}) } };
  return startTestCloud('network', values, async (cloud, dataDir) => {
    const nc = new NetworkCloud(cloud, dataDir);
    const admin = await nc.token('admin', ADMIN_PASSWORD, 'admin');
    const demo = await nc.token('demo', DEMO_PASSWORD, 'demo');
    Object.assign(nc, { adminToken: admin.token, adminProject: admin.projectId, demoToken: demo.token, demoProject: demo.projectId });
    return nc;
  });
}

/** Neutron's error body: {"NeutronError": {"type", "message", "detail"}} with the status and (optionally) the type and message. */
export function assertNeutronError(res: ApiResponse, status: number, type?: string, message?: RegExp | string): void {
  assert.equal(res.status, status, `expected ${status}, got ${res.status}: ${res.text}`);
  assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
  const error = res.body?.NeutronError;
  assert.ok(error && typeof error.message === 'string' && error.message.length > 0, res.text);
  assert.equal(typeof error.detail, 'string', res.text);
  if (type) assert.equal(error.type, type, res.text);
  if (typeof message === 'string') assert.ok(error.message.includes(message), `message "${error.message}" does not mention "${message}"`);
  else if (message) assert.match(error.message, message);
}
