import type { HostState, RequestSpec } from '../types.js';
import { BaseFilter, hintList, passAll } from './base.js';

/** affinity: once any member of the group has a host, only the group's hosts pass. */
export class ServerGroupAffinityFilter extends BaseFilter {
  readonly name = 'ServerGroupAffinityFilter';
  hostPasses(host: HostState, spec: RequestSpec): boolean {
    return this.forRequest(spec)(host);
  }
  override forRequest(spec: RequestSpec): (host: HostState) => boolean {
    if (spec.group?.policy !== 'affinity') return passAll;
    const hosts = new Set(spec.group.hosts ?? []);
    return hosts.size === 0 ? passAll : (host) => hosts.has(host.host);
  }
}

/**
 * anti-affinity: a host passes while it has fewer than rules.max_server_per_host (default 1)
 * members of the group. A host already holding the instance being scheduled passes (moves).
 */
export class ServerGroupAntiAffinityFilter extends BaseFilter {
  readonly name = 'ServerGroupAntiAffinityFilter';
  hostPasses(host: HostState, spec: RequestSpec): boolean {
    return this.forRequest(spec)(host);
  }
  override forRequest(spec: RequestSpec): (host: HostState) => boolean {
    const group = spec.group;
    if (group?.policy !== 'anti-affinity') return passAll;
    const moving = spec.instanceUuids.length === 1 ? spec.instanceUuids[0] : undefined;
    const limit = Number(group.rules?.max_server_per_host ?? 1) || 1;
    const members = group.members;
    return (host) => {
      const on = host.instanceUuids;
      if (on.size === 0) return 0 < limit;
      if (moving !== undefined && on.has(moving)) return true;
      let onHost = 0;
      for (const member of members) if (on.has(member)) onHost++;
      return onHost < limit;
    };
  }
}

/** same_host hint: passes hosts holding at least one of the listed instances. */
export class SameHostFilter extends BaseFilter {
  readonly name = 'SameHostFilter';
  override readonly runOncePerRequest = true;
  hostPasses(host: HostState, spec: RequestSpec): boolean {
    return this.forRequest(spec)(host);
  }
  override forRequest(spec: RequestSpec): (host: HostState) => boolean {
    const wanted = hintList(spec, 'same_host');
    return wanted.length === 0 ? passAll : (host) => wanted.some((u) => host.instanceUuids.has(u));
  }
}

/** different_host hint: passes hosts holding none of the listed instances. */
export class DifferentHostFilter extends BaseFilter {
  readonly name = 'DifferentHostFilter';
  override readonly runOncePerRequest = true;
  hostPasses(host: HostState, spec: RequestSpec): boolean {
    return this.forRequest(spec)(host);
  }
  override forRequest(spec: RequestSpec): (host: HostState) => boolean {
    const avoided = hintList(spec, 'different_host');
    return avoided.length === 0 ? passAll : (host) => !avoided.some((u) => host.instanceUuids.has(u));
  }
}
