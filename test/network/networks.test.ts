// Networks over HTTP: create/list/show/update/delete with Neutron's attributes, provider
// segments (flat, vlan, vxlan) with admin-only attributes and id conflicts, visibility of shared
// and external networks, filters, fields, sorting and paging, tags, availability zones, errors.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { assertNeutronError, startNetworkCloud, type NetworkCloud, type ProjectToken } from './harness.js';

describe('networks', () => {
  let nc: NetworkCloud;
  let other: ProjectToken;

  before(async () => {
    nc = await startNetworkCloud({ ml2_type_vlan: { network_vlan_ranges: 'physnet9:100:101' } });
    other = await nc.projectUser('net-other');
  });
  after(() => nc.close());

  it('creates a tenant network with Neutron defaults and shows it', async () => {
    const created = await nc.post('/networks', { network: { name: 'private', description: 'mine' } }, { token: nc.demoToken });
    assert.equal(created.status, 201, created.text);
    const network = created.body.network;
    assert.equal(network.name, 'private');
    assert.equal(network.description, 'mine');
    assert.equal(network.project_id, nc.demoProject);
    assert.equal(network.tenant_id, nc.demoProject);
    assert.equal(network.status, 'ACTIVE');
    assert.equal(network.admin_state_up, true);
    assert.equal(network.shared, false);
    assert.equal(network['router:external'], false);
    assert.equal(network.port_security_enabled, true);
    assert.equal(network.mtu, 1450, 'a VXLAN tenant network carries 50 bytes less than the physical network');
    assert.deepEqual(network.subnets, []);
    assert.deepEqual(network.tags, []);
    assert.equal(network.revision_number, 1);
    assert.match(network.created_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    assert.ok(!('provider:network_type' in network), 'provider attributes are for admins only');

    const shown = await nc.get(`/networks/${network.id}`);
    assert.equal(shown.status, 200);
    assert.equal(shown.body.network['provider:network_type'], 'vxlan');
    assert.ok(Number.isInteger(shown.body.network['provider:segmentation_id']));
    assert.equal(shown.body.network['provider:physical_network'], null);

    const fields = await nc.get(`/networks/${network.id}?fields=id&fields=name`, { token: nc.demoToken });
    assert.deepEqual(fields.body.network, { id: network.id, name: 'private' });
  });

  it('gives each tenant network its own VXLAN id', async () => {
    const a = await nc.network({ name: 'vx-a' });
    const b = await nc.network({ name: 'vx-b' });
    assert.notEqual(a['provider:segmentation_id'], b['provider:segmentation_id']);
  });

  it('creates provider networks as admin and refuses id clashes and bad attributes', async () => {
    const vlan = await nc.network({ name: 'vlan-100', 'provider:network_type': 'vlan', 'provider:physical_network': 'physnet1', 'provider:segmentation_id': 100 });
    assert.equal(vlan['provider:network_type'], 'vlan');
    assert.equal(vlan['provider:segmentation_id'], 100);
    assert.equal(vlan.mtu, 1500);
    assertNeutronError(await nc.post('/networks', { network: { 'provider:network_type': 'vlan', 'provider:physical_network': 'physnet1', 'provider:segmentation_id': 100 } }), 409, 'VlanIdInUse');
    // The same VLAN id on another physical network is another segment.
    await nc.network({ 'provider:network_type': 'vlan', 'provider:physical_network': 'physnet2', 'provider:segmentation_id': 100 });
    assertNeutronError(await nc.post('/networks', { network: { 'provider:network_type': 'vlan', 'provider:physical_network': 'physnet1', 'provider:segmentation_id': 4095 } }), 400, 'InvalidInput');
    assertNeutronError(await nc.post('/networks', { network: { 'provider:network_type': 'vlan' } }), 400, 'InvalidInput');
    assertNeutronError(await nc.post('/networks', { network: { 'provider:network_type': 'gre' } }), 400, 'InvalidInput');

    const flat = await nc.network({ name: 'public', 'provider:network_type': 'flat', 'provider:physical_network': 'extnet', 'router:external': true });
    assert.equal(flat['provider:segmentation_id'], null);
    assert.equal(flat['router:external'], true);
    assertNeutronError(await nc.post('/networks', { network: { 'provider:network_type': 'flat', 'provider:physical_network': 'extnet' } }), 409, 'FlatNetworkInUse');

    const vxlan = await nc.network({ 'provider:network_type': 'vxlan', 'provider:segmentation_id': 5000 });
    assert.equal(vxlan['provider:segmentation_id'], 5000);
    assertNeutronError(await nc.post('/networks', { network: { 'provider:network_type': 'vxlan', 'provider:segmentation_id': 5000 } }), 409, 'TunnelIdInUse');

    // A member may not set admin-only attributes.
    for (const attrs of [{ shared: true }, { 'router:external': true }, { 'provider:network_type': 'vxlan' }]) {
      assertNeutronError(await nc.post('/networks', { network: attrs }, { token: nc.demoToken }), 403, 'PolicyNotAuthorized');
    }
    // Provider attributes do not change after create.
    assertNeutronError(await nc.put(`/networks/${vlan.id}`, { network: { 'provider:segmentation_id': 101 } }), 400, 'InvalidInput');
  });

  it('allocates VLAN ids from [ml2_type_vlan] network_vlan_ranges until none is left', async () => {
    const vlan = { 'provider:network_type': 'vlan', 'provider:physical_network': 'physnet9' };
    const ids = [(await nc.network(vlan))['provider:segmentation_id'], (await nc.network(vlan))['provider:segmentation_id']];
    assert.deepEqual(ids.sort(), [100, 101]);
    assertNeutronError(await nc.post('/networks', { network: vlan }), 503, 'NoNetworkAvailable');
    assertNeutronError(await nc.post('/networks', { network: { 'provider:network_type': 'vlan', 'provider:physical_network': 'physnet8' } }), 503, 'NoNetworkAvailable');
  });

  it('shows shared and external networks to other projects, hides private ones', async () => {
    const mine = await nc.network({ name: 'hidden' }, nc.demoToken);
    const shared = await nc.network({ name: 'shared-net', shared: true });
    const external = await nc.network({ name: 'ext-net', 'router:external': true });
    const seen = await nc.get('/networks', { token: other.token });
    const ids = seen.body.networks.map((n: any) => n.id);
    assert.ok(ids.includes(shared.id) && ids.includes(external.id));
    assert.ok(!ids.includes(mine.id));
    assertNeutronError(await nc.get(`/networks/${mine.id}`, { token: other.token }), 404, 'NetworkNotFound');
    // Seeing a shared network is not owning it.
    assertNeutronError(await nc.put(`/networks/${shared.id}`, { network: { name: 'x' } }, { token: other.token }), 403, 'PolicyNotAuthorized');
    assertNeutronError(await nc.delete(`/networks/${shared.id}`, { token: other.token }), 403, 'PolicyNotAuthorized');
    const externalOnly = (await nc.get('/networks?router:external=True', { token: other.token })).body.networks.map((n: any) => n.id);
    assert.ok(externalOnly.includes(external.id) && !externalOnly.includes(shared.id));
    assert.ok((await nc.get('/networks?shared=true', { token: other.token })).body.networks.every((n: any) => n.shared === true));
    // The admin sees everything.
    assert.ok((await nc.get('/networks')).body.networks.some((n: any) => n.id === mine.id));
  });

  it('updates attributes, bumps the revision and refuses read-only or unknown ones', async () => {
    const network = await nc.network({ name: 'before' }, nc.demoToken);
    const updated = await nc.put(`/networks/${network.id}`, { network: { name: 'after', admin_state_up: false, mtu: 1400, description: 'd', port_security_enabled: false } }, { token: nc.demoToken });
    assert.equal(updated.status, 200, updated.text);
    assert.equal(updated.body.network.name, 'after');
    assert.equal(updated.body.network.admin_state_up, false);
    assert.equal(updated.body.network.mtu, 1400);
    assert.equal(updated.body.network.port_security_enabled, false);
    assert.equal(updated.body.network.revision_number, network.revision_number + 1);
    assertNeutronError(await nc.put(`/networks/${network.id}`, { network: { mtu: 9000 } }, { token: nc.demoToken }), 400, 'InvalidInput');
    assertNeutronError(await nc.put(`/networks/${network.id}`, { network: { tenant_id: 'x' } }, { token: nc.demoToken }), 400);
    assertNeutronError(await nc.put(`/networks/${network.id}`, { network: { bogus: 1 } }, { token: nc.demoToken }), 400);
    assertNeutronError(await nc.put(`/networks/${network.id}`, { network: { admin_state_up: 'maybe' } }, { token: nc.demoToken }), 400);
    assertNeutronError(await nc.put(`/networks/${network.id}`, { network: { shared: true } }, { token: nc.demoToken }), 403, 'PolicyNotAuthorized');
    assertNeutronError(await nc.post('/networks', {}), 400);
  });

  it('filters, sorts and pages lists', async () => {
    const tag = `t${Date.now()}`;
    for (const name of ['page-c', 'page-a', 'page-b']) await nc.network({ name, tags: [tag] }, other.token);
    const sorted = await nc.get(`/networks?tags=${tag}&sort_key=name&sort_dir=asc`, { token: other.token });
    assert.deepEqual(sorted.body.networks.map((n: any) => n.name), ['page-a', 'page-b', 'page-c']);
    const byName = await nc.get('/networks?name=page-b', { token: other.token });
    assert.deepEqual(byName.body.networks.map((n: any) => n.name), ['page-b']);
    const first = await nc.get(`/networks?tags=${tag}&sort_key=name&limit=2`, { token: other.token });
    assert.equal(first.body.networks.length, 2);
    const next = first.body.networks_links.find((l: any) => l.rel === 'next');
    assert.ok(next, first.text);
    const second = await nc.get(next.href, { token: other.token });
    assert.deepEqual(second.body.networks.map((n: any) => n.name), ['page-c']);
  });

  it('keeps tags through the tags routes', async () => {
    const network = await nc.network({ name: 'tagged' }, nc.demoToken);
    const base = `/networks/${network.id}/tags`;
    assert.equal((await nc.put(`${base}/red`, undefined, { token: nc.demoToken })).status, 201);
    assert.equal((await nc.get(`${base}/red`, { token: nc.demoToken })).status, 204);
    assertNeutronError(await nc.get(`${base}/blue`, { token: nc.demoToken }), 404, 'TagNotFound');
    const replaced = await nc.put(base, { tags: ['b', 'a'] }, { token: nc.demoToken });
    assert.deepEqual(replaced.body.tags, ['a', 'b']);
    assert.deepEqual((await nc.get(base, { token: nc.demoToken })).body.tags, ['a', 'b']);
    assert.equal((await nc.delete(`${base}/a`, { token: nc.demoToken })).status, 204);
    assert.deepEqual((await nc.get(`/networks/${network.id}`, { token: nc.demoToken })).body.network.tags, ['b']);
    assert.equal((await nc.delete(base, { token: nc.demoToken })).status, 204);
    assert.deepEqual((await nc.get(base, { token: nc.demoToken })).body.tags, []);
    assertNeutronError(await nc.put(`${base}/x`, undefined, { token: other.token }), 404, 'NetworkNotFound');
    assert.ok((await nc.get(`/networks/${network.id}`)).body.network.revision_number > network.revision_number);
  });

  it('deletes a network with its subnets, refuses one with ports in use', async () => {
    const network = await nc.network({ name: 'doomed', port_security_enabled: false }, nc.demoToken);
    const subnet = await nc.subnet(network.id, { cidr: '10.9.0.0/24' }, nc.demoToken);
    const port = await nc.port(network.id, {}, nc.demoToken);
    assertNeutronError(await nc.delete(`/networks/${network.id}`, { token: nc.demoToken }), 409, 'NetworkInUse');
    assert.equal((await nc.delete(`/ports/${port.id}`, { token: nc.demoToken })).status, 204);
    assert.equal((await nc.delete(`/networks/${network.id}`, { token: nc.demoToken })).status, 204);
    assertNeutronError(await nc.get(`/networks/${network.id}`), 404, 'NetworkNotFound');
    assertNeutronError(await nc.get(`/subnets/${subnet.id}`), 404, 'SubnetNotFound');
    assertNeutronError(await nc.delete(`/networks/${network.id}`), 404, 'NetworkNotFound');
  });

  it('reports IP availability per network and subnet to admins', async () => {
    const network = await nc.network({ name: 'avail', port_security_enabled: false });
    const subnet = await nc.subnet(network.id, { cidr: '10.60.0.0/28' });
    await nc.port(network.id);
    await nc.port(network.id);
    const shown = await nc.get(`/network-ip-availabilities/${network.id}`);
    assert.equal(shown.status, 200, shown.text);
    const availability = shown.body.network_ip_availability;
    assert.equal(availability.total_ips, 13);
    assert.equal(availability.used_ips, 2);
    assert.deepEqual(availability.subnet_ip_availability, [{ subnet_id: subnet.id, subnet_name: '', ip_version: 4, cidr: '10.60.0.0/28', total_ips: 13, used_ips: 2 }]);
    assert.ok((await nc.get('/network-ip-availabilities')).body.network_ip_availabilities.some((a: any) => a.network_id === network.id));
    assertNeutronError(await nc.get(`/network-ip-availabilities/${network.id}`, { token: nc.demoToken }), 403, 'PolicyNotAuthorized');
  });

  it('lists the availability zones, version and the extensions it serves', async () => {
    const zones = await nc.get('/availability_zones');
    assert.deepEqual(zones.body.availability_zones.map((z: any) => `${z.name}/${z.resource}/${z.state}`).sort(), ['nova/network/available', 'nova/router/available']);
    const versions = await nc.get('/networking/', { token: '' });
    assert.equal(versions.status, 200);
    assert.equal(versions.body.versions[0].id, 'v2.0');
    const extensions = (await nc.get('/extensions')).body.extensions.map((e: any) => e.alias);
    for (const alias of ['external-net', 'provider', 'binding', 'port-security', 'standard-attr-tag', 'net-mtu']) assert.ok(extensions.includes(alias), alias);
    assertNeutronError(await nc.get('/networks', { token: '' }), 401);
  });
});
