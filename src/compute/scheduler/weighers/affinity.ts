import type { GroupPolicy, HostState, RequestSpec } from '../types.js';
import { BaseWeigher, type WeigherOptions } from './base.js';

function membersOnHost(host: HostState, spec: RequestSpec, policy: GroupPolicy): number {
  if (spec.group?.policy !== policy) return 0;
  let n = 0;
  for (const m of spec.group.members) if (host.instanceUuids.has(m)) n++;
  return n;
}

/** soft-affinity: the more members of the group on a host, the more it weighs. */
export class ServerGroupSoftAffinityWeigher extends BaseWeigher {
  readonly name = 'ServerGroupSoftAffinityWeigher';
  constructor(options: WeigherOptions) { super(options, 'soft_affinity_weight_multiplier', 1.0); }
  weigh(host: HostState, spec: RequestSpec): number { return membersOnHost(host, spec, 'soft-affinity'); }
}

/** soft-anti-affinity: the more members of the group on a host, the less it weighs. */
export class ServerGroupSoftAntiAffinityWeigher extends BaseWeigher {
  readonly name = 'ServerGroupSoftAntiAffinityWeigher';
  constructor(options: WeigherOptions) { super(options, 'soft_anti_affinity_weight_multiplier', 1.0); }
  weigh(host: HostState, spec: RequestSpec): number { return -membersOnHost(host, spec, 'soft-anti-affinity'); }
}
