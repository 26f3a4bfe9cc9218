// What the conductor's workflows work with: the stores, the scheduler, Placement, agents.
import type { Logger } from '../../core/log.js';
import type { ImageService } from '../../image/service.js';
import type { PlacementService } from '../../placement/service.js';
import type { InstanceActionStore } from '../actions.js';
import type { Instance, InstanceStore } from '../instances.js';
import type { MigrationStore } from '../migrations.js';
import type { ComputeAgentRpc } from '../rpc.js';
import type { RequestSpec } from '../scheduler/types.js';
import type { Scheduler } from '../scheduler/index.js';
import type { SystemMetadataStore } from '../system-metadata.js';
import type { InstanceNetworking } from '../networking.js';

export interface ConductorContext {
  /** Runs `fn` when no other call with the same key runs in this conductor (keyed mutual exclusion). */
  serialized<T>(key: string, fn: () => Promise<T>): Promise<T>;
  conductorHost: string;
  instances: InstanceStore;
  actions: InstanceActionStore;
  placement: PlacementService;
  scheduler: Scheduler;
  logger: Logger;
  /** [scheduler] max_attempts: hosts a build may try. */
  maxAttempts: number;
  /** How long a spawn may take on an agent ([compute] spawn_timeout seconds). */
  spawnTimeoutMs: number;
  /** How long a guest may take to shut down when asked before it is forced off ([DEFAULT] shutdown_timeout). */
  shutdownTimeoutSeconds: number;
  /** An RPC client for a host's agent (default timeout: [DEFAULT] rpc_response_timeout). */
  agent(host: string, timeoutMs?: number): ComputeAgentRpc;
  /** Whether the host's compute service is up (heartbeats within service_down_time, not forced down). */
  hostIsUp(host: string): Promise<boolean>;
  /** Counts build failures per host for the BuildFailureWeigher (a success resets the count). */
  hostBuildResult(host: string, succeeded: boolean): Promise<void>;
  availabilityZoneOf(host: string): Promise<string>;
  imageProperties(imageId: string): Promise<Record<string, string> | null>;
  serverGroup(groupId: string): Promise<RequestSpec['group']>;
  /** Leaves the server group the instance is a member of, if any. */
  leaveServerGroup(instanceId: string): Promise<void>;
  notify(eventType: string, instance: Instance, priority?: 'INFO' | 'WARN' | 'ERROR'): Promise<void>;
  /** The Image service: snapshots are uploaded here by the conductor (agents have no Image service access). */
  images: ImageService;
  /** Nova's instance system_metadata (shelved_image_id, shelved_at, ...). */
  systemMetadata: SystemMetadataStore;
  /** [DEFAULT] shelved_offload_time: seconds a SHELVED instance stays on its host; 0 offloads at once, < 0 never. */
  shelvedOffloadTimeSeconds: number;
  /** Migration records (resize, cold and live migration, evacuation). */
  migrations: MigrationStore;
  /** The host_ip a compute host reported (a migration's dest_host), null when unknown. */
  hostIp(host: string): Promise<string | null>;
  /** How often a running live migration's progress is read from the source host (ms). */
  liveMigrationPollMs: number;
  /** The instances' ports (allocate after scheduling, free on delete, rebind on moves). */
  networking: InstanceNetworking;
}
