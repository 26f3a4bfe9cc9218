// The no-op network agent: serves every agent call (rpc.ts) without touching the host, reports
// its state every [AGENT] report_interval and reports the ports it is asked to plug as up, so they
// become ACTIVE. One runs per compute host until the Linux data plane agent replaces it.
import type { Bus, Subscription } from '../../bus/types.js';
import type { Config } from '../../core/config.js';
import type { Logger } from '../../core/log.js';
import { L2_AGENT_BINARY, L2_AGENT_TOPIC, L2_AGENT_TYPE, NETWORK_TOPIC, networkAgentTopic, type AgentState, type DhcpSetup, type NetworkAgentRpc } from '../rpc.js';

export interface NetworkAgentHandle {
  host: string;
  /** Ports this agent has plugged (what a real agent would have wired). */
  plugged: Set<string>;
  /** Routers it runs. */
  routers: Set<string>;
  /** What it serves DHCP for: network id → the last setup it was sent. */
  dhcp: Map<string, DhcpSetup>;
  /** Settles once the controller recorded the agent (its first state report) and the resync ran. */
  registered: Promise<void>;
  close(): Promise<void>;
}

export async function startNoopNetworkAgent(options: { config: Config; bus: Bus; host: string; logger: Logger }): Promise<NetworkAgentHandle> {
  const { bus, host, logger } = options;
  const plugged = new Set<string>();
  const routers = new Set<string>();
  const dhcp = new Map<string, DhcpSetup>();
  const handlers: NetworkAgentRpc = {
    plugPort: async ({ port }) => {
      plugged.add(port.id);
      // An administratively down port is plugged but stays DOWN, as Neutron's L2 agents report it.
      await bus.cast(NETWORK_TOPIC, port.adminStateUp ? 'portsUp' : 'portsDown', { host, portIds: [port.id] });
    },
    unplugPort: async ({ portId }) => { plugged.delete(portId); },
    setupDhcp: async (setup) => { dhcp.set(setup.network.id, setup); },
    applySecurityGroups: async () => undefined,
    setupRouter: async ({ router }) => { routers.add(router.id); },
    removeRouter: async ({ routerId }) => { routers.delete(routerId); },
  };
  const subscription: Subscription = await bus.serve(networkAgentTopic(host), handlers as unknown as Record<string, (args: any) => Promise<unknown>>);
  const state = (startFlag: boolean): AgentState => ({
    host, agentType: L2_AGENT_TYPE, binary: L2_AGENT_BINARY, topic: L2_AGENT_TOPIC, availabilityZone: null,
    configurations: { noop: true, devices: plugged.size, interface_mappings: {} }, startFlag,
  });
  const report = async (startFlag: boolean) => {
    try {
      await bus.call(NETWORK_TOPIC, 'reportState', { state: state(startFlag) }, { timeoutMs: 10_000 });
      return true;
    } catch (err) {
      logger.warn('network agent state report failed', { host, error: (err as Error).message });
      return false;
    }
  };
  let first = true;
  let closed = false;
  const interval = options.config.getInt('AGENT', 'report_interval', 30) * 1000;
  // First report (retried until a controller answers), then a resync: a restarted agent picks up what its host should have plugged.
  const registered = (async () => {
    for (let wait = 200; !closed; wait = Math.min(wait * 2, interval)) {
      if (await report(true)) { first = false; break; }
      await new Promise((resolve) => setTimeout(resolve, wait).unref());
    }
    if (closed) return;
    try {
      const ports = await bus.call<{ id: string }[]>(NETWORK_TOPIC, 'portsOfHost', { host }, { timeoutMs: 10_000 });
      for (const port of ports) plugged.add(port.id);
      if (ports.length > 0) await bus.cast(NETWORK_TOPIC, 'portsUp', { host, portIds: ports.map((p) => p.id) });
    } catch (err) {
      logger.warn('network agent resync failed', { host, error: (err as Error).message });
    }
  })();
  const timer = setInterval(() => { if (!first) void report(false); }, interval);
  timer.unref();
  return {
    host, plugged, routers, dhcp, registered,
    close: async () => { closed = true; clearInterval(timer); await subscription.close(); },
  };
}
