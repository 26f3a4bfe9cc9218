// Ports over HTTP: automatic and explicit fixed IPs, the fixed_ips filter, MAC addresses,
// address conflicts and a full subnet, SLAAC addresses, fixed IP updates, allowed address pairs,
// extra DHCP options, port security with the default security group, admin-only binding
// attributes, binding to a host whose no-op agent makes the port ACTIVE, and the service's bind().
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { transaction } from '../../src/db/index.js';
import { assertNeutronError, startNetworkCloud, type NetworkCloud, type ProjectToken } from './harness.js';

describe('ports', () => {
  let nc: NetworkCloud;
  let other: ProjectToken;
  let network: any;
  let subnet: any;

  before(async () => {
    nc = await startNetworkCloud();
    other = await nc.projectUser('port-other');
    network = await nc.network({ name: 'ports-net' }, nc.demoToken);
    // Random addresses come from .128 up, so the explicit ones below never meet them.
    subnet = await nc.subnet(network.id, { cidr: '10.10.0.0/24', allocation_pools: [{ start: '10.10.0.128', end: '10.10.0.254' }] }, nc.demoToken);
  });
  after(() => nc.close());

  it('creates a port with an address from the pool, a MAC and the default security group', async () => {
    const port = await nc.port(network.id, { name: 'p1' }, nc.demoToken);
    assert.equal(port.name, 'p1');
    assert.equal(port.status, 'DOWN');
    assert.equal(port.project_id, nc.demoProject);
    assert.equal(port.fixed_ips.length, 1);
    assert.equal(port.fixed_ips[0].subnet_id, subnet.id);
    assert.match(port.fixed_ips[0].ip_address, /^10\.10\.0\.(\d+)$/);
    const last = Number(port.fixed_ips[0].ip_address.split('.')[3]);
    assert.ok(last >= 2 && last <= 254);
    assert.match(port.mac_address, /^fa:16:3e(:[0-9a-f]{2}){3}$/);
    assert.equal(port.port_security_enabled, true);
    assert.equal(port.security_groups.length, 1);
    assert.equal(port['binding:vnic_type'], 'normal');
    assert.ok(!('binding:host_id' in port), 'binding details are for admins');
    const groups = await nc.get(`/security-groups/${port.security_groups[0]}`, { token: nc.demoToken });
    if (groups.status === 200) assert.equal(groups.body.security_group.name, 'default');
    const asAdmin = (await nc.get(`/ports/${port.id}`)).body.port;
    assert.equal(asAdmin['binding:host_id'], '');
    assert.equal(asAdmin['binding:vif_type'], 'unbound');
  });

  it('takes explicit addresses by subnet and address, and filters by them', async () => {
    const port = await nc.port(network.id, { fixed_ips: [{ subnet_id: subnet.id, ip_address: '10.10.0.50' }] }, nc.demoToken);
    assert.deepEqual(port.fixed_ips, [{ subnet_id: subnet.id, ip_address: '10.10.0.50' }]);
    const byAddress = await nc.port(network.id, { fixed_ips: [{ ip_address: '10.10.0.51' }] }, nc.demoToken);
    assert.equal(byAddress.fixed_ips[0].subnet_id, subnet.id);
    const found = await nc.get('/ports?fixed_ips=ip_address%3D10.10.0.50', { token: nc.demoToken });
    assert.deepEqual(found.body.ports.map((p: any) => p.id), [port.id]);
    const bySubnet = await nc.get(`/ports?fixed_ips=subnet_id%3D${subnet.id}&network_id=${network.id}`, { token: nc.demoToken });
    assert.ok(bySubnet.body.ports.length >= 2);

    assertNeutronError(await nc.post('/ports', { port: { network_id: network.id, fixed_ips: [{ ip_address: '10.10.0.50' }] } }, { token: nc.demoToken }), 409, 'IpAddressAlreadyAllocated');
    assertNeutronError(await nc.post('/ports', { port: { network_id: network.id, fixed_ips: [{ ip_address: '10.10.0.1' }] } }, { token: nc.demoToken }), 409, 'IpAddressAlreadyAllocated');
    assertNeutronError(await nc.post('/ports', { port: { network_id: network.id, fixed_ips: [{ ip_address: '10.99.0.1' }] } }, { token: nc.demoToken }), 400, 'InvalidIpForNetwork');
    assertNeutronError(await nc.post('/ports', { port: { network_id: network.id, fixed_ips: [{ subnet_id: subnet.id, ip_address: '10.10.0.255' }] } }, { token: nc.demoToken }), 400, 'InvalidIpForSubnet');
    assertNeutronError(await nc.post('/ports', { port: { network_id: network.id, fixed_ips: [{ subnet_id: 'nope' }] } }, { token: nc.demoToken }), 400, 'InvalidInput');
    assertNeutronError(await nc.post('/ports', { port: { network_id: network.id, fixed_ips: [{ ip_address: 'x' }] } }, { token: nc.demoToken }), 400);
    // Nothing half-made: the refused creates left no port behind.
    assert.equal((await nc.get('/ports?fixed_ips=ip_address%3D10.99.0.1', { token: nc.demoToken })).body.ports.length, 0);
  });

  it('creates ports in bulk, all or none', async () => {
    const made = await nc.post('/ports', { ports: [{ network_id: network.id, name: 'b1' }, { network_id: network.id, name: 'b2', fixed_ips: [{ ip_address: '10.10.0.120' }] }] }, { token: nc.demoToken });
    assert.equal(made.status, 201, made.text);
    assert.deepEqual(made.body.ports.map((p: any) => p.name), ['b1', 'b2']);
    const refused = await nc.post('/ports', { ports: [{ network_id: network.id, name: 'b3', fixed_ips: [{ ip_address: '10.10.0.121' }] }, { network_id: network.id, fixed_ips: [{ ip_address: '10.10.0.120' }] }] }, { token: nc.demoToken });
    assertNeutronError(refused, 409, 'IpAddressAlreadyAllocated');
    assert.equal((await nc.get('/ports?name=b3', { token: nc.demoToken })).body.ports.length, 0, 'the first of a refused bulk is gone again');
    assertNeutronError(await nc.post('/ports', { ports: {} }, { token: nc.demoToken }), 400);
  });

  it('keeps tags on ports and subnets and filters by them', async () => {
    const port = await nc.port(network.id, { tags: ['web', 'blue'] }, nc.demoToken);
    assert.deepEqual(port.tags, ['blue', 'web']);
    assert.ok((await nc.get('/ports?tags-any=web,red', { token: nc.demoToken })).body.ports.some((p: any) => p.id === port.id));
    assert.ok(!(await nc.get('/ports?not-tags=web', { token: nc.demoToken })).body.ports.some((p: any) => p.id === port.id));
    assert.equal((await nc.put(`/ports/${port.id}/tags/db`, undefined, { token: nc.demoToken })).status, 201);
    assert.deepEqual((await nc.get(`/ports/${port.id}/tags`, { token: nc.demoToken })).body.tags, ['blue', 'db', 'web']);
    assert.equal((await nc.put(`/subnets/${subnet.id}/tags/s1`, undefined, { token: nc.demoToken })).status, 201);
    assert.deepEqual((await nc.get(`/subnets?tags=s1`, { token: nc.demoToken })).body.subnets.map((s: any) => s.id), [subnet.id]);
    assertNeutronError(await nc.put(`/ports/${port.id}/tags`, { tags: ['a,b'] }, { token: nc.demoToken }), 400);
    assertNeutronError(await nc.get(`/ports/${port.id}/tags`, { token: other.token }), 404, 'PortNotFound');
  });

  it('keeps MAC addresses unique per network', async () => {
    const port = await nc.port(network.id, { mac_address: 'FA:16:3E:00:00:01' }, nc.demoToken);
    assert.equal(port.mac_address, 'fa:16:3e:00:00:01');
    assertNeutronError(await nc.post('/ports', { port: { network_id: network.id, mac_address: 'fa:16:3e:00:00:01' } }, { token: nc.demoToken }), 409, 'MacAddressInUse');
    const elsewhere = await nc.network({}, nc.demoToken);
    await nc.port(elsewhere.id, { mac_address: 'fa:16:3e:00:00:01' }, nc.demoToken);
    assertNeutronError(await nc.post('/ports', { port: { network_id: network.id, mac_address: 'zz:16:3e:00:00:01' } }, { token: nc.demoToken }), 400, 'InvalidInput');
  });

  it('answers 409 IpAddressGenerationFailure when the subnet is full', async () => {
    const small = await nc.network({ port_security_enabled: false }, nc.demoToken);
    await nc.subnet(small.id, { cidr: '10.20.0.0/29', allocation_pools: [{ start: '10.20.0.2', end: '10.20.0.4' }] }, nc.demoToken);
    const addresses = [];
    for (let i = 0; i < 3; i++) addresses.push((await nc.port(small.id, {}, nc.demoToken)).fixed_ips[0].ip_address);
    assert.deepEqual(addresses.sort(), ['10.20.0.2', '10.20.0.3', '10.20.0.4']);
    assertNeutronError(await nc.post('/ports', { port: { network_id: small.id } }, { token: nc.demoToken }), 409, 'IpAddressGenerationFailure');
    // An address outside the pool but inside the cidr may still be asked for.
    const outside = await nc.port(small.id, { fixed_ips: [{ ip_address: '10.20.0.6' }] }, nc.demoToken);
    assert.equal(outside.fixed_ips[0].ip_address, '10.20.0.6');
  });

  it('gives SLAAC ports their EUI-64 address next to an IPv4 one', async () => {
    const dual = await nc.network({ port_security_enabled: false });
    const v4 = await nc.subnet(dual.id, { cidr: '10.30.0.0/24' });
    const v6 = await nc.subnet(dual.id, { ip_version: 6, cidr: '2001:db8:30::/64', ipv6_ra_mode: 'slaac', ipv6_address_mode: 'slaac' });
    const port = await nc.port(dual.id, { mac_address: 'fa:16:3e:12:34:56' });
    const bySubnet = Object.fromEntries(port.fixed_ips.map((f: any) => [f.subnet_id, f.ip_address]));
    assert.match(bySubnet[v4.id], /^10\.30\.0\.\d+$/);
    assert.equal(bySubnet[v6.id], '2001:db8:30:0:f816:3eff:fe12:3456');
    assertNeutronError(await nc.post('/ports', { port: { network_id: dual.id, fixed_ips: [{ subnet_id: v6.id, ip_address: '2001:db8:30::99' }] } }), 400, 'InvalidInput');
    // Asking for an IPv4 address still gives the SLAAC one, and updating the IPv4 address keeps it.
    const explicit = await nc.port(dual.id, { fixed_ips: [{ subnet_id: v4.id, ip_address: '10.30.0.9' }], mac_address: 'fa:16:3e:00:00:09' });
    assert.deepEqual(explicit.fixed_ips.map((f: any) => f.ip_address).sort(), ['10.30.0.9', '2001:db8:30:0:f816:3eff:fe00:9']);
    const moved = await nc.put(`/ports/${explicit.id}`, { port: { fixed_ips: [{ subnet_id: v4.id, ip_address: '10.30.0.10' }] } });
    assert.deepEqual(moved.body.port.fixed_ips.map((f: any) => f.ip_address).sort(), ['10.30.0.10', '2001:db8:30:0:f816:3eff:fe00:9']);
    // A SLAAC subnet goes away with its addresses; the ports stay.
    assert.equal((await nc.delete(`/subnets/${v6.id}`)).status, 204);
    assert.deepEqual((await nc.get(`/ports/${explicit.id}`)).body.port.fixed_ips.map((f: any) => f.ip_address), ['10.30.0.10']);
  });

  it('a network without subnets gives ports no address; fixed_ips [] asks for none', async () => {
    const bare = await nc.network({}, nc.demoToken);
    assert.deepEqual((await nc.port(bare.id, {}, nc.demoToken)).fixed_ips, []);
    assert.deepEqual((await nc.port(network.id, { fixed_ips: [] }, nc.demoToken)).fixed_ips, []);
  });

  it('updates fixed IPs, keeping the ones still asked for and freeing the rest', async () => {
    const port = await nc.port(network.id, { fixed_ips: [{ ip_address: '10.10.0.60' }] }, nc.demoToken);
    const more = await nc.put(`/ports/${port.id}`, { port: { fixed_ips: [{ ip_address: '10.10.0.60' }, { ip_address: '10.10.0.61' }] } }, { token: nc.demoToken });
    assert.equal(more.status, 200, more.text);
    assert.deepEqual(more.body.port.fixed_ips.map((f: any) => f.ip_address).sort(), ['10.10.0.60', '10.10.0.61']);
    const moved = await nc.put(`/ports/${port.id}`, { port: { fixed_ips: [{ ip_address: '10.10.0.62' }] } }, { token: nc.demoToken });
    assert.deepEqual(moved.body.port.fixed_ips.map((f: any) => f.ip_address), ['10.10.0.62']);
    // The freed address is free again.
    await nc.port(network.id, { fixed_ips: [{ ip_address: '10.10.0.60' }] }, nc.demoToken);
    assertNeutronError(await nc.put(`/ports/${port.id}`, { port: { fixed_ips: [{ ip_address: '10.10.0.60' }] } }, { token: nc.demoToken }), 409, 'IpAddressAlreadyAllocated');
    assert.deepEqual((await nc.get(`/ports/${port.id}`, { token: nc.demoToken })).body.port.fixed_ips.map((f: any) => f.ip_address), ['10.10.0.62']);
  });

  it('keeps allowed address pairs and extra DHCP options', async () => {
    const port = await nc.port(network.id, {
      allowed_address_pairs: [{ ip_address: '10.10.0.200' }, { ip_address: '192.168.0.0/24', mac_address: 'fa:16:3e:aa:bb:cc' }],
      extra_dhcp_opts: [{ opt_name: 'bootfile-name', opt_value: 'pxelinux.0' }, { opt_name: 'tftp-server', opt_value: '10.10.0.9', ip_version: 4 }],
    }, nc.demoToken);
    assert.deepEqual(port.allowed_address_pairs, [
      { ip_address: '10.10.0.200', mac_address: port.mac_address },
      { ip_address: '192.168.0.0/24', mac_address: 'fa:16:3e:aa:bb:cc' },
    ]);
    assert.deepEqual(port.extra_dhcp_opts, [
      { opt_name: 'bootfile-name', opt_value: 'pxelinux.0', ip_version: 4 },
      { opt_name: 'tftp-server', opt_value: '10.10.0.9', ip_version: 4 },
    ]);
    const cleared = await nc.put(`/ports/${port.id}`, { port: { allowed_address_pairs: [], extra_dhcp_opts: [] } }, { token: nc.demoToken });
    assert.deepEqual(cleared.body.port.allowed_address_pairs, []);
    assert.deepEqual(cleared.body.port.extra_dhcp_opts, []);
    assertNeutronError(await nc.post('/ports', { port: { network_id: network.id, allowed_address_pairs: [{ ip_address: 'bad' }] } }, { token: nc.demoToken }), 400);
  });

  it('disabling port security needs the security groups gone; then pairs are refused', async () => {
    const port = await nc.port(network.id, {}, nc.demoToken);
    assertNeutronError(await nc.put(`/ports/${port.id}`, { port: { port_security_enabled: false } }, { token: nc.demoToken }), 409, 'PortSecurityPortHasSecurityGroup');
    const open = await nc.put(`/ports/${port.id}`, { port: { port_security_enabled: false, security_groups: [] } }, { token: nc.demoToken });
    assert.equal(open.status, 200, open.text);
    assert.equal(open.body.port.port_security_enabled, false);
    assert.deepEqual(open.body.port.security_groups, []);
    assertNeutronError(await nc.put(`/ports/${port.id}`, { port: { allowed_address_pairs: [{ ip_address: '10.0.0.9' }] } }, { token: nc.demoToken }), 409, 'AddressPairAndPortSecurityRequired');
    const unsecured = await nc.port(network.id, { port_security_enabled: false }, nc.demoToken);
    assert.deepEqual(unsecured.security_groups, []);
  });

  it('binds a port to a host: its agent plugs it and it becomes ACTIVE', async () => {
    const host = nc.cloud.networkAgents[0].host;
    assertNeutronError(await nc.post('/ports', { port: { network_id: network.id, 'binding:host_id': host } }, { token: nc.demoToken }), 403, 'PolicyNotAuthorized');
    const port = await nc.port(network.id, { 'binding:host_id': host, device_id: 'vm-1', device_owner: 'compute:nova' });
    assert.equal(port['binding:host_id'], host);
    assert.equal(port['binding:vif_type'], 'bridge');
    const active = await nc.waitPort(port.id, (p) => p.status === 'ACTIVE');
    assert.equal(active.device_owner, 'compute:nova');
    // Administratively down: the agent reports it DOWN; up again: ACTIVE.
    await nc.put(`/ports/${port.id}`, { port: { admin_state_up: false } });
    await nc.waitPort(port.id, (p) => p.status === 'DOWN');
    await nc.put(`/ports/${port.id}`, { port: { admin_state_up: true } });
    await nc.waitPort(port.id, (p) => p.status === 'ACTIVE');
    assert.ok(nc.cloud.networkAgents[0].plugged.has(port.id));
    // The host now serves DHCP for the network: its subnets and ports, this one included.
    const dhcp = nc.cloud.networkAgents[0].dhcp.get(network.id);
    assert.ok(dhcp, 'setupDhcp reached the host');
    assert.deepEqual(dhcp.subnets.map((s) => s.cidr), ['10.10.0.0/24']);
    assert.ok(dhcp.ports.some((p) => p.id === port.id && p.fixedIps.length === 1 && p.macAddress === port.mac_address));

    // Unknown host: the binding fails, as Neutron's mechanism drivers report it.
    const failed = await nc.port(network.id, { 'binding:host_id': 'no-such-host' });
    assert.equal(failed['binding:vif_type'], 'binding_failed');

    // The service interface the compute service uses.
    const created = await nc.port(network.id, {}, nc.demoToken);
    const bound = await nc.cloud.network.services.ports.bind(created.id, host, 'vm-2', 'compute:nova');
    assert.equal(bound.binding.hostId, host);
    assert.equal(bound.deviceId, 'vm-2');
    assert.equal(bound.binding.vifType, 'bridge');
    await nc.waitPort(created.id, (p) => p.status === 'ACTIVE');
    const unbound = await nc.cloud.network.services.ports.unbind(created.id);
    assert.equal(unbound.binding.hostId, '');
    assert.equal(unbound.status, 'DOWN');

    assert.equal((await nc.delete(`/ports/${port.id}`)).status, 204);
    assert.ok(!nc.cloud.networkAgents[0].plugged.has(port.id) || await new Promise((r) => setTimeout(() => r(!nc.cloud.networkAgents[0].plugged.has(port.id)), 100)));
  });

  it('creates ports inside a transaction of the caller (what routers and servers do), groups and all', async () => {
    const ports = nc.cloud.network.services.ports;
    const project = (await nc.projectUser('port-trx')).projectId;
    const shared = await nc.network({ shared: true });
    await nc.subnet(shared.id, { cidr: '10.41.0.0/24' });
    const made = await transaction(nc.cloud.database, (trx) => ports.create(null, { networkId: shared.id, projectId: project, deviceOwner: 'compute:nova' }, { trx }));
    assert.equal(made.projectId, project);
    assert.equal(made.securityGroups.length, 1, 'the project default group, made in the same transaction');
    assert.equal(made.fixedIps.length, 1);
    const renamed = await transaction(nc.cloud.database, (trx) => ports.update(null, made.id, { deviceId: 'router-9', deviceOwner: 'network:router_interface', securityGroups: [] }, { trx }));
    assert.equal(renamed.deviceOwner, 'network:router_interface');
    assert.deepEqual(renamed.securityGroups, []);
    await assert.rejects(transaction(nc.cloud.database, (trx) => ports.create(null, { networkId: shared.id, projectId: project, securityGroups: ['no-such-group'] }, { trx })),
      (err: any) => err.neutronType === 'SecurityGroupNotFound');
    // A rolled-back transaction leaves no port and no address behind.
    await assert.rejects(transaction(nc.cloud.database, async (trx) => {
      await ports.create(null, { networkId: shared.id, projectId: project, fixedIps: [{ ipAddress: '10.41.0.77' }] }, { trx });
      throw new Error('caller gives up');
    }));
    assert.equal((await nc.get('/ports?fixed_ips=ip_address%3D10.41.0.77')).body.ports.length, 0);
    await nc.port(shared.id, { fixed_ips: [{ ip_address: '10.41.0.77' }] });
  });

  it('an external network with gateway ports stays external', async () => {
    const external = await nc.network({ 'router:external': true });
    await nc.subnet(external.id, { cidr: '172.24.4.0/24' });
    await nc.port(external.id, { device_owner: 'network:router_gateway', device_id: 'router-1' });
    assertNeutronError(await nc.put(`/networks/${external.id}`, { network: { 'router:external': false } }), 409, 'ExternalNetworkInUse');
  });

  it('hides ports from other projects; the network owner sees ports on its network', async () => {
    const shared = await nc.network({ shared: true });
    await nc.subnet(shared.id, { cidr: '10.40.0.0/24' });
    const theirs = await nc.port(shared.id, {}, other.token);
    assert.equal(theirs.project_id, other.projectId);
    const mine = await nc.port(network.id, {}, nc.demoToken);
    assertNeutronError(await nc.get(`/ports/${mine.id}`, { token: other.token }), 404, 'PortNotFound');
    assert.ok(!(await nc.get('/ports', { token: other.token })).body.ports.some((p: any) => p.id === mine.id));
    assert.ok((await nc.get('/ports')).body.ports.some((p: any) => p.id === theirs.id), 'admin (the shared network owner) sees it');
    // A non-owner may not pick addresses or MACs on someone else's network... except the shared subnet's.
    assertNeutronError(await nc.post('/ports', { port: { network_id: shared.id, mac_address: 'fa:16:3e:00:99:99' } }, { token: other.token }), 403, 'PolicyNotAuthorized');
    assertNeutronError(await nc.post('/ports', { port: { network_id: network.id } }, { token: other.token }), 404, 'NetworkNotFound');
    const sharedSubnet = (await nc.get(`/subnets?network_id=${shared.id}`)).body.subnets[0];
    assertNeutronError(await nc.post('/ports', { port: { network_id: shared.id, fixed_ips: [{ ip_address: '10.40.0.9' }] } }, { token: other.token }), 403, 'PolicyNotAuthorized');
    const bySubnet = await nc.port(shared.id, { fixed_ips: [{ subnet_id: sharedSubnet.id }] }, other.token);
    assert.equal(bySubnet.fixed_ips[0].subnet_id, sharedSubnet.id);
    assertNeutronError(await nc.post('/ports', { port: { network_id: shared.id, device_owner: 'network:dhcp' } }, { token: other.token }), 403, 'PolicyNotAuthorized');
    assertNeutronError(await nc.delete(`/ports/${mine.id}`, { token: other.token }), 404, 'PortNotFound');
  });

  it('updates name, admin state and device; refuses read-only attributes', async () => {
    const port = await nc.port(network.id, {}, nc.demoToken);
    const updated = await nc.put(`/ports/${port.id}`, { port: { name: 'renamed', admin_state_up: false, device_id: 'd1', description: 'x' } }, { token: nc.demoToken });
    assert.equal(updated.status, 200, updated.text);
    assert.equal(updated.body.port.name, 'renamed');
    assert.equal(updated.body.port.admin_state_up, false);
    assert.equal(updated.body.port.device_id, 'd1');
    assert.equal(updated.body.port.revision_number, port.revision_number + 1);
    assertNeutronError(await nc.put(`/ports/${port.id}`, { port: { network_id: network.id } }, { token: nc.demoToken }), 400);
    assertNeutronError(await nc.put(`/ports/${port.id}`, { port: { mac_address: 'fa:16:3e:01:02:03' } }, { token: nc.demoToken }), 403, 'PolicyNotAuthorized');
    assertNeutronError(await nc.get('/ports/nope'), 404, 'PortNotFound');
  });
});
