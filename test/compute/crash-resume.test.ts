// The build workflow survives a crash: `bin/nubo up` (two fake hosts, slow spawns) is killed
// with SIGKILL while servers are spawning and started again on the same data. The resumed
// workflows finish every server ACTIVE, and Placement holds exactly one allocation per server
// on the host it runs on — nothing stuck in a task state, nothing leaked.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startCloud, type Cloud } from '../support/cloud.js';
import { send, sleep } from '../support/in-process.js';

describe('build workflows across a controller crash', () => {
  let cloud: Cloud;
  let token = '';

  const base = () => cloud.url.replace(/\/identity\/v3$/, '');
  const call = async (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) => {
    const res = await send(`${base()}${path}`, method, { 'X-Auth-Token': token, 'Content-Type': 'application/json', 'OpenStack-API-Version': 'compute 2.79', ...headers },
      body === undefined ? undefined : JSON.stringify(body));
    return res;
  };
  const login = async () => {
    const res = await send(`${cloud.url}/auth/tokens`, 'POST', { 'Content-Type': 'application/json' }, JSON.stringify({
      auth: { identity: { methods: ['password'], password: { user: { name: 'admin', domain: { id: 'default' }, password: cloud.adminEnv.OS_PASSWORD } } }, scope: { project: { name: 'admin', domain: { id: 'default' } } } },
    }));
    assert.equal(res.status, 201, res.text);
    token = res.headers.get('x-subject-token')!;
  };
  const servers = async () => (await call('GET', '/compute/v2.1/servers/detail')).body.servers as any[];

  before(async () => {
    cloud = await startCloud({ env: { NUBO_COMPUTE__FAKE_HOSTS: '2', NUBO_FAKE_DRIVER__SPAWN_DELAY_MS: '1500', NUBO_DEFAULT__LOG_LEVEL: 'warn' } });
    await login();
  });
  after(async () => cloud?.stop());

  it('finishes every build after SIGKILL and holds exactly the allocations of the running servers', async () => {
    const image = await call('POST', '/image/v2/images', { name: 'img', disk_format: 'raw', container_format: 'bare' });
    assert.equal(image.status, 201, image.text);
    const upload = await send(`${base()}/image/v2/images/${image.body.id}/file`, 'PUT', { 'X-Auth-Token': token, 'Content-Type': 'application/octet-stream' }, new Uint8Array(512));
    assert.equal(upload.status, 204, upload.text);
    const created = await call('POST', '/compute/v2.1/servers', { server: { name: 'crash', flavorRef: '1', imageRef: image.body.id, networks: 'none', min_count: 4, max_count: 4 } });
    assert.equal(created.status, 202, created.text);

    // Kill the controller while every server has a host and is spawning there.
    for (let i = 0; ; i++) {
      const list = await servers();
      if (list.length === 4 && list.every((s) => s['OS-EXT-STS:task_state'] === 'spawning')) break;
      assert.ok(i < 200, `servers never all reached spawning: ${JSON.stringify(list.map((s) => s['OS-EXT-STS:task_state']))}`);
      await sleep(20);
    }
    await cloud.restart({ kill: true });
    assert.equal(cloud.lastExit?.signal, 'SIGKILL');
    await login();

    let list: any[] = [];
    for (let i = 0; ; i++) {
      list = await servers();
      if (list.every((s) => s.status !== 'BUILD')) break;
      assert.ok(i < 300, `builds did not finish after the restart: ${JSON.stringify(list.map((s) => [s.status, s['OS-EXT-STS:task_state']]))}`);
      await sleep(50);
    }
    assert.deepEqual(list.map((s) => s.status), ['ACTIVE', 'ACTIVE', 'ACTIVE', 'ACTIVE'], JSON.stringify(list.map((s) => s.fault)));
    assert.ok(list.every((s) => s['OS-EXT-STS:task_state'] === null));

    const providers = (await call('GET', '/placement/resource_providers', undefined, { 'OpenStack-API-Version': 'placement 1.14' })).body.resource_providers as any[];
    const providerOfHost = new Map(providers.map((p) => [p.name, p.uuid]));
    for (const server of list) {
      const allocations = (await call('GET', `/placement/allocations/${server.id}`, undefined, { 'OpenStack-API-Version': 'placement 1.28' })).body.allocations;
      assert.deepEqual(Object.keys(allocations), [providerOfHost.get(server['OS-EXT-SRV-ATTR:hypervisor_hostname'])], `allocations of ${server.id}`);
    }
    let used = 0;
    for (const uuid of providerOfHost.values()) {
      const usages = (await call('GET', `/placement/resource_providers/${uuid}/usages`, undefined, { 'OpenStack-API-Version': 'placement 1.14' })).body.usages;
      used += usages.MEMORY_MB ?? 0;
    }
    assert.equal(used, 4 * 512, 'Placement counts the memory of the four servers, once each');
  });
});
