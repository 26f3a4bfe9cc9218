// QEMU driver edges that need no guest to boot (a blank qcow2 is enough: QEMU runs, SeaBIOS finds
// nothing): a failed spawn leaves nothing behind (image data that does not match its hash), a
// QEMU killed behind the driver's back makes the server SHUTOFF at once, and deleting it then works.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ADMIN_PASSWORD, ComputeCloud, sleep } from '../compute/harness.js';
import { send, startTestCloud } from '../support/in-process.js';
import { missingTool } from '../support/tools.js';

const skip = missingTool('qemu-system-x86_64', 'qemu-img');

describe('QEMU driver: failed spawns and vanished QEMUs', { skip, timeout: 180_000 }, () => {
  let cc: ComputeCloud;
  let blank: Buffer;
  const instances = () => join(cc.dataDir, 'instances');

  const upload = async (name: string, data: Buffer): Promise<string> => {
    const created = await cc.post('/image/v2/images', { name, disk_format: 'qcow2', container_format: 'bare' });
    assert.equal(created.status, 201, created.text);
    const res = await send(cc.url(`/image/v2/images/${created.body.id}/file`), 'PUT', { 'X-Auth-Token': cc.adminToken, 'Content-Type': 'application/octet-stream' }, new Uint8Array(data));
    assert.equal(res.status, 204, res.text);
    return created.body.id;
  };

  before(async () => {
    const work = mkdtempSync(join(tmpdir(), 'nubo-qemu-blank-'));
    const made = spawnSync('qemu-img', ['create', '-q', '-f', 'qcow2', join(work, 'blank.qcow2'), '64M'], { encoding: 'utf8' });
    assert.equal(made.status, 0, made.stderr);
    blank = readFileSync(join(work, 'blank.qcow2'));
    rmSync(work, { recursive: true, force: true });
    cc = await startTestCloud('vm-spawn', { compute: { driver: 'qemu' }, qemu: { accelerator: 'tcg' }, scheduler: { max_attempts: '1' } }, async (cloud, dataDir) => {
      const c = new ComputeCloud(cloud, dataDir);
      const admin = await c.token('admin', ADMIN_PASSWORD, 'admin');
      Object.assign(c, { adminToken: admin.token, adminProject: admin.projectId, adminUser: admin.userId });
      return c;
    });
  });

  after(async () => {
    // QEMUs outlive the agent: end whatever a failed test left running before the cloud and its directory go.
    const driver = cc?.cloud.agents[0]?.driver;
    for (const uuid of (await driver?.listInstances()) ?? []) await driver!.destroy(uuid);
    await cc?.close();
  });

  it('refuses image data that does not match its hash, and leaves nothing behind', async () => {
    const imageId = await upload('tampered', blank);
    // Change the stored bytes behind the Image service's back: its os_hash_value no longer matches.
    const stored = join(cc.dataDir, 'images', imageId);
    const data = readFileSync(stored);
    data[data.length - 1] ^= 0xff;
    writeFileSync(stored, data);
    const server = await cc.boot({ name: 'tampered', imageRef: imageId });
    const failed = await cc.waitServer(server.id, (s) => s.status !== 'BUILD', undefined, 60_000);
    assert.equal(failed.status, 'ERROR');
    assert.match(JSON.stringify(failed.fault), /os_hash_value|checksum|No valid host/);
    assert.ok(!existsSync(join(instances(), server.id)), 'no instance directory');
    assert.deepEqual(readdirSync(join(instances(), '_base')).filter((f) => f.includes(imageId)), [], 'nothing cached');
    assert.deepEqual(await cc.cloud.agents[0].driver.listInstances(), []);
  });

  it('notices a QEMU killed behind its back (SHUTOFF), and deletes the server then', async () => {
    const imageId = await upload('blank', blank);
    const server = await cc.bootActive({ name: 'blank', imageRef: imageId });
    const dir = join(instances(), server.id);
    const pid = Number(readFileSync(join(dir, 'qemu.pid'), 'utf8'));
    process.kill(pid, 'SIGKILL');
    const stopped = await cc.waitServer(server.id, (s) => s.status === 'SHUTOFF', undefined, 15_000);
    assert.equal(stopped['OS-EXT-STS:power_state'], 4);
    const res = await cc.delete(`/servers/${server.id}`);
    assert.equal(res.status, 204, res.text);
    await cc.waitServer(server.id, (s) => s.status === 'DELETED', undefined, 30_000);
    for (let i = 0; i < 50 && existsSync(dir); i++) await sleep(100);
    assert.ok(!existsSync(dir), 'instance directory removed');
    // The image stays cached for the next server.
    assert.ok(existsSync(join(instances(), '_base', `${imageId}.qcow2`)));
  });
});
