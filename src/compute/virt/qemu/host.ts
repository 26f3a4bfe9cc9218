// What the QEMU driver finds on the machine: the emulator's version, and which accelerator
// works. /dev/kvm can exist and still not run ordinary guests (on PVM hosts the kernel's
// decompressor spins forever), so KVM is trusted only after a real boot of a Linux kernel
// prints its banner within a time box; TCG otherwise.
//   [qemu] accelerator = auto | kvm | tcg   (auto: KVM when the probe boot works, else TCG)
//   [qemu] kvm_probe_timeout (10 s)          how long the probe boot may take
//   [qemu] emulator (qemu-system-x86_64)     the QEMU binary
import { spawn } from 'node:child_process';
import { accessSync, constants, readdirSync } from 'node:fs';
import type { Config } from '../../../core/config.js';
import { BadRequest } from '../../../core/errors.js';
import { run } from './disks.js';

export type Accelerator = 'kvm' | 'tcg';

export interface QemuHost {
  emulator: string;
  /** e.g. "7.2.19" */
  versionText: string;
  /** Nova's integer form: 7002019 */
  version: number;
  accelerator: Accelerator;
  /** Why this accelerator (what the probe saw). */
  acceleratorReason: string;
}

export function emulatorOf(config: Config): string {
  return config.get('qemu', 'emulator', 'qemu-system-x86_64');
}

export async function qemuVersion(emulator: string): Promise<{ text: string; number: number }> {
  const out = await run(emulator, ['--version'], 10_000);
  const match = /version (\d+)\.(\d+)(?:\.(\d+))?/.exec(out);
  if (!match) throw new Error(`cannot read the version from "${out.split('\n')[0]}"`);
  const [major, minor, patch] = [Number(match[1]), Number(match[2]), Number(match[3] ?? 0)];
  return { text: `${major}.${minor}.${patch}`, number: major * 1_000_000 + minor * 1000 + patch };
}

/** A Linux kernel on this machine to probe KVM with (the newest /boot/vmlinuz-*), or null. */
function probeKernel(): string | null {
  try {
    const kernels = readdirSync('/boot').filter((f) => f.startsWith('vmlinuz-')).sort();
    for (const k of kernels.reverse()) {
      try {
        accessSync(`/boot/${k}`, constants.R_OK);
        return `/boot/${k}`;
      } catch { /* not readable */ }
    }
  } catch { /* no /boot */ }
  return null;
}

/** Boots `kernel` under KVM and resolves true when its banner ("Linux version") reaches the serial port in time. */
function kvmBoots(emulator: string, kernel: string, timeoutMs: number): Promise<{ ok: boolean; reason: string }> {
  return new Promise((resolve) => {
    const child = spawn(emulator, ['-accel', 'kvm', '-nodefaults', '-m', '128', '-display', 'none', '-no-reboot',
      '-kernel', kernel, '-append', 'console=ttyS0 earlyprintk=serial,ttyS0,115200 panic=-1', '-serial', 'stdio', '-monitor', 'none'],
    { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    let settled = false;
    const finish = (ok: boolean, reason: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      child.kill('SIGKILL');
      resolve({ ok, reason });
    };
    const timer = setTimeout(() => finish(false, `a KVM test boot printed no kernel banner within ${timeoutMs / 1000} s`), timeoutMs);
    child.stdout.on('data', (d) => {
      out += String(d);
      if (out.includes('Linux version')) finish(true, 'a KVM test boot reached the kernel banner');
      if (out.length > 1_000_000) out = out.slice(-10_000);
    });
    child.stderr.on('data', (d) => { err += String(d); });
    child.on('error', (e) => finish(false, `KVM test boot failed: ${e.message}`));
    child.on('exit', () => finish(false, `KVM test boot exited: ${err.trim().split('\n').pop() ?? 'no output'}`));
  });
}

/** Finds the emulator's version and the accelerator to use; throws when QEMU is missing or the options are wrong. */
export async function probeQemuHost(config: Config): Promise<QemuHost> {
  const emulator = emulatorOf(config);
  const wanted = config.get('qemu', 'accelerator', 'auto');
  if (!['auto', 'kvm', 'tcg'].includes(wanted)) throw new BadRequest(`[qemu] accelerator must be auto, kvm or tcg, got "${wanted}"`);
  const version = await qemuVersion(emulator);
  const base = { emulator, versionText: version.text, version: version.number };
  if (wanted === 'tcg') return { ...base, accelerator: 'tcg', acceleratorReason: '[qemu] accelerator = tcg' };
  let kvmUsable = true;
  try {
    accessSync('/dev/kvm', constants.R_OK | constants.W_OK);
  } catch {
    kvmUsable = false;
  }
  if (!kvmUsable) {
    if (wanted === 'kvm') throw new BadRequest('[qemu] accelerator = kvm, but /dev/kvm is not usable here');
    return { ...base, accelerator: 'tcg', acceleratorReason: 'no usable /dev/kvm' };
  }
  if (wanted === 'kvm') return { ...base, accelerator: 'kvm', acceleratorReason: '[qemu] accelerator = kvm' };
  const kernel = probeKernel();
  if (!kernel) return { ...base, accelerator: 'tcg', acceleratorReason: 'no kernel in /boot to test KVM with' };
  const timeoutMs = Math.max(1, config.getInt('qemu', 'kvm_probe_timeout', 10)) * 1000;
  const probe = await kvmBoots(emulator, kernel, timeoutMs);
  return { ...base, accelerator: probe.ok ? 'kvm' : 'tcg', acceleratorReason: probe.reason };
}
