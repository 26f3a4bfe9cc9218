// Servers and ports (Nova with Neutron), in-process on fake hosts: networks auto / none / uuid /
// port / fixed_ip at create with Nova's errors, ports made after scheduling and bound to the host
// (device_id, device_owner compute:<az>, binding:host_id), the VIFs the driver gets, addresses
// and security_groups in the server views, /ips, os-interface attach/detach, add/remove security
// group, ports rebound by a cold migration, and delete freeing Nova's ports but keeping the user's.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { FakeDriver } from '../../src/compute/virt/fake.js';
import { assertError, startComputeCloud, unique, type ComputeCloud } from './harness.js';

describe('server networking', () => {
  let cc: ComputeCloud;
  let imageId: string;
  let user: { token: string; projectId: string };
  let other: { token: string; projectId: string };
  const net = (path: string) => `${cc.cloud.url}/networking/v2.0${path}`;
  const driverOf = (host: string) => cc.cloud.agents.find((a) => a.host === host)!.driver as FakeDriver;

  /** A network with one IPv4 subnet, owned by the token's project. */
  async function network(token: string, name: string, cidr: string, extra: Record<string, unknown> = {}): Promise<{ id: string; subnetId: string }> {
    const created = await cc.post(net('/networks'), { network: { name, ...extra } }, { token });
    assert.equal(created.status, 201, created.text);
    const subnet = await cc.post(net('/subnets'), { subnet: { network_id: created.body.network.id, ip_version: 4, cidr } }, { token });
    assert.equal(subnet.status, 201, subnet.text);
    return { id: created.body.network.id, subnetId: subnet.body.subnet.id };
  }
  const port = async (id: string) => (await cc.get(net(`/ports/${id}`))).body.port;
  const portsOf = async (serverId: string) => (await cc.get(net(`/ports?device_id=${serverId}`))).body.ports as any[];
  const boot = (fields: Record<string, unknown>, token: string, microversion = '2.79') =>
    cc.post('/servers', { server: { name: unique('vm'), flavorRef: '1', imageRef: imageId, ...fields } }, { token, microversion });
  async function bootActive(fields: Record<string, unknown>, token: string): Promise<any> {
    const res = await boot(fields, token);
    assert.equal(res.status, 202, res.text);
    const server = await cc.waitServer(res.body.server.id, undefined, token);
    assert.equal(server.status, 'ACTIVE', JSON.stringify(server.fault));
    return server;
  }
  const gone = (id: string, token: string) => cc.waitServer(id, (s) => s.status === 'DELETED', token);

  before(async () => {
    cc = await startComputeCloud({ DEFAULT: { report_interval: '1' }, fake_driver: { fail_spawn_name_pattern: '^failnet' } }, 2);
    imageId = await cc.createImage({ visibility: 'public' });
    user = await cc.projectUser(unique('netuser'));
    other = await cc.projectUser(unique('netother'));
  });
  after(async () => cc?.close());

  it('auto with no network: 400 at 2.37+, boots without NICs before (no networks field)', async () => {
    const auto = await boot({ networks: 'auto' }, user.token);
    assertError(auto, 400, `Unable to automatically allocate a network for project ${user.projectId}`);
    const legacy = await boot({}, user.token, '2.1');
    assert.equal(legacy.status, 202, legacy.text);
    const server = await cc.waitServer(legacy.body.server.id, undefined, user.token);
    assert.equal(server.status, 'ACTIVE');
    assert.deepEqual(server.addresses, {});
    await cc.delete(`/servers/${server.id}`, { token: user.token });
  });

  it('auto takes the one network, binds its port to the host and shows it in addresses; delete frees it', async () => {
    const { id: networkId, subnetId } = await network(user.token, 'private', '10.10.0.0/24');
    const server = await bootActive({ networks: 'auto' }, user.token);
    const host = server['OS-EXT-SRV-ATTR:host'] ?? (await cc.get(`/servers/${server.id}`, { microversion: '2.79' })).body.server['OS-EXT-SRV-ATTR:host'];
    const ports = await portsOf(server.id);
    assert.equal(ports.length, 1);
    const p = ports[0];
    assert.equal(p.network_id, networkId);
    assert.equal(p.device_owner, 'compute:nova');
    assert.equal(p['binding:host_id'], host);
    assert.equal(p.status, 'ACTIVE');
    assert.equal(p.fixed_ips[0].subnet_id, subnetId);
    assert.deepEqual(server.addresses, { private: [{ version: 4, addr: p.fixed_ips[0].ip_address, 'OS-EXT-IPS:type': 'fixed', 'OS-EXT-IPS-MAC:mac_addr': p.mac_address }] });
    assert.deepEqual(server.security_groups, [{ name: 'default' }]);
    // The driver got the port as a VIF with its subnet.
    const [vif] = driverOf(host).vifsOf(server.id);
    assert.equal(vif.portId, p.id);
    assert.equal(vif.fixedIps[0].cidr, '10.10.0.0/24');
    assert.equal(vif.fixedIps[0].gatewayIp, '10.10.0.1');
    const ips = await cc.get(`/servers/${server.id}/ips`, { token: user.token });
    assert.deepEqual(ips.body, { addresses: { private: [{ version: 4, addr: p.fixed_ips[0].ip_address }] } });
    const one = await cc.get(`/servers/${server.id}/ips/private`, { token: user.token });
    assert.deepEqual(one.body, { private: [{ version: 4, addr: p.fixed_ips[0].ip_address }] });
    assertError(await cc.get(`/servers/${server.id}/ips/nothere`, { token: user.token }), 404, 'Instance is not a member of specified network');
    const list = await cc.get('/servers/detail', { token: user.token, microversion: '2.79' });
    assert.deepEqual(list.body.servers.find((s: any) => s.id === server.id).addresses, server.addresses);

    assert.equal((await cc.delete(`/servers/${server.id}`, { token: user.token })).status, 204);
    await gone(server.id, user.token);
    assert.equal((await cc.get(net(`/ports/${p.id}`))).status, 404, 'the port Nova made is deleted');
  });

  it('refuses what Neutron would: unknown network, another project\'s port, a port in use, a bad fixed IP, ambiguous auto', async () => {
    assertError(await boot({ networks: [{ uuid: '3d3a8b8a-0000-4000-8000-000000000000' }] }, user.token), 400, 'Network 3d3a8b8a-0000-4000-8000-000000000000 could not be found.');
    const theirs = await network(other.token, 'theirs', '10.20.0.0/24');
    assertError(await boot({ networks: [{ uuid: theirs.id }] }, user.token), 400, `Network ${theirs.id} could not be found.`);
    const theirPort = await cc.post(net('/ports'), { port: { network_id: theirs.id } }, { token: other.token });
    assertError(await boot({ networks: [{ port: theirPort.body.port.id }] }, user.token), 400, `Port id ${theirPort.body.port.id} could not be found.`);
    const mine = (await cc.get(net('/networks'), { token: user.token })).body.networks.find((n: any) => n.name === 'private');
    const used = await cc.post(net('/ports'), { port: { network_id: mine.id, device_id: 'something-else' } }, { token: user.token });
    assertError(await boot({ networks: [{ port: used.body.port.id }] }, user.token), 409, `Port ${used.body.port.id} is still in use.`);
    assertError(await boot({ networks: [{ uuid: mine.id, fixed_ip: '192.168.9.9' }] }, user.token), 400, `Fixed IP address 192.168.9.9 is not valid for network ${mine.id}.`);
    assertError(await boot({ networks: [{ uuid: mine.id, fixed_ip: 'not-an-ip' }] }, user.token), 400, 'Invalid fixed IP address (not-an-ip)');
    assertError(await boot({ networks: [{ uuid: mine.id, tag: 'nic' }] }, user.token, '2.37'), 400, /'tag' was unexpected/);
    await network(user.token, 'second', '10.11.0.0/24');
    assertError(await boot({ networks: 'auto' }, user.token), 409, 'Multiple possible networks found, use a Network ID to be more specific.');
    assertError(await boot({ networks: [{ uuid: mine.id }], security_groups: [{ name: 'no-such-group' }] }, user.token), 400);
  });

  it('boots with a network + fixed IP and a user port; delete keeps the user port (unbound)', async () => {
    const nets = (await cc.get(net('/networks'), { token: user.token })).body.networks;
    const privateNet = nets.find((n: any) => n.name === 'private');
    const second = nets.find((n: any) => n.name === 'second');
    const userPort = await cc.post(net('/ports'), { port: { network_id: second.id, name: 'mine' } }, { token: user.token });
    assert.equal(userPort.status, 201, userPort.text);
    const server = await bootActive({ networks: [{ uuid: privateNet.id, fixed_ip: '10.10.0.50', tag: 'first' }, { port: userPort.body.port.id }] }, user.token);
    const tagged = await cc.get(`/servers/${server.id}/os-interface`, { token: user.token, microversion: '2.70' });
    assert.deepEqual(tagged.body.interfaceAttachments.map((i: any) => i.tag), ['first', null]);
    assert.deepEqual(server.addresses.private.map((a: any) => a.addr), ['10.10.0.50']);
    assert.deepEqual(server.addresses.second.map((a: any) => a.addr), [userPort.body.port.fixed_ips[0].ip_address]);
    const bound = await port(userPort.body.port.id);
    assert.equal(bound.device_id, server.id);
    assert.equal(bound['binding:host_id'], (await cc.get(`/servers/${server.id}`, { microversion: '2.79' })).body.server['OS-EXT-SRV-ATTR:host']);
    const interfaces = await cc.get(`/servers/${server.id}/os-interface`, { token: user.token });
    assert.deepEqual(interfaces.body.interfaceAttachments.map((i: any) => i.net_id), [privateNet.id, second.id]);
    const made = (await portsOf(server.id)).find((p) => p.network_id === privateNet.id);

    await cc.delete(`/servers/${server.id}`, { token: user.token });
    await gone(server.id, user.token);
    assert.equal((await cc.get(net(`/ports/${made.id}`))).status, 404);
    const kept = await port(userPort.body.port.id);
    assert.equal(kept.device_id, '', 'the user port stays, without its device');
    assert.equal(kept['binding:host_id'], '');
  });

  it('os-interface attaches by network and by port, then detaches (the driver sees both)', async () => {
    const nets = (await cc.get(net('/networks'), { token: user.token })).body.networks;
    const privateNet = nets.find((n: any) => n.name === 'private');
    const second = nets.find((n: any) => n.name === 'second');
    const server = await bootActive({ networks: [{ uuid: privateNet.id }] }, user.token);
    const host = (await cc.get(`/servers/${server.id}`, { microversion: '2.79' })).body.server['OS-EXT-SRV-ATTR:host'];
    const byNet = await cc.post(`/servers/${server.id}/os-interface`, { interfaceAttachment: { net_id: second.id, fixed_ips: [{ ip_address: '10.11.0.77' }] } }, { token: user.token });
    assert.equal(byNet.status, 200, byNet.text);
    assert.equal(byNet.body.interfaceAttachment.net_id, second.id);
    assert.deepEqual(byNet.body.interfaceAttachment.fixed_ips.map((f: any) => f.ip_address), ['10.11.0.77']);
    const given = await cc.post(net('/ports'), { port: { network_id: second.id } }, { token: user.token });
    const byPort = await cc.post(`/servers/${server.id}/os-interface`, { interfaceAttachment: { port_id: given.body.port.id } }, { token: user.token });
    assert.equal(byPort.status, 200, byPort.text);
    assert.deepEqual(driverOf(host).vifsOf(server.id).map((v) => v.portId).slice(1), [byNet.body.interfaceAttachment.port_id, given.body.port.id]);
    assert.equal((await port(given.body.port.id))['binding:host_id'], host);
    const shown = await cc.get(`/servers/${server.id}/os-interface/${given.body.port.id}`, { token: user.token });
    assert.equal(shown.body.interfaceAttachment.port_id, given.body.port.id);
    const refreshed = await cc.get(`/servers/${server.id}`, { token: user.token, microversion: '2.79' });
    assert.ok(refreshed.body.server.addresses.second.some((a: any) => a.addr === '10.11.0.77'));

    assertError(await cc.post(`/servers/${server.id}/os-interface`, { interfaceAttachment: { net_id: second.id, port_id: given.body.port.id } }, { token: user.token }), 400, 'Must not input both network_id and port_id');
    assertError(await cc.post(`/servers/${server.id}/os-interface`, { interfaceAttachment: { port_id: given.body.port.id } }, { token: user.token }), 409, `Port ${given.body.port.id} is still in use.`);

    assert.equal((await cc.delete(`/servers/${server.id}/os-interface/${byNet.body.interfaceAttachment.port_id}`, { token: user.token })).status, 202);
    assert.equal((await cc.get(net(`/ports/${byNet.body.interfaceAttachment.port_id}`))).status, 404, 'a port Nova made is deleted on detach');
    assert.equal((await cc.delete(`/servers/${server.id}/os-interface/${given.body.port.id}`, { token: user.token })).status, 202);
    assert.equal((await port(given.body.port.id)).device_id, '', 'a user port is kept on detach');
    assert.equal(driverOf(host).vifsOf(server.id).length, 1);
    assertError(await cc.delete(`/servers/${server.id}/os-interface/${given.body.port.id}`, { token: user.token }), 404);
    await cc.delete(`/servers/${server.id}`, { token: user.token });
    await gone(server.id, user.token);
  });

  it('addSecurityGroup / removeSecurityGroup change the groups of the server\'s ports', async () => {
    const privateNet = (await cc.get(net('/networks'), { token: user.token })).body.networks.find((n: any) => n.name === 'private');
    const group = await cc.post(net('/security-groups'), { security_group: { name: 'web' } }, { token: user.token });
    assert.equal(group.status, 201, group.text);
    const server = await bootActive({ networks: [{ uuid: privateNet.id }] }, user.token);
    assert.equal((await cc.act(server.id, { addSecurityGroup: { name: 'web' } }, { token: user.token })).status, 202);
    const [p] = await portsOf(server.id);
    assert.equal(p.security_groups.length, 2);
    let shown = (await cc.get(`/servers/${server.id}`, { token: user.token, microversion: '2.79' })).body.server;
    assert.deepEqual(shown.security_groups.map((g: any) => g.name).sort(), ['default', 'web']);
    const listed = await cc.get(`/servers/${server.id}/os-security-groups`, { token: user.token });
    assert.deepEqual(listed.body.security_groups.map((g: any) => g.name).sort(), ['default', 'web']);
    assertError(await cc.act(server.id, { addSecurityGroup: { name: 'nope' } }, { token: user.token }), 404);
    // The os-security-groups proxy (before 2.36) the CLI uses to find a group; by id the action works too.
    const proxied = await cc.get('/os-security-groups', { token: user.token });
    assert.deepEqual(proxied.body.security_groups.map((g: any) => g.name).sort(), ['default', 'web']);
    assert.equal((await cc.get(`/os-security-groups/${group.body.security_group.id}`, { token: user.token })).body.security_group.name, 'web');
    assertError(await cc.get('/os-security-groups', { token: user.token, microversion: '2.36' }), 404);
    assertError(await cc.act(server.id, { addSecurityGroup: { name: group.body.security_group.id } }, { token: user.token }), 400, /already associated/);
    assert.equal((await cc.act(server.id, { removeSecurityGroup: { name: 'web' } }, { token: user.token })).status, 202);
    assertError(await cc.act(server.id, { removeSecurityGroup: { name: 'web' } }, { token: user.token }), 400, 'Security group web not in server');
    shown = (await cc.get(`/servers/${server.id}`, { token: user.token, microversion: '2.79' })).body.server;
    assert.deepEqual(shown.security_groups, [{ name: 'default' }]);
    await cc.delete(`/servers/${server.id}`, { token: user.token });
    await gone(server.id, user.token);
  });

  it('a floating IP on the server\'s port shows in addresses as floating', async () => {
    const privateNet = (await cc.get(net('/networks'), { token: user.token })).body.networks.find((n: any) => n.name === 'private');
    const external = await cc.post(net('/networks'), { network: { name: unique('ext'), 'router:external': true } });
    assert.equal(external.status, 201, external.text);
    const extSubnet = await cc.post(net('/subnets'), { subnet: { network_id: external.body.network.id, ip_version: 4, cidr: '198.51.100.0/24', enable_dhcp: false } });
    assert.equal(extSubnet.status, 201, extSubnet.text);
    const router = await cc.post(net('/routers'), { router: { name: 'r', external_gateway_info: { network_id: external.body.network.id } } }, { token: user.token });
    assert.equal(router.status, 201, router.text);
    const added = await cc.put(net(`/routers/${router.body.router.id}/add_router_interface`), { subnet_id: privateNet.subnets[0] }, { token: user.token });
    assert.equal(added.status, 200, added.text);
    const server = await bootActive({ networks: [{ uuid: privateNet.id }] }, user.token);
    const [p] = await portsOf(server.id);
    const fip = await cc.post(net('/floatingips'), { floatingip: { floating_network_id: external.body.network.id, port_id: p.id } }, { token: user.token });
    assert.equal(fip.status, 201, fip.text);
    const shown = (await cc.get(`/servers/${server.id}`, { token: user.token, microversion: '2.79' })).body.server;
    assert.deepEqual(shown.addresses.private, [
      { version: 4, addr: p.fixed_ips[0].ip_address, 'OS-EXT-IPS:type': 'fixed', 'OS-EXT-IPS-MAC:mac_addr': p.mac_address },
      { version: 4, addr: fip.body.floatingip.floating_ip_address, 'OS-EXT-IPS:type': 'floating', 'OS-EXT-IPS-MAC:mac_addr': p.mac_address },
    ]);
    await cc.delete(`/servers/${server.id}`, { token: user.token });
    await gone(server.id, user.token);
    const after = await cc.get(net(`/floatingips/${fip.body.floatingip.id}`), { token: user.token });
    assert.equal(after.body.floatingip.port_id, null, 'the deleted port\'s floating IP is disassociated');
  });

  it('a build that fails on every host releases its ports; a repeated allocation reuses them', async () => {
    const privateNet = (await cc.get(net('/networks'), { token: user.token })).body.networks.find((n: any) => n.name === 'private');
    const res = await boot({ name: 'failnet-1', networks: [{ uuid: privateNet.id }] }, user.token);
    assert.equal(res.status, 202, res.text);
    const failed = await cc.waitServer(res.body.server.id, undefined, user.token);
    assert.equal(failed.status, 'ERROR');
    assert.deepEqual(await portsOf(failed.id), [], 'no port is left with the failed server');
    await cc.delete(`/servers/${failed.id}`, { token: user.token });

    // Allocating again for a built server (a resumed workflow) keeps its ports.
    const server = await bootActive({ networks: [{ uuid: privateNet.id }] }, user.token);
    const before = await portsOf(server.id);
    const services = cc.cloud.compute.services;
    const instance = await services.instances.get(server.id);
    const vifs = await services.networking.allocate(instance, instance.host!);
    assert.deepEqual(vifs.map((v) => v.portId), before.map((p) => p.id));
    assert.deepEqual((await portsOf(server.id)).map((p) => p.id), before.map((p) => p.id));
    await cc.delete(`/servers/${server.id}`, { token: user.token });
    await gone(server.id, user.token);
  });

  it('the port quota is checked at create (403)', async () => {
    const privateNet = (await cc.get(net('/networks'), { token: user.token })).body.networks.find((n: any) => n.name === 'private');
    const used = (await cc.get(net(`/ports?project_id=${user.projectId}`))).body.ports.length;
    const set = await cc.put(net(`/quotas/${user.projectId}`), { quota: { port: used } });
    assert.equal(set.status, 200, set.text);
    assertError(await boot({ networks: [{ uuid: privateNet.id }] }, user.token), 403, 'Maximum number of ports exceeded');
    await cc.put(net(`/quotas/${user.projectId}`), { quota: { port: 500 } });
  });

  it('a cold migration rebinds the ports to the new host', async () => {
    const privateNet = (await cc.get(net('/networks'), { token: user.token })).body.networks.find((n: any) => n.name === 'private');
    const server = await bootActive({ networks: [{ uuid: privateNet.id }] }, user.token);
    const source = (await cc.get(`/servers/${server.id}`, { microversion: '2.79' })).body.server['OS-EXT-SRV-ATTR:host'];
    assert.equal((await cc.act(server.id, { migrate: null })).status, 202);
    const moved = await cc.waitServer(server.id, (s) => s.status === 'VERIFY_RESIZE' || s.status === 'ERROR');
    assert.equal(moved.status, 'VERIFY_RESIZE', JSON.stringify(moved.fault));
    const [p] = await portsOf(server.id);
    assert.notEqual(p['binding:host_id'], source);
    assert.equal(p['binding:host_id'], moved['OS-EXT-SRV-ATTR:host']);
    assert.equal(driverOf(moved['OS-EXT-SRV-ATTR:host']).vifsOf(server.id)[0].portId, p.id);
    await cc.act(server.id, { confirmResize: null });
    await cc.settled(server.id);
    await cc.delete(`/servers/${server.id}`);
    await gone(server.id, cc.adminToken);
  });
});
