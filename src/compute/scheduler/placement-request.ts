// The Placement query for one instance of a request, as Nova's ResourceRequest builds it:
// the flavor's VCPU / MEMORY_MB / DISK_GB, overridden or extended by `resources:CLASS=N`
// extra specs; `trait:NAME=required|forbidden`; granular groups `resourcesN:` / `traitN:`
// with `group_policy`; image properties `trait:NAME=required`; classes asked with 0 dropped.
import { BadRequest } from '../../core/errors.js';
import type { CandidateQuery, RequestGroup } from '../../placement/service.js';
import type { FlavorSpec, RequestSpec, Resources } from './types.js';

/** Keys of the placement part of the extra specs: prefix, optional group suffix, ':' and the class or trait. */
const KEY = /^(resources|trait)([a-zA-Z0-9_-]{1,64})?:(.+)$/;
const CLASS_NAME = /^[A-Z0-9_]+$/;

/** The flavor's standard amounts: DISK_GB = root (unless booting from a volume) + ephemeral + swap in whole GB. */
export function flavorResources(flavor: FlavorSpec, bootFromVolume = false): Resources {
  const disk = (bootFromVolume ? 0 : flavor.rootGb) + flavor.ephemeralGb + Math.ceil(flavor.swapMb / 1024);
  return { VCPU: flavor.vcpus, MEMORY_MB: flavor.memoryMb, DISK_GB: disk };
}

function group(map: Map<string, RequestGroup>, suffix: string): RequestGroup {
  let g = map.get(suffix);
  if (!g) { g = { resources: {}, required: [], forbidden: [] }; map.set(suffix, g); }
  return g;
}

function addTrait(g: RequestGroup, name: string, how: string): void {
  if (how === 'required') { if (!g.required!.includes(name)) g.required!.push(name); }
  else if (how === 'forbidden') { if (!g.forbidden!.includes(name)) g.forbidden!.push(name); }
  // Other values are ignored, as Nova does.
}

function compact(g: RequestGroup): RequestGroup {
  const out: RequestGroup = { resources: Object.fromEntries(Object.entries(g.resources).filter(([, n]) => n > 0)) };
  if (g.required?.length) out.required = [...g.required];
  if (g.forbidden?.length) out.forbidden = [...g.forbidden];
  if (g.memberOf?.length) out.memberOf = g.memberOf.map((l) => [...l]);
  if (g.inTree) out.inTree = g.inTree;
  return out;
}

export interface QueryOptions {
  /** [scheduler] max_placement_results; omitted for a forced destination. */
  limit?: number;
  /** Aggregates the host must be in (e.g. the AZ prefilter): each inner list is "any of". */
  memberOf?: string[][];
  /** The provider whose tree the host must be (a requested host/node). */
  inTree?: string;
}

/** The candidates query for one instance of the request. Throws BadRequest on malformed extra specs. */
export function buildCandidateQuery(spec: RequestSpec, options: QueryOptions = {}): CandidateQuery {
  const groups = new Map<string, RequestGroup>();
  const unsuffixed = group(groups, '');
  Object.assign(unsuffixed.resources, flavorResources(spec.flavor, spec.bootFromVolume));
  let groupPolicy: 'none' | 'isolate' | undefined;

  for (const [key, raw] of Object.entries(spec.flavor.extraSpecs)) {
    const value = String(raw).trim();
    if (key === 'group_policy') {
      if (value !== 'none' && value !== 'isolate') throw new BadRequest(`Invalid extra spec group_policy=${value}: use none or isolate.`);
      groupPolicy = value;
      continue;
    }
    const m = KEY.exec(key);
    if (!m) continue;
    const [, prefix, suffix = '', name] = m;
    const g = group(groups, suffix);
    if (prefix === 'resources') {
      if (!CLASS_NAME.test(name)) throw new BadRequest(`Invalid resource class in extra spec ${key}.`);
      if (!/^\d+$/.test(value)) throw new BadRequest(`Invalid amount in extra spec ${key}=${value}: a non-negative integer is required.`);
      g.resources[name] = Number(value);
    } else {
      addTrait(g, name, value);
    }
  }
  for (const [key, value] of Object.entries(spec.image?.properties ?? {})) {
    const m = /^trait:(.+)$/.exec(key);
    if (m && String(value).trim() === 'required') addTrait(unsuffixed, m[1], 'required');
  }
  if (options.memberOf?.length) unsuffixed.memberOf = options.memberOf;
  if (options.inTree) unsuffixed.inTree = options.inTree;

  const granular: Record<string, RequestGroup> = {};
  for (const [suffix, g] of groups) if (suffix !== '') granular[suffix] = compact(g);
  const query: CandidateQuery = { unsuffixed: compact(unsuffixed) };
  if (Object.keys(granular).length > 0) {
    query.granular = granular;
    // Placement wants a policy once there is more than one granular group; Nova's default behaviour is "none".
    query.groupPolicy = groupPolicy ?? 'none';
  } else if (groupPolicy) {
    query.groupPolicy = groupPolicy;
  }
  if (options.limit !== undefined) query.limit = options.limit;
  return query;
}

/** All the resources one instance consumes, summed over its groups (for in-request consumption). */
export function totalResources(query: CandidateQuery): Resources {
  const total: Resources = {};
  for (const g of [query.unsuffixed, ...Object.values(query.granular ?? {})]) {
    for (const [cls, n] of Object.entries(g.resources)) total[cls] = (total[cls] ?? 0) + n;
  }
  return total;
}

function describeGroup(g: RequestGroup): string {
  const res = Object.entries(g.resources).map(([c, n]) => `${c}=${n}`).join(', ') || 'no resources';
  const extra: string[] = [];
  if (g.required?.length) extra.push(`required traits ${g.required.join(', ')}`);
  if (g.forbidden?.length) extra.push(`forbidden traits ${g.forbidden.join(', ')}`);
  return extra.length ? `${res} (${extra.join('; ')})` : res;
}

/**
 * What was asked, in words, for the NoValidHost message:
 * "VCPU=64, MEMORY_MB=512, DISK_GB=1 (required traits CUSTOM_X)". `notes` add the destination
 * constraints the caller knows in words (availability zone, requested host).
 */
export function describeQuery(query: CandidateQuery, notes: string[] = []): string {
  let text = describeGroup(query.unsuffixed);
  for (const [suffix, g] of Object.entries(query.granular ?? {})) text += `; group ${suffix}: ${describeGroup(g)}`;
  if (query.granular && Object.keys(query.granular).length > 1) text += `; group_policy=${query.groupPolicy ?? 'none'}`;
  if (notes.length) text += ` ${notes.map((n) => `(${n})`).join(' ')}`;
  return text;
}
