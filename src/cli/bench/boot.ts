// `nubo bench boot`: servers booted to ACTIVE on many fake compute hosts through the real
// code (HTTP API → conductor → scheduler with Placement → agents over the bus), in a
// throwaway all-in-one cloud in this process. Boot-to-ACTIVE is timed from sending the
// POST to the instance.create.end notification, so nothing polls while it runs.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Config } from '../../core/config.js';
import { createLogger } from '../../core/log.js';
import { startCloud, type Cloud } from '../cloud.js';
import { describeMachine, formatTable, LatencyHistogram, watchUsage, type Machine, type ProcessUsage } from './measure.js';

export interface BootBenchOptions {
  hosts: number;
  servers: number;
  concurrency: number;
  /** A database URL; default a SQLite file in the throwaway data directory. */
  database?: string;
  /** [scheduler] driver: filter (default), random or caching. */
  scheduler?: string;
}

interface PhaseResult {
  name: string;
  servers: number;
  errors: number;
  firstError?: string;
  seconds: number;
  serversPerSecond: number;
  p50Ms: number;
  p95Ms: number;
  usage: ProcessUsage;
}

export interface BootBenchReport {
  benchmark: 'boot';
  date: string;
  machine: Machine;
  database: string;
  scheduler: string;
  hosts: number;
  concurrency: number;
  hostsStartSeconds: number;
  phases: PhaseResult[];
  aim: { description: string; seconds: number; met: boolean };
}

const ADMIN_PASSWORD = 'bench-password';
const AIM_SECONDS = 30;

export async function benchBoot(options: BootBenchOptions, progress: (line: string) => void): Promise<BootBenchReport> {
  const dataDir = mkdtempSync(join(tmpdir(), 'nubo-bench-boot-'));
  const values: Record<string, Record<string, string>> = {
    DEFAULT: { log_level: 'error', report_interval: '10' },
    compute: { driver: 'fake', fake_hosts: String(options.hosts) },
    scheduler: { driver: options.scheduler ?? 'filter' },
    database: { connection: options.database ?? `sqlite://${join(dataDir, 'nubo.sqlite')}` },
  };
  const started = performance.now();
  progress(`starting a cloud with ${options.hosts} fake hosts...`);
  let cloud: Cloud | undefined;
  try {
    cloud = await startCloud({ dataDir, host: '127.0.0.1', port: 0, adminPassword: ADMIN_PASSWORD, config: new Config(values, {}), logger: createLogger('bench') });
    const hostsStartSeconds = (performance.now() - started) / 1000;
    progress(`${options.hosts} hosts registered in ${hostsStartSeconds.toFixed(1)} s`);
    const client = await BenchClient.connect(cloud);
    await client.prepare();

    const phases: PhaseResult[] = [];
    progress(`booting ${options.servers} servers, ${options.concurrency} at a time...`);
    const booted: string[] = [];
    phases.push(await runPhase('boot to ACTIVE', options.servers, options.concurrency, async (index) => {
      const id = await client.boot(`bench-${index}`);
      booted.push(id);
    }));
    progress(`deleting ${booted.length} servers...`);
    await Promise.all(booted.map((id) => client.remove(id)));
    progress(`boot-and-delete of ${options.servers} servers, ${options.concurrency} at a time...`);
    phases.push(await runPhase('boot and delete', options.servers, options.concurrency, async (index) => {
      const id = await client.boot(`cycle-${index}`);
      await client.remove(id);
    }));
    client.close();

    const boot = phases[0];
    return {
      benchmark: 'boot',
      date: new Date().toISOString(),
      machine: describeMachine(),
      database: options.database ? options.database.replace(/\/\/[^@/]*@/, '//') : 'SQLite (file in a temporary directory)',
      scheduler: options.scheduler ?? 'filter',
      hosts: options.hosts,
      concurrency: options.concurrency,
      hostsStartSeconds,
      phases,
      aim: {
        description: `1,000 servers on 1,000 fake hosts at concurrency 50 in <= ${AIM_SECONDS} s`,
        seconds: boot.seconds,
        met: options.servers >= 1000 && options.hosts >= 1000 && options.concurrency <= 50 && boot.errors === 0 && boot.seconds <= AIM_SECONDS,
      },
    };
  } finally {
    await cloud?.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

/** Runs `count` operations with `concurrency` in flight; each op's latency goes to the histogram. */
async function runPhase(name: string, count: number, concurrency: number, op: (index: number) => Promise<void>): Promise<PhaseResult> {
  const histogram = new LatencyHistogram();
  let next = 0, errors = 0;
  let firstError: string | undefined;
  const usage = watchUsage();
  const start = performance.now();
  const worker = async () => {
    while (next < count) {
      const index = next++;
      const t0 = performance.now();
      try {
        await op(index);
        histogram.record(performance.now() - t0);
      } catch (err) {
        errors++;
        firstError ??= (err as Error).message;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  const seconds = (performance.now() - start) / 1000;
  return {
    name, servers: count - errors, errors, firstError, seconds, serversPerSecond: (count - errors) / seconds,
    p50Ms: histogram.percentile(50), p95Ms: histogram.percentile(95), usage: usage(),
  };
}

/** Talks to the cloud over HTTP as a client would, and hears the end of each build and delete from the bus. */
class BenchClient {
  private readonly waiting = new Map<string, { resolve: () => void; reject: (err: Error) => void }>();
  private token = '';
  private imageId = '';
  private closeListener: () => Promise<void> = async () => undefined;

  private constructor(private readonly cloud: Cloud) {}

  static async connect(cloud: Cloud): Promise<BenchClient> {
    const client = new BenchClient(cloud);
    const subscription = await cloud.bus.onNotification('compute.instance.', (n) => {
      const payload = n.payload as { instance_id: string; fault?: string | null };
      const key = `${n.eventType}/${payload.instance_id}`;
      const waiter = client.waiting.get(key) ?? (n.eventType === 'compute.instance.create.error' ? client.waiting.get(`compute.instance.create.end/${payload.instance_id}`) : undefined);
      if (!waiter) return;
      if (n.eventType.endsWith('.error')) waiter.reject(new Error(payload.fault ?? 'build failed'));
      else waiter.resolve();
    });
    client.closeListener = () => subscription.close();
    return client;
  }

  private async request(method: string, path: string, body?: unknown): Promise<any> {
    const response = await fetch(`${this.cloud.url}${path}`, {
      method,
      headers: { 'Content-Type': 'application/json', 'X-Auth-Token': this.token, 'OpenStack-API-Version': 'compute 2.79' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    if (response.status >= 400) throw new Error(`${method} ${path}: ${response.status} ${text}`);
    return text ? JSON.parse(text) : undefined;
  }

  /** Token, unlimited quotas for the admin project, and an image to boot. */
  async prepare(): Promise<void> {
    const auth = await fetch(`${this.cloud.url}/identity/v3/auth/tokens`, {
      method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ auth: { identity: { methods: ['password'], password: { user: { name: 'admin', domain: { id: 'default' }, password: ADMIN_PASSWORD } } }, scope: { project: { name: 'admin', domain: { id: 'default' } } } } }),
    });
    this.token = auth.headers.get('x-subject-token') ?? '';
    const project = ((await auth.json()) as any).token.project.id;
    await this.request('PUT', `/compute/v2.1/os-quota-sets/${project}`, { quota_set: { instances: -1, cores: -1, ram: -1 } });
    const image = await this.request('POST', '/image/v2/images', { name: 'bench', disk_format: 'raw', container_format: 'bare' });
    const upload = await fetch(`${this.cloud.url}/image/v2/images/${image.id}/file`, { method: 'PUT', headers: { 'X-Auth-Token': this.token, 'Content-Type': 'application/octet-stream' }, body: new Uint8Array(1024) });
    if (upload.status !== 204) throw new Error(`image upload: ${upload.status}`);
    this.imageId = image.id;
  }

  private wait(event: string, id: string): Promise<void> {
    return new Promise((resolve, reject) => this.waiting.set(`${event}/${id}`, {
      resolve: () => { this.waiting.delete(`${event}/${id}`); resolve(); },
      reject: (err) => { this.waiting.delete(`${event}/${id}`); reject(err); },
    }));
  }

  /** Boots one m1.tiny server and resolves when it is ACTIVE. */
  async boot(name: string): Promise<string> {
    const created = await this.request('POST', '/compute/v2.1/servers', { server: { name, flavorRef: '1', imageRef: this.imageId, networks: 'none' } });
    const id = created.server.id as string;
    await this.waitFor('compute.instance.create.end', id);
    return id;
  }

  async remove(id: string): Promise<void> {
    const done = this.wait('compute.instance.delete.end', id);
    await this.request('DELETE', `/compute/v2.1/servers/${id}`);
    await done;
  }

  /** Waits for the event unless the server got there already (then the notification went out before we listened). */
  private async waitFor(event: string, id: string): Promise<void> {
    const server = await this.request('GET', `/compute/v2.1/servers/${id}`);
    if (server.server.status === 'ACTIVE') return;
    if (server.server.status === 'ERROR') throw new Error(server.server.fault?.message ?? 'ERROR');
    await this.wait(event, id);
  }

  close(): void {
    void this.closeListener();
  }
}

export function formatBootReport(report: BootBenchReport): string {
  const { machine } = report;
  const fixed = (n: number, digits: number) => (Number.isFinite(n) ? n.toFixed(digits) : '-');
  const rows = report.phases.map((p) => [
    p.name, String(p.servers), String(p.errors), fixed(p.seconds, 1), fixed(p.serversPerSecond, 1), fixed(p.p50Ms, 0), fixed(p.p95Ms, 0),
    `${fixed(p.usage.cpuPercent, 0)}% / ${fixed(p.usage.eventLoopPercent, 0)}%`,
  ]);
  const errors = report.phases.filter((p) => p.firstError).map((p) => `  ${p.name}: first error: ${p.firstError}\n`).join('');
  return [
    `nubo bench boot — ${report.date}\n`,
    `machine:  ${machine.cpu}, ${machine.cores} cores, ${(machine.memoryBytes / 2 ** 30).toFixed(1)} GiB RAM, ${machine.os}, node ${machine.node}\n`,
    `database: ${report.database}; scheduler driver: ${report.scheduler}; ${report.hosts} fake hosts registered in ${report.hostsStartSeconds.toFixed(1)} s\n`,
    `client and cloud share this process; concurrency ${report.concurrency}; latency = POST sent → instance.create.end (delete: DELETE → delete.end)\n`,
    `cpu: percent of one core / event loop busy, over the phase\n\n`,
    formatTable(['phase', 'servers', 'errors', 'seconds', 'servers/s', 'p50 ms', 'p95 ms', 'cpu'], rows),
    errors,
    `\naim ${report.aim.description}: ${report.aim.met ? 'met' : 'NOT met'} (${report.aim.seconds.toFixed(1)} s)\n`,
  ].join('');
}
