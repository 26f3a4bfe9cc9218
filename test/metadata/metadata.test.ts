// The metadata service end to end: the real cloud in-process (fake hypervisor), servers booted
// through the API, and guest requests sent the way QEMU's guestfwd sends them: HTTP over each
// instance's own unix socket, answered by the agent-side proxy through the bus.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { startMetadataProxy, writeConfigDrive, metadataClient, type MetadataProxy } from '../../src/metadata/index.js';
import { NotFound } from '../../src/core/errors.js';
import { startComputeCloud, type ComputeCloud } from '../compute/harness.js';

interface GuestAnswer { status: number; contentType: string; body: Buffer; text: string }

/** One HTTP request over a unix socket, as a guest's wget arrives through socat. */
function guest(socketPath: string, path: string, method = 'GET', body?: string): Promise<GuestAnswer> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, path, method, headers: { Host: '169.254.169.254' } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const data = Buffer.concat(chunks);
        resolve({ status: res.statusCode!, contentType: String(res.headers['content-type'] ?? ''), body: data, text: data.toString('utf8') });
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

let cc: ComputeCloud;
let dir: string;
let keypair: { name: string; public_key: string };
let serverA: any;
let serverB: any;
let proxyA: MetadataProxy;
let proxyB: MetadataProxy;
const userDataA = '#cloud-config\nhostname: alpha\n';
const vendorData = { corp: { ntp: 'ntp.example' } };

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'nubo-metadata-test-'));
  writeFileSync(join(dir, 'vendor.json'), JSON.stringify(vendorData));
  cc = await startComputeCloud({ api: { vendordata_jsonfile_path: join(dir, 'vendor.json') } }, 1);
  const created = await cc.post('/os-keypairs', { keypair: { name: 'mdkey' } });
  assert.equal(created.status, 200, created.text);
  keypair = created.body.keypair;
  const image = await cc.createImage();
  serverA = await cc.bootActive({ name: 'alpha', imageRef: image, key_name: 'mdkey', user_data: Buffer.from(userDataA).toString('base64'), metadata: { role: 'web', tier: '1' } });
  serverB = await cc.bootActive({ name: 'beta', imageRef: image });
  proxyA = await startMetadataProxy({ bus: cc.cloud.bus, uuid: serverA.id, socketPath: join(dir, 'a-metadata.sock') });
  proxyB = await startMetadataProxy({ bus: cc.cloud.bus, uuid: serverB.id, socketPath: join(dir, 'b-metadata.sock') });
});

after(async () => {
  await proxyA?.close();
  await proxyB?.close();
  await cc?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('each socket answers for its own instance only: meta_data.json, user data and EC2 ids differ', async () => {
  const a = await guest(proxyA.socketPath, '/openstack/latest/meta_data.json');
  assert.equal(a.status, 200);
  assert.match(a.contentType, /^application\/json/);
  const metaA = JSON.parse(a.text);
  assert.equal(metaA.uuid, serverA.id);
  assert.equal(metaA.name, 'alpha');
  assert.equal(metaA.hostname, 'alpha.novalocal');
  assert.equal(metaA.launch_index, 0);
  assert.equal(metaA.availability_zone, 'nova');
  assert.equal(metaA.project_id, cc.adminProject);
  assert.deepEqual(metaA.meta, { role: 'web', tier: '1' });
  assert.deepEqual(metaA.public_keys, { mdkey: keypair.public_key });
  assert.deepEqual(metaA.keys, [{ name: 'mdkey', type: 'ssh', data: keypair.public_key }]);
  assert.deepEqual(metaA.devices, []);
  assert.deepEqual(metaA.dedicated_cpus, []);
  assert.equal(Buffer.from(metaA.random_seed, 'base64').length, 512);

  const metaB = JSON.parse((await guest(proxyB.socketPath, '/openstack/latest/meta_data.json')).text);
  assert.equal(metaB.uuid, serverB.id);
  assert.equal(metaB.name, 'beta');
  assert.ok(!('public_keys' in metaB) && !('meta' in metaB));

  assert.equal((await guest(proxyA.socketPath, '/openstack/latest/user_data')).text, userDataA);
  assert.equal((await guest(proxyA.socketPath, '/latest/user-data')).text, userDataA);
  assert.equal((await guest(proxyB.socketPath, '/openstack/latest/user_data')).status, 404);
  assert.equal((await guest(proxyB.socketPath, '/latest/user-data')).status, 404);
  // Whatever the guest puts in the path or headers, the socket decides the instance.
  const spoofed = await guest(proxyB.socketPath, `/openstack/latest/meta_data.json?uuid=${serverA.id}`);
  assert.equal(JSON.parse(spoofed.text).uuid, serverB.id);
  assert.notEqual((await guest(proxyA.socketPath, '/latest/meta-data/instance-id')).text, (await guest(proxyB.socketPath, '/latest/meta-data/instance-id')).text);
});

test('OpenStack tree: version list, listings, vendor and network data, 404s', async () => {
  const versions = await guest(proxyA.socketPath, '/openstack');
  assert.equal(versions.status, 200);
  assert.match(versions.contentType, /^text\/plain/);
  assert.deepEqual(versions.text.split('\n'), ['2012-08-10', '2013-04-04', '2013-10-17', '2015-10-15', '2016-06-30', '2016-10-06', '2017-02-22', '2018-08-27', '2020-10-14', 'latest']);
  assert.equal((await guest(proxyA.socketPath, '/openstack/latest/')).text, 'meta_data.json\nuser_data\npassword\nvendor_data.json\nnetwork_data.json\nvendor_data2.json');
  assert.equal((await guest(proxyB.socketPath, '/openstack/latest')).text, 'meta_data.json\npassword\nvendor_data.json\nnetwork_data.json\nvendor_data2.json');
  assert.equal((await guest(proxyA.socketPath, '/openstack/2012-08-10/')).text, 'meta_data.json\nuser_data');
  const folsom = JSON.parse((await guest(proxyA.socketPath, '/openstack/2012-08-10/meta_data.json')).text);
  assert.ok(!('random_seed' in folsom) && !('project_id' in folsom) && !('devices' in folsom));
  // [api] vendordata_jsonfile_path, Nova's StaticJSON provider: as is in vendor_data.json, under "static" in vendor_data2.json.
  assert.deepEqual(JSON.parse((await guest(proxyA.socketPath, '/openstack/latest/vendor_data.json')).text), vendorData);
  assert.deepEqual(JSON.parse((await guest(proxyA.socketPath, '/openstack/latest/vendor_data2.json')).text), { static: vendorData });
  // Server A was booted with networks 'none': no ports, an empty network_data.json.
  assert.deepEqual(JSON.parse((await guest(proxyA.socketPath, '/openstack/latest/network_data.json')).text), { links: [], networks: [], services: [] });
  for (const path of ['/openstack/latest/nothing', '/openstack/2011-01-01/meta_data.json', '/openstack/2015-10-15/vendor_data2.json', '/openstack/2012-08-10/password', '/latest/meta-data/nothing', '/1999-01-01/meta-data/']) {
    const res = await guest(proxyA.socketPath, path);
    assert.equal(res.status, 404, path);
    assert.match(res.text, /^404 Not Found/, path);
  }
});

test('network_data.json and local-ipv4 come from the ports the Networking service bound to the server', async () => {
  const neutron = async (path: string, body: unknown) => {
    const res = await fetch(`${cc.cloud.url}/networking/v2.0${path}`, { method: 'POST', headers: { 'X-Auth-Token': cc.adminToken, 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
    assert.equal(res.status, 201, await res.clone().text());
    return res.json() as Promise<any>;
  };
  const { network } = await neutron('/networks', { network: { name: 'md-net' } });
  const { subnet } = await neutron('/subnets', { subnet: { network_id: network.id, cidr: '10.42.0.0/24', ip_version: 4, enable_dhcp: false, dns_nameservers: ['10.42.0.53'] } });
  const server = await cc.bootActive({ name: 'gamma', imageRef: await cc.createImage(), networks: [{ uuid: network.id, fixed_ip: '10.42.0.17' }] });
  const proxy = await startMetadataProxy({ bus: cc.cloud.bus, uuid: server.id, socketPath: join(dir, 'c-metadata.sock') });
  try {
    const data = JSON.parse((await guest(proxy.socketPath, '/openstack/latest/network_data.json')).text);
    assert.equal(data.links.length, 1);
    assert.match(data.links[0].ethernet_mac_address, /^fa:16:3e(:[0-9a-f]{2}){3}$/);
    assert.deepEqual(data.networks.map((n: any) => [n.type, n.ip_address, n.netmask, n.network_id, n.routes]),
      [['ipv4', '10.42.0.17', '255.255.255.0', network.id, [{ network: '0.0.0.0', netmask: '0.0.0.0', gateway: subnet.gateway_ip }]]]);
    assert.deepEqual(data.services, [{ type: 'dns', address: '10.42.0.53' }]);
    assert.equal((await guest(proxy.socketPath, '/latest/meta-data/local-ipv4')).text, '10.42.0.17');
  } finally {
    await proxy.close();
  }
});

test('EC2 tree: versions, listings with trailing slashes, public keys, placement, dated versions', async () => {
  const get = async (path: string, socket = proxyA.socketPath) => {
    const res = await guest(socket, path);
    assert.equal(res.status, 200, `${path}: ${res.text}`);
    return res.text;
  };
  assert.equal(await get('/'), '1.0\n2007-01-19\n2007-03-01\n2007-08-29\n2007-10-10\n2007-12-15\n2008-02-01\n2008-09-01\n2009-04-04\nlatest');
  assert.equal(await get('/latest/'), 'meta-data/\nuser-data');
  assert.equal(await get('/latest', proxyB.socketPath), 'meta-data/');
  const listing = (await get('/latest/meta-data/')).split('\n');
  for (const entry of ['ami-id', 'ami-launch-index', 'block-device-mapping/', 'hostname', 'instance-id', 'instance-type', 'local-hostname', 'local-ipv4',
    'placement/', 'public-keys/', 'reservation-id', 'security-groups']) assert.ok(listing.includes(entry), entry);
  assert.ok(!(await get('/latest/meta-data/', proxyB.socketPath)).split('\n').includes('public-keys/'));
  assert.equal(await get('/latest/meta-data/hostname'), 'alpha.novalocal');
  assert.equal(await get('/latest/meta-data/local-hostname'), 'alpha.novalocal');
  assert.equal(await get('/latest/meta-data/instance-type'), 'm1.tiny');
  assert.equal(await get('/latest/meta-data/public-keys/'), '0=mdkey');
  assert.equal(await get('/latest/meta-data/public-keys/0/'), 'openssh-key');
  assert.equal(await get('/latest/meta-data/public-keys/0/openssh-key'), keypair.public_key);
  assert.equal(await get('/latest/meta-data/placement/'), 'availability-zone');
  assert.equal(await get('/latest/meta-data/placement/availability-zone'), 'nova');
  assert.equal(await get('/latest/meta-data/block-device-mapping/root'), '/dev/vda');
  assert.equal(await get('/latest/meta-data/security-groups'), 'default');
  assert.equal(await get('/latest/meta-data/reservation-id'), serverA['OS-EXT-SRV-ATTR:reservation_id']);
  assert.match(await get('/latest/meta-data/instance-id'), /^i-[0-9a-f]{8}$/);
  assert.match(await get('/latest/meta-data/ami-id'), /^ami-[0-9a-f]{8}$/);
  assert.equal(await get('/2009-04-04/meta-data/hostname'), 'alpha.novalocal');
  assert.equal(await get('/2009-04-04/user-data'), userDataA);
  // 1.0 predates local-hostname and placement.
  const old = (await get('/1.0/meta-data/')).split('\n');
  assert.ok(!old.includes('local-hostname') && !old.includes('placement/'));
});

test('password: GET empty, POST sets it once, a second POST is 409, os-server-password shows and clears it', async () => {
  assert.equal((await guest(proxyA.socketPath, '/openstack/latest/password')).text, '');
  const posted = await guest(proxyA.socketPath, '/openstack/latest/password', 'POST', 'ZW5jcnlwdGVk');
  assert.equal(posted.status, 200, posted.text);
  assert.equal((await guest(proxyA.socketPath, '/openstack/latest/password')).text, 'ZW5jcnlwdGVk');
  assert.equal((await guest(proxyB.socketPath, '/openstack/latest/password')).text, '');
  const again = await guest(proxyA.socketPath, '/openstack/2013-04-04/password', 'POST', 'b3RoZXI=');
  assert.equal(again.status, 409);
  assert.match(again.text, /^409 Conflict/);
  assert.equal((await cc.get(`/servers/${serverA.id}/os-server-password`)).body.password, 'ZW5jcnlwdGVk');
  assert.equal((await guest(proxyA.socketPath, '/openstack/latest/password', 'PUT', 'x')).status, 400);
  assert.equal((await cc.delete(`/servers/${serverA.id}/os-server-password`)).status, 204);
  // Nova checks the size only once no password is set (the conflict comes first).
  const tooLarge = await guest(proxyA.socketPath, '/openstack/latest/password', 'POST', 'x'.repeat(1021));
  assert.equal(tooLarge.status, 400);
  assert.match(tooLarge.text, /Request is too large/);
  assert.equal((await guest(proxyA.socketPath, '/openstack/latest/password')).text, '');
  assert.equal((await guest(proxyA.socketPath, '/openstack/latest/password', 'POST', 'bmV3')).status, 200);
  assert.equal((await cc.get(`/servers/${serverA.id}/os-server-password`)).body.password, 'bmV3');
  assert.equal((await cc.get(`/servers/${serverB.id}/os-server-password`)).body.password, '');
});

test('a request through socat, as QEMU guestfwd forwards it, gets the same answer', async () => {
  const child = spawn('socat', ['STDIO', `UNIX-CONNECT:${proxyA.socketPath}`]);
  const out: Buffer[] = [];
  child.stdout.on('data', (c: Buffer) => out.push(c));
  child.stdin.end('GET /openstack/latest/meta_data.json HTTP/1.0\r\nHost: 169.254.169.254\r\n\r\n');
  await new Promise<void>((resolve, reject) => { child.on('exit', () => resolve()); child.on('error', reject); });
  const text = Buffer.concat(out).toString('utf8');
  assert.match(text, /^HTTP\/1\.1 200 OK\r\n/);
  assert.equal(JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4)).uuid, serverA.id);
});

test('instanceFiles and the config drive carry the same trees for the instance', async () => {
  const { files } = await metadataClient(cc.cloud.bus).instanceFiles({ uuid: serverA.id });
  const meta = JSON.parse(files['openstack/latest/meta_data.json']);
  assert.equal(meta.uuid, serverA.id);
  assert.equal(files['openstack/latest/user_data'], userDataA);
  assert.equal(files['ec2/latest/user-data'], userDataA);
  assert.deepEqual(JSON.parse(files['ec2/latest/meta-data.json'])['public-keys'], { 0: { _name: '0=mdkey', 'openssh-key': keypair.public_key } });
  assert.ok(files['ec2/2009-04-04/meta-data.json'] && !files['ec2/1.0/meta-data.json']);
  for (const v of ['2012-08-10', '2013-04-04', '2013-10-17', '2015-10-15', '2016-06-30', '2016-10-06', '2017-02-22', '2018-08-27', '2020-10-14', 'latest']) {
    assert.ok(files[`openstack/${v}/meta_data.json`], v);
  }
  assert.ok(!files['openstack/2012-08-10/vendor_data.json'] && files['openstack/2013-10-17/vendor_data.json']);
  assert.ok(!files['openstack/2015-10-15/vendor_data2.json'] && files['openstack/latest/vendor_data2.json']);
  assert.deepEqual(JSON.parse(files['openstack/latest/vendor_data2.json']), { static: vendorData });
  assert.deepEqual(JSON.parse(files['openstack/latest/network_data.json']), { links: [], networks: [], services: [] });
  assert.equal(files['openstack/latest/password'], undefined);

  const iso = join(dir, 'disk.config');
  await writeConfigDrive(cc.cloud.bus, serverA.id, iso);
  assert.match(execFileSync('blkid', ['-o', 'export', iso], { encoding: 'utf8' }), /^LABEL=config-2$/m);
  const onDrive = JSON.parse(execFileSync('isoinfo', ['-R', '-i', iso, '-x', '/openstack/latest/meta_data.json'], { encoding: 'utf8' }));
  // Every build draws a new random seed; the rest is the same.
  assert.equal(Buffer.from(onDrive.random_seed, 'base64').length, 512);
  assert.deepEqual({ ...onDrive, random_seed: undefined }, { ...meta, random_seed: undefined });
  await assert.rejects(metadataClient(cc.cloud.bus).instanceFiles({ uuid: '00000000-0000-4000-8000-000000000000' }), (err) => err instanceof NotFound);
});

test('personality files go on the config drive only, under openstack/content', async () => {
  const image = await cc.createImage();
  const server = await cc.bootActive({ name: 'gamma', imageRef: image, personality: [{ path: '/etc/motd', contents: Buffer.from('hello\n').toString('base64') }] }, { microversion: '2.56' });
  const { files } = await metadataClient(cc.cloud.bus).instanceFiles({ uuid: server.id });
  assert.deepEqual(JSON.parse(files['openstack/latest/meta_data.json']).files, [{ path: '/etc/motd', content_path: '/content/0000' }]);
  assert.equal(files['openstack/content/0000'], 'hello\n');
  const proxy = await startMetadataProxy({ bus: cc.cloud.bus, uuid: server.id, socketPath: join(dir, 'c-metadata.sock') });
  try {
    assert.ok(!('files' in JSON.parse((await guest(proxy.socketPath, '/openstack/latest/meta_data.json')).text)));
    assert.equal((await guest(proxy.socketPath, '/openstack/content/0000')).status, 404);
  } finally {
    await proxy.close();
  }
});

test('the proxy replaces a stale socket, close removes it, a deleted instance gets 404', async () => {
  const stale = join(dir, 'stale.sock');
  // A socket file left by a process that died without cleaning up.
  execFileSync('python3', ['-c', `import socket; socket.socket(socket.AF_UNIX).bind(${JSON.stringify(stale)})`]);
  assert.ok(existsSync(stale));
  const proxy = await startMetadataProxy({ bus: cc.cloud.bus, uuid: serverB.id, socketPath: stale });
  assert.equal(JSON.parse((await guest(stale, '/openstack/latest/meta_data.json')).text).uuid, serverB.id);
  await proxy.close();
  assert.ok(!existsSync(stale));

  assert.equal((await cc.delete(`/servers/${serverB.id}`)).status, 204);
  await cc.waitServer(serverB.id, (s) => s.status === 'DELETED');
  const gone = await guest(proxyB.socketPath, '/openstack/latest/meta_data.json');
  assert.equal(gone.status, 404);
  assert.equal((await guest(proxyB.socketPath, '/latest/meta-data/')).status, 404);
  assert.equal((await guest(proxyA.socketPath, '/latest/meta-data/hostname')).text, 'alpha.novalocal');
});
