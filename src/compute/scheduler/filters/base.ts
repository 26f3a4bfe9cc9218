// What every filter is built from, and helpers several filters share.
import type { Config } from '../../../core/config.js';
import type { HostFilter, HostState, RequestSpec } from '../types.js';

export interface FilterOptions {
  config: Config;
  /** [DEFAULT] default_availability_zone */
  defaultAvailabilityZone: string;
}

export abstract class BaseFilter implements HostFilter {
  abstract readonly name: string;
  readonly runOncePerRequest: boolean = false;
  abstract hostPasses(host: HostState, spec: RequestSpec): boolean;
}

/** Nova's aggregate_metadata_get_by_host: key -> the set of values over the host's aggregates. */
export function aggregateMetadata(host: HostState, key?: string): Map<string, Set<string>> {
  const out = new Map<string, Set<string>>();
  for (const a of host.aggregates) {
    for (const [k, v] of Object.entries(a.metadata)) {
      if (key !== undefined && k !== key) continue;
      let set = out.get(k);
      if (!set) { set = new Set(); out.set(k, set); }
      set.add(v);
    }
  }
  return out;
}

/** A scheduler hint as a list (hints may be given once or several times). */
export function hintList(spec: RequestSpec, name: string): string[] {
  const v = spec.schedulerHints[name];
  if (v === undefined || v === null) return [];
  return (Array.isArray(v) ? v : [v]).map(String).filter(Boolean);
}
