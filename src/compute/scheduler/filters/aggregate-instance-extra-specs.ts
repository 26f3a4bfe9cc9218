import { matchesRequirement } from '../extra-specs.js';
import type { HostState, RequestSpec } from '../types.js';
import { aggregateMetadata, BaseFilter, passAll } from './base.js';

const SCOPE = 'aggregate_instance_extra_specs';

/**
 * Matches the flavor's `aggregate_instance_extra_specs:KEY` (and unscoped KEY) extra specs
 * against the metadata of the host's aggregates: some aggregate's value must satisfy each.
 */
export class AggregateInstanceExtraSpecsFilter extends BaseFilter {
  readonly name = 'AggregateInstanceExtraSpecsFilter';
  override readonly runOncePerRequest = true;
  hostPasses(host: HostState, spec: RequestSpec): boolean {
    return this.forRequest(spec)(host);
  }
  override forRequest(spec: RequestSpec): (host: HostState) => boolean {
    const checks: { key: string; requirement: string }[] = [];
    for (const [fullKey, requirement] of Object.entries(spec.flavor.extraSpecs)) {
      const colon = fullKey.indexOf(':');
      let key = fullKey;
      if (colon >= 0) {
        if (fullKey.slice(0, colon) !== SCOPE) continue;
        key = fullKey.slice(colon + 1);
      }
      checks.push({ key, requirement: String(requirement) });
    }
    if (checks.length === 0) return passAll;
    return (host) => {
      const metadata = aggregateMetadata(host);
      for (const { key, requirement } of checks) {
        const values = metadata.get(key);
        if (!values || values.size === 0) return false;
        if (![...values].some((v) => matchesRequirement(v, requirement))) return false;
      }
      return true;
    };
  }
}
