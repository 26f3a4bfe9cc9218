// Shared by the multi-process suites: a fresh PostgreSQL database and a RabbitMQ vhost of their
// own per run, `bin/nubo` processes started and stopped by PID, and polling with a clear failure.
// The AMQP driver's exchange and queue names are fixed (`nubo`, `nubo_conductor`, `nubo_compute.<host>`),
// so parallel runs on one broker would answer each other's calls: each run gets its own vhost.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { sql } from 'kysely';
import { openDatabase } from '../../src/db/index.js';
import { sleep } from './in-process.js';
import { repoRoot } from './cloud.js';

export const postgresUrl = process.env.NUBO_TEST_POSTGRES_URL ?? '';
export const rabbitUrl = process.env.NUBO_TEST_RABBIT_URL ?? '';

/** rabbitmqctl, from PATH or the usual sbin folders (root's PATH may lack them under the test runner). */
export function findRabbitmqctl(): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/usr/local/sbin', '/sbin'];
  return dirs.filter((d) => d.startsWith('/')).map((d) => join(d, 'rabbitmqctl')).find((p) => existsSync(p));
}
export const rabbitmqctl = findRabbitmqctl();

/** Why the multi-process suites cannot run here, or undefined when they can. */
export const multiProcessSkipReason = !postgresUrl ? 'NUBO_TEST_POSTGRES_URL is not set (e.g. postgres://postgres@127.0.0.1:5432/postgres)'
  : !rabbitUrl ? 'NUBO_TEST_RABBIT_URL is not set (e.g. rabbit://guest:guest@127.0.0.1:5672/)'
  : !rabbitmqctl ? 'rabbitmqctl is not available: it is needed to give this run a RabbitMQ vhost of its own'
  : undefined;

const READY_TIMEOUT_MS = 30_000;
const STOP_GRACE_MS = 5_000;
const MAX_LOG_CHARS = 100_000;

// ---- the broker's vhost and the database of this run ----

/** `rabbit://user:pass@host:port/` with the vhost replaced by `vhost`, and the user it logs in as. */
export function transportUrlFor(base: string, vhost: string): { url: string; user: string } {
  const m = /^(rabbit|amqp):\/\/([^/?]*)(\/[^?]*)?(\?.*)?$/.exec(base.trim());
  if (!m) throw new Error(`NUBO_TEST_RABBIT_URL is not a rabbit:// URL: ${base}`);
  const credentials = m[2].split(',')[0].split('@');
  const user = credentials.length > 1 ? decodeURIComponent(credentials[0].split(':')[0]) : 'guest';
  return { url: `${m[1]}://${m[2]}/${vhost}${m[4] ?? ''}`, user };
}

export function ctl(args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(rabbitmqctl!, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (c: Buffer) => (output += c.toString()));
    child.stderr.on('data', (c: Buffer) => (output += c.toString()));
    child.on('error', (err) => reject(new Error(`cannot run ${rabbitmqctl}: ${err.message}`)));
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`rabbitmqctl ${args.join(' ')} exited ${code}: ${output.trim()}`))));
  });
}

export async function createVhost(vhost: string, user: string, created: () => void): Promise<void> {
  await ctl(['add_vhost', vhost]);
  created();
  await ctl(['set_permissions', '-p', vhost, user, '.*', '.*', '.*']);
}

export async function createDatabase(name: string): Promise<string> {
  const admin = await openDatabase(postgresUrl);
  try {
    await sql.raw(`CREATE DATABASE ${name}`).execute(admin.db);
  } finally {
    await admin.close();
  }
  const url = new URL(postgresUrl);
  url.pathname = `/${name}`;
  return url.toString();
}

export async function dropDatabase(name: string): Promise<void> {
  const admin = await openDatabase(postgresUrl);
  try {
    await sql.raw(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`).execute(admin.db);
  } finally {
    await admin.close();
  }
}

// ---- the processes ----

export interface Proc {
  name: string;
  child: ChildProcess;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  log: { text: string };
}

// Last resort if the test process dies without running `after`: no child outlives it.
const running = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

/** Our environment without any NUBO_ option of the caller's (they would reach every process), plus `env`. */
export function childEnv(env: Record<string, string>): NodeJS.ProcessEnv {
  const base: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('NUBO_')) base[k] = v;
  return { ...base, ...env };
}

/**
 * Starts `bin/nubo ARGS` and resolves with the first output line matching `ready`. `started` gets the
 * process at once, so the caller can stop it even when this start (or another one beside it) fails.
 */
export async function launch(name: string, args: string[], env: Record<string, string>, ready: RegExp, started: (p: Proc) => void): Promise<RegExpExecArray> {
  const child = spawn(process.execPath, [join(repoRoot, 'bin', 'nubo'), ...args], { cwd: repoRoot, env: childEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(child);
  // A child never keeps the test process alive by itself: if the test ends without stopping it, the exit handler kills it.
  child.unref();
  for (const stream of [child.stdout, child.stderr]) (stream as unknown as { unref?: () => void }).unref?.();
  const log = { text: '' };
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on('exit', (code, signal) => { running.delete(child); resolve({ code, signal }); });
  });
  const proc: Proc = { name, child, exited, log };
  started(proc);
  const line = await new Promise<RegExpExecArray>((resolve, reject) => {
    let pending = '';
    let settled = false;
    const finish = (err: Error | null, match?: RegExpExecArray) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (err) reject(err); else resolve(match!);
    };
    const onData = (chunk: Buffer) => {
      const text = chunk.toString('utf8');
      log.text = (log.text + text).slice(-MAX_LOG_CHARS);
      pending += text;
      const lines = pending.split('\n');
      pending = lines.pop() ?? '';
      for (const l of lines) {
        const match = ready.exec(l);
        if (match) return finish(null, match);
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', (chunk: Buffer) => { log.text = (log.text + chunk.toString('utf8')).slice(-MAX_LOG_CHARS); });
    child.on('error', (err) => finish(new Error(`cannot run bin/nubo ${args.join(' ')}: ${err.message}`)));
    void exited.then((s) => finish(new Error(`${name} exited before it was ready (code ${s.code}, signal ${s.signal}):\n${log.text}`)));
    const timer = setTimeout(() => finish(new Error(`${name} printed no ready line within ${READY_TIMEOUT_MS} ms:\n${log.text}`)), READY_TIMEOUT_MS);
  }).catch(async (err) => {
    await stop(proc);
    throw err;
  });
  return line;
}

export const alive = (p: Proc) => p.child.exitCode === null && p.child.signalCode === null;

/** `signal` (SIGTERM) by PID, SIGKILL if it has not exited after STOP_GRACE_MS; resolves once it is gone. */
export async function stop(p: Proc, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (!alive(p)) return;
  process.kill(p.child.pid!, signal);
  const timer = setTimeout(() => { if (alive(p)) p.child.kill('SIGKILL'); }, STOP_GRACE_MS);
  try {
    await p.exited;
  } finally {
    clearTimeout(timer);
  }
}

/** Polls `probe` until it returns a value other than undefined; fails with `what` and the last state after `timeoutMs`. */
export async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 15_000, describeState?: () => string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) assert.fail(`timed out after ${timeoutMs} ms waiting for ${what}${describeState ? `: ${describeState()}` : ''}`);
    await sleep(100);
  }
}

