import { flavorResources } from '../placement-request.js';
import type { HostState, RequestSpec } from '../types.js';
import { BaseFilter, passAll } from './base.js';

/**
 * Nova dropped RamFilter/DiskFilter/CoreFilter for Placement, which stays the authority (the
 * claim fails when a provider is full). These guards keep a multi-instance request from
 * choosing a host its own earlier instances already filled: they check what is left of the
 * host's capacity ((total - reserved) * allocation_ratio, Placement's numbers when known)
 * after this request's consumption.
 */
abstract class ResourceGuard extends BaseFilter {
  protected abstract readonly resourceClass: 'VCPU' | 'MEMORY_MB' | 'DISK_GB';
  hostPasses(host: HostState, spec: RequestSpec): boolean {
    return this.forRequest(spec)(host);
  }
  override forRequest(spec: RequestSpec): (host: HostState) => boolean {
    const cls = this.resourceClass;
    const wanted = flavorResources(spec.flavor, spec.bootFromVolume)[cls];
    const override = spec.flavor.extraSpecs[`resources:${cls}`];
    const amount = override !== undefined && /^\d+$/.test(override.trim()) ? Number(override) : wanted;
    if (amount <= 0) return passAll;
    return (host) => {
      const capacity = host.capacity[cls];
      if (capacity === undefined) return false;
      return capacity - (host.used[cls] ?? 0) >= amount;
    };
  }
}

export class RamFilter extends ResourceGuard {
  readonly name = 'RamFilter';
  protected readonly resourceClass = 'MEMORY_MB' as const;
}
export class DiskFilter extends ResourceGuard {
  readonly name = 'DiskFilter';
  protected readonly resourceClass = 'DISK_GB' as const;
}
export class CoreFilter extends ResourceGuard {
  readonly name = 'CoreFilter';
  protected readonly resourceClass = 'VCPU' as const;
}
