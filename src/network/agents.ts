// Network agents as Neutron keeps them: one row per (agent_type, host), refreshed by the agents'
// report_state heartbeats; alive while the last one is younger than [DEFAULT] agent_down_time.
// It also sends the agents what to wire up after a change (ports, security groups, routers):
// casts after the change committed, so a lost message is repaired by the agent's resync.
import type { Subscription } from '../bus/types.js';
import { BadRequest, NotFound } from '../core/errors.js';
import { newUuid } from '../core/ids.js';
import { neutronError } from './api/errors.js';
import type { NetworkContext } from './index.js';
import type { Port } from './ports.js';
import {
  L2_AGENT_TYPE, NETWORK_TOPIC, networkAgentTopic,
  type AgentState, type DhcpSetup, type FilterRule, type PortDetails, type RouterSetup,
} from './rpc.js';
import { nowStamp, parseJson } from './transactions.js';

export interface NetworkAgent {
  id: string;
  agentType: string;
  binary: string;
  host: string;
  topic: string;
  availabilityZone: string | null;
  adminStateUp: boolean;
  alive: boolean;
  configurations: Record<string, unknown>;
  description: string | null;
  createdAt: string;
  startedAt: string;
  heartbeatTimestamp: string;
}

/** What the L3 area offers the agents (src/network/routers.ts): a router as its agent runs it, null when gone. */
interface RouterSetups { routerSetup?(routerId: string): Promise<RouterSetup | null> }

const agentNotFound = (id: string) => neutronError(new NotFound(`Agent ${id} could not be found.`), 'AgentNotFound');
/** Agent timestamps as Neutron shows them: "2026-12-02 04:00:00". */
const agentStamp = () => nowStamp().replace('T', ' ').replace('Z', '');

export class AgentService {
  private subscription?: Subscription;

  constructor(private readonly context: NetworkContext) {}

  private get db() { return this.context.database.db; }
  private downTimeMs(): number { return this.context.config.getInt('DEFAULT', 'agent_down_time', 75) * 1000; }

  async start(): Promise<void> {
    const ports = this.context.services.ports;
    this.subscription = await this.context.bus.serve(NETWORK_TOPIC, {
      reportState: async ({ state }: { state: AgentState }) => ({ agentId: await this.reportState(state) }),
      portsUp: async ({ portIds }: { portIds: string[] }) => ports.setStatus(portIds, 'ACTIVE'),
      portsDown: async ({ portIds }: { portIds: string[] }) => ports.setStatus(portIds, 'DOWN'),
      portsOfHost: async ({ host }: { host: string }) => {
        const bound = (await ports.list({ hostId: host })).filter((p) => p.binding.vifType !== 'binding_failed');
        return Promise.all(bound.map((p) => this.details(p)));
      },
    });
  }

  async close(): Promise<void> {
    await this.subscription?.close();
    this.subscription = undefined;
  }

  /** Records a heartbeat; the first report of an agent creates its row. */
  async reportState(state: AgentState): Promise<string> {
    if (!state?.host || !state.agentType || !state.binary) throw new BadRequest('report_state needs host, agent_type and binary');
    const now = agentStamp();
    const existing = await this.db.selectFrom('network_agents').select('id').where('agent_type', '=', state.agentType).where('host', '=', state.host).executeTakeFirst();
    const values = {
      binary: state.binary, topic: state.topic, availability_zone: state.availabilityZone ?? null,
      configurations: JSON.stringify(state.configurations ?? {}), heartbeat_timestamp: now,
    };
    if (existing) {
      await this.db.updateTable('network_agents').set(state.startFlag ? { ...values, started_at: now } : values).where('id', '=', existing.id).execute();
      return existing.id as string;
    }
    const id = newUuid();
    try {
      await this.db.insertInto('network_agents').values({ id, agent_type: state.agentType, host: state.host, admin_state_up: 1, description: null, created_at: now, started_at: now, ...values }).execute();
      return id;
    } catch {
      // Another controller process recorded the same agent's first report meanwhile.
      return this.reportState({ ...state, startFlag: false });
    }
  }

  async list(): Promise<NetworkAgent[]> {
    const rows = await this.db.selectFrom('network_agents').selectAll().orderBy('host').orderBy('agent_type').execute();
    return rows.map((r) => this.view(r));
  }

  async get(id: string): Promise<NetworkAgent> {
    const row = await this.db.selectFrom('network_agents').selectAll().where('id', '=', id).executeTakeFirst();
    if (!row) throw agentNotFound(id);
    return this.view(row);
  }

  async update(id: string, changes: { adminStateUp?: boolean; description?: string | null }): Promise<NetworkAgent> {
    await this.get(id);
    const set: Record<string, unknown> = {};
    if (changes.adminStateUp !== undefined) set.admin_state_up = changes.adminStateUp ? 1 : 0;
    if (changes.description !== undefined) set.description = changes.description;
    if (Object.keys(set).length > 0) await this.db.updateTable('network_agents').set(set).where('id', '=', id).execute();
    return this.get(id);
  }

  async delete(id: string): Promise<void> {
    await this.get(id);
    await this.db.deleteFrom('network_agents').where('id', '=', id).execute();
  }

  /** The L2 agent of a host (the one that plugs its ports), if it ever reported. */
  async agentOnHost(host: string): Promise<NetworkAgent | undefined> {
    if (!host) return undefined;
    const row = await this.db.selectFrom('network_agents').selectAll().where('host', '=', host).where('agent_type', '=', L2_AGENT_TYPE).executeTakeFirst();
    return row ? this.view(row) : undefined;
  }

  private view(r: any): NetworkAgent {
    const beat = Date.parse(`${String(r.heartbeat_timestamp).replace(' ', 'T')}Z`);
    return {
      id: r.id, agentType: r.agent_type, binary: r.binary, host: r.host, topic: r.topic, availabilityZone: r.availability_zone ?? null,
      adminStateUp: !!r.admin_state_up, alive: Date.now() - beat <= this.downTimeMs(), configurations: parseJson(r.configurations, {}),
      description: r.description ?? null, createdAt: r.created_at, startedAt: r.started_at, heartbeatTimestamp: r.heartbeat_timestamp,
    };
  }

  /** A port as its agent needs it. */
  async details(port: Port): Promise<PortDetails> {
    const network = await this.context.services.networks.get(port.networkId);
    return {
      id: port.id, networkId: port.networkId, macAddress: port.macAddress, adminStateUp: port.adminStateUp,
      deviceId: port.deviceId, deviceOwner: port.deviceOwner, fixedIps: port.fixedIps, mtu: network.mtu, segment: network.segment,
      portSecurityEnabled: port.portSecurityEnabled, securityGroups: port.securityGroups,
      allowedAddressPairs: port.allowedAddressPairs, extraDhcpOpts: port.extraDhcpOpts,
    };
  }

  private async cast(host: string, method: string, args: unknown): Promise<void> {
    try {
      await this.context.bus.cast(networkAgentTopic(host), method, args);
    } catch (err) {
      // The agent is gone or not started: it resyncs (portsOfHost) when it comes back.
      this.context.logger.warn('network agent unreachable', { host, method, error: (err as Error).message });
    }
  }

  async plugPort(host: string, portId: string): Promise<void> {
    const port = await this.context.services.ports.find(portId);
    if (port) await this.cast(host, 'plugPort', { port: await this.details(port) });
  }

  async unplugPort(host: string, portId: string): Promise<void> {
    await this.cast(host, 'unplugPort', { portId });
  }

  /** A bound port changed (addresses, groups, admin state): its agent rewires it. */
  async notifyPortChanged(portId: string): Promise<void> {
    const port = await this.context.services.ports.find(portId);
    if (port?.binding.hostId && port.binding.vifType !== 'binding_failed') await this.plugPort(port.binding.hostId, portId);
  }

  /**
   * A network's subnets or ports changed: every host with a port bound on it (re)serves DHCP for it
   * (each host answers DHCP for its own ports' networks), with the network's subnets and ports.
   */
  async notifyNetworkChanged(networkId: string): Promise<void> {
    const network = await this.context.services.networks.find(networkId);
    if (!network) return;
    const ports = await this.context.services.ports.list({ networkId });
    const hosts = [...new Set(ports.filter((p) => p.binding.hostId && p.binding.vifType !== 'binding_failed').map((p) => p.binding.hostId))];
    if (hosts.length === 0) return;
    const subnets = (await this.context.services.subnets.list({ networkId })).map((s) => ({
      id: s.id, cidr: s.cidr, ipVersion: s.ipVersion, gatewayIp: s.gatewayIp, enableDhcp: s.enableDhcp, dnsNameservers: s.dnsNameservers,
      hostRoutes: s.hostRoutes, allocationPools: s.allocationPools, ipv6AddressMode: s.ipv6AddressMode, ipv6RaMode: s.ipv6RaMode,
    }));
    const details = await Promise.all(ports.map((p) => this.details(p)));
    const setup: DhcpSetup = { network: { id: network.id, mtu: network.mtu, segment: network.segment, dnsDomain: network.dnsDomain }, subnets, ports: details };
    for (const host of hosts) await this.cast(host, 'setupDhcp', setup);
  }

  /** Rules of these groups changed: every host with a port in them re-applies its filters. */
  async notifySecurityGroupsChanged(groupIds: string[]): Promise<void> {
    if (groupIds.length === 0) return;
    const rows = await this.db.selectFrom('network_port_security_groups').select('port_id').distinct().where('security_group_id', 'in', groupIds).execute();
    const ports = (await this.context.services.ports.list({ ids: rows.map((r) => r.port_id as string) })).filter((p) => p.binding.hostId);
    const byHost = new Map<string, Port[]>();
    for (const port of ports) byHost.set(port.binding.hostId, [...(byHost.get(port.binding.hostId) ?? []), port]);
    if (byHost.size === 0) return;
    const allGroups = [...new Set(ports.flatMap((p) => p.securityGroups))];
    const rules: FilterRule[] = (await this.context.services.securityGroups.rulesOf(allGroups)).map((r) => ({
      id: r.id, securityGroupId: r.securityGroupId, direction: r.direction, ethertype: r.ethertype, protocol: r.protocol,
      portRangeMin: r.portRangeMin, portRangeMax: r.portRangeMax, remoteIpPrefix: r.normalizedCidr ?? r.remoteIpPrefix, remoteGroupId: r.remoteGroupId,
    }));
    // Members of remote groups: the addresses the agent admits for a remote_group_id rule.
    const groupMembers: Record<string, string[]> = {};
    const remote = [...new Set(rules.map((r) => r.remoteGroupId).filter((g): g is string => !!g))];
    if (remote.length > 0) {
      const members = await this.db.selectFrom('network_port_security_groups as g').innerJoin('network_ip_allocations as a', 'a.port_id', 'g.port_id')
        .select(['g.security_group_id', 'a.ip_address']).where('g.security_group_id', 'in', remote).execute();
      for (const m of members) (groupMembers[m.security_group_id] ??= []).push(m.ip_address);
    }
    for (const [host, hostPorts] of byHost) {
      const details = await Promise.all(hostPorts.map((p) => this.details(p)));
      await this.cast(host, 'applySecurityGroups', { ports: details, rules, groupMembers });
    }
  }

  /**
   * A router changed: the host that runs it sets it up again (or removes it when it is gone).
   * Routers run on the alive L2 agent chosen by the router id, so every controller picks the same host.
   */
  async notifyRouterChanged(routerId: string): Promise<void> {
    const agents = (await this.list()).filter((a) => a.agentType === L2_AGENT_TYPE && a.alive && a.adminStateUp);
    if (agents.length === 0) return;
    const host = this.routerHost(routerId, agents);
    const setup = await (this.context.services.routers as unknown as RouterSetups).routerSetup?.(routerId) ?? null;
    if (setup) await this.cast(host, 'setupRouter', { router: setup });
    else for (const agent of agents) await this.cast(agent.host, 'removeRouter', { routerId });
  }

  /** The host whose agent runs a router. */
  routerHost(routerId: string, agents: NetworkAgent[]): string {
    const hosts = agents.map((a) => a.host).sort();
    let hash = 0;
    for (const ch of routerId) hash = (hash * 31 + ch.charCodeAt(0)) >>> 0;
    return hosts[hash % hosts.length];
  }
}
