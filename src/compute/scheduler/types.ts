// The scheduler's data: what is asked (RequestSpec), what a host is and has (HostState), and
// what comes back (Selection). Field names follow Nova's RequestSpec / HostState / Selection.
import type { FlavorSize } from '../flavors.js';
import type { AllocationRequest, ProviderSummary } from '../../placement/service.js';

export type GroupPolicy = 'affinity' | 'anti-affinity' | 'soft-affinity' | 'soft-anti-affinity';

/** The flavor's size and extra specs, as the instance keeps them. */
export type FlavorSpec = FlavorSize;

export interface ServerGroupSpec {
  id: string;
  policy: GroupPolicy;
  rules: { max_server_per_host?: number };
  /** Instance uuids in the group (including the ones of this request). */
  members: string[];
  /** Hosts the group's members are on; the scheduler fills it in (and adds each host it picks in a multi-create). */
  hosts?: string[];
}

export interface RequestSpec {
  /** One per instance of a (multi-)create, in launch order. */
  instanceUuids: string[];
  projectId: string;
  userId: string;
  flavor: FlavorSpec;
  image: { id: string; properties: Record<string, string> } | null;
  availabilityZone: string | null;
  /** Admin `zone:host[:node]`: the host (and node) to use; filters are not run for a forced destination (as in Nova). */
  requestedHost?: string;
  requestedNode?: string;
  /** A host the request must land on, checked by the filters (Nova's requested_destination: a live migration or evacuation to a given, not forced, host). */
  requestedDestination?: string;
  /** same_host, different_host, group, ... (a single value or a list). */
  schedulerHints: Record<string, string | string[]>;
  group?: ServerGroupSpec;
  /** Hosts already tried for this request (RetryFilter). */
  ignoreHosts: string[];
  /** Root disk on a volume: DISK_GB leaves out the flavor's root_gb. */
  bootFromVolume?: boolean;
}

export interface AggregateInfo {
  id: number;
  uuid: string;
  name: string;
  metadata: Record<string, string>;
}

export interface ServiceInfo {
  id: string;
  /** Heartbeat within [DEFAULT] service_down_time and not forced down. */
  up: boolean;
  disabled: boolean;
  disabledReason: string | null;
  forcedDown: boolean;
  /** Last heartbeat seen (ISO), null when none. */
  lastHeartbeat: string | null;
}

/** Resource amounts in Placement terms (VCPU, MEMORY_MB, DISK_GB, ...). */
export type Resources = Record<string, number>;

export interface HostState {
  host: string;
  nodename: string;
  /** The compute node's uuid, which is also its resource provider's uuid. */
  providerUuid: string;
  /** The zone(s) of the host's aggregates, comma-joined; [DEFAULT] default_availability_zone when none. */
  availabilityZone: string;
  aggregates: AggregateInfo[];
  service: ServiceInfo;
  hypervisorType: string;
  hypervisorVersion: number;
  hostIp: string | null;
  /** [[arch, hypervisor_type, vm_mode]] */
  supportedInstances: [string, string, string][];
  traits: string[];
  capabilities: Record<string, unknown>;
  cpuInfo: Record<string, unknown>;
  vcpus: number;
  vcpusUsed: number;
  memoryMb: number;
  memoryMbUsed: number;
  /** memoryMb - reserved - used (Nova's free_ram_mb: no allocation ratio). */
  freeRamMb: number;
  localGb: number;
  diskGbUsed: number;
  /** localGb*1024 - reserved - used (Nova's free_disk_mb). */
  freeDiskMb: number;
  cpuAllocationRatio: number;
  ramAllocationRatio: number;
  diskAllocationRatio: number;
  reservedHostCpus: number;
  reservedHostMemoryMb: number;
  reservedHostDiskMb: number;
  /** Schedulable capacity per class: (total - reserved) * allocation_ratio, from Placement when known. */
  capacity: Resources;
  /** Used per class: Placement's usage when known, else the flavors of the instances on the host. */
  used: Resources;
  numInstances: number;
  /** Instances on the host (live ones, plus the ones this request placed there). */
  instanceUuids: Set<string>;
  failedBuilds: number;
  /** Placement's summary of the provider when this request's candidates carried it. */
  providerSummary?: ProviderSummary;
}

export interface Destination {
  host: string;
  nodename: string;
  providerUuid: string;
  allocationRequest: AllocationRequest;
}

export interface Selection extends Destination {
  instanceUuid: string;
  /** Hosts to try next (their allocations are not claimed), at most [scheduler] max_attempts - 1. */
  alternates: Destination[];
}

/** A filter: one yes/no per host for a request. */
export interface HostFilter {
  readonly name: string;
  /** True when the answer cannot change between the instances of one request: then it runs for the first instance only. */
  readonly runOncePerRequest: boolean;
  hostPasses(host: HostState, spec: RequestSpec): boolean;
  /**
   * hostPasses for many hosts: the request's part worked out once, the returned test run per
   * host. The spec must not change while the test is in use (the driver asks again per instance).
   */
  forRequest?(spec: RequestSpec): (host: HostState) => boolean;
}

/** A weigher: one number per host; normalized over the hosts (0..1) and scaled by the multiplier. */
export interface HostWeigher {
  readonly name: string;
  weigh(host: HostState, spec: RequestSpec): number;
  /** The multiplier for this host ([filter_scheduler] *_weight_multiplier, or the host aggregates' override). */
  multiplier(host: HostState): number;
}
