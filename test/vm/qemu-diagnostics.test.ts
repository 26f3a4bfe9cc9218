// qemuDiagnostics against a real QEMU process (TCG, no guest OS: SeaBIOS finds no bootable disk and
// keeps the vCPU busy): CPU time from the vCPU threads, memory, disk counters from query-blockstats,
// the NIC's MAC, state and uptime. QEMU is started detached and stopped by its pid.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { qemuDiagnostics } from '../../src/compute/virt/qemu/diagnostics.js';
import { QmpClient } from '../../src/compute/virt/qemu/qmp.js';
import { legacyDiagnostics, standardDiagnostics } from '../../src/compute/api/diagnostics.js';
import { sleep } from '../compute/harness.js';
import { missingTool } from '../support/tools.js';

const skip = missingTool('qemu-system-x86_64', 'qemu-img');

const MAC = 'fa:16:3e:12:34:56';

describe('qemuDiagnostics on a real QEMU', { skip, timeout: 60_000 }, () => {
  let dir: string;
  let pid = 0;
  let qmp: QmpClient;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'nubo-qemu-diag-'));
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', join(dir, 'disk'), '16M']);
    execFileSync('qemu-img', ['create', '-q', '-f', 'raw', join(dir, 'disk.config'), '1M']);
    execFileSync('qemu-system-x86_64', [
      '-accel', 'tcg', '-nodefaults', '-S', '-m', '64', '-display', 'none',
      '-qmp', `unix:${join(dir, 'qmp.sock')},server=on,wait=off`,
      // The disk layout of the QEMU driver (process.ts): a virtio-blk root disk and an IDE CD-ROM config drive.
      '-blockdev', `driver=file,filename=${join(dir, 'disk')},node-name=disk0-file`, '-blockdev', 'driver=qcow2,file=disk0-file,node-name=disk0',
      '-device', 'virtio-blk-pci,drive=disk0,id=virtio-disk0,bootindex=1',
      '-blockdev', `driver=file,filename=${join(dir, 'disk.config')},node-name=config0-file,read-only=on`,
      '-blockdev', 'driver=raw,file=config0-file,node-name=config0,read-only=on', '-device', 'ide-cd,drive=config0,id=config-drive',
      '-netdev', 'user,id=net0', '-device', `virtio-net-pci,netdev=net0,mac=${MAC},id=nic0`,
      '-pidfile', join(dir, 'qemu.pid'), '-daemonize',
    ], { timeout: 30_000 });
    pid = Number(readFileSync(join(dir, 'qemu.pid'), 'utf8').trim());
    qmp = await QmpClient.connect(join(dir, 'qmp.sock'));
  });

  after(() => {
    qmp?.close();
    if (pid > 0) { try { process.kill(pid, 'SIGKILL'); } catch { /* already gone */ } }
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('reports a stopped (-S) guest as paused with its sizes and devices', async () => {
    const d = await qemuDiagnostics(qmp, pid, { configDrive: false });
    assert.equal(d.state, 'paused');
    assert.equal(d.driver, 'qemu');
    assert.equal(d.hypervisor, 'qemu', 'TCG');
    assert.equal(d.memoryDetails.maximum, 64);
    assert.ok(d.memoryDetails.used !== null && d.memoryDetails.used > 0, JSON.stringify(d.memoryDetails));
    assert.ok(d.uptime !== null && d.uptime >= 0 && d.uptime < 60);
    assert.deepEqual(d.cpuDetails.map((c) => c.id), [0]);
    assert.deepEqual(d.diskDetails.map((k) => k.name), ['vda', 'hda']);
    assert.deepEqual(d.nicDetails.map((n) => [n.name, n.macAddress, n.rxOctets]), [['nic0', MAC, null]]);
  });

  it('counts vCPU time and disk reads once the guest runs', async () => {
    const before = await qemuDiagnostics(qmp, pid, { configDrive: true });
    await qmp.execute('cont');
    // SeaBIOS reads the boot sector and spins; give TCG time to accumulate ticks.
    let d = before;
    for (let i = 0; i < 40; i++) {
      await sleep(100);
      d = await qemuDiagnostics(qmp, pid, { configDrive: true });
      if (d.cpuDetails[0]!.time! > before.cpuDetails[0]!.time! && d.diskDetails[0]!.readBytes! > 0) break;
    }
    assert.equal(d.state, 'running');
    assert.equal(d.configDrive, true);
    assert.ok(d.cpuDetails[0]!.time! > before.cpuDetails[0]!.time!, `CPU time grows: ${JSON.stringify([before.cpuDetails, d.cpuDetails])}`);
    assert.ok(d.diskDetails[0]!.readBytes! > 0 && d.diskDetails[0]!.readRequests! > 0, JSON.stringify(d.diskDetails));
    assert.equal(d.diskDetails[0]!.errorsCount, 0);

    // Both API shapes render it.
    const standard = standardDiagnostics(d);
    assert.equal(standard.num_disks, 2);
    assert.equal(standard.num_nics, 1);
    const legacy = legacyDiagnostics(d);
    assert.equal(legacy.memory, 64 * 1024);
    assert.equal(typeof legacy.cpu0_time, 'number');
    assert.ok(legacy.vda_read! > 0);
    assert.equal(legacy.nic0_rx, undefined, 'user-mode networking has no counters');

    await qmp.execute('stop');
    assert.equal((await qemuDiagnostics(qmp, pid, { configDrive: true })).state, 'paused');
  });
});
