// Host aggregates and availability zones over HTTP, against the fake compute hosts the cloud
// runs: create/show/update/delete with Nova's checks, uuid from 2.41, add_host / remove_host
// mirrored into Placement provider aggregates, set_metadata (null removes), zone conflicts,
// the availability-zone views (summary for everyone, detail for admins) and policy refusals.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { assertError, sleep, startComputeCloud, unique, type ComputeCloud } from './harness.js';

describe('aggregates and availability zones', () => {
  let cc: ComputeCloud;
  let imageId: string;

  before(async () => {
    cc = await startComputeCloud({}, 2);
    imageId = await cc.createImage({ visibility: 'public' });
    // The fake hosts register with the conductor: wait for both compute services.
    for (let i = 0; ; i++) {
      const rows = await cc.cloud.database.db.selectFrom('compute_services').select('host').where('binary', '=', 'nova-compute').execute();
      if (rows.length >= 2) break;
      if (i > 200) assert.fail('fake hosts did not register');
      await sleep(50);
    }
  });
  after(async () => cc?.close());

  const action = (id: number, body: unknown, options: { microversion?: string; token?: string } = {}) => cc.post(`/os-aggregates/${id}/action`, body, options);
  const nodeOf = async (host: string): Promise<string> => {
    const row = await cc.cloud.database.db.selectFrom('compute_nodes').select('id').where('host', '=', host).executeTakeFirstOrThrow();
    return row.id;
  };
  const providerAggregates = async (host: string): Promise<string[]> => {
    const res = await cc.get(`/placement/resource_providers/${await nodeOf(host)}/aggregates`, { headers: { 'OpenStack-API-Version': 'placement 1.19' } });
    assert.equal(res.status, 200, res.text);
    return res.body.aggregates;
  };

  it('creates, shows, updates and deletes aggregates with integer ids; uuid from 2.41', async () => {
    const name = unique('agg');
    const created = await cc.post('/os-aggregates', { aggregate: { name, availability_zone: 'zone-a' } });
    assert.equal(created.status, 200, created.text);
    const agg = created.body.aggregate;
    assert.equal(typeof agg.id, 'number');
    assert.equal(agg.name, name);
    assert.equal(agg.availability_zone, 'zone-a');
    assert.equal(agg.hosts, undefined);
    assert.equal(agg.metadata, undefined);
    assert.equal(agg.uuid, undefined);
    assert.equal(agg.deleted, false);
    assert.match(agg.created_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}$/);

    const second = await cc.post('/os-aggregates', { aggregate: { name: unique('agg') } }, { microversion: '2.41' });
    assert.equal(second.body.aggregate.id, agg.id + 1);
    assert.match(second.body.aggregate.uuid, /^[0-9a-f-]{36}$/);
    assert.equal(second.body.aggregate.availability_zone, null);

    const shown = await cc.get(`/os-aggregates/${agg.id}`, { microversion: '2.41' });
    assert.deepEqual(shown.body.aggregate.hosts, []);
    assert.deepEqual(shown.body.aggregate.metadata, { availability_zone: 'zone-a' });
    assert.match(shown.body.aggregate.uuid, /^[0-9a-f-]{36}$/);
    const listed = await cc.get('/os-aggregates');
    assert.deepEqual(listed.body.aggregates.map((a: any) => a.id), [agg.id, agg.id + 1]);
    assert.equal(listed.body.aggregates[0].uuid, undefined);

    const renamed = await cc.put(`/os-aggregates/${agg.id}`, { aggregate: { name: `${name}-x`, availability_zone: 'zone-b' } });
    assert.equal(renamed.status, 200, renamed.text);
    assert.equal(renamed.body.aggregate.name, `${name}-x`);
    assert.equal(renamed.body.aggregate.availability_zone, 'zone-b');
    assert.ok(renamed.body.aggregate.updated_at);

    assertError(await cc.post('/os-aggregates', { aggregate: { name: `${name}-x` } }), 409, `Aggregate ${name}-x already exists.`);
    assertError(await cc.put(`/os-aggregates/${agg.id + 1}`, { aggregate: { name: `${name}-x` } }), 409);
    assertError(await cc.put(`/os-aggregates/${agg.id}`, { aggregate: {} }), 400);
    assertError(await cc.put(`/os-aggregates/${agg.id}`, { aggregate: { availability_zone: null } }), 400, `Cannot update aggregate ${agg.id}. Reason: Aggregate ${name}-x does not support empty named availability zone.`);

    for (const id of [agg.id, agg.id + 1]) assert.equal((await cc.delete(`/os-aggregates/${id}`)).status, 200);
    assertError(await cc.get(`/os-aggregates/${agg.id}`), 404, `Aggregate ${agg.id} could not be found.`);
    assertError(await cc.delete(`/os-aggregates/${agg.id}`), 404);
    assertError(await cc.get('/os-aggregates/abc'), 400, 'Invalid input received: id must be an integer');
  });

  it('validates input and refuses non-admins', async () => {
    assertError(await cc.post('/os-aggregates', { aggregate: { name: 'x', availability_zone: 'a:b' } }), 400, /Invalid input for field\/attribute availability_zone/);
    assertError(await cc.post('/os-aggregates', { aggregate: { name: 'x', availability_zone: 'internal' } }), 400, 'internal');
    assertError(await cc.post('/os-aggregates', { aggregate: { availability_zone: 'z' } }), 400, "'name' is a required property");
    assertError(await cc.post('/os-aggregates', { aggregate: { name: 'x', hosts: [] } }), 400, "('hosts' was unexpected)");
    assertError(await cc.post('/os-aggregates', { aggregate: { name: 'x' } }, { token: cc.demoToken }), 403, 'os_compute_api:os-aggregates:create');
    assertError(await cc.get('/os-aggregates', { token: cc.demoToken }), 403, 'os_compute_api:os-aggregates:index');
    assertError(await action(1, { add_host: { host: 'fake-host-1' } }, { token: cc.demoToken }), 403);
    assertError(await action(1, { bogus: {} }), 400);
  });

  it('adds and removes hosts, mirrored into Placement, with Nova\'s zone rules', async () => {
    const a = (await cc.post('/os-aggregates', { aggregate: { name: unique('hosts-a'), availability_zone: 'az1' } }, { microversion: '2.41' })).body.aggregate;
    const b = (await cc.post('/os-aggregates', { aggregate: { name: unique('hosts-b'), availability_zone: 'az2' } }, { microversion: '2.41' })).body.aggregate;
    const plain = (await cc.post('/os-aggregates', { aggregate: { name: unique('plain') } }, { microversion: '2.41' })).body.aggregate;

    assertError(await action(a.id, { add_host: { host: 'no-such-host' } }), 404, 'Compute host no-such-host could not be found.');
    assertError(await action(9999, { add_host: { host: 'fake-host-1' } }), 404, 'Aggregate 9999 could not be found.');
    assertError(await action(a.id, { add_host: { host: 'bad host!' } }), 400, /field\/attribute host/);

    const added = await action(a.id, { add_host: { host: 'fake-host-1' } }, { microversion: '2.41' });
    assert.equal(added.status, 200, added.text);
    assert.deepEqual(added.body.aggregate.hosts, ['fake-host-1']);
    assert.deepEqual(await providerAggregates('fake-host-1'), [a.uuid]);
    assertError(await action(a.id, { add_host: { host: 'fake-host-1' } }), 409, `Aggregate ${a.id} already has host fake-host-1.`);
    // A host is in one zone only; a zone-less aggregate is fine.
    assertError(await action(b.id, { add_host: { host: 'fake-host-1' } }), 409, `Cannot add host to aggregate ${b.id}. Reason: One or more hosts already in availability zone(s) ['az1'].`);
    assert.equal((await action(plain.id, { add_host: { host: 'fake-host-1' } })).status, 200);
    assert.deepEqual((await providerAggregates('fake-host-1')).sort(), [a.uuid, plain.uuid].sort());
    // Moving the zone-less aggregate into another zone would put fake-host-1 in two zones.
    assertError(await action(plain.id, { set_metadata: { metadata: { availability_zone: 'az2' } } }), 400,
      `Cannot update metadata of aggregate ${plain.id}. Reason: One or more hosts already in availability zone(s) ['az1'].`);
    // An aggregate with hosts cannot be deleted.
    assertError(await cc.delete(`/os-aggregates/${a.id}`), 400, `Cannot remove host from aggregate ${a.id}. Reason: Host aggregate is not empty.`);

    const removed = await action(plain.id, { remove_host: { host: 'fake-host-1' } });
    assert.deepEqual(removed.body.aggregate.hosts, []);
    assert.deepEqual(await providerAggregates('fake-host-1'), [a.uuid]);
    assertError(await action(plain.id, { remove_host: { host: 'fake-host-1' } }), 404, `Cannot remove host fake-host-1 in aggregate ${plain.id}`);
    assertError(await action(plain.id, { remove_host: { host: 'nope' } }), 404, `Cannot remove host nope in aggregate ${plain.id}`);

    // The zone shows for everyone; fake-host-2 stays in the default zone.
    const zones = await cc.get('/os-availability-zone', { token: cc.demoToken });
    assert.equal(zones.status, 200, zones.text);
    assert.deepEqual(zones.body.availabilityZoneInfo, [
      { zoneName: 'az1', zoneState: { available: true }, hosts: null },
      { zoneName: 'nova', zoneState: { available: true }, hosts: null },
    ]);
    const detail = await cc.get('/os-availability-zone/detail');
    assert.equal(detail.status, 200, detail.text);
    const byZone = Object.fromEntries(detail.body.availabilityZoneInfo.map((z: any) => [z.zoneName, z]));
    assert.deepEqual(Object.keys(byZone['az1'].hosts), ['fake-host-1']);
    const compute = byZone['az1'].hosts['fake-host-1']['nova-compute'];
    assert.equal(compute.available, true);
    assert.equal(compute.active, true);
    assert.match(compute.updated_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}$/);
    assert.deepEqual(Object.keys(byZone['nova'].hosts), ['fake-host-2']);
    assert.ok(byZone['internal'], 'the internal zone lists the control services');
    assert.ok(Object.values(byZone['internal'].hosts).some((services: any) => 'nova-conductor' in services));
    assertError(await cc.get('/os-availability-zone/detail', { token: cc.demoToken }), 403, 'os_compute_api:os-availability-zone:detail');

    // A server asking for az1 lands on fake-host-1, and az1 cannot then be renamed under it.
    const server = await cc.boot({ name: 'in-az1', imageRef: imageId, availability_zone: 'az1' });
    const active = await cc.waitServer(server.id);
    assert.equal(active['OS-EXT-SRV-ATTR:host'], 'fake-host-1');
    assert.equal(active['OS-EXT-AZ:availability_zone'], 'az1');
    assertError(await action(a.id, { set_metadata: { metadata: { availability_zone: 'az9' } } }), 400, 'One or more hosts contain instances in this zone');
    assertError(await action(a.id, { remove_host: { host: 'fake-host-1' } }), 409, /availability zone of the host would change from 'az1' to 'None'/);
    await cc.delete(`/servers/${server.id}`);
    await cc.waitServer(server.id, (s) => s.status === 'DELETED');

    assert.equal((await action(a.id, { remove_host: { host: 'fake-host-1' } })).status, 200);
    assert.deepEqual(await providerAggregates('fake-host-1'), []);
    for (const agg of [a, b, plain]) assert.equal((await cc.delete(`/os-aggregates/${agg.id}`)).status, 200);
  });

  it('sets metadata: null removes a key, availability_zone is metadata', async () => {
    const agg = (await cc.post('/os-aggregates', { aggregate: { name: unique('meta') } })).body.aggregate;
    const set = await action(agg.id, { set_metadata: { metadata: { ssd: 'true', availability_zone: 'fast', note: 'x' } } });
    assert.equal(set.status, 200, set.text);
    assert.deepEqual(set.body.aggregate.metadata, { ssd: 'true', availability_zone: 'fast', note: 'x' });
    assert.equal(set.body.aggregate.availability_zone, 'fast');
    const unset = await action(agg.id, { set_metadata: { metadata: { note: null, gone: null } } });
    assert.deepEqual(unset.body.aggregate.metadata, { ssd: 'true', availability_zone: 'fast' });
    assertError(await action(agg.id, { set_metadata: { metadata: { availability_zone: null } } }), 400, 'does not support empty named availability zone');
    assertError(await action(agg.id, { set_metadata: { metadata: { 'bad/key': 'x' } } }), 400);
    assertError(await action(agg.id, { set_metadata: { metadata: { k: 5 } } }), 400, /is not of type 'string', 'null'/);
    assertError(await action(agg.id, { set_metadata: {} }), 400, "'metadata' is a required property");
    // An aggregate zone with no hosts is not listed as a zone.
    assert.ok(!(await cc.get('/os-availability-zone')).body.availabilityZoneInfo.some((z: any) => z.zoneName === 'fast'));
    await cc.delete(`/os-aggregates/${agg.id}`);
  });
});
