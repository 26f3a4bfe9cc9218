// The filter registry: name -> factory. [filter_scheduler] available_filters names the ones
// that may be enabled ("nova.scheduler.filters.all_filters", the default, is every one here);
// enabled_filters the ones that run, in order. Dotted Python paths are accepted by their last part.
import { BadRequest } from '../../../core/errors.js';
import type { HostFilter } from '../types.js';
import { AggregateInstanceExtraSpecsFilter } from './aggregate-instance-extra-specs.js';
import { DifferentHostFilter, SameHostFilter, ServerGroupAffinityFilter, ServerGroupAntiAffinityFilter } from './affinity.js';
import { AvailabilityZoneFilter } from './availability-zone.js';
import type { FilterOptions } from './base.js';
import { ComputeFilter } from './compute.js';
import { ComputeCapabilitiesFilter } from './compute-capabilities.js';
import { ImagePropertiesFilter } from './image-properties.js';
import { CoreFilter, DiskFilter, RamFilter } from './resources.js';
import { RetryFilter } from './retry.js';

export type { FilterOptions } from './base.js';

export const FILTERS: Record<string, (options: FilterOptions) => HostFilter> = {
  RetryFilter: () => new RetryFilter(),
  AvailabilityZoneFilter: (o) => new AvailabilityZoneFilter(o),
  ComputeFilter: () => new ComputeFilter(),
  ComputeCapabilitiesFilter: () => new ComputeCapabilitiesFilter(),
  ImagePropertiesFilter: (o) => new ImagePropertiesFilter(o),
  ServerGroupAntiAffinityFilter: () => new ServerGroupAntiAffinityFilter(),
  ServerGroupAffinityFilter: () => new ServerGroupAffinityFilter(),
  SameHostFilter: () => new SameHostFilter(),
  DifferentHostFilter: () => new DifferentHostFilter(),
  AggregateInstanceExtraSpecsFilter: () => new AggregateInstanceExtraSpecsFilter(),
  RamFilter: () => new RamFilter(),
  DiskFilter: () => new DiskFilter(),
  CoreFilter: () => new CoreFilter(),
};

/**
 * Nova's default enabled_filters, with RetryFilter first (so ignoreHosts holds), the
 * same_host/different_host hint filters (so those hints work without configuration, as in
 * devstack) and the in-request resource guards last.
 */
export const DEFAULT_ENABLED_FILTERS = [
  'RetryFilter', 'AvailabilityZoneFilter', 'ComputeFilter', 'ComputeCapabilitiesFilter', 'ImagePropertiesFilter',
  'ServerGroupAntiAffinityFilter', 'ServerGroupAffinityFilter', 'SameHostFilter', 'DifferentHostFilter',
  'RamFilter', 'DiskFilter', 'CoreFilter',
];

const shortName = (name: string) => name.slice(name.lastIndexOf('.') + 1);

/** The enabled filters, in order. Throws BadRequest naming an unknown or unavailable filter. */
export function enabledFilters(options: FilterOptions): HostFilter[] {
  const config = options.config;
  const available = new Set<string>();
  for (const entry of config.getList('filter_scheduler', 'available_filters', ['nova.scheduler.filters.all_filters'])) {
    const name = shortName(entry);
    if (name === 'all_filters') Object.keys(FILTERS).forEach((n) => available.add(n));
    else if (FILTERS[name]) available.add(name);
    else throw new BadRequest(`[filter_scheduler] available_filters: unknown filter "${entry}" (known: ${Object.keys(FILTERS).join(', ')})`);
  }
  return config.getList('filter_scheduler', 'enabled_filters', DEFAULT_ENABLED_FILTERS).map((entry) => {
    const name = shortName(entry);
    if (!FILTERS[name]) throw new BadRequest(`[filter_scheduler] enabled_filters: unknown filter "${entry}" (known: ${Object.keys(FILTERS).join(', ')})`);
    if (!available.has(name)) throw new BadRequest(`[filter_scheduler] enabled_filters: "${entry}" is not in available_filters`);
    return FILTERS[name](options);
  });
}

export {
  RetryFilter, AvailabilityZoneFilter, ComputeFilter, ComputeCapabilitiesFilter, ImagePropertiesFilter,
  ServerGroupAffinityFilter, ServerGroupAntiAffinityFilter, SameHostFilter, DifferentHostFilter,
  AggregateInstanceExtraSpecsFilter, RamFilter, DiskFilter, CoreFilter,
};
