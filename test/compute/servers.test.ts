// Servers end to end on fake hosts: create → scheduled → spawned → ACTIVE, the views at
// several microversions, filters, metadata and tags, instance actions, delete (allocations
// released), quotas, scheduling failures with their fault, and bad input.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { assertError, startComputeCloud, unique, type ComputeCloud } from './harness.js';

describe('servers', () => {
  let cc: ComputeCloud;
  let imageId: string;

  before(async () => {
    cc = await startComputeCloud({ DEFAULT: { report_interval: '1' } }, 2);
    imageId = await cc.createImage({ visibility: 'public' });
    // The tests below keep their servers; the admin project's default quota (10 instances) is not what they test.
    await cc.unlimitedQuota();
  });
  after(async () => cc?.close());

  const allocationsOf = (consumer: string) => cc.allocations(consumer);

  it('boots a server to ACTIVE on a fake host and claims its flavor in Placement', async () => {
    const created = await cc.boot({ name: 'web-1', imageRef: imageId, metadata: { role: 'web' } });
    assert.match(created.id, /^[0-9a-f-]{36}$/);
    assert.ok(typeof created.adminPass === 'string' && created.adminPass.length >= 8, 'an adminPass is generated');
    assert.deepEqual(created.security_groups, [{ name: 'default' }]);
    const server = await cc.waitServer(created.id);
    assert.equal(server.status, 'ACTIVE', JSON.stringify(server.fault));
    assert.equal(server['OS-EXT-STS:vm_state'], 'active');
    assert.equal(server['OS-EXT-STS:task_state'], null);
    assert.equal(server['OS-EXT-STS:power_state'], 1);
    assert.match(server['OS-EXT-SRV-ATTR:host'], /^fake-host-[12]$/);
    assert.equal(server['OS-EXT-AZ:availability_zone'], 'nova');
    assert.equal(server.flavor.original_name, 'm1.tiny');
    assert.equal(server.flavor.ram, 512);
    assert.deepEqual(server.metadata, { role: 'web' });
    assert.equal(server.image.id, imageId);
    assert.equal(server.hostId.length, 56);
    assert.ok(server['OS-SRV-USG:launched_at']);

    const allocations = await allocationsOf(created.id);
    const providers = Object.values(allocations);
    assert.equal(providers.length, 1);
    assert.deepEqual(providers[0].resources, { VCPU: 1, MEMORY_MB: 512, DISK_GB: 1 });

    // The old microversion links the flavor instead of embedding it and hides newer fields.
    const old = await cc.get(`/servers/${created.id}`);
    assert.equal(old.status, 200);
    assert.equal(old.body.server.flavor.id, '1');
    assert.equal(old.body.server.locked, undefined);
    assert.equal(old.headers.get('openstack-api-version'), 'compute 2.1');
  });

  it('hides admin attributes and other projects\' servers from a project member', async () => {
    const created = await cc.boot({ name: 'mine', imageRef: imageId }, { token: cc.demoToken });
    const server = await cc.waitServer(created.id, undefined, cc.demoToken);
    assert.equal(server.status, 'ACTIVE');
    assert.equal(server['OS-EXT-SRV-ATTR:host'], undefined);
    assert.equal(server.tenant_id, cc.demoProject);

    const adminServer = await cc.boot({ name: 'admins', imageRef: imageId });
    assertError(await cc.get(`/servers/${adminServer.id}`, { token: cc.demoToken }), 404, 'could not be found');
    const list = await cc.get('/servers?all_tenants=1', { token: cc.demoToken });
    assertError(list, 403);
    const own = await cc.get('/servers', { token: cc.demoToken });
    assert.ok(own.body.servers.every((s: any) => s.id !== adminServer.id));
    assert.ok(own.body.servers.some((s: any) => s.id === created.id));
    const all = await cc.get('/servers/detail?all_tenants=1');
    assert.ok(all.body.servers.some((s: any) => s.id === created.id));
  });

  it('creates several servers in one request with a reservation id and numbered names', async () => {
    const name = unique('batch');
    const res = await cc.post('/servers', { server: { name, flavorRef: '1', imageRef: imageId, networks: 'none', min_count: 2, max_count: 3, return_reservation_id: true } }, { microversion: '2.79' });
    assert.equal(res.status, 202, res.text);
    const reservation = res.body.reservation_id;
    assert.match(reservation, /^r-/);
    const list = await cc.get(`/servers/detail?reservation_id=${reservation}`, { microversion: '2.79' });
    assert.equal(list.body.servers.length, 3);
    assert.deepEqual(list.body.servers.map((s: any) => s.name).sort(), [`${name}-1`, `${name}-2`, `${name}-3`]);
    for (const s of list.body.servers) assert.equal((await cc.waitServer(s.id)).status, 'ACTIVE');
    const filtered = await cc.get(`/servers?name=^${name}-[12]$`);
    assert.equal(filtered.body.servers.length, 2);
  });

  it('spreads an anti-affinity group over the hosts and refuses a third member with the reason', async () => {
    const group = await cc.post('/os-server-groups', { server_group: { name: unique('spread'), policy: 'anti-affinity' } }, { microversion: '2.64' });
    assert.equal(group.status, 200, group.text);
    const groupId = group.body.server_group.id;
    const hosts = new Set<string>();
    for (let i = 0; i < 2; i++) {
      const created = await cc.boot({ name: `spread-${i}`, imageRef: imageId }, { hints: { group: groupId } });
      const server = await cc.waitServer(created.id);
      assert.equal(server.status, 'ACTIVE', JSON.stringify(server.fault));
      hosts.add(server['OS-EXT-SRV-ATTR:host']);
    }
    assert.equal(hosts.size, 2, 'two members on two hosts');
    const third = await cc.boot({ name: 'spread-2', imageRef: imageId }, { hints: { group: groupId } });
    const failed = await cc.waitServer(third.id);
    assert.equal(failed.status, 'ERROR');
    assert.match(failed.fault.message, /^No valid host was found\. /);
    assert.match(failed.fault.message, /ServerGroupAntiAffinityFilter/);
    assert.deepEqual(await allocationsOf(third.id), {}, 'a failed build holds no allocations');
    const members = await cc.get(`/os-server-groups/${groupId}`);
    assert.equal(members.body.server_group.members.length, 3);
  });

  it('follows the same_host and different_host hints', async () => {
    const first = await cc.waitServer((await cc.boot({ name: 'anchor', imageRef: imageId })).id);
    const apart = await cc.waitServer((await cc.boot({ name: 'apart', imageRef: imageId }, { hints: { different_host: [first.id] } })).id);
    const together = await cc.waitServer((await cc.boot({ name: 'together', imageRef: imageId }, { hints: { same_host: first.id } })).id);
    assert.notEqual(apart['OS-EXT-SRV-ATTR:host'], first['OS-EXT-SRV-ATTR:host']);
    assert.equal(together['OS-EXT-SRV-ATTR:host'], first['OS-EXT-SRV-ATTR:host']);
  });

  it('puts a server no host can take in ERROR with a No valid host fault that says why', async () => {
    const flavor = await cc.post('/flavors', { flavor: { name: unique('needs-trait'), ram: 256, vcpus: 1, disk: 1 } });
    assert.equal(flavor.status, 200, flavor.text);
    const flavorId = flavor.body.flavor.id;
    const spec = await cc.post(`/flavors/${flavorId}/os-extra_specs`, { extra_specs: { 'trait:CUSTOM_GPU': 'required' } });
    assert.equal(spec.status, 200, spec.text);
    const created = await cc.boot({ name: 'no-room', imageRef: imageId, flavorRef: flavorId });
    const server = await cc.waitServer(created.id);
    assert.equal(server.status, 'ERROR');
    assert.match(server.fault.message, /^No valid host was found\. /);
    assert.match(server.fault.message, /CUSTOM_GPU/);
    assert.equal(server.fault.code, 500);

    const actions = await cc.get(`/servers/${created.id}/os-instance-actions`);
    assert.equal(actions.status, 200);
    assert.equal(actions.body.instanceActions[0].action, 'create');
    assert.equal(actions.body.instanceActions[0].message, 'Error');
    const action = await cc.get(`/servers/${created.id}/os-instance-actions/${actions.body.instanceActions[0].request_id}`);
    const event = action.body.instanceAction.events.find((e: any) => e.event === 'conductor_schedule_and_build_instances');
    assert.equal(event.result, 'Error');
  });

  it('records create and delete actions with their events, and delete releases everything', async () => {
    const created = await cc.boot({ name: 'short-lived', imageRef: imageId });
    await cc.waitServer(created.id);
    const del = await cc.delete(`/servers/${created.id}`);
    assert.equal(del.status, 204);
    await cc.waitServer(created.id, (s) => s.status === 'DELETED');
    assert.deepEqual(await allocationsOf(created.id), {});
    const actions = await cc.get(`/servers/${created.id}/os-instance-actions`, { microversion: '2.58' });
    assert.deepEqual(actions.body.instanceActions.map((a: any) => a.action), ['delete', 'create']);
    const createAction = actions.body.instanceActions[1];
    const detail = await cc.get(`/servers/${created.id}/os-instance-actions/${createAction.request_id}`, { microversion: '2.62' });
    const events = detail.body.instanceAction.events.map((e: any) => [e.event, e.result]);
    assert.deepEqual(events.sort(), [['compute__do_build_and_run_instance', 'Success'], ['conductor_schedule_and_build_instances', 'Success']]);
    assert.ok(detail.body.instanceAction.events.every((e: any) => /^fake-host-|^/.test(e.host ?? '')));
    // Deleted servers show up for admins asking with changes-since.
    const since = await cc.get(`/servers/detail?changes-since=2000-01-01T00:00:00Z&all_tenants=1`);
    const gone = since.body.servers.find((s: any) => s.id === created.id);
    assert.equal(gone.status, 'DELETED');
  });

  it('updates the name and description, metadata and tags', async () => {
    const created = await cc.boot({ name: 'rename-me', imageRef: imageId, tags: ['a'] });
    await cc.waitServer(created.id);
    const updated = await cc.put(`/servers/${created.id}`, { server: { name: 'renamed', description: 'now described' } }, { microversion: '2.79' });
    assert.equal(updated.status, 200, updated.text);
    assert.equal(updated.body.server.name, 'renamed');
    assert.equal(updated.body.server.description, 'now described');
    assertError(await cc.put(`/servers/${created.id}`, { server: { description: 'x' } }), 400, 'description');

    assert.deepEqual((await cc.post(`/servers/${created.id}/metadata`, { metadata: { a: '1', b: '2' } })).body.metadata, { a: '1', b: '2' });
    assert.deepEqual((await cc.put(`/servers/${created.id}/metadata/b`, { meta: { b: '3' } })).body.meta, { b: '3' });
    assert.equal((await cc.delete(`/servers/${created.id}/metadata/a`)).status, 204);
    assert.deepEqual((await cc.get(`/servers/${created.id}/metadata`)).body.metadata, { b: '3' });
    assertError(await cc.get(`/servers/${created.id}/metadata/a`), 404);
    assertError(await cc.put(`/servers/${created.id}/metadata/x`, { meta: { y: '1' } }), 400, 'mismatch');

    assert.equal((await cc.put(`/servers/${created.id}/tags/b`, undefined, { microversion: '2.26' })).status, 201);
    assert.equal((await cc.put(`/servers/${created.id}/tags/b`, undefined, { microversion: '2.26' })).status, 204);
    assert.deepEqual((await cc.get(`/servers/${created.id}/tags`, { microversion: '2.26' })).body.tags, ['a', 'b']);
    const byTag = await cc.get('/servers?tags=a,b', { microversion: '2.26' });
    assert.deepEqual(byTag.body.servers.map((s: any) => s.id), [created.id]);
    assertError(await cc.put(`/servers/${created.id}/tags`, { tags: ['bad/tag'] }, { microversion: '2.26' }), 400);
    assertError(await cc.get(`/servers/${created.id}/tags`), 404);
  });

  it('enforces the instances, cores and ram quotas before anything is created', async () => {
    const user = await cc.projectUser(unique('quota'));
    const set = await cc.put(`/os-quota-sets/${user.projectId}`, { quota_set: { instances: 1 } });
    assert.equal(set.status, 200, set.text);
    const first = await cc.boot({ name: 'q1', imageRef: imageId }, { token: user.token });
    await cc.waitServer(first.id, undefined, user.token);
    const res = await cc.post('/servers', { server: { name: 'q2', flavorRef: '1', imageRef: imageId, networks: 'none' } }, { token: user.token, microversion: '2.79' });
    assertError(res, 403, 'Quota exceeded for instances: Requested 1, but already used 1 of 1 instances');
    const list = await cc.get('/servers', { token: user.token });
    assert.equal(list.body.servers.length, 1);
  });

  it('answers bad requests with 400s in Nova\'s format', async () => {
    const post = (server: Record<string, unknown>, microversion = '2.79') => cc.post('/servers', { server: { name: 'bad', flavorRef: '1', imageRef: imageId, networks: 'none', ...server } }, { microversion });
    assertError(await cc.post('/servers', { server: { name: 'x', networks: 'none' } }, { microversion: '2.79' }), 400, 'flavorRef');
    assertError(await post({ flavorRef: 'nope' }), 400, 'Flavor nope could not be found.');
    assertError(await post({ imageRef: '6d9f1c39-1b65-4e3c-a5a9-8e5b0a1d0b0b' }), 400, 'could not be found');
    assertError(await post({ key_name: 'missing-key' }), 400, 'Invalid key_name provided.');
    assertError(await post({ availability_zone: 'atlantis' }), 400, 'availability zone');
    assertError(await post({ min_count: 3, max_count: 2 }), 400, 'min_count');
    assertError(await post({ user_data: '%%%not base64' }), 400, 'base 64');
    assertError(await post({ name: '' }), 400);
    assertError(await post({ unknown_field: 1 }), 400, 'unknown_field');
    assertError(await cc.post('/servers', { server: { name: 'x', flavorRef: '1', imageRef: imageId } }, { microversion: '2.79' }), 400, 'networks');
  });

  it('lets only admins force a host, and the server lands there', async () => {
    const forced = await cc.boot({ name: 'forced', imageRef: imageId, availability_zone: 'nova:fake-host-2' });
    assert.equal((await cc.waitServer(forced.id))['OS-EXT-SRV-ATTR:host'], 'fake-host-2');
    const demo = await cc.post('/servers', { server: { name: 'forced', flavorRef: '1', imageRef: imageId, networks: 'none', availability_zone: 'nova:fake-host-2' } }, { token: cc.demoToken, microversion: '2.79' });
    assertError(demo, 403);
    const asked = await cc.boot({ name: 'asked', imageRef: imageId, host: 'fake-host-1' }, { microversion: '2.74' });
    assert.equal((await cc.waitServer(asked.id))['OS-EXT-SRV-ATTR:host'], 'fake-host-1');
    assertError(await cc.post('/servers', { server: { name: 'x', flavorRef: '1', imageRef: imageId, networks: 'none', host: 'no-such-host' } }, { microversion: '2.74' }), 400, 'no-such-host');
  });

  it('reports usage per project over a time window', async () => {
    const start = new Date(Date.now() - 3600_000).toISOString();
    const end = new Date(Date.now() + 3600_000).toISOString();
    const res = await cc.get(`/os-simple-tenant-usage?start=${start}&end=${end}&detailed=1`);
    assert.equal(res.status, 200, res.text);
    const admin = res.body.tenant_usages.find((u: any) => u.tenant_id === cc.adminProject);
    assert.ok(admin.total_hours > 0);
    assert.ok(admin.server_usages.some((u: any) => u.name === 'web-1' && u.vcpus === 1 && u.memory_mb === 512));
    assertError(await cc.get('/os-simple-tenant-usage', { token: cc.demoToken }), 403);
    const own = await cc.get(`/os-simple-tenant-usage/${cc.demoProject}?start=${start}&end=${end}`, { token: cc.demoToken });
    assert.equal(own.status, 200, own.text);
    assert.equal(own.body.tenant_usage.tenant_id, cc.demoProject);
  });
});
