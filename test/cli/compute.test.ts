// Compatibility of the compute service (Nova v2.1) with Debian's real `openstack` CLI: one
// `nubo up` cloud with two fake compute hosts (fake-host-1, fake-host-2), driven command by
// command as an operator would. The tests run in order and build on each other (the image and
// keypair made early boot the servers later; the servers are deleted before the aggregate gets
// an availability zone, which Nova refuses while hosts have instances).
//
// Two sub-suites run side by side to keep the file fast: flavors and keypairs, and servers
// (hosts, scheduling, quotas, aggregates), which makes its own flavor and keypair; within each,
// tests run in order.
//
// `server create --nic none` needs compute microversion >= 2.37 (at the CLI's default 2.1 it
// fails locally with "nics must be a list or a tuple"), and python-openstackclient 6.0 turns
// `2.latest` into novaclient's own maximum (2.92) instead of asking the server, so the server
// commands run with OS_COMPUTE_API_VERSION set to the maximum the compute version document
// announces.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync, readFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { openstack, openstackCliSkipReason, openstackFails, openstackJson, openstackOk, startCloud, type Cloud, type Env } from '../support/cloud.js';

const skip = openstackCliSkipReason();
// `openstack resource provider ...` comes from the osc-placement plugin, which Debian ships separately.
const placementSkip = skip ?? (existsSync('/usr/lib/python3/dist-packages/osc_placement') ? undefined : 'the osc-placement CLI plugin is not installed');

// ---- OpenSSH public key encoding (RFC 4253 section 6.6, RFC 8709) ------------------------------

function sshString(data: Buffer): Buffer {
  const length = Buffer.alloc(4);
  length.writeUInt32BE(data.length);
  return Buffer.concat([length, data]);
}

/** An unsigned big-endian integer as an SSH mpint: a leading zero byte when the high bit is set. */
function sshMpint(unsigned: Buffer): Buffer {
  let i = 0;
  while (i < unsigned.length - 1 && unsigned[i] === 0) i++;
  const trimmed = unsigned.subarray(i);
  return sshString(trimmed[0]! & 0x80 ? Buffer.concat([Buffer.from([0]), trimmed]) : trimmed);
}

/** The public half of an RSA or Ed25519 key as an OpenSSH key blob. */
function sshBlob(key: KeyObject): Buffer {
  const publicKey = key.type === 'private' ? createPublicKey(key) : key;
  const jwk = publicKey.export({ format: 'jwk' });
  if (publicKey.asymmetricKeyType === 'rsa') {
    return Buffer.concat([sshString(Buffer.from('ssh-rsa')), sshMpint(Buffer.from(jwk.e!, 'base64url')), sshMpint(Buffer.from(jwk.n!, 'base64url'))]);
  }
  if (publicKey.asymmetricKeyType === 'ed25519') {
    return Buffer.concat([sshString(Buffer.from('ssh-ed25519')), sshString(Buffer.from(jwk.x!, 'base64url'))]);
  }
  throw new Error(`no OpenSSH encoding for ${publicKey.asymmetricKeyType} keys here`);
}

const sshType = (blob: Buffer) => blob.subarray(4, 4 + blob.readUInt32BE(0)).toString();
/** `ssh-rsa AAAA...` (no comment). */
const sshLine = (blob: Buffer) => `${sshType(blob)} ${blob.toString('base64')}`;
/** Nova's keypair fingerprint: the MD5 of the blob, colon-separated hex. */
const md5Fingerprint = (blob: Buffer) => createHash('md5').update(blob).digest('hex').match(/../g)!.join(':');
/** The blob of an `ssh-xxx BASE64 [comment]` line. */
const blobOfLine = (line: string) => Buffer.from(line.trim().split(/\s+/)[1] ?? '', 'base64');

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('openstack CLI: compute', { skip, concurrency: true }, () => {
  let cloud: Cloud;
  let admin: Env;
  let demo: Env;
  /** admin and demo with OS_COMPUTE_API_VERSION at the server's maximum (see the top of the file). */
  let adminMv: Env;
  let demoMv: Env;
  let work: string;
  let demoProjectId = '';
  let adminProjectId = '';
  let imageId = '';

  // Names unique to this run, so nothing collides with another suite or a leftover.
  const tag = `c${process.pid.toString(36)}`;
  const name = (what: string) => `cli-${tag}-${what}`;

  const json = <T = any>(env: Env, args: string[]) => openstackJson<T>(env, args);
  const ok = openstackOk;
  const fails = openstackFails;
  const FORBIDDEN = /HTTP 403|Policy doesn't allow|not authorized/i;
  const SERVER_GONE = /No server with a name or ID|could not be found|HTTP 404/i;
  const FLAVOR_GONE = /No flavor with a name or ID|No Flavor found for|could not be found/i;
  const KEYPAIR_GONE = /could not be found|No keypair|HTTP 404/i;

  /** Polls `server show` until the status is one of `statuses` (the CLI's --wait gives up silently on ERROR). */
  async function waitStatus(env: Env, server: string, statuses: string[], timeoutMs = 30_000): Promise<any> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const shown = await json(env, ['server', 'show', server]);
      if (statuses.includes(shown.status)) return shown;
      if (Date.now() > deadline) assert.fail(`server ${server} is ${shown.status}, expected ${statuses.join('|')}:\n${JSON.stringify(shown, null, 2)}`);
      await sleep(250);
    }
  }
  const hypervisor = (host: string) => json(admin, ['hypervisor', 'show', host]);

  before(async () => {
    if (skip) return;
    work = mkdtempSync(join(tmpdir(), 'nubo-compute-cli-'));
    cloud = await startCloud({ env: { NUBO_COMPUTE__FAKE_HOSTS: '2', NUBO_COMPUTE__DRIVER: 'fake' } });
    admin = cloud.adminEnv;
    demo = cloud.demoEnv;

    // The compute version document: the CLI's microversion for the server commands comes from it.
    const [endpoints, demoProject, adminProject] = await Promise.all([
      json<Array<{ URL: string }>>(admin, ['endpoint', 'list', '--service', 'compute', '--interface', 'public']),
      json(admin, ['project', 'show', 'demo']),
      json(admin, ['project', 'show', 'admin']),
    ]);
    demoProjectId = demoProject.id;
    adminProjectId = adminProject.id;
    assert.equal(endpoints.length, 1, `one public compute endpoint expected: ${JSON.stringify(endpoints)}`);
    const url = endpoints[0]!.URL.replace(/\/$/, '');
    assert.match(url, /\/compute\/v2\.1$/);
    const response = await fetch(url, { headers: { accept: 'application/json' } });
    assert.equal(response.status, 200);
    const doc = (await response.json()) as { version: { id: string; status: string; version: string; min_version: string } };
    assert.equal(doc.version.id, 'v2.1');
    assert.equal(doc.version.status, 'CURRENT');
    assert.equal(doc.version.min_version, '2.1');
    assert.match(doc.version.version, /^2\.\d+$/);
    assert.ok(Number(doc.version.version.split('.')[1]) >= 37, `max microversion ${doc.version.version} is below 2.37 (needed for --nic none)`);
    adminMv = { ...admin, OS_COMPUTE_API_VERSION: doc.version.version };
    demoMv = { ...demo, OS_COMPUTE_API_VERSION: doc.version.version };

    // A small public raw image for the servers.
    const disk = join(work, 'disk.raw');
    writeFileSync(disk, Buffer.alloc(1 << 20));
    imageId = (await json(admin, ['image', 'create', '--file', disk, '--disk-format', 'raw', '--container-format', 'bare', '--public', name('img')])).id;
    assert.equal((await json(admin, ['image', 'show', imageId])).status, 'active');
  });
  after(async () => {
    await cloud?.stop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  describe('flavors and keypairs', { concurrency: 1 }, () => {
    let flavorId = '';
    let privateFlavorId = '';

    it('lists the default flavors', async () => {
      const [rows, long] = await Promise.all([
        json<Array<{ ID: string; Name: string; RAM: number; Disk: number; VCPUs: number; 'Is Public': boolean }>>(admin, ['flavor', 'list']),
        json<any[]>(admin, ['flavor', 'list', '--long']),
      ]);
      const tiny = rows.find((row) => row.Name === 'm1.tiny');
      assert.ok(tiny, `m1.tiny missing: ${JSON.stringify(rows)}`);
      assert.deepEqual({ ID: tiny.ID, RAM: tiny.RAM, Disk: tiny.Disk, VCPUs: tiny.VCPUs, 'Is Public': tiny['Is Public'] }, { ID: '1', RAM: 512, Disk: 1, VCPUs: 1, 'Is Public': true });
      assert.ok(long.some((row) => row.Name === 'm1.tiny' && 'Properties' in row), 'flavor list --long has a Properties column');
    });

    it('creates a flavor with properties (server-generated UUID id), sets and unsets properties, shows it', async () => {
      const created = await json(admin, ['flavor', 'create', '--ram', '128', '--disk', '1', '--vcpus', '2', '--property', 'hw:cpu_policy=shared', '--property', 'nubo:a=1', name('flavor')]);
      flavorId = created.id;
      assert.match(flavorId, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
      assert.equal(created.name, name('flavor'));
      assert.equal(created.ram, 128);
      assert.equal(created.disk, 1);
      assert.equal(created.vcpus, 2);
      assert.equal(created['os-flavor-access:is_public'], true);
      assert.deepEqual(created.properties, { 'hw:cpu_policy': 'shared', 'nubo:a': '1' });

      await ok(admin, ['flavor', 'set', '--property', 'nubo:b=2', '--property', 'nubo:a=changed', name('flavor')]);
      await ok(admin, ['flavor', 'unset', '--property', 'hw:cpu_policy', name('flavor')]);
      const [shown, byName, list] = await Promise.all([
        json(admin, ['flavor', 'show', flavorId]),
        json(admin, ['flavor', 'show', name('flavor')]),
        json<any[]>(admin, ['flavor', 'list']),
        fails(admin, ['flavor', 'unset', '--property', 'nubo:missing', name('flavor')], /nubo:missing|not found|could not be found|Failed to unset/i),
      ]);
      assert.equal(shown.name, name('flavor'));
      assert.deepEqual(shown.properties, { 'nubo:a': 'changed', 'nubo:b': '2' });
      assert.equal(byName.id, flavorId);
      assert.ok(list.some((row) => row.ID === flavorId));
    });

    it('flavor create --id auto keeps the literal id "auto", as Nova does', async () => {
      const created = await json(admin, ['flavor', 'create', '--id', 'auto', '--ram', '64', '--disk', '0', '--vcpus', '1', name('auto')]);
      assert.equal(created.id, 'auto');
      const [shown] = await Promise.all([
        json(admin, ['flavor', 'show', 'auto']),
        fails(admin, ['flavor', 'create', '--id', 'auto', '--ram', '64', '--disk', '0', '--vcpus', '1', name('auto2')], /HTTP 409|already exists|Conflict/i),
      ]);
      assert.equal(shown.name, name('auto'));
      await ok(admin, ['flavor', 'delete', 'auto']);
      await fails(admin, ['flavor', 'show', 'auto'], FLAVOR_GONE);
    });

    it('a private flavor is visible to a project only once flavor set --project grants it access', async () => {
      const created = await json(admin, ['flavor', 'create', '--private', '--ram', '64', '--disk', '0', '--vcpus', '1', name('private')]);
      privateFlavorId = created.id;
      assert.equal(created['os-flavor-access:is_public'], false);
      const [publicOnly, privateOnly] = await Promise.all([
        json<any[]>(admin, ['flavor', 'list']),
        json<any[]>(admin, ['flavor', 'list', '--private']),
        fails(demo, ['flavor', 'show', privateFlavorId], FLAVOR_GONE),
      ]);
      assert.ok(!publicOnly.some((row) => row.ID === privateFlavorId), 'flavor list shows public flavors only');
      assert.ok(privateOnly.some((row) => row.ID === privateFlavorId));

      await ok(admin, ['flavor', 'set', '--project', 'demo', privateFlavorId]);
      const [shown, seen] = await Promise.all([
        json(admin, ['flavor', 'show', privateFlavorId]),
        json(demo, ['flavor', 'show', privateFlavorId]),
        // Granting it again is a conflict; a public flavor takes no access list.
        fails(admin, ['flavor', 'set', '--project', 'demo', privateFlavorId], /already exists/i),
        fails(admin, ['flavor', 'set', '--project', 'demo', flavorId], /public flavor/i),
      ]);
      assert.deepEqual(shown.access_project_ids, [demoProjectId]);
      assert.equal(seen.name, name('private'));

      await ok(admin, ['flavor', 'unset', '--project', 'demo', privateFlavorId]);
      const [revoked] = await Promise.all([
        json(admin, ['flavor', 'show', privateFlavorId]),
        fails(demo, ['flavor', 'show', privateFlavorId], FLAVOR_GONE),
      ]);
      assert.deepEqual(revoked.access_project_ids, []);
    });

    it('only an admin manages flavors', async () => {
      await Promise.all([
        fails(demo, ['flavor', 'create', '--ram', '64', '--disk', '0', '--vcpus', '1', name('by-demo')], FORBIDDEN),
        fails(demo, ['flavor', 'set', '--property', 'x=y', flavorId], FORBIDDEN),
        fails(demo, ['flavor', 'delete', flavorId], FORBIDDEN),
      ]);
      assert.equal((await json(admin, ['flavor', 'show', flavorId])).name, name('flavor'));
    });

    it('deletes a flavor', async () => {
      await ok(admin, ['flavor', 'delete', privateFlavorId]);
      const [all] = await Promise.all([
        json<any[]>(admin, ['flavor', 'list', '--all']),
        fails(admin, ['flavor', 'show', privateFlavorId], FLAVOR_GONE),
      ]);
      assert.ok(!all.some((row) => row.ID === privateFlavorId));
    });

    it('keypair create generates a key pair and prints a valid PEM private key', async () => {
      const stdout = await ok(admin, ['keypair', 'create', name('gen')]);
      assert.match(stdout, /-----BEGIN (RSA )?PRIVATE KEY-----/);
      const pem = stdout.slice(stdout.indexOf('-----BEGIN')).trim();
      const privateKey = createPrivateKey(pem);
      assert.equal(privateKey.asymmetricKeyType, 'rsa');
      assert.ok((privateKey.asymmetricKeyDetails?.modulusLength ?? 0) >= 2048, 'an RSA key of at least 2048 bits');
      const blob = sshBlob(privateKey);

      // The stored public key is the public half of the printed private key.
      const [publicLine, shown] = await Promise.all([
        ok(admin, ['keypair', 'show', '--public-key', name('gen')]),
        json(admin, ['keypair', 'show', name('gen')]),
      ]);
      assert.match(publicLine.trim(), /^ssh-rsa AAAA/);
      assert.ok(blobOfLine(publicLine).equals(blob), `keypair show --public-key is not the public half of the private key:\n${publicLine}`);
      assert.equal(shown.name, name('gen'));
      assert.equal(shown.type, 'ssh');
      assert.equal(shown.fingerprint, md5Fingerprint(blob));
    });

    it('keypair create --public-key imports an ssh-keygen key; list, show and delete', async () => {
      const keyFile = join(work, 'imported');
      const keygen = spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'nubo-cli', '-f', keyFile], { encoding: 'utf8' });
      let importedLine: string;
      if (keygen.status === 0 && existsSync(`${keyFile}.pub`)) {
        importedLine = readFileSync(`${keyFile}.pub`, 'utf8').trim();
      } else {
        // No ssh-keygen: encode a fresh Ed25519 key ourselves.
        importedLine = `${sshLine(sshBlob(generateKeyPairSync('ed25519').publicKey))} nubo-cli`;
        writeFileSync(`${keyFile}.pub`, importedLine + '\n');
      }
      const blob = blobOfLine(importedLine);

      const created = await json(admin, ['keypair', 'create', '--public-key', `${keyFile}.pub`, name('imported')]);
      assert.equal(created.name, name('imported'));
      assert.equal(created.fingerprint, md5Fingerprint(blob));
      assert.equal(created.type, 'ssh');

      const garbage = join(work, 'garbage.pub');
      writeFileSync(garbage, 'ssh-rsa not-a-key\n');
      const [rows, publicLine, demoRows] = await Promise.all([
        json<Array<{ Name: string; Fingerprint: string; Type?: string }>>(admin, ['keypair', 'list']),
        ok(admin, ['keypair', 'show', '--public-key', name('imported')]),
        // Keypairs belong to their user: demo sees none of admin's.
        json<any[]>(demo, ['keypair', 'list']),
        fails(demo, ['keypair', 'show', name('imported')], KEYPAIR_GONE),
        fails(admin, ['keypair', 'create', '--public-key', `${keyFile}.pub`, name('imported')], /already exists|HTTP 409/i),
        fails(admin, ['keypair', 'create', '--public-key', garbage, name('garbage')], /Keypair data is invalid|HTTP 400/i),
      ]);
      const row = rows.find((r) => r.Name === name('imported'));
      assert.ok(row, `imported keypair missing from keypair list: ${JSON.stringify(rows)}`);
      assert.equal(row.Fingerprint, md5Fingerprint(blob));
      assert.ok(rows.some((r) => r.Name === name('gen')));
      assert.match(publicLine.trim(), /^ssh-ed25519 /);
      assert.ok(blobOfLine(publicLine).equals(blob), `keypair show --public-key printed ${publicLine}, imported ${importedLine}`);
      assert.ok(!demoRows.some((r) => r.Name === name('imported')));

      await ok(admin, ['keypair', 'delete', name('gen'), name('imported')]);
      const [after] = await Promise.all([
        json<any[]>(admin, ['keypair', 'list']),
        fails(admin, ['keypair', 'show', name('gen')], KEYPAIR_GONE),
      ]);
      assert.ok(!after.some((r) => r.Name === name('gen') || r.Name === name('imported')));
    });
  });

  describe('placement (osc-placement plugin)', { concurrency: 1, skip: placementSkip }, () => {
    it('resource provider list shows one provider per compute host; allocation candidate list offers both', async () => {
      const env = { ...admin, OS_PLACEMENT_API_VERSION: '1.10' };
      const providers = await json<Array<{ uuid: string; name: string }>>(env, ['resource', 'provider', 'list']);
      const hosts = providers.filter((p) => /^fake-host-[12]$/.test(p.name));
      assert.deepEqual(hosts.map((p) => p.name).sort(), ['fake-host-1', 'fake-host-2'], JSON.stringify(providers));
      const candidates = await json<any[]>(env, ['allocation', 'candidate', 'list', '--resource', 'VCPU=1']);
      const text = JSON.stringify(candidates);
      assert.ok(candidates.length >= 2, text);
      for (const provider of hosts) assert.ok(text.includes(provider.uuid), `${provider.name} is a candidate: ${text}`);
    });
  });

  describe('servers', { concurrency: 1 }, () => {
    let serverId = '';
    let groupId = '';

    it('lists the two fake hypervisors, up, and shows one', async () => {
      const [rows, shown] = await Promise.all([json<Array<Record<string, any>>>(admin, ['hypervisor', 'list']), hypervisor('fake-host-2')]);
      const mine = rows.filter((row) => /^fake-host-[12]$/.test(row['Hypervisor Hostname'])).sort((a, b) => a['Hypervisor Hostname'].localeCompare(b['Hypervisor Hostname']));
      assert.deepEqual(mine.map((row) => [row['Hypervisor Hostname'], row['Hypervisor Type'], row.State]), [['fake-host-1', 'fake', 'up'], ['fake-host-2', 'fake', 'up']]);
      for (const row of mine) assert.match(row.ID, /^[0-9a-f-]{36}$/, 'hypervisor ids are UUIDs at microversion >= 2.53');

      assert.equal(shown.hypervisor_hostname, 'fake-host-2');
      assert.equal(shown.id, mine[1]!.ID);
      assert.equal(shown.state, 'up');
      assert.equal(shown.status, 'enabled');
      assert.equal(shown.service_host, 'fake-host-2');
      assert.ok(shown.vcpus > 0 && shown.memory_mb > 0 && shown.local_gb > 0, `hypervisor resources: ${JSON.stringify(shown)}`);
      assert.equal(shown.running_vms, 0);
      assert.equal((await hypervisor(shown.id)).hypervisor_hostname, 'fake-host-2', 'hypervisor show by id');
    });

    it('compute service list shows the conductor, scheduler and one nova-compute per host', async () => {
      const [rows, filtered] = await Promise.all([
        json<Array<Record<string, any>>>(admin, ['compute', 'service', 'list']),
        json<any[]>(admin, ['compute', 'service', 'list', '--host', 'fake-host-1', '--service', 'nova-compute']),
        fails(demo, ['compute', 'service', 'list'], FORBIDDEN),
      ]);
      const computes = rows.filter((row) => row.Binary === 'nova-compute').map((row) => [row.Host, row.Zone, row.Status, row.State]).sort();
      assert.deepEqual(computes, [['fake-host-1', 'nova', 'enabled', 'up'], ['fake-host-2', 'nova', 'enabled', 'up']]);
      for (const binary of ['nova-conductor', 'nova-scheduler']) {
        const row = rows.find((r) => r.Binary === binary);
        assert.ok(row, `${binary} missing: ${JSON.stringify(rows)}`);
        assert.equal(row.Zone, 'internal');
        assert.equal(row.State, 'up');
      }
      assert.deepEqual(filtered.map((row) => row.Host), ['fake-host-1']);
    });

    it('server create --wait boots an ACTIVE server with image, flavor, key (imported from node:crypto) and properties', async () => {
      // A flavor and a key of this suite's own; the RSA public key encoded here, not by ssh-keygen.
      const blob = sshBlob(generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey);
      const keyFile = join(work, 'server-key.pub');
      writeFileSync(keyFile, `${sshLine(blob)} nubo@cli\n`);
      const [key] = await Promise.all([
        json(admin, ['keypair', 'create', '--public-key', keyFile, name('key')]),
        json(admin, ['flavor', 'create', '--ram', '256', '--disk', '1', '--vcpus', '2', name('small')]),
      ]);
      assert.equal(key.fingerprint, md5Fingerprint(blob));

      const created = await json(adminMv, [
        'server', 'create', '--wait', '--image', name('img'), '--flavor', 'm1.tiny', '--key-name', name('key'),
        '--property', 'role=web', '--property', 'nubo=yes', '--nic', 'none', name('web'),
      ]);
      serverId = created.id;
      assert.match(serverId, /^[0-9a-f-]{36}$/);
      assert.equal(created.status, 'ACTIVE');
      assert.equal(created.name, name('web'));
      assert.equal(created.key_name, name('key'));
      assert.deepEqual(created.properties, { role: 'web', nubo: 'yes' });
      assert.equal(created['OS-EXT-STS:vm_state'], 'active');
      assert.equal(created['OS-EXT-STS:power_state'], 1);
      assert.match(created['OS-EXT-SRV-ATTR:host'], /^fake-host-[12]$/);
      assert.equal(created['OS-EXT-AZ:availability_zone'], 'nova');
      assert.equal(created.image, `${name('img')} (${imageId})`);
      assert.equal(created.flavor.original_name, 'm1.tiny');
      assert.equal(created.project_id, adminProjectId);
      assert.equal(typeof created.adminPass, 'string');

      const host = created['OS-EXT-SRV-ATTR:host'];
      const [shown, byName, onHost] = await Promise.all([
        json(admin, ['server', 'show', serverId]),
        json(admin, ['server', 'show', name('web')]),
        hypervisor(host),
      ]);
      assert.equal(shown.status, 'ACTIVE');
      assert.equal(shown.name, name('web'));
      assert.equal(shown.key_name, name('key'));
      assert.deepEqual(shown.properties, { role: 'web', nubo: 'yes' });
      assert.equal(byName.id, serverId, 'server show by name');
      assert.equal(onHost.running_vms, 1, `the server counts on ${host}`);
    });

    it('server list shows it, also with --long, --name and --status', async () => {
      const [rows, long, byRegex, none, active, shutoff, demoRows, allProjects] = await Promise.all([
        json<any[]>(admin, ['server', 'list']),
        json<any[]>(admin, ['server', 'list', '--long', '--name', name('web')]),
        // --name is a regular expression, as in Nova.
        json<any[]>(admin, ['server', 'list', '--name', `^cli-${tag}-we`]),
        json<any[]>(admin, ['server', 'list', '--name', `${name('web')}-nothing`]),
        json<any[]>(admin, ['server', 'list', '--status', 'ACTIVE']),
        json<any[]>(admin, ['server', 'list', '--status', 'SHUTOFF']),
        // Another project's user does not see it; the admin sees it across projects.
        json<any[]>(demo, ['server', 'list']),
        json<any[]>(admin, ['server', 'list', '--all-projects']),
        fails(demo, ['server', 'show', serverId], SERVER_GONE),
      ]);
      const row = rows.find((r) => r.ID === serverId);
      assert.ok(row, `server missing from server list: ${JSON.stringify(rows)}`);
      assert.equal(row.Name, name('web'));
      assert.equal(row.Status, 'ACTIVE');
      assert.equal(row.Image, name('img'));
      assert.equal(row.Flavor, 'm1.tiny');

      assert.equal(long.length, 1, JSON.stringify(long));
      assert.equal(long[0].ID, serverId);
      assert.equal(long[0]['Power State'], 1);
      assert.equal(long[0]['Image ID'], imageId);
      assert.equal(long[0]['Availability Zone'], 'nova');
      assert.match(long[0].Host, /^fake-host-[12]$/);
      assert.deepEqual(long[0].Properties, { role: 'web', nubo: 'yes' });

      assert.deepEqual(byRegex.map((r) => r.ID), [serverId]);
      assert.deepEqual(none, []);
      assert.ok(active.some((r) => r.ID === serverId));
      assert.ok(!shutoff.some((r) => r.ID === serverId));
      assert.ok(!demoRows.some((r) => r.ID === serverId));
      assert.ok(allProjects.some((r) => r.ID === serverId));
    });

    it('server set --name and --property, server unset --property', async () => {
      await ok(admin, ['server', 'set', '--name', name('web2'), '--property', 'tier=gold', '--property', 'role=db', serverId]);
      const shown = await json(admin, ['server', 'show', serverId]);
      assert.equal(shown.name, name('web2'));
      assert.deepEqual(shown.properties, { role: 'db', nubo: 'yes', tier: 'gold' });
      await ok(admin, ['server', 'unset', '--property', 'nubo', serverId]);
      const [renamed] = await Promise.all([
        json(admin, ['server', 'show', name('web2')]),
        fails(admin, ['server', 'show', name('web')], SERVER_GONE),
        fails(admin, ['server', 'unset', '--property', 'nubo', serverId], /Metadata item was not found|HTTP 404/),
      ]);
      assert.deepEqual(renamed.properties, { role: 'db', tier: 'gold' });
    });

    it('server event list and show: the create action and its successful steps', async () => {
      const events = await json<any[]>(admin, ['server', 'event', 'list', serverId]);
      assert.equal(events.length, 1, JSON.stringify(events));
      assert.equal(events[0].Action, 'create');
      assert.equal(events[0]['Server ID'], serverId);
      assert.match(events[0]['Request ID'], /^req-[0-9a-f-]{36}$/);
      const event = await json(admin, ['server', 'event', 'show', serverId, events[0]['Request ID']]);
      assert.equal(event.action, 'create');
      assert.equal(event.instance_uuid ?? event.server_id, serverId);
      assert.equal(event.message, null);
      const steps = (event.events as Array<{ event: string; result: string }>).map((e) => [e.event, e.result]);
      assert.deepEqual(steps[0], ['conductor_schedule_and_build_instances', 'Success'], JSON.stringify(event.events));
      assert.ok(steps.length >= 2 && steps.every(([, result]) => result === 'Success'), JSON.stringify(event.events));
    });

    it('usage list and usage show report the running server for the admin project', async () => {
      const [rows, shown] = await Promise.all([json<any[]>(admin, ['usage', 'list']), json(admin, ['usage', 'show', '--project', 'admin'])]);
      // With -f json the CLI prints the project id (its name only in tables).
      const row = rows.find((r) => r.Project === adminProjectId || r.Project === 'admin');
      assert.ok(row, `no usage row for the admin project: ${JSON.stringify(rows)}`);
      const usage = (row.Servers as any[]).find((s) => s.instance_id === serverId);
      assert.ok(usage, `server missing from the usage: ${JSON.stringify(row)}`);
      assert.equal(usage.name, name('web2'));
      assert.equal(usage.state, 'active');
      assert.equal(usage.flavor, 'm1.tiny');
      assert.equal(usage.memory_mb, 512);
      assert.equal(usage.vcpus, 1);
      assert.equal(usage.local_gb, 1);
      assert.equal(usage.ended_at, null);
      // The CLI's period ends a day from now; Nova charges a running server up to the period's end.
      assert.ok(usage.hours > 23 && usage.hours < 25, `hours ${usage.hours}`);
      assert.ok(row['CPU Hours'] >= usage.hours);
      assert.deepEqual((shown.Servers as any[]).map((s) => s.instance_id).sort(), (row.Servers as any[]).map((s) => s.instance_id).sort());
    });

    it('server group create --policy anti-affinity, list, show', async () => {
      const created = await json(adminMv, ['server', 'group', 'create', '--policy', 'anti-affinity', name('group')]);
      groupId = created.id;
      assert.match(groupId, /^[0-9a-f-]{36}$/);
      assert.equal(created.name, name('group'));
      assert.equal(created.policy, 'anti-affinity');
      assert.deepEqual(created.members, []);
      const [rows, byName] = await Promise.all([
        json<any[]>(admin, ['server', 'group', 'list']),
        json(admin, ['server', 'group', 'show', name('group')]),
        fails(adminMv, ['server', 'group', 'create', '--policy', 'no-such-policy', name('bad-group')], /invalid choice|HTTP 400/i),
      ]);
      const row = rows.find((r) => r.ID === groupId);
      assert.ok(row, JSON.stringify(rows));
      assert.equal(row.Name, name('group'));
      assert.match(JSON.stringify(row.Policy ?? row.Policies), /anti-affinity/);
      assert.equal(byName.id, groupId);
    });

    it('two servers of an anti-affinity group (--min 2 --max 2 --hint group=) land on different hypervisors; a third finds no host', async () => {
      await json(adminMv, [
        'server', 'create', '--wait', '--image', imageId, '--flavor', 'm1.tiny', '--nic', 'none',
        '--min', '2', '--max', '2', '--hint', `group=${groupId}`, name('spread'),
      ]);
      const [rows, group] = await Promise.all([
        json<any[]>(admin, ['server', 'list', '--long', '--name', `^${name('spread')}`]),
        json(admin, ['server', 'group', 'show', groupId]),
      ]);
      assert.equal(rows.length, 2, JSON.stringify(rows));
      assert.deepEqual(rows.map((r) => r.Name).sort(), [`${name('spread')}-1`, `${name('spread')}-2`]);
      for (const row of rows) assert.equal(row.Status, 'ACTIVE');
      assert.deepEqual(rows.map((r) => r.Host).sort(), ['fake-host-1', 'fake-host-2']);
      assert.deepEqual([...group.members].sort(), rows.map((r) => r.ID).sort());

      const third = await openstack(adminMv, ['server', 'create', '--wait', '--image', imageId, '--flavor', 'm1.tiny', '--nic', 'none', '--hint', `group=${groupId}`, name('spread3')]);
      assert.match(third.stdout + third.stderr, /Error creating server/, `the third server should fail: ${third.stdout}\n${third.stderr}`);
      const failed = await waitStatus(admin, name('spread3'), ['ERROR']);
      assert.match(failed.fault?.message ?? '', /^No valid host was found\./);
    });

    it('--availability-zone nova:fake-host-2 puts a server on that host (admin only)', async () => {
      const before = (await hypervisor('fake-host-2')).running_vms;
      const [created] = await Promise.all([
        json(adminMv, ['server', 'create', '--wait', '--image', imageId, '--flavor', 'm1.tiny', '--nic', 'none', '--availability-zone', 'nova:fake-host-2', name('pinned')]),
        fails(demoMv, ['server', 'create', '--image', imageId, '--flavor', 'm1.tiny', '--nic', 'none', '--availability-zone', 'nova:fake-host-2', name('demo-pinned')], FORBIDDEN),
      ]);
      assert.equal(created.status, 'ACTIVE');
      assert.equal(created['OS-EXT-SRV-ATTR:host'], 'fake-host-2');
      assert.equal(created['OS-EXT-SRV-ATTR:hypervisor_hostname'], 'fake-host-2');
      assert.equal(created['OS-EXT-AZ:availability_zone'], 'nova');
      assert.equal((await hypervisor('fake-host-2')).running_vms, before + 1);
    });

    it('compute service set --disable keeps new servers off the host; --enable brings it back', async () => {
      const service = ['compute', 'service', 'list', '--host', 'fake-host-1', '--service', 'nova-compute', '--long'];
      await ok(admin, ['compute', 'service', 'set', '--disable', '--disable-reason', 'cli maintenance', 'fake-host-1', 'nova-compute']);
      const [[disabled], disabledHypervisor] = await Promise.all([json<any[]>(admin, service), hypervisor('fake-host-1')]);
      assert.equal(disabled.Status, 'disabled');
      assert.equal(disabled['Disabled Reason'], 'cli maintenance');
      assert.equal(disabledHypervisor.status, 'disabled');

      await json(adminMv, ['server', 'create', '--wait', '--image', imageId, '--flavor', name('small'), '--nic', 'none', '--min', '2', '--max', '2', name('avoid')]);
      const rows = await json<any[]>(admin, ['server', 'list', '--long', '--name', `^${name('avoid')}`]);
      assert.equal(rows.length, 2, JSON.stringify(rows));
      assert.deepEqual(rows.map((r) => [r.Status, r.Host]), [['ACTIVE', 'fake-host-2'], ['ACTIVE', 'fake-host-2']]);

      await ok(admin, ['compute', 'service', 'set', '--enable', 'fake-host-1', 'nova-compute']);
      const [[enabled], enabledHypervisor] = await Promise.all([json<any[]>(admin, service), hypervisor('fake-host-1')]);
      assert.equal(enabled.Status, 'enabled');
      assert.equal(enabled['Disabled Reason'], null);
      assert.equal(enabledHypervisor.status, 'enabled');
    });

    it('a request no host can satisfy ends in ERROR with "No valid host was found."', async () => {
      // A required trait no host has: passes the quota check, fails in placement.
      await json(admin, ['flavor', 'create', '--ram', '64', '--disk', '0', '--vcpus', '1', '--property', 'trait:CUSTOM_NUBO_CLI_NOWHERE=required', name('nowhere')]);
      const result = await openstack(adminMv, ['server', 'create', '--wait', '--image', imageId, '--flavor', name('nowhere'), '--nic', 'none', name('nowhere')]);
      // The 6.0 CLI reports the failure on its output ("Error creating server") but exits 0.
      assert.match(result.stdout + result.stderr, /Error creating server/, `${result.stdout}\n${result.stderr}`);
      const shown = await waitStatus(admin, name('nowhere'), ['ERROR']);
      assert.equal(shown['OS-EXT-STS:vm_state'], 'error');
      assert.equal(shown['OS-EXT-SRV-ATTR:host'], null);
      assert.match(shown.fault.message, /^No valid host was found\./);
      assert.equal(shown.fault.code, 500);
      const [action] = await json<any[]>(admin, ['server', 'event', 'list', shown.id]);
      const event = await json(admin, ['server', 'event', 'show', shown.id, action['Request ID']]);
      assert.equal(event.action, 'create');
      assert.equal(event.message, 'Error');
      assert.deepEqual(event.events.map((e: any) => [e.event, e.result]), [['conductor_schedule_and_build_instances', 'Error']]);
    });

    /** `quota show` JSON: a dict in some releases, a list of {Resource, Limit} rows in others. */
    const quotaOf = async (project: string): Promise<Record<string, number>> => {
      const shown = await json(admin, ['quota', 'show', project]);
      if (Array.isArray(shown)) return Object.fromEntries(shown.map((row: any) => [row.Resource, row.Limit]));
      return shown;
    };
    const limitsOf = async (env: Env): Promise<Record<string, number>> =>
      Object.fromEntries((await json<Array<{ Name: string; Value: number }>>(env, ['limits', 'show', '--absolute'])).map((row) => [row.Name, row.Value]));

    it('quota show has Nova\'s defaults; limits show --absolute counts what the project uses', async () => {
      const [quota, servers, flavorRows, limits] = await Promise.all([
        quotaOf('admin'),
        json<any[]>(adminMv, ['server', 'list', '--long']),
        json<any[]>(admin, ['flavor', 'list', '--all']),
        limitsOf(admin),
      ]);
      assert.equal(quota.instances, 10);
      assert.equal(quota.cores, 20);
      assert.equal(quota.ram, 51200);
      assert.equal(quota['key-pairs'], 100);
      assert.equal(quota['server-groups'], 10);
      assert.equal(quota['server-group-members'], 10);

      const flavors = new Map(flavorRows.map((f) => [f.Name, f]));
      const flavorOf = (server: any) => {
        const flavor = flavors.get(server.Flavor ?? server['Flavor Name']);
        assert.ok(flavor, `flavor of ${JSON.stringify(server)} not in ${JSON.stringify(flavorRows)}`);
        return flavor;
      };
      assert.equal(limits.maxTotalInstances, 10);
      assert.equal(limits.maxTotalCores, 20);
      assert.equal(limits.maxTotalRAMSize, 51200);
      assert.equal(limits.maxTotalKeypairs, 100);
      assert.equal(limits.totalInstancesUsed, servers.length, 'ERROR servers count too');
      assert.equal(limits.totalCoresUsed, servers.reduce((sum, s) => sum + flavorOf(s).VCPUs, 0));
      assert.equal(limits.totalRAMUsed, servers.reduce((sum, s) => sum + flavorOf(s).RAM, 0));
      assert.equal(limits.totalServerGroupsUsed, 1);
    });

    it('quota set --instances is enforced at the API: the project\'s next server is refused with 403', async () => {
      await ok(admin, ['quota', 'set', '--instances', '1', 'demo']);
      const [demoQuota, adminQuota, demoLimits] = await Promise.all([quotaOf('demo'), quotaOf('admin'), limitsOf(demo)]);
      assert.equal(demoQuota.instances, 1);
      assert.equal(adminQuota.instances, 10, 'only the demo project changed');
      assert.equal(demoLimits.maxTotalInstances, 1);

      const first = await json(demoMv, ['server', 'create', '--wait', '--image', imageId, '--flavor', 'm1.tiny', '--nic', 'none', name('demo-1')]);
      assert.equal(first.status, 'ACTIVE');
      assert.equal(first.project_id, demoProjectId);
      const [used] = await Promise.all([
        limitsOf(demo),
        fails(demoMv, ['server', 'create', '--image', imageId, '--flavor', 'm1.tiny', '--nic', 'none', name('demo-2')], /Quota exceeded for instances: Requested 1, but already used 1 of 1 instances/),
        fails(demo, ['quota', 'set', '--instances', '50', 'demo'], FORBIDDEN),
      ]);
      assert.equal(used.totalInstancesUsed, 1);

      await ok(demo, ['server', 'delete', '--wait', first.id]);
      assert.equal((await limitsOf(demo)).totalInstancesUsed, 0);
      await ok(admin, ['quota', 'set', '--instances', '10', 'demo']);
    });

    it('server delete --wait removes every server; usage keeps the terminated ones', async () => {
      const servers = await json<any[]>(admin, ['server', 'list']);
      assert.ok(servers.length >= 6, JSON.stringify(servers));
      await ok(admin, ['server', 'delete', '--wait', ...servers.map((s) => s.ID)]);
      const [left, host1, host2, limits, usageRows] = await Promise.all([
        json<any[]>(admin, ['server', 'list']),
        hypervisor('fake-host-1'),
        hypervisor('fake-host-2'),
        limitsOf(admin),
        json<any[]>(admin, ['usage', 'list']),
        fails(admin, ['server', 'show', serverId], SERVER_GONE),
      ]);
      assert.deepEqual(left, []);
      for (const shown of [host1, host2]) {
        assert.equal(shown.running_vms, 0, `${shown.hypervisor_hostname} is empty again`);
        assert.equal(shown.vcpus_used, 0);
      }
      assert.equal(limits.totalInstancesUsed, 0);
      const usage = usageRows.find((r) => r.Project === adminProjectId || r.Project === 'admin');
      const gone = (usage?.Servers as any[] | undefined)?.find((s) => s.instance_id === serverId);
      assert.ok(gone, `the deleted server still counts in usage: ${JSON.stringify(usage)}`);
      assert.equal(gone.state, 'terminated');
      assert.notEqual(gone.ended_at, null);
      assert.ok(gone.hours < 1, `a deleted server is charged until it ended: ${gone.hours}`);
    });

    it('server group delete', async () => {
      await ok(admin, ['server', 'group', 'delete', groupId]);
      const [rows] = await Promise.all([
        json<any[]>(admin, ['server', 'group', 'list']),
        // After Nova's 404 for the id and an empty list by name, the 6.0 CLI trips over its own None
        // ("'NoneType' object has no attribute 'keys'") instead of saying the group does not exist.
        fails(admin, ['server', 'group', 'show', groupId], /could not be found|No server group|HTTP 404|'NoneType' object has no attribute 'keys'/i),
      ]);
      assert.ok(!rows.some((r) => r.ID === groupId));
    });

    it('aggregate create, add host, set --zone and --property, show; the zone is listed and schedulable', async () => {
      const zone = name('zone');
      const created = await json(admin, ['aggregate', 'create', name('agg')]);
      assert.equal(created.name, name('agg'));
      assert.equal(created.availability_zone, null);
      const [added] = await Promise.all([
        json(admin, ['aggregate', 'add', 'host', name('agg'), 'fake-host-2']),
        fails(admin, ['aggregate', 'add', 'host', name('agg'), 'no-such-host'], /could not be found|HTTP 404/i),
      ]);
      assert.deepEqual(added.hosts, ['fake-host-2']);

      await ok(admin, ['aggregate', 'set', '--zone', zone, '--property', 'ssd=true', name('agg')]);
      // `availability zone list` without --compute also asks for network zones, which this cloud has no service for.
      const [shown, list, zones, long, demoZones] = await Promise.all([
        json(admin, ['aggregate', 'show', name('agg')]),
        json<any[]>(admin, ['aggregate', 'list']),
        json<Array<{ 'Zone Name': string; 'Zone Status': string }>>(admin, ['availability', 'zone', 'list', '--compute']),
        json<any[]>(admin, ['availability', 'zone', 'list', '--compute', '--long']),
        json<any[]>(demo, ['availability', 'zone', 'list', '--compute']),
      ]);
      assert.equal(shown.id, created.id);
      assert.equal(shown.availability_zone, zone);
      assert.deepEqual(shown.hosts, ['fake-host-2']);
      assert.equal(shown.properties.ssd, 'true');
      assert.ok(list.some((r) => r.Name === name('agg') && r['Availability Zone'] === zone), JSON.stringify(list));
      assert.ok(zones.some((z) => z['Zone Name'] === zone && z['Zone Status'] === 'available'), JSON.stringify(zones));
      assert.ok(zones.some((z) => z['Zone Name'] === 'nova'), 'fake-host-1 stays in the default zone');
      assert.ok(long.some((z) => z['Zone Name'] === zone && z['Host Name'] === 'fake-host-2' && z['Service Name'] === 'nova-compute'), JSON.stringify(long));
      assert.ok(!long.some((z) => z['Zone Name'] === 'nova' && z['Host Name'] === 'fake-host-2'));
      assert.ok(demoZones.some((z) => z['Zone Name'] === zone), 'any user sees the zones');

      const [server] = await Promise.all([
        json(demoMv, ['server', 'create', '--wait', '--image', imageId, '--flavor', 'm1.tiny', '--nic', 'none', '--availability-zone', zone, name('zoned')]),
        fails(demoMv, ['server', 'create', '--image', imageId, '--flavor', 'm1.tiny', '--nic', 'none', '--availability-zone', name('no-zone'), name('lost')], /availability zone|HTTP 400/i),
      ]);
      assert.equal(server.status, 'ACTIVE');
      assert.equal(server['OS-EXT-AZ:availability_zone'], zone);
      const [placed] = await Promise.all([
        json(admin, ['server', 'show', server.id]),
        // Nova refuses to move hosts with instances to another zone.
        fails(admin, ['aggregate', 'set', '--zone', `${zone}-2`, name('agg')], /One or more hosts contain instances/),
      ]);
      assert.equal(placed['OS-EXT-SRV-ATTR:host'], 'fake-host-2');

      await ok(demo, ['server', 'delete', '--wait', server.id]);
      await ok(admin, ['aggregate', 'remove', 'host', name('agg'), 'fake-host-2']);
      await ok(admin, ['aggregate', 'delete', name('agg')]);
      await fails(admin, ['aggregate', 'show', name('agg')], /could not be found|No aggregate|HTTP 404/i);
    });
  });
});
