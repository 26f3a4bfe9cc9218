// `nubo bench placement`: GET /allocation_candidates latency against P resource providers,
// in-process (PlacementService.getAllocationCandidates) and over HTTP (the Placement API on
// the real Fastify app with token validation and policy), one request at a time.
import { mkdtempSync, rmSync } from 'node:fs';
import { Agent, request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { randomUUID } from 'node:crypto';
import { Config } from '../../core/config.js';
import { createLogger } from '../../core/log.js';
import { openDatabase, type Database } from '../../db/index.js';
import { createHttpApp } from '../../http/app.js';
import { PolicyEngine } from '../../http/policy.js';
import { createIdentity } from '../../identity/index.js';
import { bootstrapIdentity } from '../../identity/bootstrap.js';
import { createPlacement } from '../../placement/index.js';
import type { CandidateQuery, PlacementService } from '../../placement/service.js';
import { LatencyHistogram, describeMachine, formatTable, mib, type Machine } from './measure.js';

export interface PlacementBenchOptions {
  providers: number;
  /** Requests measured per case (after a warm-up of a tenth as many, at least 5). */
  requests: number;
  /** A database URL (an empty database of its own); default a SQLite file in a temporary directory. */
  database?: string;
}

export interface PlacementMeasurement {
  name: string;
  transport: 'in-process' | 'HTTP';
  query: string;
  candidates: number;
  responseBytes?: number;
  requests: number;
  p50Ms: number;
  p95Ms: number;
  p99Ms: number;
  maxMs: number;
}

export interface PlacementBenchReport {
  benchmark: 'placement';
  date: string;
  machine: Machine;
  database: string;
  providers: number;
  setupSeconds: number;
  firstLoadMs: number;
  measurements: PlacementMeasurement[];
  peakRssBytes: number;
  aim: { description: string; p50Ms: number; measured: number; met: boolean };
}

const ADMIN_PASSWORD = 'bench-password';
const AIM_P50_MS = 50;
const AGGREGATES = Array.from({ length: 10 }, () => randomUUID());

/** The cases: Nova's usual request (its [scheduler] max_placement_results is 1000), and variations. */
const CASES: { name: string; query: string; candidateQuery: CandidateQuery }[] = [
  {
    name: 'compute request, limit 1000 (Nova default)',
    query: 'resources=VCPU:2,MEMORY_MB:4096,DISK_GB:20&required=!COMPUTE_STATUS_DISABLED&limit=1000',
    candidateQuery: { unsuffixed: { resources: { VCPU: 2, MEMORY_MB: 4096, DISK_GB: 20 }, forbidden: ['COMPUTE_STATUS_DISABLED'] }, limit: 1000 },
  },
  {
    name: 'compute request, no limit',
    query: 'resources=VCPU:2,MEMORY_MB:4096,DISK_GB:20&required=!COMPUTE_STATUS_DISABLED',
    candidateQuery: { unsuffixed: { resources: { VCPU: 2, MEMORY_MB: 4096, DISK_GB: 20 }, forbidden: ['COMPUTE_STATUS_DISABLED'] } },
  },
  {
    name: 'with trait + aggregate, limit 1000',
    query: `resources=VCPU:4,MEMORY_MB:8192,DISK_GB:40&required=HW_CPU_X86_AVX2&member_of=in:${AGGREGATES[0]},${AGGREGATES[1]}&limit=1000`,
    candidateQuery: { unsuffixed: { resources: { VCPU: 4, MEMORY_MB: 8192, DISK_GB: 40 }, required: ['HW_CPU_X86_AVX2'], memberOf: [[AGGREGATES[0], AGGREGATES[1]]] }, limit: 1000 },
  },
];

/**
 * P compute-node providers: 32-64 VCPU (ratio 4), 128-512 GiB RAM (ratio 1), 1-4 TB disk; a
 * quarter with HW_CPU_X86_AVX2, one in five in one of ten aggregates, 2 % disabled; half carry
 * an instance's allocation, 2 % are full (no VCPU left).
 */
async function populate(placement: PlacementService, count: number, progress: (line: string) => void): Promise<void> {
  const batch: Parameters<PlacementService['importProviders']>[0] = [];
  const uuids: string[] = [];
  for (let i = 0; i < count; i++) {
    const uuid = randomUUID();
    uuids.push(uuid);
    const traits = ['COMPUTE_NODE', 'HW_CPU_X86_SSE42', ...(i % 4 === 0 ? ['HW_CPU_X86_AVX2'] : []), ...(i % 50 === 7 ? ['COMPUTE_STATUS_DISABLED'] : [])];
    batch.push({
      uuid, name: `bench-host-${i}`, traits, aggregates: i % 5 === 0 ? [AGGREGATES[i % 10]] : [],
      inventories: {
        VCPU: { total: 32 * (1 + (i % 2)), allocation_ratio: 4 },
        MEMORY_MB: { total: 131072 * (1 + (i % 4)), reserved: 512 },
        DISK_GB: { total: 1000 * (1 + (i % 4)) },
      },
    });
    if (batch.length === 1000) { await placement.importProviders(batch.splice(0)); progress(`  ${i + 1} providers`); }
  }
  if (batch.length) await placement.importProviders(batch.splice(0));
  // Usage: 100 consumers per POST /allocations-style transaction.
  let consumers: Parameters<PlacementService['postAllocations']>[0] = {};
  const flush = async () => { if (Object.keys(consumers).length) await placement.postAllocations(consumers); consumers = {}; };
  for (let i = 0; i < count; i += 2) {
    const full = i % 50 === 0;
    const vcpu = full ? 32 * (1 + (i % 2)) * 4 : 8;
    consumers[randomUUID()] = { allocations: { [uuids[i]]: { resources: { VCPU: vcpu, MEMORY_MB: 16384, DISK_GB: 80 } } }, projectId: 'bench', userId: 'bench', consumerGeneration: null };
    if (Object.keys(consumers).length === 100) await flush();
  }
  await flush();
}

function quantiles(h: LatencyHistogram, max: number) {
  return { p50Ms: h.percentile(50), p95Ms: h.percentile(95), p99Ms: h.percentile(99), maxMs: max };
}

function httpGet(agent: Agent, url: URL, headers: Record<string, string>): Promise<{ status: number; bytes: number }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { agent, headers, method: 'GET' }, (res) => {
      let bytes = 0;
      res.on('data', (chunk: Buffer) => { bytes += chunk.length; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, bytes }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

export async function benchPlacement(options: PlacementBenchOptions, progress: (line: string) => void): Promise<PlacementBenchReport> {
  const machine = describeMachine();
  const dataDir = mkdtempSync(join(tmpdir(), 'nubo-bench-placement-'));
  const config = new Config({ identity: { password_hash_rounds: '4' } }, {});
  const logger = createLogger('bench');
  let database: Database | undefined;
  let close = async () => undefined as void;
  try {
    database = await openDatabase(options.database ?? `sqlite://${join(dataDir, 'nubo.sqlite')}`);
    const policy = new PolicyEngine();
    const identity = await createIdentity({ config, database, policy, dataDir });
    const { placement, api } = await createPlacement({ config, database, policy, tokens: identity.tokens, logger: logger.child('placement') });
    const app = createHttpApp({ logger: logger.child('http') });
    app.register(api, { prefix: '/placement' });
    await app.listen({ host: '127.0.0.1', port: 0 });
    const address = app.server.address();
    const base = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
    close = async () => { await app.close(); };
    await bootstrapIdentity(identity.identity, { region: 'RegionOne', adminPassword: ADMIN_PASSWORD, services: [{ type: 'placement', name: 'placement', description: 'Placement Service', url: `${base}/placement` }] });
    const token = (await identity.tokens.authenticate({
      identity: { methods: ['password'], password: { user: { name: 'admin', domain: { id: 'default' }, password: ADMIN_PASSWORD } } },
      scope: { project: { name: 'admin', domain: { id: 'default' } } },
    })).token;

    progress(`creating ${options.providers} providers on ${database.engine}...`);
    const setupStart = performance.now();
    await populate(placement, options.providers, progress);
    const setupSeconds = (performance.now() - setupStart) / 1000;
    const loadStart = performance.now();
    await placement.view.refresh();
    const firstLoadMs = performance.now() - loadStart;

    const measurements: PlacementMeasurement[] = [];
    const warmup = Math.max(5, Math.ceil(options.requests / 10));
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    for (const c of CASES) {
      progress(`measuring ${c.name}...`);
      let h = new LatencyHistogram();
      let max = 0;
      let candidates = 0;
      for (let i = 0; i < warmup + options.requests; i++) {
        const began = performance.now();
        const result = await placement.getAllocationCandidates(c.candidateQuery);
        const ms = performance.now() - began;
        candidates = result.allocation_requests.length;
        if (i >= warmup) { h.record(ms); max = Math.max(max, ms); }
      }
      measurements.push({ name: c.name, transport: 'in-process', query: c.query, candidates, requests: options.requests, ...quantiles(h, max) });

      const url = new URL(`${base}/placement/allocation_candidates?${c.query}`);
      const headers = { 'x-auth-token': token, 'openstack-api-version': 'placement 1.36', accept: 'application/json' };
      h = new LatencyHistogram();
      max = 0;
      let bytes = 0;
      for (let i = 0; i < warmup + options.requests; i++) {
        const began = performance.now();
        const res = await httpGet(agent, url, headers);
        const ms = performance.now() - began;
        if (res.status !== 200) throw new Error(`${c.name}: GET ${url.pathname} answered ${res.status}`);
        bytes = res.bytes;
        if (i >= warmup) { h.record(ms); max = Math.max(max, ms); }
      }
      measurements.push({ name: c.name, transport: 'HTTP', query: c.query, candidates, responseBytes: bytes, requests: options.requests, ...quantiles(h, max) });
    }
    agent.destroy();
    const typicalHttp = measurements.find((m) => m.transport === 'HTTP')!;
    return {
      benchmark: 'placement', date: new Date().toISOString(), machine, database: database.engine, providers: options.providers,
      setupSeconds, firstLoadMs, measurements, peakRssBytes: process.resourceUsage().maxRSS * 1024,
      aim: { description: `p50 <= ${AIM_P50_MS} ms over HTTP for the compute request (limit 1000) with 10,000 providers on 2 cores`, p50Ms: AIM_P50_MS, measured: typicalHttp.p50Ms, met: typicalHttp.p50Ms <= AIM_P50_MS },
    };
  } finally {
    await close();
    await database?.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

const fixed = (value: number, digits: number) => (Number.isNaN(value) ? '-' : value.toFixed(digits));

export function formatPlacementReport(report: PlacementBenchReport): string {
  const { machine } = report;
  const rows = report.measurements.map((m) => [
    m.name, m.transport, String(m.candidates), m.responseBytes === undefined ? '-' : `${(m.responseBytes / 1024).toFixed(0)} KiB`,
    fixed(m.p50Ms, 2), fixed(m.p95Ms, 2), fixed(m.p99Ms, 2), fixed(m.maxMs, 2), String(m.requests),
  ]);
  return [
    `nubo bench placement — ${report.date}\n`,
    `machine:   ${machine.cpu}, ${machine.cores} cores, ${(machine.memoryBytes / 2 ** 30).toFixed(1)} GiB RAM, ${machine.os}, node ${machine.node}, load average ${machine.loadAverage.toFixed(2)} at start\n`,
    `database:  ${report.database}; ${report.providers} providers created in ${report.setupSeconds.toFixed(1)} s; first load of the provider view ${report.firstLoadMs.toFixed(0)} ms\n`,
    `one request at a time; HTTP = node:http keep-alive client in this process, OpenStack-API-Version: placement 1.36\n\n`,
    formatTable(['request', 'where', 'candidates', 'body', 'p50 ms', 'p95 ms', 'p99 ms', 'max ms', 'requests'], rows),
    `\npeak RSS: ${mib(report.peakRssBytes)}\n`,
    `aim ${report.aim.description}: ${report.providers >= 10000 ? (report.aim.met ? 'met' : 'NOT met') : 'n/a at this size'} (${fixed(report.aim.measured, 2)} ms)\n`,
  ].join('');
}
