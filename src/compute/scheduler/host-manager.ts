// Reads what the scheduler knows of every compute host from the compute tables, in a fixed
// number of queries whatever the host count: nodes joined with their services, aggregates
// (with metadata and hosts), and the live instances with a host. Service liveness is Nova's:
// a heartbeat within [DEFAULT] service_down_time seconds (default 60) and not forced down.
// A host's availability zone is the `availability_zone` metadata of its aggregates, else
// [DEFAULT] default_availability_zone ('nova').
import type { Config } from '../../core/config.js';
import type { Database } from '../../db/index.js';
import type { ProviderSummary } from '../../placement/service.js';
import { COMPUTE_BINARY } from '../rpc.js';
import type { AggregateInfo, HostState, Resources } from './types.js';

function parseJson<T>(text: unknown, fallback: T): T {
  if (typeof text !== 'string' || text === '') return fallback;
  try { return JSON.parse(text) as T; } catch { return fallback; }
}

const int = (v: unknown): number => (v === null || v === undefined ? 0 : Number(v));

/** What an instance's flavor snapshot consumes (tolerant of the API's and the RequestSpec's field names). */
function flavorUsage(text: string): Resources {
  const f = parseJson<Record<string, unknown>>(text, {});
  const n = (...keys: string[]) => { for (const k of keys) if (f[k] !== undefined && f[k] !== null) return Number(f[k]) || 0; return 0; };
  const swapMb = n('swapMb', 'swap_mb', 'swap');
  return {
    VCPU: n('vcpus'),
    MEMORY_MB: n('memoryMb', 'memory_mb', 'ram'),
    DISK_GB: n('rootGb', 'root_gb', 'disk') + n('ephemeralGb', 'ephemeral_gb', 'OS-FLV-EXT-DATA:ephemeral') + Math.ceil(swapMb / 1024),
  };
}

/** Recomputes Nova's derived numbers (vcpus_used, free_ram_mb, free_disk_mb) from `used`. */
export function refreshDerived(h: HostState): void {
  h.vcpusUsed = h.used.VCPU ?? 0;
  h.memoryMbUsed = h.used.MEMORY_MB ?? 0;
  h.diskGbUsed = h.used.DISK_GB ?? 0;
  h.freeRamMb = h.memoryMb - h.reservedHostMemoryMb - h.memoryMbUsed;
  h.freeDiskMb = h.localGb * 1024 - h.reservedHostDiskMb - h.diskGbUsed * 1024;
}

/** Placement's numbers for the provider replace the ones derived from the compute tables. */
export function applyProviderSummary(h: HostState, summary: ProviderSummary): void {
  h.providerSummary = summary;
  const resources = summary.resources;
  for (const cls in resources) {
    const r = resources[cls];
    h.capacity[cls] = r.capacity;
    h.used[cls] = r.used;
  }
  refreshDerived(h);
}

/** Nova's consume_from_request: the host as it will be once this instance is on it (within the request). */
export function consumeFromRequest(h: HostState, resources: Resources, instanceUuid: string): void {
  for (const [cls, n] of Object.entries(resources)) h.used[cls] = (h.used[cls] ?? 0) + n;
  refreshDerived(h);
  h.numInstances += 1;
  h.instanceUuids.add(instanceUuid);
}

/** A copy that can be consumed from without touching the original. */
export function cloneHostState(h: HostState): HostState {
  return { ...h, capacity: { ...h.capacity }, used: { ...h.used }, instanceUuids: new Set(h.instanceUuids) };
}

export interface HostManagerOptions {
  config: Config;
  database: Database;
  now?: () => Date;
}

/**
 * What the scheduler keeps of a compute node between requests: the columns that change only
 * when the node reports (parsed once), valid while the node's updated_at stays the same.
 */
type NodeEntry = Pick<HostState, 'host' | 'nodename' | 'hypervisorType' | 'hypervisorVersion' | 'hostIp' | 'supportedInstances' | 'traits'
  | 'capabilities' | 'cpuInfo' | 'vcpus' | 'memoryMb' | 'localGb' | 'cpuAllocationRatio' | 'ramAllocationRatio' | 'diskAllocationRatio'
  | 'reservedHostCpus' | 'reservedHostMemoryMb' | 'reservedHostDiskMb' | 'capacity'> & {
  updatedAt: string | null;
  serviceId: string;
};

/** A compute service's latest heartbeat as last read: the newest of updated_at and last_seen_up, else created_at. */
interface Beat { ms: number; iso: string | null }

function beatOf(r: { updated_at: string | null; last_seen_up: string | null; created_at: string | null }): Beat {
  let ms = NaN;
  for (const t of [r.updated_at, r.last_seen_up]) {
    if (!t) continue;
    const parsed = Date.parse(t);
    if (Number.isFinite(parsed) && !(parsed <= ms)) ms = parsed;
  }
  if (Number.isNaN(ms) && r.created_at) ms = Date.parse(r.created_at);
  return { ms, iso: Number.isFinite(ms) ? new Date(ms).toISOString() : null };
}

/** The aggregates of each host, and the zone they give it: rebuilt only when the aggregate tables' rows change. */
interface AggregateView {
  signature: string;
  byHost: Map<string, { aggregates: AggregateInfo[]; zone: string }>;
}

const NO_AGGREGATES: AggregateInfo[] = [];

export class HostManager {
  readonly serviceDownTimeSeconds: number;
  readonly defaultAvailabilityZone: string;
  private readonly database: Database;
  private readonly now: () => Date;
  /** Node id -> its static part, checked against the node's updated_at on every read. */
  private readonly nodeCache = new Map<string, NodeEntry>();
  private aggregateView: AggregateView | null = null;
  /** nova-compute service id -> its heartbeat as last read (heartbeats only move forward). */
  private readonly beats = new Map<string, Beat>();

  constructor(options: HostManagerOptions) {
    this.database = options.database;
    this.now = options.now ?? (() => new Date());
    this.serviceDownTimeSeconds = options.config.getInt('DEFAULT', 'service_down_time', 60);
    this.defaultAvailabilityZone = options.config.get('DEFAULT', 'default_availability_zone', 'nova');
  }

  /**
   * Every compute node's state (one per node), in node-name order; fresh objects the caller may
   * change. `providers` limits the states built to those nodes (the candidates Placement returned).
   * `instances: 'all'` (the default) reads every live instance with a host: instanceUuids lists
   * them all and `used` sums their flavors. Given a list of uuids (the ones a request names:
   * group members, same_host/different_host hints), only those are read into instanceUuids,
   * numInstances comes from a count, and `used` is left at 0 for Placement's summary to fill:
   * much less to read on a large cloud.
   *
   * What each call reads, whichever process changed the tables: every node's updated_at and
   * failed_builds, the compute services that are disabled or forced down (or have a disabled
   * reason), their count, and the aggregate tables. A node's other columns (hardware, JSON) are
   * read again only when its updated_at changed (every node report sets it). Heartbeats are kept
   * between calls: a service is up when its kept heartbeat is within service_down_time, and the
   * heartbeat of every service that would be down by the kept one is read again first, so the
   * answer is the one a fresh read gives (heartbeats only move forward); all are read again when
   * the services change (a new one, a deleted one). lastHeartbeat is therefore the latest one
   * read, which may be older than the latest one written while the service is up.
   */
  async getHostStates(options: { instances?: 'all' | string[]; providers?: ReadonlySet<string> | ReadonlyMap<string, unknown> } = {}): Promise<HostState[]> {
    const db = this.database.db;
    const wanted = options.instances ?? 'all';
    const live = () => db.selectFrom('compute_instances').where('deleted_at', 'is', null).where('host', 'is not', null);
    const readInstances = async (): Promise<{ id: string; host: string; node: string | null; flavor: string | null }[]> => {
      if (wanted === 'all') return live().select(['id', 'host', 'node', 'flavor']).execute();
      const out: { id: string; host: string; node: string | null; flavor: string | null }[] = [];
      const ids = [...new Set(wanted)];
      for (let i = 0; i < ids.length; i += 500) {
        const rows = await live().select(['id', 'host', 'node']).where('id', 'in', ids.slice(i, i + 500)).execute();
        for (const r of rows) out.push({ ...r, flavor: null });
      }
      return out;
    };
    // Counted per host (the host index makes it cheap); per node only for the rare hosts with several nodes.
    const readCounts = async (multiNodeHosts: string[]): Promise<{ host: string; node: string | null; count: number }[]> => {
      if (wanted === 'all') return [];
      const multi = new Set(multiNodeHosts);
      const rows = await live().select('host').select((eb) => eb.fn.countAll().as('count')).groupBy('host').execute();
      const out = rows.filter((r) => !multi.has(r.host)).map((r) => ({ host: r.host as string, node: null, count: Number(r.count) }));
      for (let i = 0; i < multiNodeHosts.length; i += 500) {
        const perNode = await live().select(['host', 'node']).select((eb) => eb.fn.countAll().as('count'))
          .where('host', 'in', multiNodeHosts.slice(i, i + 500)).groupBy(['host', 'node']).execute();
        for (const r of perNode) out.push({ host: r.host, node: r.node, count: Number(r.count) });
      }
      return out;
    };
    const services = () => db.selectFrom('compute_services').where('binary', '=', COMPUTE_BINARY);
    const [rows, flaggedRows, serviceCount, aggregateView, instances] = await Promise.all([
      db.selectFrom('compute_nodes').select(['id', 'updated_at', 'failed_builds']).orderBy('hypervisor_hostname').execute(),
      services().select(['id', 'disabled', 'disabled_reason', 'forced_down'])
        .where((eb) => eb.or([eb('disabled', '<>', 0), eb('forced_down', '<>', 0), eb('disabled_reason', 'is not', null)]))
        .execute(),
      services().select((eb) => eb.fn.countAll().as('count')).executeTakeFirstOrThrow(),
      this.readAggregates(),
      readInstances(),
    ]);
    const nodes = await this.refreshNodes(rows);
    const flagged = new Map(flaggedRows.map((f) => [f.id, f]));
    const nowMs = this.now().getTime();
    const downMs = this.serviceDownTimeSeconds * 1000;
    const isUp = (beat: Beat | undefined) => beat !== undefined && Number.isFinite(beat.ms) && Math.abs(nowMs - beat.ms) <= downMs;

    // Heartbeats: all of them when the set of services may have changed, else those of the services the kept one says are down.
    let recheck: string[] = [];
    const known = Number(serviceCount.count) === this.beats.size && nodes.every((n) => !n || this.beats.has(n.serviceId));
    if (!known) {
      const all = await services().select(['id', 'updated_at', 'last_seen_up', 'created_at']).execute();
      this.beats.clear();
      for (const r of all) this.beats.set(r.id, beatOf(r));
    } else {
      for (let k = 0; k < rows.length; k++) {
        const n = nodes[k];
        if (!n || (options.providers && !options.providers.has(rows[k].id))) continue;
        if (!isUp(this.beats.get(n.serviceId)) && int(flagged.get(n.serviceId)?.forced_down) !== 1) recheck.push(n.serviceId);
      }
      recheck = [...new Set(recheck)];
    }
    for (let i = 0; i < recheck.length; i += 500) {
      const ids = recheck.slice(i, i + 500);
      const fresh = await services().select(['id', 'updated_at', 'last_seen_up', 'created_at']).where('id', 'in', ids).execute();
      for (const id of ids) this.beats.delete(id);
      for (const r of fresh) this.beats.set(r.id, beatOf(r));
    }

    // Instances by node (by host when the node is not recorded and the host has one node).
    const nodesOfHost = new Map<string, string[]>();
    for (const n of nodes) {
      if (!n) continue;
      const list = nodesOfHost.get(n.host);
      if (list) list.push(n.nodename); else nodesOfHost.set(n.host, [n.nodename]);
    }
    const byNode = new Map<string, { uuids: Set<string>; flavors: string[]; count: number }>();
    const entryOf = (host: string, node: string | null) => {
      const only = nodesOfHost.get(host);
      const key = node ?? (only?.length === 1 ? only[0] : `host:${host}`);
      let entry = byNode.get(key);
      if (!entry) { entry = { uuids: new Set(), flavors: [], count: 0 }; byNode.set(key, entry); }
      return entry;
    };
    for (const i of instances) {
      const entry = entryOf(i.host, i.node);
      entry.uuids.add(i.id);
      if (i.flavor !== null) entry.flavors.push(i.flavor);
      if (wanted === 'all') entry.count++;
    }
    const counts = await readCounts([...nodesOfHost].filter(([, list]) => list.length > 1).map(([host]) => host));
    for (const c of counts) entryOf(c.host, c.node).count += c.count;

    const out: HostState[] = [];
    for (let k = 0; k < rows.length; k++) {
      const r = rows[k], n = nodes[k];
      if (!n || (options.providers && !options.providers.has(r.id))) continue;
      const agg = aggregateView.byHost.get(n.host);
      const beat = this.beats.get(n.serviceId);
      const flags = flagged.get(n.serviceId);
      const forcedDown = int(flags?.forced_down) === 1;
      const up = isUp(beat) && !forcedDown;
      const onNode = byNode.get(n.nodename);
      const used: Resources = { VCPU: 0, MEMORY_MB: 0, DISK_GB: 0 };
      if (onNode) for (const f of onNode.flavors) for (const [cls, amount] of Object.entries(flavorUsage(f))) used[cls] += amount;
      const h: HostState = {
        host: n.host,
        nodename: n.nodename,
        providerUuid: r.id,
        availabilityZone: agg ? agg.zone : this.defaultAvailabilityZone,
        aggregates: agg ? agg.aggregates : NO_AGGREGATES,
        service: {
          id: beat ? n.serviceId : '',
          up,
          disabled: !beat || int(flags?.disabled) === 1,
          disabledReason: flags?.disabled_reason ?? null,
          forcedDown,
          lastHeartbeat: beat ? beat.iso : null,
        },
        hypervisorType: n.hypervisorType,
        hypervisorVersion: n.hypervisorVersion,
        hostIp: n.hostIp,
        supportedInstances: n.supportedInstances,
        traits: n.traits,
        capabilities: n.capabilities,
        cpuInfo: n.cpuInfo,
        vcpus: n.vcpus, vcpusUsed: 0, memoryMb: n.memoryMb, memoryMbUsed: 0, freeRamMb: 0, localGb: n.localGb, diskGbUsed: 0, freeDiskMb: 0,
        cpuAllocationRatio: n.cpuAllocationRatio, ramAllocationRatio: n.ramAllocationRatio, diskAllocationRatio: n.diskAllocationRatio,
        reservedHostCpus: n.reservedHostCpus, reservedHostMemoryMb: n.reservedHostMemoryMb, reservedHostDiskMb: n.reservedHostDiskMb,
        capacity: { ...n.capacity },
        used,
        numInstances: onNode ? onNode.count : 0,
        instanceUuids: onNode ? new Set(onNode.uuids) : new Set(),
        failedBuilds: int(r.failed_builds),
      };
      refreshDerived(h);
      out.push(h);
    }
    return out;
  }

  /** The static part of each node of `rows` (same order), reading the wide columns of the new and changed ones. */
  private async refreshNodes(rows: { id: string; updated_at: string | null }[]): Promise<(NodeEntry | undefined)[]> {
    const stale: string[] = [];
    for (const r of rows) {
      const cached = this.nodeCache.get(r.id);
      if (!cached || cached.updatedAt !== r.updated_at) stale.push(r.id);
    }
    if (this.nodeCache.size > rows.length - stale.length) {
      const present = new Set(rows.map((r) => r.id));
      for (const id of this.nodeCache.keys()) if (!present.has(id)) this.nodeCache.delete(id);
    }
    for (let i = 0; i < stale.length; i += 500) {
      const wide = await this.database.db.selectFrom('compute_nodes')
        .select([
          'id', 'host', 'hypervisor_hostname', 'hypervisor_type', 'hypervisor_version', 'host_ip',
          'vcpus', 'memory_mb', 'local_gb', 'cpu_allocation_ratio', 'ram_allocation_ratio', 'disk_allocation_ratio',
          'reserved_host_memory_mb', 'reserved_host_disk_mb', 'reserved_host_cpus', 'cpu_info',
          'supported_instances', 'capabilities', 'traits', 'updated_at', 'service_id',
        ])
        .where('id', 'in', stale.slice(i, i + 500))
        .execute();
      for (const n of wide) {
        const vcpus = int(n.vcpus), memoryMb = int(n.memory_mb), localGb = int(n.local_gb);
        const reservedCpus = int(n.reserved_host_cpus), reservedMem = int(n.reserved_host_memory_mb), reservedDiskMb = int(n.reserved_host_disk_mb);
        const cpuRatio = Number(n.cpu_allocation_ratio), ramRatio = Number(n.ram_allocation_ratio), diskRatio = Number(n.disk_allocation_ratio);
        this.nodeCache.set(n.id, {
          updatedAt: n.updated_at ?? null,
          serviceId: n.service_id,
          host: n.host,
          nodename: n.hypervisor_hostname,
          hypervisorType: n.hypervisor_type,
          hypervisorVersion: int(n.hypervisor_version),
          hostIp: n.host_ip ?? null,
          supportedInstances: parseJson(n.supported_instances, []),
          traits: parseJson(n.traits, []),
          capabilities: parseJson(n.capabilities, {}),
          cpuInfo: parseJson(n.cpu_info, {}),
          vcpus, memoryMb, localGb,
          cpuAllocationRatio: cpuRatio, ramAllocationRatio: ramRatio, diskAllocationRatio: diskRatio,
          reservedHostCpus: reservedCpus, reservedHostMemoryMb: reservedMem, reservedHostDiskMb: reservedDiskMb,
          capacity: {
            VCPU: Math.floor((vcpus - reservedCpus) * cpuRatio),
            MEMORY_MB: Math.floor((memoryMb - reservedMem) * ramRatio),
            DISK_GB: Math.floor((localGb - Math.ceil(reservedDiskMb / 1024)) * diskRatio),
          },
        });
      }
    }
    // Undefined for a node deleted between the two reads: it is left out, as if read a moment later.
    return rows.map((r) => this.nodeCache.get(r.id));
  }

  /** The aggregates by host, rebuilt when any row of the (small) aggregate tables differs from the last read. */
  private async readAggregates(): Promise<AggregateView> {
    const db = this.database.db;
    const [aggregates, metadata, members] = await Promise.all([
      db.selectFrom('compute_aggregates').select(['id', 'uuid', 'name']).orderBy('id').execute(),
      db.selectFrom('compute_aggregate_metadata').select(['aggregate_id', 'key', 'value']).orderBy('aggregate_id').orderBy('key').execute(),
      db.selectFrom('compute_aggregate_hosts').select(['aggregate_id', 'host']).orderBy('aggregate_id').orderBy('host').execute(),
    ]);
    const parts: string[] = [];
    for (const a of aggregates) parts.push(`${a.id}\u0000${a.uuid}\u0000${a.name}`);
    parts.push('\u0001');
    for (const m of metadata) parts.push(`${m.aggregate_id}\u0000${m.key}\u0000${m.value}`);
    parts.push('\u0001');
    for (const m of members) parts.push(`${m.aggregate_id}\u0000${m.host}`);
    const signature = parts.join('\u0002');
    if (this.aggregateView?.signature === signature) return this.aggregateView;

    const aggById = new Map<number, AggregateInfo>();
    for (const a of aggregates) aggById.set(Number(a.id), { id: Number(a.id), uuid: a.uuid, name: a.name, metadata: {} });
    for (const m of metadata) { const a = aggById.get(Number(m.aggregate_id)); if (a) a.metadata[m.key] = m.value; }
    const byHost = new Map<string, { aggregates: AggregateInfo[]; zone: string }>();
    for (const m of members) {
      const a = aggById.get(Number(m.aggregate_id));
      if (!a) continue;
      let entry = byHost.get(m.host);
      if (!entry) { entry = { aggregates: [], zone: '' }; byHost.set(m.host, entry); }
      entry.aggregates.push(a);
    }
    for (const entry of byHost.values()) {
      const zones = [...new Set(entry.aggregates.map((a) => a.metadata.availability_zone).filter((z): z is string => !!z))].sort();
      entry.zone = zones.length ? zones.join(',') : this.defaultAvailabilityZone;
    }
    this.aggregateView = { signature, byHost };
    return this.aggregateView;
  }

  /** The hosts the given (live) instances are on: a server group's hosts. */
  async hostsOfInstances(uuids: string[]): Promise<string[]> {
    if (uuids.length === 0) return [];
    const hosts = new Set<string>();
    for (let i = 0; i < uuids.length; i += 500) {
      const rows = await this.database.db.selectFrom('compute_instances').select('host')
        .where('id', 'in', uuids.slice(i, i + 500)).where('deleted_at', 'is', null).where('host', 'is not', null)
        .execute();
      for (const r of rows) hosts.add(r.host);
    }
    return [...hosts].sort();
  }

  /** Compute nodes of a host and/or node name (a requested destination). */
  async findNodes(host?: string, nodename?: string): Promise<{ host: string; nodename: string; providerUuid: string }[]> {
    let q = this.database.db.selectFrom('compute_nodes').select(['id', 'host', 'hypervisor_hostname']);
    if (host) q = q.where('host', '=', host);
    if (nodename) q = q.where('hypervisor_hostname', '=', nodename);
    const rows = await q.orderBy('hypervisor_hostname').execute();
    return rows.map((r) => ({ host: r.host, nodename: r.hypervisor_hostname, providerUuid: r.id }));
  }
}
