// Wires the compute service: migrations, policy, the domain services, the conductor (with the
// scheduler) and the Nova API. Compute agents are separate (src/compute/agent) and reach
// the conductor over the bus only.
import type { Config } from '../core/config.js';
import type { Logger } from '../core/log.js';
import { migrateService, type Database } from '../db/index.js';
import type { Bus } from '../bus/types.js';
import type { PolicyEngine } from '../http/policy.js';
import type { TokenValidator } from '../http/auth.js';
import type { ImageService } from '../image/service.js';
import type { PlacementService } from '../placement/service.js';
import type { NetworkServices } from '../network/index.js';
import { InstanceNetworking } from './networking.js';
import { computeMigrations } from './db/migrations.js';
import { computeBasePolicy } from './policy.js';
import { computeApi } from './api/index.js';
import { HostService } from './hosts.js';
import { InstanceActionStore } from './actions.js';
import { InstanceStore } from './instances.js';
import { MigrationStore } from './migrations.js';
import { FlavorService } from './flavors.js';
import { KeypairService } from './keypairs.js';
import { QuotaService } from './quotas.js';
import { ServerGroupService } from './server-groups.js';
import { AggregateService } from './aggregates.js';
import { ServerService } from './servers.js';
import { ServerActions } from './lifecycle.js';
import { ServerDiagnostics } from './diagnostics.js';
import { SoftDeletes } from './soft-delete.js';
import { ConsoleService } from './consoles.js';
import { ServerPasswordStore } from './server-passwords.js';
import { ImageActions } from './shelve.js';
import { SystemMetadataStore } from './system-metadata.js';
import { ResizeService } from './resize.js';
import { ServerMoves } from './moves.js';
import { Conductor } from './conductor/index.js';
import { createScheduler, type Scheduler } from './scheduler/index.js';

/** What every compute domain service is built from. */
export interface ComputeDeps {
  config: Config;
  database: Database;
  bus: Bus;
  logger: Logger;
  placement: PlacementService;
  images: ImageService;
  /** The Networking service's domain services (ports, networks, security groups); absent: servers boot without NICs. */
  network?: NetworkServices;
}

/** The compute domain services, as the API and the conductor use them. */
export interface ComputeServices {
  hosts: HostService;
  flavors: FlavorService;
  keypairs: KeypairService;
  quotas: QuotaService;
  serverGroups: ServerGroupService;
  aggregates: AggregateService;
  instances: InstanceStore;
  actions: InstanceActionStore;
  migrations: MigrationStore;
  servers: ServerService;
  lifecycle: ServerActions;
  /** shelve/unshelve, createImage, createBackup, rescue/unrescue, rebuild. */
  imageActions: ImageActions;
  /** Live migration, its abort and force-complete, evacuation. */
  moves: ServerMoves;
  scheduler: Scheduler;
  conductor: Conductor;
  /** Deferred delete ([DEFAULT] reclaim_instance_interval): DELETE, restore, forceDelete. */
  softDeletes: SoftDeletes;
  /** Remote consoles and their tokens. */
  consoles: ConsoleService;
  /** os-server-password. */
  serverPasswords: ServerPasswordStore;
  /** [api] enable_instance_password: generate an adminPass when the request gives none. */
  enablePasswordGeneration: boolean;
  /** Resize, cold migration, confirm and revert. */
  resize: ResizeService;
  /** Servers' ports: allocation, addresses, interfaces, security groups (Nova's network API). */
  networking: InstanceNetworking;
  /** os-server-diagnostics. */
  diagnostics: ServerDiagnostics;
}

export interface Compute {
  services: ComputeServices;
  api: ReturnType<typeof computeApi>;
  /** Starts serving the conductor topic and resumes unfinished workflows. */
  start(): Promise<void>;
  close(): Promise<void>;
}

export async function createCompute(options: ComputeDeps & { policy: PolicyEngine; tokens: TokenValidator }): Promise<Compute> {
  await migrateService(options.database, 'compute', computeMigrations);
  options.policy.register(computeBasePolicy);
  const { config, database } = options;
  const hosts = new HostService(options);
  const quotas = new QuotaService(options);
  const serverGroups = new ServerGroupService({ ...options, quotas });
  const aggregates = new AggregateService(options);
  const instances = new InstanceStore(database);
  const actions = new InstanceActionStore(database);
  const migrations = new MigrationStore(database);
  const flavors = new FlavorService(options);
  const keypairs = new KeypairService({ ...options, quotas });
  const networking = new InstanceNetworking({ database, network: options.network, logger: options.logger.child('networking') });
  const scheduler = createScheduler({ config, database, placement: options.placement, logger: options.logger.child('scheduler') });
  const conductor = new Conductor({ ...options, logger: options.logger.child('conductor'), instances, actions, hosts, aggregates, serverGroups, scheduler, migrations, networking });
  const servers = new ServerService({ config, database, instances, actions, flavors, keypairs, quotas, serverGroups, aggregates, hosts, images: options.images, conductor, networking });
  const lifecycle = new ServerActions({ database, bus: options.bus, instances, actions, hosts, conductor, networking, rpcTimeoutMs: config.getInt('DEFAULT', 'rpc_response_timeout', 60) * 1000 });
  const moves = new ServerMoves({ database, bus: options.bus, instances, actions, hosts, migrations, lifecycle, rpcTimeoutMs: config.getInt('DEFAULT', 'rpc_response_timeout', 60) * 1000 });
  const imageActions = new ImageActions({
    instances, lifecycle, images: options.images, quotas, keypairs, aggregates, systemMetadata: new SystemMetadataStore(database),
    internalZone: config.get('DEFAULT', 'internal_service_availability_zone', 'internal'),
  });
  const rpcTimeoutMs = config.getInt('DEFAULT', 'rpc_response_timeout', 60) * 1000;
  const softDeletes = new SoftDeletes({ database, instances, actions, hosts, conductor, servers, lifecycle, reclaimIntervalSeconds: config.getInt('DEFAULT', 'reclaim_instance_interval', 0) });
  const consoles = new ConsoleService({ config, database, bus: options.bus, hosts, rpcTimeoutMs });
  const serverPasswords = new ServerPasswordStore(database);
  const services: ComputeServices = {
    hosts, flavors, keypairs, quotas, serverGroups, aggregates, instances, actions, migrations, servers, lifecycle, imageActions, scheduler, conductor,
    softDeletes, consoles, serverPasswords, moves, diagnostics: new ServerDiagnostics({ bus: options.bus, hosts, rpcTimeoutMs }),
    enablePasswordGeneration: config.getBool('api', 'enable_instance_password', true),
    networking,
    resize: new ResizeService({ config, database, instances, actions, migrations, flavors, quotas, hosts, lifecycle, conductor }),
  };
  const api = computeApi({ compute: services, policy: options.policy, tokens: options.tokens, maxLimit: config.getInt('api', 'max_limit', 1000) });
  return {
    services, api,
    start: () => conductor.start(),
    close: async () => {
      await conductor.close();
      await scheduler.close();
      hosts.close();
    },
  };
}
