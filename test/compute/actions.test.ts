// Server actions on fake hosts: power operations with their state transitions, events and
// refusals; lock/unlock; reset state; console output; password; crash dump.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { assertError, startComputeCloud, type ComputeCloud } from './harness.js';

describe('server actions', () => {
  let cc: ComputeCloud;
  let imageId: string;

  before(async () => {
    cc = await startComputeCloud({ DEFAULT: { report_interval: '0.5', service_down_time: '2' } }, 2);
    imageId = await cc.createImage({ visibility: 'public' });
    await cc.unlimitedQuota();
  });
  after(async () => cc?.close());

  const booted = async (name: string, token?: string) => {
    return cc.bootActive({ name, imageRef: imageId }, { token });
  };

  it('stops and starts, pauses and unpauses, suspends and resumes, with the power state the host reports', async () => {
    const server = await booted('power');
    const steps: [unknown, string, number][] = [
      [{ 'os-stop': null }, 'SHUTOFF', 4], [{ 'os-start': null }, 'ACTIVE', 1],
      [{ pause: null }, 'PAUSED', 3], [{ unpause: null }, 'ACTIVE', 1],
      [{ suspend: null }, 'SUSPENDED', 7], [{ resume: null }, 'ACTIVE', 1],
      [{ reboot: { type: 'SOFT' } }, 'ACTIVE', 1], [{ reboot: { type: 'HARD' } }, 'ACTIVE', 1],
    ];
    for (const [body, status, power] of steps) {
      const res = await cc.act(server.id, body);
      assert.equal(res.status, 202, `${JSON.stringify(body)}: ${res.text}`);
      assert.equal(res.text, '');
      const after = await cc.settled(server.id);
      assert.equal(after.status, status, JSON.stringify(body));
      assert.equal(after['OS-EXT-STS:power_state'], power, JSON.stringify(body));
    }
    const actions = await cc.get(`/servers/${server.id}/os-instance-actions`);
    assert.deepEqual(actions.body.instanceActions.map((a: any) => a.action).reverse(),
      ['create', 'stop', 'start', 'pause', 'unpause', 'suspend', 'resume', 'reboot', 'reboot']);
    const stop = actions.body.instanceActions.find((a: any) => a.action === 'stop');
    const events = await cc.get(`/servers/${server.id}/os-instance-actions/${stop.request_id}`);
    assert.deepEqual(events.body.instanceAction.events.map((e: any) => [e.event, e.result]), [['compute_stop_instance', 'Success']]);
  });

  it('refuses an action the state does not allow with 409 in Nova\'s words', async () => {
    const server = await booted('refusals');
    assertError(await cc.act(server.id, { 'os-start': null }), 409, `Cannot 'start' instance ${server.id} while it is in vm_state active`);
    assertError(await cc.act(server.id, { unpause: null }), 409, 'vm_state active');
    assertError(await cc.act(server.id, { resume: null }), 409, 'vm_state active');
    assert.equal((await cc.act(server.id, { 'os-stop': null })).status, 202);
    await cc.settled(server.id);
    assertError(await cc.act(server.id, { 'os-stop': null }), 409, 'vm_state stopped');
    assertError(await cc.act(server.id, { pause: null }), 409, 'vm_state stopped');
    assertError(await cc.act(server.id, { reboot: { type: 'SOFT' } }), 409, 'vm_state stopped');
    assert.equal((await cc.act(server.id, { reboot: { type: 'HARD' } })).status, 202, 'a hard reboot starts a stopped server');
    assert.equal((await cc.settled(server.id)).status, 'ACTIVE');
    assertError(await cc.act(server.id, { reboot: { type: 'sideways' } }), 400, 'sideways');
    assertError(await cc.act(server.id, { reboot: {} }), 400);
    assertError(await cc.act(server.id, { fly: null }), 400, 'There is no such action: fly');
    assertError(await cc.act(server.id, { 'os-stop': null, 'os-start': null }), 400);
    assertError(await cc.act(server.id, { trigger_crash_dump: null }, { microversion: '2.16' }), 400, 'no such action');
    assertError(await cc.act('00000000-0000-0000-0000-000000000000', { 'os-stop': null }), 404);
  });

  it('locks: the owner gets 409 on a locked server, an admin acts anyway, an admin lock needs an admin to lift', async () => {
    const server = await booted('locked', cc.demoToken);
    assert.equal((await cc.act(server.id, { lock: { locked_reason: 'maintenance' } }, { token: cc.demoToken })).status, 202);
    const shown = await cc.get(`/servers/${server.id}`, { token: cc.demoToken, microversion: '2.73' });
    assert.equal(shown.body.server.locked, true);
    assert.equal(shown.body.server.locked_reason, 'maintenance');
    assertError(await cc.act(server.id, { 'os-stop': null }, { token: cc.demoToken }), 409, 'is locked');
    assertError(await cc.delete(`/servers/${server.id}`, { token: cc.demoToken }), 409, 'is locked');
    assert.equal((await cc.act(server.id, { 'os-stop': null })).status, 202, 'an admin may act on a locked server');
    await cc.settled(server.id, cc.demoToken);
    assert.equal((await cc.act(server.id, { unlock: null }, { token: cc.demoToken })).status, 202);

    assert.equal((await cc.act(server.id, { lock: null })).status, 202, 'locked by an admin');
    assertError(await cc.act(server.id, { unlock: null }, { token: cc.demoToken }), 403, 'unlock_override');
    assert.equal((await cc.act(server.id, { unlock: null })).status, 202);
    const unlocked = await cc.get(`/servers/${server.id}`, { microversion: '2.73' });
    assert.equal(unlocked.body.server.locked, false);
    assert.equal(unlocked.body.server.locked_reason, null);
  });

  it('resets the state (admins only) without asking the host', async () => {
    const server = await booted('reset', cc.demoToken);
    assertError(await cc.act(server.id, { 'os-resetState': { state: 'error' } }, { token: cc.demoToken }), 403);
    assert.equal((await cc.act(server.id, { 'os-resetState': { state: 'error' } })).status, 202);
    assert.equal((await cc.get(`/servers/${server.id}`)).body.server.status, 'ERROR');
    assertError(await cc.act(server.id, { 'os-resetState': { state: 'deleted' } }), 400);
    assert.equal((await cc.act(server.id, { 'os-resetState': { state: 'active' } })).status, 202);
    assert.equal((await cc.get(`/servers/${server.id}`)).body.server.status, 'ACTIVE');
  });

  it('returns the console log tail, changes the password, triggers a crash dump', async () => {
    const server = await booted('console');
    await cc.act(server.id, { 'os-stop': null });
    await cc.settled(server.id);
    await cc.act(server.id, { 'os-start': null });
    await cc.settled(server.id);
    const all = await cc.act(server.id, { 'os-getConsoleOutput': { length: -1 } });
    assert.equal(all.status, 200, all.text);
    assert.match(all.body.output, /booted\nstop done\nstart done\n$/);
    const tail = await cc.act(server.id, { 'os-getConsoleOutput': { length: 1 } });
    assert.equal(tail.body.output, 'start done\n');
    assertError(await cc.act(server.id, { 'os-getConsoleOutput': { length: 'x' } }), 400);

    assert.equal((await cc.act(server.id, { changePassword: { adminPass: 'n3w-secret' } })).status, 202);
    assert.equal((await cc.get(`/servers/${server.id}`)).body.server['OS-EXT-STS:task_state'], null);
    assertError(await cc.act(server.id, { changePassword: {} }), 400, 'adminPass');
    assert.equal((await cc.act(server.id, { trigger_crash_dump: null }, { microversion: '2.17' })).status, 202);
    const log = await cc.act(server.id, { 'os-getConsoleOutput': {} });
    assert.match(log.body.output, /admin password changed\nNMI received: crash dump\n$/);
  });

  it('settles back with the task cleared and an Error event when the host is down', async () => {
    const server = await booted('host-down');
    const services = await cc.get(`/os-services?binary=nova-compute&host=${server['OS-EXT-SRV-ATTR:host']}`, { microversion: '2.53' });
    const serviceId = services.body.services[0].id;
    assert.equal((await cc.put(`/os-services/${serviceId}`, { forced_down: true }, { microversion: '2.53' })).status, 200);
    try {
      assert.equal((await cc.act(server.id, { 'os-stop': null })).status, 202);
      const after = await cc.settled(server.id);
      assert.equal(after.status, 'ACTIVE', 'still where it was');
      const actions = await cc.get(`/servers/${server.id}/os-instance-actions`);
      const stop = actions.body.instanceActions.find((a: any) => a.action === 'stop');
      assert.equal(stop.message, 'Error');
      const events = await cc.get(`/servers/${server.id}/os-instance-actions/${stop.request_id}`);
      assert.equal(events.body.instanceAction.events[0].result, 'Error');
    } finally {
      await cc.put(`/os-services/${serviceId}`, { forced_down: false }, { microversion: '2.53' });
    }
  });
});
