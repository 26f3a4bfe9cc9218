// Test harness: runs the real all-in-one cloud (`bin/nubo up`) as a child process on a
// free port in a temporary data dir, and drives it with Debian's real `openstack` CLI.
// Shared by the CLI compatibility suites (identity, compute, image, network, ...).
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export type Env = Record<string, string>;

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface Cloud {
  /** Keystone v3 endpoint, as written into the openrc files (OS_AUTH_URL). */
  url: string;
  port: number;
  dataDir: string;
  /** The environment the server was started with on top of ours (passwords, options.env). */
  serverEnv: Env;
  /** OS_* variables parsed from DIR/admin-openrc.sh and DIR/demo-openrc.sh. */
  adminEnv: Env;
  demoEnv: Env;
  /** How the last stopped server process ended (null while none has stopped). */
  lastExit: ExitStatus | null;
  /** What the server printed so far (stdout and stderr interleaved), for failure messages. */
  logs(): string;
  /**
   * Stops the server and starts it again on the same data dir and port (persistence checks);
   * with `{ kill: true }` it is killed with SIGKILL first, as a crash would stop it.
   */
  restart(options?: { kill?: boolean }): Promise<void>;
  /** Stops the server (SIGTERM, SIGKILL after 10 s) and removes the data dir. */
  stop(): Promise<void>;
}

export interface StartOptions {
  /** Extra environment for the server process. */
  env?: Env;
}

export const OPENSTACK = '/usr/bin/openstack';
const READY_TIMEOUT_MS = 60_000;
const STOP_GRACE_MS = 10_000;
const MAX_LOG_CHARS = 200_000;

/** The repository root: the nearest folder above this file that holds bin/nubo. */
export const repoRoot = (() => {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'bin', 'nubo'))) {
    const parent = dirname(dir);
    if (parent === dir) throw new Error('cannot find the repository root (bin/nubo) above ' + fileURLToPath(import.meta.url));
    dir = parent;
  }
  return dir;
})();

// Servers still running when the test process exits are killed, so no orphan keeps a port.
const running = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

/** A TCP port that was free a moment ago: listen on port 0, read the port, close. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/**
 * Parses an openrc file of `export NAME=VALUE` lines. Values may be bare, 'single-quoted'
 * (with the shell's '\'' idiom) or "double-quoted" (with backslash escapes).
 */
export function parseOpenrc(text: string): Env {
  const env: Env = {};
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    const match = /^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line);
    if (!match) continue;
    env[match[1]] = unquoteShell(match[2]);
  }
  return env;
}

function unquoteShell(value: string): string {
  let out = '';
  let i = 0;
  while (i < value.length) {
    const c = value[i];
    if (c === "'") {
      const end = value.indexOf("'", i + 1);
      if (end < 0) throw new Error(`unterminated single quote in openrc value: ${value}`);
      out += value.slice(i + 1, end);
      i = end + 1;
    } else if (c === '"') {
      i++;
      while (i < value.length && value[i] !== '"') {
        if (value[i] === '\\' && i + 1 < value.length && '$`"\\\n'.includes(value[i + 1])) i++;
        out += value[i++];
      }
      if (i >= value.length) throw new Error(`unterminated double quote in openrc value: ${value}`);
      i++;
    } else if (c === '\\' && i + 1 < value.length) {
      out += value[i + 1];
      i += 2;
    } else if (c === '#' || /\s/.test(c)) {
      break; // a trailing comment or whitespace ends a bare word
    } else {
      out += c;
      i++;
    }
  }
  return out;
}

interface ServerProcess {
  child: ChildProcess;
  exited: Promise<ExitStatus>;
}

/** Starts `bin/nubo up` and resolves once it printed its `ready` line. */
async function launch(dataDir: string, port: number, env: Env, log: { text: string }): Promise<ServerProcess> {
  const child = spawn(
    process.execPath,
    [join(repoRoot, 'bin', 'nubo'), 'up', '--data-dir', dataDir, '--host', '127.0.0.1', '--port', String(port)],
    { cwd: repoRoot, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  running.add(child);
  const exited = new Promise<ExitStatus>((resolve) => {
    child.on('exit', (code, signal) => {
      running.delete(child);
      resolve({ code, signal });
    });
  });

  await new Promise<void>((resolve, reject) => {
    const pending = { stdout: '', stderr: '' };
    let settled = false;
    const finish = (err?: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (err) reject(err);
      else resolve();
    };
    const onData = (stream: 'stdout' | 'stderr') => (chunk: Buffer) => {
      const text = chunk.toString('utf8');
      log.text = (log.text + text).slice(-MAX_LOG_CHARS);
      // Look for the ready line only in complete lines of each stream.
      pending[stream] += text;
      const lines = pending[stream].split('\n');
      pending[stream] = lines.pop() ?? '';
      if (lines.some((line) => /\bready\b/i.test(line))) finish();
    };
    child.stdout!.on('data', onData('stdout'));
    child.stderr!.on('data', onData('stderr'));
    child.on('error', (err) => finish(new Error(`cannot run bin/nubo up: ${err.message}`)));
    void exited.then((status) =>
      finish(new Error(`bin/nubo up exited before it was ready (code ${status.code}, signal ${status.signal}); output:\n${log.text}`)),
    );
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      finish(new Error(`bin/nubo up printed no 'ready' line within ${READY_TIMEOUT_MS / 1000} s; output:\n${log.text}`));
    }, READY_TIMEOUT_MS);
  });
  return { child, exited };
}

/** SIGTERM, wait for the exit, SIGKILL if it takes longer than 10 s. */
async function terminate(server: ServerProcess): Promise<ExitStatus> {
  if (server.child.exitCode === null && server.child.signalCode === null) server.child.kill('SIGTERM');
  const timer = setTimeout(() => server.child.kill('SIGKILL'), STOP_GRACE_MS);
  try {
    return await server.exited;
  } finally {
    clearTimeout(timer);
  }
}

function readOpenrc(dataDir: string, name: string): Env {
  const path = join(dataDir, name);
  if (!existsSync(path)) throw new Error(`the cloud is ready but ${path} does not exist`);
  return parseOpenrc(readFileSync(path, 'utf8'));
}

/** Starts a fresh cloud in a new temporary data dir on a free port. */
export async function startCloud(options: StartOptions = {}): Promise<Cloud> {
  const dataDir = mkdtempSync(join(tmpdir(), 'nubo-cloud-'));
  const port = await freePort();
  const env: Env = {
    NUBO_ADMIN_PASSWORD: 'admin-' + randomBytes(9).toString('base64url'),
    NUBO_DEMO_PASSWORD: 'demo-' + randomBytes(9).toString('base64url'),
    ...options.env,
  };
  const log = { text: '' };
  let server: ServerProcess | null;
  try {
    server = await launch(dataDir, port, env, log);
  } catch (err) {
    rmSync(dataDir, { recursive: true, force: true });
    throw err;
  }

  const cloud: Cloud = {
    url: '',
    port,
    dataDir,
    serverEnv: env,
    adminEnv: {},
    demoEnv: {},
    lastExit: null,
    logs: () => log.text,
    async restart(restartOptions = {}) {
      if (server && restartOptions.kill) server.child.kill('SIGKILL');
      if (server) cloud.lastExit = await terminate(server);
      server = null;
      log.text += '\n--- restart ---\n';
      server = await launch(dataDir, port, env, log);
      loadOpenrc();
    },
    async stop() {
      if (server) cloud.lastExit = await terminate(server);
      server = null;
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
  const loadOpenrc = () => {
    cloud.adminEnv = readOpenrc(dataDir, 'admin-openrc.sh');
    cloud.demoEnv = readOpenrc(dataDir, 'demo-openrc.sh');
    cloud.url = cloud.adminEnv.OS_AUTH_URL ?? '';
  };
  try {
    loadOpenrc();
  } catch (err) {
    await cloud.stop();
    throw err;
  }
  return cloud;
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface CliOptions {
  /** Kill the CLI after this long (default 120 s); the result then has code -1. */
  timeoutMs?: number;
}

// An empty HOME, so no clouds.yaml or cache of the machine's user leaks into the CLI.
let cliHome: string | null = null;
function cleanHome(): string {
  if (!cliHome) {
    const home = mkdtempSync(join(tmpdir(), 'nubo-cli-home-'));
    process.on('exit', () => rmSync(home, { recursive: true, force: true }));
    cliHome = home;
  }
  return cliHome;
}

/**
 * Runs Debian's `openstack` with a clean environment: PATH starting with /usr/bin (so
 * Debian's python3, which has the OpenStack modules, comes first), an empty HOME,
 * LANG=C.UTF-8 and the given variables (normally OS_*) — nothing else from ours.
 */
export function openstack(env: Env, args: string[], opts: CliOptions = {}): Promise<CliResult> {
  const cleanEnv: Env = { PATH: '/usr/bin:/bin:/usr/sbin:/sbin', HOME: cleanHome(), LANG: 'C.UTF-8', ...env };
  return new Promise((resolve) => {
    const child = spawn(OPENSTACK, args, { env: cleanEnv, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
    const timeoutMs = opts.timeoutMs ?? 120_000;
    const timer = setTimeout(() => {
      stderr += `\n[harness] openstack ${args.join(' ')} killed after ${timeoutMs} ms`;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      resolve({ code: -1, stdout, stderr: stderr + `\n[harness] cannot run ${OPENSTACK}: ${err.message}` });
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, stdout, stderr });
    });
  });
}

/** Runs `openstack ARGS -f json` and parses its output; throws with stderr when it fails. */
export async function openstackJson<T = any>(env: Env, args: string[], opts: CliOptions = {}): Promise<T> {
  const result = await openstack(env, [...args, '-f', 'json'], opts);
  if (result.code !== 0) {
    throw new Error(`openstack ${args.join(' ')} -f json exited ${result.code}\nstderr:\n${result.stderr}\nstdout:\n${result.stdout}`);
  }
  try {
    return JSON.parse(result.stdout) as T;
  } catch {
    throw new Error(`openstack ${args.join(' ')} -f json printed no JSON:\n${result.stdout}\nstderr:\n${result.stderr}`);
  }
}

/** Runs a command that must succeed, returning its stdout. */
export async function openstackOk(env: Env, args: string[]): Promise<string> {
  const result = await openstack(env, args);
  assert.equal(result.code, 0, `openstack ${args.join(' ')} failed:\n${result.stderr}`);
  return result.stdout;
}

/** Runs a command that must fail with stderr matching `expected`. */
export async function openstackFails(env: Env, args: string[], expected: RegExp): Promise<CliResult> {
  const result = await openstack(env, args);
  assert.notEqual(result.code, 0, `openstack ${args.join(' ')} should have failed; stdout:\n${result.stdout}`);
  assert.match(result.stderr, expected, `openstack ${args.join(' ')}: unexpected stderr`);
  return result;
}

/**
 * Why the CLI suites cannot run, or undefined when they can. Installs the CLI with
 * scripts/install-system-deps.sh when it is missing (scripts/test.sh normally did already).
 */
export function openstackCliSkipReason(): string | undefined {
  if (existsSync(OPENSTACK)) return undefined;
  const install = spawnSync('bash', [join(repoRoot, 'scripts', 'install-system-deps.sh')], { encoding: 'utf8' });
  if (existsSync(OPENSTACK)) return undefined;
  const output = `${install.stdout ?? ''}${install.stderr ?? ''}`.trim().split('\n').slice(-3).join(' | ');
  return `${OPENSTACK} is missing and scripts/install-system-deps.sh could not install it (${output || install.error?.message || 'no output'})`;
}
