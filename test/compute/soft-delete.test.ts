// Deferred delete on fake hosts: with [DEFAULT] reclaim_instance_interval set, DELETE powers the
// server off and keeps it (and its allocations) SOFT_DELETED; restore brings it back ACTIVE,
// forceDelete deletes it now, and the conductor's reclaim task deletes it after the interval.
// With the interval 0, DELETE deletes, restore is a 409 and forceDelete deletes.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { assertError, startComputeCloud, type ComputeCloud } from './harness.js';

const RECLAIM_SECONDS = 3;

async function setup(cc: ComputeCloud): Promise<string> {
  const imageId = await cc.createImage({ visibility: 'public' });
  await cc.unlimitedQuota();
  return imageId;
}

describe('soft delete (reclaim_instance_interval set)', () => {
  let cc: ComputeCloud;
  let imageId: string;

  before(async () => {
    cc = await startComputeCloud({ DEFAULT: { reclaim_instance_interval: String(RECLAIM_SECONDS) }, fake_driver: { fail_spawn_name_pattern: '^broken' } }, 2);
    imageId = await setup(cc);
  });
  after(async () => cc?.close());

  const act = (id: string, body: unknown, token?: string) => cc.post(`/servers/${id}/action`, body, { microversion: '2.79', token });
  const allocations = (id: string) => cc.allocations(id);
  const booted = async (name: string, token?: string) => {
    return cc.bootActive({ name, imageRef: imageId }, { token });
  };
  const events = async (id: string, action: string) => {
    const list = await cc.get(`/servers/${id}/os-instance-actions`, { microversion: '2.79' });
    assert.equal(list.status, 200, list.text);
    const found = list.body.instanceActions.find((a: any) => a.action === action);
    assert.ok(found, `no ${action} action: ${list.text}`);
    const shown = await cc.get(`/servers/${id}/os-instance-actions/${found.request_id}`, { microversion: '2.79' });
    return shown.body.instanceAction.events.map((e: any) => [e.event, e.result]);
  };

  it('DELETE soft-deletes: powered off, SOFT_DELETED, host and allocations kept; restore brings it back ACTIVE', async () => {
    const server = await booted('soft');
    const held = await allocations(server.id);
    assert.equal(Object.keys(held).length, 1);

    const deleted = await cc.delete(`/servers/${server.id}`);
    assert.equal(deleted.status, 204, deleted.text);
    const soft = await cc.settled(server.id);
    assert.equal(soft.status, 'SOFT_DELETED');
    assert.equal(soft['OS-EXT-STS:vm_state'], 'soft-delete');
    assert.equal(soft['OS-EXT-STS:power_state'], 4);
    assert.equal(soft['OS-EXT-SRV-ATTR:host'], server['OS-EXT-SRV-ATTR:host']);
    assert.deepEqual(await allocations(server.id), held);
    assert.deepEqual(await events(server.id, 'delete'), [['compute_soft_delete_instance', 'Success']]);
    // Listed with its status, and the state refuses power actions.
    const list = await cc.get('/servers/detail?status=SOFT_DELETED', { microversion: '2.79' });
    assert.ok(list.body.servers.some((s: any) => s.id === server.id), list.text);
    assertError(await act(server.id, { 'os-start': null }), 409, 'vm_state soft-delete');

    assert.equal((await act(server.id, { restore: null })).status, 202);
    const restored = await cc.settled(server.id);
    assert.equal(restored.status, 'ACTIVE');
    assert.equal(restored['OS-EXT-STS:power_state'], 1);
    assert.deepEqual(await allocations(server.id), held);
    assert.deepEqual(await events(server.id, 'restore'), [['compute_restore_instance', 'Success']]);
    assertError(await act(server.id, { restore: null }), 409, `Cannot 'restore' instance ${server.id} while it is in vm_state active`);
  });

  it('a stopped server soft-deletes and restores to ACTIVE (powered on), as Nova restores', async () => {
    const server = await booted('soft-stopped');
    assert.equal((await act(server.id, { 'os-stop': null })).status, 202);
    assert.equal((await cc.settled(server.id)).status, 'SHUTOFF');
    assert.equal((await cc.delete(`/servers/${server.id}`)).status, 204);
    assert.equal((await cc.settled(server.id)).status, 'SOFT_DELETED');
    assert.equal((await act(server.id, { restore: {} })).status, 202);
    const restored = await cc.settled(server.id);
    assert.equal(restored.status, 'ACTIVE');
    assert.equal(restored['OS-EXT-STS:power_state'], 1);
    await cc.delete(`/servers/${server.id}`);
  });

  it('forceDelete deletes a soft-deleted server now and frees its allocations', async () => {
    const server = await booted('forced');
    assert.equal((await cc.delete(`/servers/${server.id}`)).status, 204);
    assert.equal((await cc.settled(server.id)).status, 'SOFT_DELETED');
    assert.equal((await act(server.id, { forceDelete: null })).status, 202);
    await cc.waitServer(server.id, (s) => s.status === 'DELETED');
    assert.deepEqual(await allocations(server.id), {});
  });

  it('a locked server: the owner gets 409 on restore and forceDelete; a server never launched is deleted, not soft-deleted', async () => {
    const server = await booted('locked-soft', cc.demoToken);
    assert.equal((await cc.delete(`/servers/${server.id}`, { token: cc.demoToken })).status, 204);
    assert.equal((await cc.settled(server.id, cc.demoToken)).status, 'SOFT_DELETED');
    assert.equal((await act(server.id, { lock: null })).status, 202, 'an admin locks it');
    assertError(await act(server.id, { restore: null }, cc.demoToken), 409, 'is locked');
    assertError(await act(server.id, { forceDelete: null }, cc.demoToken), 409, 'is locked');
    assert.equal((await act(server.id, { unlock: null })).status, 202);
    assert.equal((await act(server.id, { forceDelete: null }, cc.demoToken)).status, 202);
    await cc.waitServer(server.id, (s) => s.status === 'DELETED', cc.demoToken);

    const broken = await cc.boot({ name: 'broken', imageRef: imageId });
    assert.equal((await cc.waitServer(broken.id)).status, 'ERROR');
    assert.equal((await cc.delete(`/servers/${broken.id}`)).status, 204);
    await cc.waitServer(broken.id, (s) => s.status === 'DELETED');
  });

  it('the reclaim task deletes a server soft-deleted longer than the interval, with its allocations', async () => {
    const server = await booted('reclaimed');
    const since = Date.now();
    assert.equal((await cc.delete(`/servers/${server.id}`)).status, 204);
    assert.equal((await cc.settled(server.id)).status, 'SOFT_DELETED');
    await cc.waitServer(server.id, (s) => s.status === 'DELETED', undefined, (RECLAIM_SECONDS * 3 + 5) * 1000);
    assert.ok(Date.now() - since >= RECLAIM_SECONDS * 1000, 'not reclaimed before the interval');
    assert.deepEqual(await allocations(server.id), {});
    assert.deepEqual(await events(server.id, 'delete'), [['compute_soft_delete_instance', 'Success'], ['compute_terminate_instance', 'Success']]);
    const shown = await cc.get(`/servers/${server.id}`);
    assertError(shown, 404);
  });
});

describe('soft delete off (reclaim_instance_interval 0)', () => {
  let cc: ComputeCloud;
  let imageId: string;

  before(async () => {
    cc = await startComputeCloud({}, 1);
    imageId = await setup(cc);
  });
  after(async () => cc?.close());

  it('DELETE deletes; restore of a live server is 409; forceDelete deletes an active server', async () => {
    const ids: string[] = [];
    for (const name of ['plain', 'forced']) {
      const created = await cc.boot({ name, imageRef: imageId });
      assert.equal((await cc.waitServer(created.id)).status, 'ACTIVE');
      ids.push(created.id);
    }
    const [plain, forced] = ids as [string, string];
    assert.equal((await cc.delete(`/servers/${plain}`)).status, 204);
    await cc.waitServer(plain, (s) => s.status === 'DELETED');
    assertError(await cc.post(`/servers/${forced}/action`, { restore: null }), 409, `Cannot 'restore' instance ${forced} while it is in vm_state active`);
    assert.equal((await cc.post(`/servers/${forced}/action`, { forceDelete: null })).status, 202);
    await cc.waitServer(forced, (s) => s.status === 'DELETED');
  });
});
