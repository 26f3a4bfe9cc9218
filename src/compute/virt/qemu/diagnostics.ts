// Diagnostics of a running QEMU guest (VirtDriver.diagnostics) from QMP and /proc:
//   state           query-status (prelaunch/inmigrate/paused → paused, guest-panicked → crashed, ...)
//   hypervisor      query-kvm: 'kvm' when KVM is enabled, 'qemu' under TCG
//   uptime          the QEMU process's age (/proc/<pid>/stat starttime against /proc/uptime)
//   cpu_details     query-cpus-fast gives each vCPU's thread id; its utime+stime from /proc/<pid>/task/<tid>/stat,
//                   in nanoseconds (utilisation needs two samples: null, as Nova's libvirt driver leaves it)
//   memory_details  maximum: query-memory-size-summary's base memory; used: the process's VmRSS (/proc/<pid>/status),
//                   which includes QEMU's own memory (under TCG its translation cache), so it can exceed maximum
//   disk_details    query-blockstats, one per guest disk; named vda, vdb... (virtio) and hda... (others, the config
//                   drive CD-ROM) in command-line order, the names the pre-2.48 flat dict uses
//   nic_details     query-rx-filter gives each NIC's device id and MAC. User-mode networking (slirp) has no packet
//                   counters over QMP, so the counters are null until NICs are tap devices of the Linux data plane.
import { readFile } from 'node:fs/promises';
import type { InstanceDiagnostics } from '../driver.js';

/** What diagnostics needs of a QMP connection (QmpClient has it). */
export interface QmpExecutor {
  execute(command: string, args?: Record<string, unknown>): Promise<any>;
}

/** Linux reports /proc times in USER_HZ ticks, 100 per second on every architecture QEMU runs on here. */
const TICKS_PER_SECOND = 100;
const NS_PER_TICK = 1e9 / TICKS_PER_SECOND;

const QMP_STATE: Record<string, string> = {
  running: 'running', paused: 'paused', prelaunch: 'paused', inmigrate: 'paused', postmigrate: 'paused', 'finish-migrate': 'paused',
  'restore-vm': 'paused', 'save-vm': 'paused', debug: 'paused', colo: 'paused', watchdog: 'paused', 'io-error': 'paused',
  suspended: 'suspended', shutdown: 'shutdown', 'guest-panicked': 'crashed', 'internal-error': 'crashed',
};

/** The fields of a /proc stat line after "(comm)" (comm may hold spaces and parentheses); index 0 is field 3 (state). */
function statFields(text: string): string[] {
  return text.slice(text.lastIndexOf(')') + 2).trim().split(/\s+/);
}

/** utime + stime of a thread or process, in ticks (stat fields 14 and 15). */
async function cpuTicks(path: string): Promise<number | null> {
  try {
    const fields = statFields(await readFile(path, 'utf8'));
    return Number(fields[11]) + Number(fields[12]);
  } catch {
    return null; // the thread ended meanwhile
  }
}

async function processUptimeSeconds(pid: number): Promise<number | null> {
  try {
    const startTicks = Number(statFields(await readFile(`/proc/${pid}/stat`, 'utf8'))[19]);
    const systemUptime = Number((await readFile('/proc/uptime', 'utf8')).split(' ')[0]);
    return Math.max(0, Math.floor(systemUptime - startTicks / TICKS_PER_SECOND));
  } catch {
    return null;
  }
}

async function rssMib(pid: number): Promise<number | null> {
  try {
    const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(await readFile(`/proc/${pid}/status`, 'utf8'));
    return match ? Math.ceil(Number(match[1]) / 1024) : null;
  } catch {
    return null;
  }
}

/** A command this QEMU lacks (or that fails) gives null, so one missing counter does not hide the others. */
async function optional<T>(qmp: QmpExecutor, command: string): Promise<T | null> {
  try {
    return await qmp.execute(command) as T;
  } catch {
    return null;
  }
}


const letter = (i: number) => String.fromCharCode('a'.charCodeAt(0) + i);

/**
 * The guest's diagnostics. `pid` is the QEMU process; `instance.configDrive` says whether a config drive is
 * attached, `instance.memoryMb` the -m size (used when QEMU does not answer query-memory-size-summary).
 */
export async function qemuDiagnostics(qmp: QmpExecutor, pid: number, instance: { configDrive: boolean; memoryMb?: number }): Promise<InstanceDiagnostics> {
  const [status, kvm, cpus, memory, blockstats, rxFilters] = await Promise.all([
    qmp.execute('query-status') as Promise<{ status: string }>,
    optional<{ enabled: boolean }>(qmp, 'query-kvm'),
    optional<{ 'cpu-index': number; 'thread-id': number }[]>(qmp, 'query-cpus-fast'),
    optional<{ 'base-memory': number }>(qmp, 'query-memory-size-summary'),
    optional<any[]>(qmp, 'query-blockstats'),
    optional<{ name: string; 'main-mac': string }[]>(qmp, 'query-rx-filter'),
  ]);

  const cpuDetails = await Promise.all((cpus ?? []).map(async (cpu) => {
    const ticks = await cpuTicks(`/proc/${pid}/task/${cpu['thread-id']}/stat`);
    return { id: cpu['cpu-index'], time: ticks === null ? null : ticks * NS_PER_TICK, utilisation: null };
  }));
  cpuDetails.sort((a, b) => a.id - b.id);

  let virtio = 0;
  let other = 0;
  const diskDetails = (blockstats ?? []).filter((entry) => entry.qdev || entry.device).map((entry) => {
    // A virtio-blk disk's qdev path ends in .../virtio-backend (/machine/peripheral/virtio-disk0/virtio-backend).
    const name = /virtio/.test(`${entry.qdev ?? ''} ${entry.device ?? ''}`) ? `vd${letter(virtio++)}` : `hd${letter(other++)}`;
    const s = entry.stats ?? {};
    const errors = (s.failed_rd_operations ?? 0) + (s.failed_wr_operations ?? 0) + (s.failed_flush_operations ?? 0);
    return {
      name, readBytes: s.rd_bytes ?? null, readRequests: s.rd_operations ?? null,
      writeBytes: s.wr_bytes ?? null, writeRequests: s.wr_operations ?? null, errorsCount: errors,
    };
  });

  const nicDetails = (rxFilters ?? []).map((nic) => ({
    name: nic.name, macAddress: nic['main-mac'] ?? null,
    rxOctets: null, rxErrors: null, rxDrop: null, rxPackets: null, rxRate: null,
    txOctets: null, txErrors: null, txDrop: null, txPackets: null, txRate: null,
  }));

  const maximum = memory ? Math.round(memory['base-memory'] / (1024 * 1024)) : (instance.memoryMb ?? null);
  return {
    state: QMP_STATE[status.status] ?? 'pending',
    driver: 'qemu', hypervisor: kvm?.enabled ? 'kvm' : 'qemu', hypervisorOs: 'linux',
    uptime: await processUptimeSeconds(pid),
    configDrive: instance.configDrive,
    memoryDetails: { maximum, used: await rssMib(pid) },
    cpuDetails, diskDetails, nicDetails,
  };
}
