// Security groups and rules over HTTP (/networking/v2.0): the default group made on first use
// (once, even when asked for concurrently) with Neutron's four rules, group CRUD with the
// default group's protections, rule validation and normalisation as Neutron does it (protocol
// names/numbers, port ranges, ICMP type/code, ethertype against prefix and protocol, remotes),
// duplicates naming the existing rule, bulk creates all-or-nothing, visibility and policy per
// project and role, list filters/fields/sorting/paging, quotas, and the service contract.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { networkAgentTopic, type SecurityGroupSetup } from '../../src/network/rpc.js';
import { retryingTransaction } from '../../src/network/transactions.js';
import { testEngines } from '../../src/db/testing.js';
import { assertNeutronError, sleep, startNetworkCloud, type ApiResponse, type NetworkCloud } from './harness.js';

/** The shared harness, called with full /v2.0 paths and a token as the last argument. */
class Net {
  constructor(readonly nc: NetworkCloud) {}
  get cloud() { return this.nc.cloud; }
  get adminToken() { return this.nc.adminToken; }
  get adminProject() { return this.nc.adminProject; }
  get demoToken() { return this.nc.demoToken; }
  get demoProject() { return this.nc.demoProject; }
  get = (path: string, token?: string): Promise<ApiResponse> => this.nc.get(`/networking${path}`, { token });
  post = (path: string, body: unknown, token?: string): Promise<ApiResponse> => this.nc.post(`/networking${path}`, body, { token });
  put = (path: string, body: unknown, token?: string): Promise<ApiResponse> => this.nc.put(`/networking${path}`, body, { token });
  delete = (path: string, token?: string): Promise<ApiResponse> => this.nc.delete(`/networking${path}`, { token });
  projectUser = (name: string, role?: string) => this.nc.projectUser(name, role);
  close = () => this.nc.close();
}

async function startNet(connection?: string): Promise<Net> {
  return new Net(await startNetworkCloud(connection ? { database: { connection } } : {}));
}

const STAMP = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/;

describe('network security groups', () => {
  let net: Net;
  let counter = 0;
  const name = (prefix: string) => `${prefix}-${++counter}`;

  before(async () => {
    net = await startNet();
    // The suite keeps many groups in the demo and admin projects; the quota test uses a project of its own.
    for (const project of [net.demoProject, net.adminProject]) {
      await net.cloud.network.services.quotas.update(project, { security_group: -1, security_group_rule: -1 });
    }
  });
  after(async () => { await net?.close(); });

  async function createGroup(fields: Record<string, unknown> = {}, token?: string): Promise<any> {
    const res = await net.post('/v2.0/security-groups', { security_group: { name: name('sg'), ...fields } }, token);
    assert.equal(res.status, 201, res.text);
    return res.body.security_group;
  }

  async function createRule(fields: Record<string, unknown>, token?: string): Promise<ApiResponse> {
    return net.post('/v2.0/security-group-rules', { security_group_rule: { direction: 'ingress', ...fields } }, token);
  }

  async function rule(fields: Record<string, unknown>, token?: string): Promise<any> {
    const res = await createRule(fields, token);
    assert.equal(res.status, 201, res.text);
    return res.body.security_group_rule;
  }

  it('makes the project default group on first use, with Neutron\'s four rules', async () => {
    const res = await net.get('/v2.0/security-groups', net.demoToken);
    assert.equal(res.status, 200, res.text);
    const groups = res.body.security_groups;
    assert.equal(groups.length, 1, res.text);
    const group = groups[0];
    assert.equal(group.name, 'default');
    assert.equal(group.description, 'Default security group');
    assert.equal(group.project_id, net.demoProject);
    assert.equal(group.tenant_id, net.demoProject);
    assert.equal(group.stateful, true);
    assert.equal(group.shared, false);
    assert.deepEqual(group.tags, []);
    assert.match(group.created_at, STAMP);
    assert.match(group.updated_at, STAMP);
    assert.equal(typeof group.revision_number, 'number');
    const rules = group.security_group_rules;
    assert.equal(rules.length, 4);
    const summary = rules.map((r: any) => `${r.direction} ${r.ethertype} ${r.remote_group_id === group.id ? 'self' : r.remote_group_id} ${r.protocol} ${r.remote_ip_prefix}`).sort();
    assert.deepEqual(summary, ['egress IPv4 null null null', 'egress IPv6 null null null', 'ingress IPv4 self null null', 'ingress IPv6 self null null']);
    for (const r of rules) {
      assert.equal(r.security_group_id, group.id);
      assert.equal(r.project_id, net.demoProject);
      assert.equal(r.belongs_to_default_sg, true);
      assert.equal(r.port_range_min, null);
      assert.equal(r.normalized_cidr, null);
    }
    // The same group on the next look, and through GET of one group.
    const again = await net.get('/v2.0/security-groups', net.demoToken);
    assert.deepEqual(again.body.security_groups.map((g: any) => g.id), [group.id]);
    const shown = await net.get(`/v2.0/security-groups/${group.id}`, net.demoToken);
    assert.equal(shown.status, 200);
    assert.deepEqual(shown.body.security_group, group);
  });

  it('makes one default group when a new project asks for it concurrently', async () => {
    const fresh = await net.projectUser(name('concurrent'));
    const answers = await Promise.all(Array.from({ length: 6 }, (_, i) => (i % 2 === 0
      ? net.get('/v2.0/security-groups', fresh.token) : net.get('/v2.0/security-group-rules', fresh.token))));
    for (const res of answers) assert.equal(res.status, 200, res.text);
    const groups = (await net.get('/v2.0/security-groups', fresh.token)).body.security_groups;
    assert.equal(groups.length, 1);
    assert.equal((await net.get('/v2.0/security-group-rules', fresh.token)).body.security_group_rules.length, 4);
  });

  it('creates a group with the egress rules only, and the default group before it', async () => {
    const fresh = await net.projectUser(name('creator'));
    const group = await createGroup({ description: 'web servers' }, fresh.token);
    assert.equal(group.description, 'web servers');
    assert.equal(group.project_id, fresh.projectId);
    assert.equal(group.stateful, true);
    assert.deepEqual(group.security_group_rules.map((r: any) => `${r.direction} ${r.ethertype} ${r.remote_group_id} ${r.belongs_to_default_sg}`).sort(),
      ['egress IPv4 null false', 'egress IPv6 null false']);
    const names = (await net.get('/v2.0/security-groups', fresh.token)).body.security_groups.map((g: any) => g.name).sort();
    assert.deepEqual(names, ['default', group.name]);

    const stateless = await createGroup({ stateful: false }, fresh.token);
    assert.equal(stateless.stateful, false);
    const tagged = await createGroup({ tags: ['web', 'prod'] }, fresh.token);
    assert.deepEqual(tagged.tags, ['prod', 'web']);
    // `openstack security group set --tag blue`: the tags sub-resource.
    const retagged = await net.put(`/v2.0/security-groups/${tagged.id}/tags`, { tags: ['blue'] }, fresh.token);
    assert.equal(retagged.status, 200, retagged.text);
    assert.deepEqual((await net.get(`/v2.0/security-groups?tags=blue`, fresh.token)).body.security_groups.map((g: any) => g.id), [tagged.id]);
    assert.equal((await net.put(`/v2.0/security-groups/${tagged.id}/tags/blue`, undefined, net.demoToken)).status, 404);
    const unnamed = await net.post('/v2.0/security-groups', { security_group: {} }, fresh.token);
    assert.equal(unnamed.status, 201, unnamed.text);
    assert.equal(unnamed.body.security_group.name, '');
  });

  it('refuses bad group bodies in Neutron\'s words', async () => {
    assertNeutronError(await net.post('/v2.0/security-groups', { security_group: { name: 'default' } }), 409, 'SecurityGroupDefaultAlreadyExists', 'Default security group already exists.');
    assertNeutronError(await net.post('/v2.0/security-groups', { security_group: { name: 'Default' } }), 409, 'SecurityGroupDefaultAlreadyExists');
    assertNeutronError(await net.post('/v2.0/security-groups', { security_group: { name: 'x', colour: 'red' } }), 400, 'HTTPBadRequest', "Unrecognized attribute(s) 'colour'");
    assertNeutronError(await net.post('/v2.0/security-groups', { security_group: { name: 'x', id: 'abc' } }), 400, 'HTTPBadRequest', "Attribute 'id' not allowed in POST");
    assertNeutronError(await net.post('/v2.0/security-groups', { security_group: { name: 42 } }), 400, 'HTTPBadRequest', 'Invalid input for name. Reason: 42 is not a valid string.');
    assertNeutronError(await net.post('/v2.0/security-groups', { security_group: { name: 'x'.repeat(256) } }), 400, 'HTTPBadRequest');
    assertNeutronError(await net.post('/v2.0/security-groups', { security_group: { stateful: 'maybe' } }), 400, 'HTTPBadRequest', "Invalid input for stateful. Reason: 'maybe' cannot be converted to boolean.");
    assertNeutronError(await net.post('/v2.0/security-groups', { name: 'x' }), 400);
  });

  it('updates name, description and statefulness; the default group keeps its name', async () => {
    const group = await createGroup({}, net.demoToken);
    const renamed = await net.put(`/v2.0/security-groups/${group.id}`, { security_group: { name: 'renamed', description: 'now described', stateful: false } }, net.demoToken);
    assert.equal(renamed.status, 200, renamed.text);
    assert.equal(renamed.body.security_group.name, 'renamed');
    assert.equal(renamed.body.security_group.description, 'now described');
    assert.equal(renamed.body.security_group.stateful, false);
    assert.ok(renamed.body.security_group.revision_number > group.revision_number);

    const defaultGroup = (await net.get('/v2.0/security-groups?name=default', net.demoToken)).body.security_groups[0];
    assertNeutronError(await net.put(`/v2.0/security-groups/${defaultGroup.id}`, { security_group: { name: 'other' } }, net.demoToken),
      409, 'SecurityGroupCannotUpdateDefault', 'Updating default security group not allowed.');
    const described = await net.put(`/v2.0/security-groups/${defaultGroup.id}`, { security_group: { description: 'ours' } }, net.demoToken);
    assert.equal(described.status, 200, described.text);
    assert.equal(described.body.security_group.description, 'ours');
    assertNeutronError(await net.put(`/v2.0/security-groups/${group.id}`, { security_group: { name: 'default' } }, net.demoToken), 409, 'SecurityGroupDefaultAlreadyExists');
    assertNeutronError(await net.put(`/v2.0/security-groups/${group.id}`, { security_group: { project_id: 'x' } }, net.demoToken), 400, 'HTTPBadRequest', 'Cannot update read-only attribute project_id');
    assertNeutronError(await net.put('/v2.0/security-groups/no-such-group', { security_group: { name: 'x' } }, net.demoToken), 404, 'SecurityGroupNotFound', 'Security group no-such-group does not exist');
  });

  it('deletes groups; only an admin deletes a default group', async () => {
    const fresh = await net.projectUser(name('deleter'));
    const group = await createGroup({}, fresh.token);
    const deleted = await net.delete(`/v2.0/security-groups/${group.id}`, fresh.token);
    assert.equal(deleted.status, 204, deleted.text);
    assertNeutronError(await net.get(`/v2.0/security-groups/${group.id}`, fresh.token), 404, 'SecurityGroupNotFound', `Security group ${group.id} does not exist`);
    assertNeutronError(await net.delete(`/v2.0/security-groups/${group.id}`, fresh.token), 404, 'SecurityGroupNotFound');
    const rules = (await net.get(`/v2.0/security-group-rules?security_group_id=${group.id}`, net.adminToken)).body.security_group_rules;
    assert.deepEqual(rules, []);

    const defaultGroup = (await net.get('/v2.0/security-groups', fresh.token)).body.security_groups[0];
    assertNeutronError(await net.delete(`/v2.0/security-groups/${defaultGroup.id}`, fresh.token), 409, 'SecurityGroupCannotRemoveDefault',
      'Insufficient rights for removing default security group.');
    assert.equal((await net.delete(`/v2.0/security-groups/${defaultGroup.id}`, net.adminToken)).status, 204);
    // Made again on the next use.
    const remade = (await net.get('/v2.0/security-groups', fresh.token)).body.security_groups;
    assert.equal(remade.length, 1);
    assert.notEqual(remade[0].id, defaultGroup.id);
    assert.equal(remade[0].name, 'default');
  });

  it('refuses to delete or change the statefulness of a group a port uses', async () => {
    const network = await net.nc.network({ name: name('net') }, net.demoToken);
    const group = await createGroup({}, net.demoToken);
    const port = await net.nc.port(network.id, { security_groups: [group.id] }, net.demoToken);
    assert.deepEqual(port.security_groups, [group.id]);
    assertNeutronError(await net.delete(`/v2.0/security-groups/${group.id}`, net.demoToken), 409, 'SecurityGroupInUse', `Security Group ${group.id} in use.`);
    assertNeutronError(await net.put(`/v2.0/security-groups/${group.id}`, { security_group: { stateful: false } }, net.demoToken), 409, 'SecurityGroupInUse');
    // Other changes are fine; once the port is gone, so is the group.
    assert.equal((await net.put(`/v2.0/security-groups/${group.id}`, { security_group: { description: 'in use' } }, net.demoToken)).status, 200);
    assert.equal((await net.delete(`/v2.0/ports/${port.id}`, net.demoToken)).status, 204);
    assert.equal((await net.delete(`/v2.0/security-groups/${group.id}`, net.demoToken)).status, 204);
    // A port made without groups gets its project's default group; a port may not name another project's group.
    const defaulted = await net.nc.port(network.id, {}, net.demoToken);
    const defaultGroup = (await net.get('/v2.0/security-groups?name=default', net.demoToken)).body.security_groups[0];
    assert.deepEqual(defaulted.security_groups, [defaultGroup.id]);
    const adminGroup = await createGroup({}, net.adminToken);
    assertNeutronError(await net.post('/v2.0/ports', { port: { network_id: network.id, security_groups: [adminGroup.id] } }, net.demoToken), 404, 'SecurityGroupNotFound');
    assert.equal((await net.delete(`/v2.0/ports/${defaulted.id}`, net.demoToken)).status, 204);
  });

  it('deleting a group removes the rules of other groups that name it as remote group', async () => {
    const target = await createGroup({}, net.demoToken);
    const other = await createGroup({}, net.demoToken);
    const referring = await rule({ security_group_id: other.id, remote_group_id: target.id, protocol: 'tcp', port_range_min: 80, port_range_max: 80 }, net.demoToken);
    assert.equal((await net.delete(`/v2.0/security-groups/${target.id}`, net.demoToken)).status, 204);
    assertNeutronError(await net.get(`/v2.0/security-group-rules/${referring.id}`, net.demoToken), 404, 'SecurityGroupRuleNotFound');
  });

  it('creates rules as an operator does for SSH and ping, and normalises them', async () => {
    const group = await createGroup({}, net.demoToken);
    // `openstack security group rule create --proto tcp --dst-port 22`
    const ssh = await rule({ security_group_id: group.id, protocol: 'tcp', port_range_min: 22, port_range_max: 22, ethertype: 'IPv4', remote_ip_prefix: '0.0.0.0/0' }, net.demoToken);
    assert.equal(ssh.protocol, 'tcp');
    assert.equal(ssh.port_range_min, 22);
    assert.equal(ssh.port_range_max, 22);
    assert.equal(ssh.remote_ip_prefix, '0.0.0.0/0');
    assert.equal(ssh.normalized_cidr, '0.0.0.0/0');
    assert.equal(ssh.direction, 'ingress');
    assert.equal(ssh.ethertype, 'IPv4');
    assert.equal(ssh.project_id, net.demoProject);
    assert.equal(ssh.tenant_id, net.demoProject);
    assert.equal(ssh.remote_group_id, null);
    assert.equal(ssh.belongs_to_default_sg, false);
    assert.equal(ssh.description, '');
    assert.match(ssh.created_at, STAMP);
    // `openstack security group rule create --proto icmp`
    const ping = await rule({ security_group_id: group.id, protocol: 'icmp', ethertype: 'IPv4', remote_ip_prefix: '0.0.0.0/0' }, net.demoToken);
    assert.equal(ping.protocol, 'icmp');
    assert.equal(ping.port_range_min, null);

    const shown = (await net.get(`/v2.0/security-groups/${group.id}`, net.demoToken)).body.security_group;
    assert.deepEqual(shown.security_group_rules.map((r: any) => r.id).sort(), [...group.security_group_rules.map((r: any) => r.id), ssh.id, ping.id].sort());
    assert.ok(shown.revision_number >= group.revision_number + 2, 'a new rule revises its group');

    // Numbers stay numbers (as strings); names are lower-cased; 'any' is no protocol.
    assert.equal((await rule({ security_group_id: group.id, protocol: 132 }, net.demoToken)).protocol, '132');
    assert.equal((await rule({ security_group_id: group.id, protocol: 'UDP', port_range_min: 53, port_range_max: 53 }, net.demoToken)).protocol, 'udp');
    const any = await rule({ security_group_id: group.id, protocol: 'any', remote_ip_prefix: '192.168.0.0/16' }, net.demoToken);
    assert.equal(any.protocol, null);
    // ICMP type and code live in the port range.
    const unreachable = await rule({ security_group_id: group.id, protocol: 'icmp', port_range_min: 3, port_range_max: 4, remote_ip_prefix: '10.1.0.0/16' }, net.demoToken);
    assert.deepEqual([unreachable.port_range_min, unreachable.port_range_max], [3, 4]);
    // The whole port range is no range at all.
    const allTcp = await rule({ security_group_id: group.id, protocol: 'tcp', port_range_min: 1, port_range_max: 65535, remote_ip_prefix: '10.2.0.0/16' }, net.demoToken);
    assert.deepEqual([allTcp.port_range_min, allTcp.port_range_max], [null, null]);
    // Prefixes keep the address given, with a length; normalized_cidr is the network.
    const host = await rule({ security_group_id: group.id, remote_ip_prefix: '10.0.0.5' }, net.demoToken);
    assert.equal(host.remote_ip_prefix, '10.0.0.5/32');
    const subnet = await rule({ security_group_id: group.id, remote_ip_prefix: '10.0.0.5/24' }, net.demoToken);
    assert.equal(subnet.remote_ip_prefix, '10.0.0.5/24');
    assert.equal(subnet.normalized_cidr, '10.0.0.0/24');
    // IPv6: ethertype case-insensitive, the canonical address text, icmp becomes ipv6-icmp.
    const v6 = await rule({ security_group_id: group.id, ethertype: 'ipv6', protocol: 'icmp', remote_ip_prefix: '2001:DB8:0:0::1/64' }, net.demoToken);
    assert.equal(v6.ethertype, 'IPv6');
    assert.equal(v6.protocol, 'ipv6-icmp');
    assert.equal(v6.remote_ip_prefix, '2001:db8::1/64');
    assert.equal(v6.normalized_cidr, '2001:db8::/64');
    const v6legacy = await rule({ security_group_id: group.id, ethertype: 'IPv6', protocol: 'icmpv6', remote_ip_prefix: '2001:db8:1::/48' }, net.demoToken);
    assert.equal(v6legacy.protocol, 'ipv6-icmp');
    const v6number = await rule({ security_group_id: group.id, ethertype: 'IPv6', protocol: '1', remote_ip_prefix: '2001:db8:2::/48' }, net.demoToken);
    assert.equal(v6number.protocol, '58');
    // A remote group, and a description.
    const fromGroup = await rule({ security_group_id: group.id, remote_group_id: group.id, protocol: 'tcp', port_range_min: 5432, port_range_max: 5432, description: 'db from peers' }, net.demoToken);
    assert.equal(fromGroup.remote_group_id, group.id);
    assert.equal(fromGroup.description, 'db from peers');
    const egress = await rule({ security_group_id: group.id, direction: 'egress', protocol: 'udp', port_range_min: 123, port_range_max: 123 }, net.demoToken);
    assert.equal(egress.direction, 'egress');
  });

  it('refuses invalid rules with Neutron\'s errors', async () => {
    const group = await createGroup({}, net.demoToken);
    const sg = group.id;
    const cases: [Record<string, unknown>, number, string, (string | RegExp)?][] = [
      [{ direction: 'sideways' }, 400, 'HTTPBadRequest', "Invalid input for direction. Reason: 'sideways' is not in ['ingress', 'egress']."],
      [{ direction: undefined }, 400, 'HTTPBadRequest', "Failed to parse request. Required attribute 'direction' not specified"],
      [{ protocol: 'foo' }, 400, 'SecurityGroupRuleInvalidProtocol', /^Security group rule protocol foo not supported\. Only protocol values \(None, 'any', 'ah', .*'vrrp'\) and integer representations \[0 to 255\] are supported\.$/],
      [{ protocol: 256 }, 400, 'SecurityGroupRuleInvalidProtocol'],
      [{ protocol: 'tcp', port_range_min: 70000, port_range_max: 70000 }, 400, 'SecurityGroupInvalidPortValue', 'Invalid value for port 70000'],
      [{ protocol: 'tcp', port_range_min: 'abc' }, 400, 'SecurityGroupInvalidPortValue', 'Invalid value for port abc'],
      [{ protocol: 'tcp', port_range_min: 0, port_range_max: 10 }, 400, 'SecurityGroupInvalidPortValue', 'Invalid value for port 0'],
      [{ protocol: 'tcp', port_range_min: 100, port_range_max: 10 }, 400, 'SecurityGroupInvalidPortRange', 'For TCP/UDP protocols, port_range_min must be <= port_range_max'],
      [{ protocol: 'udp', port_range_min: 100 }, 400, 'SecurityGroupInvalidPortRange'],
      [{ port_range_min: 22, port_range_max: 22 }, 400, 'SecurityGroupProtocolRequiredWithPorts', 'Must also specify protocol if port range is given.'],
      [{ protocol: 'gre', port_range_min: 22, port_range_max: 22 }, 400, 'SecurityGroupInvalidProtocolForPort', 'Ports cannot be specified for protocol 47. Ports are only supported for DCCP, SCTP, TCP, UDP, UDPLITE.'],
      [{ protocol: 'icmp', port_range_min: 256 }, 400, 'SecurityGroupInvalidIcmpValue', 'Invalid value for ICMP type (port_range_min) 256. It must be 0 to 255.'],
      [{ protocol: 'icmp', port_range_min: 8, port_range_max: 300 }, 400, 'SecurityGroupInvalidIcmpValue', 'Invalid value for ICMP code (port_range_max) 300. It must be 0 to 255.'],
      [{ protocol: 'icmp', port_range_max: 0 }, 400, 'SecurityGroupMissingIcmpType', 'ICMP code (port-range-max) 0 is provided but ICMP type (port-range-min) is missing.'],
      [{ ethertype: 'IPv5' }, 400, 'SecurityGroupRuleInvalidEtherType', "Security group rule for ethertype 'IPv5' not supported. Allowed values are ['IPv4', 'IPv6']."],
      [{ remote_ip_prefix: '10.0.0.0/33' }, 400, 'InvalidCIDR', 'Invalid CIDR 10.0.0.0/33 given as IP prefix.'],
      [{ remote_ip_prefix: 'not-a-cidr' }, 400, 'InvalidCIDR'],
      [{ remote_ip_prefix: '2001:db8::/64' }, 400, 'SecurityGroupRuleParameterConflict', 'Conflicting value ethertype IPv4 for CIDR 2001:db8::/64'],
      [{ ethertype: 'IPv6', remote_ip_prefix: '10.0.0.0/8' }, 400, 'SecurityGroupRuleParameterConflict'],
      [{ protocol: 'ipv6-icmp' }, 400, 'SecurityGroupEthertypeConflictWithProtocol', 'Invalid ethertype IPv4 for protocol ipv6-icmp.'],
      [{ protocol: '58', ethertype: 'IPv4' }, 400, 'SecurityGroupEthertypeConflictWithProtocol'],
      [{ remote_ip_prefix: '10.0.0.0/8', remote_group_id: sg }, 400, 'SecurityGroupMultipleRemoteEntites'],
      [{ colour: 'red' }, 400, 'HTTPBadRequest', "Unrecognized attribute(s) 'colour'"],
      [{ normalized_cidr: '10.0.0.0/8' }, 400, 'HTTPBadRequest', "Attribute 'normalized_cidr' not allowed in POST"],
      [{ remote_address_group_id: 'a6fd2d36-5c4c-4b6b-9b0c-2b7c3f1f0a11' }, 400, 'HTTPBadRequest'],
      [{ remote_group_id: 'b6fd2d36-5c4c-4b6b-9b0c-2b7c3f1f0a11' }, 404, 'SecurityGroupNotFound', 'Security group b6fd2d36-5c4c-4b6b-9b0c-2b7c3f1f0a11 does not exist'],
      [{ security_group_id: 'c6fd2d36-5c4c-4b6b-9b0c-2b7c3f1f0a11' }, 404, 'SecurityGroupNotFound'],
    ];
    for (const [fields, status, type, message] of cases) {
      const res = await createRule({ security_group_id: sg, ...fields }, net.demoToken);
      assertNeutronError(res, status, type, message);
    }
    assertNeutronError(await net.post('/v2.0/security-group-rules', { security_group_rule: { direction: 'ingress' } }, net.demoToken),
      400, 'HTTPBadRequest', "Failed to parse request. Required attribute 'security_group_id' not specified");
    // Nothing of that was written.
    const after = (await net.get(`/v2.0/security-groups/${sg}`, net.demoToken)).body.security_group;
    assert.equal(after.security_group_rules.length, 2);
  });

  it('refuses a duplicate rule naming the rule it duplicates', async () => {
    const group = await createGroup({}, net.demoToken);
    const ssh = await rule({ security_group_id: group.id, protocol: 'tcp', port_range_min: 22, port_range_max: 22, remote_ip_prefix: '0.0.0.0/0' }, net.demoToken);
    const message = `Security group rule already exists. Rule id is ${ssh.id}.`;
    // The same rule by protocol number, without the any-address prefix, and in capitals.
    assertNeutronError(await createRule({ security_group_id: group.id, protocol: 'tcp', port_range_min: 22, port_range_max: 22, remote_ip_prefix: '0.0.0.0/0' }, net.demoToken), 409, 'SecurityGroupRuleExists', message);
    assertNeutronError(await createRule({ security_group_id: group.id, protocol: '6', port_range_min: 22, port_range_max: 22 }, net.demoToken), 409, 'SecurityGroupRuleExists', message);
    assertNeutronError(await createRule({ security_group_id: group.id, protocol: 'TCP', port_range_min: '22', port_range_max: 22, ethertype: 'ipv4' }, net.demoToken), 409, 'SecurityGroupRuleExists', message);
    // The template egress rule of the group is a rule like any other.
    const egress = group.security_group_rules.find((r: any) => r.ethertype === 'IPv6');
    assertNeutronError(await createRule({ security_group_id: group.id, direction: 'egress', ethertype: 'IPv6', remote_ip_prefix: '::/0' }, net.demoToken),
      409, 'SecurityGroupRuleExists', `Security group rule already exists. Rule id is ${egress.id}.`);
    // A different port, direction or prefix is another rule; so is the same rule in another group.
    await rule({ security_group_id: group.id, protocol: 'tcp', port_range_min: 22, port_range_max: 23 }, net.demoToken);
    await rule({ security_group_id: group.id, protocol: 'tcp', port_range_min: 22, port_range_max: 22, direction: 'egress' }, net.demoToken);
    await rule({ security_group_id: group.id, protocol: 'tcp', port_range_min: 22, port_range_max: 22, remote_ip_prefix: '10.0.0.0/8' }, net.demoToken);
    const other = await createGroup({}, net.demoToken);
    await rule({ security_group_id: other.id, protocol: 'tcp', port_range_min: 22, port_range_max: 22 }, net.demoToken);

    // Concurrent creates of one new rule: exactly one wins, the others name it.
    const answers = await Promise.all(Array.from({ length: 5 }, () => createRule({ security_group_id: group.id, protocol: 'udp', port_range_min: 500, port_range_max: 500 }, net.demoToken)));
    const won = answers.filter((a) => a.status === 201);
    assert.equal(won.length, 1, answers.map((a) => a.text).join('\n'));
    for (const lost of answers.filter((a) => a.status !== 201)) {
      assertNeutronError(lost, 409, 'SecurityGroupRuleExists', `Security group rule already exists. Rule id is ${won[0].body.security_group_rule.id}.`);
    }
  });

  it('creates rules in bulk, all or nothing', async () => {
    const group = await createGroup({}, net.demoToken);
    const created = await net.post('/v2.0/security-group-rules', { security_group_rules: [
      { security_group_id: group.id, direction: 'ingress', protocol: 'tcp', port_range_min: 80, port_range_max: 80 },
      { security_group_id: group.id, direction: 'ingress', protocol: 'tcp', port_range_min: 443, port_range_max: 443 },
    ] }, net.demoToken);
    assert.equal(created.status, 201, created.text);
    assert.deepEqual(created.body.security_group_rules.map((r: any) => r.port_range_min), [80, 443]);

    const count = async () => (await net.get(`/v2.0/security-groups/${group.id}`, net.demoToken)).body.security_group.security_group_rules.length;
    const before = await count();
    assertNeutronError(await net.post('/v2.0/security-group-rules', { security_group_rules: [
      { security_group_id: group.id, direction: 'ingress', protocol: 'tcp', port_range_min: 8080, port_range_max: 8080 },
      { security_group_id: group.id, direction: 'ingress', protocol: '6', port_range_min: 8080, port_range_max: 8080 },
    ] }, net.demoToken), 409, 'DuplicateSecurityGroupRuleInPost', 'Duplicate Security Group Rule in POST.');
    assertNeutronError(await net.post('/v2.0/security-group-rules', { security_group_rules: [
      { security_group_id: group.id, direction: 'ingress', protocol: 'tcp', port_range_min: 8081, port_range_max: 8081 },
      { security_group_id: group.id, direction: 'ingress', protocol: 'tcp', port_range_min: 80, port_range_max: 80 },
    ] }, net.demoToken), 409, 'SecurityGroupRuleExists');
    assertNeutronError(await net.post('/v2.0/security-group-rules', { security_group_rules: [
      { security_group_id: group.id, direction: 'ingress', protocol: 'tcp', port_range_min: 8082, port_range_max: 8082 },
      { security_group_id: group.id, direction: 'ingress', protocol: 'tcp', port_range_min: 9, port_range_max: 1 },
    ] }, net.demoToken), 400, 'SecurityGroupInvalidPortRange');
    const other = await createGroup({}, net.demoToken);
    assertNeutronError(await net.post('/v2.0/security-group-rules', { security_group_rules: [
      { security_group_id: group.id, direction: 'ingress', protocol: 'tcp', port_range_min: 8083, port_range_max: 8083 },
      { security_group_id: other.id, direction: 'ingress', protocol: 'tcp', port_range_min: 8083, port_range_max: 8083 },
    ] }, net.demoToken), 400, 'SecurityGroupNotSingleGroupRules');
    assert.equal(await count(), before);

    const groups = await net.post('/v2.0/security-groups', { security_groups: [{ name: name('bulk') }, { name: name('bulk') }] }, net.demoToken);
    assert.equal(groups.status, 201, groups.text);
    assert.equal(groups.body.security_groups.length, 2);
  });

  it('updates a rule\'s description only, and deletes rules', async () => {
    const group = await createGroup({}, net.demoToken);
    const r = await rule({ security_group_id: group.id, protocol: 'tcp', port_range_min: 25, port_range_max: 25 }, net.demoToken);
    const updated = await net.put(`/v2.0/security-group-rules/${r.id}`, { security_group_rule: { description: 'mail' } }, net.demoToken);
    assert.equal(updated.status, 200, updated.text);
    assert.equal(updated.body.security_group_rule.description, 'mail');
    assert.equal(updated.body.security_group_rule.revision_number, r.revision_number + 1);
    assertNeutronError(await net.put(`/v2.0/security-group-rules/${r.id}`, { security_group_rule: { port_range_min: 26 } }, net.demoToken),
      400, 'HTTPBadRequest', 'Cannot update read-only attribute port_range_min');

    const revision = (await net.get(`/v2.0/security-groups/${group.id}`, net.demoToken)).body.security_group.revision_number;
    assert.equal((await net.delete(`/v2.0/security-group-rules/${r.id}`, net.demoToken)).status, 204);
    assertNeutronError(await net.get(`/v2.0/security-group-rules/${r.id}`, net.demoToken), 404, 'SecurityGroupRuleNotFound', `Security group rule ${r.id} does not exist`);
    assertNeutronError(await net.delete(`/v2.0/security-group-rules/${r.id}`, net.demoToken), 404, 'SecurityGroupRuleNotFound');
    assert.ok((await net.get(`/v2.0/security-groups/${group.id}`, net.demoToken)).body.security_group.revision_number > revision);
  });

  it('keeps projects apart; readers read; admins see and change everything', async () => {
    const adminGroup = await createGroup({}, net.adminToken);
    const demoGroups = (await net.get('/v2.0/security-groups', net.demoToken)).body.security_groups;
    assert.ok(demoGroups.every((g: any) => g.project_id === net.demoProject));
    assertNeutronError(await net.get(`/v2.0/security-groups/${adminGroup.id}`, net.demoToken), 404, 'SecurityGroupNotFound');
    assertNeutronError(await net.put(`/v2.0/security-groups/${adminGroup.id}`, { security_group: { name: 'mine' } }, net.demoToken), 404, 'SecurityGroupNotFound');
    assertNeutronError(await net.delete(`/v2.0/security-groups/${adminGroup.id}`, net.demoToken), 404, 'SecurityGroupNotFound');
    assertNeutronError(await createRule({ security_group_id: adminGroup.id, protocol: 'tcp' }, net.demoToken), 404, 'SecurityGroupNotFound');
    const adminRule = adminGroup.security_group_rules[0];
    assertNeutronError(await net.get(`/v2.0/security-group-rules/${adminRule.id}`, net.demoToken), 404, 'SecurityGroupRuleNotFound');
    assertNeutronError(await net.delete(`/v2.0/security-group-rules/${adminRule.id}`, net.demoToken), 404, 'SecurityGroupRuleNotFound');
    const demoRules = (await net.get('/v2.0/security-group-rules', net.demoToken)).body.security_group_rules;
    assert.ok(demoRules.length > 0 && demoRules.every((r: any) => r.project_id === net.demoProject));
    // A remote group must be one of the rule's project's groups.
    const demoGroup = await createGroup({}, net.demoToken);
    assertNeutronError(await createRule({ security_group_id: demoGroup.id, remote_group_id: adminGroup.id }, net.demoToken), 404, 'SecurityGroupNotFound');
    // Another project's id in the body is refused by policy.
    assertNeutronError(await net.post('/v2.0/security-groups', { security_group: { name: 'x', project_id: net.adminProject } }, net.demoToken), 403, 'PolicyNotAuthorized');

    // The admin sees every project's groups, filters by project, and acts on them.
    const all = (await net.get('/v2.0/security-groups', net.adminToken)).body.security_groups;
    assert.ok(all.some((g: any) => g.id === demoGroup.id) && all.some((g: any) => g.id === adminGroup.id));
    const demoOnly = (await net.get(`/v2.0/security-groups?project_id=${net.demoProject}`, net.adminToken)).body.security_groups;
    assert.ok(demoOnly.length > 0 && demoOnly.every((g: any) => g.project_id === net.demoProject));
    const adminMade = await rule({ security_group_id: demoGroup.id, protocol: 'tcp', port_range_min: 3306, port_range_max: 3306 }, net.adminToken);
    assert.equal(adminMade.security_group_id, demoGroup.id);
    const forDemo = await createGroup({ project_id: net.demoProject }, net.adminToken);
    assert.equal(forDemo.project_id, net.demoProject);
    assert.equal((await net.get(`/v2.0/security-groups/${forDemo.id}`, net.demoToken)).status, 200);

    // A reader lists and shows but changes nothing.
    const reader = await net.projectUser(name('reader'), 'reader');
    const readerGroups = await net.get('/v2.0/security-groups', reader.token);
    assert.equal(readerGroups.status, 200, readerGroups.text);
    const readerDefault = readerGroups.body.security_groups[0];
    assert.equal(readerDefault.name, 'default');
    assert.equal((await net.get(`/v2.0/security-groups/${readerDefault.id}`, reader.token)).status, 200);
    assertNeutronError(await net.post('/v2.0/security-groups', { security_group: { name: 'x' } }, reader.token), 403, 'PolicyNotAuthorized', '(rule:create_security_group) is disallowed by policy');
    assertNeutronError(await createRule({ security_group_id: readerDefault.id, protocol: 'tcp' }, reader.token), 403, 'PolicyNotAuthorized');
    assertNeutronError(await net.put(`/v2.0/security-groups/${readerDefault.id}`, { security_group: { description: 'x' } }, reader.token), 403, 'PolicyNotAuthorized');
    assertNeutronError(await net.delete(`/v2.0/security-group-rules/${readerDefault.security_group_rules[0].id}`, reader.token), 403, 'PolicyNotAuthorized');
  });

  it('lists with filters, fields, sorting and paging', async () => {
    const fresh = await net.projectUser(name('lister'));
    const a = await createGroup({ name: 'alpha' }, fresh.token);
    const b = await createGroup({ name: 'beta' }, fresh.token);
    await rule({ security_group_id: a.id, protocol: 'tcp', port_range_min: 22, port_range_max: 22 }, fresh.token);

    const byName = (await net.get('/v2.0/security-groups?name=beta', fresh.token)).body.security_groups;
    assert.deepEqual(byName.map((g: any) => g.id), [b.id]);
    const sorted = (await net.get('/v2.0/security-groups?sort_key=name&sort_dir=desc', fresh.token)).body.security_groups.map((g: any) => g.name);
    assert.deepEqual(sorted, ['default', 'beta', 'alpha']);
    const fields = (await net.get('/v2.0/security-groups?fields=id&fields=name&name=alpha', fresh.token)).body.security_groups;
    assert.deepEqual(fields, [{ id: a.id, name: 'alpha' }]);
    const shownFields = (await net.get(`/v2.0/security-groups/${a.id}?fields=stateful`, fresh.token)).body.security_group;
    assert.deepEqual(shownFields, { stateful: true });

    const page = await net.get('/v2.0/security-groups?limit=2&sort_key=name&sort_dir=asc', fresh.token);
    assert.deepEqual(page.body.security_groups.map((g: any) => g.name), ['alpha', 'beta']);
    const next = page.body.security_groups_links.find((l: any) => l.rel === 'next');
    assert.ok(next, page.text);
    const rest = await net.get(new URL(next.href).pathname.replace(/^\/networking/, '') + new URL(next.href).search, fresh.token);
    assert.deepEqual(rest.body.security_groups.map((g: any) => g.name), ['default']);

    const ingressTcp = (await net.get(`/v2.0/security-group-rules?security_group_id=${a.id}&direction=ingress&protocol=tcp`, fresh.token)).body.security_group_rules;
    assert.equal(ingressTcp.length, 1);
    assert.equal(ingressTcp[0].port_range_min, 22);
    const egressOfA = (await net.get(`/v2.0/security-group-rules?security_group_id=${a.id}&direction=egress&fields=ethertype`, fresh.token)).body.security_group_rules;
    assert.deepEqual(egressOfA.map((r: any) => r.ethertype).sort(), ['IPv4', 'IPv6']);
    const defaults = (await net.get('/v2.0/security-group-rules?belongs_to_default_sg=true', fresh.token)).body.security_group_rules;
    assert.equal(defaults.length, 4);
  });

  it('counts groups and rules against the project quotas', async () => {
    const fresh = await net.projectUser(name('quota'));
    await net.cloud.network.services.quotas.update(fresh.projectId, { security_group: 2, security_group_rule: 9 });
    // The default group (made first, with 4 rules) counts: one more group fits.
    const group = await createGroup({}, fresh.token);
    assertNeutronError(await net.post('/v2.0/security-groups', { security_group: { name: 'over' } }, fresh.token), 409, 'OverQuota', "Quota exceeded for resources: ['security_group'].");
    // 4 default + 2 egress rules: three more rules fit, not four.
    assertNeutronError(await net.post('/v2.0/security-group-rules', { security_group_rules: [80, 81, 82, 83].map((port) => (
      { security_group_id: group.id, direction: 'ingress', protocol: 'tcp', port_range_min: port, port_range_max: port })) }, fresh.token),
    409, 'OverQuota', "Quota exceeded for resources: ['security_group_rule'].");
    for (const port of [80, 81, 82]) await rule({ security_group_id: group.id, protocol: 'tcp', port_range_min: port, port_range_max: port }, fresh.token);
    assertNeutronError(await createRule({ security_group_id: group.id, protocol: 'tcp', port_range_min: 83, port_range_max: 83 }, fresh.token), 409, 'OverQuota');
  });

  it('lists the extensions it serves', async () => {
    const res = await net.get('/v2.0/extensions', net.demoToken);
    assert.equal(res.status, 200);
    const aliases = res.body.extensions.map((e: any) => e.alias);
    for (const alias of ['security-group', 'stateful-security-group', 'security-groups-normalized-cidr', 'security-groups-rules-belongs-to-default-sg']) {
      assert.ok(aliases.includes(alias), alias);
    }
    assert.ok(!aliases.includes('security-groups-remote-address-group'));
    const one = await net.get('/v2.0/extensions/security-group', net.demoToken);
    assert.equal(one.body.extension.name, 'security-group');
  });

  it('tells the agent of a port\'s host when its groups\' rules change', async () => {
    // A second server on the host's agent topic: the bus shares casts between servers round-robin.
    const setups: SecurityGroupSetup[] = [];
    const quiet = async () => undefined;
    const listener = await net.cloud.bus.serve(networkAgentTopic('fake-host-1'), {
      plugPort: quiet, unplugPort: quiet, setupDhcp: quiet, setupRouter: quiet, removeRouter: quiet,
      applySecurityGroups: async (setup: unknown) => { setups.push(setup as SecurityGroupSetup); },
    });
    try {
      const network = await net.nc.network({ name: name('bound') });
      const group = await createGroup({});
      const port = await net.nc.port(network.id, { security_groups: [group.id], 'binding:host_id': 'fake-host-1' });
      for (let attempt = 0; attempt < 6; attempt++) {
        const added = await rule({ security_group_id: group.id, protocol: 'tcp', port_range_min: 1000 + attempt, port_range_max: 1000 + attempt });
        const deadline = Date.now() + 2000;
        let seen: SecurityGroupSetup | undefined;
        while (!seen && Date.now() < deadline) {
          seen = setups.find((s) => s.rules.some((r) => r.id === added.id));
          if (!seen) await sleep(20);
        }
        if (!seen) continue; // that cast went to the host's own agent
        assert.ok(seen.ports.some((p) => p.id === port.id && p.securityGroups.includes(group.id)), JSON.stringify(seen.ports));
        const sent = seen.rules.find((r) => r.id === added.id)!;
        assert.deepEqual([sent.securityGroupId, sent.direction, sent.protocol, sent.portRangeMin, sent.portRangeMax], [group.id, 'ingress', 'tcp', 1000 + attempt, 1000 + attempt]);
        return;
      }
      assert.fail(`no applySecurityGroups with a new rule reached the listener (${setups.length} setups)`);
    } finally {
      await listener.close();
    }
  });

  it('serves the other areas: ensureDefault, resolve, rulesOf', async () => {
    const service = net.cloud.network.services.securityGroups;
    const fresh = await net.projectUser(name('contract'));
    const [first, second] = await Promise.all([service.ensureDefault(fresh.projectId), service.ensureDefault(fresh.projectId)]);
    assert.equal(first, second);
    const web = await createGroup({ name: 'web' }, fresh.token);
    const caller = { projectId: fresh.projectId, isAdmin: false };
    assert.deepEqual(await service.resolve(caller, ['default', 'web', web.id], fresh.projectId), [first, web.id]);
    await assert.rejects(service.resolve(caller, ['nope'], fresh.projectId), (err: any) => err.status === 404 && err.message === 'Security group nope does not exist');
    const adminGroup = await createGroup({}, net.adminToken);
    await assert.rejects(service.resolve(caller, [adminGroup.id], fresh.projectId), (err: any) => err.status === 404);
    assert.deepEqual(await service.resolve({ projectId: net.adminProject, isAdmin: true }, [adminGroup.id], fresh.projectId), [adminGroup.id]);
    await createGroup({ name: 'web' }, fresh.token);
    await assert.rejects(service.resolve(caller, ['web'], fresh.projectId), (err: any) => err.status === 409);

    const rules = await service.rulesOf([first, web.id]);
    assert.equal(rules.length, 6);
    assert.equal(rules.filter((r) => r.securityGroupId === first && r.direction === 'ingress' && r.remoteGroupId === first).length, 2);
  });
});

// What depends on the engine: a unique index deciding races inside transactions (PostgreSQL aborts
// the transaction on the violation; MariaDB reports ER_DUP_ENTRY), and all-or-nothing bulk writes.
for (const engine of testEngines().filter((e) => e.engine !== 'sqlite')) {
  describe(`network security groups on ${engine.engine}`, { skip: engine.skip }, () => {
    let net: Net;
    let database: Awaited<ReturnType<typeof engine.create>>;
    before(async () => {
      database = await engine.create();
      net = await startNet(database.connection);
    });
    after(async () => {
      await net?.close();
      await database?.drop();
    });

    it('makes one default group under concurrent first use, and refuses concurrent duplicate rules', async () => {
      const fresh = await net.projectUser(`engine-${engine.engine}`);
      const firstUse = await Promise.all(Array.from({ length: 8 }, () => net.get('/v2.0/security-groups', fresh.token)));
      for (const res of firstUse) assert.equal(res.status, 200, res.text);
      const groups = (await net.get('/v2.0/security-groups', fresh.token)).body.security_groups;
      assert.equal(groups.length, 1);
      assert.equal(groups[0].security_group_rules.length, 4);

      const sg = groups[0].id;
      const answers = await Promise.all(Array.from({ length: 8 }, () => net.post('/v2.0/security-group-rules',
        { security_group_rule: { security_group_id: sg, direction: 'ingress', protocol: 'tcp', port_range_min: 22, port_range_max: 22 } }, fresh.token)));
      const won = answers.filter((a) => a.status === 201);
      assert.equal(won.length, 1, answers.map((a) => a.text).join('\n'));
      for (const lost of answers.filter((a) => a.status !== 201)) {
        assertNeutronError(lost, 409, 'SecurityGroupRuleExists', `Security group rule already exists. Rule id is ${won[0].body.security_group_rule.id}.`);
      }
    });

    it('makes one default group when ports being made in several transactions ask for it at once', async () => {
      const project = `engine-trx-${engine.engine}`;
      // As ports.ts runs them: a transaction MariaDB picks as a deadlock victim is run again.
      const ids = await Promise.all(Array.from({ length: 6 }, () => retryingTransaction(net.cloud.database,
        (trx) => net.cloud.network.services.securityGroups.ensureDefault(project, trx))));
      assert.equal(new Set(ids).size, 1, ids.join(', '));
      const rows = await net.cloud.database.db.selectFrom('network_security_groups').select('id').where('project_id', '=', project).execute();
      assert.deepEqual(rows.map((r) => r.id), [ids[0]]);
      const rules = await net.cloud.network.services.securityGroups.rulesOf([ids[0]]);
      assert.equal(rules.length, 4);
    });

    it('writes a bulk create wholly or not at all, and deletes a group with the rules that name it', async () => {
      const group = (await net.post('/v2.0/security-groups', { security_group: { name: 'bulk' } }, net.demoToken)).body.security_group;
      const refused = await net.post('/v2.0/security-group-rules', { security_group_rules: [
        { security_group_id: group.id, direction: 'ingress', protocol: 'tcp', port_range_min: 80, port_range_max: 80 },
        { security_group_id: group.id, direction: 'egress', ethertype: 'IPv4' },
      ] }, net.demoToken);
      assertNeutronError(refused, 409, 'SecurityGroupRuleExists');
      const rules = (await net.get(`/v2.0/security-group-rules?security_group_id=${group.id}`, net.demoToken)).body.security_group_rules;
      assert.equal(rules.length, 2);

      const other = (await net.post('/v2.0/security-groups', { security_group: { name: 'other' } }, net.demoToken)).body.security_group;
      const referring = await net.post('/v2.0/security-group-rules', { security_group_rule: { security_group_id: other.id, direction: 'ingress', remote_group_id: group.id } }, net.demoToken);
      assert.equal(referring.status, 201, referring.text);
      assert.equal((await net.delete(`/v2.0/security-groups/${group.id}`, net.demoToken)).status, 204);
      assert.equal((await net.get(`/v2.0/security-group-rules/${referring.body.security_group_rule.id}`, net.demoToken)).status, 404);
    });
  });
}
