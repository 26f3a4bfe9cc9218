// Shared pieces of `nubo bench`: a latency histogram, a closed-loop runner that measures
// throughput and latency after a warm-up, how busy a process was, and the machine.
import { readFileSync } from 'node:fs';
import { availableParallelism, loadavg, release, totalmem } from 'node:os';
import { performance } from 'node:perf_hooks';

/** Buckets per power of two: about 1 % resolution, a fixed 20 KiB however many samples. */
const SUB_BUCKETS = 64;
/** Up to 2^40 ns (about 18 minutes). */
const BUCKETS = 40 * SUB_BUCKETS;

/** Log-linear latency histogram; percentiles are exact to about 1 %. */
export class LatencyHistogram {
  private readonly counts = new Float64Array(BUCKETS);
  count = 0;

  record(ms: number): void {
    const ns = Math.max(1, ms * 1e6);
    this.counts[Math.min(BUCKETS - 1, Math.floor(Math.log2(ns) * SUB_BUCKETS))]! += 1;
    this.count += 1;
  }

  /** The latency in ms below which p percent of the samples fall (NaN when empty). */
  percentile(p: number): number {
    if (this.count === 0) return NaN;
    const rank = Math.max(1, Math.ceil((p / 100) * this.count));
    let seen = 0;
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.counts[i]!;
      if (seen >= rank) return 2 ** ((i + 0.5) / SUB_BUCKETS) / 1e6; // the bucket's geometric middle
    }
    return NaN;
  }
}

export interface LoopOptions {
  /** Operations kept in flight at once. */
  concurrency: number;
  warmupMs: number;
  durationMs: number;
  /** Called (from a timer) when the measured window opens and closes. */
  onWindowStart?: () => void;
  onWindowEnd?: () => void;
}

export interface LoopResult {
  /** Operations that completed successfully inside the measured window. */
  ops: number;
  /** Operations that failed inside the measured window. */
  errors: number;
  firstError?: string;
  seconds: number;
  opsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
}

/**
 * Runs `op` in `concurrency` loops, each starting the next call when the previous one
 * finishes (a closed loop). Calls that complete during the warm-up are not counted; after it,
 * every call completing within the measured window counts, as wrk counts. Calls still in
 * flight when the window closes are awaited but not counted.
 */
export async function runClosedLoop(op: () => Promise<unknown>, options: LoopOptions): Promise<LoopResult> {
  const latency = new LatencyHistogram();
  const start = performance.now();
  const windowStart = start + options.warmupMs;
  const windowEnd = windowStart + options.durationMs;
  let errors = 0;
  let firstError: string | undefined;
  // Each hook fires once: from its timer, or at the end if a loop that never yielded to the
  // event loop (an in-process call completing in microtasks) kept the timer from running.
  const once = (hook?: () => void) => {
    let fired = false;
    return () => {
      if (!fired) hook?.();
      fired = true;
    };
  };
  const windowStarted = once(options.onWindowStart);
  const windowEnded = once(options.onWindowEnd);
  const timers = [setTimeout(windowStarted, options.warmupMs), setTimeout(windowEnded, options.warmupMs + options.durationMs)];

  const loop = async () => {
    while (performance.now() < windowEnd) {
      const began = performance.now();
      let failure: unknown;
      try {
        await op();
      } catch (err) {
        failure = err;
      }
      const ended = performance.now();
      if (ended < windowStart || ended > windowEnd) continue;
      if (failure === undefined) latency.record(ended - began);
      else {
        errors += 1;
        firstError ??= failure instanceof Error ? failure.message : String(failure);
      }
    }
  };
  try {
    await Promise.all(Array.from({ length: options.concurrency }, loop));
  } finally {
    for (const timer of timers) clearTimeout(timer);
    windowStarted();
    windowEnded();
  }
  const seconds = options.durationMs / 1000;
  return {
    ops: latency.count, errors, firstError, seconds,
    opsPerSecond: latency.count / seconds,
    p50Ms: latency.percentile(50),
    p99Ms: latency.percentile(99),
  };
}

/** How busy a process was during a window: CPU in percent of one core, event loop busy percent. */
export interface ProcessUsage { cpuPercent: number; eventLoopPercent: number }

/** Starts watching this process; the returned function gives its usage since then. */
export function watchUsage(): () => ProcessUsage {
  const cpu = process.cpuUsage();
  const loop = performance.eventLoopUtilization();
  const startedAt = performance.now();
  return () => {
    const used = process.cpuUsage(cpu);
    return {
      cpuPercent: ((used.user + used.system) / 1000 / (performance.now() - startedAt)) * 100,
      eventLoopPercent: performance.eventLoopUtilization(loop).utilization * 100,
    };
  };
}

/**
 * Starts watching the whole machine's CPU (Linux /proc/stat); the returned function gives
 * the CPU used since then by every process, in percent of one core (NaN elsewhere).
 */
export function watchMachineCpu(): () => number {
  const read = (): { busy: number; total: number } | undefined => {
    try {
      // cpu  user nice system idle iowait irq softirq steal ...
      const fields = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!.trim().split(/\s+/).slice(1, 9).map(Number);
      const total = fields.reduce((a, b) => a + b, 0);
      return { busy: total - fields[3]! - fields[4]!, total };
    } catch {
      return undefined;
    }
  };
  const before = read();
  return () => {
    const after = read();
    if (!before || !after || after.total === before.total) return NaN;
    return ((after.busy - before.busy) / (after.total - before.total)) * availableParallelism() * 100;
  };
}

export interface Machine {
  cpu: string;
  cores: number;
  memoryBytes: number;
  os: string;
  node: string;
  /** 1-minute load average when the benchmark started: other work on the machine skews results. */
  loadAverage: number;
}

export function describeMachine(): Machine {
  let cpu = 'unknown CPU';
  try {
    cpu = readFileSync('/proc/cpuinfo', 'utf8').match(/^model name\s*:\s*(.+)$/m)?.[1]?.trim() ?? cpu;
  } catch {
    // not Linux: keep "unknown CPU"
  }
  return { cpu, cores: availableParallelism(), memoryBytes: totalmem(), os: `${process.platform} ${release()}`, node: process.version, loadAverage: loadavg()[0]! };
}

export const mib = (bytes: number): string => `${(bytes / 2 ** 20).toFixed(0)} MiB`;
export const gib = (bytes: number): string => `${(bytes / 2 ** 30).toFixed(1)} GiB`;

/** Renders rows as a plain-text table with the first column left-aligned and the rest right-aligned. */
export function formatTable(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ').trimEnd();
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n') + '\n';
}
