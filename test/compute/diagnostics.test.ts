// os-server-diagnostics on fake hosts over real HTTP: the pre-2.48 flat dict and the 2.48 standard
// shape, counters that grow, admin-only policy, 409 for servers without a running guest, 404.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { FakeDriver, fakeDriverSettings } from '../../src/compute/virt/fake.js';
import { Config } from '../../src/core/config.js';
import { assertError, sleep, startComputeCloud, type ComputeCloud } from './harness.js';

describe('server diagnostics', () => {
  let cc: ComputeCloud;
  let imageId: string;
  let server: any;

  before(async () => {
    // A spawn takes a while, so a server can be caught building.
    cc = await startComputeCloud({ fake_driver: { spawn_delay_ms: '600' } }, 1);
    imageId = await cc.createImage({ visibility: 'public' });
    server = await cc.bootActive({ name: 'diag', imageRef: imageId }, { token: cc.demoToken });
  });
  after(async () => cc?.close());

  it('from 2.48: the standard shape, with every field and counters that grow with uptime', async () => {
    const res = await cc.get(`/servers/${server.id}/diagnostics`, { microversion: '2.48' });
    assert.equal(res.status, 200, res.text);
    const d = res.body;
    assert.deepEqual(Object.keys(d).sort(), ['config_drive', 'cpu_details', 'disk_details', 'driver', 'hypervisor', 'hypervisor_os', 'memory_details',
      'nic_details', 'num_cpus', 'num_disks', 'num_nics', 'state', 'uptime']);
    assert.equal(d.state, 'running');
    assert.equal(d.driver, 'fake');
    assert.equal(d.config_drive, false);
    assert.ok(Number.isInteger(d.uptime) && d.uptime >= 0, res.text);
    // Flavor 1 (m1.tiny): 1 vCPU, 512 MiB, a root disk only, and no networks were asked for.
    assert.equal(d.num_cpus, 1);
    assert.equal(d.num_disks, 1);
    assert.equal(d.num_nics, 0);
    assert.deepEqual(d.nic_details, []);
    assert.equal(d.memory_details.maximum, 512);
    assert.ok(d.memory_details.used > 0 && d.memory_details.used <= 512, res.text);
    assert.deepEqual(Object.keys(d.cpu_details[0]).sort(), ['id', 'time', 'utilisation']);
    assert.equal(d.cpu_details[0].id, 0);
    assert.deepEqual(Object.keys(d.disk_details[0]).sort(), ['errors_count', 'read_bytes', 'read_requests', 'write_bytes', 'write_requests']);

    await sleep(300);
    const later = (await cc.get(`/servers/${server.id}/diagnostics`, { microversion: '2.79' })).body;
    assert.ok(later.cpu_details[0].time > d.cpu_details[0].time, 'CPU time grows');
    assert.ok(later.disk_details[0].read_bytes > d.disk_details[0].read_bytes, 'disk reads grow');
    assert.ok(later.disk_details[0].write_bytes > d.disk_details[0].write_bytes, 'disk writes grow');
    assert.ok(later.uptime >= d.uptime);
  });

  it('before 2.48: the flat dict keyed as Nova\'s libvirt driver (cpu0_time, memory in KiB, vda_*)', async () => {
    const res = await cc.get(`/servers/${server.id}/diagnostics`);
    assert.equal(res.status, 200, res.text);
    const d = res.body;
    assert.equal(d.memory, 512 * 1024);
    for (const key of ['cpu0_time', 'memory-rss', 'vda_read', 'vda_read_req', 'vda_write', 'vda_write_req', 'vda_errors']) {
      assert.equal(typeof d[key], 'number', `${key} in ${res.text}`);
    }
    assert.equal(d.state, undefined, 'no standard fields before 2.48');
    assert.equal((await cc.get(`/servers/${server.id}/diagnostics`, { microversion: '2.47' })).body.memory, 512 * 1024);
  });

  it('is admin only (403 for the owner, also for an unknown server); 404 for an unknown server', async () => {
    assertError(await cc.get(`/servers/${server.id}/diagnostics`, { token: cc.demoToken }), 403, 'os_compute_api:os-server-diagnostics');
    assertError(await cc.get('/servers/00000000-0000-0000-0000-000000000000/diagnostics', { token: cc.demoToken }), 403);
    assertError(await cc.get('/servers/00000000-0000-0000-0000-000000000000/diagnostics', { microversion: '2.48' }), 404);
  });

  it('501 when the host\'s driver has no diagnostics (Nova\'s NotImplementedError)', async () => {
    // The agent asks its driver at each call: this one stands for a driver without the optional method.
    const driver = cc.cloud.agents[0]!.driver as unknown as Record<string, unknown>;
    driver.diagnostics = undefined;
    try {
      assertError(await cc.get(`/servers/${server.id}/diagnostics`, { microversion: '2.48' }), 501, 'The requested functionality is not supported.');
    } finally {
      delete driver.diagnostics;
    }
    assert.equal((await cc.get(`/servers/${server.id}/diagnostics`)).status, 200);
  });

  it('409 while the guest does not run: building, paused, stopped, shelved (offloaded: no host)', async () => {
    const building = await cc.boot({ name: 'diag-building', imageRef: imageId });
    const early = await cc.get(`/servers/${building.id}/diagnostics`, { microversion: '2.48' });
    assert.equal(early.status, 409, early.text);
    assert.match((Object.values(early.body)[0] as any).message, new RegExp(`^(Instance ${building.id} is not ready|Cannot 'get_diagnostics' instance ${building.id} while it is in power state pending)$`));
    await cc.waitServer(building.id);

    const other = await cc.bootActive({ name: 'diag-other', imageRef: imageId });
    assert.equal((await cc.act(other.id, { pause: null })).status, 202);
    await cc.waitServer(other.id, (s) => s.status === 'PAUSED');
    assertError(await cc.get(`/servers/${other.id}/diagnostics`, { microversion: '2.48' }), 409, `Cannot 'get_diagnostics' instance ${other.id} while it is in power state paused`);
    assert.equal((await cc.act(other.id, { unpause: null })).status, 202);
    await cc.waitServer(other.id, (s) => s.status === 'ACTIVE' && s['OS-EXT-STS:task_state'] === null);
    assert.equal((await cc.get(`/servers/${other.id}/diagnostics`, { microversion: '2.48' })).status, 200);

    assert.equal((await cc.act(other.id, { 'os-stop': null })).status, 202);
    await cc.waitServer(other.id, (s) => s.status === 'SHUTOFF');
    assertError(await cc.get(`/servers/${other.id}/diagnostics`), 409, `Cannot 'get_diagnostics' instance ${other.id} while it is in power state shutdown`);

    assert.equal((await cc.act(building.id, { shelve: null })).status, 202);
    await cc.waitServer(building.id, (s) => s.status === 'SHELVED_OFFLOADED');
    assertError(await cc.get(`/servers/${building.id}/diagnostics`, { microversion: '2.48' }), 409, `Instance ${building.id} is not ready`);
  });
});

describe('fake driver diagnostics', () => {
  it('names NICs as libvirt\'s tap devices and counts ephemeral and swap disks', async () => {
    const driver = new FakeDriver(fakeDriverSettings(new Config({})));
    const spec = {
      uuid: '11111111-2222-3333-4444-555555555555', name: 'n', hostname: 'n', projectId: 'p', userId: 'u',
      flavor: { id: 'f', name: 'f', vcpus: 2, memoryMb: 256, rootGb: 1, ephemeralGb: 1, swapMb: 64, extraSpecs: {} },
      image: null, keyData: null, userData: null, metadata: {}, configDrive: true, adminPass: null,
      vifs: [{ portId: 'abcdef01-2345-6789-abcd-ef0123456789', networkId: 'n', macAddress: 'fa:16:3e:00:00:01', mtu: 1500, vifType: 'ovs', vifDetails: {}, fixedIps: [] }],
    };
    await driver.spawn(spec);
    await sleep(20);
    const d = await driver.diagnostics(spec.uuid);
    assert.equal(d.cpuDetails.length, 2);
    assert.deepEqual(d.diskDetails.map((k) => k.name), ['vda', 'vdb', 'vdc']);
    assert.equal(d.configDrive, true);
    assert.equal(d.nicDetails.length, 1);
    assert.equal(d.nicDetails[0]!.name, 'tapabcdef01-23');
    assert.equal(d.nicDetails[0]!.macAddress, 'fa:16:3e:00:00:01');
    assert.ok(d.nicDetails[0]!.rxOctets! > 0);
    await driver.destroy(spec.uuid);
    await assert.rejects(driver.diagnostics(spec.uuid), /no instance/);
  });
});
