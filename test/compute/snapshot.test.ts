// createImage, createBackup (rotation), rescue/unrescue and rebuild on fake hosts: Nova's task
// and vm states, the images in the Image service with Nova's properties, booting from a
// snapshot, refusals, failures that settle, events.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createHash } from 'node:crypto';
import { agentClient } from '../../src/compute/rpc.js';
import { assertError, startComputeCloud, type ComputeCloud } from './harness.js';

describe('snapshots, backups, rescue and rebuild', () => {
  let cc: ComputeCloud;
  let imageId: string;

  before(async () => {
    cc = await startComputeCloud({
      DEFAULT: { report_interval: '0.5', service_down_time: '2' },
      fake_driver: { fail_snapshot_name_pattern: '^snapfail', fail_rescue_name_pattern: '^rescuefail', snapshot_delay_ms: '150' },
    }, 2);
    imageId = await cc.createImage({ visibility: 'public', hw_disk_bus: 'virtio', img_signature: 'sig' });
    await cc.unlimitedQuota();
  });
  after(async () => cc?.close());

  const booted = async (name: string, token?: string, fields: Record<string, unknown> = {}) => {
    return cc.bootActive({ name, imageRef: imageId, ...fields }, { token });
  };
  const image = async (id: string) => (await cc.get(`/image/v2/images/${id}`)).body;
  const waitImage = async (id: string) => {
    for (let i = 0; i < 200; i++) {
      const res = await cc.get(`/image/v2/images/${id}`);
      if (res.status === 200 && res.body.status === 'active') return res.body;
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.fail(`image ${id} never became active`);
  };

  it('the agent holds a snapshot for the conductor to read in chunks, then releases it', async () => {
    const server = await booted('chunked', cc.demoToken);
    const host = (await cc.get(`/servers/${server.id}`)).body.server['OS-EXT-SRV-ATTR:host'];
    const agent = agentClient(cc.cloud.bus, host, 10_000);
    const held = await agent.snapshotInstance({ uuid: server.id });
    assert.equal(held.diskFormat, 'raw');
    assert.ok(held.size > 10, JSON.stringify(held));
    // Read in 7-byte chunks, the last one short; past the end is empty.
    const parts: Buffer[] = [];
    for (let offset = 0; offset < held.size; offset += 7) parts.push(Buffer.from((await agent.readSnapshotChunk({ snapshotId: held.snapshotId, offset, length: 7 })).data, 'base64'));
    const whole = Buffer.concat(parts);
    assert.equal(whole.length, held.size);
    assert.equal((await agent.readSnapshotChunk({ snapshotId: held.snapshotId, offset: held.size, length: 7 })).data, '');
    await assert.rejects(agent.readSnapshotChunk({ snapshotId: held.snapshotId, offset: -1, length: 7 }), (err: any) => err.status === 400);
    await assert.rejects(agent.readSnapshotChunk({ snapshotId: held.snapshotId, offset: 0, length: 64 * 1024 * 1024 }), (err: any) => err.status === 400);
    await agent.releaseSnapshot({ snapshotId: held.snapshotId });
    await agent.releaseSnapshot({ snapshotId: held.snapshotId }); // again: fine
    await assert.rejects(agent.readSnapshotChunk({ snapshotId: held.snapshotId, offset: 0, length: 7 }), (err: any) => err.status === 404);

    // Through the API the upload carries the same bytes: the image's hashes are those of the disk.
    const res = await cc.act(server.id, { createImage: { name: 'chunked-snap' } }, { token: cc.demoToken });
    assert.equal(res.status, 202, res.text);
    const uploaded = await waitImage(res.body.image_id);
    assert.equal(uploaded.size, whole.length);
    assert.equal(uploaded.checksum, createHash('md5').update(whole).digest('hex'));
    assert.equal(uploaded.os_hash_value, createHash('sha512').update(whole).digest('hex'));
  });

  it('createImage: 2.45 body, task states in order, Nova\'s properties, a data copy of the disk; a second server boots from it', async () => {
    const server = await booted('snappy', cc.demoToken);
    const res = await cc.act(server.id, { createImage: { name: 'snap-1', metadata: { purpose: 'test' } } }, { token: cc.demoToken });
    assert.equal(res.status, 202, res.text);
    const snapshotId = res.body.image_id;
    assert.match(snapshotId, /^[0-9a-f-]{36}$/);
    assert.equal(res.headers.get('location'), null);
    // The upload takes snapshot_delay_ms: the task state is seen moving.
    const seen = new Set<string>();
    for (;;) {
      const s = (await cc.get(`/servers/${server.id}`, { token: cc.demoToken })).body.server;
      if (s['OS-EXT-STS:task_state'] === null) break;
      seen.add(s['OS-EXT-STS:task_state']);
      assert.equal(s.status, 'ACTIVE');
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.ok(seen.has('image_pending_upload'), [...seen].join(','));
    const snap = await waitImage(snapshotId);
    assert.equal(snap.name, 'snap-1');
    assert.equal(snap.image_type, 'snapshot');
    assert.equal(snap.instance_uuid, server.id);
    assert.equal(snap.base_image_ref, imageId);
    assert.equal(snap.user_id, cc.demoUser);
    assert.equal(snap.owner, cc.demoProject);
    assert.equal(snap.visibility, 'private');
    assert.equal(snap.purpose, 'test');
    assert.equal(snap.hw_disk_bus, 'virtio', 'inherited');
    assert.equal(snap.img_signature, undefined, 'not inheritable');
    assert.equal(snap.disk_format, 'raw');
    assert.equal(snap.container_format, 'bare');
    const data = await fetch(cc.url(`/image/v2/images/${snapshotId}/file`), { headers: { 'X-Auth-Token': cc.demoToken } });
    assert.match(await data.text(), new RegExp(`^nubo fake disk\\ninstance ${server.id}\\nimage ${imageId}\\n`));
    const after = await cc.get(`/servers/${server.id}`, { token: cc.demoToken });
    assert.equal(after.body.server.status, 'ACTIVE');
    assert.equal(after.body.server['OS-EXT-STS:power_state'], 1);

    const actions = await cc.get(`/servers/${server.id}/os-instance-actions`);
    const create = actions.body.instanceActions.find((a: any) => a.action === 'createImage');
    const events = await cc.get(`/servers/${server.id}/os-instance-actions/${create.request_id}`);
    assert.deepEqual(events.body.instanceAction.events.map((e: any) => [e.event, e.result]), [['compute_snapshot_instance', 'Success']]);

    // Boot a second server from the snapshot.
    const second = await booted('from-snap', cc.demoToken, { imageRef: snapshotId });
    assert.equal(second.image.id, snapshotId);
  });

  it('createImage before 2.45 answers with the image\'s Location; works on a stopped and a locked server; refuses bad bodies and states', async () => {
    const server = await booted('snap-old');
    const res = await cc.act(server.id, { createImage: { name: 'old-style' } }, { microversion: '2.44' });
    assert.equal(res.status, 202, res.text);
    assert.equal(res.text, '');
    const location = res.headers.get('location')!;
    assert.match(location, /\/image\/v2\/images\/[0-9a-f-]{36}$/);
    await waitImage(location.split('/').pop()!);
    await cc.settled(server.id);

    assert.equal((await cc.act(server.id, { 'os-stop': null })).status, 202);
    await cc.settled(server.id);
    assert.equal((await cc.act(server.id, { lock: null })).status, 202);
    const stopped = await cc.act(server.id, { createImage: { name: 'of-stopped' } });
    assert.equal(stopped.status, 202, 'Nova checks no lock for a snapshot');
    await waitImage(stopped.body.image_id);
    const done = await cc.settled(server.id);
    assert.equal(done.status, 'SHUTOFF');
    assert.equal(done['OS-EXT-STS:power_state'], 4);

    assertError(await cc.act(server.id, { createImage: {} }), 400, "'name' is a required property");
    assertError(await cc.act(server.id, { createImage: { name: ' x' } }), 400);
    assertError(await cc.act(server.id, { createImage: { name: 'x', extra: 1 } }), 400, 'Additional properties');
    assertError(await cc.act(server.id, { createImage: { name: 'x', metadata: { k: 1 } } }), 400);
    assert.equal((await cc.act(server.id, { rescue: null })).status, 200, 'an admin rescues a locked server');
    await cc.settled(server.id);
    assertError(await cc.act(server.id, { createImage: { name: 'of-rescued' } }), 409, `Cannot 'createImage' instance ${server.id} while it is in vm_state rescued`);
  });

  it('a snapshot that fails deletes its image and leaves the server as it was', async () => {
    const server = await booted('snapfail-1');
    const res = await cc.act(server.id, { createImage: { name: 'doomed' } });
    assert.equal(res.status, 202, res.text);
    const after = await cc.settled(server.id);
    assert.equal(after.status, 'ACTIVE');
    assert.equal((await cc.get(`/image/v2/images/${res.body.image_id}`)).status, 404);
    const actions = await cc.get(`/servers/${server.id}/os-instance-actions`);
    const create = actions.body.instanceActions.find((a: any) => a.action === 'createImage');
    assert.equal(create.message, 'Error');
  });

  it('createBackup: image_type backup, backup_type, rotation keeps the newest of the type; rotation 0 keeps none', async () => {
    const server = await booted('backed-up', cc.demoToken);
    const backups: string[] = [];
    for (const n of [1, 2, 3]) {
      const res = await cc.act(server.id, { createBackup: { name: `daily-${n}`, backup_type: 'daily', rotation: 2, metadata: { n: String(n) } } }, { token: cc.demoToken });
      assert.equal(res.status, 202, res.text);
      backups.push(res.body.image_id);
      await cc.settled(server.id, cc.demoToken);
    }
    const weekly = await cc.act(server.id, { createBackup: { name: 'weekly-1', backup_type: 'weekly', rotation: '1' } }, { token: cc.demoToken, microversion: '2.44' });
    assert.equal(weekly.status, 202, weekly.text);
    assert.match(weekly.headers.get('location') ?? '', /\/compute\/v2\.1\/images\/[0-9a-f-]{36}$/);
    await cc.settled(server.id, cc.demoToken);
    const listed = await cc.get(`/image/v2/images?instance_uuid=${server.id}&sort_key=created_at&sort_dir=asc`, { token: cc.demoToken });
    assert.deepEqual(listed.body.images.map((i: any) => i.name), ['daily-2', 'daily-3', 'weekly-1']);
    const kept = await image(backups[2]);
    assert.equal(kept.image_type, 'backup');
    assert.equal(kept.backup_type, 'daily');
    assert.equal(kept.n, '3');
    assert.equal((await cc.get(`/image/v2/images/${backups[0]}`)).status, 404, 'the oldest daily backup rotated out');

    const none = await cc.act(server.id, { createBackup: { name: 'daily-4', backup_type: 'daily', rotation: 0 } }, { token: cc.demoToken });
    assert.equal(none.status, 202);
    await cc.settled(server.id, cc.demoToken);
    const left = await cc.get(`/image/v2/images?instance_uuid=${server.id}`, { token: cc.demoToken });
    assert.deepEqual(left.body.images.map((i: any) => i.name), ['weekly-1'], 'rotation 0 deletes every daily backup, the new one too');

    assertError(await cc.act(server.id, { createBackup: { name: 'x', backup_type: 'daily' } }), 400, "'rotation' is a required property");
    assertError(await cc.act(server.id, { createBackup: { name: 'x', backup_type: 'daily', rotation: -1 } }), 400);
  });

  it('rescue and unrescue: RESCUE with the adminPass, from the own or a given image; refusals; a failed rescue is ERROR', async () => {
    const server = await booted('rescuee', cc.demoToken);
    const res = await cc.act(server.id, { rescue: { adminPass: 'r3scue' } }, { token: cc.demoToken });
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(res.body, { adminPass: 'r3scue' });
    const rescued = await cc.settled(server.id, cc.demoToken);
    assert.equal(rescued.status, 'RESCUE');
    assert.equal(rescued['OS-EXT-STS:vm_state'], 'rescued');
    assert.equal(rescued['OS-EXT-STS:power_state'], 1);
    const log = await cc.act(server.id, { 'os-getConsoleOutput': {} }, { token: cc.demoToken });
    assert.match(log.body.output, new RegExp(`rescued from image ${imageId}`));
    assertError(await cc.act(server.id, { rescue: null }, { token: cc.demoToken }), 409, 'vm_state rescued');
    assertError(await cc.act(server.id, { rebuild: { imageRef: imageId } }, { token: cc.demoToken }), 409, 'vm_state rescued');
    assert.equal((await cc.act(server.id, { unrescue: null }, { token: cc.demoToken })).status, 202);
    const back = await cc.settled(server.id, cc.demoToken);
    assert.equal(back.status, 'ACTIVE');
    assertError(await cc.act(server.id, { unrescue: null }, { token: cc.demoToken }), 409, `Cannot 'unrescue' instance ${server.id} while it is in vm_state active`);

    // A stopped server is rescued too; a generated password comes back; a given rescue image is used.
    const other = await cc.createImage({ name: 'rescue-image', visibility: 'public' });
    assert.equal((await cc.act(server.id, { 'os-stop': null }, { token: cc.demoToken })).status, 202);
    await cc.settled(server.id, cc.demoToken);
    const generated = await cc.act(server.id, { rescue: { rescue_image_ref: other } }, { token: cc.demoToken });
    assert.equal(generated.status, 200, generated.text);
    assert.equal(typeof generated.body.adminPass, 'string');
    assert.equal((await cc.settled(server.id, cc.demoToken)).status, 'RESCUE');
    const log2 = await cc.act(server.id, { 'os-getConsoleOutput': {} }, { token: cc.demoToken });
    assert.match(log2.body.output, new RegExp(`rescued from image ${other}\\n$`));
    assert.equal((await cc.act(server.id, { unrescue: null }, { token: cc.demoToken })).status, 202);
    assert.equal((await cc.settled(server.id, cc.demoToken)).status, 'ACTIVE');

    assertError(await cc.act(server.id, { rescue: { rescue_image_ref: '00000000-0000-0000-0000-000000000000' } }), 400, 'is not supported');
    assertError(await cc.act(server.id, { rescue: { password: 'x' } }), 400, 'Additional properties');
    const events = (await cc.get(`/servers/${server.id}/os-instance-actions`)).body.instanceActions.map((a: any) => a.action);
    assert.deepEqual(events.slice(0, 4), ['unrescue', 'rescue', 'stop', 'unrescue']);

    const failing = await booted('rescuefail-1');
    assert.equal((await cc.act(failing.id, { rescue: null })).status, 200);
    const failed = await cc.settled(failing.id);
    assert.equal(failed.status, 'ERROR');
    assert.match(failed.fault.message, /cannot be rescued: Driver Error/);
  });

  it('rebuild: new image, name, metadata, key and user data; the server body with adminPass; a stopped server is stopped again', async () => {
    const key = await cc.post('/os-keypairs', { keypair: { name: 'rebuild-key' } }, { token: cc.demoToken });
    assert.equal(key.status, 200, key.text);
    const newImage = await cc.createImage({ name: 'new-os', visibility: 'public' });
    const server = await booted('rebuildee', cc.demoToken, { metadata: { old: '1' } });
    const res = await cc.act(server.id, {
      rebuild: {
        imageRef: newImage, name: 'rebuilt', metadata: { fresh: 'yes' }, adminPass: 'n3w', key_name: 'rebuild-key',
        user_data: Buffer.from('#!/bin/sh\necho hi\n').toString('base64'), description: 'second life', preserve_ephemeral: true,
      },
    }, { token: cc.demoToken });
    assert.equal(res.status, 202, res.text);
    assert.equal(res.body.server.status, 'REBUILD');
    assert.equal(res.body.server.name, 'rebuilt');
    assert.equal(res.body.server.adminPass, 'n3w');
    assert.equal(res.body.server.image.id, newImage);
    assert.equal(res.body.server.key_name, 'rebuild-key');
    assert.deepEqual(res.body.server.metadata, { fresh: 'yes' });
    assert.equal(res.body.server.description, 'second life');
    assert.equal(typeof res.body.server.user_data, 'string');
    const done = await cc.settled(server.id, cc.demoToken);
    assert.equal(done.status, 'ACTIVE');
    assert.equal(done['OS-EXT-STS:power_state'], 1);
    assert.equal(done.image.id, newImage);
    const log = await cc.act(server.id, { 'os-getConsoleOutput': {} }, { token: cc.demoToken });
    assert.match(log.body.output, new RegExp(`rebuilt from image ${newImage} \\(ephemeral disk kept\\)\\nbooted\\n$`));
    const rebuild = (await cc.get(`/servers/${server.id}/os-instance-actions`)).body.instanceActions[0];
    assert.equal(rebuild.action, 'rebuild');
    const events = await cc.get(`/servers/${server.id}/os-instance-actions/${rebuild.request_id}`);
    assert.deepEqual(events.body.instanceAction.events.map((e: any) => [e.event, e.result]), [['compute_rebuild_instance', 'Success']]);
    const allocs = await cc.get(`/placement/allocations/${server.id}`);
    assert.equal(Object.keys(allocs.body.allocations).length, 1, 'a rebuild keeps its allocations');

    // A stopped server ends stopped; key_name null unsets the key.
    assert.equal((await cc.act(server.id, { 'os-stop': null }, { token: cc.demoToken })).status, 202);
    await cc.settled(server.id, cc.demoToken);
    const again = await cc.act(server.id, { rebuild: { imageRef: imageId, key_name: null } }, { token: cc.demoToken });
    assert.equal(again.status, 202, again.text);
    assert.equal(again.body.server.status, 'REBUILD');
    assert.equal(typeof again.body.server.adminPass, 'string', 'generated');
    const stopped = await cc.settled(server.id, cc.demoToken);
    assert.equal(stopped.status, 'SHUTOFF');
    assert.equal(stopped['OS-EXT-STS:power_state'], 4);
    assert.equal(stopped.key_name, null);
    assert.equal(stopped.name, 'rebuilt', 'kept when not given');
  });

  it('rebuild refusals: image checks as for a create, bad bodies, microversion gates, states, locks', async () => {
    const server = await booted('rebuild-refusals', cc.demoToken);
    assertError(await cc.act(server.id, { rebuild: { imageRef: '00000000-0000-0000-0000-000000000000' } }, { token: cc.demoToken }), 400, 'Cannot find image for rebuild');
    const big = await cc.createImage({ name: 'big', visibility: 'public', min_ram: 100000 });
    assertError(await cc.act(server.id, { rebuild: { imageRef: big } }, { token: cc.demoToken }), 400, "Flavor's memory is too small for requested image.");
    const disk = await cc.createImage({ name: 'big-disk', visibility: 'public', min_disk: 50 });
    assertError(await cc.act(server.id, { rebuild: { imageRef: disk } }, { token: cc.demoToken }), 400, "Flavor's disk is smaller than the minimum size specified in image metadata");
    const queued = await cc.post('/image/v2/images', { name: 'queued', disk_format: 'raw', container_format: 'bare', visibility: 'public' });
    assertError(await cc.act(server.id, { rebuild: { imageRef: queued.body.id } }, { token: cc.demoToken }), 400, `Image ${queued.body.id} is not active.`);
    assertError(await cc.act(server.id, { rebuild: {} }, { token: cc.demoToken }), 400, "'imageRef' is a required property");
    assertError(await cc.act(server.id, { rebuild: { imageRef: imageId, key_name: 'nope' } }, { token: cc.demoToken }), 400, 'Invalid key_name provided.');
    assertError(await cc.act(server.id, { rebuild: { imageRef: imageId, key_name: 'k' } }, { token: cc.demoToken, microversion: '2.53' }), 400, 'Additional properties');
    assertError(await cc.act(server.id, { rebuild: { imageRef: imageId, user_data: 'x' } }, { token: cc.demoToken, microversion: '2.56' }), 400, 'Additional properties');
    assertError(await cc.act(server.id, { rebuild: { imageRef: imageId, description: 'd' } }, { token: cc.demoToken, microversion: '2.18' }), 400, 'Additional properties');
    assertError(await cc.act(server.id, { rebuild: { imageRef: imageId, preserve_ephemeral: 'yes' } }, { token: cc.demoToken }), 400);
    assertError(await cc.act(server.id, { rebuild: { imageRef: imageId, trusted_image_certificates: ['c1'] } }, { token: cc.demoToken }), 400, 'not supported');
    assert.equal((await cc.act(server.id, { pause: null }, { token: cc.demoToken })).status, 202);
    await cc.settled(server.id, cc.demoToken);
    assertError(await cc.act(server.id, { rebuild: { imageRef: imageId } }, { token: cc.demoToken }), 409, `Cannot 'rebuild' instance ${server.id} while it is in vm_state paused`);
    assert.equal((await cc.act(server.id, { unpause: null }, { token: cc.demoToken })).status, 202);
    await cc.settled(server.id, cc.demoToken);
    assert.equal((await cc.act(server.id, { lock: null })).status, 202);
    assertError(await cc.act(server.id, { rebuild: { imageRef: imageId } }, { token: cc.demoToken }), 409, 'is locked');
    assertError(await cc.act(server.id, { rescue: null }, { token: cc.demoToken }), 409, 'is locked');
  });

  it('rebuilds an ERROR server; one that never got a host is scheduled again (No valid host: ERROR, nothing claimed)', async () => {
    const server = await booted('reset-error');
    assert.equal((await cc.act(server.id, { 'os-resetState': { state: 'error' } })).status, 202);
    const res = await cc.act(server.id, { rebuild: { imageRef: imageId } });
    assert.equal(res.status, 202, res.text);
    assert.equal(res.body.server.status, 'REBUILD');
    const done = await cc.settled(server.id);
    assert.equal(done.status, 'ACTIVE', JSON.stringify(done.fault));

    const flavor = await cc.post('/flavors', { flavor: { name: 'needs-trait', ram: 512, vcpus: 1, disk: 1 } });
    assert.equal(flavor.status, 200, flavor.text);
    const spec = await cc.post(`/flavors/${flavor.body.flavor.id}/os-extra_specs`, { extra_specs: { 'trait:CUSTOM_NOWHERE': 'required' } });
    assert.equal(spec.status, 200, spec.text);
    const created = await cc.boot({ name: 'never-placed', imageRef: imageId, flavorRef: flavor.body.flavor.id });
    const failed = await cc.waitServer(created.id);
    assert.equal(failed.status, 'ERROR');
    assert.equal(failed['OS-EXT-SRV-ATTR:host'], null);
    assert.equal((await cc.act(created.id, { rebuild: { imageRef: imageId } })).status, 202);
    const again = await cc.settled(created.id);
    assert.equal(again.status, 'ERROR');
    assert.match(again.fault.message, /No valid host/);
    assert.deepEqual((await cc.get(`/placement/allocations/${created.id}`)).body.allocations, {});
  });
});
