// Resize and cold migration on fake hosts: resize → VERIFY_RESIZE → confirm or revert, migrate
// (to a named host at 2.56), the allocations in Placement at each point (the source's held by
// the migration, the destination's by the instance), refusals, instance action events,
// os-migrations with its filters and paging, failures rolled back, auto-confirm.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { assertError, sleep, startComputeCloud, type ComputeCloud } from './harness.js';

type Allocs = Record<string, { resources: Record<string, number> }>;

async function helpers(cc: ComputeCloud) {
  const providers: Record<string, string> = {};
  const hv = await cc.get('/os-hypervisors', { microversion: '2.53' });
  assert.equal(hv.status, 200, hv.text);
  for (const h of hv.body.hypervisors) providers[h.hypervisor_hostname] = h.id;
  const allocationsOf = async (consumer: string): Promise<Allocs> =>
    Object.fromEntries(Object.entries(await cc.allocations(consumer)).map(([rp, a]) => [rp, { resources: a.resources }]));
  const usagesOf = async (host: string): Promise<Record<string, number>> => {
    const res = await cc.get(`/placement/resource_providers/${providers[host]}/usages`);
    assert.equal(res.status, 200, res.text);
    return res.body.usages;
  };
  const on = (host: string, vcpus: number, ram: number, disk: number): Allocs => ({ [providers[host]]: { resources: { DISK_GB: disk, MEMORY_MB: ram, VCPU: vcpus } } });
  const act: ComputeCloud['act'] = (...args) => cc.act(...args);
  const settled = (id: string, token?: string) => cc.waitServer(id, (s) => s['OS-EXT-STS:task_state'] === null && s.status !== 'BUILD', token);
  const migrations = async (query = '', microversion = '2.79') => {
    const res = await cc.get(`/os-migrations${query}`, { microversion });
    assert.equal(res.status, 200, res.text);
    return res.body.migrations as any[];
  };
  return { providers, allocationsOf, usagesOf, on, act, settled, migrations };
}

describe('resize and cold migration', () => {
  let cc: ComputeCloud;
  let imageId: string;
  let h: Awaited<ReturnType<typeof helpers>>;
  const flavors: Record<string, string> = {};

  before(async () => {
    cc = await startComputeCloud({ DEFAULT: { report_interval: '0.5', service_down_time: '5' }, fake_driver: { migrate_delay_ms: '150' } }, 3);
    imageId = await cc.createImage({ visibility: 'public' });
    for (const [name, vcpus, ram, disk] of [['rs-small', 1, 256, 2], ['rs-big', 2, 512, 3], ['rs-zero', 1, 256, 0], ['rs-shrink', 1, 128, 1], ['rs-huge', 6, 1024, 2]] as const) {
      const res = await cc.post('/flavors', { flavor: { name, vcpus, ram, disk } });
      assert.equal(res.status, 200, res.text);
      flavors[name] = res.body.flavor.id;
    }
    await cc.unlimitedQuota();
    h = await helpers(cc);
  });
  after(async () => cc?.close());

  const waitMigration = async (instanceId: string, status: string) => {
    for (let i = 0; i < 200; i++) {
      const [m] = await h.migrations(`?instance_uuid=${instanceId}`);
      if (m?.status === status) return m;
      await sleep(50);
    }
    assert.fail(`migration of ${instanceId} never reached ${status}`);
  };
  const booted = async (name: string, flavor = flavors['rs-small'], token?: string, fields: Record<string, unknown> = {}) => {
    return cc.bootActive({ name, imageRef: imageId, flavorRef: flavor, ...fields }, { token });
  };

  it('resizes: RESIZE task states, VERIFY_RESIZE on another host with the new flavor, allocations split; confirm frees the source', async () => {
    const server = await booted('resize-confirm');
    const source = server['OS-EXT-SRV-ATTR:host'];
    assert.deepEqual(await h.allocationsOf(server.id), h.on(source, 1, 256, 2));
    const before = await h.usagesOf(source);

    const res = await h.act(server.id, { resize: { flavorRef: flavors['rs-big'], 'OS-DCF:diskConfig': 'AUTO' } });
    assert.equal(res.status, 202, res.text);
    assert.equal(res.text, '');
    const seen = new Set<string>();
    const resized = await cc.waitServer(server.id, (s) => {
      if (s['OS-EXT-STS:task_state']) seen.add(`${s.status}/${s['OS-EXT-STS:task_state']}`);
      return s.status === 'VERIFY_RESIZE';
    });
    assert.ok([...seen].every((s) => s.startsWith('RESIZE/resize_')), [...seen].join(' '));
    assert.ok(seen.has('RESIZE/resize_migrating') || seen.has('RESIZE/resize_finish'), [...seen].join(' '));
    const dest = resized['OS-EXT-SRV-ATTR:host'];
    assert.notEqual(dest, source, 'the scheduler ignores the source unless allow_resize_to_same_host');
    assert.equal(resized['OS-EXT-STS:vm_state'], 'resized');
    assert.equal(resized['OS-EXT-STS:power_state'], 1);
    assert.equal(resized.flavor.original_name, 'rs-big');
    assert.equal(resized.flavor.vcpus, 2);

    const [migration] = await h.migrations(`?instance_uuid=${server.id}`);
    assert.equal(migration.status, 'finished');
    assert.equal(migration.migration_type, 'resize');
    assert.equal(migration.source_compute, source);
    assert.equal(migration.dest_compute, dest);
    assert.equal(migration.dest_node, dest);
    assert.equal(migration.old_instance_type_id, flavors['rs-small']);
    assert.equal(migration.new_instance_type_id, flavors['rs-big']);
    // The source's allocations are the migration's, the destination's the instance's: nothing counted twice.
    assert.deepEqual(await h.allocationsOf(migration.uuid), h.on(source, 1, 256, 2));
    assert.deepEqual(await h.allocationsOf(server.id), h.on(dest, 2, 512, 3));
    assert.deepEqual(await h.usagesOf(source), before);

    assertError(await h.act(server.id, { resize: { flavorRef: flavors['rs-small'] } }), 409, 'vm_state resized');
    const confirm = await h.act(server.id, { confirmResize: null });
    assert.equal(confirm.status, 204, confirm.text);
    const done = await h.settled(server.id);
    await cc.waitServer(server.id, (s) => s.status === 'ACTIVE');
    assert.equal(done['OS-EXT-SRV-ATTR:host'], dest);
    assert.deepEqual(await h.allocationsOf(migration.uuid), {});
    assert.deepEqual(await h.allocationsOf(server.id), h.on(dest, 2, 512, 3));
    assert.equal((await h.migrations(`?instance_uuid=${server.id}`))[0].status, 'confirmed');
    assert.equal((await h.usagesOf(source)).VCPU, before.VCPU - 1);
    assertError(await h.act(server.id, { confirmResize: null }), 409, 'vm_state active');

    const actions = await cc.get(`/servers/${server.id}/os-instance-actions`);
    assert.deepEqual(actions.body.instanceActions.map((a: any) => a.action).reverse(), ['create', 'resize', 'confirmResize']);
    const resizeAction = actions.body.instanceActions.find((a: any) => a.action === 'resize');
    const events = await cc.get(`/servers/${server.id}/os-instance-actions/${resizeAction.request_id}`, { microversion: '2.51' });
    assert.deepEqual(events.body.instanceAction.events.map((e: any) => [e.event, e.result]),
      [['conductor_migrate_server', 'Success'], ['compute_prep_resize', 'Success'], ['compute_resize_instance', 'Success'], ['compute_finish_resize', 'Success']]);
    const confirmAction = actions.body.instanceActions.find((a: any) => a.action === 'confirmResize');
    const confirmEvents = await cc.get(`/servers/${server.id}/os-instance-actions/${confirmAction.request_id}`);
    assert.deepEqual(confirmEvents.body.instanceAction.events.map((e: any) => [e.event, e.result]), [['compute_confirm_resize', 'Success']]);
  });

  it('reverts a resize: old flavor, back on the source, allocations moved back to the instance', async () => {
    const server = await booted('resize-revert');
    const source = server['OS-EXT-SRV-ATTR:host'];
    assert.equal((await h.act(server.id, { resize: { flavorRef: flavors['rs-big'] } })).status, 202);
    const resized = await cc.waitServer(server.id, (s) => s.status === 'VERIFY_RESIZE');
    const dest = resized['OS-EXT-SRV-ATTR:host'];
    const [migration] = await h.migrations(`?instance_uuid=${server.id}`);
    const destBefore = await h.usagesOf(dest);

    const revert = await h.act(server.id, { revertResize: null });
    assert.equal(revert.status, 202, revert.text);
    const reverting = await cc.get(`/servers/${server.id}`);
    assert.ok(['REVERT_RESIZE', 'ACTIVE'].includes(reverting.body.server.status), reverting.body.server.status);
    const back = await cc.waitServer(server.id, (s) => s.status === 'ACTIVE' && s['OS-EXT-STS:task_state'] === null);
    assert.equal(back['OS-EXT-SRV-ATTR:host'], source);
    assert.equal(back.flavor.original_name, 'rs-small');
    assert.equal(back['OS-EXT-STS:power_state'], 1);
    assert.deepEqual(await h.allocationsOf(server.id), h.on(source, 1, 256, 2));
    assert.deepEqual(await h.allocationsOf(migration.uuid), {});
    assert.equal((await h.usagesOf(dest)).VCPU, destBefore.VCPU - 2);
    assert.equal((await h.migrations(`?instance_uuid=${server.id}`))[0].status, 'reverted');
    const actions = await cc.get(`/servers/${server.id}/os-instance-actions`);
    const revertAction = actions.body.instanceActions.find((a: any) => a.action === 'revertResize');
    const events = await cc.get(`/servers/${server.id}/os-instance-actions/${revertAction.request_id}`);
    assert.deepEqual(events.body.instanceAction.events.map((e: any) => [e.event, e.result]),
      [['compute_revert_resize', 'Success'], ['compute_finish_revert_resize', 'Success']]);
  });

  it('a stopped server is resized stopped, stays stopped after confirm, and after a revert', async () => {
    for (const end of ['confirmResize', 'revertResize']) {
      const server = await booted(`stopped-${end}`);
      assert.equal((await h.act(server.id, { 'os-stop': null })).status, 202);
      await cc.waitServer(server.id, (s) => s.status === 'SHUTOFF' && s['OS-EXT-STS:task_state'] === null);
      assert.equal((await h.act(server.id, { resize: { flavorRef: flavors['rs-big'] } })).status, 202);
      const resized = await cc.waitServer(server.id, (s) => s.status === 'VERIFY_RESIZE');
      assert.equal(resized['OS-EXT-STS:power_state'], 4);
      assert.ok([202, 204].includes((await h.act(server.id, { [end]: null })).status));
      const after = await cc.waitServer(server.id, (s) => s.status === 'SHUTOFF' && s['OS-EXT-STS:task_state'] === null);
      assert.equal(after['OS-EXT-STS:vm_state'], 'stopped');
      assert.equal(after['OS-EXT-STS:power_state'], 4);
      assert.equal(after.flavor.original_name, end === 'confirmResize' ? 'rs-big' : 'rs-small');
    }
  });

  it('migrates (admin) with the same flavor to another host; migrate to a named host at 2.56; confirm', async () => {
    const server = await booted('migrate');
    const source = server['OS-EXT-SRV-ATTR:host'];
    assertError(await h.act(server.id, { migrate: null }, { token: cc.demoToken }), 403, 'os_compute_api:os-migrate-server:migrate');
    assert.equal((await h.act(server.id, { migrate: null })).status, 202);
    const moved = await cc.waitServer(server.id, (s) => s.status === 'VERIFY_RESIZE');
    assert.notEqual(moved['OS-EXT-SRV-ATTR:host'], source);
    assert.equal(moved.flavor.original_name, 'rs-small');
    const [migration] = await h.migrations(`?instance_uuid=${server.id}`);
    assert.equal(migration.migration_type, 'migration');
    assert.equal(migration.old_instance_type_id, migration.new_instance_type_id);
    assert.deepEqual(await h.allocationsOf(migration.uuid), h.on(source, 1, 256, 2));
    assert.deepEqual(await h.allocationsOf(server.id), h.on(moved['OS-EXT-SRV-ATTR:host'], 1, 256, 2));
    assert.equal((await h.act(server.id, { confirmResize: null })).status, 204);
    const active = await cc.waitServer(server.id, (s) => s.status === 'ACTIVE');
    assert.deepEqual(await h.allocationsOf(migration.uuid), {});

    const here = active['OS-EXT-SRV-ATTR:host'];
    const target = ['fake-host-1', 'fake-host-2', 'fake-host-3'].find((x) => x !== here)!;
    assertError(await h.act(server.id, { migrate: { host: here } }, { microversion: '2.56' }), 400, 'Cannot migrate to the host where the server exists.');
    assertError(await h.act(server.id, { migrate: { host: 'nowhere' } }, { microversion: '2.56' }), 400, 'Compute host nowhere could not be found.');
    assertError(await h.act(server.id, { migrate: { host: target, extra: 1 } }, { microversion: '2.56' }), 400, 'Additional properties');
    assert.equal((await h.act(server.id, { migrate: { host: target } }, { microversion: '2.56' })).status, 202);
    const there = await cc.waitServer(server.id, (s) => s.status === 'VERIFY_RESIZE');
    assert.equal(there['OS-EXT-SRV-ATTR:host'], target);
    assert.equal((await h.act(server.id, { confirmResize: null })).status, 204);
    await cc.waitServer(server.id, (s) => s.status === 'ACTIVE');
    const actions = await cc.get(`/servers/${server.id}/os-instance-actions`);
    assert.deepEqual(actions.body.instanceActions.map((a: any) => a.action).reverse(), ['create', 'migrate', 'confirmResize', 'migrate', 'confirmResize']);
  });

  it('refuses: same flavor, unknown flavor, zero disk, bad body (400); over quota (403); wrong state (409); locked (409 for the owner)', async () => {
    const server = await booted('refusals', flavors['rs-small'], cc.demoToken);
    const demo = { token: cc.demoToken };
    assertError(await h.act(server.id, { resize: { flavorRef: flavors['rs-small'] } }, demo), 400, 'When resizing, instances must change flavor!');
    assertError(await h.act(server.id, { resize: { flavorRef: 'no-such-flavor' } }, demo), 400, 'Flavor no-such-flavor could not be found.');
    assertError(await h.act(server.id, { resize: { flavorRef: flavors['rs-zero'] } }, demo), 400, 'Resize to zero disk flavor is not allowed.');
    assertError(await h.act(server.id, { resize: {} }, demo), 400, "'flavorRef' is a required property");
    assertError(await h.act(server.id, { resize: { flavorRef: flavors['rs-big'], 'OS-DCF:diskConfig': 'SIDEWAYS' } }, demo), 400);
    const quota = await cc.put(`/os-quota-sets/${cc.demoProject}`, { quota_set: { cores: 4 } });
    assert.equal(quota.status, 200, quota.text);
    const over = await h.act(server.id, { resize: { flavorRef: flavors['rs-huge'] } }, demo);
    assertError(over, 403, /^Quota exceeded for cores: Requested 5, but already used \d+ of 4 cores$/);
    assertError(await h.act(server.id, { confirmResize: null }, demo), 409, `Cannot 'confirmResize' instance ${server.id} while it is in vm_state active`);
    assertError(await h.act(server.id, { revertResize: null }, demo), 409, `Cannot 'revertResize' instance ${server.id} while it is in vm_state active`);
    assert.equal((await h.act(server.id, { pause: null }, demo)).status, 202);
    await cc.waitServer(server.id, (s) => s.status === 'PAUSED', cc.demoToken);
    assertError(await h.act(server.id, { resize: { flavorRef: flavors['rs-big'] } }, demo), 409, `Cannot 'resize' instance ${server.id} while it is in vm_state paused`);
    assertError(await h.act(server.id, { migrate: null }), 409, `Cannot 'migrate' instance ${server.id} while it is in vm_state paused`);
    assert.equal((await h.act(server.id, { unpause: null }, demo)).status, 202);
    await cc.waitServer(server.id, (s) => s.status === 'ACTIVE', cc.demoToken);
    assert.equal((await h.act(server.id, { lock: null }, demo)).status, 202);
    assertError(await h.act(server.id, { resize: { flavorRef: flavors['rs-big'] } }, demo), 409, 'is locked');
    assert.equal((await h.act(server.id, { resize: { flavorRef: flavors['rs-big'] } })).status, 202, 'an admin resizes a locked server');
    await cc.waitServer(server.id, (s) => s.status === 'VERIFY_RESIZE', cc.demoToken);
    assertError(await h.act(server.id, { confirmResize: null }, demo), 409, 'is locked');
    assertError(await h.act(server.id, { revertResize: null }, demo), 409, 'is locked');
    assert.equal((await h.act(server.id, { unlock: null }, demo)).status, 202);
    assert.equal((await h.act(server.id, { revertResize: null }, demo)).status, 202);
    assertError(await h.act(server.id, { confirmResize: null }, demo), 409, 'task_state resize_reverting');
    await cc.waitServer(server.id, (s) => s.status === 'ACTIVE' && s['OS-EXT-STS:task_state'] === null, cc.demoToken);
    await cc.put(`/os-quota-sets/${cc.demoProject}`, { quota_set: { cores: 20 } });
  });

  it('a disk that would shrink is refused by the host: rolled back to the source ACTIVE with a fault, allocations back, migration error', async () => {
    const server = await booted('shrink');
    const source = server['OS-EXT-SRV-ATTR:host'];
    assert.equal((await h.act(server.id, { resize: { flavorRef: flavors['rs-shrink'] } })).status, 202);
    await waitMigration(server.id, 'error');
    const back = await cc.waitServer(server.id, (s) => s.status === 'ACTIVE' && s['OS-EXT-STS:task_state'] === null);
    assert.equal(back['OS-EXT-SRV-ATTR:host'], source);
    assert.equal(back.flavor.original_name, 'rs-small');
    assert.equal(back.fault, undefined, 'Nova shows a fault only in ERROR');
    assert.equal(back['OS-EXT-STS:power_state'], 1);
    const [migration] = await h.migrations(`?instance_uuid=${server.id}`);
    assert.equal(migration.status, 'error');
    assert.deepEqual(await h.allocationsOf(server.id), h.on(source, 1, 256, 2));
    assert.deepEqual(await h.allocationsOf(migration.uuid), {});
    const actions = await cc.get(`/servers/${server.id}/os-instance-actions`);
    const resizeAction = actions.body.instanceActions.find((a: any) => a.action === 'resize');
    const events = await cc.get(`/servers/${server.id}/os-instance-actions/${resizeAction.request_id}`, { microversion: '2.51' });
    assert.deepEqual(events.body.instanceAction.events.map((e: any) => [e.event, e.result]),
      [['conductor_migrate_server', 'Success'], ['compute_prep_resize', 'Success'], ['compute_resize_instance', 'Error']]);
    assert.equal(events.body.instanceAction.message, 'Error');
    assert.match(events.body.instanceAction.events[2].traceback, /Unable to resize disk down/);
  });

  it('no other host fits: NoValidHost rolls back with a fault (task cleared, allocations back on the instance)', async () => {
    const server = await booted('novalid');
    const source = server['OS-EXT-SRV-ATTR:host'];
    // A flavor only a host with a trait nobody has would take.
    const f = await cc.post('/flavors', { flavor: { name: 'rs-trait', vcpus: 1, ram: 256, disk: 2 } });
    await cc.post(`/flavors/${f.body.flavor.id}/os-extra_specs`, { extra_specs: { 'trait:CUSTOM_NOWHERE': 'required' } });
    assert.equal((await h.act(server.id, { resize: { flavorRef: f.body.flavor.id } })).status, 202);
    await waitMigration(server.id, 'error');
    const back = await cc.waitServer(server.id, (s) => s['OS-EXT-STS:task_state'] === null);
    assert.equal(back.status, 'ACTIVE');
    assert.equal(back['OS-EXT-SRV-ATTR:host'], source);
    assert.deepEqual(await h.allocationsOf(server.id), h.on(source, 1, 256, 2));
    const actions = await cc.get(`/servers/${server.id}/os-instance-actions`);
    const events = await cc.get(`/servers/${server.id}/os-instance-actions/${actions.body.instanceActions[0].request_id}`, { microversion: '2.51' });
    assert.deepEqual(events.body.instanceAction.events.map((e: any) => [e.event, e.result]), [['conductor_migrate_server', 'Error']]);
    assert.match(events.body.instanceAction.events[0].traceback, /not enough hosts|No valid host/i);
  });

  it('deleting a server in VERIFY_RESIZE removes both copies and every allocation', async () => {
    const server = await booted('delete-resized');
    assert.equal((await h.act(server.id, { resize: { flavorRef: flavors['rs-big'] } })).status, 202);
    await cc.waitServer(server.id, (s) => s.status === 'VERIFY_RESIZE');
    const [migration] = await h.migrations(`?instance_uuid=${server.id}`);
    assert.equal((await cc.delete(`/servers/${server.id}`)).status, 204);
    await cc.waitServer(server.id, (s) => s.status === 'DELETED');
    assert.deepEqual(await h.allocationsOf(server.id), {});
    assert.deepEqual(await h.allocationsOf(migration.uuid), {});
    assert.equal((await h.migrations(`?instance_uuid=${server.id}`))[0].status, 'confirmed');
  });

  it('lists os-migrations (admin) with Nova\'s fields per microversion, filters and paging', async () => {
    assertError(await cc.get('/os-migrations', { token: cc.demoToken }), 403);
    const old = await h.migrations('', '2.1');
    assert.ok(old.length >= 5);
    assert.deepEqual(Object.keys(old[0]).sort(), ['created_at', 'dest_compute', 'dest_host', 'dest_node', 'id', 'instance_uuid', 'new_instance_type_id',
      'old_instance_type_id', 'source_compute', 'source_node', 'status', 'updated_at']);
    assert.match(old[0].created_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}$/);
    const v23 = await h.migrations('', '2.23');
    assert.ok('migration_type' in v23[0] && !('uuid' in v23[0]));
    const all = await h.migrations();
    assert.ok(all.every((m) => typeof m.uuid === 'string'));
    assert.deepEqual(all.map((m) => m.id), [...all.map((m) => m.id)].sort((a, b) => b - a), 'newest first');
    assert.ok((await h.migrations('?migration_type=migration')).every((m) => m.migration_type === 'migration'));
    assert.ok((await h.migrations('?status=error')).length >= 2);
    assert.ok((await h.migrations('?status=error')).every((m) => m.status === 'error'));
    const host = all[0].source_compute;
    assert.ok((await h.migrations(`?host=${host}`)).every((m) => m.source_compute === host || m.dest_compute === host));
    assert.ok((await h.migrations(`?source_compute=${host}`)).every((m) => m.source_compute === host));
    const page = await cc.get('/os-migrations?limit=2', { microversion: '2.59' });
    assert.equal(page.body.migrations.length, 2);
    assert.match(page.body.migrations_links[0].href, new RegExp(`marker=${page.body.migrations[1].uuid}`));
    const next = await cc.get(`/os-migrations?limit=2&marker=${page.body.migrations[1].uuid}`, { microversion: '2.59' });
    assert.equal(next.body.migrations[0].id, all[2].id);
    assertError(await cc.get('/os-migrations?marker=nope', { microversion: '2.59' }), 400, 'Marker nope could not be found.');
    assertError(await cc.get('/os-migrations?bogus=1', { microversion: '2.59' }), 400, 'Additional properties');
    assert.equal((await cc.get('/os-migrations?bogus=1', { microversion: '2.58' })).status, 200);
    const future = new Date(Date.now() + 3600_000).toISOString();
    assert.equal((await h.migrations(`?changes-since=${future}`, '2.59')).length, 0);
    assert.equal((await h.migrations(`?changes-before=${future}`, '2.66')).length, all.length);
    assertError(await cc.get(`/os-migrations?changes-before=${future}`, { microversion: '2.59' }), 400);
    assertError(await cc.get(`/os-migrations?changes-since=${future}&changes-before=2000-01-01T00:00:00Z`, { microversion: '2.66' }), 400, 'changes-since must be less than or equal to changes-before');
  });
});

describe('resize: auto-confirm and the same host', () => {
  let cc: ComputeCloud;
  let imageId: string;
  let h: Awaited<ReturnType<typeof helpers>>;

  before(async () => {
    cc = await startComputeCloud({ DEFAULT: { resize_confirm_window: '1', allow_resize_to_same_host: 'true' } }, 1);
    imageId = await cc.createImage({ visibility: 'public' });
    h = await helpers(cc);
  });
  after(async () => cc?.close());

  it('resizes on the only host when allow_resize_to_same_host, and confirms it after resize_confirm_window', async () => {
    const created = await cc.boot({ name: 'auto', imageRef: imageId, flavorRef: '1' });
    const server = await cc.waitServer(created.id);
    assert.equal(server.status, 'ACTIVE');
    assert.equal((await h.act(server.id, { resize: { flavorRef: '2' } })).status, 202);
    const resized = await cc.waitServer(server.id, (s) => s.status === 'VERIFY_RESIZE' || s.status === 'ACTIVE' && s.flavor.original_name === 'm1.small');
    assert.equal(resized['OS-EXT-SRV-ATTR:host'], 'fake-host-1');
    const [migration] = await h.migrations(`?instance_uuid=${server.id}`);
    // Same host: the migration holds the old flavor, the instance the new one, on the one provider.
    const usage = await h.usagesOf('fake-host-1');
    if (resized.status === 'VERIFY_RESIZE') assert.equal(usage.MEMORY_MB, 512 + 2048);
    // A migration cannot move a server on a one-host cloud.
    const done = await cc.waitServer(server.id, (s) => s.status === 'ACTIVE', undefined, 10_000);
    assert.equal(done.flavor.original_name, 'm1.small');
    await sleep(100);
    assert.deepEqual(await h.allocationsOf(migration.uuid), {});
    assert.equal((await h.usagesOf('fake-host-1')).MEMORY_MB, 2048);
    assert.equal((await h.migrations(`?instance_uuid=${server.id}`))[0].status, 'confirmed');
    const actions = await cc.get(`/servers/${server.id}/os-instance-actions`);
    assert.deepEqual(actions.body.instanceActions.map((a: any) => a.action).reverse(), ['create', 'resize', 'confirmResize']);

    assert.equal((await h.act(server.id, { migrate: null })).status, 202);
    for (let i = 0; i < 200 && (await h.migrations(`?instance_uuid=${server.id}`))[0].status !== 'error'; i++) await sleep(50);
    const failed = await cc.waitServer(server.id, (s) => s['OS-EXT-STS:task_state'] === null);
    assert.equal(failed.status, 'ACTIVE', 'a migration never goes to the same host: NoValidHost, rolled back');
    assert.equal((await h.migrations(`?instance_uuid=${server.id}`))[0].status, 'error');
    assert.equal((await h.usagesOf('fake-host-1')).MEMORY_MB, 2048);
  });
});
