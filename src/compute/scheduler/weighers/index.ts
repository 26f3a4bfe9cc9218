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
  const weighed = hosts.map((host) => ({ host, weight: 0 }));
  if (weighed.length > 1) {
    for (const weigher of weighers) {
      const values = normalize(hosts.map((h) => weigher.weigh(h, spec)));
      values.forEach((v, i) => { weighed[i].weight += weigher.multiplier(hosts[i]) * v; });
    }
  }
  return weighed
    .map((w, i) => ({ ...w, i }))
    .sort((a, b) => b.weight - a.weight || a.i - b.i)
    .map(({ host, weight }) => ({ host, weight }));
}

export { RAMWeigher, DiskWeigher, CPUWeigher, ServerGroupSoftAffinityWeigher, ServerGroupSoftAntiAffinityWeigher, BuildFailureWeigher };
