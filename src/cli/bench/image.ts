// `nubo bench image`: image upload and download throughput over HTTP against a throwaway
// all-in-one cloud started in this process, beside a plain `cp` of the same file on the same
// disk, and the server's peak memory while the data streams through it. The HTTP client is
// a separate process (transfer-client.ts), so only the server's memory is counted here.
import { fork, spawnSync, type ChildProcess } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Config } from '../../core/config.js';
import { createLogger } from '../../core/log.js';
import { startCloud, type Cloud } from '../cloud.js';
import { describeMachine, gib, mib, watchMachineCpu, watchUsage, type Machine, type ProcessUsage } from './measure.js';
import type { TransferJob, TransferMessage, TransferResult } from './transfer-client.js';

export interface ImageBenchOptions {
  /** Size of the image file in MiB. */
  sizeMb: number;
}

export interface Transfer {
  name: string;
  bytes: number;
  seconds: number;
  megabytesPerSecond: number;
  /** Throughput divided by that of `cp`. */
  ratioToCp: number;
  /** This process (the server) and the client process, during the transfer. */
  server?: ProcessUsage;
  client?: ProcessUsage;
  /** The server's largest RSS during the transfer: sampled every 20 ms, and the kernel's VmHWM (reset before it). */
  serverPeakRssBytes?: number;
  /** CPU used by every other process meanwhile, in percent of one core (other work on the machine skews results). */
  othersCpuPercent: number;
}

export interface Copy {
  bytes: number;
  seconds: number;
  megabytesPerSecond: number;
  /** CPU of the cp process, and of every other process meanwhile, in percent of one core. */
  cpuPercent: number;
  othersCpuPercent: number;
}

export interface ImageBenchReport {
  benchmark: 'image';
  date: string;
  machine: Machine;
  filesystem: string;
  sizeBytes: number;
  httpClient: string;
  /** The median of COPY_RUNS runs of cp, and every run's time. */
  copy: Copy & { runsSeconds: number[] };
  /** `dd bs=1M` of the same file: read and write through user space (context only). */
  userSpaceCopy: Copy;
  transfers: Transfer[];
  /** RSS of the server process once the cloud was up, before any data moved. */
  serverIdleRssBytes: number;
  /** Largest RSS of the server process while data moved (max over the transfers). */
  serverPeakRssBytes: number;
  clientPeakRssBytes: number;
  aim: { description: string; minRatioToCp: number; maxPeakRssBytes: number; worstRatio: number; met: boolean };
}

const ADMIN_PASSWORD = 'bench-password';
const AIM_RATIO_TO_CP = 0.8;
const AIM_PEAK_RSS_BYTES = 200 * 2 ** 20;
const CHUNK = 1 << 20;
/** cp is quick and its time varies with the page cache's state: it runs this many times. */
const COPY_RUNS = 3;

/** As in bench identity: the bench never runs on a real cloud's database, keys or broker. */
const IGNORED_ENV = ['NUBO_DATABASE__CONNECTION', 'NUBO_FERNET_TOKENS__KEY_REPOSITORY', 'NUBO_MESSAGING__TRANSPORT_URL'];

const MB = 1e6;

/** Watches this process's memory: the kernel's high-water mark (reset at start where Linux allows) and 20 ms samples. */
class RssWatch {
  private peak = process.memoryUsage.rss();
  private readonly timer: NodeJS.Timeout;

  constructor() {
    try {
      writeFileSync('/proc/self/clear_refs', '5'); // resets VmHWM to the current RSS
    } catch {
      // not Linux, or not allowed: the samples still count
    }
    this.timer = setInterval(() => {
      this.peak = Math.max(this.peak, process.memoryUsage.rss());
    }, 20);
  }

  stop(): number {
    clearInterval(this.timer);
    this.peak = Math.max(this.peak, process.memoryUsage.rss());
    return Math.max(this.peak, vmHwm() ?? 0);
  }
}

function vmHwm(): number | undefined {
  try {
    const kb = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1];
    return kb === undefined ? undefined : Number(kb) * 1024;
  } catch {
    return undefined;
  }
}

/** The HTTP client: a child node process doing one transfer at a time. */
class TransferClient {
  private readonly child: ChildProcess;

  constructor() {
    this.child = fork(new URL('./transfer-client.js', import.meta.url), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  }

  run(job: TransferJob): Promise<TransferResult> {
    return new Promise((resolve, reject) => {
      const onMessage = (message: TransferMessage) => {
        this.child.off('message', onMessage).off('exit', onExit);
        if (message.type === 'result') resolve(message.result);
        else reject(new Error(message.message));
      };
      const onExit = (code: number | null) => reject(new Error(`the transfer client exited (code ${code})`));
      this.child.on('message', onMessage).on('exit', onExit);
      this.child.send(job);
    });
  }

  stop(): void {
    if (this.child.connected) this.child.disconnect();
  }
}

/** Writes `bytes` of random data (incompressible, no sparse blocks) in 1 MiB chunks. */
function writeRandomFile(path: string, bytes: number): void {
  const chunk = Buffer.allocUnsafe(CHUNK);
  const fd = openSync(path, 'w');
  try {
    for (let written = 0; written < bytes; written += CHUNK) {
      const length = Math.min(CHUNK, bytes - written);
      randomFillSync(chunk, 0, length);
      writeSync(fd, chunk, 0, length);
    }
  } finally {
    closeSync(fd);
  }
}

/** CPU seconds of this process's children that have ended (Linux /proc/self/stat cutime + cstime; NaN elsewhere). */
function endedChildrenCpuSeconds(): number {
  try {
    const fields = readFileSync('/proc/self/stat', 'utf8').replace(/^.*\) /s, '').split(' ');
    // After "pid (comm) ": state is field 3, so cutime (16) and cstime (17) are at 13 and 14.
    return (Number(fields[13]) + Number(fields[14])) / 100; // USER_HZ is 100 on Linux
  } catch {
    return NaN;
  }
}

/** Flushes dirty pages so that one step's writeback does not slow the next (not timed). */
const sync = () => spawnSync('sync');

function filesystemOf(dir: string): string {
  const result = spawnSync('df', ['--output=source,fstype', dir], { encoding: 'utf8' });
  const line = result.status === 0 ? result.stdout.trim().split('\n')[1] : undefined;
  return line ? line.trim().replace(/\s+/, ' ') : 'unknown';
}

/**
 * Times `cp SOURCE TARGET` (coreutils: copy_file_range, an in-kernel copy), then removes the
 * copy and flushes, untimed, so the next step starts with no dirty pages.
 */
function timeCopy(source: string, target: string, bytes: number, command: string[] = ['cp', source, target]): Copy {
  const childCpuBefore = endedChildrenCpuSeconds();
  const machineCpuSince = watchMachineCpu();
  const started = performance.now();
  const copy = spawnSync(command[0]!, command.slice(1), { encoding: 'utf8' });
  const seconds = (performance.now() - started) / 1000;
  const machineCpuPercent = machineCpuSince();
  const cpuPercent = ((endedChildrenCpuSeconds() - childCpuBefore) / seconds) * 100;
  if (copy.status !== 0) throw new Error(`${command.join(' ')} failed: ${copy.stderr}`);
  rmSync(target);
  sync();
  return { bytes, seconds, megabytesPerSecond: bytes / MB / seconds, cpuPercent, othersCpuPercent: Math.max(0, machineCpuPercent - cpuPercent) };
}

export async function benchImage(options: ImageBenchOptions, progress: (line: string) => void): Promise<ImageBenchReport> {
  const machine = describeMachine();
  const sizeBytes = options.sizeMb * 2 ** 20;
  // The source file, its copy and the cloud's data dir (with DIR/images) share one directory, so one disk.
  const workDir = mkdtempSync(join(tmpdir(), 'nubo-bench-image-'));
  const dataDir = join(workDir, 'cloud');
  const source = join(workDir, 'source.img');
  const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !IGNORED_ENV.includes(name)));
  let cloud: Cloud | undefined;
  let client: TransferClient | undefined;
  try {
    progress(`writing a ${options.sizeMb} MiB file of random data...`);
    writeRandomFile(source, sizeBytes);
    sync();

    progress(`timing cp of the file on the same disk (${COPY_RUNS} runs, the median counts)...`);
    const copies: Copy[] = [];
    for (let run = 0; run < COPY_RUNS; run++) copies.push(timeCopy(source, join(workDir, 'copy.img'), sizeBytes));
    const copy = { ...[...copies].sort((a, b) => a.seconds - b.seconds)[Math.floor(COPY_RUNS / 2)]!, runsSeconds: copies.map((c) => c.seconds) };
    // For context, not for the aim: a copy through user space in 1 MiB blocks, as a server's data path goes.
    const copyTarget = join(workDir, 'copy.img');
    const userSpaceCopy = timeCopy(source, copyTarget, sizeBytes, ['dd', `if=${source}`, `of=${copyTarget}`, 'bs=1M', 'status=none']);

    progress('starting the cloud...');
    const config = new Config({}, env);
    cloud = await startCloud({ dataDir, host: '127.0.0.1', port: 0, adminPassword: ADMIN_PASSWORD, config, logger: createLogger('bench') });
    const { token } = await cloud.identity.tokens.authenticate({
      identity: { methods: ['password'], password: { user: { name: 'admin', domain: { id: 'default' }, password: ADMIN_PASSWORD } } },
      scope: { project: { name: 'admin', domain: { id: 'default' } } },
    });
    const images = `${cloud.url}/image/v2/images`;
    const headers = { 'x-auth-token': token, 'content-type': 'application/json', accept: 'application/json' };
    const created = await fetch(images, { method: 'POST', headers, body: JSON.stringify({ name: 'bench-image', disk_format: 'raw', container_format: 'bare' }) });
    if (created.status !== 201) throw new Error(`POST /v2/images: HTTP ${created.status}: ${await created.text()}`);
    const imageId = ((await created.json()) as { id: string }).id;
    const fileUrl = `${images}/${imageId}/file`;

    client = new TransferClient();
    global.gc?.();
    const serverIdleRssBytes = process.memoryUsage.rss();
    const transfers: Transfer[] = [];
    const transfer = async (name: string, job: TransferJob): Promise<TransferResult> => {
      progress(`measuring ${name}...`);
      const rss = new RssWatch();
      const usageSince = watchUsage();
      const machineCpuSince = watchMachineCpu();
      let result: TransferResult;
      let serverPeakRssBytes: number;
      try {
        result = await client!.run(job);
      } finally {
        serverPeakRssBytes = rss.stop();
      }
      const machineCpuPercent = machineCpuSince();
      const server = usageSince();
      const megabytesPerSecond = result.bytes / MB / result.seconds;
      transfers.push({
        name, bytes: result.bytes, seconds: result.seconds, megabytesPerSecond, ratioToCp: megabytesPerSecond / copy.megabytesPerSecond,
        server, client: result.usage, serverPeakRssBytes,
        othersCpuPercent: Math.max(0, machineCpuPercent - server.cpuPercent - result.usage.cpuPercent),
      });
      return result;
    };

    const uploaded = await transfer('upload (PUT /v2/images/{id}/file)', { kind: 'upload', url: fileUrl, token, file: source });
    const image = (await (await fetch(`${images}/${imageId}`, { headers })).json()) as { status: string; size: number | null };
    if (image.status !== 'active' || image.size !== sizeBytes) {
      throw new Error(`after the upload the image is ${image.status} with size ${image.size}, expected active with ${sizeBytes}`);
    }
    sync();
    const downloaded = await transfer('download (GET /v2/images/{id}/file)', { kind: 'download', url: fileUrl, token, expectBytes: sizeBytes });

    const worstRatio = Math.min(...transfers.map((t) => t.ratioToCp));
    const serverPeakRssBytes = Math.max(...transfers.map((t) => t.serverPeakRssBytes ?? 0));
    return {
      benchmark: 'image',
      date: new Date().toISOString(),
      machine,
      filesystem: filesystemOf(workDir),
      sizeBytes,
      httpClient: 'separate node process (child_process.fork), node:http; upload streams the file from disk (1 MiB reads), download counts and drops the bytes',
      copy,
      userSpaceCopy,
      transfers,
      serverIdleRssBytes,
      serverPeakRssBytes,
      clientPeakRssBytes: Math.max(uploaded.peakRssBytes, downloaded.peakRssBytes),
      aim: {
        description: `upload and download >= ${AIM_RATIO_TO_CP} of cp's speed, server peak RSS < ${mib(AIM_PEAK_RSS_BYTES)}`,
        minRatioToCp: AIM_RATIO_TO_CP,
        maxPeakRssBytes: AIM_PEAK_RSS_BYTES,
        worstRatio,
        met: worstRatio >= AIM_RATIO_TO_CP && serverPeakRssBytes < AIM_PEAK_RSS_BYTES,
      },
    };
  } finally {
    client?.stop();
    await cloud?.close();
    rmSync(workDir, { recursive: true, force: true });
  }
}

const fixed = (value: number | undefined, digits: number) => (value === undefined || Number.isNaN(value) ? '-' : value.toFixed(digits));
const usage = (u?: ProcessUsage) => (u ? `${fixed(u.cpuPercent, 0)}% / ${fixed(u.eventLoopPercent, 0)}%` : '-');

export function formatImageReport(report: ImageBenchReport): string {
  const { machine, copy, userSpaceCopy } = report;
  const header = ['measurement', 'MB/s', 'seconds', 'x cp', 'server', 'client', 'others', 'server peak RSS'];
  const percent = (value: number) => `${fixed(value, 0)}%`;
  const rows = [
    ['cp (same disk, median)', fixed(copy.megabytesPerSecond, 0), fixed(copy.seconds, 2), '1.00', '-', `${percent(copy.cpuPercent)} (cp)`, percent(copy.othersCpuPercent), '-'],
    [
      'dd bs=1M (same disk, context)', fixed(userSpaceCopy.megabytesPerSecond, 0), fixed(userSpaceCopy.seconds, 2), fixed(userSpaceCopy.megabytesPerSecond / copy.megabytesPerSecond, 2),
      '-', `${percent(userSpaceCopy.cpuPercent)} (dd)`, percent(userSpaceCopy.othersCpuPercent), '-',
    ],
    ...report.transfers.map((t) => [
      t.name, fixed(t.megabytesPerSecond, 0), fixed(t.seconds, 2), fixed(t.ratioToCp, 2), usage(t.server), usage(t.client), percent(t.othersCpuPercent),
      t.serverPeakRssBytes ? mib(t.serverPeakRssBytes) : '-',
    ]),
  ];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ').trimEnd();
  return [
    `nubo bench image — ${report.date}\n`,
    `machine:  ${machine.cpu}, ${machine.cores} cores, ${gib(machine.memoryBytes)} RAM, ${machine.os}, node ${machine.node}\n`,
    `          load average ${machine.loadAverage.toFixed(2)} at start; disk ${report.filesystem}\n`,
    `file:     ${mib(report.sizeBytes)} of random data; MB = 10^6 bytes\n`,
    `cp runs:  ${copy.runsSeconds.map((s) => `${fixed(s, 2)} s`).join(', ')} (the median counts; cp copies in the kernel with copy_file_range)\n`,
    `HTTP client: ${report.httpClient}\n`,
    `server, client: CPU in percent of one core / event loop busy percent, during the transfer; others: CPU of every other process meanwhile\n\n`,
    [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n') + '\n',
    `\nserver RSS: ${mib(report.serverIdleRssBytes)} idle, ${mib(report.serverPeakRssBytes)} peak while data moved (20 ms samples and VmHWM); client peak RSS: ${mib(report.clientPeakRssBytes)}\n`,
    `aim ${report.aim.description}: ${report.aim.met ? 'met' : 'NOT met'} (worst ${fixed(report.aim.worstRatio, 2)} x cp, peak ${mib(report.serverPeakRssBytes)})\n`,
  ].join('');
}
