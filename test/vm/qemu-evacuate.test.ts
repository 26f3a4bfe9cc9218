// Evacuate of a real TCG guest between QEMU agents, through the API. Host A (its own instances_path) is forced
// down and the guest is rebuilt from its image on B; A's agent comes back with its QEMU still running and ends
// it. Then B dies (its QEMU killed, its agent gone) and the guest is evacuated to C, which shares B's
// instances_path: C boots it from the same disk (Nova's on_shared_storage). B's agent coming back must leave the
// directory, the disk and C's QEMU alone. Three boots of the test guest (about 10 s each under TCG).
import assert from 'node:assert/strict';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startComputeAgent, type ComputeAgent } from '../../src/compute/agent/agent.js';
import { runningPid } from '../../src/compute/virt/qemu/process.js';
import { createLogger } from '../../src/core/log.js';
import { ComputeCloud, sleep } from '../compute/harness.js';
import { guestConsole, heartbeats, startQemuCloud, waitForConsole } from '../support/guest.js';
import { missingTool } from '../support/tools.js';

const skip = missingTool('qemu-system-x86_64', 'qemu-img', 'socat');

const V = '2.79';

describe('QEMU evacuate', { skip, timeout: 600_000 }, () => {
  let cc: ComputeCloud;
  let imageId: string;
  let serverId: string;
  const extra: ComputeAgent[] = [];

  const consoleText = () => guestConsole(cc, serverId);
  const readyCount = (text: string) => [...text.matchAll(/NUBO-GUEST-READY/g)].length;
  const waitConsole = (what: string, done: (text: string) => boolean, timeoutMs = 90_000) => waitForConsole(cc, serverId, what, done, timeoutMs);
  const serviceOf = async (host: string) => (await cc.get(`/os-services?binary=nova-compute&host=${host}`, { microversion: '2.53' })).body.services[0].id as string;
  const setForcedDown = async (host: string, forcedDown: boolean) => {
    const res = await cc.put(`/os-services/${await serviceOf(host)}`, { forced_down: forcedDown }, { microversion: '2.53' });
    assert.equal(res.status, 200, res.text);
  };
  const evacuateTo = async (host: string) => {
    const res = await cc.post(`/servers/${serverId}/action`, { evacuate: { host } }, { microversion: V });
    assert.equal(res.status, 200, res.text);
    const server = await cc.waitServer(serverId, (s) => s['OS-EXT-STS:task_state'] === null, undefined, 120_000);
    assert.equal(server.status, 'ACTIVE', JSON.stringify(server.fault));
    assert.equal(server['OS-EXT-SRV-ATTR:host'], host);
  };
  const evacuation = async (source: string) => {
    const list = await cc.cloud.compute.services.migrations.list({ instanceId: serverId });
    return list.find((m) => m.migrationType === 'evacuation' && m.sourceCompute === source)!;
  };
  const waitCompleted = async (source: string) => {
    const deadline = Date.now() + 20_000;
    while ((await evacuation(source)).status !== 'completed') {
      if (Date.now() > deadline) assert.fail(`the evacuation from ${source} did not complete: ${JSON.stringify(await evacuation(source))}`);
      await sleep(100);
    }
  };
  const agentOn = (host: string, instancesPath?: string) => startComputeAgent({
    config: instancesPath ? cc.cloud.config.with({ compute: { instances_path: instancesPath } }) : cc.cloud.config,
    bus: cc.cloud.bus, host, logger: createLogger(`agent-${host}`), dataDir: cc.dataDir,
  });

  before(async () => {
    ({ cc, imageId } = await startQemuCloud('vm-ev', { DEFAULT: { shutdown_timeout: '10' } }));
  });

  after(async () => {
    for (const agent of [...(cc?.cloud.agents ?? []), ...extra]) {
      for (const uuid of await agent.driver.listInstances().catch(() => [])) await agent.driver.destroy(uuid).catch(() => undefined);
    }
    for (const agent of extra) await agent.close().catch(() => undefined);
    await cc?.close();
  });

  it('rebuilds from the image on B, then boots from the shared disk on C; the old hosts coming back leave it running', async () => {
    const hostA = cc.cloud.agents[0].host;
    const server = await cc.boot({ name: 'ev-vm', imageRef: imageId, flavorRef: '1' });
    serverId = server.id;
    const active = await cc.waitServer(serverId, (s) => s.status !== 'BUILD', undefined, 90_000);
    assert.equal(active.status, 'ACTIVE', JSON.stringify(active.fault));
    assert.equal(active['OS-EXT-SRV-ATTR:host'], hostA);
    await waitConsole('guest ready on A', (t) => t.includes('NUBO-GUEST-READY'));
    assert.equal(cc.cloud.agents[0].driver.capabilities.supportsEvacuate, true);

    // B and C share an instances_path; A has its own.
    const shared = join(cc.dataDir, 'instances-bc');
    for (const host of ['vm-b', 'vm-c']) {
      const agent = await agentOn(host, shared);
      extra.push(agent);
      await agent.registered;
    }

    // From the image: A is forced down (its agent and QEMU still run), B builds the guest anew.
    const dirA = join(cc.dataDir, 'instances', serverId);
    const pidA = runningPid(dirA);
    assert.ok(pidA !== null, 'the guest runs on A');
    await setForcedDown(hostA, true);
    try {
      await evacuateTo('vm-b');
    } finally {
      await setForcedDown(hostA, false);
    }
    await waitConsole('guest ready on B', (t) => t.includes('NUBO-GUEST-READY') && heartbeats(t).length >= 1);
    const dirB = join(shared, serverId);
    const pidB = runningPid(dirB);
    assert.ok(pidB !== null && pidB !== pidA, 'B runs its own QEMU');
    assert.equal((await evacuation(hostA)).status, 'done');

    // A's agent comes back (its QEMU still there): it ends its stale copy, disk and all; B's guest runs on.
    const oldA = cc.cloud.agents[0];
    await oldA.close();
    const agentA = await agentOn(hostA);
    extra.push(agentA);
    await agentA.registered;
    await waitCompleted(hostA);
    const deadline = Date.now() + 20_000;
    while (existsSync(dirA) || runningPid(dirA) !== null) {
      if (Date.now() > deadline) assert.fail('A still has its copy of the evacuated guest');
      await sleep(100);
    }
    assert.deepEqual(await agentA.driver.listInstances(), []);
    assert.equal(runningPid(dirB), pidB, "B's QEMU is untouched");

    // From shared storage: B dies (QEMU killed, agent gone); C boots the guest from the very same disk.
    const disk = join(dirB, 'disk');
    const inode = statSync(disk).ino;
    process.kill(pidB!, 'SIGKILL');
    const b = extra.find((a) => a.host === 'vm-b')!;
    await b.close();
    extra.splice(extra.indexOf(b), 1);
    await setForcedDown('vm-b', true);
    try {
      await evacuateTo('vm-c');
    } finally {
      await setForcedDown('vm-b', false);
    }
    // The console log is the shared directory's: B's boot and then C's, appended.
    const onC = await waitConsole('guest ready again on C', (t) => readyCount(t) >= 2);
    assert.equal(readyCount(onC), 2);
    assert.equal(statSync(disk).ino, inode, 'C reused the disk on shared storage');
    const pidC = runningPid(dirB);
    assert.ok(pidC !== null && pidC !== pidB, 'C runs the guest');
    const record = JSON.parse(readFileSync(join(dirB, 'instance.json'), 'utf8'));
    assert.equal(record.host, 'vm-c', 'the directory is C\'s now');

    // B's agent comes back: the shared directory is C's, so B keeps nothing and touches nothing.
    const agentB = await agentOn('vm-b', shared);
    extra.push(agentB);
    await agentB.registered;
    await waitCompleted('vm-b');
    assert.deepEqual(await agentB.driver.listInstances(), []);
    const beforeBeats = heartbeats(await consoleText()).pop() ?? 0;
    await waitConsole('heartbeats on C after B came back', (t) => (heartbeats(t).pop() ?? 0) >= beforeBeats + 2, 20_000);
    assert.equal(runningPid(dirB), pidC, "C's QEMU still runs");
    assert.ok(existsSync(disk) && existsSync(join(dirB, 'instance.json')), 'the directory and its disk are intact');
    // B destroying it explicitly (as the conductor may) also leaves C's guest alone.
    await agentB.driver.destroy(serverId);
    assert.equal(runningPid(dirB), pidC);
    assert.ok(existsSync(disk));
    const server2 = await cc.get(`/servers/${serverId}`);
    assert.equal(server2.body.server.status, 'ACTIVE');
  });
});
