// Quotas and limits over HTTP: defaults from [quota], the resources each microversion shows,
// project and per-user limits (validation, in-use floor, force, user ≤ project), delete,
// quota classes (the default class feeds every project), /limits with usage counted from
// real servers and server groups, and the 403 a server create gets past the instance quota.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { assertError, startComputeCloud, unique, type ComputeCloud } from './harness.js';

describe('quotas and limits', () => {
  let cc: ComputeCloud;
  let imageId: string;

  before(async () => {
    cc = await startComputeCloud({ quota: { cores: '8', injected_file_path_length: '200' } }, 1);
    imageId = await cc.createImage({ visibility: 'public' });
  });
  after(async () => cc?.close());

  it('shows defaults from [quota], with the resources of each microversion', async () => {
    const old = await cc.get(`/os-quota-sets/${cc.demoProject}/defaults`, { token: cc.demoToken });
    assert.equal(old.status, 200, old.text);
    assert.deepEqual(old.body.quota_set, {
      id: cc.demoProject, cores: 8, injected_files: 5, injected_file_content_bytes: 10240, injected_file_path_bytes: 200, instances: 10,
      key_pairs: 100, metadata_items: 128, ram: 51200, server_groups: 10, server_group_members: 10,
      fixed_ips: -1, floating_ips: -1, security_groups: -1, security_group_rules: -1,
    });
    const v236 = await cc.get(`/os-quota-sets/${cc.demoProject}`, { microversion: '2.36', token: cc.demoToken });
    assert.deepEqual(Object.keys(v236.body.quota_set).sort(), ['cores', 'id', 'injected_file_content_bytes', 'injected_file_path_bytes', 'injected_files',
      'instances', 'key_pairs', 'metadata_items', 'ram', 'server_group_members', 'server_groups']);
    const v257 = await cc.get(`/os-quota-sets/${cc.demoProject}`, { microversion: '2.57', token: cc.demoToken });
    assert.deepEqual(Object.keys(v257.body.quota_set).sort(), ['cores', 'id', 'instances', 'key_pairs', 'metadata_items', 'ram', 'server_group_members', 'server_groups']);
    // Another project's quotas are not the demo user's to read.
    assertError(await cc.get(`/os-quota-sets/${cc.adminProject}`, { token: cc.demoToken }), 403, 'os_compute_api:os-quota-sets:show');
  });

  it('sets project limits (admin only), validates them and deletes them', async () => {
    const who = await cc.projectUser(unique('q'));
    const set = await cc.put(`/os-quota-sets/${who.projectId}`, { quota_set: { instances: 3, ram: '4096', cores: -1 } }, { microversion: '2.57' });
    assert.equal(set.status, 200, set.text);
    assert.equal(set.body.quota_set.id, undefined);
    assert.deepEqual([set.body.quota_set.instances, set.body.quota_set.ram, set.body.quota_set.cores], [3, 4096, -1]);
    assert.equal((await cc.get(`/os-quota-sets/${who.projectId}`, { token: who.token })).body.quota_set.instances, 3);

    assertError(await cc.put(`/os-quota-sets/${who.projectId}`, { quota_set: { instances: 5 } }, { token: who.token }), 403, 'os_compute_api:os-quota-sets:update');
    assertError(await cc.put(`/os-quota-sets/${who.projectId}`, { quota_set: { instances: -2 } }), 400, 'Invalid input for field/attribute instances. Value: -2. -2 is less than the minimum of -1');
    assertError(await cc.put(`/os-quota-sets/${who.projectId}`, { quota_set: { instances: 'ten' } }), 400, /'ten' does not match/);
    assertError(await cc.put(`/os-quota-sets/${who.projectId}`, { quota_set: { bogus: 1 } }), 400, "Additional properties are not allowed ('bogus' was unexpected)");
    assertError(await cc.put(`/os-quota-sets/${who.projectId}`, { quota_set: { floating_ips: 1 } }, { microversion: '2.36' }), 400, "('floating_ips' was unexpected)");
    assertError(await cc.put(`/os-quota-sets/${who.projectId}`, { quota_set: { injected_files: 1 } }, { microversion: '2.57' }), 400, "('injected_files' was unexpected)");
    assert.equal((await cc.put(`/os-quota-sets/${who.projectId}`, { quota_set: { floating_ips: 1 } })).status, 200);

    const deleted = await cc.delete(`/os-quota-sets/${who.projectId}`);
    assert.equal(deleted.status, 202);
    assert.equal((await cc.get(`/os-quota-sets/${who.projectId}`)).body.quota_set.instances, 10);
    assertError(await cc.delete(`/os-quota-sets/${who.projectId}`, { token: who.token }), 403);
  });

  it('refuses limits below usage unless forced; user limits stay within the project\'s', async () => {
    const who = await cc.projectUser(unique('use'));
    const a = await cc.boot({ name: 'q-a', imageRef: imageId, flavorRef: '1' }, { token: who.token });
    const b = await cc.boot({ name: 'q-b', imageRef: imageId, flavorRef: '1' }, { token: who.token });
    await cc.waitServer(a.id, undefined, who.token);
    await cc.waitServer(b.id, undefined, who.token);

    const detail = await cc.get(`/os-quota-sets/${who.projectId}/detail`, { token: who.token });
    assert.equal(detail.status, 200, detail.text);
    assert.deepEqual(detail.body.quota_set.instances, { limit: 10, in_use: 2, reserved: 0 });
    assert.deepEqual(detail.body.quota_set.cores, { limit: 8, in_use: 2, reserved: 0 });
    assert.deepEqual(detail.body.quota_set.ram, { limit: 51200, in_use: 1024, reserved: 0 });
    assert.deepEqual(detail.body.quota_set.key_pairs, { limit: 100, in_use: 0, reserved: 0 });

    assertError(await cc.put(`/os-quota-sets/${who.projectId}`, { quota_set: { instances: 1 } }), 400,
      'Quota limit 1 for instances must be greater than or equal to already used and reserved 2.');
    const forced = await cc.put(`/os-quota-sets/${who.projectId}`, { quota_set: { instances: 1, force: true } });
    assert.equal(forced.status, 200, forced.text);
    assert.equal(forced.body.quota_set.instances, 1);
    assert.equal(forced.body.quota_set.force, undefined);

    // Server create past the limit: Nova's 403 message.
    const over = await cc.post('/servers', { server: { name: 'q-c', imageRef: imageId, flavorRef: '1', networks: 'none' } }, { token: who.token, microversion: '2.79' });
    assertError(over, 403, 'Quota exceeded for instances: Requested 1, but already used 2 of 1 instances');

    // Per-user limits: at most what the project has, at least what the user uses.
    await cc.put(`/os-quota-sets/${who.projectId}`, { quota_set: { instances: 6 } });
    assertError(await cc.put(`/os-quota-sets/${who.projectId}?user_id=${who.userId}`, { quota_set: { instances: 7 } }), 400,
      'Quota limit 7 for instances must be less than or equal to 6.');
    assertError(await cc.put(`/os-quota-sets/${who.projectId}?user_id=${who.userId}`, { quota_set: { instances: 1 } }), 400,
      'Quota limit 1 for instances must be greater than or equal to already used and reserved 2.');
    const user = await cc.put(`/os-quota-sets/${who.projectId}?user_id=${who.userId}`, { quota_set: { instances: 4 } });
    assert.equal(user.status, 200, user.text);
    assert.equal(user.body.quota_set.instances, 4);
    assert.equal((await cc.get(`/os-quota-sets/${who.projectId}?user_id=${who.userId}`)).body.quota_set.instances, 4);
    assert.equal((await cc.get(`/os-quota-sets/${who.projectId}`)).body.quota_set.instances, 6);
    // The project cannot go below what its users were given.
    assertError(await cc.put(`/os-quota-sets/${who.projectId}`, { quota_set: { instances: 3 } }), 400,
      'Quota limit 3 for instances must be greater than or equal to already used and reserved 4.');
    assert.equal((await cc.delete(`/os-quota-sets/${who.projectId}?user_id=${who.userId}`)).status, 202);
    assert.equal((await cc.get(`/os-quota-sets/${who.projectId}?user_id=${who.userId}`)).body.quota_set.instances, 6);

    // Cores: flavor 3 (2 vCPUs) twice is 4 more cores than 8 - 2 allows.
    const tooBig = await cc.post('/servers', { server: { name: 'q-d', imageRef: imageId, flavorRef: '3', networks: 'none', min_count: 4 } }, { token: who.token, microversion: '2.79' });
    assertError(tooBig, 403, /^Quota exceeded for cores: Requested 8, but already used 2 of 8 cores$/);

    // Deleted servers stop counting.
    for (const s of [a, b]) assert.equal((await cc.delete(`/servers/${s.id}`, { token: who.token })).status, 204);
    for (const s of [a, b]) await cc.waitServer(s.id, (x) => x.status === 'DELETED', who.token);
    assert.equal((await cc.get(`/os-quota-sets/${who.projectId}/detail`)).body.quota_set.instances.in_use, 0);
  });

  it('reports /limits with the microversion\'s keys and usage', async () => {
    const who = await cc.projectUser(unique('lim'));
    const s = await cc.boot({ name: 'lim-a', imageRef: imageId, flavorRef: '2' }, { token: who.token });
    await cc.waitServer(s.id, undefined, who.token);
    assert.equal((await cc.post('/os-server-groups', { server_group: { name: 'g', policies: ['affinity'] } }, { token: who.token })).status, 200);

    const old = await cc.get('/limits', { token: who.token });
    assert.equal(old.status, 200, old.text);
    assert.deepEqual(old.body.limits.rate, []);
    assert.deepEqual(old.body.limits.absolute, {
      maxTotalRAMSize: 51200, maxTotalInstances: 10, maxTotalCores: 8, maxTotalKeypairs: 100, maxTotalFloatingIps: -1,
      maxServerMeta: 128, maxImageMeta: 128, maxPersonality: 5, maxPersonalitySize: 10240, maxSecurityGroups: -1,
      maxSecurityGroupRules: -1, maxServerGroups: 10, maxServerGroupMembers: 10,
      totalRAMUsed: 2048, totalCoresUsed: 1, totalInstancesUsed: 1, totalFloatingIpsUsed: 0, totalSecurityGroupsUsed: 0, totalServerGroupsUsed: 1,
    });
    const v239 = await cc.get('/limits', { token: who.token, microversion: '2.39' });
    assert.equal(v239.body.limits.absolute.maxImageMeta, undefined);
    assert.equal(v239.body.limits.absolute.maxTotalFloatingIps, undefined);
    assert.equal(v239.body.limits.absolute.maxPersonality, 5);
    const v257 = await cc.get('/limits', { token: who.token, microversion: '2.57' });
    assert.deepEqual(Object.keys(v257.body.limits.absolute).sort(), ['maxServerGroupMembers', 'maxServerGroups', 'maxServerMeta', 'maxTotalCores',
      'maxTotalInstances', 'maxTotalKeypairs', 'maxTotalRAMSize', 'totalCoresUsed', 'totalInstancesUsed', 'totalRAMUsed', 'totalServerGroupsUsed']);

    // Another project's limits: admins only.
    const theirs = await cc.get(`/limits?tenant_id=${who.projectId}`);
    assert.equal(theirs.body.limits.absolute.totalInstancesUsed, 1);
    assertError(await cc.get(`/limits?tenant_id=${cc.adminProject}`, { token: who.token }), 403, 'os_compute_api:limits:other_project');
    await cc.delete(`/servers/${s.id}`, { token: who.token });
  });

  it('keeps quota classes; the default class sets every project\'s defaults', async () => {
    const shown = await cc.get('/os-quota-class-sets/default');
    assert.equal(shown.status, 200, shown.text);
    assert.equal(shown.body.quota_class_set.id, 'default');
    assert.equal(shown.body.quota_class_set.server_groups, undefined); // only from 2.50
    assert.equal(shown.body.quota_class_set.fixed_ips, -1);
    assert.equal((await cc.get('/os-quota-class-sets/default', { microversion: '2.50' })).body.quota_class_set.server_groups, 10);
    assertError(await cc.get('/os-quota-class-sets/default', { token: cc.demoToken }), 403, 'os_compute_api:os-quota-class-sets:show');
    assertError(await cc.put('/os-quota-class-sets/default', { quota_class_set: { instances: 1 } }, { token: cc.demoToken }), 403);

    const updated = await cc.put('/os-quota-class-sets/default', { quota_class_set: { instances: 25, metadata_items: '64' } }, { microversion: '2.57' });
    assert.equal(updated.status, 200, updated.text);
    assert.equal(updated.body.quota_class_set.id, undefined);
    assert.equal(updated.body.quota_class_set.instances, 25);
    assert.equal(updated.body.quota_class_set.injected_files, undefined);
    assertError(await cc.put('/os-quota-class-sets/default', { quota_class_set: { fixed_ips: 1 } }, { microversion: '2.50' }), 400, "('fixed_ips' was unexpected)");
    assertError(await cc.put('/os-quota-class-sets/default', { quota_class_set: { instances: -5 } }), 400, /less than the minimum of -1/);

    const who = await cc.projectUser(unique('cls'));
    const limits = (await cc.get(`/os-quota-sets/${who.projectId}`, { token: who.token })).body.quota_set;
    assert.equal(limits.instances, 25);
    assert.equal(limits.metadata_items, 64);
    assert.equal((await cc.get(`/os-quota-sets/${who.projectId}/defaults`, { token: who.token })).body.quota_set.instances, 25);
    // Other classes only record values.
    assert.equal((await cc.put('/os-quota-class-sets/gold', { quota_class_set: { cores: 99 } })).body.quota_class_set.cores, 99);
    assert.equal((await cc.get('/os-quota-class-sets/gold')).body.quota_class_set.cores, 99);
    assert.equal((await cc.get(`/os-quota-sets/${who.projectId}`)).body.quota_set.cores, 8);
    await cc.put('/os-quota-class-sets/default', { quota_class_set: { instances: 10, metadata_items: 128 } });
  });
});
