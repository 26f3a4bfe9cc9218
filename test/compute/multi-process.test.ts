// Compute across OS processes, as a real multi-host cloud runs: one `bin/nubo controller` (every API
// and the conductor, no agent) and two `bin/nubo compute --host mp-host-N --driver fake`, sharing a fresh
// PostgreSQL database (controller only) and RabbitMQ (everyone). Checks registration and liveness over the
// bus, scheduling across hosts, anti-affinity, delete releasing Placement allocations, and that a compute
// process killed with SIGKILL is reported down after service_down_time and no longer gets servers.
//
// Isolation: the AMQP driver's exchange and queue names are fixed (`nubo`, `nubo_conductor`,
// `nubo_compute.<host>`), so parallel runs on one broker would answer each other's calls. Each run gets a
// RabbitMQ vhost of its own (made with rabbitmqctl, deleted afterwards) and a database of its own.
// Needs NUBO_TEST_POSTGRES_URL and NUBO_TEST_RABBIT_URL (and rabbitmqctl for the broker's node); skips without.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { send, sleep, type ApiResponse } from '../support/in-process.js';
import { createDatabase, createVhost, ctl, dropDatabase, launch, multiProcessSkipReason, rabbitUrl, stop, transportUrlFor, until, type Proc } from '../support/processes.js';

const HOSTS = ['mp-host-1', 'mp-host-2'];
const SERVICE_DOWN_TIME_S = 3;
const REPORT_INTERVAL_S = 0.5;
const PLACEMENT = { 'OpenStack-API-Version': 'placement 1.28' };

describe('compute across processes: nubo controller + two nubo compute agents on PostgreSQL and RabbitMQ', { skip: multiProcessSkipReason, timeout: 60_000 }, () => {
  const runId = randomBytes(5).toString('hex');
  const dbName = `nubo_test_mp_${runId}`;
  const vhost = `nubo_test_mp_${runId}`;
  const adminPassword = `admin-${randomBytes(9).toString('base64url')}`;
  const dirs: string[] = [];
  const procs = new Map<string, Proc>();
  let dbCreated = false;
  let vhostCreated = false;
  let baseUrl = '';
  let token = '';
  let imageId = '';
  const servers = new Set<string>();

  const allLogs = () => [...procs.values()].map((p) => `--- ${p.name} (pid ${p.child.pid}) ---\n${p.log.text.slice(-4000)}`).join('\n');

  const call = (method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<ApiResponse> => {
    const h: Record<string, string> = { Accept: 'application/json', 'X-Auth-Token': token, ...headers };
    if (body !== undefined) h['Content-Type'] = 'application/json';
    const url = /^\/(identity|image|placement|compute)\//.test(path) ? `${baseUrl}${path}` : `${baseUrl}/compute/v2.1${path}`;
    return send(url, method, h, body === undefined ? undefined : JSON.stringify(body));
  };
  const nova = (method: string, path: string, body?: unknown) => call(method, path, body, { 'OpenStack-API-Version': 'compute 2.79' });

  const hypervisors = async () => {
    const res = await call('GET', '/os-hypervisors', undefined, { 'OpenStack-API-Version': 'compute 2.53' });
    assert.equal(res.status, 200, res.text);
    return res.body.hypervisors as { id: string; hypervisor_hostname: string; state: string; status: string }[];
  };
  const computeServices = async () => {
    const res = await call('GET', '/os-services?binary=nova-compute');
    assert.equal(res.status, 200, res.text);
    return res.body.services as { host: string; binary: string; state: string; status: string }[];
  };
  const stateOf = (list: { host?: string; hypervisor_hostname?: string; state: string }[], host: string) =>
    list.find((x) => (x.host ?? x.hypervisor_hostname) === host)?.state;

  const allocationsOf = async (consumer: string) => {
    const res = await call('GET', `/placement/allocations/${consumer}`, undefined, PLACEMENT);
    assert.equal(res.status, 200, res.text);
    return res.body.allocations as Record<string, { resources: Record<string, number> }>;
  };

  const boot = async (name: string, hints?: Record<string, unknown>) => {
    const body: Record<string, unknown> = { server: { name, flavorRef: '1', imageRef: imageId, networks: 'none' } };
    if (hints) body['os:scheduler_hints'] = hints;
    const res = await nova('POST', '/servers', body);
    assert.equal(res.status, 202, res.text);
    servers.add(res.body.server.id);
    return res.body.server.id as string;
  };
  const waitActive = async (id: string) => {
    let last: any;
    const server = await until(`server ${id} to leave BUILD`, async () => {
      const res = await nova('GET', `/servers/${id}`);
      assert.equal(res.status, 200, res.text);
      last = res.body.server;
      return last.status === 'BUILD' ? undefined : last;
    }, 20_000, () => `${last?.status}/${last?.['OS-EXT-STS:task_state']}\n${allLogs()}`);
    assert.equal(server.status, 'ACTIVE', `server ${id}: ${JSON.stringify(server.fault)}\n${allLogs()}`);
    return server;
  };
  const deleteServer = async (id: string) => {
    const res = await nova('DELETE', `/servers/${id}`);
    assert.equal(res.status, 204, res.text);
    await until(`server ${id} to be gone`, async () => ((await nova('GET', `/servers/${id}`)).status === 404 ? true : undefined), 20_000, allLogs);
    servers.delete(id);
  };

  before(async () => {
    const { url: transportUrl, user } = transportUrlFor(rabbitUrl, vhost);
    // The vhost and the database in parallel: rabbitmqctl takes a second or two per command.
    const made = await Promise.allSettled([
      createVhost(vhost, user, () => { vhostCreated = true; }),
      createDatabase(dbName).then((connection) => { dbCreated = true; return connection; }),
    ]);
    for (const r of made) if (r.status === 'rejected') throw r.reason;
    const connection = (made[1] as PromiseFulfilledResult<string>).value;

    const common = {
      NUBO_MESSAGING__TRANSPORT_URL: transportUrl,
      NUBO_DEFAULT__REPORT_INTERVAL: String(REPORT_INTERVAL_S),
      NUBO_DEFAULT__LOG_LEVEL: 'info',
    };
    const controllerDir = mkdtempSync(join(tmpdir(), 'nubo-mp-controller-'));
    dirs.push(controllerDir);
    const line = await launch('controller', ['controller', '--data-dir', controllerDir, '--host', '127.0.0.1', '--port', '0'], {
      ...common,
      NUBO_DATABASE__CONNECTION: connection,
      NUBO_DEFAULT__HOST: 'mp-controller',
      NUBO_DEFAULT__SERVICE_DOWN_TIME: String(SERVICE_DOWN_TIME_S),
      NUBO_IDENTITY__PASSWORD_HASH_ROUNDS: '4',
      NUBO_ADMIN_PASSWORD: adminPassword,
      NUBO_DEMO_PASSWORD: `demo-${randomBytes(9).toString('base64url')}`,
    }, /Nubo ready at (http:\/\/\S+)/, (p) => procs.set('controller', p));
    baseUrl = line[1];

    // The agents after the controller: the conductor already serves its topic, so they register at the first try.
    const agents = await Promise.allSettled(HOSTS.map(async (host) => {
      const dir = mkdtempSync(join(tmpdir(), `nubo-mp-${host}-`));
      dirs.push(dir);
      await launch(host, ['compute', '--host', host, '--driver', 'fake', '--data-dir', dir], common, new RegExp(`compute agent ${host} ready`), (p) => procs.set(host, p));
    }));
    for (const r of agents) if (r.status === 'rejected') throw r.reason;

    const auth = await send(`${baseUrl}/identity/v3/auth/tokens`, 'POST', { 'Content-Type': 'application/json' }, JSON.stringify({
      auth: { identity: { methods: ['password'], password: { user: { name: 'admin', domain: { id: 'default' }, password: adminPassword } } }, scope: { project: { name: 'admin', domain: { id: 'default' } } } },
    }));
    assert.equal(auth.status, 201, auth.text);
    token = auth.headers.get('x-subject-token')!;
  });

  after(async () => {
    const problems: unknown[] = [];
    const attempt = async (fn: () => Promise<unknown>) => { try { await fn(); } catch (err) { problems.push(err); } };
    await Promise.all([...procs.values()].map((p) => attempt(() => stop(p))));
    await Promise.all([
      dbCreated ? attempt(() => dropDatabase(dbName)) : undefined,
      vhostCreated ? attempt(() => ctl(['delete_vhost', vhost])) : undefined,
    ]);
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
    if (problems.length) throw problems[0];
  });

  it('lists both agents as hypervisors and up nova-compute services', async () => {
    let seen = '';
    await until('both hosts up in os-hypervisors and os-services', async () => {
      const [hv, svc] = await Promise.all([hypervisors(), computeServices()]);
      seen = JSON.stringify({ hv, svc });
      return HOSTS.every((h) => stateOf(hv, h) === 'up' && stateOf(svc, h) === 'up') ? true : undefined;
    }, 15_000, () => `${seen}\n${allLogs()}`);
    const hv = await hypervisors();
    assert.deepEqual(hv.map((h) => h.hypervisor_hostname).sort(), HOSTS, 'the controller runs no agent of its own');
    for (const h of hv) {
      assert.equal(h.status, 'enabled');
      // The node's id is its resource provider in Placement, made by the conductor on registration.
      const rp = await call('GET', `/placement/resource_providers/${h.id}/inventories`, undefined, PLACEMENT);
      assert.equal(rp.status, 200, rp.text);
      assert.deepEqual(Object.keys(rp.body.inventories).sort(), ['DISK_GB', 'MEMORY_MB', 'VCPU']);
    }
    const all = await call('GET', '/os-services');
    const binaries = all.body.services.filter((s: any) => s.host === 'mp-controller').map((s: any) => s.binary).sort();
    assert.ok(binaries.includes('nova-conductor'), `the controller registers its conductor: ${all.text}`);
  });

  it('boots servers to ACTIVE on both hosts', async () => {
    const created = await call('POST', '/image/v2/images', { name: `mp-image-${runId}`, disk_format: 'raw', container_format: 'bare' });
    assert.equal(created.status, 201, created.text);
    imageId = created.body.id;
    const upload = await send(`${baseUrl}/image/v2/images/${imageId}/file`, 'PUT', { 'X-Auth-Token': token, 'Content-Type': 'application/octet-stream' }, new Uint8Array(4096));
    assert.equal(upload.status, 204, upload.text);

    const ids: string[] = [];
    for (let i = 0; i < 4; i++) ids.push(await boot(`mp-${i}`));
    const hosts = new Map<string, string>();
    for (const id of ids) {
      const server = await waitActive(id);
      assert.ok(HOSTS.includes(server['OS-EXT-SRV-ATTR:host']), `server ${id} is on ${server['OS-EXT-SRV-ATTR:host']}`);
      assert.equal(server['OS-EXT-STS:power_state'], 1);
      hosts.set(id, server['OS-EXT-SRV-ATTR:host']);
      const allocations = Object.values(await allocationsOf(id));
      assert.equal(allocations.length, 1);
      assert.deepEqual(allocations[0].resources, { VCPU: 1, MEMORY_MB: 512, DISK_GB: 1 });
    }
    assert.deepEqual([...new Set(hosts.values())].sort(), HOSTS, `servers spread over both hosts: ${JSON.stringify([...hosts])}`);
  });

  it('puts the two members of an anti-affinity group on different hosts', async () => {
    const group = await call('POST', '/os-server-groups', { server_group: { name: `mp-spread-${runId}`, policy: 'anti-affinity' } }, { 'OpenStack-API-Version': 'compute 2.64' });
    assert.equal(group.status, 200, group.text);
    const groupId = group.body.server_group.id;
    const members = [await boot('mp-spread-0', { group: groupId }), await boot('mp-spread-1', { group: groupId })];
    const placed = [];
    for (const id of members) placed.push((await waitActive(id))['OS-EXT-SRV-ATTR:host']);
    assert.notEqual(placed[0], placed[1], `anti-affinity members on ${placed.join(' and ')}`);
    assert.deepEqual([...placed].sort(), HOSTS);
    const shown = await call('GET', `/os-server-groups/${groupId}`);
    assert.deepEqual([...shown.body.server_group.members].sort(), [...members].sort());

    // Delete everything: servers, group, image; then nothing is left in Placement.
    const ids = [...servers];
    await Promise.all(ids.map((id) => deleteServer(id)));
    for (const id of ids) assert.deepEqual(await allocationsOf(id), {}, `allocations of ${id} are gone`);
    for (const h of await hypervisors()) {
      const usages = await call('GET', `/placement/resource_providers/${h.id}/usages`, undefined, PLACEMENT);
      assert.equal(usages.status, 200, usages.text);
      assert.deepEqual(usages.body.usages, { DISK_GB: 0, MEMORY_MB: 0, VCPU: 0 }, `nothing used on ${h.hypervisor_hostname}`);
    }
    assert.equal((await call('DELETE', `/os-server-groups/${groupId}`)).status, 204);
    const list = await nova('GET', '/servers?all_tenants=1');
    assert.deepEqual(list.body.servers, []);
  });

  it('reports a SIGKILLed compute process down after service_down_time and schedules on the other host', async () => {
    const victim = procs.get('mp-host-2')!;
    await stop(victim, 'SIGKILL'); // kill -9: no chance to say goodbye to the conductor
    const status = await victim.exited;
    assert.equal(status.signal, 'SIGKILL');
    const killedAt = Date.now();

    let seen = '';
    await until('mp-host-2 to be reported down', async () => {
      const [hv, svc] = await Promise.all([hypervisors(), computeServices()]);
      seen = JSON.stringify({ hv, svc });
      return stateOf(svc, 'mp-host-2') === 'down' && stateOf(hv, 'mp-host-2') === 'down' ? true : undefined;
    }, (SERVICE_DOWN_TIME_S + 5) * 1000, () => seen);
    // Not before its last heartbeat is service_down_time old (it beat at most report_interval before the kill).
    assert.ok(Date.now() - killedAt >= (SERVICE_DOWN_TIME_S - REPORT_INTERVAL_S) * 1000 - 200, `down after ${Date.now() - killedAt} ms`);
    const svc = await computeServices();
    assert.equal(stateOf(svc, 'mp-host-1'), 'up', 'the other host keeps heartbeating');

    const ids = [await boot('mp-after-kill-0'), await boot('mp-after-kill-1')];
    for (const id of ids) {
      const server = await waitActive(id);
      assert.equal(server['OS-EXT-SRV-ATTR:host'], 'mp-host-1');
    }
    await Promise.all(ids.map((id) => deleteServer(id)));
    for (const id of ids) assert.deepEqual(await allocationsOf(id), {});
    assert.equal((await call('DELETE', `/image/v2/images/${imageId}`)).status, 204);
  });
});
