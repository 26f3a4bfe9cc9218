// `nubo bench identity`: token issue and validation throughput on the real code, in-process
// and over HTTP, against a throwaway all-in-one cloud started in this process.
import { fork, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Config } from '../../core/config.js';
import { createLogger } from '../../core/log.js';
import { startCloud, type Cloud } from '../cloud.js';
import type { LoadJob, LoadMessage } from './load-generator.js';
import { describeMachine, formatTable, gib, mib, runClosedLoop, watchMachineCpu, watchUsage, type LoopResult, type Machine, type ProcessUsage } from './measure.js';

export interface IdentityBenchOptions {
  durationSeconds: number;
  /** Requests in flight at once over HTTP. */
  concurrency: number;
  /** A database URL; default a SQLite file in the throwaway data directory. */
  database?: string;
}

export interface Measurement extends LoopResult {
  name: string;
  transport: 'in-process' | 'HTTP';
  concurrency: number;
  /** Over HTTP: how busy server and load generator were during the measured window. */
  server?: ProcessUsage;
  client?: ProcessUsage;
  /** Over HTTP: CPU used by every other process meanwhile, in percent of one core. */
  othersCpuPercent?: number;
}

export interface IdentityBenchReport {
  benchmark: 'identity';
  date: string;
  machine: Machine;
  database: string;
  passwordHashRounds: number;
  warmupSeconds: number;
  durationSeconds: number;
  httpClient: string;
  measurements: Measurement[];
  serverPeakRssBytes: number;
  clientPeakRssBytes: number;
  aim: { description: string; validationsPerSecond: number; measured: number; met: boolean };
}

const ADMIN_PASSWORD = 'bench-password';
const AIM_VALIDATIONS_PER_SECOND = 5000;

/**
 * Environment overrides the bench never takes: it runs on its own data directory and
 * database so that it cannot touch a real cloud (bootstrap would reset its admin password).
 */
const IGNORED_ENV = ['NUBO_DATABASE__CONNECTION', 'NUBO_FERNET_TOKENS__KEY_REPOSITORY', 'NUBO_MESSAGING__TRANSPORT_URL'];

/** A password authentication of admin scoped to project admin, as `openstack` sends it. */
const AUTH_REQUEST = {
  auth: {
    identity: { methods: ['password'], password: { user: { name: 'admin', domain: { id: 'default' }, password: ADMIN_PASSWORD } } },
    scope: { project: { name: 'admin', domain: { id: 'default' } } },
  },
};

/** The HTTP load generator: a child node process, so that client and server each have a core. */
class LoadGenerator {
  private readonly child: ChildProcess;

  constructor() {
    this.child = fork(new URL('./load-generator.js', import.meta.url), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  }

  /** Runs one job; the server's CPU is measured over the same window the generator measures. */
  run(job: LoadJob): Promise<{ result: LoopResult; server: ProcessUsage; client: ProcessUsage; othersCpuPercent: number; clientPeakRssBytes: number }> {
    return new Promise((resolve, reject) => {
      let usageSince = watchUsage();
      let machineCpuSince = watchMachineCpu();
      let server: ProcessUsage = { cpuPercent: NaN, eventLoopPercent: NaN };
      let machineCpuPercent = NaN;
      const onMessage = (message: LoadMessage) => {
        if (message.type === 'window-start') {
          usageSince = watchUsage();
          machineCpuSince = watchMachineCpu();
        } else if (message.type === 'window-end') {
          server = usageSince();
          machineCpuPercent = machineCpuSince();
        } else {
          this.child.off('message', onMessage).off('exit', onExit);
          const othersCpuPercent = Math.max(0, machineCpuPercent - server.cpuPercent - message.usage.cpuPercent);
          resolve({ result: message.result, server, client: message.usage, othersCpuPercent, clientPeakRssBytes: message.peakRssBytes });
        }
      };
      const onExit = (code: number | null) => reject(new Error(`the load generator exited (code ${code})`));
      this.child.on('message', onMessage).on('exit', onExit);
      this.child.send(job);
    });
  }

  stop(): void {
    if (this.child.connected) this.child.disconnect();
  }
}

export async function benchIdentity(options: IdentityBenchOptions, progress: (line: string) => void): Promise<IdentityBenchReport> {
  const machine = describeMachine();
  const dataDir = mkdtempSync(join(tmpdir(), 'nubo-bench-'));
  const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !IGNORED_ENV.includes(name)));
  const config = new Config(options.database ? { database: { connection: options.database } } : {}, env);
  let cloud: Cloud | undefined;
  let generator: LoadGenerator | undefined;
  try {
    cloud = await startCloud({ dataDir, host: '127.0.0.1', port: 0, adminPassword: ADMIN_PASSWORD, config, logger: createLogger('bench') });
    const { tokens } = cloud.identity;
    const durationMs = options.durationSeconds * 1000;
    const warmupMs = Math.min(1000, durationMs / 5);
    const measurements: Measurement[] = [];
    const measure = async (name: string, run: () => Promise<Omit<Measurement, 'name'>>) => {
      progress(`measuring ${name}...`);
      const measurement = { name, ...(await run()) };
      if (measurement.firstError && measurement.ops === 0) throw new Error(`${name}: every operation failed: ${measurement.firstError}`);
      if (measurement.ops === 0) throw new Error(`${name}: nothing completed within ${options.durationSeconds} s; give a longer --duration`);
      measurements.push(measurement);
      return measurement;
    };

    // In-process: one call at a time, straight into the token service.
    await measure('token issue (password, project scope)', async () => ({
      transport: 'in-process', concurrency: 1,
      ...(await runClosedLoop(() => tokens.authenticate(AUTH_REQUEST.auth), { concurrency: 1, warmupMs, durationMs })),
    }));
    const token = (await tokens.authenticate(AUTH_REQUEST.auth)).token;
    await measure('token validation', async () => ({
      transport: 'in-process', concurrency: 1,
      ...(await runClosedLoop(() => tokens.validateToken(token), { concurrency: 1, warmupMs, durationMs })),
    }));

    // HTTP: the load generator in its own process, `concurrency` keep-alive connections.
    generator = new LoadGenerator();
    let clientPeakRssBytes = 0;
    const overHttp = async (job: Omit<LoadJob, 'concurrency' | 'warmupMs' | 'durationMs'>): Promise<Omit<Measurement, 'name'>> => {
      const run = await generator!.run({ ...job, concurrency: options.concurrency, warmupMs, durationMs });
      clientPeakRssBytes = Math.max(clientPeakRssBytes, run.clientPeakRssBytes);
      return { transport: 'HTTP', concurrency: options.concurrency, ...run.result, server: run.server, client: run.client, othersCpuPercent: run.othersCpuPercent };
    };
    const tokensUrl = `${cloud.url}/identity/v3/auth/tokens`;
    await measure('token issue (POST /v3/auth/tokens)', () => overHttp({
      url: tokensUrl, method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json' },
      body: JSON.stringify(AUTH_REQUEST), expectStatus: 201,
    }));
    // The caller authenticates with its own token, as a service validating a user's token does.
    const callerToken = (await tokens.authenticate(AUTH_REQUEST.auth)).token;
    const validation = await measure('token validation (GET /v3/auth/tokens?nocatalog)', () => overHttp({
      url: `${tokensUrl}?nocatalog`, method: 'GET', headers: { 'x-auth-token': callerToken, 'x-subject-token': token, accept: 'application/json' },
      expectStatus: 200,
    }));

    return {
      benchmark: 'identity',
      date: new Date().toISOString(),
      machine,
      database: cloud.database.engine,
      // Read only to report it; the identity service reads the same option with the same default.
      passwordHashRounds: config.getInt('identity', 'password_hash_rounds', 12),
      warmupSeconds: warmupMs / 1000,
      durationSeconds: options.durationSeconds,
      httpClient: `separate node process (child_process.fork), node:http keep-alive Agent, maxSockets ${options.concurrency}`,
      measurements,
      serverPeakRssBytes: process.resourceUsage().maxRSS * 1024,
      clientPeakRssBytes,
      aim: {
        description: `>= ${AIM_VALIDATIONS_PER_SECOND} validations/s over HTTP on 2 cores`,
        validationsPerSecond: AIM_VALIDATIONS_PER_SECOND,
        measured: validation.opsPerSecond,
        met: validation.opsPerSecond >= AIM_VALIDATIONS_PER_SECOND,
      },
    };
  } finally {
    generator?.stop();
    await cloud?.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

const usage = (u?: ProcessUsage) => (u ? `${fixed(u.cpuPercent, 0)}% / ${fixed(u.eventLoopPercent, 0)}%` : '-');
const fixed = (value: number | undefined, digits: number) => (value === undefined || Number.isNaN(value) ? '-' : value.toFixed(digits));

export function formatIdentityReport(report: IdentityBenchReport): string {
  const { machine } = report;
  const rows = report.measurements.map((m) => [
    m.name, m.transport, String(m.concurrency), fixed(m.opsPerSecond, m.opsPerSecond < 100 ? 1 : 0), fixed(m.p50Ms, 3), fixed(m.p99Ms, 3),
    String(m.ops), String(m.errors), usage(m.server), usage(m.client), m.othersCpuPercent === undefined ? '-' : `${fixed(m.othersCpuPercent, 0)}%`,
  ]);
  const errors = report.measurements.filter((m) => m.firstError).map((m) => `  ${m.name}: first error: ${m.firstError}\n`).join('');
  return [
    `nubo bench identity — ${report.date}\n`,
    `machine:  ${machine.cpu}, ${machine.cores} cores, ${gib(machine.memoryBytes)} RAM, ${machine.os}, node ${machine.node}\n`,
    `          load average ${machine.loadAverage.toFixed(2)} at start (other work on the machine lowers the numbers)\n`,
    `database: ${report.database}; passwords: bcrypt cost ${report.passwordHashRounds} ([identity] password_hash_rounds): every token issue runs one bcrypt compare\n`,
    `each measurement: ${report.durationSeconds} s after ${report.warmupSeconds} s of warm-up; in-process = one call at a time\n`,
    `HTTP client: ${report.httpClient}\n`,
    `server, client: CPU in percent of one core / event loop busy percent; others: CPU of every other process (all during the measured window)\n\n`,
    formatTable(['measurement', 'where', 'conc', 'ops/s', 'p50 ms', 'p99 ms', 'ops', 'errors', 'server', 'client', 'others'], rows),
    errors,
    `\nserver peak RSS: ${mib(report.serverPeakRssBytes)} (the process that also ran the in-process measurements); load generator peak RSS: ${mib(report.clientPeakRssBytes)}\n`,
    `aim ${report.aim.description}: ${report.aim.met ? 'met' : 'NOT met'} (${fixed(report.aim.measured, 0)}/s)\n`,
  ].join('');
}
