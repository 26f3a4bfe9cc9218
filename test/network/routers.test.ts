// Routers over HTTP: gateways on external networks (SNAT admin-only, a project-less gateway
// port), interfaces by subnet and by port with Neutron's checks, ports of a router not deletable
// through the port API, routes whose nexthop must be connected, atomic route changes, quotas,
// and the router reaching the agent that runs it.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { assertNeutronError, sleep, startNetworkCloud, type NetworkCloud } from './harness.js';

async function waitFor(done: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!done()) {
    if (Date.now() > deadline) assert.fail(`timed out: ${what}`);
    await sleep(20);
  }
}

describe('routers', () => {
  let nc: NetworkCloud;
  let external: any;
  let externalSubnet: any;
  let network: any;
  let subnet: any;

  before(async () => {
    nc = await startNetworkCloud({ QUOTAS: { quota_router: '4' } });
    external = await nc.network({ name: 'public', 'router:external': true });
    externalSubnet = await nc.subnet(external.id, { cidr: '172.24.4.0/24' });
    network = await nc.network({ name: 'private' }, nc.demoToken);
    subnet = await nc.subnet(network.id, { cidr: '10.1.0.0/24' }, nc.demoToken);
  });
  after(() => nc.close());

  const router = async (fields: Record<string, unknown> = {}, token = nc.demoToken) => {
    const res = await nc.post('/routers', { router: { name: 'r', ...fields } }, { token });
    assert.equal(res.status, 201, res.text);
    return res.body.router;
  };

  it('creates a router with a gateway on an external network, SNAT on by default', async () => {
    const made = await router({ name: 'r1', external_gateway_info: { network_id: external.id } });
    assert.equal(made.status, 'ACTIVE');
    assert.equal(made.project_id, nc.demoProject);
    assert.equal(made.tenant_id, nc.demoProject);
    assert.deepEqual(made.routes, []);
    assert.deepEqual(made.availability_zones, ['nova']);
    assert.deepEqual(made.availability_zone_hints, []);
    assert.equal(made.external_gateway_info.network_id, external.id);
    assert.equal(made.external_gateway_info.enable_snat, true);
    const [fixed] = made.external_gateway_info.external_fixed_ips;
    assert.equal(fixed.subnet_id, externalSubnet.id);
    assert.match(fixed.ip_address, /^172\.24\.4\.\d+$/);
    const gwPorts = (await nc.get(`/ports?device_id=${made.id}`)).body.ports;
    assert.equal(gwPorts.length, 1);
    assert.equal(gwPorts[0].device_owner, 'network:router_gateway');
    assert.equal(gwPorts[0].project_id, '');
    assert.deepEqual(gwPorts[0].security_groups, []);
    assertNeutronError(await nc.delete(`/ports/${gwPorts[0].id}`), 409, 'ServicePortInUse');
    assertNeutronError(await nc.delete(`/networks/${external.id}`), 409, 'NetworkInUse');

    const shown = await nc.get(`/routers/${made.id}?fields=id&fields=external_gateway_info`, { token: nc.demoToken });
    assert.deepEqual(Object.keys(shown.body.router).sort(), ['external_gateway_info', 'id']);
    const ext = await nc.get('/extensions', { token: nc.demoToken });
    const zoned = await router({ availability_zone_hints: ['nova'] });
    assert.deepEqual(zoned.availability_zone_hints, ['nova']);
    assertNeutronError(await nc.post('/routers', { router: { availability_zone_hints: ['mars'] } }, { token: nc.demoToken }), 404, 'AvailabilityZoneNotFound');
    assert.equal((await nc.delete(`/routers/${zoned.id}`, { token: nc.demoToken })).status, 204);
    for (const alias of ['router', 'ext-gw-mode', 'extraroute', 'extraroute-atomic', 'router_availability_zone']) assert.ok(ext.body.extensions.some((e: any) => e.alias === alias), alias);
  });

  it('refuses a gateway on an internal network, and SNAT or fixed IP choices from non-admins', async () => {
    assertNeutronError(await nc.post('/routers', { router: { external_gateway_info: { network_id: network.id } } }, { token: nc.demoToken }), 400, 'BadRequest', 'not an external network');
    assertNeutronError(await nc.post('/routers', { router: { external_gateway_info: { network_id: external.id, enable_snat: false } } }, { token: nc.demoToken }), 403, 'PolicyNotAuthorized');
    assertNeutronError(await nc.post('/routers', { router: { external_gateway_info: { network_id: external.id, external_fixed_ips: [{ ip_address: '172.24.4.99' }] } } }, { token: nc.demoToken }), 403, 'PolicyNotAuthorized');
    assertNeutronError(await nc.post('/routers', { router: { external_gateway_info: { network_id: 'nope' } } }, { token: nc.demoToken }), 404, 'NetworkNotFound');
    // An admin turns SNAT off and picks the address; later clears the gateway (its port goes).
    const made = await router({ external_gateway_info: { network_id: external.id, enable_snat: false, external_fixed_ips: [{ subnet_id: externalSubnet.id, ip_address: '172.24.4.99' }] } }, nc.adminToken);
    assert.equal(made.external_gateway_info.enable_snat, false);
    assert.deepEqual(made.external_gateway_info.external_fixed_ips, [{ subnet_id: externalSubnet.id, ip_address: '172.24.4.99' }]);
    const snat = await nc.put(`/routers/${made.id}`, { router: { external_gateway_info: { network_id: external.id, enable_snat: true } } });
    assert.equal(snat.status, 200, snat.text);
    assert.equal(snat.body.router.external_gateway_info.enable_snat, true);
    assert.equal(snat.body.router.external_gateway_info.external_fixed_ips[0].ip_address, '172.24.4.99');
    const cleared = await nc.put(`/routers/${made.id}`, { router: { external_gateway_info: {} } });
    assert.equal(cleared.body.router.external_gateway_info, null);
    assert.equal((await nc.get(`/ports?device_id=${made.id}`)).body.ports.length, 0);
    assert.equal((await nc.delete(`/routers/${made.id}`)).status, 204);
    assertNeutronError(await nc.get(`/routers/${made.id}`), 404, 'RouterNotFound');
  });

  it('adds and removes interfaces by subnet and by port', async () => {
    const made = await router({ name: 'r-if' });
    const added = await nc.put(`/routers/${made.id}/add_router_interface`, { subnet_id: subnet.id }, { token: nc.demoToken });
    assert.equal(added.status, 200, added.text);
    assert.deepEqual(Object.keys(added.body).sort(), ['id', 'network_id', 'port_id', 'project_id', 'subnet_id', 'subnet_ids', 'tenant_id']);
    assert.equal(added.body.id, made.id);
    assert.equal(added.body.subnet_id, subnet.id);
    assert.deepEqual(added.body.subnet_ids, [subnet.id]);
    assert.equal(added.body.network_id, network.id);
    const port = (await nc.get(`/ports/${added.body.port_id}`, { token: nc.demoToken })).body.port;
    assert.equal(port.device_owner, 'network:router_interface');
    assert.equal(port.device_id, made.id);
    assert.deepEqual(port.fixed_ips, [{ subnet_id: subnet.id, ip_address: subnet.gateway_ip }]);
    // Bound to the host whose agent runs the router, which plugs it: ACTIVE.
    const bound = await nc.waitPort(port.id, (p) => p.status === 'ACTIVE');
    assert.equal(bound['binding:host_id'], 'fake-host-1');
    await waitFor(() => nc.cloud.networkAgents.some((a) => a.plugged.has(port.id)), 'the agent plugs the interface');

    assertNeutronError(await nc.put(`/routers/${made.id}/add_router_interface`, { subnet_id: subnet.id }, { token: nc.demoToken }), 400, 'BadRequest', 'already has a port on subnet');
    const overlapping = await nc.subnet((await nc.network({}, nc.demoToken)).id, { cidr: '10.1.0.0/16' }, nc.demoToken);
    assertNeutronError(await nc.put(`/routers/${made.id}/add_router_interface`, { subnet_id: overlapping.id }, { token: nc.demoToken }), 400, 'BadRequest', 'overlaps');
    const noGateway = await nc.subnet((await nc.network({}, nc.demoToken)).id, { cidr: '10.9.0.0/24', gateway_ip: null }, nc.demoToken);
    assertNeutronError(await nc.put(`/routers/${made.id}/add_router_interface`, { subnet_id: noGateway.id }, { token: nc.demoToken }), 400, 'BadRequest', 'must have a gateway IP');
    assertNeutronError(await nc.put(`/routers/${made.id}/add_router_interface`, {}, { token: nc.demoToken }), 400);

    // The router's interface port is not the port API's to delete, and the router is in use.
    assertNeutronError(await nc.delete(`/ports/${port.id}`, { token: nc.demoToken }), 409, 'ServicePortInUse');
    assertNeutronError(await nc.delete(`/routers/${made.id}`, { token: nc.demoToken }), 409, 'RouterInUse');
    assertNeutronError(await nc.delete(`/subnets/${subnet.id}`, { token: nc.demoToken }), 409);

    // By port: an unused port of the project's; a port with a device is refused.
    const other = await nc.network({}, nc.demoToken);
    const otherSubnet = await nc.subnet(other.id, { cidr: '10.2.0.0/24' }, nc.demoToken);
    const free = await nc.port(other.id, {}, nc.demoToken);
    const byPort = await nc.put(`/routers/${made.id}/add_router_interface`, { port_id: free.id }, { token: nc.demoToken });
    assert.equal(byPort.status, 200, byPort.text);
    assert.equal(byPort.body.port_id, free.id);
    assert.equal(byPort.body.subnet_id, otherSubnet.id);
    assert.equal((await nc.get(`/ports/${free.id}`)).body.port.device_owner, 'network:router_interface');
    const used = await nc.port(other.id, { device_id: 'some-server' }, nc.demoToken);
    assertNeutronError(await nc.put(`/routers/${made.id}/add_router_interface`, { port_id: used.id }, { token: nc.demoToken }), 409, 'PortInUse');

    assertNeutronError(await nc.put(`/routers/${made.id}/remove_router_interface`, { subnet_id: noGateway.id }, { token: nc.demoToken }), 404, 'RouterInterfaceNotFoundForSubnet');
    assertNeutronError(await nc.put(`/routers/${made.id}/remove_router_interface`, { port_id: used.id }, { token: nc.demoToken }), 404, 'RouterInterfaceNotFound');
    const removed = await nc.put(`/routers/${made.id}/remove_router_interface`, { subnet_id: subnet.id }, { token: nc.demoToken });
    assert.equal(removed.status, 200, removed.text);
    assert.equal(removed.body.port_id, port.id);
    assert.equal((await nc.get(`/ports/${port.id}`)).status, 404);
    await waitFor(() => !nc.cloud.networkAgents.some((a) => a.plugged.has(port.id)), 'its agent unplugs the removed interface');
    const byPortRemoved = await nc.put(`/routers/${made.id}/remove_router_interface`, { port_id: free.id }, { token: nc.demoToken });
    assert.equal(byPortRemoved.status, 200, byPortRemoved.text);
    assert.equal((await nc.delete(`/routers/${made.id}`, { token: nc.demoToken })).status, 204);
  });

  it('keeps routes whose nexthop is on a connected subnet, and changes them atomically', async () => {
    const made = await router({ name: 'r-routes', external_gateway_info: { network_id: external.id } });
    const net = await nc.network({}, nc.demoToken);
    const sub = await nc.subnet(net.id, { cidr: '10.3.0.0/24' }, nc.demoToken);
    await nc.put(`/routers/${made.id}/add_router_interface`, { subnet_id: sub.id }, { token: nc.demoToken });
    const set = await nc.put(`/routers/${made.id}`, { router: { routes: [{ destination: '192.168.7.9/24', nexthop: '10.3.0.10' }] } }, { token: nc.demoToken });
    assert.equal(set.status, 200, set.text);
    assert.deepEqual(set.body.router.routes, [{ destination: '192.168.7.0/24', nexthop: '10.3.0.10' }]);
    assertNeutronError(await nc.put(`/routers/${made.id}`, { router: { routes: [{ destination: '192.168.8.0/24', nexthop: '10.99.0.1' }] } }, { token: nc.demoToken }), 400, 'InvalidRoutes', 'not connected');
    assertNeutronError(await nc.put(`/routers/${made.id}`, { router: { routes: [{ destination: '192.168.8.0/24', nexthop: '10.3.0.1' }] } }, { token: nc.demoToken }), 400, 'InvalidRoutes', 'used by router');
    assertNeutronError(await nc.put(`/routers/${made.id}`, { router: { routes: [{ destination: 'x', nexthop: '10.3.0.10' }] } }, { token: nc.demoToken }), 400, 'InvalidRoutes');
    const added = await nc.put(`/routers/${made.id}/add_extraroutes`, { router: { routes: [{ destination: '10.50.0.0/16', nexthop: '10.3.0.11' }, { destination: '192.168.7.0/24', nexthop: '10.3.0.10' }] } }, { token: nc.demoToken });
    assert.equal(added.status, 200, added.text);
    assert.deepEqual(added.body.router.routes, [{ destination: '10.50.0.0/16', nexthop: '10.3.0.11' }, { destination: '192.168.7.0/24', nexthop: '10.3.0.10' }]);
    assertNeutronError(await nc.put(`/routers/${made.id}/remove_router_interface`, { subnet_id: sub.id }, { token: nc.demoToken }), 409, 'RouterInterfaceInUseByRoute');
    const removed = await nc.put(`/routers/${made.id}/remove_extraroutes`, { router: { routes: [{ destination: '192.168.7.0/24', nexthop: '10.3.0.10' }] } }, { token: nc.demoToken });
    assert.deepEqual(removed.body.router.routes, [{ destination: '10.50.0.0/16', nexthop: '10.3.0.11' }]);
    // The agent that runs the router got it, interfaces, gateway and routes included.
    await waitFor(() => nc.cloud.networkAgents.some((a) => a.routers.has(made.id)), 'the router reaches its agent');
    await nc.put(`/routers/${made.id}`, { router: { routes: [] } }, { token: nc.demoToken });
    assert.equal((await nc.put(`/routers/${made.id}/remove_router_interface`, { subnet_id: sub.id }, { token: nc.demoToken })).status, 200);
    assert.equal((await nc.delete(`/routers/${made.id}`, { token: nc.demoToken })).status, 204);
    await waitFor(() => !nc.cloud.networkAgents.some((a) => a.routers.has(made.id)), 'the agent removes the deleted router');
  });

  it('lists with filters, hides other projects and counts against the router quota', async () => {
    const user = await nc.projectUser('router-user');
    const mine = await router({ name: 'mine' }, user.token);
    assertNeutronError(await nc.get(`/routers/${mine.id}`, { token: nc.demoToken }), 404, 'RouterNotFound');
    const listed = await nc.get('/routers?name=mine', { token: user.token });
    assert.deepEqual(listed.body.routers.map((r: any) => r.id), [mine.id]);
    assert.ok((await nc.get('/routers')).body.routers.some((r: any) => r.id === mine.id), 'an admin sees every project\'s routers');
    const page = await nc.get('/routers?limit=1');
    assert.equal(page.body.routers.length, 1);
    assert.ok(page.body.routers_links.some((l: any) => l.rel === 'next'));
    for (let i = 0; i < 3; i++) await router({}, user.token);
    assertNeutronError(await nc.post('/routers', { router: {} }, { token: user.token }), 409, 'OverQuota', "['router']");
    const renamed = await nc.put(`/routers/${mine.id}`, { router: { name: 'renamed', admin_state_up: false } }, { token: user.token });
    assert.equal(renamed.body.router.name, 'renamed');
    assert.equal(renamed.body.router.admin_state_up, false);
    assert.equal(renamed.body.router.revision_number, mine.revision_number + 1);
    assertNeutronError(await nc.put(`/routers/${mine.id}`, { router: { status: 'DOWN' } }, { token: user.token }), 400);
    const tagged = await nc.put(`/routers/${mine.id}/tags/blue`, undefined, { token: user.token });
    assert.ok(tagged.status === 201 || tagged.status === 204, tagged.text);
    assert.deepEqual((await nc.get(`/routers?tags=blue`, { token: user.token })).body.routers.map((r: any) => r.id), [mine.id]);
  });
});
