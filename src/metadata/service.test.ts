import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Instance } from '../compute/instances.js';
import type { InstanceVif } from '../compute/rpc.js';
import { ec2Metadata, lookup, netmaskOf, networkData, openstackMetaData, type InstanceMetadata } from './service.js';

const vif = (over: Partial<InstanceVif> = {}): InstanceVif => ({
  portId: '5f1e7c2a-9b3d-4e6f-8a1b-2c3d4e5f6a7b', networkId: 'net-1', macAddress: 'fa:16:3e:00:00:01', mtu: 1450, vifType: 'ovs', vifDetails: {},
  fixedIps: [
    { subnetId: 's4', ipAddress: '10.0.0.5', version: 4, cidr: '10.0.0.0/24', gatewayIp: '10.0.0.1', dnsNameservers: ['8.8.8.8'], enableDhcp: false },
    { subnetId: 's6', ipAddress: 'fd00::5', version: 6, cidr: 'fd00::/64', gatewayIp: 'fd00::1', dnsNameservers: [], enableDhcp: false },
  ],
  ...over,
});

function metadata(over: Partial<InstanceMetadata> = {}): InstanceMetadata {
  const instance = {
    id: '0b5b6e58-3a4f-4d0e-9c71-1f2e3d4c5b6a', name: 'web', projectId: 'p1', userId: 'u1', hostname: 'web', imageRef: 'c0ffee00-1111-2222-3333-444455556666',
    reservationId: 'r-abc', launchIndex: 0, flavor: { id: '1', name: 'm1.tiny', vcpus: 1, memoryMb: 512, rootGb: 1, ephemeralGb: 0, swapMb: 0, extraSpecs: {} },
    metadata: { role: 'web' }, request: { securityGroups: ['default'], personality: [] },
  } as unknown as Instance;
  return {
    instance, hostname: 'web.novalocal', availabilityZone: 'nova', securityGroups: ['default', 'web'], blockDeviceMapping: { ami: 'vda', root: '/dev/vda' },
    userData: Buffer.from('#!/bin/sh\necho hi\n'), keypair: { name: 'k1', type: 'ssh', data: 'ssh-ed25519 AAAA k1' }, password: '', vifs: [], vendorData: {}, files: [], ...over,
  };
}

test('netmaskOf: IPv4 dotted quads and compressed IPv6 masks', () => {
  assert.equal(netmaskOf('10.0.0.0/24', 4), '255.255.255.0');
  assert.equal(netmaskOf('10.0.0.0/0', 4), '0.0.0.0');
  assert.equal(netmaskOf('10.0.0.8/29', 4), '255.255.255.248');
  assert.equal(netmaskOf('fd00::/64', 6), 'ffff:ffff:ffff:ffff::');
  assert.equal(netmaskOf('fd00::/128', 6), 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff');
  assert.equal(netmaskOf('fd00::/56', 6), 'ffff:ffff:ffff:ff00::');
});

test('networkData renders links, static networks with routes and DNS services as Nova does', () => {
  const data = networkData([vif(), vif({ portId: 'aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee', networkId: 'net-2', vifType: 'unbound', macAddress: 'fa:16:3e:00:00:02',
    fixedIps: [{ subnetId: 's', ipAddress: '192.168.1.9', version: 4, cidr: '192.168.1.0/24', gatewayIp: null, dnsNameservers: ['8.8.8.8', '1.1.1.1'], enableDhcp: true }] }),
  vif({ portId: 'no-ips', fixedIps: [] })]);
  assert.deepEqual(data.links, [
    { id: 'tap5f1e7c2a-9b', vif_id: '5f1e7c2a-9b3d-4e6f-8a1b-2c3d4e5f6a7b', type: 'ovs', mtu: 1450, ethernet_mac_address: 'fa:16:3e:00:00:01' },
    { id: 'tapaaaaaaaa-bb', vif_id: 'aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee', type: 'phy', mtu: 1450, ethernet_mac_address: 'fa:16:3e:00:00:02' },
  ]);
  assert.deepEqual(data.networks, [
    { id: 'network1', type: 'ipv4', link: 'tap5f1e7c2a-9b', ip_address: '10.0.0.5', netmask: '255.255.255.0', network_id: 'net-1',
      routes: [{ network: '0.0.0.0', netmask: '0.0.0.0', gateway: '10.0.0.1' }], services: [{ type: 'dns', address: '8.8.8.8' }] },
    { id: 'network2', type: 'ipv6', link: 'tap5f1e7c2a-9b', ip_address: 'fd00::5', netmask: 'ffff:ffff:ffff:ffff::', network_id: 'net-1',
      routes: [{ network: '::', netmask: '::', gateway: 'fd00::1' }], services: [] },
    { id: 'network3', type: 'ipv4_dhcp', link: 'tapaaaaaaaa-bb', network_id: 'net-2' },
  ]);
  assert.deepEqual(data.services, [{ type: 'dns', address: '8.8.8.8' }, { type: 'dns', address: '1.1.1.1' }]);
  assert.deepEqual(networkData([]), { links: [], networks: [], services: [] });
});

test('meta_data.json keys follow the version asked for', () => {
  const md = metadata();
  const folsom = openstackMetaData(md, '2012-08-10', 'seed');
  assert.deepEqual(Object.keys(folsom).sort(), ['availability_zone', 'hostname', 'keys', 'launch_index', 'meta', 'name', 'public_keys', 'uuid']);
  const latest = openstackMetaData(md, '2020-10-14', 'seed');
  assert.deepEqual(latest, {
    uuid: md.instance.id, meta: { role: 'web' }, public_keys: { k1: 'ssh-ed25519 AAAA k1' }, keys: [{ name: 'k1', type: 'ssh', data: 'ssh-ed25519 AAAA k1' }],
    hostname: 'web.novalocal', name: 'web', launch_index: 0, availability_zone: 'nova', random_seed: 'seed', project_id: 'p1', devices: [], dedicated_cpus: [],
  });
  const noKey = openstackMetaData(metadata({ keypair: null, instance: { ...md.instance, metadata: {} } }), '2020-10-14', 's');
  assert.ok(!('public_keys' in noKey) && !('keys' in noKey) && !('meta' in noKey));
});

test('EC2 tree: listings, the public-keys quirk, version-dependent keys', () => {
  const md = metadata();
  const get = (path: string) => lookup(md, path).body;
  assert.equal(get('/'), '1.0\n2007-01-19\n2007-03-01\n2007-08-29\n2007-10-10\n2007-12-15\n2008-02-01\n2008-09-01\n2009-04-04\nlatest');
  assert.equal(get('/latest'), 'meta-data/\nuser-data');
  assert.equal(get('/latest/meta-data/'), ['ami-id', 'ami-launch-index', 'ami-manifest-path', 'block-device-mapping/', 'hostname', 'instance-action', 'instance-id',
    'instance-type', 'local-hostname', 'local-ipv4', 'placement/', 'public-hostname', 'public-ipv4', 'public-keys/', 'reservation-id', 'security-groups'].join('\n'));
  assert.equal(get('/latest/meta-data/public-keys/'), '0=k1');
  assert.equal(get('/latest/meta-data/public-keys/0'), 'openssh-key');
  assert.equal(get('/latest/meta-data/public-keys/0/openssh-key'), 'ssh-ed25519 AAAA k1');
  assert.equal(get('/latest/meta-data/security-groups'), 'default\nweb');
  assert.equal(get('/latest/meta-data/instance-id'), 'i-0b5b6e58');
  assert.equal(get('/latest/meta-data/ami-id'), 'ami-c0ffee00');
  assert.equal(get('/latest/meta-data/ami-launch-index'), '0');
  assert.equal(get('/latest/meta-data/placement/availability-zone'), 'nova');
  assert.equal(get('/latest/meta-data/block-device-mapping/'), 'ami\nroot');
  assert.equal(get('/latest/user-data'), '#!/bin/sh\necho hi\n');
  assert.equal(get('/1.0/meta-data/'), ['ami-id', 'ami-launch-index', 'ami-manifest-path', 'hostname', 'instance-id', 'local-ipv4', 'public-keys/', 'reservation-id', 'security-groups'].join('\n'));
  assert.throws(() => lookup(md, '/latest/meta-data/nothing'));
  assert.throws(() => lookup(md, '/2010-01-01/meta-data/'));
  assert.throws(() => lookup(md, '/latest/meta-data/public-keys/0/_name'));
  assert.ok(!('user-data' in ec2Metadata(metadata({ userData: null }), 'latest')));
});

test('OpenStack tree: versions, per-version listing and 404s', () => {
  const md = metadata();
  const get = (path: string) => lookup(md, path);
  assert.equal(get('/openstack').body, '2012-08-10\n2013-04-04\n2013-10-17\n2015-10-15\n2016-06-30\n2016-10-06\n2017-02-22\n2018-08-27\n2020-10-14\nlatest');
  assert.equal(get('/openstack/latest/').body, 'meta_data.json\nuser_data\npassword\nvendor_data.json\nnetwork_data.json\nvendor_data2.json');
  assert.equal(get('/openstack/2012-08-10').body, 'meta_data.json\nuser_data');
  assert.equal(lookup(metadata({ userData: null }), '/openstack/2013-10-17').body, 'meta_data.json\npassword\nvendor_data.json');
  assert.equal(get('/openstack/latest/meta_data.json').contentType, 'application/json');
  assert.equal(JSON.parse(get('/openstack/latest/meta_data.json').body).random_seed.length, 684);
  assert.equal(get('/openstack/latest/vendor_data.json').body, '{}');
  assert.equal(get('/openstack/latest/vendor_data2.json').body, '{"static":{}}');
  const vendor = metadata({ vendorData: { corp: { puppet: 'puppet.example' } } });
  assert.deepEqual(JSON.parse(lookup(vendor, '/openstack/latest/vendor_data.json').body), { corp: { puppet: 'puppet.example' } });
  assert.deepEqual(JSON.parse(lookup(vendor, '/openstack/latest/vendor_data2.json').body), { static: { corp: { puppet: 'puppet.example' } } });
  assert.throws(() => get('/openstack/2015-10-15/vendor_data2.json'));
  assert.throws(() => get('/openstack/2012-08-10/vendor_data.json'));
  assert.throws(() => get('/openstack/2099-01-01/meta_data.json'));
  assert.throws(() => get('/openstack/content/0000'));
  assert.throws(() => lookup(metadata({ userData: null }), '/openstack/latest/user_data'));
  const binary = lookup(metadata({ userData: Buffer.from([0x1f, 0x8b, 0xff]) }), '/openstack/latest/user_data');
  assert.equal(binary.encoding, 'base64');
  assert.deepEqual(Buffer.from(binary.body, 'base64'), Buffer.from([0x1f, 0x8b, 0xff]));
});
