// The scheduler drivers ([scheduler] driver), from a name -> factory registry:
//   filter  — Placement candidates → host states of those providers → filters → weighers → claim;
//   random  — the same, but the host is picked at random among those that pass the filters;
//   caching — like filter, with host states read every [scheduler] cache_refresh_seconds in the
//             background (and updated in-process after each claim) instead of per request.
// For each instance of the request: filter, order, claim in Placement (on Conflict the next
// host), consume the claim in the in-request host state; then alternates for each instance.
import type { Config } from '../../core/config.js';
import { Conflict, NuboError } from '../../core/errors.js';
import type { Logger } from '../../core/log.js';
import type { Database } from '../../db/index.js';
import type { AllocationRequest, CandidateQuery, Candidates, PlacementService, ProviderSummary } from '../../placement/service.js';
import { enabledFilters } from './filters/index.js';
import { applyProviderSummary, cloneHostState, consumeFromRequest, HostManager } from './host-manager.js';
import { buildCandidateQuery, describeQuery } from './placement-request.js';
import type { Destination, HostFilter, HostState, HostWeigher, RequestSpec, Resources, Selection } from './types.js';
import { enabledWeighers, weighHosts } from './weighers/index.js';

/** Raised when an instance of the request fits nowhere; its message starts "No valid host was found. ". */
export class NoValidHost extends NuboError {
  readonly reason: string;
  constructor(reason: string) {
    super(400, 'No Valid Host', `No valid host was found. ${reason}`);
    this.reason = reason;
  }
}

/** The part of the Placement service the scheduler uses. */
export type SchedulerPlacement = Pick<PlacementService, 'getAllocationCandidates' | 'putAllocations' | 'deleteAllocations'>;

export interface SchedulerDeps {
  config: Config;
  database: Database;
  placement: SchedulerPlacement;
  logger: Logger;
  /** Clock for service liveness (tests). */
  now?: () => Date;
  /** Random source in [0, 1) for host_subset_size and the random driver (tests). */
  random?: () => number;
}

export interface SchedulerDriver {
  selectDestinations(spec: RequestSpec): Promise<Selection[]>;
  close(): Promise<void>;
}

interface FilterMemo { afterOnce?: HostState[]; onceRemoved: FilterRun['removed'] }
interface FilterRun { passed: HostState[]; removed: { name: string; removed: number; of: number }[]; emptyAt?: string }

function sumAllocations(request: AllocationRequest): Resources {
  const total: Resources = {};
  for (const a of Object.values(request.allocations)) {
    for (const [cls, n] of Object.entries(a.resources)) total[cls] = (total[cls] ?? 0) + n;
  }
  return total;
}

/** Allocation requests by the root provider (the compute node) of the providers they use. */
function requestsByRoot(candidates: Candidates, summaries: ReadonlyMap<string, ProviderSummary>): Map<string, AllocationRequest[]> {
  const byRoot = new Map<string, AllocationRequest[]>();
  const add = (root: string, request: AllocationRequest) => {
    const list = byRoot.get(root);
    if (list) list.push(request); else byRoot.set(root, [request]);
  };
  for (const request of candidates.allocation_requests) {
    const providers = Object.keys(request.allocations);
    if (providers.length === 1) { add(summaries.get(providers[0])?.root_provider_uuid ?? providers[0], request); continue; }
    const roots = new Set(providers.map((rp) => summaries.get(rp)?.root_provider_uuid ?? rp));
    for (const root of roots) add(root, request);
  }
  return byRoot;
}

abstract class BaseDriver implements SchedulerDriver {
  protected readonly hostManager: HostManager;
  protected readonly filters: HostFilter[];
  protected readonly weighers: HostWeigher[];
  protected readonly random: () => number;
  protected readonly logger: Logger;
  private readonly maxAttempts: number;
  private readonly hostSubsetSize: number;
  private readonly maxPlacementResults: number;
  private readonly azPrefilter: boolean;

  constructor(protected readonly deps: SchedulerDeps) {
    const config = deps.config;
    this.logger = deps.logger;
    this.random = deps.random ?? Math.random;
    this.hostManager = new HostManager({ config, database: deps.database, now: deps.now });
    this.filters = enabledFilters({ config, defaultAvailabilityZone: this.hostManager.defaultAvailabilityZone });
    this.weighers = enabledWeighers({ config });
    this.maxAttempts = Math.max(1, config.getInt('scheduler', 'max_attempts', 3));
    this.hostSubsetSize = Math.max(1, config.getInt('filter_scheduler', 'host_subset_size', 1));
    this.maxPlacementResults = Math.max(1, config.getInt('scheduler', 'max_placement_results', 1000));
    this.azPrefilter = config.getBool('scheduler', 'query_placement_for_availability_zone', true);
  }

  /**
   * The states of the hosts among `providers` (node order), fresh or cached: copies this request
   * may consume from.
   */
  protected abstract hostStates(spec: RequestSpec, providers: ReadonlyMap<string, unknown>): Promise<HostState[]>;

  /** The instances whose hosts the filters and weighers look at: group members, hinted instances, the request's own. */
  protected namedInstances(spec: RequestSpec): string[] {
    const hinted = ['same_host', 'different_host'].flatMap((k) => {
      const v = spec.schedulerHints[k];
      return v === undefined || v === null ? [] : (Array.isArray(v) ? v : [v]).map(String);
    });
    return [...new Set([...(spec.group?.members ?? []), ...hinted, ...spec.instanceUuids])];
  }
  /** The hosts that passed the filters, best first. */
  protected abstract order(hosts: HostState[], spec: RequestSpec): HostState[];
  /** Called after each successful claim (the caching driver updates its cache). */
  protected afterClaim(_providerUuid: string, _resources: Resources, _instanceUuid: string): void { /* nothing */ }

  async close(): Promise<void> { /* nothing */ }

  /** Weighers, then host_subset_size: a random one of the N best goes first. */
  protected weighed(hosts: HostState[], spec: RequestSpec): HostState[] {
    const sorted = weighHosts(hosts, spec, this.weighers).map((w) => w.host);
    const subset = Math.min(this.hostSubsetSize, sorted.length);
    if (subset <= 1) return sorted;
    const chosen = sorted[Math.floor(this.random() * subset)];
    return [chosen, ...sorted.filter((h) => h !== chosen)];
  }

  /**
   * The filters for instance `index` of the request. Filters whose answer holds for the whole
   * request run for the first instance only: later instances start from the hosts that passed
   * them (`afterOnce`) and repeat their counts in the report.
   */
  private runFilters(hosts: HostState[], spec: RequestSpec, index: number, memo: FilterMemo): FilterRun {
    const removed: FilterRun['removed'] = [];
    const apply = (list: HostState[], filter: HostFilter): HostState[] => {
      const before = list.length;
      const passes = filter.forRequest ? filter.forRequest(spec) : (h: HostState) => filter.hostPasses(h, spec);
      const passed = list.filter(passes);
      this.logger.debug(`Filter ${filter.name} returned ${passed.length} host(s)`, { instance: spec.instanceUuids[index] });
      if (passed.length < before) removed.push({ name: filter.name, removed: before - passed.length, of: before });
      return passed;
    };
    let list = hosts;
    if (!memo.afterOnce) {
      for (const filter of this.filters.filter((f) => f.runOncePerRequest)) {
        list = apply(list, filter);
        if (list.length === 0) return { passed: list, removed, emptyAt: filter.name };
      }
      memo.afterOnce = list;
      memo.onceRemoved = [...removed];
    } else {
      list = memo.afterOnce;
      removed.push(...memo.onceRemoved);
    }
    for (const filter of this.filters.filter((f) => !f.runOncePerRequest)) {
      list = apply(list, filter);
      if (list.length === 0) return { passed: list, removed, emptyAt: filter.name };
    }
    return { passed: list, removed };
  }

  private async placementQuery(spec: RequestSpec): Promise<{ query: CandidateQuery; notes: string[]; forcedNodes?: Set<string>; onlyNodes?: Set<string> }> {
    const notes: string[] = [];
    if (spec.requestedDestination && !spec.requestedHost && !spec.requestedNode) {
      const nodes = await this.hostManager.findNodes(spec.requestedDestination, undefined);
      if (nodes.length === 0) throw new NoValidHost(`The requested destination (host ${spec.requestedDestination}) is not a compute node.`);
      notes.push(`on host ${spec.requestedDestination}`);
      const query = buildCandidateQuery(spec, { inTree: nodes.length === 1 ? nodes[0].providerUuid : undefined });
      return { query, notes, onlyNodes: new Set(nodes.map((n) => n.providerUuid)) };
    }
    if (spec.requestedHost || spec.requestedNode) {
      const where = [spec.requestedHost && `host ${spec.requestedHost}`, spec.requestedNode && `node ${spec.requestedNode}`].filter(Boolean).join(', ');
      const nodes = await this.hostManager.findNodes(spec.requestedHost, spec.requestedNode);
      if (nodes.length === 0) throw new NoValidHost(`The requested destination (${where}) is not a compute node.`);
      notes.push(`on ${where}`);
      const query = buildCandidateQuery(spec, { inTree: nodes.length === 1 ? nodes[0].providerUuid : undefined });
      return { query, notes, forcedNodes: new Set(nodes.map((n) => n.providerUuid)) };
    }
    let memberOf: string[][] | undefined;
    if (this.azPrefilter && spec.availabilityZone) {
      const rows = await this.deps.database.db.selectFrom('compute_aggregates as a')
        .innerJoin('compute_aggregate_metadata as m', 'm.aggregate_id', 'a.id')
        .select('a.uuid').where('m.key', '=', 'availability_zone').where('m.value', '=', spec.availabilityZone)
        .execute();
      if (rows.length > 0) {
        memberOf = [rows.map((r) => r.uuid).sort()];
        notes.push(`in availability zone ${spec.availabilityZone}`);
      }
    }
    return { query: buildCandidateQuery(spec, { limit: this.maxPlacementResults, memberOf }), notes };
  }

  async selectDestinations(input: RequestSpec): Promise<Selection[]> {
    if (input.instanceUuids.length === 0) return [];
    const { query, notes, forcedNodes, onlyNodes } = await this.placementQuery(input);
    const candidates = await this.deps.placement.getAllocationCandidates(query);
    if (candidates.allocation_requests.length === 0) {
      throw new NoValidHost(`There are not enough hosts available: Placement found no host with ${describeQuery(query, notes)}.`);
    }
    // A Map: the summaries object has a key per provider, slow to index with uuids read from the database.
    const summaries = new Map(Object.entries(candidates.provider_summaries));
    const byRoot = requestsByRoot(candidates, summaries);
    const restrict = forcedNodes ?? onlyNodes;
    const hosts = (await this.hostStates(input, byRoot)).filter((h) => !restrict || restrict.has(h.providerUuid));
    for (const h of hosts) {
      const summary = summaries.get(h.providerUuid);
      if (summary) applyProviderSummary(h, summary);
    }
    if (hosts.length === 0) {
      throw new NoValidHost(`There are not enough hosts available: Placement returned ${byRoot.size} candidate provider(s), none of them a compute node the scheduler knows.`);
    }

    // The working spec: the group's hosts as they are now, grown as this request places instances.
    const spec: RequestSpec = { ...input, ignoreHosts: [...input.ignoreHosts] };
    if (input.group) {
      const groupHosts = new Set(await this.hostManager.hostsOfInstances(input.group.members));
      for (const h of hosts) if (h.instanceUuids.size > 0 && input.group.members.some((m) => h.instanceUuids.has(m))) groupHosts.add(h.host);
      spec.group = { ...input.group, members: [...input.group.members], hosts: [...groupHosts].sort() };
    }

    const claimed: { instanceUuid: string; host: HostState; request: AllocationRequest }[] = [];
    const release = async () => {
      for (const c of claimed) {
        await this.deps.placement.deleteAllocations(c.instanceUuid).catch((err: Error) =>
          this.logger.warn('could not release allocations of a failed request', { instance: c.instanceUuid, error: err.message }));
      }
    };
    let ordered: HostState[] = [];
    const memo: FilterMemo = { onceRemoved: [] };
    /** Hosts whose claim Placement refused (full): not tried again in this request, nor offered as alternates. */
    const refusedProviders = new Set<string>();
    try {
      for (let index = 0; index < spec.instanceUuids.length; index++) {
        const instanceUuid = spec.instanceUuids[index];
        if (!forcedNodes) {
          const run = this.runFilters(hosts, spec, index, memo);
          if (run.emptyAt) {
            const counts = run.removed.map((r) => `${r.name} ${r.removed} of ${r.of}`).join(', ');
            throw new NoValidHost(`Filter ${run.emptyAt} returned 0 hosts; removed by filter: ${counts}.`);
          }
          ordered = this.order(run.passed, spec);
        } else {
          ordered = this.order(hosts, spec);
        }
        let chosen: { host: HostState; request: AllocationRequest } | undefined;
        const refused: string[] = [];
        for (const host of ordered) {
          if (refusedProviders.has(host.providerUuid)) continue;
          const request = byRoot.get(host.providerUuid)![0];
          try {
            await this.deps.placement.putAllocations(instanceUuid, {
              allocations: request.allocations, projectId: spec.projectId, userId: spec.userId, consumerGeneration: null,
            });
            chosen = { host, request };
            break;
          } catch (err) {
            if (!(err instanceof Conflict)) throw err;
            refused.push(host.host);
            refusedProviders.add(host.providerUuid);
            this.logger.info(`claim on ${host.host} refused, trying the next host`, { instance: instanceUuid, error: err.message });
          }
        }
        if (!chosen) {
          throw new NoValidHost(`There are not enough hosts available: Placement refused the claim on every host that passed the filters (${refused.join(', ')}).`);
        }
        claimed.push({ instanceUuid, ...chosen });
        const resources = sumAllocations(chosen.request);
        consumeFromRequest(chosen.host, resources, instanceUuid);
        spec.group?.hosts?.push(chosen.host.host);
        this.afterClaim(chosen.host.providerUuid, resources, instanceUuid);
        this.logger.debug(`selected ${chosen.host.host} (${chosen.host.nodename})`, { instance: instanceUuid });
      }
    } catch (err) {
      await release();
      throw err;
    }
    return this.withAlternates(claimed, hosts, ordered.filter((h) => !refusedProviders.has(h.providerUuid)), spec, byRoot, memo, Boolean(forcedNodes), refusedProviders);
  }

  /** Up to max_attempts - 1 alternates per instance: the next best hosts that still pass, none of them a selected host. */
  private withAlternates(
    claimed: { instanceUuid: string; host: HostState; request: AllocationRequest }[],
    hosts: HostState[], ordered: HostState[], spec: RequestSpec, byRoot: Map<string, AllocationRequest[]>, memo: FilterMemo, forced: boolean,
    refused: Set<string>,
  ): Selection[] {
    const wanted = this.maxAttempts - 1;
    let pool: HostState[] = [];
    if (wanted > 0) {
      if (claimed.length > 1 && !forced) {
        // The hosts have taken this request's instances: filter and order again, as Nova does.
        pool = this.order(this.runFilters(hosts, spec, claimed.length, memo).passed, spec);
      } else {
        pool = ordered;
      }
    }
    const selected = new Set(claimed.map((c) => c.host.providerUuid));
    const alternates: Destination[] = [];
    for (const host of pool) {
      if (alternates.length >= wanted) break;
      if (selected.has(host.providerUuid) || refused.has(host.providerUuid)) continue;
      const request = byRoot.get(host.providerUuid)?.[0];
      if (request) alternates.push({ host: host.host, nodename: host.nodename, providerUuid: host.providerUuid, allocationRequest: request });
    }
    return claimed.map((c) => ({
      instanceUuid: c.instanceUuid,
      host: c.host.host,
      nodename: c.host.nodename,
      providerUuid: c.host.providerUuid,
      allocationRequest: c.request,
      alternates: alternates.map((a) => ({ ...a })),
    }));
  }
}

export class FilterDriver extends BaseDriver {
  protected hostStates(spec: RequestSpec, providers: ReadonlyMap<string, unknown>): Promise<HostState[]> {
    return this.hostManager.getHostStates({ instances: this.namedInstances(spec), providers });
  }
  protected order(hosts: HostState[], spec: RequestSpec): HostState[] { return this.weighed(hosts, spec); }
}

export class RandomDriver extends BaseDriver {
  protected hostStates(spec: RequestSpec, providers: ReadonlyMap<string, unknown>): Promise<HostState[]> {
    return this.hostManager.getHostStates({ instances: this.namedInstances(spec), providers });
  }
  /** A random order (Fisher-Yates): the first is the pick, the rest are the claim fallbacks and alternates. */
  protected order(hosts: HostState[]): HostState[] {
    const out = [...hosts];
    for (let i = out.length - 1; i > 0; i--) {
      const j = Math.floor(this.random() * (i + 1));
      [out[i], out[j]] = [out[j], out[i]];
    }
    return out;
  }
}

export class CachingDriver extends BaseDriver {
  private cache: HostState[] | null = null;
  private loading: Promise<HostState[]> | null = null;
  private readonly refreshMs: number;
  private timer: NodeJS.Timeout | null = null;
  /**
   * Recent claims (the last refresh period before the latest refresh began): re-applied to a
   * refreshed cache whose tables do not show the instance on its host yet.
   */
  private recentClaims: { at: number; providerUuid: string; resources: Resources; instanceUuid: string }[] = [];

  constructor(deps: SchedulerDeps) {
    super(deps);
    this.refreshMs = Math.max(1, deps.config.getInt('scheduler', 'cache_refresh_seconds', 60)) * 1000;
  }

  /** Reads the host states now (also what the background timer does). */
  refresh(): Promise<HostState[]> {
    if (this.loading) return this.loading;
    const started = Date.now();
    this.loading = this.hostManager.getHostStates().then((states) => {
      const byProvider = new Map(states.map((h) => [h.providerUuid, h]));
      this.recentClaims = this.recentClaims.filter((c) => c.at >= started - this.refreshMs);
      for (const c of this.recentClaims) {
        const h = byProvider.get(c.providerUuid);
        if (h && !h.instanceUuids.has(c.instanceUuid)) consumeFromRequest(h, c.resources, c.instanceUuid);
      }
      this.cache = states;
      return states;
    }).finally(() => { this.loading = null; });
    return this.loading;
  }

  protected async hostStates(_spec: RequestSpec, providers: ReadonlyMap<string, unknown>): Promise<HostState[]> {
    return (await this.allHostStates()).filter((h) => providers.has(h.providerUuid)).map(cloneHostState);
  }

  private async allHostStates(): Promise<HostState[]> {
    if (!this.timer) {
      this.timer = setInterval(() => {
        this.refresh().catch((err: Error) => this.logger.warn('host state refresh failed', { error: err.message }));
      }, this.refreshMs);
      this.timer.unref();
    }
    return this.cache ?? this.refresh();
  }

  protected order(hosts: HostState[], spec: RequestSpec): HostState[] { return this.weighed(hosts, spec); }

  protected override afterClaim(providerUuid: string, resources: Resources, instanceUuid: string): void {
    this.recentClaims.push({ at: Date.now(), providerUuid, resources, instanceUuid });
    const h = this.cache?.find((s) => s.providerUuid === providerUuid);
    if (h) consumeFromRequest(h, resources, instanceUuid);
  }

  override async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }
}

export const DRIVERS: Record<string, (deps: SchedulerDeps) => SchedulerDriver> = {
  filter: (deps) => new FilterDriver(deps),
  random: (deps) => new RandomDriver(deps),
  caching: (deps) => new CachingDriver(deps),
  // Nova's entry-point names.
  filter_scheduler: (deps) => new FilterDriver(deps),
  chance_scheduler: (deps) => new RandomDriver(deps),
  caching_scheduler: (deps) => new CachingDriver(deps),
};
