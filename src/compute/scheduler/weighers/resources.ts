import type { HostState } from '../types.js';
import { BaseWeigher, type WeigherOptions } from './base.js';

/** More free RAM weighs more (spreading); a negative ram_weight_multiplier stacks. */
export class RAMWeigher extends BaseWeigher {
  readonly name = 'RAMWeigher';
  constructor(options: WeigherOptions) { super(options, 'ram_weight_multiplier', 1.0); }
  weigh(host: HostState): number { return host.freeRamMb; }
}

/** More free disk weighs more; disk_weight_multiplier. */
export class DiskWeigher extends BaseWeigher {
  readonly name = 'DiskWeigher';
  constructor(options: WeigherOptions) { super(options, 'disk_weight_multiplier', 1.0); }
  weigh(host: HostState): number { return host.freeDiskMb; }
}

/** More free vCPUs (total * cpu_allocation_ratio - used) weigh more; cpu_weight_multiplier. */
export class CPUWeigher extends BaseWeigher {
  readonly name = 'CPUWeigher';
  constructor(options: WeigherOptions) { super(options, 'cpu_weight_multiplier', 1.0); }
  weigh(host: HostState): number { return host.vcpus * host.cpuAllocationRatio - host.vcpusUsed; }
}

/** Hosts with recent build failures weigh less: failed_builds times -build_failure_weight_multiplier. */
export class BuildFailureWeigher extends BaseWeigher {
  readonly name = 'BuildFailureWeigher';
  constructor(options: WeigherOptions) { super(options, 'build_failure_weight_multiplier', 1000000.0); }
  weigh(host: HostState): number { return host.failedBuilds; }
  override multiplier(host: HostState): number { return -super.multiplier(host); }
}
