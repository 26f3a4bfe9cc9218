// Compatibility of the networking service (Neutron v2.0) and of servers' ports with Debian's
// real `openstack` CLI: one `nubo up` cloud with two fake compute hosts (each with its no-op
// network agent), driven command by command as an operator sets up a project network, SSH and
// ping rules, a router to an external network, a server with two NICs and a floating IP.
// Tests run in order and build on each other.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { openstack, openstackCliSkipReason, openstackFails, openstackJson, openstackOk, startCloud, type Cloud, type Env } from '../support/cloud.js';

const skip = openstackCliSkipReason();
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('openstack CLI: network', { skip, concurrency: 1 }, () => {
  let cloud: Cloud;
  let admin: Env;
  let demo: Env;
  let demoMv: Env;
  let work: string;
  let imageId = '';
  const tag = `n${process.pid.toString(36)}`;
  const name = (what: string) => `cli-${tag}-${what}`;
  const json = <T = any>(env: Env, args: string[]) => openstackJson<T>(env, args);
  /** ids of what later tests use */
  const ids: Record<string, string> = {};

  before(async () => {
    if (skip) return;
    work = mkdtempSync(join(tmpdir(), 'nubo-network-cli-'));
    cloud = await startCloud({ env: { NUBO_COMPUTE__FAKE_HOSTS: '2', NUBO_COMPUTE__DRIVER: 'fake' } });
    admin = cloud.adminEnv;
    demo = cloud.demoEnv;
    const endpoints = await json<Array<{ URL: string }>>(admin, ['endpoint', 'list', '--service', 'compute', '--interface', 'public']);
    const doc = (await (await fetch(endpoints[0]!.URL.replace(/\/$/, ''), { headers: { accept: 'application/json' } })).json()) as { version: { version: string } };
    demoMv = { ...demo, OS_COMPUTE_API_VERSION: doc.version.version };
    const disk = join(work, 'disk.raw');
    writeFileSync(disk, Buffer.alloc(1 << 20));
    imageId = (await json(admin, ['image', 'create', '--file', disk, '--disk-format', 'raw', '--container-format', 'bare', '--public', name('img')])).id;
  });
  after(async () => {
    await cloud?.stop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('network create / show / list / set / delete', async () => {
    const created = await json(demo, ['network', 'create', '--description', 'project net', name('net')]);
    ids.net = created.id;
    assert.equal(created.name, name('net'));
    assert.equal(created.status, 'ACTIVE');
    assert.equal(created.mtu, 1450, 'a project network is a vxlan network');
    const shown = await json(demo, ['network', 'show', name('net')]);
    assert.equal(shown.id, created.id);
    assert.equal(shown.description, 'project net');
    const listed = await json<Array<{ ID: string; Name: string }>>(demo, ['network', 'list']);
    assert.ok(listed.some((n) => n.ID === created.id));
    await openstackOk(demo, ['network', 'set', '--name', name('net2'), '--description', 'renamed', created.id]);
    assert.equal((await json(demo, ['network', 'show', created.id])).name, name('net2'));
    await openstackOk(demo, ['network', 'set', '--name', name('net'), created.id]);
    const scratch = await json(demo, ['network', 'create', name('scratch')]);
    await openstackOk(demo, ['network', 'delete', scratch.id]);
    await openstackFails(demo, ['network', 'show', scratch.id], /No Network found|could not be found|404/i);
  });

  it('admin networks: --external, --share, provider vlan on physnet1', async () => {
    const external = await json(admin, ['network', 'create', '--external', '--share', name('ext')]);
    ids.ext = external.id;
    assert.ok(external['router:external'] === true || external['router:external'] === 'External', JSON.stringify(external));
    assert.equal(external.shared, true);
    const vlan = await json(admin, ['network', 'create', '--provider-network-type', 'vlan', '--provider-physical-network', 'physnet1', '--provider-segment', '100', name('vlan')]);
    assert.equal(vlan['provider:network_type'], 'vlan');
    assert.equal(vlan['provider:physical_network'], 'physnet1');
    assert.equal(vlan['provider:segmentation_id'], 100);
    await openstackFails(admin, ['network', 'create', '--provider-network-type', 'vlan', '--provider-physical-network', 'physnet1', '--provider-segment', '100', name('vlan-dup')], /409|in use|already/i);
    await openstackOk(admin, ['network', 'delete', vlan.id]);
    await openstackFails(demo, ['network', 'create', '--provider-network-type', 'vlan', '--provider-physical-network', 'physnet1', '--provider-segment', '101', name('no')], /403|not allowed|Policy/i);
  });

  it('subnet create: IPv4 with pool, gateway and DNS; IPv6 SLAAC; the external subnet', async () => {
    const v4 = await json(demo, ['subnet', 'create', '--network', ids.net, '--subnet-range', '10.50.0.0/24', '--allocation-pool', 'start=10.50.0.10,end=10.50.0.100',
      '--gateway', '10.50.0.1', '--dns-nameserver', '192.0.2.53', name('sub4')]);
    ids.sub4 = v4.id;
    assert.equal(v4.cidr, '10.50.0.0/24');
    assert.equal(v4.gateway_ip, '10.50.0.1');
    assert.equal(v4.ip_version, 4);
    assert.match(JSON.stringify(v4.allocation_pools), /10\.50\.0\.10.*10\.50\.0\.100/);
    assert.match(JSON.stringify(v4.dns_nameservers), /192\.0\.2\.53/);
    const v6 = await json(demo, ['subnet', 'create', '--network', ids.net, '--ip-version', '6', '--subnet-range', 'fd00:50::/64',
      '--ipv6-ra-mode', 'slaac', '--ipv6-address-mode', 'slaac', name('sub6')]);
    assert.equal(v6.ip_version, 6);
    assert.equal(v6.ipv6_ra_mode, 'slaac');
    assert.equal(v6.ipv6_address_mode, 'slaac');
    const ext = await json(admin, ['subnet', 'create', '--network', ids.ext, '--subnet-range', '203.0.113.0/24', '--no-dhcp', name('extsub')]);
    assert.equal(ext.enable_dhcp, false);
  });

  it('port create --fixed-ip / list / delete', async () => {
    const created = await json(demo, ['port', 'create', '--network', ids.net, '--fixed-ip', `subnet=${ids.sub4},ip-address=10.50.0.20`, name('port')]);
    ids.port = created.id;
    assert.match(JSON.stringify(created.fixed_ips), /10\.50\.0\.20/);
    assert.match(JSON.stringify(created.fixed_ips), /fd00:50::/, 'the SLAAC subnet gives its address too');
    const listed = await json<Array<{ ID: string }>>(demo, ['port', 'list', '--network', ids.net]);
    assert.ok(listed.some((p) => p.ID === created.id));
    const scratch = await json(demo, ['port', 'create', '--network', ids.net, name('scratch-port')]);
    await openstackOk(demo, ['port', 'delete', scratch.id]);
    await openstackFails(demo, ['port', 'create', '--network', ids.net, '--fixed-ip', `subnet=${ids.sub4},ip-address=10.50.0.20`, name('dup')], /409|already allocated|in use/i);
  });

  it('security group create; rules for ping and SSH', async () => {
    const group = await json(demo, ['security', 'group', 'create', name('sg')]);
    ids.sg = group.id;
    const icmp = await json(demo, ['security', 'group', 'rule', 'create', '--proto', 'icmp', group.id]);
    assert.equal(icmp.protocol, 'icmp');
    assert.equal(icmp.direction, 'ingress');
    const ssh = await json(demo, ['security', 'group', 'rule', 'create', '--proto', 'tcp', '--dst-port', '22', group.id]);
    assert.equal(ssh.port_range_min, 22);
    assert.equal(ssh.port_range_max, 22);
    await openstackFails(demo, ['security', 'group', 'rule', 'create', '--proto', 'tcp', '--dst-port', '22', group.id], /409|already exists/i);
    const rules = await json<Array<{ ID: string }>>(demo, ['security', 'group', 'rule', 'list', group.id]);
    assert.ok(rules.length >= 4, 'two egress rules plus ours');
  });

  it('network agent list shows each host\'s agent alive; quota show has the network fields', async () => {
    let agents: Array<Record<string, unknown>> = [];
    for (let i = 0; i < 20; i++) {
      agents = await json(admin, ['network', 'agent', 'list']);
      if (agents.length >= 2) break;
      await sleep(250);
    }
    const hosts = agents.map((a) => a.Host).sort();
    assert.deepEqual(hosts, ['fake-host-1', 'fake-host-2']);
    assert.ok(agents.every((a) => a.Alive === true || a.Alive === ':-)'), JSON.stringify(agents));
    const result = await openstack(admin, ['quota', 'show', 'demo', '-f', 'json']);
    assert.equal(result.code, 0, result.stderr);
    const parsed = JSON.parse(result.stdout);
    const quota = Array.isArray(parsed) ? Object.fromEntries(parsed.map((row: any) => [row.Resource, row.Limit])) : parsed;
    for (const field of ['networks', 'subnets', 'ports', 'routers', 'floating-ips', 'secgroups', 'secgroup-rules']) {
      assert.ok(field in quota, `quota show has ${field}: ${result.stdout}`);
    }
    assert.equal(quota.ports, 500);
    assert.equal(quota.routers, 10);
  });

  describe('servers with ports', { concurrency: 1 }, () => {
    it('server create --nic net-id=... --nic port-id=... --wait: addresses from both ports', async () => {
      const server = await json(demoMv, ['server', 'create', '--flavor', 'm1.tiny', '--image', imageId, '--nic', `net-id=${ids.net}`, '--nic', `port-id=${ids.port}`, '--wait', name('vm')]);
      ids.server = server.id;
      assert.equal(server.status, 'ACTIVE');
      const shown = await json(demoMv, ['server', 'show', server.id]);
      const addresses = JSON.stringify(shown.addresses);
      assert.match(addresses, /10\.50\.0\.20/, addresses);
      assert.match(addresses, new RegExp(name('net')));
      const ports = await json<Array<{ ID: string; 'Fixed IP Addresses': unknown; Status: string }>>(demo, ['port', 'list', '--server', server.id]);
      assert.equal(ports.length, 2);
      const userPort = await json(demo, ['port', 'show', ids.port]);
      assert.equal(userPort.device_id, server.id);
      assert.match(String(userPort.device_owner), /^compute:/);
    });

    it('server add / remove security group', async () => {
      await openstackOk(demoMv, ['server', 'add', 'security', 'group', ids.server, name('sg')]);
      let shown = await json(demoMv, ['server', 'show', ids.server]);
      assert.match(JSON.stringify(shown.security_groups), new RegExp(name('sg')));
      const port = await json(demo, ['port', 'show', ids.port]);
      assert.match(JSON.stringify(port.security_group_ids), new RegExp(ids.sg));
      await openstackOk(demoMv, ['server', 'remove', 'security', 'group', ids.server, name('sg')]);
      shown = await json(demoMv, ['server', 'show', ids.server]);
      assert.doesNotMatch(JSON.stringify(shown.security_groups), new RegExp(name('sg')));
      await openstackFails(demoMv, ['server', 'remove', 'security', 'group', ids.server, name('sg')], /not in server|400/i);
    });
  });

  // Routers and floating IPs (the L3 area).
  describe('routers and floating IPs', { concurrency: 1 }, () => {
    it('router create, set --external-gateway, add subnet', async () => {
      const router = await json(demo, ['router', 'create', name('router')]);
      ids.router = router.id;
      await openstackOk(demo, ['router', 'set', '--external-gateway', ids.ext, router.id]);
      await openstackOk(demo, ['router', 'add', 'subnet', router.id, ids.sub4]);
      const shown = await json(demo, ['router', 'show', router.id]);
      assert.match(JSON.stringify(shown.external_gateway_info), new RegExp(ids.ext));
      assert.match(JSON.stringify(shown.external_gateway_info), /203\.0\.113\./);
      const ports = await json<Array<{ ID: string }>>(demo, ['port', 'list', '--router', router.id]);
      assert.ok(ports.length >= 1);
    });

    it('floating ip create, set --port, unset --port', async () => {
      const fip = await json(demo, ['floating', 'ip', 'create', ids.ext]);
      ids.fip = fip.id;
      assert.match(fip.floating_ip_address, /^203\.0\.113\./);
      await openstackOk(demo, ['floating', 'ip', 'set', '--port', ids.port, fip.id]);
      let shown = await json(demo, ['floating', 'ip', 'show', fip.id]);
      assert.equal(shown.port_id, ids.port);
      assert.equal(shown.fixed_ip_address, '10.50.0.20');
      const server = await json(demoMv, ['server', 'show', ids.server]);
      assert.match(JSON.stringify(server.addresses), new RegExp(fip.floating_ip_address.replace(/\./g, '\\.')), 'a floating IP shows in the server\'s addresses');
      await openstackOk(demo, ['floating', 'ip', 'unset', '--port', fip.id]);
      shown = await json(demo, ['floating', 'ip', 'show', fip.id]);
      assert.equal(shown.port_id, null);
    });

    it('server add floating ip', async () => {
      const fip = await json(demo, ['floating', 'ip', 'create', ids.ext]);
      await openstackOk(demoMv, ['server', 'add', 'floating', 'ip', ids.server, fip.floating_ip_address]);
      const shown = await json(demo, ['floating', 'ip', 'show', fip.id]);
      assert.ok([ids.port, ...(await json<Array<{ ID: string }>>(demo, ['port', 'list', '--server', ids.server])).map((p) => p.ID)].includes(shown.port_id));
      const server = await json(demoMv, ['server', 'show', ids.server]);
      assert.match(JSON.stringify(server.addresses), new RegExp(fip.floating_ip_address.replace(/\./g, '\\.')));
    });

    it('server delete frees the port Nova made and keeps the user\'s', async () => {
      const before = await json<Array<{ ID: string }>>(demo, ['port', 'list', '--server', ids.server]);
      await openstackOk(demoMv, ['server', 'delete', '--wait', ids.server]);
      const made = before.map((p) => p.ID).filter((id) => id !== ids.port);
      for (const id of made) await openstackFails(demo, ['port', 'show', id], /No Port found|could not be found|404/i);
      const kept = await json(demo, ['port', 'show', ids.port]);
      assert.equal(kept.device_id, '');
    });
  });
});
