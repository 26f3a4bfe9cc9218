import type { HostState, RequestSpec } from '../types.js';
import { BaseFilter, hintList } from './base.js';

/** affinity: once any member of the group has a host, only the group's hosts pass. */
export class ServerGroupAffinityFilter extends BaseFilter {
  readonly name = 'ServerGroupAffinityFilter';
  hostPasses(host: HostState, spec: RequestSpec): boolean {
    if (spec.group?.policy !== 'affinity') return true;
    const hosts = spec.group.hosts ?? [];
    return hosts.length === 0 || hosts.includes(host.host);
  }
}

/**
 * anti-affinity: a host passes while it has fewer than rules.max_server_per_host (default 1)
 * members of the group. A host already holding the instance being scheduled passes (moves).
 */
export class ServerGroupAntiAffinityFilter extends BaseFilter {
  readonly name = 'ServerGroupAntiAffinityFilter';
  hostPasses(host: HostState, spec: RequestSpec): boolean {
    const group = spec.group;
    if (group?.policy !== 'anti-affinity') return true;
    if (spec.instanceUuids.length === 1 && host.instanceUuids.has(spec.instanceUuids[0])) return true;
    const limit = Number(group.rules?.max_server_per_host ?? 1) || 1;
    let onHost = 0;
    for (const member of group.members) if (host.instanceUuids.has(member)) onHost++;
    return onHost < limit;
  }
}

/** same_host hint: passes hosts holding at least one of the listed instances. */
export class SameHostFilter extends BaseFilter {
  readonly name = 'SameHostFilter';
  override readonly runOncePerRequest = true;
  hostPasses(host: HostState, spec: RequestSpec): boolean {
    const wanted = hintList(spec, 'same_host');
    return wanted.length === 0 || wanted.some((u) => host.instanceUuids.has(u));
  }
}

/** different_host hint: passes hosts holding none of the listed instances. */
export class DifferentHostFilter extends BaseFilter {
  readonly name = 'DifferentHostFilter';
  override readonly runOncePerRequest = true;
  hostPasses(host: HostState, spec: RequestSpec): boolean {
    return !hintList(spec, 'different_host').some((u) => host.instanceUuids.has(u));
  }
}
