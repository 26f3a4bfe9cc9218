// The metadata path with a real guest: a server booted through the API (fake hypervisor), its config
// drive made from instanceFiles, and the test guest run under QEMU TCG with guestfwd to the agent-side
// proxy's socket, exactly as the QEMU driver wires it. The guest's console must show the server's
// uuid read from both the config drive and the metadata service, its hostname and its user data size.
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startMetadataProxy, writeConfigDrive, type MetadataProxy } from '../../src/metadata/index.js';
import { startComputeCloud, type ComputeCloud } from '../compute/harness.js';
import { testGuestImage } from '../support/guest.js';
import { missingTool } from '../support/tools.js';

const QEMU = 'qemu-system-x86_64';
const skip = missingTool(QEMU, 'genisoimage', 'socat');

describe('a real guest reads its own metadata from the config drive and through the proxy', { skip, timeout: 120_000 }, () => {
  let cc: ComputeCloud;
  let work: string;
  let proxy: MetadataProxy;
  let qemu: ChildProcess | undefined;
  let exited: Promise<unknown>;
  let server: any;
  const userData = '#!/bin/sh\necho metadata guest test\n';
  const consoleLog = () => { try { return readFileSync(join(work, 'console.log'), 'utf8'); } catch { return ''; } };

  before(async () => {
    const image = testGuestImage();
    cc = await startComputeCloud({}, 1);
    work = mkdtempSync(join(tmpdir(), 'nubo-metadata-guest-'));
    const imageId = await cc.createImage();
    server = await cc.bootActive({ name: 'md-guest', imageRef: imageId, config_drive: true, user_data: Buffer.from(userData).toString('base64') });
    await writeConfigDrive(cc.cloud.bus, server.id, join(work, 'disk.config'));
    proxy = await startMetadataProxy({ bus: cc.cloud.bus, uuid: server.id, socketPath: join(work, 'metadata.sock') });
    const overlay = spawnSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', image, '-F', 'qcow2', join(work, 'disk')], { encoding: 'utf8' });
    assert.equal(overlay.status, 0, overlay.stderr);
    qemu = spawn(QEMU, [
      '-accel', 'tcg', '-m', '256', '-nodefaults', '-display', 'none', '-no-user-config',
      '-drive', `file=${join(work, 'disk')},if=virtio,format=qcow2`,
      '-drive', `file=${join(work, 'disk.config')},media=cdrom,if=ide,readonly=on`,
      '-netdev', `user,id=n0,net=169.254.0.0/16,host=169.254.0.2,dhcpstart=169.254.0.15,guestfwd=tcp:169.254.169.254:80-cmd:socat STDIO UNIX-CONNECT:${proxy.socketPath}`,
      '-device', 'virtio-net-pci,netdev=n0',
      '-serial', `file:${join(work, 'console.log')}`,
    ], { stdio: 'ignore' });
    exited = new Promise((resolve) => qemu!.on('exit', resolve));
  });

  after(async () => {
    if (qemu && qemu.exitCode === null && qemu.signalCode === null) {
      qemu.kill('SIGKILL');
      await exited;
    }
    await proxy?.close();
    await cc?.close();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('prints the server uuid from both sources, its hostname and user data size', async () => {
    const deadline = Date.now() + 90_000;
    while (!/=== NUBO-GUEST-READY uptime=/.test(consoleLog())) {
      if (Date.now() > deadline || qemu!.exitCode !== null) assert.fail(`the guest did not get ready; console:\n${consoleLog()}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    const log = consoleLog();
    assert.match(log, new RegExp(`^NUBO-CONFIG-DRIVE-UUID ${server.id}\\r?$`, 'm'), log);
    assert.match(log, new RegExp(`^NUBO-METADATA-UUID ${server.id}\\r?$`, 'm'), log);
    assert.match(log, /^NUBO-HOSTNAME md-guest\.novalocal\r?$/m, log);
    assert.match(log, new RegExp(`^NUBO-USER-DATA-BYTES ${Buffer.byteLength(userData)}\\r?$`, 'm'), log);
  });
});
