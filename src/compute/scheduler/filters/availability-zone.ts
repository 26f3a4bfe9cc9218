import type { HostState, RequestSpec } from '../types.js';
import { aggregateMetadata, BaseFilter, type FilterOptions, passAll } from './base.js';

/**
 * Passes hosts in the requested zone: a zone of one of the host's aggregates, or, for a host
 * in no zoned aggregate, the default zone ([DEFAULT] default_availability_zone).
 */
export class AvailabilityZoneFilter extends BaseFilter {
  readonly name = 'AvailabilityZoneFilter';
  override readonly runOncePerRequest = true;
  constructor(private readonly options: FilterOptions) { super(); }
  hostPasses(host: HostState, spec: RequestSpec): boolean {
    return this.forRequest(spec)(host);
  }
  override forRequest(spec: RequestSpec): (host: HostState) => boolean {
    const wanted = spec.availabilityZone;
    if (!wanted) return passAll;
    const inDefault = wanted === this.options.defaultAvailabilityZone;
    return (host) => {
      const zones = aggregateMetadata(host).get('availability_zone');
      if (zones && zones.size > 0) return zones.has(wanted);
      return inDefault;
    };
  }
}
