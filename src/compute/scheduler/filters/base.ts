// What every filter is built from, and helpers several filters share.
import type { Config } from '../../../core/config.js';
import type { AggregateInfo, HostFilter, HostState, RequestSpec } from '../types.js';

export interface FilterOptions {
  config: Config;
  /** [DEFAULT] default_availability_zone */
  defaultAvailabilityZone: string;
}

export abstract class BaseFilter implements HostFilter {
  abstract readonly name: string;
  readonly runOncePerRequest: boolean = false;
  abstract hostPasses(host: HostState, spec: RequestSpec): boolean;
  forRequest(spec: RequestSpec): (host: HostState) => boolean {
    return (host) => this.hostPasses(host, spec);
  }
}

/** The test of a filter with nothing to check for this request. */
export const passAll = (_host: HostState): boolean => true;

/**
 * The metadata map of each list of aggregates, kept as long as the list lives: the host manager
 * shares one list between the requests that see the same aggregate rows and never changes it
 * (a change in the tables gives new lists), so a list must not be changed in place.
 */
const metadataOfAggregates = new WeakMap<readonly AggregateInfo[], ReadonlyMap<string, ReadonlySet<string>>>();
const EMPTY_METADATA: ReadonlyMap<string, ReadonlySet<string>> = new Map();

/** Nova's aggregate_metadata_get_by_host: key -> the set of values over the host's aggregates (read only). */
export function aggregateMetadata(host: HostState, key?: string): ReadonlyMap<string, ReadonlySet<string>> {
  const aggregates = host.aggregates;
  if (aggregates.length === 0) return EMPTY_METADATA;
  let map = metadataOfAggregates.get(aggregates);
  if (!map) {
    const built = new Map<string, Set<string>>();
    for (const a of aggregates) {
      for (const [k, v] of Object.entries(a.metadata)) {
        let set = built.get(k);
        if (!set) { set = new Set(); built.set(k, set); }
        set.add(v);
      }
    }
    map = built;
    metadataOfAggregates.set(aggregates, map);
  }
  if (key === undefined) return map;
  const values = map.get(key);
  return values ? new Map([[key, values]]) : EMPTY_METADATA;
}

/** A scheduler hint as a list (hints may be given once or several times). */
export function hintList(spec: RequestSpec, name: string): string[] {
  const v = spec.schedulerHints[name];
  if (v === undefined || v === null) return [];
  return (Array.isArray(v) ? v : [v]).map(String).filter(Boolean);
}
