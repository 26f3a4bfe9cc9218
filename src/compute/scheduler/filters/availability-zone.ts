import type { HostState, RequestSpec } from '../types.js';
import { aggregateMetadata, BaseFilter, type FilterOptions } from './base.js';

/**
 * Passes hosts in the requested zone: a zone of one of the host's aggregates, or, for a host
 * in no zoned aggregate, the default zone ([DEFAULT] default_availability_zone).
 */
export class AvailabilityZoneFilter extends BaseFilter {
  readonly name = 'AvailabilityZoneFilter';
  override readonly runOncePerRequest = true;
  constructor(private readonly options: FilterOptions) { super(); }
  hostPasses(host: HostState, spec: RequestSpec): boolean {
    const wanted = spec.availabilityZone;
    if (!wanted) return true;
    const zones = aggregateMetadata(host, 'availability_zone').get('availability_zone');
    if (zones && zones.size > 0) return zones.has(wanted);
    return wanted === this.options.defaultAvailabilityZone;
  }
}
