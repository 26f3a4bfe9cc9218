// The compute scheduler: picks a host for each instance of a request and claims its resources
// in Placement, as Nova's filter scheduler does. Built with createScheduler({ config, database,
// placement, logger }); [scheduler] driver picks the driver from the registry in drivers.ts.
//
// Options read: [scheduler] driver (filter), max_attempts (3), max_placement_results (1000),
// query_placement_for_availability_zone (true), cache_refresh_seconds (60, caching driver);
// [filter_scheduler] available_filters, enabled_filters, weight_classes, host_subset_size (1),
// ram/disk/cpu_weight_multiplier (1.0), soft_affinity_weight_multiplier (1.0),
// soft_anti_affinity_weight_multiplier (1.0), build_failure_weight_multiplier (1000000.0),
// image_properties_default_architecture; [DEFAULT] service_down_time (60),
// default_availability_zone (nova).
import { BadRequest } from '../../core/errors.js';
import { DRIVERS, NoValidHost, type SchedulerDeps, type SchedulerDriver } from './drivers.js';
import type { RequestSpec, Selection } from './types.js';

export { NoValidHost, DRIVERS, type SchedulerDeps, type SchedulerPlacement } from './drivers.js';
export type { RequestSpec, Selection, Destination, HostState, HostFilter, HostWeigher, FlavorSpec, ServerGroupSpec, GroupPolicy } from './types.js';
export { FILTERS, DEFAULT_ENABLED_FILTERS } from './filters/index.js';
export { WEIGHERS } from './weighers/index.js';
export { buildCandidateQuery, flavorResources } from './placement-request.js';
export { HostManager } from './host-manager.js';

export interface Scheduler {
  /** The [scheduler] driver in use. */
  readonly driver: string;
  /**
   * One Selection per instance of the request, in its order, with the allocations claimed in
   * Placement (consumer = instance uuid). Throws NoValidHost after releasing what this request
   * claimed when an instance fits nowhere.
   */
  selectDestinations(spec: RequestSpec): Promise<Selection[]>;
  /** Stops background work (the caching driver's refresh). */
  close(): Promise<void>;
}

/** Throws BadRequest naming the option when the configuration names an unknown driver, filter or weigher. */
export function createScheduler(deps: SchedulerDeps): Scheduler {
  const name = deps.config.get('scheduler', 'driver', 'filter');
  const factory = DRIVERS[name];
  if (!factory) throw new BadRequest(`[scheduler] driver: unknown driver "${name}" (known: ${Object.keys(DRIVERS).join(', ')})`);
  const driver: SchedulerDriver = factory({ ...deps, logger: deps.logger.child('scheduler') });
  return {
    driver: name,
    selectDestinations: (spec) => driver.selectDestinations(spec),
    close: () => driver.close(),
  };
}
