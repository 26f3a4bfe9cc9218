// Remote consoles, console auth tokens, os-server-password and the removed resetNetwork action,
// on fake hosts over real HTTP.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { assertError, startComputeCloud, type ComputeCloud } from './harness.js';

const BASE = 'http://console.example:6080/vnc_auto.html';

describe('remote consoles and server passwords', () => {
  let cc: ComputeCloud;
  let imageId: string;
  let server: any;

  before(async () => {
    cc = await startComputeCloud({ vnc: { novncproxy_base_url: BASE }, consoleauth: { token_ttl: '2' }, fake_driver: { spawn_delay_ms: '0' } }, 1);
    imageId = await cc.createImage({ visibility: 'public' });
    const created = await cc.boot({ name: 'console', imageRef: imageId }, { token: cc.demoToken });
    server = await cc.waitServer(created.id, undefined, cc.demoToken);
    assert.equal(server.status, 'ACTIVE');
  });
  after(async () => cc?.close());

  const tokenOf = (url: string) => {
    const match = /^http:\/\/console\.example:6080\/vnc_auto\.html\?path=%3Ftoken%3D([0-9a-f-]{36})$/.exec(url);
    assert.ok(match, `not a noVNC URL in Nova's form: ${url}`);
    return match[1]!;
  };

  it('POST /servers/{id}/remote-consoles (2.6+) answers a noVNC URL whose token the admin can look up (2.31+)', async () => {
    const res = await cc.post(`/servers/${server.id}/remote-consoles`, { remote_console: { protocol: 'vnc', type: 'novnc' } }, { token: cc.demoToken, microversion: '2.6' });
    assert.equal(res.status, 200, res.text);
    assert.equal(res.body.remote_console.protocol, 'vnc');
    assert.equal(res.body.remote_console.type, 'novnc');
    const token = tokenOf(res.body.remote_console.url);

    const shown = await cc.get(`/os-console-auth-tokens/${token}`, { microversion: '2.31' });
    assert.equal(shown.status, 200, shown.text);
    assert.deepEqual(Object.keys(shown.body.console).sort(), ['host', 'instance_uuid', 'internal_access_path', 'port']);
    assert.equal(shown.body.console.instance_uuid, server.id);
    assert.equal(shown.body.console.host, '127.0.0.1');
    assert.ok(Number.isInteger(shown.body.console.port) && shown.body.console.port >= 5900, shown.text);
    assert.equal(shown.body.console.internal_access_path, null);

    assertError(await cc.get(`/os-console-auth-tokens/${token}`, { microversion: '2.30' }), 401, 'not accessible');
    assertError(await cc.get(`/os-console-auth-tokens/${token}`, { token: cc.demoToken, microversion: '2.31' }), 403);
    assertError(await cc.get('/os-console-auth-tokens/00000000-0000-0000-0000-000000000000', { microversion: '2.31' }), 404, 'Token not found');
    // Expired after [consoleauth] token_ttl.
    await new Promise((r) => setTimeout(r, 2100));
    assertError(await cc.get(`/os-console-auth-tokens/${token}`, { microversion: '2.31' }), 404, 'Token not found');
  });

  it('refuses other protocols and types with 400, and the route before 2.6 with 404', async () => {
    const create = (body: unknown, microversion = '2.79') => cc.post(`/servers/${server.id}/remote-consoles`, body, { microversion });
    assertError(await create({ remote_console: { protocol: 'spice', type: 'spice-html5' } }), 400, 'Unavailable console type spice-html5.');
    assertError(await create({ remote_console: { protocol: 'serial', type: 'serial' } }), 400, 'Unavailable console type serial.');
    assertError(await create({ remote_console: { protocol: 'vnc', type: 'spice-html5' } }), 400, 'Invalid console type spice-html5');
    assertError(await create({ remote_console: { protocol: 'telnet', type: 'novnc' } }), 400, 'telnet');
    assertError(await create({ remote_console: { protocol: 'mks', type: 'webmks' } }, '2.6'), 400, 'mks');
    assertError(await create({ remote_console: { protocol: 'mks', type: 'webmks' } }, '2.8'), 400, 'Unavailable console type webmks.');
    assertError(await create({ remote_console: { protocol: 'vnc' } }), 400, "'type' is a required property");
    assertError(await create({ remote_console: { protocol: 'vnc', type: 'novnc' } }, '2.5'), 404);
    assertError(await cc.post('/servers/00000000-0000-0000-0000-000000000000/remote-consoles', { remote_console: { protocol: 'vnc', type: 'novnc' } }, { microversion: '2.6' }), 404);
  });

  it('os-getVNCConsole (before 2.6) answers {"console": {"type", "url"}}; xvpvnc is gone; the other console actions are 400', async () => {
    const act = (body: unknown, microversion = '2.5') => cc.post(`/servers/${server.id}/action`, body, { token: cc.demoToken, microversion });
    const res = await act({ 'os-getVNCConsole': { type: 'novnc' } });
    assert.equal(res.status, 200, res.text);
    assert.equal(res.body.console.type, 'novnc');
    tokenOf(res.body.console.url);
    assertError(await act({ 'os-getVNCConsole': { type: 'xvpvnc' } }), 400, 'Invalid console type xvpvnc');
    assertError(await act({ 'os-getVNCConsole': { type: 'nope' } }), 400, 'nope');
    assertError(await act({ 'os-getVNCConsole': {} }), 400, "'type' is a required property");
    assertError(await act({ 'os-getSPICEConsole': { type: 'spice-html5' } }), 400, 'Unavailable console type spice-html5.');
    assertError(await act({ 'os-getSerialConsole': { type: 'serial' } }), 400, 'Unavailable console type serial.');
    assertError(await act({ 'os-getVNCConsole': { type: 'novnc' } }, '2.6'), 400, 'There is no such action: os-getVNCConsole');
  });

  it('a stopped server still gets a URL (as Nova\'s libvirt driver answers); a server without a host is 409 not ready', async () => {
    const other = await cc.boot({ name: 'stopped', imageRef: imageId });
    await cc.waitServer(other.id);
    assert.equal((await cc.post(`/servers/${other.id}/action`, { 'os-stop': null })).status, 202);
    await cc.waitServer(other.id, (s) => s.status === 'SHUTOFF');
    const res = await cc.post(`/servers/${other.id}/remote-consoles`, { remote_console: { protocol: 'vnc', type: 'novnc' } }, { microversion: '2.79' });
    assert.equal(res.status, 200, res.text);

    // No valid host: ERROR without a host.
    const flavor = await cc.post('/flavors', { flavor: { name: 'huge-console', ram: 10_000_000, vcpus: 1, disk: 1 } });
    assert.equal(flavor.status, 200, flavor.text);
    const quota = await cc.put(`/os-quota-sets/${cc.adminProject}`, { quota_set: { ram: -1 } });
    assert.equal(quota.status, 200, quota.text);
    const unplaced = await cc.boot({ name: 'unplaced', imageRef: imageId, flavorRef: flavor.body.flavor.id });
    assert.equal((await cc.waitServer(unplaced.id)).status, 'ERROR');
    assertError(await cc.post(`/servers/${unplaced.id}/remote-consoles`, { remote_console: { protocol: 'vnc', type: 'novnc' } }, { microversion: '2.79' }),
      409, `Instance ${unplaced.id} is not ready`);
    assertError(await cc.post(`/servers/${unplaced.id}/remote-consoles`, { remote_console: { protocol: 'spice', type: 'spice-html5' } }, { microversion: '2.79' }), 409, 'is not ready');
  });

  it('os-server-password: empty until the metadata service stores one; DELETE clears it', async () => {
    const shown = await cc.get(`/servers/${server.id}/os-server-password`, { token: cc.demoToken });
    assert.equal(shown.status, 200, shown.text);
    assert.deepEqual(shown.body, { password: '' });
    await cc.cloud.compute.services.serverPasswords.set(server.id, 'ZW5jcnlwdGVk');
    assert.deepEqual((await cc.get(`/servers/${server.id}/os-server-password`, { token: cc.demoToken })).body, { password: 'ZW5jcnlwdGVk' });
    await assert.rejects(cc.cloud.compute.services.serverPasswords.set(server.id, 'again'), /already set/);
    const cleared = await cc.delete(`/servers/${server.id}/os-server-password`, { token: cc.demoToken });
    assert.equal(cleared.status, 204, cleared.text);
    assert.equal(cleared.text, '');
    assert.deepEqual((await cc.get(`/servers/${server.id}/os-server-password`, { token: cc.demoToken })).body, { password: '' });
    assertError(await cc.get('/servers/00000000-0000-0000-0000-000000000000/os-server-password'), 404);
  });

  it('resetNetwork was removed from Nova: 410 Gone at every microversion', async () => {
    for (const microversion of ['2.1', '2.79']) {
      const res = await cc.post(`/servers/${server.id}/action`, { resetNetwork: null }, { microversion });
      assertError(res, 410, 'This resource is no longer available.');
      assert.ok('computeFault' in res.body, res.text);
    }
  });
});
