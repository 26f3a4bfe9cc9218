// One QEMU process per instance: its command line, launching it detached (-daemonize, so it
// outlives the agent and is re-adopted after a restart), and finding out whether it still runs.
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Conflict, InternalError } from '../../../core/errors.js';
import type { InstanceSpec } from '../../rpc.js';
import type { Accelerator } from './host.js';

/** The files of an instance directory (qemu.md "Instance directory"). */
export const instanceFiles = (dir: string) => ({
  disk: join(dir, 'disk'),
  ephemeral: join(dir, 'disk.eph0'),
  swap: join(dir, 'disk.swap'),
  config: join(dir, 'disk.config'),
  consoleLog: join(dir, 'console.log'),
  consoleSocket: join(dir, 'console.sock'),
  qmp: join(dir, 'qmp.sock'),
  metadata: join(dir, 'metadata.sock'),
  pid: join(dir, 'qemu.pid'),
  spec: join(dir, 'instance.json'),
  state: join(dir, 'vm.state'),
});

/** One NIC of an instance: the port it carries (null for the generated NIC of an instance without ports) at a fixed guest PCI slot. */
export interface InstanceNic {
  mac: string;
  portId: string | null;
  slot: number;
}

/**
 * NICs sit at explicit PCI slots of bus 0 from 0x10 up (the pc machine has 32): disks, VGA and a rescue disk are
 * auto-assigned the low slots. So a NIC keeps its guest address across relaunches, and a hot-plugged one is at the
 * same address in a saved state or a migration's destination as in the command line built from the record.
 */
export const FIRST_NIC_SLOT = 0x10;
const LAST_NIC_SLOT = 0x1f;

/** What instance.json holds: the spec plus what must stay the same across launches (NICs, disks). */
export interface InstanceRecord {
  spec: InstanceSpec;
  /** The NICs by slot (the vifs at spawn, or one generated MAC when there are none, plus hot-plugged ports). */
  nics: InstanceNic[];
  disks: { ephemeral: boolean; swap: boolean; configDrive: boolean };
  /** The VNC port of the last launch (answered while the guest is off, as Nova's libvirt does). */
  vncPort: number | null;
  /**
   * The host that owns the directory (the last to write this record). On a shared instances_path an evacuated
   * instance's directory belongs to its new host: the old one, when it comes back, must leave it alone.
   * Absent in records written before it existed: such a directory is its reader's.
   */
  host?: string;
}

/** The file where `host` records the pid of the QEMU it started in `dir` (qemu.pid is the owner's, shared). */
export const startedByFile = (dir: string, host: string) => join(dir, `started-by.${host.replace(/[^\w.-]/g, '_')}.pid`);

export interface LaunchSettings {
  emulator: string;
  accelerator: Accelerator;
  vncListen: string;
}

/** A record as read from instance.json. Records written before NICs had slots hold `macs` (one NIC each, in order). */
export function upgradeRecord(raw: InstanceRecord & { macs?: string[] }): InstanceRecord {
  if (Array.isArray(raw.nics)) return raw;
  const { macs = [], ...rest } = raw;
  const portOf = (mac: string) => raw.spec?.vifs?.find((v) => v.macAddress === mac)?.portId ?? null;
  return { ...rest, nics: macs.map((mac, i) => ({ mac, portId: portOf(mac), slot: FIRST_NIC_SLOT + i })) };
}

/** The instance.json in `dir` (throws when there is none or it is unreadable). */
export async function readInstanceRecord(dir: string): Promise<InstanceRecord> {
  return upgradeRecord(JSON.parse(await readFile(instanceFiles(dir).spec, 'utf8')));
}

/** The lowest NIC slot no NIC of `nics` takes. */
export function freeNicSlot(nics: InstanceNic[]): number {
  for (let slot = FIRST_NIC_SLOT; slot <= LAST_NIC_SLOT; slot++) if (!nics.some((n) => n.slot === slot)) return slot;
  throw new Conflict(`No free PCI slot for another network interface (at most ${LAST_NIC_SLOT - FIRST_NIC_SLOT + 1})`);
}

/** The NICs of a new instance: its ports' in order, or one with a generated MAC when it has none. */
export function spawnNics(vifs: { macAddress: string; portId: string }[]): InstanceNic[] {
  if (vifs.length === 0) return [{ mac: randomMac(), portId: null, slot: FIRST_NIC_SLOT }];
  const nics: InstanceNic[] = [];
  for (const vif of vifs) nics.push({ mac: vif.macAddress, portId: vif.portId, slot: freeNicSlot(nics) });
  return nics;
}

/** The QEMU ids of a NIC's netdev and device, from its slot. */
export const nicIds = (nic: InstanceNic) => ({ netdev: `net${nic.slot}`, device: `nic${nic.slot}` });

/**
 * The -netdev user options of a NIC (one builder for the command line and QMP netdev_add): slirp network
 * 169.254.0.0/16 so the metadata address can be forwarded, by the first NIC (lowest slot) only.
 */
export function userNetdev(nic: InstanceNic, nics: InstanceNic[], metadataSocket: string) {
  const first = nics.every((n) => n.slot >= nic.slot);
  return {
    id: nicIds(nic).netdev, net: '169.254.0.0/16', host: '169.254.0.2', dhcpstart: '169.254.0.15',
    ...(first ? { guestfwd: `tcp:169.254.169.254:80-cmd:socat STDIO UNIX-CONNECT:${metadataSocket}` } : {}),
  };
}

/** The virtio-net-pci device of a NIC (for -device and QMP device_add). */
export function nicDevice(nic: InstanceNic) {
  const ids = nicIds(nic);
  return { driver: 'virtio-net-pci', netdev: ids.netdev, mac: nic.mac, id: ids.device, addr: `0x${nic.slot.toString(16)}` };
}

/** key=value,... as QEMU's option syntax writes it, after `first`. */
const optionString = (first: string, options: Record<string, string>) => [first, ...Object.entries(options).map(([k, v]) => `${k}=${v}`)].join(',');

/** The full command line of an instance (the same for every launch, so a saved state can be restored into it). */
export function qemuArgs(dir: string, record: InstanceRecord, settings: LaunchSettings, incoming?: string): string[] {
  const f = instanceFiles(dir);
  const { spec } = record;
  const vnc = settings.vncListen.includes(':') ? `[${settings.vncListen}]` : settings.vncListen;
  const args = [
    '-name', `guest=${spec.name.replace(/,/g, ',,')},process=nubo-${spec.uuid.slice(0, 8)}`,
    '-uuid', spec.uuid,
    '-machine', `pc,accel=${settings.accelerator}`,
    ...(settings.accelerator === 'kvm' ? ['-cpu', 'host'] : []),
    '-smp', String(Math.max(1, spec.flavor.vcpus)),
    '-m', String(Math.max(16, spec.flavor.memoryMb)),
    '-nodefaults', '-no-user-config',
    '-rtc', 'base=utc',
    '-vga', 'std',
    '-vnc', `${vnc}:0,to=4000`,
    '-chardev', `socket,id=serial0,path=${f.consoleSocket},server=on,wait=off,logfile=${f.consoleLog},logappend=on`,
    '-serial', 'chardev:serial0',
    '-qmp', `unix:${f.qmp},server=on,wait=off`,
    '-blockdev', `driver=file,filename=${f.disk},node-name=disk0-file`,
    '-blockdev', 'driver=qcow2,file=disk0-file,node-name=disk0',
    '-device', 'virtio-blk-pci,drive=disk0,id=virtio-disk0,bootindex=1',
  ];
  if (record.disks.ephemeral) {
    args.push('-blockdev', `driver=file,filename=${f.ephemeral},node-name=eph0-file`,
      '-blockdev', 'driver=raw,file=eph0-file,node-name=eph0', '-device', 'virtio-blk-pci,drive=eph0,id=virtio-eph0');
  }
  if (record.disks.swap) {
    args.push('-blockdev', `driver=file,filename=${f.swap},node-name=swap0-file`,
      '-blockdev', 'driver=raw,file=swap0-file,node-name=swap0', '-device', 'virtio-blk-pci,drive=swap0,id=virtio-swap0');
  }
  if (record.disks.configDrive) {
    // An IDE CD-ROM, as Nova's libvirt driver attaches an iso9660 config drive on x86.
    args.push('-blockdev', `driver=file,filename=${f.config},node-name=config0-file,read-only=on`,
      '-blockdev', 'driver=raw,file=config0-file,node-name=config0,read-only=on', '-device', 'ide-cd,drive=config0,id=config-drive');
  }
  for (const nic of record.nics) {
    const { driver, ...device } = nicDevice(nic);
    args.push('-netdev', optionString('user', userNetdev(nic, record.nics, f.metadata)), '-device', optionString(driver, device));
  }
  if (incoming) args.push('-incoming', incoming);
  args.push('-pidfile', f.pid, '-daemonize');
  return args;
}

/** Starts QEMU detached; resolves with its pid once it runs (QEMU's parent exits when the guest is set up). */
export function launchQemu(emulator: string, args: string[], cgroupProcs: string[] = []): Promise<number> {
  // QEMU joins the instance's cgroups before it execs, so its memory is charged there from the start.
  const [program, argv] = cgroupProcs.length === 0 ? [emulator, args]
    : ['/bin/sh', ['-c', 'for f in $NUBO_CGROUP_PROCS; do echo $$ > "$f" || { echo "cannot join the cgroup $f" >&2; exit 97; }; done; exec "$@"', 'sh', emulator, ...args]];
  return new Promise((resolve, reject) => {
    execFile(program, argv, { timeout: 60_000, env: { ...process.env, LC_ALL: 'C', NUBO_CGROUP_PROCS: cgroupProcs.join(' ') } }, (err, _stdout, stderr) => {
      if (err) {
        const code = (err as NodeJS.ErrnoException).code;
        const detail = code === 'ENOENT' ? `${emulator} is not installed on this host` : (String(stderr).trim().split('\n').filter(Boolean).pop() || err.message);
        reject(new InternalError(`QEMU did not start: ${detail}`));
        return;
      }
      const pidFile = args[args.indexOf('-pidfile') + 1];
      readFile(pidFile, 'utf8').then((text) => {
        const pid = Number(text.trim());
        if (!Number.isInteger(pid) || pid <= 0) throw new Error(`bad pid file ${pidFile}`);
        resolve(pid);
      }).catch((e) => reject(new InternalError(`QEMU started but its pid file is unreadable: ${(e as Error).message}`)));
    });
  });
}

/** Whether `pid` is a live QEMU of the instance whose directory is `dir` (guards against a reused pid). */
export function isInstanceProcess(pid: number, dir: string): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  try {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    if (cmdline === '') return false; // a zombie
    const state = /State:\s+(\w)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    if (state === 'Z' || state === 'X') return false;
    return cmdline.includes(join(dir, 'qmp.sock'));
  } catch {
    return false;
  }
}

/** The pid in the instance's pid file when that process is its QEMU, else null. */
export function runningPid(dir: string): number | null {
  try {
    const pid = Number(readFileSync(instanceFiles(dir).pid, 'utf8').trim());
    return Number.isInteger(pid) && pid > 0 && isInstanceProcess(pid, dir) ? pid : null;
  } catch {
    return null;
  }
}

/** A locally administered unicast MAC in QEMU's 52:54:00 range. */
export function randomMac(random: () => number = Math.random): string {
  const byte = () => Math.floor(random() * 256).toString(16).padStart(2, '0');
  return `52:54:00:${byte()}:${byte()}:${byte()}`;
}
