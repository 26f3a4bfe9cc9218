// Live migration of a real TCG guest between QEMU agents in one process, through the API:
// host A (its own instances_path) → host B (another instances_path: block migration over NBD)
// → host C (the same instances_path as B: shared storage). The guest's heartbeat keeps counting
// across both moves and the console log the destination answers carries on from the source's.
// Also on the way: abort and force-complete of a live migration, cold migration + revert, resize + confirm, snapshot
// (a second server boots from it), rescue/unrescue, rebuild. One guest for all of it (a TCG boot costs about 9 s).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startComputeAgent, type ComputeAgent } from '../../src/compute/agent/agent.js';
import { createLogger } from '../../src/core/log.js';
import { ComputeCloud, sleep } from '../compute/harness.js';
import { guestConsole, heartbeats, startQemuCloud, waitForConsole } from '../support/guest.js';
import { missingTool } from '../support/tools.js';

const skip = missingTool('qemu-system-x86_64', 'qemu-img', 'socat');

const V = '2.79';
const MARK = 'NUBO-MIRROR-MARK';
const MARK_SECTOR = 200_000;

describe('QEMU live migration between agents', { skip, timeout: 600_000 }, () => {
  let cc: ComputeCloud;
  let imageId: string;
  let serverId: string;
  const extra: ComputeAgent[] = [];

  const consoleText = () => guestConsole(cc, serverId);
  const waitConsole = (what: string, done: (text: string) => boolean, timeoutMs = 90_000) => waitForConsole(cc, serverId, what, done, timeoutMs);
  const agentOf = (host: string) => [...cc.cloud.agents, ...extra].find((a) => a.host === host)!;

  before(async () => {
    ({ cc, imageId } = await startQemuCloud('vm-lm', {
      DEFAULT: { shutdown_timeout: '10' },
      conductor: { live_migration_poll_interval_ms: '100' }, libvirt: { live_migration_downtime: '300' },
    }));
  });

  after(async () => {
    for (const agent of [...(cc?.cloud.agents ?? []), ...extra]) {
      for (const uuid of await agent.driver.listInstances()) await agent.driver.destroy(uuid).catch(() => undefined);
    }
    for (const agent of extra) await agent.close();
    await cc?.close();
  });

  const migrate = async (host: string, start = true) => {
    const before = heartbeats(await consoleText()).pop() ?? 0;
    if (start) {
      const res = await cc.post(`/servers/${serverId}/action`, { 'os-migrateLive': { host, block_migration: 'auto' } }, { microversion: V });
      assert.equal(res.status, 202, res.text);
    }
    const server = await cc.waitServer(serverId, (s) => s['OS-EXT-STS:task_state'] === null, undefined, 120_000);
    assert.equal(server.status, 'ACTIVE', JSON.stringify(server.fault));
    assert.equal(server['OS-EXT-SRV-ATTR:host'], host);
    const migrations = await cc.get(`/servers/${serverId}/migrations`, { microversion: V });
    assert.equal(migrations.status, 200);
    const list = await cc.get(`/os-migrations?instance_uuid=${serverId}&migration_type=live-migration`, { microversion: V });
    const latest = list.body.migrations.sort((a: any, b: any) => b.id - a.id)[0];
    assert.equal(latest.status, 'completed', JSON.stringify(latest));
    assert.equal(latest.dest_compute, host);
    // The guest keeps counting on the destination, and the console log there carries on from the source's.
    const text = await waitConsole('heartbeats on the destination', (t) => (heartbeats(t).pop() ?? 0) >= before + 2, 20_000);
    const beats = heartbeats(text);
    for (let i = 1; i < beats.length; i++) assert.equal(beats[i], beats[i - 1] + 1, `heartbeats continue: ${beats.slice(Math.max(0, i - 3), i + 2)}`);
    assert.equal(beats[0], 1);
    assert.match(text, /=== NUBO-GUEST-READY uptime=[\d.]+ ===/);
    assert.equal([...text.matchAll(/NUBO-GUEST-READY/g)].length, 1, 'no second boot');
    return agentOf(host);
  };

  it('boots on host A, then block-migrates to B (own disks over NBD) and moves to C on shared storage', async () => {
    const hostA = cc.cloud.agents[0].host;
    const server = await cc.boot({ name: 'lm-vm', imageRef: imageId, flavorRef: '1' });
    serverId = server.id;
    const active = await cc.waitServer(serverId, (s) => s.status !== 'BUILD', undefined, 90_000);
    assert.equal(active.status, 'ACTIVE', JSON.stringify(active.fault));
    assert.equal(active['OS-EXT-SRV-ATTR:host'], hostA);
    await waitConsole('guest ready', (t) => t.includes('NUBO-GUEST-READY') && heartbeats(t).length >= 2);

    // B and C share an instances_path (shared storage between them); A has its own.
    const shared = join(cc.dataDir, 'instances-bc');
    for (const host of ['vm-b', 'vm-c']) {
      const agent = await startComputeAgent({ config: cc.cloud.config.with({ compute: { instances_path: shared }, libvirt: { live_migration_bandwidth: '8' } }), bus: cc.cloud.bus, host, logger: createLogger(`agent-${host}`), dataDir: cc.dataDir });
      extra.push(agent);
      await agent.registered;
    }
    assert.equal(cc.cloud.agents[0].driver.capabilities.supportsLiveMigration, true);

    // The guest writes a mark onto its disk (beyond the boot partition): block migration must carry it to B's own disk.
    await new Promise<void>((resolve, reject) => {
      const socket = connect(join(cc.dataDir, 'instances', serverId, 'console.sock'), () =>
        socket.end(`\nprintf ${MARK} | dd of=/dev/vda bs=512 seek=${MARK_SECTOR} conv=notrunc && sync\n`, () => resolve()));
      socket.once('error', reject);
    });
    await sleep(1500);
    const started = Date.now();
    const b = await migrate('vm-b');
    const blockMs = Date.now() - started;
    const blockJob = await cc.cloud.agents[0].driver.liveMigrationJob(serverId) as any;
    assert.equal(blockJob.status, 'completed');
    assert.ok(blockJob.diskTotal > 0, `the disk was mirrored: ${JSON.stringify(blockJob)}`);
    assert.ok(!existsSync(join(cc.dataDir, 'instances', serverId)), 'the source directory is gone');
    assert.deepEqual(await cc.cloud.agents[0].driver.listInstances(), []);
    assert.deepEqual(await b.driver.listInstances(), [serverId]);
    const read = spawnSync('qemu-io', ['-U', '-r', '-f', 'qcow2', '-c', `read -v ${MARK_SECTOR * 512} ${MARK.length}`, join(shared, serverId, 'disk')], { encoding: 'utf8' });
    // qemu-io's dump shows the text with '.' for punctuation.
    assert.ok(read.stdout.includes(MARK.replace(/-/g, '.')), `the mark is on B's disk: ${read.stdout}${read.stderr}`);
    console.log(`# block migration A→B: API ${blockMs} ms, QEMU total ${blockJob.totalTimeMs} ms, downtime ${blockJob.downtimeMs} ms`);
    assert.ok(blockJob.downtimeMs < 1000, `downtime ${blockJob.downtimeMs} ms`);

    // From B (8 MiB/s: slow enough that the API sees the job running even on a loaded machine): a migration aborted while it runs leaves the guest on B; one forced to complete pauses it and moves.
    const running = async () => {
      const deadline = Date.now() + 30_000;
      for (;;) {
        const res = await cc.get(`/servers/${serverId}/migrations`, { microversion: V });
        const found = res.body.migrations.find((m: any) => m.status === 'running');
        if (found) return found;
        if (Date.now() > deadline) assert.fail(`no running migration: ${res.text}`);
        await sleep(50);
      }
    };
    const start = await cc.post(`/servers/${serverId}/action`, { 'os-migrateLive': { host: 'vm-c', block_migration: 'auto' } }, { microversion: V });
    assert.equal(start.status, 202, start.text);
    const toAbort = await running();
    const abort = await cc.delete(`/servers/${serverId}/migrations/${toAbort.id}`, { microversion: V });
    assert.equal(abort.status, 202, abort.text);
    const settled = await cc.waitServer(serverId, (s) => s['OS-EXT-STS:task_state'] === null, undefined, 60_000);
    assert.equal(settled['OS-EXT-SRV-ATTR:host'], 'vm-b');
    assert.equal(settled.status, 'ACTIVE');
    assert.equal((await b.driver.liveMigrationJob(serverId))?.status, 'cancelled');
    const afterAbort = heartbeats(await consoleText()).pop() ?? 0;
    await waitConsole('heartbeats on B after the abort', (t) => (heartbeats(t).pop() ?? 0) >= afterAbort + 1, 10_000);

    const startedShared = Date.now();
    const forced = await cc.post(`/servers/${serverId}/action`, { 'os-migrateLive': { host: 'vm-c', block_migration: 'auto' } }, { microversion: V });
    assert.equal(forced.status, 202, forced.text);
    const toForce = await running();
    const force = await cc.post(`/servers/${serverId}/migrations/${toForce.id}/action`, { force_complete: null }, { microversion: V });
    assert.equal(force.status, 202, force.text);
    const c = await migrate('vm-c', false);
    const sharedMs = Date.now() - startedShared;
    const sharedJob = await b.driver.liveMigrationJob(serverId) as any;
    assert.equal(sharedJob.status, 'completed');
    assert.equal(sharedJob.diskTotal, 0, 'nothing mirrored on shared storage');
    assert.ok(sharedJob.totalTimeMs > 0 && sharedJob.memoryTotal > 0, JSON.stringify(sharedJob));
    assert.deepEqual(await b.driver.listInstances(), []);
    assert.deepEqual(await c.driver.listInstances(), [serverId]);
    assert.ok(existsSync(join(shared, serverId, 'qmp.sock')) && existsSync(join(shared, serverId, 'qemu.pid')), 'C took the usual socket and pid names');
    console.log(`# shared-storage migration B→C (forced to complete, 8 MiB/s): API ${sharedMs} ms, QEMU total ${sharedJob.totalTimeMs} ms, downtime ${sharedJob.downtimeMs} ms`);
    assert.ok(sharedJob.downtimeMs < 1000, `downtime ${sharedJob.downtimeMs} ms`);

    // C runs it for real: suspend/resume (a migration to a file, which must not mistake the incoming migration's
    // "completed" for its own) and pause/unpause through the API still work after the move.
    const beforeSuspend = heartbeats(await consoleText()).pop() ?? 0;
    assert.equal((await cc.act(serverId, { suspend: null })).status, 202);
    await cc.waitServer(serverId, (s) => s.status === 'SUSPENDED' && s['OS-EXT-STS:task_state'] === null, undefined, 60_000);
    assert.equal((await cc.act(serverId, { resume: null })).status, 202);
    await cc.waitServer(serverId, (s) => s.status === 'ACTIVE' && s['OS-EXT-STS:task_state'] === null, undefined, 60_000);
    await waitConsole('heartbeats after resume', (t) => (heartbeats(t).pop() ?? 0) >= beforeSuspend + 2, 20_000);
    assert.equal([...(await consoleText()).matchAll(/NUBO-GUEST-READY/g)].length, 1, 'resumed, not rebooted');
    const paused = await cc.act(serverId, { pause: null });
    assert.equal(paused.status, 202, paused.text);
    await cc.waitServer(serverId, (s) => s.status === 'PAUSED' && s['OS-EXT-STS:task_state'] === null, undefined, 30_000);
    assert.equal(await c.driver.powerState(serverId), 3);
    const unpaused = await cc.act(serverId, { unpause: null });
    assert.equal(unpaused.status, 202, unpaused.text);
    await cc.waitServer(serverId, (s) => s.status === 'ACTIVE' && s['OS-EXT-STS:task_state'] === null, undefined, 30_000);
  });

  it('cold-migrates C→A with the disk pulled over HTTP (revert), then resizes to a bigger root disk (confirm)', async () => {
    const hostA = cc.cloud.agents[0].host;
    const waitStatus = (status: string) => cc.waitServer(serverId, (s) => s.status === status && s['OS-EXT-STS:task_state'] === null, undefined, 120_000);
    const readyOn = async (what: string) => waitConsole(what, (t) => t.includes('NUBO-GUEST-READY') && heartbeats(t).length >= 1);

    const migrateRes = await cc.act(serverId, { migrate: { host: hostA } }, { microversion: '2.56' });
    assert.equal(migrateRes.status, 202, migrateRes.text);
    let server = await waitStatus('VERIFY_RESIZE');
    assert.equal(server['OS-EXT-SRV-ATTR:host'], hostA, JSON.stringify(server.fault));
    await readyOn('boot on A after the cold migration');
    assert.ok(existsSync(join(cc.dataDir, 'instances-bc', `${serverId}_resize`, 'disk')), 'C holds its copy until confirm or revert');
    // The mark the guest wrote before the live migrations came along in the disk A pulled from C.
    const markOnA = spawnSync('qemu-io', ['-U', '-r', '-f', 'qcow2', '-c', `read -v ${MARK_SECTOR * 512} ${MARK.length}`, join(cc.dataDir, 'instances', serverId, 'disk')], { encoding: 'utf8' });
    assert.ok(markOnA.stdout.includes(MARK.replace(/-/g, '.')), markOnA.stdout + markOnA.stderr);

    const revert = await cc.act(serverId, { revertResize: null });
    assert.equal(revert.status, 202, revert.text);
    server = await waitStatus('ACTIVE');
    assert.equal(server['OS-EXT-SRV-ATTR:host'], 'vm-c');
    assert.ok(!existsSync(join(cc.dataDir, 'instances', serverId)), 'A removed its copy');
    assert.ok(!existsSync(join(cc.dataDir, 'instances-bc', `${serverId}_resize`)));
    await readyOn('boot on C after the revert');

    const flavor = await cc.post('/flavors', { flavor: { name: 'vm.bigger', ram: 512, vcpus: 1, disk: 2, id: 'vm-bigger' } });
    assert.equal(flavor.status, 200, flavor.text);
    const resize = await cc.act(serverId, { resize: { flavorRef: 'vm-bigger' } });
    assert.equal(resize.status, 202, resize.text);
    server = await waitStatus('VERIFY_RESIZE');
    const newHost = server['OS-EXT-SRV-ATTR:host'];
    assert.notEqual(newHost, 'vm-c');
    const confirm = await cc.act(serverId, { confirmResize: null });
    assert.equal(confirm.status, 204, confirm.text);
    server = await waitStatus('ACTIVE');
    assert.equal(server.flavor.original_name ?? server.flavor.id, server.flavor.original_name ? 'vm.bigger' : 'vm-bigger');
    const dir = newHost === hostA ? join(cc.dataDir, 'instances', serverId) : join(cc.dataDir, 'instances-bc', serverId);
    const info = JSON.parse(spawnSync('qemu-img', ['info', '-U', '--output=json', join(dir, 'disk')], { encoding: 'utf8' }).stdout);
    assert.equal(info['virtual-size'], 2 * 1024 ** 3, 'the root disk grew to the new flavor');
    assert.ok(!existsSync(join(cc.dataDir, 'instances-bc', `${serverId}_resize`)), 'confirm removed the held copy');
    await readyOn('boot after the resize');
  });

  it('snapshots the running guest and boots a second server from the snapshot', async () => {
    const res = await cc.act(serverId, { createImage: { name: 'lm-vm-snap' } });
    assert.equal(res.status, 202, res.text);
    const snapshotId = res.body.image_id as string;
    const deadline = Date.now() + 120_000;
    let image: any;
    for (;;) {
      image = (await cc.get(`/image/v2/images/${snapshotId}`)).body;
      if (image.status === 'active' || Date.now() > deadline) break;
      await sleep(250);
    }
    assert.equal(image.status, 'active', JSON.stringify(image));
    assert.equal(image.disk_format, 'qcow2');
    const server = await cc.waitServer(serverId, (s) => s['OS-EXT-STS:task_state'] === null);
    assert.equal(server.status, 'ACTIVE');
    const second = await cc.boot({ name: 'from-snap', imageRef: snapshotId, flavorRef: 'vm-bigger' });
    const active = await cc.waitServer(second.id, (s) => s.status !== 'BUILD', undefined, 90_000);
    assert.equal(active.status, 'ACTIVE', JSON.stringify(active.fault));
    const until = Date.now() + 90_000;
    let text = '';
    while (!text.includes('NUBO-GUEST-READY') && Date.now() < until) {
      await sleep(500);
      text = (await cc.act(second.id, { 'os-getConsoleOutput': {} })).body.output ?? '';
    }
    assert.match(text, /NUBO-GUEST-READY/);
    // What the first guest wrote to its disk is in the snapshot.
    const dir = [join(cc.dataDir, 'instances', second.id), join(cc.dataDir, 'instances-bc', second.id)].find((d) => existsSync(d))!;
    const read = spawnSync('qemu-io', ['-U', '-r', '-f', 'qcow2', '-c', `read -v ${MARK_SECTOR * 512} ${MARK.length}`, join(dir, 'disk')], { encoding: 'utf8' });
    assert.ok(read.stdout.includes(MARK.replace(/-/g, '.')), read.stdout + read.stderr);
    assert.equal((await cc.delete(`/servers/${second.id}`)).status, 204);
    await cc.waitServer(second.id, (s) => s.status === 'DELETED', undefined, 60_000);
  });

  it('rescues (the rescue image boots with the own disk second), unrescues, then rebuilds from the image', async () => {
    const settledAs = (status: string) => cc.waitServer(serverId, (s) => s.status === status && s['OS-EXT-STS:task_state'] === null, undefined, 120_000);
    const readyCount = async () => [...(await consoleText()).matchAll(/NUBO-GUEST-READY/g)].length;
    const waitReady = async (what: string, count: number) => waitConsole(what, (t) => [...t.matchAll(/NUBO-GUEST-READY/g)].length >= count);
    const host = (await cc.get(`/servers/${serverId}`)).body.server['OS-EXT-SRV-ATTR:host'];
    const driver = agentOf(host).driver;
    const dir = host === cc.cloud.agents[0].host ? join(cc.dataDir, 'instances', serverId) : join(cc.dataDir, 'instances-bc', serverId);
    const cmdline = () => readFileSync(`/proc/${readFileSync(join(dir, 'qemu.pid'), 'utf8').trim()}/cmdline`, 'utf8').split('\0');

    let ready = await readyCount();
    const rescue = await cc.act(serverId, { rescue: { rescue_image_ref: imageId } });
    assert.equal(rescue.status, 200, rescue.text);
    await settledAs('RESCUE');
    await waitReady('the rescue system boots', ready + 1);
    const args = cmdline();
    assert.ok(args.includes(`driver=file,filename=${join(dir, 'disk.rescue')},node-name=disk0-file`), 'boots from the rescue disk');
    assert.ok(args.includes(`driver=file,filename=${join(dir, 'disk')},node-name=orig0-file`), 'its own disk is attached second');
    assert.equal(await driver.powerState(serverId), 1);

    ready = await readyCount();
    const unrescue = await cc.act(serverId, { unrescue: null });
    assert.equal(unrescue.status, 202, unrescue.text);
    await settledAs('ACTIVE');
    await waitReady('boot from its own disk again', ready + 1);
    assert.ok(!existsSync(join(dir, 'disk.rescue')));
    assert.ok(!cmdline().some((a) => a.includes('orig0')));

    ready = await readyCount();
    const rebuild = await cc.act(serverId, { rebuild: { imageRef: imageId } });
    assert.equal(rebuild.status, 202, rebuild.text);
    await settledAs('ACTIVE');
    await waitReady('boot after the rebuild', ready + 1);
    // A new root disk from the image: the mark the guest wrote is gone.
    const read = spawnSync('qemu-io', ['-U', '-r', '-f', 'qcow2', '-c', `read -v ${MARK_SECTOR * 512} ${MARK.length}`, join(dir, 'disk')], { encoding: 'utf8' });
    assert.ok(!read.stdout.includes(MARK.replace(/-/g, '.')), read.stdout);
  });

  it('deletes the migrated server on its new host', async () => {
    const res = await cc.delete(`/servers/${serverId}`);
    assert.equal(res.status, 204, res.text);
    await cc.waitServer(serverId, (s) => s.status === 'DELETED', undefined, 60_000);
  });
});
