import type { HostState, RequestSpec } from '../types.js';
import { BaseFilter, passAll } from './base.js';

/** Skips the hosts this request already tried (the conductor's reschedules). */
export class RetryFilter extends BaseFilter {
  readonly name = 'RetryFilter';
  override readonly runOncePerRequest = true;
  hostPasses(host: HostState, spec: RequestSpec): boolean {
    return this.forRequest(spec)(host);
  }
  override forRequest(spec: RequestSpec): (host: HostState) => boolean {
    if (spec.ignoreHosts.length === 0) return passAll;
    const ignored = new Set(spec.ignoreHosts);
    return (host) => !ignored.has(host.host);
  }
}
