// Per-instance CPU (and optionally memory) limits with cgroup v1, as Nova's libvirt driver
// applies a flavor's quota:* extra specs: each QEMU starts inside /sys/fs/cgroup/cpu/nubo/<uuid>
// (and cpuacct alongside, for CPU time), so every thread it makes is counted and limited.
//   quota:cpu_shares   cpu.shares (relative weight; default 1024 per vCPU, as libvirt does)
//   quota:cpu_period   cpu.cfs_period_us (1000..1000000)
//   quota:cpu_quota    cpu.cfs_quota_us (> 0 caps the instance at quota/period cores)
//   [qemu] cgroups (true)             use cgroups when the host has writable v1 cpu/cpuacct hierarchies
//   [qemu] memory_cgroup (false)      also cap memory at the flavor's RAM + memory_overhead_mb, in a memory cgroup
//                                     under this process's own (charges do not follow a moved process on
//                                     this kernel, so QEMU must start inside it)
//   [qemu] memory_overhead_mb (512)   what QEMU itself may use beyond the guest's RAM (TCG's translation cache)
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, rmdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Config } from '../../../core/config.js';
import { BadRequest } from '../../../core/errors.js';
import type { InstanceSpec } from '../../rpc.js';

const ROOT = '/sys/fs/cgroup';

export interface CgroupSettings {
  enabled: boolean;
  memory: boolean;
  memoryOverheadMb: number;
}

export function cgroupSettings(config: Config): CgroupSettings {
  const overhead = config.getInt('qemu', 'memory_overhead_mb', 512);
  if (!Number.isInteger(overhead) || overhead < 0) throw new BadRequest(`[qemu] memory_overhead_mb must be an integer >= 0, got ${overhead}`);
  return { enabled: config.getBool('qemu', 'cgroups', true), memory: config.getBool('qemu', 'memory_cgroup', false), memoryOverheadMb: overhead };
}

/** This process's cgroup path in a v1 hierarchy (from /proc/self/cgroup), '/' when not found. */
function ownPath(controller: string): string {
  try {
    for (const line of readFileSync('/proc/self/cgroup', 'utf8').split('\n')) {
      const [, controllers, path] = line.split(':');
      if (controllers?.split(',').includes(controller)) return path || '/';
    }
  } catch { /* not Linux */ }
  return '/';
}

/** The limits a flavor asks for (its quota:* extra specs); BadRequest names a bad one. */
export function cpuLimits(flavor: InstanceSpec['flavor']): { shares: number; period: number | null; quota: number | null } {
  const spec = flavor.extraSpecs ?? {};
  const int = (key: string, min: number, max: number): number | null => {
    const raw = spec[key];
    if (raw === undefined || raw === '') return null;
    const value = Number(raw);
    if (!Number.isInteger(value) || value < min || value > max) throw new BadRequest(`flavor extra spec ${key} must be an integer in ${min}..${max}, got ${raw}`);
    return value;
  };
  return {
    shares: int('quota:cpu_shares', 2, 262144) ?? 1024 * Math.max(1, flavor.vcpus),
    period: int('quota:cpu_period', 1000, 1_000_000),
    quota: int('quota:cpu_quota', 1000, 1_000_000_000),
  };
}

export class InstanceCgroups {
  private readonly cpuBase: string | null;
  private readonly memoryBase: string | null;

  constructor(private readonly settings: CgroupSettings) {
    const usable = (controller: string) => existsSync(join(ROOT, controller, 'cgroup.procs'));
    this.cpuBase = settings.enabled && usable('cpu') && usable('cpuacct') ? 'nubo' : null;
    this.memoryBase = settings.enabled && settings.memory && usable('memory') ? join(ownPath('memory'), 'nubo') : null;
  }

  /** The cgroup directories of an instance, by controller. */
  private dirs(uuid: string): Record<string, string> {
    const dirs: Record<string, string> = {};
    if (this.cpuBase) {
      dirs.cpu = join(ROOT, 'cpu', this.cpuBase, uuid);
      dirs.cpuacct = join(ROOT, 'cpuacct', this.cpuBase, uuid);
    }
    if (this.memoryBase) dirs.memory = join(ROOT, 'memory', this.memoryBase, uuid);
    return dirs;
  }

  /**
   * Makes the instance's cgroups with the flavor's limits and answers the cgroup.procs files QEMU must join
   * before it execs (empty when cgroups are off or the host does not let us write them).
   */
  async prepare(spec: InstanceSpec): Promise<string[]> {
    const limits = cpuLimits(spec.flavor); // a bad extra spec fails the spawn even where cgroups are off
    const dirs = this.dirs(spec.uuid);
    const procs: string[] = [];
    try {
      for (const dir of Object.values(dirs)) await mkdir(dir, { recursive: true });
      if (dirs.cpu) {
        await writeFile(join(dirs.cpu, 'cpu.shares'), String(limits.shares));
        await writeFile(join(dirs.cpu, 'cpu.cfs_period_us'), String(limits.period ?? 100_000));
        await writeFile(join(dirs.cpu, 'cpu.cfs_quota_us'), String(limits.quota ?? -1));
      }
      if (dirs.memory) {
        const bytes = (spec.flavor.memoryMb + this.settings.memoryOverheadMb) * 1024 * 1024;
        await writeFile(join(dirs.memory, 'memory.limit_in_bytes'), String(bytes));
      }
      for (const dir of Object.values(dirs)) procs.push(join(dir, 'cgroup.procs'));
    } catch {
      return []; // a read-only or missing hierarchy: the instance runs without limits
    }
    return procs;
  }

  /** Removes the instance's cgroups once QEMU is gone (an exiting process stays a member for a moment: retry up to 3 s). */
  async remove(uuid: string): Promise<void> {
    for (const dir of Object.values(this.dirs(uuid))) {
      for (let attempt = 0; ; attempt++) {
        try {
          await rmdir(dir);
          break;
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EBUSY' || attempt >= 30) break;
          await new Promise((r) => setTimeout(r, 100));
        }
      }
    }
  }

  /** Where the instance's cpu cgroup is (tests, diagnostics), or null without cgroups. */
  cpuDir(uuid: string): string | null {
    return this.dirs(uuid).cpu ?? null;
  }
}
