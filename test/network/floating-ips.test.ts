// Floating IPs over HTTP: addresses from an external network (through a project-less
// network:floatingip port), association needing a router between the port's subnet and that
// network, one floating IP per fixed IP, fip-port-details, disassociation (also when the port is
// deleted), what the router's agent is sent, quotas, and port forwardings with Neutron's checks.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { testEngines } from '../../src/db/testing.js';
import { assertNeutronError, startNetworkCloud, type NetworkCloud } from './harness.js';

describe('floating IPs', () => {
  let nc: NetworkCloud;
  let external: any;
  let externalSubnet: any;
  let network: any;
  let subnet: any;
  let router: any;

  before(async () => {
    nc = await startNetworkCloud({ QUOTAS: { quota_floatingip: '6' } });
    external = await nc.network({ name: 'public', 'router:external': true });
    externalSubnet = await nc.subnet(external.id, { cidr: '203.0.113.0/24' });
    network = await nc.network({ name: 'private' }, nc.demoToken);
    subnet = await nc.subnet(network.id, { cidr: '10.5.0.0/24' }, nc.demoToken);
    const made = await nc.post('/routers', { router: { name: 'edge', external_gateway_info: { network_id: external.id } } }, { token: nc.demoToken });
    assert.equal(made.status, 201, made.text);
    router = made.body.router;
    const added = await nc.put(`/routers/${router.id}/add_router_interface`, { subnet_id: subnet.id }, { token: nc.demoToken });
    assert.equal(added.status, 200, added.text);
  });
  after(() => nc.close());

  const fip = async (fields: Record<string, unknown> = {}, token = nc.demoToken) => {
    const res = await nc.post('/floatingips', { floatingip: { floating_network_id: external.id, ...fields } }, { token });
    assert.equal(res.status, 201, res.text);
    return res.body.floatingip;
  };

  it('allocates an address of the external network, unassociated and DOWN', async () => {
    const made = await fip({ description: 'web' });
    assert.match(made.floating_ip_address, /^203\.0\.113\.\d+$/);
    assert.equal(made.status, 'DOWN');
    assert.equal(made.project_id, nc.demoProject);
    assert.equal(made.tenant_id, nc.demoProject);
    assert.equal(made.port_id, null);
    assert.equal(made.fixed_ip_address, null);
    assert.equal(made.router_id, null);
    assert.equal(made.port_details, null);
    assert.equal(made.description, 'web');
    const ports = (await nc.get(`/ports?device_id=${made.id}`)).body.ports;
    assert.equal(ports.length, 1);
    assert.equal(ports[0].device_owner, 'network:floatingip');
    assert.equal(ports[0].project_id, '');
    assert.deepEqual(ports[0].fixed_ips, [{ subnet_id: externalSubnet.id, ip_address: made.floating_ip_address }]);
    assertNeutronError(await nc.delete(`/ports/${ports[0].id}`), 409, 'ServicePortInUse');

    assertNeutronError(await nc.post('/floatingips', { floatingip: { floating_network_id: network.id } }, { token: nc.demoToken }), 400, 'BadRequest', 'not a valid external network');
    assertNeutronError(await nc.post('/floatingips', { floatingip: { floating_network_id: external.id, floating_ip_address: '203.0.113.77' } }, { token: nc.demoToken }), 403, 'PolicyNotAuthorized');
    assertNeutronError(await nc.post('/floatingips', { floatingip: {} }, { token: nc.demoToken }), 400);
    const picked = await fip({ floating_ip_address: '203.0.113.77', project_id: nc.demoProject }, nc.adminToken);
    assert.equal(picked.floating_ip_address, '203.0.113.77');
    assertNeutronError(await nc.post('/floatingips', { floatingip: { floating_network_id: external.id, floating_ip_address: '203.0.113.77' } }), 409, 'IpAddressAlreadyAllocated');

    assert.equal((await nc.delete(`/floatingips/${picked.id}`, { token: nc.demoToken })).status, 204);
    assertNeutronError(await nc.get(`/floatingips/${picked.id}`, { token: nc.demoToken }), 404, 'FloatingIPNotFound');
    assert.equal((await nc.get(`/ports?device_id=${picked.id}`)).body.ports.length, 0, 'its port is gone with it');
    const ext = (await nc.get('/extensions')).body.extensions.map((e: any) => e.alias);
    assert.ok(ext.includes('fip-port-details') && ext.includes('floating-ip-port-forwarding'));
  });

  it('associates with a port behind a router, once per fixed IP, and disassociates', async () => {
    const port = await nc.port(network.id, { name: 'vm-port' }, nc.demoToken);
    const made = await fip({ port_id: port.id });
    assert.equal(made.status, 'ACTIVE');
    assert.equal(made.port_id, port.id);
    assert.equal(made.fixed_ip_address, port.fixed_ips[0].ip_address);
    assert.equal(made.router_id, router.id);
    assert.deepEqual(made.port_details, {
      name: 'vm-port', network_id: network.id, mac_address: port.mac_address, admin_state_up: true,
      status: port.status, device_id: '', device_owner: '',
    });
    assert.deepEqual((await nc.cloud.network.services.floatingIps.forPorts([port.id])), [{ portId: port.id, fixedIpAddress: port.fixed_ips[0].ip_address, floatingIpAddress: made.floating_ip_address }]);

    // One floating IP per fixed IP on an external network.
    const second = await fip();
    assertNeutronError(await nc.put(`/floatingips/${second.id}`, { floatingip: { port_id: port.id } }, { token: nc.demoToken }), 409, 'FloatingIPPortAlreadyAssociated');
    assertNeutronError(await nc.put(`/floatingips/${second.id}`, { floatingip: { port_id: port.id, fixed_ip_address: '10.5.0.250' } }, { token: nc.demoToken }), 400, 'BadRequest', 'does not have fixed ip');
    assertNeutronError(await nc.put(`/floatingips/${second.id}`, { floatingip: { port_id: 'nope' } }, { token: nc.demoToken }), 404, 'PortNotFound');

    // A port whose subnet no router joins to the external network cannot have one.
    const isolated = await nc.network({}, nc.demoToken);
    await nc.subnet(isolated.id, { cidr: '10.6.0.0/24' }, nc.demoToken);
    const lonely = await nc.port(isolated.id, {}, nc.demoToken);
    assertNeutronError(await nc.put(`/floatingips/${second.id}`, { floatingip: { port_id: lonely.id } }, { token: nc.demoToken }), 404, 'ExternalGatewayForFloatingIPNotFound');

    // The router's interface and gateway stay while the floating IP uses them.
    assertNeutronError(await nc.put(`/routers/${router.id}/remove_router_interface`, { subnet_id: subnet.id }, { token: nc.demoToken }), 409, 'RouterInterfaceInUseByFloatingIP');
    assertNeutronError(await nc.put(`/routers/${router.id}`, { router: { external_gateway_info: {} } }, { token: nc.demoToken }), 409, 'RouterExternalGatewayInUseByFloatingIp');

    // The agent running the router is sent the floating IP.
    const setup = await nc.cloud.network.services.routers.routerSetup(router.id);
    assert.deepEqual(setup?.floatingIps, [{ id: made.id, floatingIpAddress: made.floating_ip_address, fixedIpAddress: made.fixed_ip_address, portId: port.id }]);
    assert.equal(setup?.gateway?.networkId, external.id);
    assert.equal(setup?.interfaces[0].subnetId, subnet.id);
    assert.ok(nc.cloud.networkAgents.some((a) => a.routers.has(router.id)));

    const moved = await nc.put(`/floatingips/${made.id}`, { floatingip: { port_id: null } }, { token: nc.demoToken });
    assert.equal(moved.status, 200, moved.text);
    assert.equal(moved.body.floatingip.status, 'DOWN');
    assert.equal(moved.body.floatingip.port_id, null);
    assert.equal(moved.body.floatingip.router_id, null);
    assert.equal(moved.body.floatingip.port_details, null);
    const again = await nc.put(`/floatingips/${second.id}`, { floatingip: { port_id: port.id } }, { token: nc.demoToken });
    assert.equal(again.status, 200, again.text);
    assert.equal(again.body.floatingip.router_id, router.id);

    // A fixed IP the port gives up takes its floating IP with it; then the port is associated again.
    const renumbered = await nc.put(`/ports/${port.id}`, { port: { fixed_ips: [{ subnet_id: subnet.id, ip_address: '10.5.0.200' }] } }, { token: nc.demoToken });
    assert.equal(renumbered.status, 200, renumbered.text);
    assert.equal((await nc.get(`/floatingips/${second.id}`, { token: nc.demoToken })).body.floatingip.port_id, null);
    assert.equal((await nc.put(`/floatingips/${second.id}`, { floatingip: { port_id: port.id } }, { token: nc.demoToken })).body.floatingip.fixed_ip_address, '10.5.0.200');

    // Deleting the port disassociates its floating IP.
    assert.equal((await nc.delete(`/ports/${port.id}`, { token: nc.demoToken })).status, 204);
    const after = (await nc.get(`/floatingips/${second.id}`, { token: nc.demoToken })).body.floatingip;
    assert.equal(after.port_id, null);
    assert.equal(after.status, 'DOWN');
    await nc.delete(`/floatingips/${second.id}`, { token: nc.demoToken });
    await nc.delete(`/floatingips/${made.id}`, { token: nc.demoToken });
  });

  it('lists with filters and fields, hides other projects, and counts against the quota', async () => {
    const user = await nc.projectUser('fip-user');
    const mine = await fip({}, user.token);
    assertNeutronError(await nc.get(`/floatingips/${mine.id}`, { token: nc.demoToken }), 404, 'FloatingIPNotFound');
    assertNeutronError(await nc.delete(`/floatingips/${mine.id}`, { token: nc.demoToken }), 404, 'FloatingIPNotFound');
    const listed = await nc.get(`/floatingips?floating_ip_address=${mine.floating_ip_address}&fields=id&fields=status`, { token: user.token });
    assert.deepEqual(listed.body.floatingips, [{ id: mine.id, status: 'DOWN' }]);
    assert.ok((await nc.get('/floatingips')).body.floatingips.some((f: any) => f.id === mine.id));
    for (let i = 0; i < 5; i++) await fip({}, user.token);
    assertNeutronError(await nc.post('/floatingips', { floatingip: { floating_network_id: external.id } }, { token: user.token }), 409, 'OverQuota', "['floatingip']");
    const described = await nc.put(`/floatingips/${mine.id}`, { floatingip: { description: 'later' } }, { token: user.token });
    assert.equal(described.body.floatingip.description, 'later');
    assert.equal(described.body.floatingip.revision_number, mine.revision_number + 1);
    assertNeutronError(await nc.put(`/floatingips/${mine.id}`, { floatingip: { floating_ip_address: '203.0.113.5' } }, { token: user.token }), 400);
  });

  it('forwards ports of a floating IP to internal addresses, with Neutron checks', async () => {
    const made = await fip();
    const target = await nc.port(network.id, {}, nc.demoToken);
    const internal = target.fixed_ips[0].ip_address;
    const base = `/floatingips/${made.id}/port_forwardings`;
    const created = await nc.post(base, { port_forwarding: { protocol: 'tcp', internal_port_id: target.id, internal_ip_address: internal, internal_port: 22, external_port: 2222, description: 'ssh' } }, { token: nc.demoToken });
    assert.equal(created.status, 201, created.text);
    const pf = created.body.port_forwarding;
    assert.deepEqual({ ...pf, id: undefined }, { id: undefined, protocol: 'tcp', internal_port_id: target.id, internal_ip_address: internal, internal_port: 22, external_port: 2222, description: 'ssh' });
    assert.equal((await nc.get(`/floatingips/${made.id}`, { token: nc.demoToken })).body.floatingip.router_id, router.id);

    assertNeutronError(await nc.post(base, { port_forwarding: { protocol: 'tcp', internal_port_id: target.id, internal_port: 80, external_port: 2222 } }, { token: nc.demoToken }), 400, 'BadRequest', 'duplicate');
    const udp = await nc.post(base, { port_forwarding: { protocol: 'udp', internal_port_id: target.id, internal_port: 53, external_port: 2222 } }, { token: nc.demoToken });
    assert.equal(udp.status, 201, udp.text);
    assert.equal(udp.body.port_forwarding.internal_ip_address, internal);
    assertNeutronError(await nc.post(base, { port_forwarding: { protocol: 'icmp', internal_port_id: target.id, internal_port: 1, external_port: 1 } }, { token: nc.demoToken }), 400);
    assertNeutronError(await nc.post(base, { port_forwarding: { protocol: 'tcp', internal_port_id: target.id, internal_port: 0, external_port: 70000 } }, { token: nc.demoToken }), 400);
    assertNeutronError(await nc.post(base, { port_forwarding: { protocol: 'tcp', internal_port_id: target.id, internal_ip_address: '10.5.0.249', internal_port: 8, external_port: 8 } }, { token: nc.demoToken }), 400, 'BadRequest', 'not suitable');
    assertNeutronError(await nc.post(base, { port_forwarding: { protocol: 'tcp', internal_port_id: target.id } }, { token: nc.demoToken }), 400);

    // A floating IP forwards ports or is associated, not both.
    assertNeutronError(await nc.put(`/floatingips/${made.id}`, { floatingip: { port_id: target.id } }, { token: nc.demoToken }), 409, 'FipInUseByPortForwarding');
    const associated = await fip({ port_id: target.id });
    assertNeutronError(await nc.post(`/floatingips/${associated.id}/port_forwardings`, { port_forwarding: { protocol: 'tcp', internal_port_id: target.id, internal_port: 22, external_port: 22 } }, { token: nc.demoToken }), 409, 'FloatingIPPortAlreadyAssociated');

    const listed = await nc.get(`${base}?protocol=udp`, { token: nc.demoToken });
    assert.deepEqual(listed.body.port_forwardings.map((p: any) => p.id), [udp.body.port_forwarding.id]);
    const updated = await nc.put(`${base}/${pf.id}`, { port_forwarding: { external_port: 2022 } }, { token: nc.demoToken });
    assert.equal(updated.status, 200, updated.text);
    assert.equal(updated.body.port_forwarding.external_port, 2022);
    assert.equal((await nc.get(`${base}/${pf.id}`, { token: nc.demoToken })).body.port_forwarding.external_port, 2022);
    const setup = await nc.cloud.network.services.routers.routerSetup(router.id);
    assert.deepEqual(setup?.portForwardings.map((p) => `${p.protocol}:${p.externalPort}->${p.internalIpAddress}:${p.internalPort}`).sort(), [`tcp:2022->${internal}:22`, `udp:2222->${internal}:53`]);
    assertNeutronError(await nc.get(`${base}/${pf.id}`, { token: (await nc.projectUser('pf-other')).token }), 404, 'FloatingIPNotFound');

    assert.equal((await nc.delete(`${base}/${pf.id}`, { token: nc.demoToken })).status, 204);
    assertNeutronError(await nc.get(`${base}/${pf.id}`, { token: nc.demoToken }), 404, 'PortForwardingNotFound');
    // Deleting the internal port takes its forwardings; the floating IP is then free of the router.
    await nc.delete(`/floatingips/${associated.id}`, { token: nc.demoToken });
    assert.equal((await nc.delete(`/ports/${target.id}`, { token: nc.demoToken })).status, 204);
    assert.deepEqual((await nc.get(base, { token: nc.demoToken })).body.port_forwardings, []);
    assert.equal((await nc.get(`/floatingips/${made.id}`, { token: nc.demoToken })).body.floatingip.router_id, null);

  });
});

// On every engine: routers and floating IPs made as above, and many floating IPs asked at once
// for one fixed IP: the unique (network, port, fixed IP) index lets exactly one win.
for (const engine of testEngines()) {
  describe(`floating IPs on ${engine.engine}`, { skip: engine.skip }, () => {
    it('associates one floating IP per fixed IP under concurrent requests', async () => {
      const target = await engine.create();
      const nc = await startNetworkCloud({ database: { connection: target.connection } });
      try {
        const external = await nc.network({ name: 'public', 'router:external': true });
        await nc.subnet(external.id, { cidr: '198.51.100.0/24' });
        const network = await nc.network({ name: 'private' }, nc.demoToken);
        const subnet = await nc.subnet(network.id, { cidr: '10.7.0.0/24' }, nc.demoToken);
        const router = (await nc.post('/routers', { router: { external_gateway_info: { network_id: external.id } } }, { token: nc.demoToken })).body.router;
        assert.equal((await nc.put(`/routers/${router.id}/add_router_interface`, { subnet_id: subnet.id }, { token: nc.demoToken })).status, 200);
        const port = await nc.port(network.id, {}, nc.demoToken);
        const fips = await Promise.all(Array.from({ length: 8 }, () => nc.post('/floatingips', { floatingip: { floating_network_id: external.id } }, { token: nc.demoToken })));
        for (const res of fips) assert.equal(res.status, 201, res.text);
        assert.equal(new Set(fips.map((r) => r.body.floatingip.floating_ip_address)).size, 8);
        const results = await Promise.all(fips.map((r) => nc.put(`/floatingips/${r.body.floatingip.id}`, { floatingip: { port_id: port.id } }, { token: nc.demoToken })));
        assert.equal(results.filter((r) => r.status === 200).length, 1, results.map((r) => r.text).join('\n'));
        for (const res of results.filter((r) => r.status !== 200)) assertNeutronError(res, 409, 'FloatingIPPortAlreadyAssociated');
        assert.equal((await nc.get(`/floatingips?port_id=${port.id}`, { token: nc.demoToken })).body.floatingips.length, 1);
        assertNeutronError(await nc.put(`/routers/${router.id}/remove_router_interface`, { subnet_id: subnet.id }, { token: nc.demoToken }), 409, 'RouterInterfaceInUseByFloatingIP');
        assert.equal((await nc.delete(`/ports/${port.id}`, { token: nc.demoToken })).status, 204);
        assert.equal((await nc.put(`/routers/${router.id}/remove_router_interface`, { subnet_id: subnet.id }, { token: nc.demoToken })).status, 200);
        for (const res of fips) assert.equal((await nc.delete(`/floatingips/${res.body.floatingip.id}`, { token: nc.demoToken })).status, 204);
        assert.equal((await nc.delete(`/routers/${router.id}`, { token: nc.demoToken })).status, 204);
      } finally {
        await nc.close();
        await target.drop();
      }
    });
  });
}
