// Networking quotas over HTTP: defaults, per-project limits (admin only), details with usage,
// list of projects with limits, reset, and creates refused with 409 OverQuota past a limit.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { assertNeutronError, startNetworkCloud, type NetworkCloud, type ProjectToken } from './harness.js';

describe('network quotas', () => {
  let nc: NetworkCloud;
  let user: ProjectToken;

  before(async () => {
    nc = await startNetworkCloud({ QUOTAS: { quota_router: '7' } });
    user = await nc.projectUser('quota-user');
  });
  after(() => nc.close());

  it('shows Neutron defaults, with [QUOTAS] overrides', async () => {
    const shown = await nc.get(`/quotas/${user.projectId}`, { token: user.token });
    assert.equal(shown.status, 200, shown.text);
    assert.deepEqual(shown.body.quota, { network: 100, subnet: 100, subnetpool: -1, port: 500, router: 7, floatingip: 50, security_group: 10, security_group_rule: 100 });
    assert.deepEqual((await nc.get(`/quotas/${user.projectId}/default`)).body.quota, shown.body.quota);
    assertNeutronError(await nc.get(`/quotas/${nc.demoProject}`, { token: user.token }), 403, 'PolicyNotAuthorized');
    assertNeutronError(await nc.get('/quotas', { token: user.token }), 403, 'PolicyNotAuthorized');
  });

  it('sets limits, counts usage, refuses creates past the limit and resets', async () => {
    assertNeutronError(await nc.put(`/quotas/${user.projectId}`, { quota: { network: 3 } }, { token: user.token }), 403, 'PolicyNotAuthorized');
    const set = await nc.put(`/quotas/${user.projectId}`, { quota: { network: 2, port: '1' } });
    assert.equal(set.status, 200, set.text);
    assert.equal(set.body.quota.network, 2);
    assert.equal(set.body.quota.port, 1);
    assertNeutronError(await nc.put(`/quotas/${user.projectId}`, { quota: { network: 'lots' } }), 400);
    assertNeutronError(await nc.put(`/quotas/${user.projectId}`, { quota: { widgets: 1 } }), 400);
    assert.ok((await nc.get('/quotas')).body.quotas.some((q: any) => q.project_id === user.projectId && q.network === 2));

    const network = await nc.network({ port_security_enabled: false }, user.token);
    await nc.network({}, user.token);
    assertNeutronError(await nc.post('/networks', { network: { name: 'third' } }, { token: user.token }), 409, 'OverQuota', "['network']");
    await nc.port(network.id, {}, user.token);
    assertNeutronError(await nc.post('/ports', { port: { network_id: network.id } }, { token: user.token }), 409, 'OverQuota', "['port']");

    const details = await nc.get(`/quotas/${user.projectId}/details.json`, { token: user.token });
    assert.equal(details.status, 200, details.text);
    assert.deepEqual(details.body.quota.network, { limit: 2, used: 2, reserved: 0 });
    assert.deepEqual(details.body.quota.port, { limit: 1, used: 1, reserved: 0 });
    assert.equal(details.body.quota.subnet.used, 0);

    assert.equal((await nc.delete(`/quotas/${user.projectId}`)).status, 204);
    assert.equal((await nc.get(`/quotas/${user.projectId}`)).body.quota.network, 100);
    await nc.network({ name: 'third' }, user.token);
  });
});
