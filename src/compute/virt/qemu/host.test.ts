// What the QEMU driver's probe finds on this machine: the emulator's version in Nova's integer
// form, and the accelerator ([qemu] accelerator) — KVM only when /dev/kvm is usable and a test
// boot reaches the kernel banner, TCG otherwise.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { describe, it } from 'node:test';
import { Config } from '../../../core/config.js';
import { probeQemuHost, qemuVersion } from './host.js';

const skip = spawnSync('qemu-system-x86_64', ['--version'], { stdio: 'ignore' }).status === 0 ? undefined : 'qemu-system-x86_64 is not installed';
const probe = (accelerator?: string) => probeQemuHost(new Config(accelerator ? { qemu: { accelerator } } : {}, {}));

describe('QEMU host probe', { skip }, () => {
  it('reads the version as major*1e6 + minor*1e3 + micro', async () => {
    const version = await qemuVersion('qemu-system-x86_64');
    const [major, minor, micro] = version.text.split('.').map(Number);
    assert.equal(version.number, major * 1_000_000 + minor * 1000 + micro);
    assert.ok(major >= 2);
  });

  it('uses TCG when told to, and refuses an unknown accelerator', async () => {
    const host = await probe('tcg');
    assert.equal(host.accelerator, 'tcg');
    await assert.rejects(probe('hvf'), /\[qemu\] accelerator must be auto, kvm or tcg/);
  });

  it('auto picks KVM only after a test boot works (TCG here without /dev/kvm)', { skip: existsSync('/dev/kvm') ? 'this machine has /dev/kvm (the probe boots for up to [qemu] kvm_probe_timeout)' : undefined }, async () => {
    const host = await probe();
    assert.equal(host.accelerator, 'tcg');
    assert.match(host.acceleratorReason, /\/dev\/kvm/);
    await assert.rejects(probe('kvm'), /\/dev\/kvm is not usable/);
  });

  it('fails clearly when the emulator is missing', async () => {
    await assert.rejects(probeQemuHost(new Config({ qemu: { emulator: 'qemu-system-nonexistent' } }, {})), /not installed/);
  });
});
