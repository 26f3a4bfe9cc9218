// A real guest under QEMU (TCG) through the Compute API: the cloud runs in-process with
// [compute] driver = qemu, the test guest (scripts/build-test-image) is uploaded to the Image
// service, and one server goes through boot, console output, stop/start, pause/unpause,
// suspend/resume, soft and hard reboot, os-interface hot-plug (the guest sees the NIC come, keep
// it across suspend/resume, and go; a port attached while SHUTOFF is on the next command line),
// an agent restart (re-adoption) and delete. One guest for all of it: a boot costs about 9 s of TCG.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startComputeAgent } from '../../src/compute/agent/agent.js';
import { createLogger } from '../../src/core/log.js';
import { ComputeCloud, assertError, sleep } from '../compute/harness.js';
import { guestConsole, heartbeats, startQemuCloud, waitForConsole } from '../support/guest.js';
import { missingTool } from '../support/tools.js';

const skip = missingTool('qemu-system-x86_64', 'qemu-img', 'genisoimage', 'socat');

const BOOT_MS = 90_000;
const userData = '#!/bin/sh\necho hello from user data\n';

describe('QEMU driver through the Compute API', { skip, timeout: 600_000 }, () => {
  let cc: ComputeCloud;
  let imageId: string;
  let serverId: string;
  const started = Date.now();
  const elapsed = () => `${((Date.now() - started) / 1000).toFixed(1)} s`;

  const consoleText = (length?: number) => guestConsole(cc, serverId, length);
  const count = (text: string, marker: RegExp) => [...text.matchAll(new RegExp(marker.source, 'g'))].length;
  const waitConsole = (what: string, done: (text: string) => boolean, timeoutMs = BOOT_MS) => waitForConsole(cc, serverId, what, done, timeoutMs);
  const readyCount = (text: string) => count(text, /=== NUBO-GUEST-READY uptime=[\d.]+ ===/);
  const lastBeat = (text: string) => heartbeats(text).pop() ?? 0;
  /** Runs a server action and waits until the server reaches `status` with no task. */
  const actAndWait = async (body: unknown, status: string) => {
    const res = await cc.act(serverId, body);
    assert.equal(res.status, 202, res.text);
    const server = await cc.waitServer(serverId, (s) => s['OS-EXT-STS:task_state'] === null && s.status === status, undefined, 120_000);
    assert.equal(server.status, status);
    return server;
  };
  const instanceDir = () => join(cc.dataDir, 'instances', serverId);
  const net = (path: string) => `${cc.cloud.url}/networking/v2.0${path}`;
  let networkId: string;
  let bootMac: string;
  let hotPort: { id: string; mac_address: string };
  /** Types a line into the guest's shell on its serial console (console.sock). */
  const typeOnConsole = (line: string) => new Promise<void>((resolve, reject) => {
    const socket = connect(join(instanceDir(), 'console.sock'), () => socket.end(`\n${line}\n`, () => resolve()));
    socket.once('error', reject);
  });
  let nicRound = 0;
  /** The MACs the guest lists in /sys/class/net, asked again (a fresh marker each round) until `done` holds. */
  const waitGuestMacs = async (what: string, done: (macs: string[]) => boolean, timeoutMs = 30_000) => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const round = ++nicRound;
      // The quotes keep the shell's echo of the typed line from matching the markers it prints.
      await typeOnConsole(`echo NUBO-NICS""-${round}; cat /sys/class/net/*/address; echo NUBO-NICS-END""-${round}`);
      const log = await waitConsole(`the NIC list ${round}`, (t) => new RegExp(`^NUBO-NICS-END-${round}\\r?$`, 'm').test(t), 15_000);
      const section = log.slice(log.search(new RegExp(`^NUBO-NICS-${round}\\r?$`, 'm')), log.search(new RegExp(`^NUBO-NICS-END-${round}\\r?$`, 'm')));
      const macs = [...section.matchAll(/^((?:[0-9a-f]{2}:){5}[0-9a-f]{2})\r?$/gm)].map((m) => m[1]);
      if (done(macs)) return macs;
      if (Date.now() > deadline) assert.fail(`${what}: the guest lists ${macs.join(' ')}`);
      await sleep(1000);
    }
  };
  /** A new port on the test network. */
  const createPort = async () => {
    const res = await cc.post(net('/ports'), { port: { network_id: networkId } });
    assert.equal(res.status, 201, res.text);
    return res.body.port as { id: string; mac_address: string };
  };
  const attachedPorts = async () => {
    const res = await cc.get(`/servers/${serverId}/os-interface`);
    assert.equal(res.status, 200, res.text);
    return (res.body.interfaceAttachments as any[]).map((a) => ({ portId: a.port_id as string, mac: a.mac_addr as string }));
  };
  const attach = async (portId: string) => {
    const res = await cc.post(`/servers/${serverId}/os-interface`, { interfaceAttachment: { port_id: portId } });
    assert.equal(res.status, 200, res.text);
  };
  /** DELETE os-interface, then polls until the server no longer lists the port. */
  const detach = async (portId: string) => {
    const res = await cc.delete(`/servers/${serverId}/os-interface/${portId}`);
    assert.equal(res.status, 202, res.text);
    for (let i = 0; (await attachedPorts()).some((p) => p.portId === portId); i++) {
      if (i > 100) assert.fail(`port ${portId} is still attached`);
      await sleep(200);
    }
  };
  const qemuCmdline = () => readFileSync(`/proc/${readFileSync(join(instanceDir(), 'qemu.pid'), 'utf8').trim()}/cmdline`, 'utf8').split('\0');

  before(async () => {
    ({ cc, imageId } = await startQemuCloud('vm', { DEFAULT: { shutdown_timeout: '20' } }));
    const network = await cc.post(net('/networks'), { network: { name: 'hotplug' } });
    assert.equal(network.status, 201, network.text);
    networkId = network.body.network.id;
    const subnet = await cc.post(net('/subnets'), { subnet: { network_id: networkId, ip_version: 4, cidr: '10.20.0.0/24' } });
    assert.equal(subnet.status, 201, subnet.text);
  });

  after(async () => {
    // QEMUs outlive the agent: end whatever a failed test left running before the cloud and its directory go.
    const driver = cc?.cloud.agents[0]?.driver;
    for (const uuid of (await driver?.listInstances()) ?? []) await driver!.destroy(uuid);
    await cc?.close();
  });

  it('reports a QEMU hypervisor with the accelerator it uses', async () => {
    const res = await cc.get('/os-hypervisors/detail', { microversion: '2.28' });
    assert.equal(res.status, 200, res.text);
    const [hv] = res.body.hypervisors;
    assert.equal(hv.hypervisor_type, 'QEMU');
    assert.ok(hv.hypervisor_version >= 2_000_000, `version ${hv.hypervisor_version}`);
    assert.equal(hv.cpu_info.accelerator, 'tcg');
    assert.ok(hv.vcpus >= 1 && hv.memory_mb > 0 && hv.local_gb > 0, JSON.stringify(hv));
  });

  it('boots the guest: ACTIVE, markers and heartbeats in the console output', async () => {
    const bootStart = Date.now();
    // A flavor with CPU limits (Nova's quota:* extra specs) that do not slow a 1-vCPU TCG guest down.
    const flavor = await cc.post('/flavors', { flavor: { name: 'vm.limited', ram: 512, vcpus: 1, disk: 1, id: 'vm-limited' } });
    assert.equal(flavor.status, 200, flavor.text);
    const specs = await cc.post('/flavors/vm-limited/os-extra_specs', { extra_specs: { 'quota:cpu_shares': '1536', 'quota:cpu_period': '100000', 'quota:cpu_quota': '200000' } });
    assert.equal(specs.status, 200, specs.text);
    const server = await cc.boot({ name: 'qemu-vm', imageRef: imageId, flavorRef: 'vm-limited', config_drive: true, user_data: Buffer.from(userData).toString('base64') });
    serverId = server.id;
    const active = await cc.waitServer(serverId, (s) => s.status !== 'BUILD', undefined, BOOT_MS);
    assert.equal(active.status, 'ACTIVE', JSON.stringify(active.fault));
    assert.equal(active['OS-EXT-STS:power_state'], 1);
    const activeMs = Date.now() - bootStart;
    const log = await waitConsole('NUBO-GUEST-READY and two heartbeats', (t) => readyCount(t) === 1 && heartbeats(t).length >= 2);
    console.log(`# boot: ACTIVE after ${activeMs} ms, guest ready after ${Date.now() - bootStart} ms (${elapsed()})`);
    assert.match(log, /^NUBO-GUEST-BOOT\r?$/m);
    assert.match(log, new RegExp(`^NUBO-CONFIG-DRIVE-UUID ${serverId}\\r?$`, 'm'));
    assert.match(log, new RegExp(`^NUBO-METADATA-UUID ${serverId}\\r?$`, 'm'));
    assert.match(log, /^NUBO-HOSTNAME qemu-vm(\.novalocal)?\r?$/m);
    assert.match(log, new RegExp(`^NUBO-USER-DATA-BYTES ${Buffer.byteLength(userData)}\\r?$`, 'm'));
    for (const file of ['disk', 'disk.config', 'console.log', 'qmp.sock', 'metadata.sock', 'qemu.pid', 'instance.json']) {
      assert.ok(existsSync(join(instanceDir(), file)), `${file} in the instance directory`);
    }
    // QEMU runs in its own cpu cgroup with the flavor's limits.
    const pid = readFileSync(join(instanceDir(), 'qemu.pid'), 'utf8').trim();
    if (existsSync('/sys/fs/cgroup/cpu/cgroup.procs')) {
      assert.match(readFileSync(`/proc/${pid}/cgroup`, 'utf8'), new RegExp(`:cpu:/nubo/${serverId}$`, 'm'));
      const cg = `/sys/fs/cgroup/cpu/nubo/${serverId}`;
      assert.equal(readFileSync(`${cg}/cpu.shares`, 'utf8').trim(), '1536');
      assert.equal(readFileSync(`${cg}/cpu.cfs_quota_us`, 'utf8').trim(), '200000');
    }
    const tail = await consoleText(3);
    assert.equal(tail.trimEnd().split('\n').length, 3, JSON.stringify(tail));
  });

  it('answers a VNC console whose server speaks RFB', async () => {
    const res = await cc.post(`/servers/${serverId}/remote-consoles`, { remote_console: { protocol: 'vnc', type: 'novnc' } }, { microversion: '2.6' });
    assert.equal(res.status, 200, res.text);
    assert.match(res.body.remote_console.url, /token(=|%3D)/);
    const address = await cc.cloud.agents[0].driver.getVncConsole(serverId);
    assert.equal(address.host, '127.0.0.1');
    assert.ok(address.port && address.port >= 5900, JSON.stringify(address));
    const banner = await new Promise<string>((resolve, reject) => {
      const socket = connect(address.port!, address.host);
      socket.once('data', (d) => { resolve(String(d)); socket.destroy(); });
      socket.once('error', reject);
    });
    assert.match(banner, /^RFB 003\.00\d/);
  });

  it('answers os-server-diagnostics from QMP', async () => {
    const res = await cc.get(`/servers/${serverId}/diagnostics`, { microversion: '2.48' });
    assert.equal(res.status, 200, res.text);
    const d = res.body;
    assert.equal(d.state, 'running');
    assert.equal(d.driver, 'qemu');
    assert.equal(d.hypervisor, 'qemu');
    assert.equal(d.config_drive, true);
    assert.equal(d.num_cpus, 1);
    assert.ok(d.cpu_details[0].time > 0, JSON.stringify(d.cpu_details));
    assert.equal(d.memory_details.maximum, 512);
    assert.ok(d.num_disks >= 2, JSON.stringify(d.disk_details)); // root disk and config drive
    assert.ok(d.disk_details[0].read_bytes > 0, JSON.stringify(d.disk_details));
    assert.equal(d.num_nics, 1);
  });

  it('refuses changePassword without a guest agent (409)', async () => {
    const res = await cc.act(serverId, { changePassword: { adminPass: 'n3w-Passw0rd' } });
    assertError(res, 409, /guest agent/);
  });

  it('hot-plugs a port (os-interface): os-interface lists it, the guest sees its MAC', async () => {
    [bootMac] = await waitGuestMacs('the boot NIC', (macs) => macs.some((m) => m !== '00:00:00:00:00:00'));
    hotPort = await createPort();
    const attachStart = Date.now();
    await attach(hotPort.id);
    assert.ok((await attachedPorts()).some((p) => p.portId === hotPort.id && p.mac === hotPort.mac_address), 'os-interface lists the port');
    await waitGuestMacs('the hot-plugged NIC in the guest', (macs) => macs.includes(hotPort.mac_address));
    console.log(`# hot-plug: the guest sees the NIC ${Date.now() - attachStart} ms after the attach`);
  });

  it('pauses and unpauses: the heartbeat stops, then goes on', async () => {
    await actAndWait({ pause: null }, 'PAUSED');
    const paused = lastBeat(await consoleText());
    await sleep(2500);
    assert.ok(lastBeat(await consoleText()) <= paused + 1, 'no heartbeats while paused');
    await actAndWait({ unpause: null }, 'ACTIVE');
    await waitConsole('heartbeats after unpause', (t) => lastBeat(t) >= paused + 2, 15_000);
  });

  it('suspends and resumes: state saved to a file, the heartbeat continues without a reboot', async () => {
    const before = lastBeat(await consoleText());
    const suspendStart = Date.now();
    const server = await actAndWait({ suspend: null }, 'SUSPENDED');
    assert.equal(server['OS-EXT-STS:power_state'], 7);
    assert.ok(existsSync(join(instanceDir(), 'vm.state')), 'vm.state written');
    const suspendMs = Date.now() - suspendStart;
    const resumeStart = Date.now();
    await actAndWait({ resume: null }, 'ACTIVE');
    const resumeMs = Date.now() - resumeStart;
    const log = await waitConsole('heartbeats after resume', (t) => lastBeat(t) >= before + 2, 15_000);
    assert.equal(readyCount(log), 1, 'the guest did not boot again');
    assert.ok(!existsSync(join(instanceDir(), 'vm.state')), 'vm.state removed after resume');
    console.log(`# suspend ${suspendMs} ms, resume ${resumeMs} ms`);
    // The saved state has the hot-plugged NIC: the command line from the record put it at the same PCI address.
    await waitGuestMacs('the hot-plugged NIC after resume', (macs) => macs.includes(hotPort.mac_address));
  });

  it('hot-unplugs the port: the guest ejects the NIC and no longer lists its MAC', async () => {
    const detachStart = Date.now();
    await detach(hotPort.id);
    console.log(`# hot-unplug: ${Date.now() - detachStart} ms`);
    const after = await waitGuestMacs('the NIC gone from the guest', (macs) => !macs.includes(hotPort.mac_address));
    assert.ok(after.includes(bootMac), 'the boot NIC stays');
    assert.equal((await cc.get(net(`/ports/${hotPort.id}`))).body.port.device_id, '', 'the user\'s port is unbound, not deleted');
  });

  it('stops (ACPI) and starts: SHUTOFF, then the guest boots again (with a port attached while off)', async () => {
    const stopStart = Date.now();
    const stopped = await actAndWait({ 'os-stop': null }, 'SHUTOFF');
    assert.equal(stopped['OS-EXT-STS:power_state'], 4);
    console.log(`# stop ${Date.now() - stopStart} ms`);
    assert.ok(!existsSync(join(instanceDir(), 'qemu.pid')) || !isAlive(readFileSync(join(instanceDir(), 'qemu.pid'), 'utf8')), 'QEMU is gone');
    // A stopped server still has its console log.
    assert.match(await consoleText(), /NUBO-HEARTBEAT/);
    // A port attached while SHUTOFF only changes the record: the next launch has the NIC at its slot.
    const port = await createPort();
    await attach(port.id);
    await actAndWait({ 'os-start': null }, 'ACTIVE');
    assert.ok(qemuCmdline().some((a) => a.startsWith(`virtio-net-pci,`) && a.includes(`,mac=${port.mac_address},`) && a.endsWith(',addr=0x11')), qemuCmdline().join(' '));
    await waitConsole('a second boot', (t) => readyCount(t) === 2);
    await waitGuestMacs('the NIC attached while SHUTOFF', (macs) => macs.includes(port.mac_address));
    await detach(port.id); // the later cases expect the one boot NIC
    await waitGuestMacs('the NIC gone again', (macs) => !macs.includes(port.mac_address));
  });

  it('reboots soft and hard: the guest boots again each time', async () => {
    await actAndWait({ reboot: { type: 'SOFT' } }, 'ACTIVE');
    await waitConsole('a boot after the soft reboot', (t) => readyCount(t) === 3);
    await actAndWait({ reboot: { type: 'HARD' } }, 'ACTIVE');
    await waitConsole('a boot after the hard reboot', (t) => readyCount(t) === 4);
  });

  it('re-adopts the running guest after the agent restarts', async () => {
    const agent = cc.cloud.agents[0];
    const pid = Number(readFileSync(join(instanceDir(), 'qemu.pid'), 'utf8'));
    await agent.close();
    assert.ok(isAlive(String(pid)), 'QEMU outlives its agent');
    const again = await startComputeAgent({ config: cc.cloud.config, bus: cc.cloud.bus, host: agent.host, logger: createLogger('agent-again'), dataDir: cc.dataDir });
    cc.cloud.agents[0] = again;
    await again.registered;
    assert.deepEqual(await again.driver.listInstances(), [serverId]);
    assert.equal(await again.driver.powerState(serverId), 1);
    const before = lastBeat(await consoleText());
    await waitConsole('heartbeats after the agent restart', (t) => lastBeat(t) >= before + 1, 10_000);
    await actAndWait({ pause: null }, 'PAUSED');
    await actAndWait({ unpause: null }, 'ACTIVE');
  });

  it('notices a guest that powers itself off: the server becomes SHUTOFF without an API call', async () => {
    const pid = readFileSync(join(instanceDir(), 'qemu.pid'), 'utf8');
    // The guest's ttyS0 is a busybox shell on the serial console socket.
    await new Promise<void>((resolve, reject) => {
      const socket = connect(join(instanceDir(), 'console.sock'), () => socket.end('\npoweroff -f\n', () => resolve()));
      socket.once('error', reject);
    });
    const server = await cc.waitServer(serverId, (s) => s.status === 'SHUTOFF', undefined, 20_000);
    assert.equal(server['OS-EXT-STS:power_state'], 4);
    assert.ok(!isAlive(pid), 'QEMU exited');
  });

  it('deletes the server: QEMU ends and its directory goes', async () => {
    await actAndWait({ 'os-start': null }, 'ACTIVE');
    const pid = readFileSync(join(instanceDir(), 'qemu.pid'), 'utf8');
    assert.ok(isAlive(pid), 'QEMU runs again');
    const res = await cc.delete(`/servers/${serverId}`);
    assert.equal(res.status, 204, res.text);
    await cc.waitServer(serverId, (s) => s.status === 'DELETED', undefined, 30_000);
    for (let i = 0; i < 50 && (isAlive(pid) || existsSync(instanceDir())); i++) await sleep(100);
    assert.ok(!isAlive(pid), 'QEMU ended');
    assert.ok(!existsSync(instanceDir()), 'instance directory removed');
    assert.ok(!existsSync(`/sys/fs/cgroup/cpu/nubo/${serverId}`), 'cgroup removed');
    // The cached image stays for the next server.
    assert.ok(existsSync(join(cc.dataDir, 'instances', '_base', `${imageId}.qcow2`)));
    console.log(`# whole run ${elapsed()}`);
  });
});

function isAlive(pidText: string): boolean {
  const pid = Number(pidText.trim());
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    return !/State:\s+Z/.test(status);
  } catch {
    return false;
  }
}
