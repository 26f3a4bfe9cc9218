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
  for (const [cls, r] of Object.entries(summary.resources)) {
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

export class HostManager {
  readonly serviceDownTimeSeconds: number;
  readonly defaultAvailabilityZone: string;
  private readonly database: Database;
  private readonly now: () => Date;

  constructor(options: HostManagerOptions) {
    this.database = options.database;
    this.now = options.now ?? (() => new Date());
    this.serviceDownTimeSeconds = options.config.getInt('DEFAULT', 'service_down_time', 60);
    this.defaultAvailabilityZone = options.config.get('DEFAULT', 'default_availability_zone', 'nova');
  }

  /**
   * Every compute node's state (one per node), in node-name order.
   * `instances: 'all'` (the default) reads every live instance with a host: instanceUuids lists
   * them all and `used` sums their flavors. Given a list of uuids (the ones a request names:
   * group members, same_host/different_host hints), only those are read into instanceUuids,
   * numInstances comes from a count, and `used` is left at 0 for Placement's summary to fill:
   * much less to read on a large cloud.
   */
  async getHostStates(options: { instances?: 'all' | string[] } = {}): Promise<HostState[]> {
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
    const [nodes, aggregates, metadata, members, instances] = await Promise.all([
      db.selectFrom('compute_nodes as n')
        .leftJoin('compute_services as s', (j) => j.onRef('s.id', '=', 'n.service_id').on('s.binary', '=', COMPUTE_BINARY))
        .select([
          'n.id', 'n.host', 'n.hypervisor_hostname', 'n.hypervisor_type', 'n.hypervisor_version', 'n.host_ip',
          'n.vcpus', 'n.memory_mb', 'n.local_gb', 'n.cpu_allocation_ratio', 'n.ram_allocation_ratio', 'n.disk_allocation_ratio',
          'n.reserved_host_memory_mb', 'n.reserved_host_disk_mb', 'n.reserved_host_cpus', 'n.cpu_info',
          'n.supported_instances', 'n.capabilities', 'n.traits', 'n.failed_builds',
          's.id as service_id', 's.disabled', 's.disabled_reason', 's.forced_down', 's.updated_at as service_updated_at',
          's.last_seen_up', 's.created_at as service_created_at',
        ])
        .orderBy('n.hypervisor_hostname')
        .execute(),
      db.selectFrom('compute_aggregates').select(['id', 'uuid', 'name']).execute(),
      db.selectFrom('compute_aggregate_metadata').select(['aggregate_id', 'key', 'value']).execute(),
      db.selectFrom('compute_aggregate_hosts').select(['aggregate_id', 'host']).execute(),
      readInstances(),
    ]);

    const aggById = new Map<number, AggregateInfo>();
    for (const a of aggregates) aggById.set(Number(a.id), { id: Number(a.id), uuid: a.uuid, name: a.name, metadata: {} });
    for (const m of metadata) { const a = aggById.get(Number(m.aggregate_id)); if (a) a.metadata[m.key] = m.value; }
    const aggsByHost = new Map<string, AggregateInfo[]>();
    for (const m of members) {
      const a = aggById.get(Number(m.aggregate_id));
      if (!a) continue;
      const list = aggsByHost.get(m.host) ?? [];
      list.push(a);
      aggsByHost.set(m.host, list);
    }

    // Instances by node (by host when the node is not recorded and the host has one node).
    const nodesOfHost = new Map<string, string[]>();
    for (const n of nodes) nodesOfHost.set(n.host, [...(nodesOfHost.get(n.host) ?? []), n.hypervisor_hostname]);
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

    const nowMs = this.now().getTime();
    return nodes.map((n): HostState => {
      const aggs = aggsByHost.get(n.host) ?? [];
      const zones = [...new Set(aggs.map((a) => a.metadata.availability_zone).filter((z): z is string => !!z))].sort();
      const beats = [n.service_updated_at, n.last_seen_up].filter((t): t is string => !!t).map((t) => Date.parse(t)).filter(Number.isFinite);
      const lastBeat = beats.length ? Math.max(...beats) : (n.service_created_at ? Date.parse(n.service_created_at) : NaN);
      const forcedDown = int(n.forced_down) === 1;
      const up = n.service_id !== null && Number.isFinite(lastBeat) && Math.abs(nowMs - lastBeat) <= this.serviceDownTimeSeconds * 1000 && !forcedDown;
      const onNode = byNode.get(n.hypervisor_hostname) ?? { uuids: new Set<string>(), flavors: [], count: 0 };
      const used: Resources = { VCPU: 0, MEMORY_MB: 0, DISK_GB: 0 };
      for (const f of onNode.flavors) for (const [cls, amount] of Object.entries(flavorUsage(f))) used[cls] += amount;
      const vcpus = int(n.vcpus), memoryMb = int(n.memory_mb), localGb = int(n.local_gb);
      const reservedCpus = int(n.reserved_host_cpus), reservedMem = int(n.reserved_host_memory_mb), reservedDiskMb = int(n.reserved_host_disk_mb);
      const cpuRatio = Number(n.cpu_allocation_ratio), ramRatio = Number(n.ram_allocation_ratio), diskRatio = Number(n.disk_allocation_ratio);
      const h: HostState = {
        host: n.host,
        nodename: n.hypervisor_hostname,
        providerUuid: n.id,
        availabilityZone: zones.length ? zones.join(',') : this.defaultAvailabilityZone,
        aggregates: aggs,
        service: {
          id: n.service_id ?? '',
          up,
          disabled: n.service_id === null || int(n.disabled) === 1,
          disabledReason: n.disabled_reason ?? null,
          forcedDown,
          lastHeartbeat: Number.isFinite(lastBeat) ? new Date(lastBeat).toISOString() : null,
        },
        hypervisorType: n.hypervisor_type,
        hypervisorVersion: int(n.hypervisor_version),
        hostIp: n.host_ip ?? null,
        supportedInstances: parseJson(n.supported_instances, []),
        traits: parseJson(n.traits, []),
        capabilities: parseJson(n.capabilities, {}),
        cpuInfo: parseJson(n.cpu_info, {}),
        vcpus, vcpusUsed: 0, memoryMb, memoryMbUsed: 0, freeRamMb: 0, localGb, diskGbUsed: 0, freeDiskMb: 0,
        cpuAllocationRatio: cpuRatio, ramAllocationRatio: ramRatio, diskAllocationRatio: diskRatio,
        reservedHostCpus: reservedCpus, reservedHostMemoryMb: reservedMem, reservedHostDiskMb: reservedDiskMb,
        capacity: {
          VCPU: Math.floor((vcpus - reservedCpus) * cpuRatio),
          MEMORY_MB: Math.floor((memoryMb - reservedMem) * ramRatio),
          DISK_GB: Math.floor((localGb - Math.ceil(reservedDiskMb / 1024)) * diskRatio),
        },
        used,
        numInstances: onNode.count,
        instanceUuids: new Set(onNode.uuids),
        failedBuilds: int(n.failed_builds),
      };
      refreshDerived(h);
      return h;
    });
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
