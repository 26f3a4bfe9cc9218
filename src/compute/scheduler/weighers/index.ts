// The weigher registry (name -> factory), [filter_scheduler] weight_classes (default
// "nova.scheduler.weights.all_weighers": every one here), and the weighing itself: each
// weigher's values are normalized over the hosts to 0..1, multiplied by its multiplier and
// summed; the heaviest host comes first.
import { BadRequest } from '../../../core/errors.js';
import type { HostState, HostWeigher, RequestSpec } from '../types.js';
import { ServerGroupSoftAffinityWeigher, ServerGroupSoftAntiAffinityWeigher } from './affinity.js';
import { normalize, type WeigherOptions } from './base.js';
import { BuildFailureWeigher, CPUWeigher, DiskWeigher, RAMWeigher } from './resources.js';

export { normalize, type WeigherOptions } from './base.js';

export const WEIGHERS: Record<string, (options: WeigherOptions) => HostWeigher> = {
  RAMWeigher: (o) => new RAMWeigher(o),
  DiskWeigher: (o) => new DiskWeigher(o),
  CPUWeigher: (o) => new CPUWeigher(o),
  ServerGroupSoftAffinityWeigher: (o) => new ServerGroupSoftAffinityWeigher(o),
  ServerGroupSoftAntiAffinityWeigher: (o) => new ServerGroupSoftAntiAffinityWeigher(o),
  BuildFailureWeigher: (o) => new BuildFailureWeigher(o),
};

const shortName = (name: string) => name.slice(name.lastIndexOf('.') + 1);

export function enabledWeighers(options: WeigherOptions): HostWeigher[] {
  const names: string[] = [];
  for (const entry of options.config.getList('filter_scheduler', 'weight_classes', ['nova.scheduler.weights.all_weighers'])) {
    const name = shortName(entry);
    if (name === 'all_weighers') names.push(...Object.keys(WEIGHERS));
    else if (WEIGHERS[name]) names.push(name);
    else throw new BadRequest(`[filter_scheduler] weight_classes: unknown weigher "${entry}" (known: ${Object.keys(WEIGHERS).join(', ')})`);
  }
  return [...new Set(names)].map((n) => WEIGHERS[n](options));
}

export interface WeighedHost { host: HostState; weight: number }

/** The hosts with their total weights, heaviest first (stable for equal weights). */
export function weighHosts(hosts: HostState[], spec: RequestSpec, weighers: HostWeigher[]): WeighedHost[] {
  const n = hosts.length;
  const weights = new Float64Array(n);
  if (n > 1) {
    const values = new Array<number>(n);
    for (const weigher of weighers) {
      let lo = Infinity, hi = -Infinity, odd = false;
      for (let i = 0; i < n; i++) {
        const v = weigher.weigh(hosts[i], spec);
        values[i] = v;
        if (v < lo) lo = v;
        if (v > hi) hi = v;
        if (Number.isNaN(v)) odd = true;
      }
      if (odd) { // normalize() spelled out below, except for what it makes of NaN
        normalize(values).forEach((v, i) => { weights[i] += weigher.multiplier(hosts[i]) * v; });
        continue;
      }
      if (lo === hi) continue; // every value the same: all normalize to 0
      const range = hi - lo;
      for (let i = 0; i < n; i++) weights[i] += weigher.multiplier(hosts[i]) * ((values[i] - lo) / range);
    }
  }
  const order = Array.from({ length: n }, (_, i) => i);
  order.sort((a, b) => weights[b] - weights[a] || a - b);
  return order.map((i) => ({ host: hosts[i], weight: weights[i] }));
}

export { RAMWeigher, DiskWeigher, CPUWeigher, ServerGroupSoftAffinityWeigher, ServerGroupSoftAntiAffinityWeigher, BuildFailureWeigher };
