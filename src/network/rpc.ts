// The messages between the networking controller and the per-host network agents, over the bus.
// Like Neutron's agents, a network agent never touches the database: it reports its state
// (report_state) and which ports it plugged, and the controller tells it what to wire up.
// Controller side: NETWORK_TOPIC. Agent side: networkAgentTopic(host).
import type { FixedIp, AddressPair, DhcpOption } from './ports.js';
import type { Segment } from './networks.js';

/** Every controller process serves it; calls are shared between them. */
export const NETWORK_TOPIC = 'network';
/** The topic one host's network agent serves. */
export const networkAgentTopic = (host: string) => `network-agent.${host}`;

/** The agent every compute host runs (Linux bridge + netns + dnsmasq; the no-op agent reports the same type). */
export const L2_AGENT_TYPE = 'Linux bridge agent';
export const L2_AGENT_BINARY = 'neutron-linuxbridge-agent';
/** Neutron's topic name for L2 agents, shown by `network agent show`. */
export const L2_AGENT_TOPIC = 'N/A';

/** What an agent reports every [AGENT] report_interval (Neutron's report_state). */
export interface AgentState {
  host: string;
  agentType: string;
  binary: string;
  topic: string;
  availabilityZone?: string | null;
  configurations: Record<string, unknown>;
  /** True on the first report after the agent started (Neutron's start_flag). */
  startFlag?: boolean;
}

/** A port as an agent wires it: the L2 segment, addresses and filtering. */
export interface PortDetails {
  id: string;
  networkId: string;
  macAddress: string;
  adminStateUp: boolean;
  deviceId: string;
  deviceOwner: string;
  fixedIps: FixedIp[];
  mtu: number;
  segment: Segment | null;
  portSecurityEnabled: boolean;
  securityGroups: string[];
  allowedAddressPairs: AddressPair[];
  extraDhcpOpts: DhcpOption[];
}

/** A subnet as DHCP serves it. */
export interface DhcpSubnet {
  id: string;
  cidr: string;
  ipVersion: 4 | 6;
  gatewayIp: string | null;
  enableDhcp: boolean;
  dnsNameservers: string[];
  hostRoutes: { destination: string; nexthop: string }[];
  allocationPools: { start: string; end: string }[];
  ipv6AddressMode: string | null;
  ipv6RaMode: string | null;
}

export interface DhcpSetup { network: { id: string; mtu: number; segment: Segment | null; dnsDomain: string }; subnets: DhcpSubnet[]; ports: PortDetails[] }

/** One rule as the agent filters it (ports of groups in `remoteGroupId` are resolved by the agent from the ports it is given). */
export interface FilterRule {
  id: string;
  securityGroupId: string;
  direction: 'ingress' | 'egress';
  ethertype: 'IPv4' | 'IPv6';
  protocol: string | null;
  portRangeMin: number | null;
  portRangeMax: number | null;
  remoteIpPrefix: string | null;
  remoteGroupId: string | null;
}

export interface SecurityGroupSetup { ports: PortDetails[]; rules: FilterRule[]; groupMembers: Record<string, string[]> }

/** A router as one host's agent runs it (namespace, interfaces, gateway with SNAT, routes, floating IPs, port forwardings). */
export interface RouterSetup {
  id: string;
  adminStateUp: boolean;
  interfaces: { portId: string; subnetId: string; ipAddress: string; cidr: string; macAddress: string; networkId: string; segment: Segment | null; mtu: number }[];
  gateway: { portId: string; networkId: string; enableSnat: boolean; fixedIps: FixedIp[]; macAddress: string; segment: Segment | null; gatewayIps: string[] } | null;
  routes: { destination: string; nexthop: string }[];
  floatingIps: { id: string; floatingIpAddress: string; fixedIpAddress: string; portId: string }[];
  portForwardings: { id: string; floatingIpAddress: string; protocol: 'tcp' | 'udp'; externalPort: number; internalIpAddress: string; internalPort: number }[];
}

/** The methods the controller serves on NETWORK_TOPIC. */
export interface NetworkControllerRpc {
  reportState(args: { state: AgentState }): Promise<{ agentId: string }>;
  portsUp(args: { host: string; portIds: string[] }): Promise<void>;
  portsDown(args: { host: string; portIds: string[] }): Promise<void>;
  /** What a (re)starting agent should have plugged: every port bound to its host. */
  portsOfHost(args: { host: string }): Promise<PortDetails[]>;
}

/** The methods a network agent serves on networkAgentTopic(host). */
export interface NetworkAgentRpc {
  plugPort(args: { port: PortDetails }): Promise<void>;
  unplugPort(args: { portId: string }): Promise<void>;
  setupDhcp(args: DhcpSetup): Promise<void>;
  applySecurityGroups(args: SecurityGroupSetup): Promise<void>;
  setupRouter(args: { router: RouterSetup }): Promise<void>;
  removeRouter(args: { routerId: string }): Promise<void>;
}
