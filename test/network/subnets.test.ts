// Subnets over HTTP: IPv4 defaults (gateway, pools), explicit pools/gateway/DNS/host routes and
// their validation, no gateway, IPv6 address modes, overlap and in-use conflicts, updates,
// visibility through shared networks and the network owner's rights.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { assertNeutronError, startNetworkCloud, type NetworkCloud, type ProjectToken } from './harness.js';

describe('subnets', () => {
  let nc: NetworkCloud;
  let other: ProjectToken;

  before(async () => {
    nc = await startNetworkCloud();
    other = await nc.projectUser('subnet-other');
  });
  after(() => nc.close());

  it('creates an IPv4 subnet with the first address as gateway and the rest as pool', async () => {
    const network = await nc.network({}, nc.demoToken);
    const subnet = await nc.subnet(network.id, { name: 's1', cidr: '192.168.10.0/24' }, nc.demoToken);
    assert.equal(subnet.gateway_ip, '192.168.10.1');
    assert.deepEqual(subnet.allocation_pools, [{ start: '192.168.10.2', end: '192.168.10.254' }]);
    assert.equal(subnet.ip_version, 4);
    assert.equal(subnet.enable_dhcp, true);
    assert.deepEqual(subnet.dns_nameservers, []);
    assert.deepEqual(subnet.host_routes, []);
    assert.equal(subnet.ipv6_ra_mode, null);
    assert.equal(subnet.subnetpool_id, null);
    assert.equal(subnet.project_id, nc.demoProject);
    const net = (await nc.get(`/networks/${network.id}`, { token: nc.demoToken })).body.network;
    assert.deepEqual(net.subnets, [subnet.id]);
    assert.equal((await nc.get(`/subnets?network_id=${network.id}`, { token: nc.demoToken })).body.subnets.length, 1);
  });

  it('takes explicit pools, gateway, DNS servers and host routes, and checks them', async () => {
    const network = await nc.network();
    const subnet = await nc.subnet(network.id, {
      cidr: '10.1.0.0/24', gateway_ip: '10.1.0.254', allocation_pools: [{ start: '10.1.0.100', end: '10.1.0.150' }],
      dns_nameservers: ['8.8.8.8', '1.1.1.1'], host_routes: [{ destination: '172.16.0.0/16', nexthop: '10.1.0.5' }], enable_dhcp: false,
    });
    assert.equal(subnet.gateway_ip, '10.1.0.254');
    assert.deepEqual(subnet.allocation_pools, [{ start: '10.1.0.100', end: '10.1.0.150' }]);
    assert.deepEqual(subnet.dns_nameservers, ['8.8.8.8', '1.1.1.1']);
    assert.deepEqual(subnet.host_routes, [{ destination: '172.16.0.0/16', nexthop: '10.1.0.5' }]);
    assert.equal(subnet.enable_dhcp, false);

    const post = (fields: Record<string, unknown>) => nc.post('/subnets', { subnet: { network_id: network.id, ip_version: 4, ...fields } });
    assertNeutronError(await post({ cidr: '10.1.0.0/25' }), 400, 'InvalidInput', 'overlaps');
    assertNeutronError(await post({ cidr: '10.2.0.5/24' }), 400, 'InvalidInput', 'recommended');
    assertNeutronError(await post({ cidr: 'nonsense' }), 400, 'InvalidInput');
    assertNeutronError(await post({ cidr: 'fd00::/64' }), 400, 'InvalidInput');
    assertNeutronError(await post({ cidr: '10.2.0.0/24', allocation_pools: [{ start: '10.2.0.10', end: '10.3.0.1' }] }), 400, 'OutOfBoundsAllocationPool');
    assertNeutronError(await post({ cidr: '10.2.0.0/24', allocation_pools: [{ start: '10.2.0.10', end: '10.2.0.20' }, { start: '10.2.0.15', end: '10.2.0.30' }] }), 400, 'OverlappingAllocationPools');
    assertNeutronError(await post({ cidr: '10.2.0.0/24', gateway_ip: '10.2.0.12', allocation_pools: [{ start: '10.2.0.10', end: '10.2.0.20' }] }), 409, 'GatewayConflictWithAllocationPools');
    assertNeutronError(await post({ cidr: '10.2.0.0/24', gateway_ip: '10.3.0.1' }), 400, 'InvalidInput');
    assertNeutronError(await post({ cidr: '10.2.0.0/24', dns_nameservers: ['8.8.8.8', '8.8.8.8'] }), 400, 'InvalidInput');
    assertNeutronError(await post({ cidr: '10.2.0.0/24', dns_nameservers: ['not-an-ip'] }), 400, 'InvalidInput');
    assertNeutronError(await post({ cidr: '10.2.0.0/24', host_routes: [{ destination: 'x', nexthop: '10.2.0.1' }] }), 400, 'InvalidInput');
    assertNeutronError(await post({ cidr: '10.2.0.0/24', ipv6_address_mode: 'slaac' }), 400, 'InvalidInput');
    assertNeutronError(await post({ ip_version: 5, cidr: '10.2.0.0/24' }), 400, 'InvalidInput');
    assertNeutronError(await post({}), 400);
    assertNeutronError(await nc.post('/subnets', { subnet: { network_id: 'nope', ip_version: 4, cidr: '10.2.0.0/24' } }), 404, 'NetworkNotFound');
  });

  it('makes a subnet without gateway when gateway_ip is null', async () => {
    const network = await nc.network();
    const subnet = await nc.subnet(network.id, { cidr: '10.3.0.0/29', gateway_ip: null });
    assert.equal(subnet.gateway_ip, null);
    assert.deepEqual(subnet.allocation_pools, [{ start: '10.3.0.1', end: '10.3.0.6' }]);
  });

  it('records IPv6 address modes and validates them', async () => {
    const network = await nc.network();
    const slaac = await nc.subnet(network.id, { ip_version: 6, cidr: '2001:db8:1::/64', ipv6_ra_mode: 'slaac', ipv6_address_mode: 'slaac' });
    assert.equal(slaac.gateway_ip, '2001:db8:1::1');
    assert.equal(slaac.ipv6_ra_mode, 'slaac');
    assert.equal(slaac.ipv6_address_mode, 'slaac');
    assert.deepEqual(slaac.allocation_pools, [{ start: '2001:db8:1::2', end: '2001:db8:1:0:ffff:ffff:ffff:ffff' }]);
    const stateful = await nc.subnet(network.id, { ip_version: 6, cidr: '2001:db8:2::/64', ipv6_address_mode: 'dhcpv6-stateful' });
    assert.equal(stateful.ipv6_address_mode, 'dhcpv6-stateful');
    assert.equal(stateful.ipv6_ra_mode, null);
    const post = (fields: Record<string, unknown>) => nc.post('/subnets', { subnet: { network_id: network.id, ip_version: 6, ...fields } });
    assertNeutronError(await post({ cidr: '2001:db8:3::/64', ipv6_ra_mode: 'slaac', ipv6_address_mode: 'dhcpv6-stateful' }), 400, 'InvalidInput');
    assertNeutronError(await post({ cidr: '2001:db8:3::/80', ipv6_address_mode: 'slaac' }), 400, 'InvalidInput', 'EUI-64');
    assertNeutronError(await post({ cidr: '2001:db8:3::/64', ipv6_address_mode: 'bogus' }), 400, 'InvalidInput');
    assertNeutronError(await post({ cidr: '2001:DB8:1::/64' }), 400, 'InvalidInput', 'overlaps');
    assertNeutronError(await post({ cidr: '2001:db8:4::/64', ipv6_address_mode: 'slaac', enable_dhcp: false }), 400, 'InvalidInput', 'enable_dhcp');
    assertNeutronError(await nc.put(`/subnets/${slaac.id}`, { subnet: { enable_dhcp: false } }), 400, 'InvalidInput');
    const plain = await nc.subnet(network.id, { ip_version: 6, cidr: '2001:db8:5::/64', enable_dhcp: false, gateway_ip: '2001:db8:5::fe' });
    assert.equal(plain.gateway_ip, '2001:db8:5::fe');
  });

  it('updates name, gateway, pools and DNS; refuses read-only attributes', async () => {
    const network = await nc.network({}, nc.demoToken);
    const subnet = await nc.subnet(network.id, { cidr: '10.4.0.0/24' }, nc.demoToken);
    const put = (fields: Record<string, unknown>) => nc.put(`/subnets/${subnet.id}`, { subnet: fields }, { token: nc.demoToken });
    const renamed = await put({ name: 'renamed', dns_nameservers: ['9.9.9.9'], allocation_pools: [{ start: '10.4.0.10', end: '10.4.0.20' }] });
    assert.equal(renamed.status, 200, renamed.text);
    assert.equal(renamed.body.subnet.name, 'renamed');
    assert.deepEqual(renamed.body.subnet.dns_nameservers, ['9.9.9.9']);
    assert.deepEqual(renamed.body.subnet.allocation_pools, [{ start: '10.4.0.10', end: '10.4.0.20' }]);
    assert.equal(renamed.body.subnet.revision_number, subnet.revision_number + 1);
    const gateway = await put({ gateway_ip: '10.4.0.5' });
    assert.equal(gateway.body.subnet.gateway_ip, '10.4.0.5');
    assertNeutronError(await put({ gateway_ip: '10.4.0.15' }), 409, 'GatewayConflictWithAllocationPools');
    assertNeutronError(await put({ cidr: '10.5.0.0/24' }), 400);
    assertNeutronError(await put({ network_id: network.id }), 400);
  });

  it('refuses to delete a subnet with ports, deletes it after', async () => {
    const network = await nc.network({ port_security_enabled: false }, nc.demoToken);
    const subnet = await nc.subnet(network.id, { cidr: '10.6.0.0/24' }, nc.demoToken);
    const port = await nc.port(network.id, {}, nc.demoToken);
    assertNeutronError(await nc.delete(`/subnets/${subnet.id}`, { token: nc.demoToken }), 409, 'SubnetInUse');
    await nc.delete(`/ports/${port.id}`, { token: nc.demoToken });
    assert.equal((await nc.delete(`/subnets/${subnet.id}`, { token: nc.demoToken })).status, 204);
    assertNeutronError(await nc.get(`/subnets/${subnet.id}`, { token: nc.demoToken }), 404, 'SubnetNotFound');
    assert.deepEqual((await nc.get(`/networks/${network.id}`, { token: nc.demoToken })).body.network.subnets, []);
  });

  it('lets other projects see subnets of shared networks but only the network owner add subnets', async () => {
    const shared = await nc.network({ shared: true });
    const subnet = await nc.subnet(shared.id, { cidr: '10.7.0.0/24' });
    const privateNet = await nc.network({}, nc.demoToken);
    const hidden = await nc.subnet(privateNet.id, { cidr: '10.8.0.0/24' }, nc.demoToken);
    const seen = (await nc.get('/subnets', { token: other.token })).body.subnets.map((s: any) => s.id);
    assert.ok(seen.includes(subnet.id));
    assert.ok(!seen.includes(hidden.id));
    assertNeutronError(await nc.get(`/subnets/${hidden.id}`, { token: other.token }), 404, 'SubnetNotFound');
    assertNeutronError(await nc.post('/subnets', { subnet: { network_id: shared.id, ip_version: 4, cidr: '10.70.0.0/24' } }, { token: other.token }), 403, 'PolicyNotAuthorized');
    assertNeutronError(await nc.post('/subnets', { subnet: { network_id: privateNet.id, ip_version: 4, cidr: '10.80.0.0/24' } }, { token: other.token }), 404, 'NetworkNotFound');
    assertNeutronError(await nc.put(`/subnets/${subnet.id}`, { subnet: { name: 'x' } }, { token: other.token }), 403, 'PolicyNotAuthorized');
  });
});

describe('subnet pools', () => {
  let nc: NetworkCloud;

  before(async () => { nc = await startNetworkCloud(); });
  after(() => nc.close());

  it('creates a pool, allocates subnets of its default or a given prefix length, and refuses what does not fit', async () => {
    const created = await nc.post('/subnetpools', { subnetpool: { name: 'pool', prefixes: ['10.100.0.0/16'], default_prefixlen: 24, max_prefixlen: 28 } }, { token: nc.demoToken });
    assert.equal(created.status, 201, created.text);
    const pool = created.body.subnetpool;
    assert.deepEqual(pool.prefixes, ['10.100.0.0/16']);
    assert.equal(pool.ip_version, 4);
    assert.equal(pool.default_prefixlen, 24);
    assert.equal(pool.min_prefixlen, 8);
    assert.equal(pool.max_prefixlen, 28);
    assert.equal(pool.shared, false);
    assert.equal(pool.is_default, false);
    assert.equal(pool.address_scope_id, null);

    const network = await nc.network({}, nc.demoToken);
    const first = await nc.subnet(network.id, { cidr: undefined, subnetpool_id: pool.id }, nc.demoToken);
    assert.equal(first.cidr, '10.100.0.0/24');
    assert.equal(first.subnetpool_id, pool.id);
    assert.equal(first.gateway_ip, '10.100.0.1');
    const other = await nc.network({}, nc.demoToken);
    const second = await nc.subnet(other.id, { cidr: undefined, subnetpool_id: pool.id, prefixlen: 26 }, nc.demoToken);
    assert.equal(second.cidr, '10.100.1.0/26');
    const explicit = await nc.subnet((await nc.network({}, nc.demoToken)).id, { cidr: '10.100.5.0/24', subnetpool_id: pool.id }, nc.demoToken);
    assert.equal(explicit.cidr, '10.100.5.0/24');
    const post = (fields: Record<string, unknown>) => nc.post('/subnets', { subnet: { network_id: other.id, ip_version: 4, subnetpool_id: pool.id, ...fields } }, { token: nc.demoToken });
    assertNeutronError(await post({ cidr: '10.100.5.0/25' }), 409, 'SubnetAllocationError');
    assertNeutronError(await post({ cidr: '10.200.0.0/24' }), 409, 'SubnetAllocationError');
    assertNeutronError(await post({ prefixlen: 30 }), 400, 'InvalidInput');
    assertNeutronError(await post({ ip_version: 6 }), 400, 'InvalidInput');

    assertNeutronError(await nc.delete(`/subnetpools/${pool.id}`, { token: nc.demoToken }), 409, 'SubnetPoolInUse');
    const grown = await nc.put(`/subnetpools/${pool.id}/add_prefixes`, { prefixes: ['10.101.0.0/16'] }, { token: nc.demoToken });
    assert.deepEqual(grown.body.prefixes, ['10.100.0.0/16', '10.101.0.0/16']);
    assertNeutronError(await nc.put(`/subnetpools/${pool.id}`, { subnetpool: { prefixes: ['10.101.0.0/16'] } }, { token: nc.demoToken }), 400, 'InvalidInput');
    assertNeutronError(await nc.put(`/subnetpools/${pool.id}/remove_prefixes`, { prefixes: ['10.100.0.0/16'] }, { token: nc.demoToken }), 400, 'InvalidInput');
    const shrunk = await nc.put(`/subnetpools/${pool.id}/remove_prefixes`, { prefixes: ['10.101.0.0/16'] }, { token: nc.demoToken });
    assert.deepEqual(shrunk.body.prefixes, ['10.100.0.0/16']);
    const renamed = await nc.put(`/subnetpools/${pool.id}`, { subnetpool: { name: 'renamed', default_prefixlen: 25 } }, { token: nc.demoToken });
    assert.equal(renamed.body.subnetpool.name, 'renamed');
    assert.equal(renamed.body.subnetpool.default_prefixlen, 25);
  });

  it('fills a small pool and then answers 409', async () => {
    const pool = (await nc.post('/subnetpools', { subnetpool: { name: 'tiny', prefixes: ['10.110.0.0/23'], default_prefixlen: 24 } })).body.subnetpool;
    for (const cidr of ['10.110.0.0/24', '10.110.1.0/24']) {
      assert.equal((await nc.subnet((await nc.network()).id, { cidr: undefined, subnetpool_id: pool.id })).cidr, cidr);
    }
    assertNeutronError(await nc.post('/subnets', { subnet: { network_id: (await nc.network()).id, ip_version: 4, subnetpool_id: pool.id } }), 409, 'SubnetAllocationError', 'Insufficient prefix space');
  });

  it('uses the default pool of the IP version when asked; only an admin marks pools shared or default', async () => {
    assertNeutronError(await nc.post('/subnetpools', { subnetpool: { name: 'x', prefixes: ['10.120.0.0/16'], shared: true } }, { token: nc.demoToken }), 403, 'PolicyNotAuthorized');
    assertNeutronError(await nc.post('/subnetpools', { subnetpool: { name: 'x', prefixes: ['10.120.0.0/16'], is_default: true } }, { token: nc.demoToken }), 403, 'PolicyNotAuthorized');
    const v6 = (await nc.post('/subnetpools', { subnetpool: { name: 'v6', prefixes: ['2001:db8:a::/48'], default_prefixlen: 64, is_default: true, shared: true } })).body.subnetpool;
    assert.equal(v6.ip_version, 6);
    assert.equal(v6.is_default, true);
    assertNeutronError(await nc.post('/subnetpools', { subnetpool: { name: 'v6b', prefixes: ['2001:db8:b::/48'], is_default: true } }), 400, 'InvalidInput');
    // A member sees the shared pool and allocates from it by default.
    assert.ok((await nc.get('/subnetpools', { token: nc.demoToken })).body.subnetpools.some((p: any) => p.id === v6.id));
    const network = await nc.network({}, nc.demoToken);
    const subnet = await nc.subnet(network.id, { ip_version: 6, cidr: undefined, use_default_subnetpool: true, ipv6_address_mode: 'slaac', ipv6_ra_mode: 'slaac' }, nc.demoToken);
    assert.equal(subnet.cidr, '2001:db8:a::/64');
    assert.equal(subnet.subnetpool_id, v6.id);
    assertNeutronError(await nc.post('/subnets', { subnet: { network_id: network.id, ip_version: 4, use_default_subnetpool: true } }, { token: nc.demoToken }), 400, undefined, 'No default subnetpool');
    assertNeutronError(await nc.post('/subnetpools', { subnetpool: { name: 'mixed', prefixes: ['10.0.0.0/8', 'fd00::/8'] } }), 400, 'InvalidInput');
    assertNeutronError(await nc.post('/subnetpools', { subnetpool: { name: 'none' } }), 400);
    assertNeutronError(await nc.get('/subnetpools/nope'), 404, 'SubnetPoolNotFound');
  });
});
