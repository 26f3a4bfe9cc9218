// The test guest (scripts/build-test-image) boots under QEMU TCG from a copy-on-write overlay on its
// qcow2, the way the QEMU driver runs it: config drive as an IDE CD-ROM, one user-mode NIC on
// 169.254.0.0/16 whose 169.254.169.254:80 goes (guestfwd + socat) to an HTTP server on a unix
// socket. The serial log must show every marker the other suites rely on, a heartbeat that counts
// up, and the ACPI power button must make the guest power off (QEMU exits).
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { testGuestScript } from '../../src/cli/test-guest.js';
import { testGuestImage } from '../support/guest.js';
import { missingTool } from '../support/tools.js';

const QEMU = 'qemu-system-x86_64';
const BOOT_TIMEOUT_MS = 60_000;
const skip = missingTool(QEMU, 'genisoimage', 'socat');

const uuid = '6f1c2a4e-0b7d-4c3e-9a51-3d2f8e7b9c10';
const metaData = (hostname: string) => JSON.stringify({ uuid, name: 'guest-test', hostname, availability_zone: 'nova', launch_index: 0 });
const userData = '#!/bin/sh\necho hello from user data\n';

async function waitFor<T>(what: string, timeoutMs: number, probe: () => T | undefined, log: () => string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`${what} did not happen within ${timeoutMs / 1000} s; console:\n${log()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('test guest under QEMU TCG', { skip }, () => {
  let work: string;
  let image: string;
  let qemu: ChildProcess | undefined;
  let exited: Promise<number | null>;
  let metadata: http.Server;
  const requests: string[] = [];
  const consoleLog = () => { try { return readFileSync(join(work, 'console.log'), 'utf8'); } catch { return ''; } };

  before(async () => {
    image = testGuestImage();
    work = mkdtempSync(join(tmpdir(), 'nubo-test-guest-'));
    const drive = join(work, 'config', 'openstack', 'latest');
    mkdirSync(drive, { recursive: true });
    writeFileSync(join(drive, 'meta_data.json'), metaData('from-config-drive'));
    writeFileSync(join(drive, 'user_data'), userData);
    const iso = spawnSync('genisoimage', ['-o', join(work, 'disk.config'), '-ldots', '-allow-lowercase', '-allow-multidot', '-l',
      '-publisher', 'nubo', '-quiet', '-J', '-r', '-V', 'config-2', join(work, 'config')], { encoding: 'utf8' });
    assert.equal(iso.status, 0, iso.stderr);
    const overlay = spawnSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', image, '-F', 'qcow2', join(work, 'disk')], { encoding: 'utf8' });
    assert.equal(overlay.status, 0, overlay.stderr);

    metadata = http.createServer((req, res) => {
      requests.push(req.url ?? '');
      if (req.url === '/openstack/latest/meta_data.json') res.writeHead(200, { 'content-type': 'application/json' }).end(metaData('from-metadata'));
      else res.writeHead(404).end();
    });
    await new Promise<void>((resolve) => metadata.listen(join(work, 'metadata.sock'), resolve));

    qemu = spawn(QEMU, [
      '-accel', 'tcg', '-m', '256', '-nodefaults', '-display', 'none', '-no-user-config',
      '-drive', `file=${join(work, 'disk')},if=virtio,format=qcow2`,
      '-drive', `file=${join(work, 'disk.config')},media=cdrom,if=ide,readonly=on`,
      '-netdev', `user,id=n0,net=169.254.0.0/16,host=169.254.0.2,dhcpstart=169.254.0.15,guestfwd=tcp:169.254.169.254:80-cmd:socat STDIO UNIX-CONNECT:${join(work, 'metadata.sock')}`,
      '-device', 'virtio-net-pci,netdev=n0,mac=fa:16:3e:12:34:56',
      '-serial', `file:${join(work, 'console.log')}`,
      '-qmp', `unix:${join(work, 'qmp.sock')},server=on,wait=off`,
    ], { stdio: ['ignore', 'ignore', 'pipe'] });
    exited = new Promise((resolve) => qemu!.on('exit', (code) => resolve(code)));
  });

  after(async () => {
    if (qemu && qemu.exitCode === null && qemu.signalCode === null) {
      qemu.kill('SIGKILL');
      await exited;
    }
    await new Promise((resolve) => metadata?.close(resolve));
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('reuses the cached build: the script prints the same path again', () => {
    const again = spawnSync('bash', [testGuestScript()], { encoding: 'utf8' });
    assert.equal(again.status, 0, again.stderr);
    assert.equal(again.stdout.trim().split('\n').pop(), image);
    assert.match(image, /\/test-guest\/[0-9a-f]{16}\/nubo-test-guest\.qcow2$/);
  });

  it('prints the markers: config drive and metadata uuid, hostname, user data size, ready', async () => {
    await waitFor('NUBO-GUEST-READY', BOOT_TIMEOUT_MS, () => (/=== NUBO-GUEST-READY uptime=[\d.]+ ===/.test(consoleLog()) ? true : undefined), consoleLog);
    const log = consoleLog();
    assert.match(log, /^NUBO-GUEST-BOOT\r?$/m);
    assert.match(log, new RegExp(`^NUBO-CONFIG-DRIVE-UUID ${uuid}\\r?$`, 'm'));
    assert.match(log, new RegExp(`^NUBO-METADATA-UUID ${uuid}\\r?$`, 'm'));
    // The config drive wins over the metadata service for the hostname.
    assert.match(log, /^NUBO-HOSTNAME from-config-drive\r?$/m);
    assert.match(log, new RegExp(`^NUBO-USER-DATA-BYTES ${Buffer.byteLength(userData)}\\r?$`, 'm'));
    assert.ok(requests.includes('/openstack/latest/meta_data.json'), `metadata requests: ${JSON.stringify(requests)}`);
  });

  it('keeps counting NUBO-HEARTBEAT from 1, one a second', async () => {
    const beats = () => [...consoleLog().matchAll(/NUBO-HEARTBEAT (\d+)/g)].map((m) => Number(m[1]));
    const seen = await waitFor('three heartbeats', 10_000, () => (beats().length >= 3 ? beats() : undefined), consoleLog);
    assert.deepEqual(seen.slice(0, 3), [1, 2, 3]);
  });

  it('powers off on the ACPI power button (QMP system_powerdown)', async () => {
    const socket = net.createConnection(join(work, 'qmp.sock'));
    socket.on('error', () => undefined); // QEMU closes it when it exits
    let replies = '';
    socket.on('data', (chunk) => (replies += chunk.toString()));
    await waitFor('the QMP greeting', 5_000, () => (replies.includes('"QMP"') ? true : undefined), () => replies);
    socket.write('{"execute":"qmp_capabilities"}\n{"execute":"system_powerdown"}\n');
    const code = await Promise.race([exited, new Promise((r) => setTimeout(() => r('timeout'), 10_000))]);
    socket.destroy();
    assert.equal(code, 0, `QEMU did not exit after system_powerdown; QMP: ${replies}; console:\n${consoleLog()}`);
    assert.match(replies, /"event": "SHUTDOWN", "data": \{"guest": true/);
  });
});
