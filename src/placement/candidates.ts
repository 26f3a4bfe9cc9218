// GET /allocation_candidates over the in-memory provider view: which trees can satisfy every
// request group, and how. One allocation request per distinct way of placing the groups:
// - the unsuffixed group's resource classes may each come from any provider of the tree; its
//   required/forbidden traits are checked against the union of the providers it uses;
// - each granular (suffixed) group is satisfied by one provider, which itself carries the
//   group's traits and aggregates; group_policy=isolate makes granular groups use distinct providers;
// - root_required/root_forbidden apply to the tree's root; same_subtree asks that the providers
//   of the listed groups share one of them as a common ancestor (or self).
import { capacityOf, type ProviderState, type ProviderView } from './view.js';

export interface RequestGroup {
  resources: Record<string, number>;
  /** Traits that must be on the provider(s) satisfying this group. */
  required?: string[];
  /** Traits that must not be. */
  forbidden?: string[];
  /** Each inner list: at least one of these traits (required=in:A,B, microversion 1.39). */
  requiredAny?: string[][];
  /** Each inner list: "in any of these aggregates"; all outer entries must hold. */
  memberOf?: string[][];
  /** Aggregates the providers must not be in (member_of=!uuid, 1.32). */
  forbiddenAggregates?: string[];
  /** A provider uuid whose tree the candidates must come from. */
  inTree?: string;
}

export interface CandidateQuery {
  unsuffixed: RequestGroup;
  granular?: Record<string, RequestGroup>;
  groupPolicy?: 'none' | 'isolate';
  limit?: number;
  /** Traits the root provider of each tree must have / must not have (1.35). */
  rootRequired?: string[];
  rootForbidden?: string[];
  rootRequiredAny?: string[][];
  /** Each entry: suffixes whose providers must be in one subtree rooted at one of them (1.36). */
  sameSubtree?: string[][];
  /** Before microversion 1.29 requests that use a non-root provider are left out, as Placement does. */
  excludeNested?: boolean;
}

export interface AllocationRequest {
  allocations: Record<string, { resources: Record<string, number> }>;
  /** Request group suffix ("" for the unsuffixed group) -> the providers that satisfied it. */
  mappings?: Record<string, string[]>;
}

/** Read-only: summaries are shared between answers (and frozen). */
export interface ProviderSummary {
  resources: Record<string, { capacity: number; used: number }>;
  traits: string[];
  parent_provider_uuid: string | null;
  root_provider_uuid: string;
}

export interface Candidates {
  allocation_requests: AllocationRequest[];
  provider_summaries: Record<string, ProviderSummary>;
}

/** Ways one tree may be tried before giving up on it (a guard against combinatorial trees). */
const MAX_COMBINATIONS_PER_TREE = 10_000;

function fits(p: ProviderState, cls: string, amount: number, alreadyUsed = 0): boolean {
  const inv = p.inventories.get(cls);
  if (!inv) return false;
  if (amount < inv.min_unit || amount > inv.max_unit || amount % inv.step_size !== 0) return false;
  return (p.usages.get(cls) ?? 0) + alreadyUsed + amount <= capacityOf(inv);
}

function traitsHold(traits: Set<string>, group: Pick<RequestGroup, 'required' | 'forbidden' | 'requiredAny'>): boolean {
  for (const t of group.required ?? []) if (!traits.has(t)) return false;
  for (const t of group.forbidden ?? []) if (traits.has(t)) return false;
  for (const any of group.requiredAny ?? []) if (!any.some((t) => traits.has(t))) return false;
  return true;
}

function aggregatesHold(p: ProviderState, group: RequestGroup): boolean {
  for (const any of group.memberOf ?? []) if (!any.some((a) => p.aggregates.has(a))) return false;
  for (const a of group.forbiddenAggregates ?? []) if (p.aggregates.has(a)) return false;
  return true;
}

/** Does a provider pass the filters a GET /resource_providers query gives (its own resources, traits, aggregates)? */
export function providerMatches(p: ProviderState, group: RequestGroup): boolean {
  for (const [cls, amount] of Object.entries(group.resources)) if (!fits(p, cls, amount)) return false;
  return traitsHold(p.traits, group) && aggregatesHold(p, group);
}

interface GroupPlan {
  suffix: string;
  group: RequestGroup;
  classes: [string, number][];
  /** Granular: one provider does it all. */
  single: boolean;
}

/** One way of placing one group: class -> provider. */
type Placement = Map<string, ProviderState>;

function placementsFor(plan: GroupPlan, tree: ProviderState[]): Placement[] {
  const { group } = plan;
  const eligible = tree.filter((p) => aggregatesHold(p, group) && (!plan.single || traitsHold(p.traits, group)));
  if (plan.single) {
    const out: Placement[] = [];
    for (const p of eligible) {
      if (plan.classes.every(([cls, amount]) => fits(p, cls, amount))) out.push(new Map(plan.classes.map(([cls]) => [cls, p])));
    }
    return out;
  }
  // Unsuffixed: each class from any provider; the product of the options.
  let partial: Placement[] = [new Map()];
  for (const [cls, amount] of plan.classes) {
    const options = eligible.filter((p) => fits(p, cls, amount));
    if (options.length === 0) return [];
    const next: Placement[] = [];
    for (const base of partial) {
      for (const p of options) {
        const m = new Map(base);
        m.set(cls, p);
        next.push(m);
        if (next.length > MAX_COMBINATIONS_PER_TREE) break;
      }
    }
    partial = next;
  }
  return partial;
}

export function findCandidates(view: ProviderView, query: CandidateQuery): Candidates {
  const plans: GroupPlan[] = [];
  const unsuffixedClasses = Object.entries(query.unsuffixed.resources);
  plans.push({ suffix: '', group: query.unsuffixed, classes: unsuffixedClasses, single: false });
  for (const [suffix, group] of Object.entries(query.granular ?? {})) {
    plans.push({ suffix, group, classes: Object.entries(group.resources), single: true });
  }
  const active = plans.filter((p) => p.classes.length > 0);
  const limit = query.limit ?? Infinity;
  const isolate = query.groupPolicy === 'isolate';

  // Trees named by in_tree (any group's): the candidates must come from those trees.
  const treeRoots = new Set<string>();
  let restricted = false;
  for (const plan of plans) {
    if (plan.group.inTree === undefined) continue;
    const p = view.providers.get(plan.group.inTree);
    if (!restricted) {
      restricted = true;
      if (p) treeRoots.add(p.root);
    } else if (!p || !treeRoots.has(p.root)) {
      treeRoots.clear();
    }
  }

  const requests: AllocationRequest[] = [];
  const summaryTrees: string[] = [];
  const seen = new Set<string>();
  if (active.length === 0) return { allocation_requests: [], provider_summaries: {} };

  // The common case (one unsuffixed group, no tree-wide constraints) on a one-provider tree:
  // the provider has it all or nothing; checked without building placements.
  const simple = active.length === 1 && active[0].suffix === '' && !query.sameSubtree?.length;
  const rootTraits = { required: query.rootRequired, forbidden: query.rootForbidden, requiredAny: query.rootRequiredAny };
  const hasRootTraits = !!(query.rootRequired?.length || query.rootForbidden?.length || query.rootRequiredAny?.length);
  const group = query.unsuffixed;
  const sharedResources = Object.fromEntries(unsuffixedClasses);
  for (const root of view.providers.values()) {
    if (requests.length >= limit) break;
    if (root.uuid !== root.root) continue;
    if (restricted && !treeRoots.has(root.uuid)) continue;
    if (hasRootTraits && !traitsHold(root.traits, rootTraits)) continue;
    if (simple && view.isSingle(root.uuid)) {
      let ok = aggregatesHold(root, group) && traitsHold(root.traits, group);
      for (let i = 0; ok && i < unsuffixedClasses.length; i++) ok = fits(root, unsuffixedClasses[i][0], unsuffixedClasses[i][1]);
      if (!ok) continue;
      requests.push({ allocations: { [root.uuid]: { resources: { ...sharedResources } } }, mappings: { '': [root.uuid] } });
      summaryTrees.push(root.uuid);
      continue;
    }
    const tree = view.treeOf(root.uuid);
    const options: Placement[][] = [];
    let possible = true;
    for (const plan of active) {
      const placements = placementsFor(plan, tree);
      if (placements.length === 0) { possible = false; break; }
      options.push(placements);
    }
    if (!possible) continue;
    const before = requests.length;
    let tried = 0;
    const choose = (index: number, chosen: Placement[]): void => {
      if (requests.length >= limit || tried > MAX_COMBINATIONS_PER_TREE) return;
      if (index === options.length) {
        tried++;
        const request = combine(active, chosen, query, isolate, view);
        if (!request) return;
        if (tree.length > 1) {
          const key = JSON.stringify(request);
          if (seen.has(key)) return;
          seen.add(key);
        }
        requests.push(request);
        return;
      }
      for (const placement of options[index]) {
        chosen.push(placement);
        choose(index + 1, chosen);
        chosen.pop();
        if (requests.length >= limit) return;
      }
    };
    choose(0, []);
    if (requests.length > before) summaryTrees.push(root.uuid);
  }

  const summaries: Record<string, ProviderSummary> = {};
  for (const root of summaryTrees) for (const p of view.treeOf(root)) summaries[p.uuid] = summaryOf(p);
  return { allocation_requests: requests, provider_summaries: summaries };
}

export function summaryOf(p: ProviderState): ProviderSummary {
  if (p.summary) return p.summary as ProviderSummary;
  const resources: ProviderSummary['resources'] = {};
  for (const [cls, inv] of p.inventories) resources[cls] = { capacity: capacityOf(inv), used: p.usages.get(cls) ?? 0 };
  const summary: ProviderSummary = { resources, traits: [...p.traits].sort(), parent_provider_uuid: p.parent, root_provider_uuid: p.root };
  // Shared by every answer until the provider changes: frozen, so that no caller can alter the view.
  for (const r of Object.values(resources)) Object.freeze(r);
  Object.freeze(resources);
  Object.freeze(summary.traits);
  p.summary = Object.freeze(summary);
  return summary;
}

/** Checks one choice of placements for every group together; returns its allocation request or null. */
function combine(plans: GroupPlan[], chosen: Placement[], query: CandidateQuery, isolate: boolean, view: ProviderView): AllocationRequest | null {
  const sums = new Map<ProviderState, Map<string, number>>();
  const mappings: Record<string, string[]> = {};
  const granularProviders = new Map<string, string>();
  for (let i = 0; i < plans.length; i++) {
    const plan = plans[i];
    const placement = chosen[i];
    const used = new Set<string>();
    for (const [cls, amount] of plan.classes) {
      const p = placement.get(cls)!;
      used.add(p.uuid);
      let byClass = sums.get(p);
      if (!byClass) sums.set(p, (byClass = new Map()));
      byClass.set(cls, (byClass.get(cls) ?? 0) + amount);
    }
    if (plan.single) {
      const uuid = [...used][0];
      if (isolate) {
        for (const [suffix, other] of granularProviders) if (other === uuid && suffix !== plan.suffix) return null;
      }
      granularProviders.set(plan.suffix, uuid);
    }
    mappings[plan.suffix] = [...used];
  }
  if (query.excludeNested) for (const p of sums.keys()) if (p.parent !== null) return null;
  // Several groups on one provider: the sum must still fit.
  for (const [p, byClass] of sums) {
    for (const [cls, amount] of byClass) {
      const inv = p.inventories.get(cls)!;
      if ((p.usages.get(cls) ?? 0) + amount > capacityOf(inv)) return null;
    }
  }
  // The unsuffixed group's traits: over the providers it uses (all of the request's when it has no resources).
  const unsuffixed = query.unsuffixed;
  if ((unsuffixed.required?.length || unsuffixed.forbidden?.length || unsuffixed.requiredAny?.length)) {
    const uuids = mappings[''] ?? Object.values(mappings).flat();
    const union = new Set<string>();
    for (const uuid of uuids) for (const t of view.providers.get(uuid)!.traits) union.add(t);
    if (!traitsHold(union, unsuffixed)) return null;
    for (const uuid of uuids) {
      const traits = view.providers.get(uuid)!.traits;
      for (const t of unsuffixed.forbidden ?? []) if (traits.has(t)) return null;
    }
  }
  for (const suffixes of query.sameSubtree ?? []) {
    const involved = suffixes.flatMap((s) => mappings[s] ?? []);
    if (involved.length === 0) continue;
    const anchors = suffixes.flatMap((s) => mappings[s] ?? []);
    if (!anchors.some((anchor) => { const sub = view.subtreeOf(anchor); return involved.every((u) => sub.has(u)); })) return null;
  }
  const allocations: AllocationRequest['allocations'] = {};
  for (const [p, byClass] of sums) allocations[p.uuid] = { resources: Object.fromEntries(byClass) };
  return { allocations, mappings };
}
