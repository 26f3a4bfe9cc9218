import type { HostState, RequestSpec } from '../types.js';
import { BaseFilter } from './base.js';

/** Skips the hosts this request already tried (the conductor's reschedules). */
export class RetryFilter extends BaseFilter {
  readonly name = 'RetryFilter';
  override readonly runOncePerRequest = true;
  hostPasses(host: HostState, spec: RequestSpec): boolean {
    return !spec.ignoreHosts.includes(host.host);
  }
}
