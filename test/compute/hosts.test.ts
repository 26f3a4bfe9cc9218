// os-services and os-hypervisors over HTTP on the in-process cloud with fake hosts: the agents
// register through the conductor and heartbeat; hypervisors list/detail/show/statistics/search
// at several microversions; services list, disable with a reason, enable, forced_down and
// delete (also refused while hosting a server); power states reach the conductor; a service
// goes down when its heartbeats stop; and Nova's 400/403/404/409 bodies.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { PowerState } from '../../src/compute/rpc.js';
import type { FakeDriver } from '../../src/compute/virt/fake.js';
import { assertError, sleep, startComputeCloud, type ComputeCloud } from './harness.js';

const HOSTS = ['fake-host-1', 'fake-host-2', 'fake-host-3', 'fake-host-4'];
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

describe('os-services and os-hypervisors', () => {
  let cc: ComputeCloud;

  before(async () => {
    cc = await startComputeCloud({ DEFAULT: { report_interval: '0.2', service_down_time: '2', sync_power_state_interval: '0.3' }, fake_driver: { vcpus: '16', memory_mb: '32768', local_gb: '400' } }, HOSTS.length);
  });
  after(async () => cc?.close());

  const hypervisors = async (microversion = '2.53', query = '') => {
    const res = await cc.get(`/os-hypervisors/detail${query}`, { microversion });
    assert.equal(res.status, 200, res.text);
    return res.body.hypervisors as any[];
  };
  const byName = async (name: string, microversion = '2.53') => (await hypervisors(microversion)).find((h) => h.hypervisor_hostname === name);
  const services = async (microversion = '2.53', query = '') => {
    const res = await cc.get(`/os-services${query}`, { microversion });
    assert.equal(res.status, 200, res.text);
    return res.body.services as any[];
  };
  const computeService = async (host: string, microversion = '2.53') => (await services(microversion, `?host=${host}&binary=nova-compute`))[0];
  const providerTraits = async (uuid: string) => {
    const res = await cc.get(`/placement/resource_providers/${uuid}/traits`, { headers: { 'OpenStack-API-Version': 'placement 1.6' } });
    assert.equal(res.status, 200, res.text);
    return res.body.traits as string[];
  };
  async function eventually(what: string, check: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!(await check())) {
      if (Date.now() > deadline) assert.fail(`timed out waiting until ${what}`);
      await sleep(100);
    }
  }

  it('lists every fake host as an up, enabled hypervisor', async () => {
    const res = await cc.get('/os-hypervisors');
    assert.equal(res.status, 200, res.text);
    const list = res.body.hypervisors as any[];
    assert.deepEqual(list.map((h) => h.hypervisor_hostname), HOSTS);
    for (const h of list) {
      assert.deepEqual(Object.keys(h).sort(), ['hypervisor_hostname', 'id', 'state', 'status']);
      assert.equal(h.state, 'up');
      assert.equal(h.status, 'enabled');
      assert.match(h.id, UUID);
    }
    assert.equal(res.body.hypervisors_links, undefined);
  });

  it('shows hypervisor details: sizes, usage with the reserved memory, type and version, service, cpu_info', async () => {
    const [old] = (await cc.get('/os-hypervisors/detail')).body.hypervisors;
    assert.equal(typeof old.cpu_info, 'string', 'cpu_info is a JSON string before 2.28');
    assert.equal(JSON.parse(old.cpu_info).arch, 'x86_64');
    const h = await byName('fake-host-1');
    assert.equal(typeof h.cpu_info, 'object');
    assert.equal(h.cpu_info.arch, 'x86_64');
    const service = await computeService('fake-host-1');
    assert.deepEqual({ ...h, id: undefined, cpu_info: undefined }, {
      id: undefined, cpu_info: undefined, hypervisor_hostname: 'fake-host-1', state: 'up', status: 'enabled',
      vcpus: 16, memory_mb: 32768, local_gb: 400, vcpus_used: 0, memory_mb_used: 512, local_gb_used: 0,
      hypervisor_type: 'fake', hypervisor_version: 1000, free_ram_mb: 32768 - 512, free_disk_gb: 400, current_workload: 0,
      running_vms: 0, disk_available_least: 400, host_ip: '127.0.0.1',
      service: { id: service.id, host: 'fake-host-1', disabled_reason: null },
    });
    const shown = await cc.get(`/os-hypervisors/${h.id}`, { microversion: '2.53' });
    assert.equal(shown.status, 200, shown.text);
    assert.deepEqual(shown.body.hypervisor, h);
    const providers = await cc.get(`/placement/resource_providers/${h.id}/inventories`);
    assert.equal(providers.status, 200, 'the hypervisor id is its resource provider uuid');
    assert.equal(providers.body.inventories.VCPU.allocation_ratio, 4);
    assert.equal(providers.body.inventories.MEMORY_MB.reserved, 512);
  });

  it('counts a server on its hypervisor: usage from Placement, running_vms, with_servers', async () => {
    const imageId = await cc.createImage({ visibility: 'public' });
    const created = await cc.boot({ name: 'on-a-host', imageRef: imageId, host: 'fake-host-2' }, { microversion: '2.74' });
    const server = await cc.waitServer(created.id);
    assert.equal(server.status, 'ACTIVE', JSON.stringify(server.fault));
    assert.equal(server['OS-EXT-SRV-ATTR:host'], 'fake-host-2');
    const h = await byName('fake-host-2');
    assert.deepEqual([h.vcpus_used, h.memory_mb_used, h.local_gb_used, h.running_vms], [1, 512 + 512, 1, 1]);

    const withServers = await cc.get('/os-hypervisors?with_servers=true', { microversion: '2.53' });
    assert.equal(withServers.status, 200, withServers.text);
    const entry = withServers.body.hypervisors.find((x: any) => x.hypervisor_hostname === 'fake-host-2');
    assert.deepEqual(entry.servers, [{ name: 'on-a-host', uuid: created.id }]);
    const empty = withServers.body.hypervisors.find((x: any) => x.hypervisor_hostname === 'fake-host-1');
    assert.equal(empty.servers, undefined, 'no servers key for an empty host before 2.75');
    const v275 = await cc.get('/os-hypervisors?with_servers=1', { microversion: '2.75' });
    assert.deepEqual(v275.body.hypervisors.find((x: any) => x.hypervisor_hostname === 'fake-host-1').servers, []);
    const oldRoute = await cc.get('/os-hypervisors/fake-host-2/servers');
    assert.equal(oldRoute.status, 200, oldRoute.text);
    assert.deepEqual(oldRoute.body.hypervisors[0].servers, [{ name: 'on-a-host', uuid: created.id }]);

    // Nova refuses to delete a compute service that still hosts instances.
    const service = await computeService('fake-host-2');
    assertError(await cc.delete(`/os-services/${service.id}`, { microversion: '2.53' }), 409, 'hosting instances');

    // The agent's periodic power-state sync tells the conductor what the hypervisor sees: a guest that stopped.
    const agent = cc.cloud.agents.find((a) => a.host === 'fake-host-2')!;
    (agent.driver as FakeDriver).setPowerState(created.id, PowerState.SHUTDOWN);
    const stopped = await cc.waitServer(created.id, (s) => s.status === 'SHUTOFF');
    assert.equal(stopped['OS-EXT-STS:power_state'], PowerState.SHUTDOWN);

    assert.equal((await cc.delete(`/servers/${created.id}`)).status, 204);
    await cc.waitServer(created.id, (s) => s.status === 'DELETED');
    await eventually('the usage is released', async () => (await byName('fake-host-2')).running_vms === 0);
    assert.equal((await byName('fake-host-2')).vcpus_used, 0);
  });

  it('gives statistics over enabled hypervisors', async () => {
    const res = await cc.get('/os-hypervisors/statistics');
    assert.equal(res.status, 200, res.text);
    const stats = res.body.hypervisor_statistics;
    assert.deepEqual(Object.keys(stats).sort(), ['count', 'current_workload', 'disk_available_least', 'free_disk_gb', 'free_ram_mb',
      'local_gb', 'local_gb_used', 'memory_mb', 'memory_mb_used', 'running_vms', 'vcpus', 'vcpus_used']);
    assert.equal(stats.count, HOSTS.length);
    assert.equal(stats.vcpus, 16 * HOSTS.length);
    assert.equal(stats.memory_mb, 32768 * HOSTS.length);
    assert.equal(stats.memory_mb_used, 512 * HOSTS.length);
    assert.equal(stats.free_ram_mb, (32768 - 512) * HOSTS.length);
  });

  it('searches by hostname pattern (the old routes before 2.53, the query parameter from 2.53) and pages from 2.33', async () => {
    const search = await cc.get('/os-hypervisors/host-3/search');
    assert.equal(search.status, 200, search.text);
    assert.deepEqual(search.body.hypervisors.map((h: any) => h.hypervisor_hostname), ['fake-host-3']);
    assertError(await cc.get('/os-hypervisors/nothing-like-it/search'), 404, "No hypervisor matching 'nothing-like-it' could be found.");
    assertError(await cc.get('/os-hypervisors/host-3/search', { microversion: '2.53' }), 404);
    const pattern = await cc.get('/os-hypervisors/detail?hypervisor_hostname_pattern=fake-host', { microversion: '2.53' });
    assert.equal(pattern.body.hypervisors.length, HOSTS.length);
    assertError(await cc.get('/os-hypervisors?hypervisor_hostname_pattern=zzz', { microversion: '2.53' }), 404, "No hypervisor matching 'zzz'");
    assertError(await cc.get('/os-hypervisors?hypervisor_hostname_pattern=fake&limit=1', { microversion: '2.53' }), 400, 'Paging over hypervisors');
    assertError(await cc.get('/os-hypervisors?unknown=1', { microversion: '2.53' }), 400, 'Additional properties are not allowed');
    assertError(await cc.get('/os-hypervisors?with_servers=maybe', { microversion: '2.53' }), 400);

    const page = await cc.get('/os-hypervisors?limit=2', { microversion: '2.33' });
    assert.equal(page.status, 200, page.text);
    assert.deepEqual(page.body.hypervisors.map((h: any) => h.hypervisor_hostname), HOSTS.slice(0, 2));
    const next = page.body.hypervisors_links?.[0];
    assert.equal(next?.rel, 'next');
    assert.match(next.href, /\/compute\/v2\.1\/os-hypervisors\?limit=2&marker=/);
    const second = await cc.get(next.href, { microversion: '2.33' });
    assert.deepEqual(second.body.hypervisors.map((h: any) => h.hypervisor_hostname), HOSTS.slice(2, 4));
    assertError(await cc.get('/os-hypervisors?marker=00000000-0000-0000-0000-000000000000', { microversion: '2.33' }), 400, 'marker [00000000-0000-0000-0000-000000000000] not found');
    const unpaged = await cc.get('/os-hypervisors?limit=1');
    assert.equal(unpaged.body.hypervisors.length, HOSTS.length, 'no paging before 2.33');
  });

  it('answers 404 for unknown hypervisors and 400 for a malformed uuid from 2.53', async () => {
    assertError(await cc.get('/os-hypervisors/4c2fb1ff-1ad2-4a4b-a2b4-2b5e2e4d3a11'), 404, "Hypervisor with ID '4c2fb1ff-1ad2-4a4b-a2b4-2b5e2e4d3a11' could not be found.");
    assertError(await cc.get('/os-hypervisors/not-a-uuid', { microversion: '2.53' }), 400, 'Invalid uuid not-a-uuid');
    const h = await byName('fake-host-1');
    const uptime = await cc.get(`/os-hypervisors/${h.id}/uptime`, { microversion: '2.53' });
    assert.equal(uptime.status, 200, uptime.text);
    assert.deepEqual(Object.keys(uptime.body.hypervisor).sort(), ['hypervisor_hostname', 'id', 'state', 'status', 'uptime']);
    assert.match(uptime.body.hypervisor.uptime, /^ \d\d:\d\d:\d\d up .*load average: [\d.]+, [\d.]+, [\d.]+$/);
    assertError(await cc.get('/os-hypervisors/4c2fb1ff-1ad2-4a4b-a2b4-2b5e2e4d3a11/uptime'), 404);
  });

  it('lists services with zones, state and filters; forced_down from 2.11; uuid ids', async () => {
    const all = await services('2.11');
    const compute = all.filter((s) => s.binary === 'nova-compute');
    assert.deepEqual(compute.map((s) => s.host).sort(), HOSTS);
    for (const s of compute) {
      assert.deepEqual(Object.keys(s).sort(), ['binary', 'disabled_reason', 'forced_down', 'host', 'id', 'state', 'status', 'updated_at', 'zone']);
      assert.equal(s.zone, 'nova');
      assert.equal(s.state, 'up');
      assert.equal(s.status, 'enabled');
      assert.equal(s.forced_down, false);
      assert.match(s.updated_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}$/);
    }
    const control = all.filter((s) => s.binary !== 'nova-compute');
    assert.deepEqual(control.map((s) => s.binary).sort(), ['nova-conductor', 'nova-scheduler']);
    for (const s of control) {
      assert.equal(s.zone, 'internal');
      assert.equal(s.state, 'up');
    }
    const old = await services('2.1');
    assert.equal(old[0].forced_down, undefined);
    assert.deepEqual((await services('2.1', '?host=fake-host-3')).map((s) => s.binary), ['nova-compute']);
    assert.deepEqual((await services('2.1', '?binary=nova-scheduler')).length, 1);
    assertError(await cc.get('/os-services?bogus=1', { microversion: '2.75' }), 400, 'Additional properties are not allowed');
  });

  it('disables with a reason, enables and forces down through the pre-2.53 actions', async () => {
    const disabled = await cc.put('/os-services/disable-log-reason', { host: 'fake-host-1', binary: 'nova-compute', disabled_reason: 'bad disk' });
    assert.equal(disabled.status, 200, disabled.text);
    assert.deepEqual(disabled.body, { service: { host: 'fake-host-1', binary: 'nova-compute', status: 'disabled', disabled_reason: 'bad disk' } });
    const s = await computeService('fake-host-1');
    assert.equal(s.status, 'disabled');
    assert.equal(s.disabled_reason, 'bad disk');
    const h = await byName('fake-host-1');
    assert.equal(h.status, 'disabled');
    assert.equal(h.service.disabled_reason, 'bad disk');
    assert.ok((await providerTraits(h.id)).includes('COMPUTE_STATUS_DISABLED'));
    assert.equal((await cc.get('/os-hypervisors/statistics')).body.hypervisor_statistics.count, HOSTS.length - 1);

    const enabled = await cc.put('/os-services/enable', { host: 'fake-host-1', binary: 'nova-compute' });
    assert.deepEqual(enabled.body, { service: { host: 'fake-host-1', binary: 'nova-compute', status: 'enabled' } });
    assert.equal((await computeService('fake-host-1')).disabled_reason, null);
    assert.ok(!(await providerTraits(h.id)).includes('COMPUTE_STATUS_DISABLED'));

    const plain = await cc.put('/os-services/disable', { host: 'fake-host-1', binary: 'nova-compute' });
    assert.deepEqual(plain.body, { service: { host: 'fake-host-1', binary: 'nova-compute', status: 'disabled' } });
    await cc.put('/os-services/enable', { host: 'fake-host-1', binary: 'nova-compute' });

    // Before 2.11 there is no force-down action, and the body may not carry forced_down.
    assertError(await cc.put('/os-services/force-down', { host: 'fake-host-1', binary: 'nova-compute' }), 404, 'Unknown action');
    assertError(await cc.put('/os-services/force-down', { host: 'fake-host-1', binary: 'nova-compute', forced_down: true }), 400, "'forced_down' was unexpected");
    assertError(await cc.put('/os-services/force-down', { host: 'fake-host-1', binary: 'nova-compute' }, { microversion: '2.11' }), 400, 'Missing forced_down field');
    const down = await cc.put('/os-services/force-down', { host: 'fake-host-1', binary: 'nova-compute', forced_down: true }, { microversion: '2.11' });
    assert.deepEqual(down.body, { service: { host: 'fake-host-1', binary: 'nova-compute', forced_down: true } });
    assert.equal((await computeService('fake-host-1', '2.11')).state, 'down');
    assert.equal((await computeService('fake-host-1', '2.11')).forced_down, true);
    await cc.put('/os-services/force-down', { host: 'fake-host-1', binary: 'nova-compute', forced_down: 'false' }, { microversion: '2.11' });
    assert.equal((await computeService('fake-host-1', '2.11')).state, 'up');

    assertError(await cc.put('/os-services/disable', { host: 'nowhere', binary: 'nova-compute' }), 404, 'Could not find binary nova-compute on host nowhere.');
    assertError(await cc.put('/os-services/disable-log-reason', { host: 'fake-host-1', binary: 'nova-compute' }), 400, 'Missing disabled reason field');
    assertError(await cc.put('/os-services/disable', { binary: 'nova-compute' }), 400, "'host' is a required property");
    assertError(await cc.put('/os-services/reboot', { host: 'fake-host-1', binary: 'nova-compute' }), 404, 'Unknown action');
    const scheduler = (await services('2.1', '?binary=nova-scheduler'))[0];
    assertError(await cc.put('/os-services/disable', { host: scheduler.host, binary: 'nova-scheduler' }), 400, 'Only nova-compute services can be updated');
  });

  it('updates a service by uuid from 2.53: status with reason, forced_down, Nova\'s refusals', async () => {
    const service = await computeService('fake-host-2');
    const res = await cc.put(`/os-services/${service.id}`, { status: 'disabled', disabled_reason: 'patching' }, { microversion: '2.53' });
    assert.equal(res.status, 200, res.text);
    assert.deepEqual({ ...res.body.service, updated_at: undefined }, {
      id: service.id, binary: 'nova-compute', host: 'fake-host-2', zone: 'nova', status: 'disabled', state: 'up',
      updated_at: undefined, disabled_reason: 'patching', forced_down: false,
    });
    const node = await byName('fake-host-2');
    assert.ok((await providerTraits(node.id)).includes('COMPUTE_STATUS_DISABLED'));
    assertError(await cc.put(`/os-services/${service.id}`, { status: 'enabled', disabled_reason: 'x' }, { microversion: '2.53' }), 400, "Specifying 'disabled_reason' with status 'enabled' is invalid.");
    const enabled = await cc.put(`/os-services/${service.id}`, { status: 'enabled' }, { microversion: '2.53' });
    assert.equal(enabled.body.service.status, 'enabled');
    assert.equal(enabled.body.service.disabled_reason, null);
    assert.ok(!(await providerTraits(node.id)).includes('COMPUTE_STATUS_DISABLED'));

    const forced = await cc.put(`/os-services/${service.id}`, { forced_down: true }, { microversion: '2.53' });
    assert.equal(forced.body.service.forced_down, true);
    assert.equal(forced.body.service.state, 'down');
    assert.equal((await byName('fake-host-2')).state, 'down');
    await cc.put(`/os-services/${service.id}`, { forced_down: false }, { microversion: '2.53' });
    assert.equal((await byName('fake-host-2')).state, 'up');

    assertError(await cc.put(`/os-services/${service.id}`, {}, { microversion: '2.53' }), 400, 'No updates were requested');
    assertError(await cc.put(`/os-services/${service.id}`, { status: 'off' }, { microversion: '2.53' }), 400, 'status');
    assertError(await cc.put(`/os-services/${service.id}`, { forced_down: 'perhaps' }, { microversion: '2.53' }), 400, 'forced_down');
    assertError(await cc.put('/os-services/disable', { status: 'disabled' }, { microversion: '2.53' }), 400, 'Invalid uuid disable');
    assertError(await cc.put('/os-services/6f3fd2e4-49a5-45a4-9c1c-5f0a0d3e2b11', { status: 'disabled' }, { microversion: '2.53' }), 404);
    const conductor = (await services('2.53', '?binary=nova-conductor'))[0];
    assertError(await cc.put(`/os-services/${conductor.id}`, { status: 'disabled' }, { microversion: '2.53' }), 400, 'Updating a nova-conductor service is not supported');
  });

  it('refuses project members with 403 in Nova\'s format', async () => {
    assertError(await cc.get('/os-services', { token: cc.demoToken }), 403, 'os_compute_api:os-services:list');
    assertError(await cc.get('/os-hypervisors', { token: cc.demoToken }), 403, 'os_compute_api:os-hypervisors:list');
    assertError(await cc.get('/os-hypervisors/detail', { token: cc.demoToken }), 403);
    assertError(await cc.get('/os-hypervisors/statistics', { token: cc.demoToken }), 403);
    assertError(await cc.put('/os-services/enable', { host: 'fake-host-1', binary: 'nova-compute' }, { token: cc.demoToken }), 403);
    const service = await computeService('fake-host-1');
    assertError(await cc.delete(`/os-services/${service.id}`, { token: cc.demoToken, microversion: '2.53' }), 403);
    assertError(await cc.get('/os-hypervisors', { token: '' }), 401);
  });

  it('reports a host down once its agent stops heartbeating for service_down_time', async () => {
    const agent = cc.cloud.agents.find((a) => a.host === 'fake-host-3')!;
    await agent.close();
    await eventually('fake-host-3 is down', async () => (await computeService('fake-host-3')).state === 'down');
    assert.equal((await byName('fake-host-3')).state, 'down');
    assert.equal((await computeService('fake-host-4')).state, 'up', 'the other hosts keep heartbeating');
  });

  it('deletes a compute service: its hypervisor and resource provider go too', async () => {
    const service = await computeService('fake-host-4');
    const node = await byName('fake-host-4');
    assertError(await cc.delete('/os-services/not-a-uuid', { microversion: '2.53' }), 400, 'Invalid uuid not-a-uuid');
    const res = await cc.delete(`/os-services/${service.id}`, { microversion: '2.53' });
    assert.equal(res.status, 204, res.text);
    assert.equal(res.text, '');
    assert.equal(await computeService('fake-host-4'), undefined);
    assert.equal(await byName('fake-host-4'), undefined);
    assertError(await cc.get(`/os-hypervisors/${node.id}`, { microversion: '2.53' }), 404);
    assert.equal((await cc.get(`/placement/resource_providers/${node.id}`)).status, 404);
    assertError(await cc.delete(`/os-services/${service.id}`, { microversion: '2.53' }), 404, `Service ${service.id} not found.`);
    await sleep(500);
    assert.equal(await computeService('fake-host-4'), undefined, 'its still-running agent does not bring it back');
  });
});
