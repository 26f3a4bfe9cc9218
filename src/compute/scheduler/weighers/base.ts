// What every weigher is built from: its multiplier comes from [filter_scheduler] <option>,
// overridden per host by the same key in the host's aggregates' metadata (the smallest value
// when several aggregates set it), as Nova's utils.get_weight_multiplier does.
import type { Config } from '../../../core/config.js';
import type { HostState, HostWeigher, RequestSpec } from '../types.js';

export interface WeigherOptions {
  config: Config;
}

export abstract class BaseWeigher implements HostWeigher {
  abstract readonly name: string;
  private readonly configured: number;
  constructor(options: WeigherOptions, private readonly option: string, fallback: number) {
    this.configured = options.config.getInt('filter_scheduler', option, fallback);
  }
  abstract weigh(host: HostState, spec: RequestSpec): number;
  multiplier(host: HostState): number {
    const aggregates = host.aggregates;
    if (aggregates.length === 0) return this.configured;
    let min = Infinity;
    for (const a of aggregates) {
      const v = a.metadata[this.option];
      if (v === undefined) continue;
      const n = Number(v);
      if (Number.isFinite(n) && n < min) min = n;
    }
    return min === Infinity ? this.configured : min;
  }
}

/** Nova's weights.normalize: min-max to 0..1; all zeros when every value is the same. */
export function normalize(values: number[], minval?: number, maxval?: number): number[] {
  if (values.length === 0) return [];
  const lo = minval ?? Math.min(...values);
  const hi = maxval ?? Math.max(...values);
  if (lo === hi) return values.map(() => 0);
  return values.map((v) => (v - lo) / (hi - lo));
}
