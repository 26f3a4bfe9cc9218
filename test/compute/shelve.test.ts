// Shelve, shelveOffload and unshelve on fake hosts: Nova's task and vm states, the shelved
// image in the Image service, Placement allocations released when offloaded and claimed again on
// unshelve, the 2.77 zone, the periodic offload, refusals, and failures that settle.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { assertError, sleep, startComputeCloud, type ComputeCloud } from './harness.js';

describe('shelve and unshelve', () => {
  let cc: ComputeCloud;
  let imageId: string;

  before(async () => {
    cc = await startComputeCloud({
      DEFAULT: { report_interval: '0.5', service_down_time: '2' },
      fake_driver: { fail_snapshot_name_pattern: '^snapfail', fail_spawn_name_pattern: '^spawnfail' },
    }, 2);
    imageId = await cc.createImage({ visibility: 'public', os_distro: 'debian', min_ram: 0 });
    // fake-host-2 is zone "blue" (set before anything runs there: a host with instances cannot change zone).
    const agg = await cc.post('/os-aggregates', { aggregate: { name: 'az-blue', availability_zone: 'blue' } });
    assert.equal(agg.status, 200, agg.text);
    assert.equal((await cc.post(`/os-aggregates/${agg.body.aggregate.id}/action`, { add_host: { host: 'fake-host-2' } })).status, 200);
    await cc.unlimitedQuota();
  });
  after(async () => cc?.close());

  const booted = async (name: string, token?: string) => {
    return cc.bootActive({ name, imageRef: imageId }, { token });
  };
  const allocations = (id: string) => cc.allocations(id);
  const imagesOf = async (serverId: string) => {
    const res = await cc.get(`/image/v2/images?instance_uuid=${serverId}`);
    assert.equal(res.status, 200, res.text);
    return res.body.images as any[];
  };

  it('shelves into SHELVED_OFFLOADED at once (shelved_offload_time 0): image "<name>-shelved", no allocations, no host', async () => {
    const server = await booted('shelf', cc.demoToken);
    const before = await allocations(server.id);
    assert.equal(Object.keys(before).length, 1);
    const res = await cc.act(server.id, { shelve: null }, { token: cc.demoToken });
    assert.equal(res.status, 202, res.text);
    assert.equal(res.text, '');
    const shelved = await cc.settled(server.id);
    assert.equal(shelved.status, 'SHELVED_OFFLOADED');
    assert.equal(shelved['OS-EXT-STS:vm_state'], 'shelved_offloaded');
    assert.equal(shelved['OS-EXT-STS:power_state'], 4);
    assert.equal(shelved['OS-EXT-SRV-ATTR:host'], null);
    assert.equal(shelved['OS-EXT-SRV-ATTR:hypervisor_hostname'], null);
    assert.deepEqual(await allocations(server.id), {});
    const [image] = await imagesOf(server.id);
    assert.equal(image.name, 'shelf-shelved');
    assert.equal(image.status, 'active');
    assert.equal(image.image_type, 'snapshot');
    assert.equal(image.base_image_ref, imageId);
    assert.equal(image.instance_uuid, server.id);
    assert.equal(image.user_id, cc.demoUser);
    assert.equal(image.owner, cc.demoProject);
    assert.equal(image.os_distro, 'debian', 'inherited from the base image');
    assert.equal(image.disk_format, 'raw');
    const data = await fetch(cc.url(`/image/v2/images/${image.id}/file`), { headers: { 'X-Auth-Token': cc.adminToken } });
    assert.match(await data.text(), new RegExp(`^nubo fake disk\\ninstance ${server.id}\\nimage ${imageId}\\n`));

    const actions = await cc.get(`/servers/${server.id}/os-instance-actions`);
    const shelve = actions.body.instanceActions.find((a: any) => a.action === 'shelve');
    const events = await cc.get(`/servers/${server.id}/os-instance-actions/${shelve.request_id}`);
    assert.deepEqual(events.body.instanceAction.events.map((e: any) => [e.event, e.result]), [['compute_shelve_instance', 'Success']]);

    // Unshelve: scheduled again, allocations claimed, spawned from the shelved image, which is then deleted.
    assert.equal((await cc.act(server.id, { unshelve: null }, { token: cc.demoToken })).status, 202);
    const back = await cc.settled(server.id);
    assert.equal(back.status, 'ACTIVE', JSON.stringify(back.fault));
    assert.equal(back['OS-EXT-STS:power_state'], 1);
    assert.ok(back['OS-EXT-SRV-ATTR:host']);
    assert.equal(back.image.id, imageId, 'the server keeps its original image');
    const claimed = await allocations(server.id);
    assert.deepEqual(Object.values(claimed).map((a: any) => a.resources), [{ VCPU: 1, MEMORY_MB: 512, DISK_GB: 1 }]);
    assert.equal((await imagesOf(server.id)).length, 0, 'the shelved image is deleted');
    const unshelve = (await cc.get(`/servers/${server.id}/os-instance-actions`)).body.instanceActions.find((a: any) => a.action === 'unshelve');
    const unshelveEvents = await cc.get(`/servers/${server.id}/os-instance-actions/${unshelve.request_id}`);
    assert.deepEqual(unshelveEvents.body.instanceAction.events.map((e: any) => [e.event, e.result]),
      [['conductor_unshelve_instance', 'Success'], ['compute_unshelve_instance', 'Success']]);
  });

  it('shelves a stopped, a paused and a suspended server; refuses other states and locked servers', async () => {
    for (const [prepare, name] of [[{ 'os-stop': null }, 'stopped'], [{ pause: null }, 'paused'], [{ suspend: null }, 'suspended']] as const) {
      const server = await booted(`shelf-${name}`);
      assert.equal((await cc.act(server.id, prepare)).status, 202);
      await cc.settled(server.id);
      assert.equal((await cc.act(server.id, { shelve: null })).status, 202, name);
      assert.equal((await cc.settled(server.id)).status, 'SHELVED_OFFLOADED', name);
      assertError(await cc.act(server.id, { shelve: null }), 409, `Cannot 'shelve' instance ${server.id} while it is in vm_state shelved_offloaded`);
      assertError(await cc.act(server.id, { shelveOffload: null }), 409, 'vm_state shelved_offloaded');
      assertError(await cc.act(server.id, { 'os-start': null }), 409);
    }
    const active = await booted('not-shelved', cc.demoToken);
    assertError(await cc.act(active.id, { unshelve: null }, { token: cc.demoToken }), 409, `Cannot 'unshelve' instance ${active.id} while it is in vm_state active`);
    assertError(await cc.act(active.id, { shelveOffload: null }, { token: cc.demoToken }), 403, 'shelve_offload');
    assert.equal((await cc.act(active.id, { lock: null }, { token: cc.demoToken })).status, 202);
    assertError(await cc.act(active.id, { shelve: null }, { token: cc.demoToken }), 409, 'is locked');
  });

  it('2.77: unshelves into a given zone; refuses a zone for a server that is not offloaded, and unknown zones', async () => {
    const created = await cc.boot({ name: 'zoned', imageRef: imageId, availability_zone: 'nova' });
    const server = await cc.waitServer(created.id);
    assert.equal(server['OS-EXT-SRV-ATTR:host'], 'fake-host-1');
    assert.equal((await cc.act(server.id, { shelve: null })).status, 202);
    assert.equal((await cc.settled(server.id)).status, 'SHELVED_OFFLOADED');
    assertError(await cc.act(server.id, { unshelve: { availability_zone: 'atlantis' } }), 400, 'The requested availability zone is not available');
    assertError(await cc.act(server.id, { unshelve: { zone: 'nova' } }), 400, 'Additional properties');
    assert.equal((await cc.act(server.id, { unshelve: { availability_zone: 'nova' } }, { microversion: '2.76' })).status, 202, 'before 2.77 the body is ignored');
    const back = await cc.settled(server.id);
    assert.equal(back.status, 'ACTIVE');

    // Shelved again, unshelved into zone blue (fake-host-2), which the server then keeps.
    assert.equal((await cc.act(server.id, { shelve: null })).status, 202);
    assert.equal((await cc.settled(server.id)).status, 'SHELVED_OFFLOADED');
    assert.equal((await cc.act(server.id, { unshelve: { availability_zone: 'blue' } }, { microversion: '2.77' })).status, 202);
    const moved = await cc.settled(server.id);
    assert.equal(moved.status, 'ACTIVE');
    assert.equal(moved['OS-EXT-SRV-ATTR:host'], 'fake-host-2');
    assert.equal(moved['OS-EXT-AZ:availability_zone'], 'blue');
    assert.equal((await cc.act(server.id, { shelve: null })).status, 202);
    assert.equal((await cc.settled(server.id)).status, 'SHELVED_OFFLOADED');
    assert.equal((await cc.act(server.id, { unshelve: null })).status, 202);
    assert.equal((await cc.settled(server.id))['OS-EXT-SRV-ATTR:host'], 'fake-host-2', 'pinned to zone blue');
  });

  it('a failed snapshot leaves the server where it was, with a fault and no image', async () => {
    const server = await booted('snapfail-shelve');
    assert.equal((await cc.act(server.id, { shelve: null })).status, 202);
    const after = await cc.settled(server.id);
    assert.equal(after.status, 'SHUTOFF', 'powered off before the snapshot failed');
    assert.equal(after['OS-EXT-STS:power_state'], 4);
    assert.equal((await imagesOf(server.id)).length, 0);
    assert.equal(Object.keys(await allocations(server.id)).length, 1, 'still placed');
    const action = (await cc.get(`/servers/${server.id}/os-instance-actions`)).body.instanceActions.find((a: any) => a.action === 'shelve');
    assert.equal(action.message, 'Error');
  });

  it('an unshelve whose spawn fails stays SHELVED_OFFLOADED with its task cleared and nothing claimed', async () => {
    const server = await booted('spawnok');
    assert.equal((await cc.act(server.id, { shelve: null })).status, 202);
    assert.equal((await cc.settled(server.id)).status, 'SHELVED_OFFLOADED');
    // Renamed so the fake driver fails its next spawn.
    assert.equal((await cc.put(`/servers/${server.id}`, { server: { name: 'spawnfail-again' } })).status, 200);
    assert.equal((await cc.act(server.id, { unshelve: null })).status, 202);
    const after = await cc.settled(server.id);
    assert.equal(after.status, 'SHELVED_OFFLOADED');
    assert.equal(after['OS-EXT-SRV-ATTR:host'], null);
    assert.deepEqual(await allocations(server.id), {});
    assert.equal((await imagesOf(server.id)).length, 1, 'the shelved image is kept for another try');
    assert.equal((await cc.put(`/servers/${server.id}`, { server: { name: 'spawnok' } })).status, 200);
    assert.equal((await cc.act(server.id, { unshelve: null })).status, 202);
    assert.equal((await cc.settled(server.id)).status, 'ACTIVE');
  });

  it('an unshelve whose shelved image is gone ends in ERROR with Nova\'s reason', async () => {
    const server = await booted('lost-image');
    assert.equal((await cc.act(server.id, { shelve: null })).status, 202);
    assert.equal((await cc.settled(server.id)).status, 'SHELVED_OFFLOADED');
    const [image] = await imagesOf(server.id);
    assert.equal((await cc.delete(`/image/v2/images/${image.id}`)).status, 204);
    assert.equal((await cc.act(server.id, { unshelve: null })).status, 202);
    const after = await cc.settled(server.id);
    assert.equal(after.status, 'ERROR');
    assert.match(after.fault.message, /Unshelve attempted but the image .* cannot be found/);
    assert.deepEqual(await allocations(server.id), {});
  });

  it('deletes a shelved offloaded server (nothing on a host, no allocations)', async () => {
    const server = await booted('shelved-delete');
    assert.equal((await cc.act(server.id, { shelve: null })).status, 202);
    assert.equal((await cc.settled(server.id)).status, 'SHELVED_OFFLOADED');
    assert.equal((await cc.delete(`/servers/${server.id}`)).status, 204);
    await cc.waitServer(server.id, (s) => s.status === 'DELETED');
  });
});

describe('shelve with shelved_offload_time > 0', () => {
  let cc: ComputeCloud;
  let imageId: string;

  before(async () => {
    cc = await startComputeCloud({ DEFAULT: { shelved_offload_time: '1', shelved_poll_interval: '0.2' } }, 1);
    imageId = await cc.createImage({ visibility: 'public' });
  });
  after(async () => cc?.close());

  it('stays SHELVED on its host (allocations kept), unshelves in place, or is offloaded by the poller; shelveOffload is admin only', async () => {
    const act = (id: string, body: unknown, token?: string) => cc.post(`/servers/${id}/action`, body, { microversion: '2.79', token });
    const settled = (id: string) => cc.waitServer(id, (s) => s['OS-EXT-STS:task_state'] === null);
    const created = await cc.boot({ name: 'slow-shelf', imageRef: imageId });
    assert.equal((await cc.waitServer(created.id)).status, 'ACTIVE');
    assert.equal((await cc.act(created.id, { shelve: null })).status, 202);
    const shelved = await cc.settled(created.id);
    assert.equal(shelved.status, 'SHELVED');
    assert.equal(shelved['OS-EXT-STS:power_state'], 4);
    assert.equal(shelved['OS-EXT-SRV-ATTR:host'], 'fake-host-1');
    const allocs = await cc.get(`/placement/allocations/${created.id}`);
    assert.equal(Object.keys(allocs.body.allocations).length, 1);
    assertError(await cc.act(created.id, { unshelve: { availability_zone: 'nova' } }), 409, 'The server status must be SHELVED_OFFLOADED');

    // Unshelve in place: powered on where it is; the shelved image is deleted.
    assert.equal((await cc.act(created.id, { unshelve: null })).status, 202);
    const back = await cc.settled(created.id);
    assert.equal(back.status, 'ACTIVE');
    assert.equal(back['OS-EXT-STS:power_state'], 1);
    assert.equal((await cc.get(`/image/v2/images?instance_uuid=${created.id}`)).body.images.length, 0);

    // Shelved again: an explicit shelveOffload (admin), then the poller for another server.
    assert.equal((await cc.act(created.id, { shelve: null })).status, 202);
    assert.equal((await cc.settled(created.id)).status, 'SHELVED');
    const demo = await cc.post(`/servers/${created.id}/action`, { shelveOffload: null }, { token: cc.demoToken });
    assert.equal(demo.status, 403, demo.text);
    assert.equal((await cc.act(created.id, { shelveOffload: null })).status, 202);
    const offloaded = await cc.settled(created.id);
    assert.equal(offloaded.status, 'SHELVED_OFFLOADED');
    assert.deepEqual((await cc.get(`/placement/allocations/${created.id}`)).body.allocations, {});

    const second = await cc.boot({ name: 'polled', imageRef: imageId });
    assert.equal((await cc.waitServer(second.id)).status, 'ACTIVE');
    assert.equal((await cc.act(second.id, { shelve: null })).status, 202);
    assert.equal((await cc.settled(second.id)).status, 'SHELVED');
    await sleep(300);
    const polled = await cc.waitServer(second.id, (s) => s.status === 'SHELVED_OFFLOADED', undefined, 10_000);
    assert.equal(polled['OS-EXT-SRV-ATTR:host'], null);
    const actions = await cc.get(`/servers/${second.id}/os-instance-actions`);
    assert.deepEqual(actions.body.instanceActions.map((a: any) => a.action).reverse(), ['create', 'shelve', 'shelveOffload']);
  });
});
