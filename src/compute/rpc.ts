// The messages between the conductor (controller side) and compute agents (one per host),
// over the bus. Agents never touch the database: they report to the conductor, and the
// conductor tells them what to run.
import type { Bus } from '../bus/types.js';
import type { FlavorSize } from './flavors.js';
import type { ImageDataChunk } from './conductor/image-data.js';
import type { HostResources, InstanceDiagnostics, LiveMigrationJob, PowerOperation, VncConsole } from './virt/driver.js';

/** The topic the conductor serves; every controller process serves it, calls are shared between them. */
export const CONDUCTOR_TOPIC = 'conductor';
/** The topic one compute agent serves. */
export const computeTopic = (host: string) => `compute.${host}`;
/** The binary name compute agents register their service under (os-services lists it). */
export const COMPUTE_BINARY = 'nova-compute';

/** Nova's power_state values. */
export const PowerState = { NOSTATE: 0, RUNNING: 1, PAUSED: 3, SHUTDOWN: 4, CRASHED: 6, SUSPENDED: 7 } as const;
export type PowerStateValue = (typeof PowerState)[keyof typeof PowerState];
/** Nova's power_state.STATE_MAP: the names diagnostics and its error messages use. */
export const POWER_STATE_NAMES: Record<PowerStateValue, string> = {
  [PowerState.NOSTATE]: 'pending', [PowerState.RUNNING]: 'running', [PowerState.PAUSED]: 'paused',
  [PowerState.SHUTDOWN]: 'shutdown', [PowerState.CRASHED]: 'crashed', [PowerState.SUSPENDED]: 'suspended',
};

/** What a host is and has, as its agent reports it at start and whenever it changes. */
export interface HostReport extends HostResources, HostOvercommit {
  host: string;
  /** Hypervisor name (Nova's nodename); one node per host here. */
  nodename: string;
  hostIp: string;
  /** Driver capabilities (supportsLiveMigration, ...), kept for the scheduler and the conductor. */
  capabilities: Record<string, boolean>;
}

/** How much of a host may be promised: the allocation ratios and what stays reserved for the host itself. */
export interface HostOvercommit {
  cpuAllocationRatio: number;
  ramAllocationRatio: number;
  diskAllocationRatio: number;
  reservedHostMemoryMb: number;
  reservedHostDiskMb: number;
  reservedHostCpus: number;
}

/** What the conductor sends an agent to build one instance. */
export interface InstanceSpec {
  uuid: string;
  name: string;
  hostname: string;
  projectId: string;
  userId: string;
  flavor: FlavorSize;
  image: { id: string; properties: Record<string, string> } | null;
  keyData: string | null;
  userData: string | null;
  metadata: Record<string, string>;
  configDrive: boolean;
  adminPass: string | null;
  /** The ports the instance is plugged into, in device order (Nova's network_info); empty without networks. */
  vifs?: InstanceVif[];
}

/** One port of an instance as the virt driver and the config drive need it (Nova's network_info VIF). */
export interface InstanceVif {
  portId: string;
  networkId: string;
  macAddress: string;
  mtu: number;
  /** Neutron's binding:vif_type and binding:vif_details, as the host's network agent bound the port. */
  vifType: string;
  vifDetails: Record<string, unknown>;
  fixedIps: { subnetId: string; ipAddress: string; version: 4 | 6; cidr: string; gatewayIp: string | null; dnsNameservers: string[]; enableDhcp: boolean }[];
}

/** Methods the conductor serves (topic CONDUCTOR_TOPIC). */
export interface ConductorRpc {
  /** An agent (re)starting: upsert its service and node, and its resource provider in Placement. Returns ids. */
  registerHost(args: { report: HostReport }): Promise<{ serviceId: string; nodeId: string }>;
  /** Periodic heartbeat (every [DEFAULT] report_interval seconds). */
  heartbeat(args: { host: string }): Promise<void>;
  /** Periodic power-state sync: what the driver really sees for each instance on the host. */
  syncPowerStates(args: { host: string; states: Record<string, PowerStateValue> }): Promise<void>;
  /** A byte range of an active image, base64 (agents fill their image cache with it; conductor/image-data.ts). */
  readImageChunk(args: { imageId: string; offset: number; length: number }): Promise<ImageDataChunk>;
}

/** Methods an agent serves (topic computeTopic(host)). */
export interface ComputeAgentRpc {
  /** Builds and starts the instance; resolves with its power state, or throws (the agent cleans up fully on failure). */
  spawnInstance(args: { instance: InstanceSpec }): Promise<{ powerState: PowerStateValue }>;
  /** Removes the instance; succeeds when it is already gone. */
  destroyInstance(args: { uuid: string }): Promise<void>;
  /** The instance's power state on this host, or null when the host does not have it. */
  getPowerState(args: { uuid: string }): Promise<{ powerState: PowerStateValue | null }>;
  /** Every instance the driver has, for reconciliation after a restart. */
  listInstances(args: Record<string, never>): Promise<{ uuids: string[] }>;
  /** A power operation (VirtDriver.changePower); resolves with the power state reached. */
  changePower(args: { uuid: string; operation: PowerOperation; timeoutSeconds?: number }): Promise<{ powerState: PowerStateValue }>;
  consoleOutput(args: { uuid: string; length?: number }): Promise<{ output: string }>;
  setAdminPassword(args: { uuid: string; password: string }): Promise<void>;
  triggerCrashDump(args: { uuid: string }): Promise<void>;
  /** The host's uptime line, as uptime(1) prints it (os-hypervisors/{id}/uptime). */
  getHostUptime(args: Record<string, never>): Promise<{ uptime: string }>;
  /** Where the instance's VNC server listens on this host (VirtDriver.getVncConsole). */
  getVncConsole(args: { uuid: string }): Promise<VncConsole>;
  /**
   * The instance's diagnostics (VirtDriver.diagnostics) when it runs. Otherwise diagnostics is null and powerState
   * says why (NOSTATE when the host does not have it); supported is false when the driver has no diagnostics.
   */
  getDiagnostics(args: { uuid: string }): Promise<{ powerState: PowerStateValue; supported: boolean; diagnostics: InstanceDiagnostics | null }>;
  /**
   * Takes the instance's root disk as an image (VirtDriver.snapshot) and holds it under snapshotId: the
   * conductor reads it chunk by chunk into the Image service (agents have no Image service access),
   * then releases it. One unread for 10 minutes is discarded (agent/held-snapshots.ts).
   */
  snapshotInstance(args: { uuid: string }): Promise<{ snapshotId: string; size: number; diskFormat: string; containerFormat: string }>;
  /** Base64 of bytes [offset, offset + length) of a held snapshot (length at most MAX_IMAGE_CHUNK_BYTES); 404 when not held. */
  readSnapshotChunk(args: { snapshotId: string; offset: number; length: number }): Promise<{ data: string }>;
  /** Discards a held snapshot; one not held is fine. */
  releaseSnapshot(args: { snapshotId: string }): Promise<void>;
  /** Boots the instance from a rescue image with its own disk attached (VirtDriver.rescue). */
  rescueInstance(args: { uuid: string; image: { id: string; properties: Record<string, string> }; adminPass: string | null }): Promise<{ powerState: PowerStateValue }>;
  /** Back to the instance's own disk (VirtDriver.unrescue). */
  unrescueInstance(args: { uuid: string }): Promise<{ powerState: PowerStateValue }>;
  /** Re-creates the instance's disk from a (new) image, keeping the instance (VirtDriver.rebuild). */
  rebuildInstance(args: { instance: InstanceSpec; preserveEphemeral: boolean }): Promise<{ powerState: PowerStateValue }>;
  /** Resize/cold migration, source: power off and hand the disk over (VirtDriver.migrateDiskAndPowerOff). */
  migrateDiskAndPowerOff(args: { uuid: string; flavor: FlavorSize; timeoutSeconds?: number }): Promise<void>;
  /** Destination: create the moved instance with its new flavor (VirtDriver.finishMigration). */
  finishMigration(args: { instance: InstanceSpec; powerOn: boolean; sourceHost?: string }): Promise<{ powerState: PowerStateValue }>;
  /** Source, on confirm: remove the held source copy. */
  confirmMigration(args: { uuid: string }): Promise<void>;
  /** Destination, on revert: remove the moved instance. */
  revertMigration(args: { uuid: string }): Promise<void>;
  /** Source, on revert: the held copy is the instance again, powered as before. */
  finishRevertMigration(args: { uuid: string; powerOn: boolean }): Promise<{ powerState: PowerStateValue }>;
  // Live migration (VirtDriver's steps; the conductor drives them, see virt/driver.ts).
  /** Destination: Nova's pre_live_migration. */
  preLiveMigration(args: { instance: InstanceSpec; sourceHost: string }): Promise<void>;
  /** Source: starts the transfer; returns once it runs. */
  liveMigration(args: { uuid: string; destHost: string; blockMigration: boolean; migrationUuid: string }): Promise<void>;
  /** Source: the job's state and progress, null when there is none. */
  liveMigrationJob(args: { uuid: string }): Promise<{ job: LiveMigrationJob | null }>;
  abortLiveMigration(args: { uuid: string }): Promise<void>;
  forceCompleteLiveMigration(args: { uuid: string }): Promise<void>;
  /** Destination: Nova's post_live_migration_at_destination; resolves with the power state reached. */
  postLiveMigrationAtDestination(args: { uuid: string; powerState: PowerStateValue }): Promise<{ powerState: PowerStateValue }>;
  /** Destination: Nova's rollback_live_migration_at_destination. */
  rollbackLiveMigrationAtDestination(args: { uuid: string }): Promise<void>;
  /** Hot-plugs a port into the running instance (VirtDriver.attachInterface; os-interface attach). */
  attachInterface(args: { uuid: string; vif: InstanceVif }): Promise<void>;
  /** Unplugs a port from the instance (VirtDriver.detachInterface); succeeds when it is not plugged. */
  detachInterface(args: { uuid: string; portId: string }): Promise<void>;
}

/** A typed client for an agent's RPC methods. */
export function agentClient(bus: Bus, host: string, timeoutMs: number): ComputeAgentRpc {
  const call = (method: string) => (args: unknown) => bus.call(computeTopic(host), method, args, { timeoutMs }) as Promise<any>;
  return {
    spawnInstance: call('spawnInstance'),
    destroyInstance: call('destroyInstance'),
    getPowerState: call('getPowerState'),
    listInstances: call('listInstances'),
    changePower: call('changePower'),
    consoleOutput: call('consoleOutput'),
    setAdminPassword: call('setAdminPassword'),
    triggerCrashDump: call('triggerCrashDump'),
    getHostUptime: call('getHostUptime'),
    getVncConsole: call('getVncConsole'),
    getDiagnostics: call('getDiagnostics'),
    snapshotInstance: call('snapshotInstance'),
    readSnapshotChunk: call('readSnapshotChunk'),
    releaseSnapshot: call('releaseSnapshot'),
    rescueInstance: call('rescueInstance'),
    unrescueInstance: call('unrescueInstance'),
    rebuildInstance: call('rebuildInstance'),
    migrateDiskAndPowerOff: call('migrateDiskAndPowerOff'),
    finishMigration: call('finishMigration'),
    confirmMigration: call('confirmMigration'),
    revertMigration: call('revertMigration'),
    finishRevertMigration: call('finishRevertMigration'),
    preLiveMigration: call('preLiveMigration'),
    liveMigration: call('liveMigration'),
    liveMigrationJob: call('liveMigrationJob'),
    abortLiveMigration: call('abortLiveMigration'),
    forceCompleteLiveMigration: call('forceCompleteLiveMigration'),
    postLiveMigrationAtDestination: call('postLiveMigrationAtDestination'),
    rollbackLiveMigrationAtDestination: call('rollbackLiveMigrationAtDestination'),
    attachInterface: call('attachInterface'),
    detachInterface: call('detachInterface'),
  };
}

/** A typed client for the conductor's RPC methods. */
export function conductorClient(bus: Bus, timeoutMs: number): ConductorRpc {
  const call = (method: string) => (args: unknown) => bus.call(CONDUCTOR_TOPIC, method, args, { timeoutMs }) as Promise<any>;
  return {
    registerHost: call('registerHost'),
    heartbeat: call('heartbeat'),
    syncPowerStates: call('syncPowerStates'),
    readImageChunk: call('readImageChunk'),
  };
}
