// Network agents over HTTP: each compute host's (no-op) agent reports itself alive; admins list,
// show, disable and delete agents; a disabled or dead agent's host fails new port bindings.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { NETWORK_TOPIC, L2_AGENT_TYPE } from '../../src/network/rpc.js';
import { startNoopNetworkAgent } from '../../src/network/agent/noop.js';
import { createLogger } from '../../src/core/log.js';
import { assertNeutronError, sleep, startNetworkCloud, type NetworkCloud } from './harness.js';

describe('network agents', () => {
  let nc: NetworkCloud;

  // Agents report every second and count as dead after 3 s without a report, so the test can see one die.
  before(async () => { nc = await startNetworkCloud({ DEFAULT: { agent_down_time: '3' }, AGENT: { report_interval: '1' } }, 2); });
  after(() => nc.close());

  it('lists one alive Linux bridge agent per compute host, for admins only', async () => {
    const listed = await nc.get('/agents');
    assert.equal(listed.status, 200, listed.text);
    const agents = listed.body.agents;
    assert.deepEqual(agents.map((a: any) => a.host).sort(), ['fake-host-1', 'fake-host-2']);
    for (const agent of agents) {
      assert.equal(agent.agent_type, L2_AGENT_TYPE);
      assert.equal(agent.binary, 'neutron-linuxbridge-agent');
      assert.equal(agent.alive, true);
      assert.equal(agent.admin_state_up, true);
      assert.deepEqual(agent.configurations.noop, true);
      assert.match(agent.heartbeat_timestamp, /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$/);
    }
    assert.equal((await nc.get(`/agents?host=fake-host-2`)).body.agents.length, 1);
    const shown = await nc.get(`/agents/${agents[0].id}`);
    assert.equal(shown.body.agent.id, agents[0].id);
    assertNeutronError(await nc.get('/agents', { token: nc.demoToken }), 403, 'PolicyNotAuthorized');
    assertNeutronError(await nc.get('/agents/nope'), 404, 'AgentNotFound');
    const extensions = (await nc.get('/extensions')).body.extensions.map((e: any) => e.alias);
    assert.ok(extensions.includes('agent'));
  });

  it('disables an agent: its host no longer binds ports; enables it again', async () => {
    const agent = (await nc.get('/agents?host=fake-host-1')).body.agents[0];
    const disabled = await nc.put(`/agents/${agent.id}`, { agent: { admin_state_up: false, description: 'maintenance' } });
    assert.equal(disabled.status, 200, disabled.text);
    assert.equal(disabled.body.agent.admin_state_up, false);
    assert.equal(disabled.body.agent.description, 'maintenance');
    const network = await nc.network({ port_security_enabled: false });
    const refused = await nc.port(network.id, { 'binding:host_id': 'fake-host-1' });
    assert.equal(refused['binding:vif_type'], 'binding_failed');
    await nc.put(`/agents/${agent.id}`, { agent: { admin_state_up: true } });
    const bound = await nc.port(network.id, { 'binding:host_id': 'fake-host-1' });
    assert.equal(bound['binding:vif_type'], 'bridge');
    assertNeutronError(await nc.put(`/agents/${agent.id}`, { agent: { host: 'x' } }), 400);
  });

  it('an agent that stops reporting is dead and its host binds no ports', async () => {
    const agent = nc.cloud.networkAgents.find((a) => a.host === 'fake-host-2')!;
    await sleep(1500);
    assert.equal((await nc.get('/agents?host=fake-host-2')).body.agents[0].alive, true, 'reports keep it alive past agent_down_time');
    await agent.close();
    await sleep(3500);
    assert.equal((await nc.get('/agents?host=fake-host-2')).body.agents[0].alive, false);
    const network = await nc.network({ port_security_enabled: false });
    assert.equal((await nc.port(network.id, { 'binding:host_id': 'fake-host-2' }))['binding:vif_type'], 'binding_failed');
  });

  it('a restarted agent picks up the ports bound to its host', async () => {
    const { config, bus } = nc.cloud;
    const start = () => startNoopNetworkAgent({ config, bus, host: 'restart-host', logger: createLogger('test') });
    const first = await start();
    await first.registered;
    const network = await nc.network({ port_security_enabled: false });
    const port = await nc.port(network.id, { 'binding:host_id': 'restart-host' });
    await nc.waitPort(port.id, (p) => p.status === 'ACTIVE');
    await first.close();
    await nc.cloud.network.services.ports.setStatus([port.id], 'DOWN');
    const second = await start();
    try {
      await second.registered;
      assert.ok(second.plugged.has(port.id));
      await nc.waitPort(port.id, (p) => p.status === 'ACTIVE');
    } finally {
      await second.close();
    }
  });

  it('records a new agent from its first state report and deletes it', async () => {
    await nc.cloud.bus.call(NETWORK_TOPIC, 'reportState', { state: { host: 'extra-host', agentType: L2_AGENT_TYPE, binary: 'neutron-linuxbridge-agent', topic: 'N/A', configurations: {}, startFlag: true } });
    const extra = (await nc.get('/agents?host=extra-host')).body.agents[0];
    assert.equal(extra.alive, true);
    assert.equal((await nc.delete(`/agents/${extra.id}`)).status, 204);
    assert.equal((await nc.get('/agents?host=extra-host')).body.agents.length, 0);
  });
});
