import type { HostState } from '../types.js';
import { BaseFilter } from './base.js';

/** Passes hosts whose compute service is up (recent heartbeat, not forced down) and enabled. */
export class ComputeFilter extends BaseFilter {
  readonly name = 'ComputeFilter';
  override readonly runOncePerRequest = true;
  hostPasses(host: HostState): boolean {
    return host.service.up && !host.service.disabled;
  }
}
