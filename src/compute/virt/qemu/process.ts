// One QEMU process per instance: its command line, launching it detached (-daemonize, so it
// outlives the agent and is re-adopted after a restart), and finding out whether it still runs.
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { InternalError } from '../../../core/errors.js';
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

/** What instance.json holds: the spec plus what must stay the same across launches (MACs, disks). */
export interface InstanceRecord {
  spec: InstanceSpec;
  /** One MAC per NIC, in order (the vifs' MACs, or one generated when there are none). */
  macs: string[];
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

/** The -netdev user options of NIC i: slirp network 169.254.0.0/16 so the metadata address can be forwarded (first NIC only). */
function userNetdev(i: number, metadataSocket: string): string {
  const base = `user,id=net${i},net=169.254.0.0/16,host=169.254.0.2,dhcpstart=169.254.0.15`;
  return i === 0 ? `${base},guestfwd=tcp:169.254.169.254:80-cmd:socat STDIO UNIX-CONNECT:${metadataSocket}` : base;
}

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
  record.macs.forEach((mac, i) => {
    args.push('-netdev', userNetdev(i, f.metadata), '-device', `virtio-net-pci,netdev=net${i},mac=${mac},id=nic${i}`);
  });
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
