// Wires the networking service (Neutron v2.0): migrations, policy, the domain services and the
// API. Every domain service gets the same NetworkContext and reaches the others through
// `context.services`, so they may call each other whatever order they were built in.
import type { Config } from '../core/config.js';
import type { Logger } from '../core/log.js';
import { migrateService, type Database } from '../db/index.js';
import type { Bus } from '../bus/types.js';
import type { PolicyEngine } from '../http/policy.js';
import type { TokenValidator } from '../http/auth.js';
import { networkMigrations } from './db/migrations.js';
import { networkApi, NETWORK_API_AREAS } from './api/index.js';
import { NetworkService } from './networks.js';
import { SubnetService } from './subnets.js';
import { PortService } from './ports.js';
import { NetworkQuotaService } from './quotas.js';
import { AgentService } from './agents.js';
import { SecurityGroupService } from './security-groups.js';
import { RouterService } from './routers.js';
import { FloatingIpService } from './floating-ips.js';

/** What every networking domain service is built from. */
export interface NetworkContext {
  config: Config;
  database: Database;
  bus: Bus;
  logger: Logger;
  services: NetworkServices;
}

/** The networking domain services, as the API, the compute service and the agents' RPC use them. */
export interface NetworkServices {
  /** Networks (with provider attributes and segments) and network availability zones. */
  networks: NetworkService;
  /** Subnets, subnet pools and IP address management. */
  subnets: SubnetService;
  /** Ports, their fixed IPs and bindings. */
  ports: PortService;
  quotas: NetworkQuotaService;
  /** Network agents (`network agent list`) and the agent RPC (src/network/rpc.ts). */
  agents: AgentService;
  securityGroups: SecurityGroupService;
  /** Routers, their interfaces, gateways and static routes. */
  routers: RouterService;
  /** Floating IPs and their port forwardings. */
  floatingIps: FloatingIpService;
}

export interface Networking {
  services: NetworkServices;
  api: ReturnType<typeof networkApi>;
  /** Starts serving the agents' RPC topic. */
  start(): Promise<void>;
  close(): Promise<void>;
}

export async function createNetworking(options: { config: Config; database: Database; bus: Bus; logger: Logger; policy: PolicyEngine; tokens: TokenValidator }): Promise<Networking> {
  await migrateService(options.database, 'network', networkMigrations);
  for (const area of NETWORK_API_AREAS) options.policy.register(area.policy);
  const context = { config: options.config, database: options.database, bus: options.bus, logger: options.logger } as NetworkContext;
  const services: NetworkServices = {
    networks: new NetworkService(context),
    subnets: new SubnetService(context),
    ports: new PortService(context),
    quotas: new NetworkQuotaService(context),
    agents: new AgentService(context),
    securityGroups: new SecurityGroupService(context),
    routers: new RouterService(context),
    floatingIps: new FloatingIpService(context),
  };
  context.services = services;
  const api = networkApi({ network: services, database: options.database, policy: options.policy, tokens: options.tokens, maxLimit: options.config.getInt('DEFAULT', 'pagination_max_limit', -1) });
  return {
    services, api,
    start: () => services.agents.start(),
    close: () => services.agents.close(),
  };
}
