// Compute services and hypervisors (Nova's Service and ComputeNode records, and its servicegroup
// DB driver). Agents register through the conductor: the service row (binary nova-compute), the
// node row (its id is the host's resource provider uuid in Placement) and the provider with its
// inventories and traits. Disabling a compute service sets COMPUTE_STATUS_DISABLED on its
// provider, as Nova does, so Placement stops offering the host; enabling removes it.
//   [DEFAULT] service_down_time (60 s)   a service is down when its last heartbeat is older, or when forced down
//   [DEFAULT] report_interval (10 s)     heartbeat period of the control services (nova-conductor, nova-scheduler)
//   [DEFAULT] host (the machine name)    the host the control services register under
//   [DEFAULT] default_availability_zone ('nova'), internal_service_availability_zone ('internal')
import { hostname } from 'node:os';
import type { Kysely } from 'kysely';
import { BadRequest, Conflict, NotFound, Timeout } from '../core/errors.js';
import { newUuid } from '../core/ids.js';
import type { Logger } from '../core/log.js';
import { isUniqueViolation, transaction, type Database } from '../db/index.js';
import type { InventoryInput, PlacementService } from '../placement/service.js';
import type { ComputeDeps } from './index.js';
import type { Bus } from '../bus/types.js';
import { NoSuchMethod } from '../bus/errors.js';
import { agentClient, COMPUTE_BINARY, type HostOvercommit, type HostReport } from './rpc.js';
import type { HostResources } from './virt/driver.js';

export const CONDUCTOR_BINARY = 'nova-conductor';
export const SCHEDULER_BINARY = 'nova-scheduler';
export const STATUS_DISABLED_TRAIT = 'COMPUTE_STATUS_DISABLED';
/** RPC topics of the services (Nova's CONF topics). */
const TOPICS: Record<string, string> = { [COMPUTE_BINARY]: 'compute', [CONDUCTOR_BINARY]: 'conductor', [SCHEDULER_BINARY]: 'scheduler' };

export interface ServiceRecord {
  id: string;
  host: string;
  binary: string;
  topic: string;
  disabled: boolean;
  disabledReason: string | null;
  forcedDown: boolean;
  reportCount: number;
  version: number;
  lastSeenUp: string | null;
  createdAt: string;
  updatedAt: string | null;
}

/** A hypervisor as recorded: what its agent reported (traits: the provider also has COMPUTE_STATUS_DISABLED while the service is disabled). */
export interface ComputeNode extends HostResources, HostOvercommit {
  id: string;
  serviceId: string;
  host: string;
  hypervisorHostname: string;
  hostIp: string | null;
  capabilities: Record<string, boolean>;
  failedBuilds: number;
  createdAt: string;
  updatedAt: string | null;
}

/** What a hypervisor uses, as os-hypervisors shows it (Nova's resource tracker numbers: reservations count as used). */
export interface NodeUsage {
  vcpusUsed: number;
  memoryMbUsed: number;
  localGbUsed: number;
  freeRamMb: number;
  freeDiskGb: number;
  diskAvailableLeast: number;
  runningVms: number;
  currentWorkload: number;
}

export interface HypervisorStatistics {
  count: number; vcpus: number; memory_mb: number; local_gb: number; vcpus_used: number; memory_mb_used: number;
  local_gb_used: number; free_ram_mb: number; free_disk_gb: number; current_workload: number; running_vms: number;
  disk_available_least: number;
}

export interface ServiceChanges {
  disabled?: boolean;
  /** Kept only while disabled; enabling clears it. */
  disabledReason?: string | null;
  forcedDown?: boolean;
}

const int = (v: unknown): number => (v === null || v === undefined ? 0 : Number(v));

function parseJson<T>(text: unknown, fallback: T): T {
  if (typeof text !== 'string' || text === '') return fallback;
  try { return JSON.parse(text) as T; } catch { return fallback; }
}

function serviceOf(r: any): ServiceRecord {
  return {
    id: r.id, host: r.host, binary: r.binary, topic: r.topic, disabled: int(r.disabled) === 1, disabledReason: r.disabled_reason ?? null,
    forcedDown: int(r.forced_down) === 1, reportCount: int(r.report_count), version: int(r.version), lastSeenUp: r.last_seen_up ?? null,
    createdAt: r.created_at, updatedAt: r.updated_at ?? null,
  };
}

function nodeOf(r: any): ComputeNode {
  return {
    id: r.id, serviceId: r.service_id, host: r.host, hypervisorHostname: r.hypervisor_hostname, hypervisorType: r.hypervisor_type,
    hypervisorVersion: int(r.hypervisor_version), hostIp: r.host_ip ?? null, vcpus: int(r.vcpus), memoryMb: int(r.memory_mb),
    localGb: int(r.local_gb), cpuAllocationRatio: Number(r.cpu_allocation_ratio), ramAllocationRatio: Number(r.ram_allocation_ratio),
    diskAllocationRatio: Number(r.disk_allocation_ratio), reservedHostMemoryMb: int(r.reserved_host_memory_mb),
    reservedHostDiskMb: int(r.reserved_host_disk_mb), reservedHostCpus: int(r.reserved_host_cpus),
    cpuInfo: parseJson(r.cpu_info, {}), supportedInstances: parseJson(r.supported_instances, []),
    capabilities: parseJson(r.capabilities, {}), traits: parseJson(r.traits, []), failedBuilds: int(r.failed_builds),
    createdAt: r.created_at, updatedAt: r.updated_at ?? null,
  };
}

/** The provider inventories of a node (Nova's resource tracker: VCPU, MEMORY_MB, DISK_GB). */
export function nodeInventories(n: Pick<ComputeNode, 'vcpus' | 'memoryMb' | 'localGb' | 'cpuAllocationRatio' | 'ramAllocationRatio' | 'diskAllocationRatio' | 'reservedHostCpus' | 'reservedHostMemoryMb' | 'reservedHostDiskMb'>): Record<string, InventoryInput> {
  return {
    VCPU: { total: n.vcpus, reserved: n.reservedHostCpus, min_unit: 1, max_unit: n.vcpus, step_size: 1, allocation_ratio: n.cpuAllocationRatio },
    MEMORY_MB: { total: n.memoryMb, reserved: n.reservedHostMemoryMb, min_unit: 1, max_unit: n.memoryMb, step_size: 1, allocation_ratio: n.ramAllocationRatio },
    DISK_GB: { total: n.localGb, reserved: Math.ceil(n.reservedHostDiskMb / 1024), min_unit: 1, max_unit: n.localGb, step_size: 1, allocation_ratio: n.diskAllocationRatio },
  };
}

const isCount = (v: unknown, min = 0) => typeof v === 'number' && Number.isInteger(v) && v >= min;
const isRatio = (v: unknown) => typeof v === 'number' && Number.isFinite(v) && v > 0;

/** A report crosses the bus from another process: check it before it reaches the tables. */
function checkReport(report: HostReport): void {
  const problems: string[] = [];
  if (!report || typeof report !== 'object') throw new BadRequest('registerHost needs a host report');
  for (const key of ['host', 'nodename', 'hypervisorType'] as const) {
    if (typeof report[key] !== 'string' || report[key] === '' || report[key].length > 255) problems.push(`${key} must be a non-empty string of at most 255 characters`);
  }
  for (const key of ['vcpus', 'memoryMb', 'localGb'] as const) if (!isCount(report[key], 1)) problems.push(`${key} must be a positive integer`);
  for (const key of ['reservedHostMemoryMb', 'reservedHostDiskMb', 'reservedHostCpus', 'hypervisorVersion'] as const) if (!isCount(report[key])) problems.push(`${key} must be an integer >= 0`);
  for (const key of ['cpuAllocationRatio', 'ramAllocationRatio', 'diskAllocationRatio'] as const) if (!isRatio(report[key])) problems.push(`${key} must be a positive number`);
  if (!Array.isArray(report.traits) || report.traits.some((t) => typeof t !== 'string')) problems.push('traits must be a list of strings');
  if (problems.length) throw new BadRequest(`Invalid host report from ${String(report.host)}: ${problems.join('; ')}`);
}

export class HostService {
  readonly serviceDownTimeSeconds: number;
  readonly defaultAvailabilityZone: string;
  readonly internalAvailabilityZone: string;
  private readonly database: Database;
  private readonly placement: PlacementService;
  private readonly logger: Logger;
  private readonly reportIntervalMs: number;
  /** How long a question to an agent waits: [DEFAULT] rpc_response_timeout, at most 10 s (an API request waits on it). */
  private readonly agentTimeoutMs: number;
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly now: () => Date;
  private closed = false;
  /** [DEFAULT] host, else the machine name: where this process's control services register. */
  readonly controllerHost: string;

  private readonly bus?: Bus;

  /** `bus` reaches the agents (for their uptime); without one, hostUptime cannot tell. */
  constructor(deps: Pick<ComputeDeps, 'config' | 'database' | 'placement' | 'logger'> & { bus?: Bus; now?: () => Date }) {
    this.database = deps.database;
    this.bus = deps.bus;
    this.placement = deps.placement;
    this.logger = deps.logger;
    this.now = deps.now ?? (() => new Date());
    this.serviceDownTimeSeconds = deps.config.getInt('DEFAULT', 'service_down_time', 60);
    this.reportIntervalMs = deps.config.getInt('DEFAULT', 'report_interval', 10) * 1000;
    this.agentTimeoutMs = Math.min(deps.config.getInt('DEFAULT', 'rpc_response_timeout', 60) * 1000, 10_000);
    this.defaultAvailabilityZone = deps.config.get('DEFAULT', 'default_availability_zone', 'nova');
    this.internalAvailabilityZone = deps.config.get('DEFAULT', 'internal_service_availability_zone', 'internal');
    this.controllerHost = deps.config.get('DEFAULT', 'host', hostname());
  }

  private get db(): Kysely<any> {
    return this.database.db;
  }

  private stamp(): string {
    return this.now().toISOString();
  }

  // ---- registration and heartbeats ----

  /**
   * An agent (re)starting: upserts its nova-compute service and its node (the node keeps its uuid for the
   * same hypervisor_hostname), then creates or updates its resource provider in Placement.
   */
  async registerHost(report: HostReport): Promise<{ serviceId: string; nodeId: string }> {
    checkReport(report);
    const service = await this.upsertService(report.host, COMPUTE_BINARY);
    const nodeId = await this.upsertNode(report, service.id, service.disabled);
    await this.syncProvider(nodeId, service.disabled);
    return { serviceId: service.id, nodeId };
  }

  /** A service of this binary on this host: created when missing, its heartbeat recorded either way. */
  private async upsertService(host: string, binary: string): Promise<ServiceRecord> {
    for (let attempt = 0; ; attempt++) {
      const existing = await this.db.selectFrom('compute_services').selectAll().where('host', '=', host).where('binary', '=', binary).executeTakeFirst();
      const now = this.stamp();
      if (existing) {
        await this.db.updateTable('compute_services')
          .set({ report_count: int(existing.report_count) + 1, last_seen_up: now, updated_at: now })
          .where('id', '=', existing.id).execute();
        return serviceOf({ ...existing, report_count: int(existing.report_count) + 1, last_seen_up: now, updated_at: now });
      }
      const row = {
        id: newUuid(), host, binary, topic: TOPICS[binary] ?? binary.replace(/^nova-/, ''), disabled: 0, disabled_reason: null,
        forced_down: 0, report_count: 1, version: 1, last_seen_up: now, created_at: now, updated_at: now,
      };
      try {
        await this.db.insertInto('compute_services').values(row).execute();
        return serviceOf(row);
      } catch (err) {
        if (!isUniqueViolation(err) || attempt > 2) throw err; // another process registered it meanwhile: read theirs
      }
    }
  }

  private async upsertNode(report: HostReport, serviceId: string, disabled: boolean): Promise<string> {
    const now = this.stamp();
    const values = {
      service_id: serviceId, host: report.host, hypervisor_type: report.hypervisorType, hypervisor_version: report.hypervisorVersion,
      host_ip: report.hostIp ?? null, vcpus: report.vcpus, memory_mb: report.memoryMb, local_gb: report.localGb,
      cpu_allocation_ratio: report.cpuAllocationRatio, ram_allocation_ratio: report.ramAllocationRatio,
      disk_allocation_ratio: report.diskAllocationRatio, reserved_host_memory_mb: report.reservedHostMemoryMb,
      reserved_host_disk_mb: report.reservedHostDiskMb, reserved_host_cpus: report.reservedHostCpus,
      cpu_info: JSON.stringify(report.cpuInfo ?? {}), supported_instances: JSON.stringify(report.supportedInstances ?? []),
      capabilities: JSON.stringify(report.capabilities ?? {}),
      traits: JSON.stringify([...new Set(report.traits.filter((t) => t !== STATUS_DISABLED_TRAIT))].sort()),
    };
    for (let attempt = 0; ; attempt++) {
      const existing = await this.db.selectFrom('compute_nodes').select(['id']).where('hypervisor_hostname', '=', report.nodename).executeTakeFirst();
      if (existing) {
        await this.db.updateTable('compute_nodes').set({ ...values, updated_at: now }).where('id', '=', existing.id).execute();
        return existing.id;
      }
      // A provider of that name may be left from a node whose service was deleted while it still had allocations: adopt it.
      const leftover = (await this.placement.listProviders({ name: report.nodename }))[0];
      const id = leftover?.uuid ?? newUuid();
      // The provider first: a hypervisor is never listed before Placement knows its resources.
      const traits = [...new Set(report.traits.filter((t) => t !== STATUS_DISABLED_TRAIT)), ...(disabled ? [STATUS_DISABLED_TRAIT] : [])];
      await this.placement.ensureProvider({ uuid: id, name: report.nodename, inventories: nodeInventories(report), traits });
      try {
        await this.db.insertInto('compute_nodes').values({ id, hypervisor_hostname: report.nodename, ...values, failed_builds: 0, created_at: now, updated_at: now }).execute();
        return id;
      } catch (err) {
        if (!isUniqueViolation(err) || attempt > 2) throw err;
      }
    }
  }

  /** Sets the node's provider inventories and traits from the node row (plus COMPUTE_STATUS_DISABLED while disabled). */
  private async syncProvider(nodeId: string, disabled: boolean): Promise<void> {
    const row = await this.db.selectFrom('compute_nodes').selectAll().where('id', '=', nodeId).executeTakeFirst();
    if (!row) return;
    const node = nodeOf(row);
    const traits = node.traits.filter((t) => t !== STATUS_DISABLED_TRAIT);
    if (disabled) traits.push(STATUS_DISABLED_TRAIT);
    await this.placement.ensureProvider({ uuid: node.id, name: node.hypervisorHostname, inventories: nodeInventories(node), traits });
  }

  /** A heartbeat of a service (nova-compute unless named): one UPDATE. NotFound when the service was deleted. */
  async heartbeat(host: string, binary: string = COMPUTE_BINARY): Promise<void> {
    if (typeof host !== 'string' || host === '') throw new BadRequest('heartbeat needs a host');
    const now = this.stamp();
    const result = await this.db.updateTable('compute_services')
      .set((eb) => ({ report_count: eb('report_count', '+', 1), last_seen_up: now, updated_at: now }))
      .where('host', '=', host).where('binary', '=', binary)
      .executeTakeFirst();
    if (Number(result.numUpdatedRows) === 0) throw new NotFound(`Could not find binary ${binary} on host ${host}.`);
  }

  /**
   * The conductor and scheduler services of this controller process (host = [DEFAULT] host or the machine name):
   * registered now and heartbeating every report_interval until close(), so os-services lists them. As in Nova, a
   * service deleted by an admin while its process runs stays deleted until the process restarts.
   */
  async registerControlServices(host: string = this.controllerHost): Promise<ServiceRecord[]> {
    const binaries = [CONDUCTOR_BINARY, SCHEDULER_BINARY];
    const services: ServiceRecord[] = [];
    for (const binary of binaries) services.push(await this.upsertService(host, binary));
    const failing = new Set<string>();
    const beat = () => {
      if (this.closed) return;
      const timer = setTimeout(() => {
        this.timers.delete(timer);
        void Promise.all(binaries.map((binary) => this.heartbeat(host, binary)
          .then(() => { failing.delete(binary); })
          .catch((err) => {
            if (!failing.has(binary)) this.logger.warn('control service heartbeat failed', { host, binary, error: (err as Error).message });
            failing.add(binary);
          })))
          .finally(beat);
      }, this.reportIntervalMs);
      timer.unref(); // never what keeps a process alive
      this.timers.add(timer);
    };
    beat();
    return services;
  }

  /** Nova's servicegroup DB driver: up when not forced down and the last heartbeat is within service_down_time. */
  isUp(service: Pick<ServiceRecord, 'forcedDown' | 'lastSeenUp' | 'createdAt'>): boolean {
    if (service.forcedDown) return false;
    const last = Date.parse(service.lastSeenUp ?? service.createdAt);
    if (!Number.isFinite(last)) return false;
    return Math.abs(this.now().getTime() - last) <= this.serviceDownTimeSeconds * 1000;
  }

  /** Whether the nova-compute service of a host is up. */
  async isHostUp(host: string): Promise<boolean> {
    const row = await this.db.selectFrom('compute_services').selectAll().where('host', '=', host).where('binary', '=', COMPUTE_BINARY).executeTakeFirst();
    return row ? this.isUp(serviceOf(row)) : false;
  }

  /**
   * A server's host_status (2.16): DOWN when forced down, MAINTENANCE when disabled, UP when heartbeating,
   * UNKNOWN when its heartbeats stopped, '' when the host has no compute service (Nova's _get_instance_host_status).
   */
  async hostStatus(host: string | null): Promise<string> {
    if (!host) return '';
    const row = await this.db.selectFrom('compute_services').selectAll().where('host', '=', host).where('binary', '=', COMPUTE_BINARY).executeTakeFirst();
    if (!row) return '';
    const service = serviceOf(row);
    if (service.forcedDown) return 'DOWN';
    if (service.disabled) return 'MAINTENANCE';
    return this.isUp(service) ? 'UP' : 'UNKNOWN';
  }

  /** Whether a compute host of that name is known (a server create naming its host). */
  async hostExists(host: string): Promise<boolean> {
    const row = await this.db.selectFrom('compute_nodes').select('id').where('host', '=', host).executeTakeFirst();
    return row !== undefined;
  }

  /** Counts consecutive build failures of a host (the BuildFailureWeigher reads them); a success resets the count. */
  async recordBuildResult(host: string, succeeded: boolean): Promise<void> {
    const query = this.db.updateTable('compute_nodes').where('host', '=', host);
    if (succeeded) await query.set({ failed_builds: 0 }).where('failed_builds', '!=', 0).execute();
    else await query.set((eb) => ({ failed_builds: eb('failed_builds', '+', 1) })).execute();
  }

  /**
   * The uptime line of a compute host, asked of its agent; null when the agent cannot tell (it predates the call).
   * BadRequest when the agent does not answer (Nova's ComputeServiceUnavailable).
   */
  async hostUptime(host: string): Promise<string | null> {
    const unavailable = new BadRequest(`Compute service of ${host} is unavailable at this time.`);
    if (!this.bus) return null;
    try {
      return (await agentClient(this.bus, host, this.agentTimeoutMs).getHostUptime({})).uptime;
    } catch (err) {
      if (err instanceof Timeout) throw unavailable;
      if (err instanceof NoSuchMethod) return null;
      throw err;
    }
  }

  // ---- services ----

  async listServices(filters: { host?: string; binary?: string } = {}): Promise<ServiceRecord[]> {
    let query = this.db.selectFrom('compute_services').selectAll();
    if (filters.host) query = query.where('host', '=', filters.host);
    if (filters.binary) query = query.where('binary', '=', filters.binary);
    const rows = await query.orderBy('created_at').orderBy('host').orderBy('binary').execute();
    return rows.map(serviceOf);
  }

  async getService(id: string): Promise<ServiceRecord> {
    const row = await this.db.selectFrom('compute_services').selectAll().where('id', '=', id).executeTakeFirst();
    if (!row) throw new NotFound(`Service ${id} could not be found.`);
    return serviceOf(row);
  }

  async findService(host: string, binary: string): Promise<ServiceRecord> {
    const row = await this.db.selectFrom('compute_services').selectAll().where('host', '=', host).where('binary', '=', binary).executeTakeFirst();
    if (!row) throw new NotFound(`Could not find binary ${binary} on host ${host}.`);
    return serviceOf(row);
  }

  /** Availability zone of each service: a compute host's aggregates' zone (default zone if none), 'internal' otherwise. */
  async zonesOf(services: ServiceRecord[]): Promise<Map<string, string>> {
    const computeHosts = [...new Set(services.filter((s) => s.binary === COMPUTE_BINARY).map((s) => s.host))];
    const zonesByHost = new Map<string, Set<string>>();
    for (let i = 0; i < computeHosts.length; i += 500) {
      const rows = await this.db.selectFrom('compute_aggregate_hosts as h')
        .innerJoin('compute_aggregate_metadata as m', 'm.aggregate_id', 'h.aggregate_id')
        .select(['h.host', 'm.value'])
        .where('m.key', '=', 'availability_zone').where('h.host', 'in', computeHosts.slice(i, i + 500))
        .execute();
      for (const r of rows) (zonesByHost.get(r.host) ?? zonesByHost.set(r.host, new Set()).get(r.host)!).add(r.value);
    }
    const out = new Map<string, string>();
    for (const s of services) {
      if (s.binary !== COMPUTE_BINARY) out.set(s.id, this.internalAvailabilityZone);
      else {
        const zones = [...(zonesByHost.get(s.host) ?? [])].sort();
        out.set(s.id, zones.length ? zones.join(',') : this.defaultAvailabilityZone);
      }
    }
    return out;
  }

  /**
   * Changes a service's disabled state, reason and forced_down. Only nova-compute services can be changed (Nova's
   * rule); disabling or enabling updates COMPUTE_STATUS_DISABLED on the service's providers.
   */
  async updateService(id: string, changes: ServiceChanges): Promise<ServiceRecord> {
    const service = await this.getService(id);
    return this.applyChanges(service, changes);
  }

  async updateServiceByHostBinary(host: string, binary: string, changes: ServiceChanges): Promise<ServiceRecord> {
    if (binary !== COMPUTE_BINARY) throw new BadRequest(`Updating a ${binary} service is not supported. Only nova-compute services can be updated.`);
    const service = await this.findService(host, binary);
    return this.applyChanges(service, changes);
  }

  private async applyChanges(service: ServiceRecord, changes: ServiceChanges): Promise<ServiceRecord> {
    if (service.binary !== COMPUTE_BINARY) {
      throw new BadRequest(`Updating a ${service.binary} service is not supported. Only nova-compute services can be updated.`);
    }
    const next: ServiceRecord = { ...service };
    if (changes.disabled !== undefined) {
      next.disabled = changes.disabled;
      next.disabledReason = changes.disabled ? (changes.disabledReason ?? null) : null;
    } else if (changes.disabledReason !== undefined) {
      next.disabledReason = changes.disabledReason;
    }
    if (changes.forcedDown !== undefined) next.forcedDown = changes.forcedDown;
    // updated_at is left to heartbeats: liveness readers (the scheduler's host manager) look at it.
    await this.db.updateTable('compute_services')
      .set({ disabled: next.disabled ? 1 : 0, disabled_reason: next.disabledReason, forced_down: next.forcedDown ? 1 : 0 })
      .where('id', '=', service.id).execute();
    if (next.disabled !== service.disabled) {
      const nodes = await this.db.selectFrom('compute_nodes').select('id').where('service_id', '=', service.id).execute();
      for (const n of nodes) await this.syncProvider(n.id, next.disabled);
    }
    return next;
  }

  /**
   * Deletes a service. A nova-compute service hosting instances cannot be deleted (409, as Nova); otherwise its
   * nodes go, the host leaves its aggregates, and its resource providers are deleted from Placement.
   */
  async deleteService(id: string): Promise<void> {
    const service = await this.getService(id);
    if (service.binary === COMPUTE_BINARY) {
      const hosting = await this.db.selectFrom('compute_instances').select((eb) => eb.fn.countAll().as('n'))
        .where('host', '=', service.host).where('deleted_at', 'is', null).executeTakeFirst();
      if (int(hosting?.n) > 0) {
        throw new Conflict('Unable to delete compute service that is hosting instances. Migrate or delete the instances first.');
      }
      const nodes = await this.db.selectFrom('compute_nodes').select(['id']).where('service_id', '=', service.id).execute();
      await transaction(this.database, async (trx) => {
        await trx.deleteFrom('compute_aggregate_hosts').where('host', '=', service.host).execute();
        await trx.deleteFrom('compute_nodes').where('service_id', '=', service.id).execute();
        await trx.deleteFrom('compute_services').where('id', '=', service.id).execute();
      });
      for (const n of nodes) {
        await this.placement.deleteProvider(n.id).catch((err) => {
          if (!(err instanceof NotFound)) this.logger.error('failed to delete the resource provider of a deleted compute node', { node: n.id, error: (err as Error).message });
        });
      }
      return;
    }
    await this.db.deleteFrom('compute_services').where('id', '=', service.id).execute();
  }

  // ---- hypervisors (compute nodes) ----

  /** Compute nodes in hypervisor_hostname order; `pattern` keeps those whose name contains it (Nova's LIKE %pattern%). */
  async listNodes(filters: { pattern?: string } = {}): Promise<ComputeNode[]> {
    const rows = await this.db.selectFrom('compute_nodes').selectAll().orderBy('hypervisor_hostname').execute();
    const nodes = rows.map(nodeOf);
    if (filters.pattern === undefined) return nodes;
    const needle = filters.pattern.toLowerCase();
    return nodes.filter((n) => n.hypervisorHostname.toLowerCase().includes(needle));
  }

  async getNode(id: string): Promise<ComputeNode> {
    const row = await this.db.selectFrom('compute_nodes').selectAll().where('id', '=', id).executeTakeFirst();
    if (!row) throw new NotFound(`Hypervisor with ID '${id}' could not be found.`);
    return nodeOf(row);
  }

  /** The services of these nodes, by service id. */
  async servicesOf(nodes: ComputeNode[]): Promise<Map<string, ServiceRecord>> {
    const ids = [...new Set(nodes.map((n) => n.serviceId))];
    const out = new Map<string, ServiceRecord>();
    for (let i = 0; i < ids.length; i += 500) {
      const rows = await this.db.selectFrom('compute_services').selectAll().where('id', 'in', ids.slice(i, i + 500)).execute();
      for (const r of rows) out.set(r.id, serviceOf(r));
    }
    return out;
  }

  /** Live instances on the nodes' hosts (name and uuid), by node id. */
  async instancesOf(nodes: ComputeNode[]): Promise<Map<string, { name: string; uuid: string }[]>> {
    const out = new Map<string, { name: string; uuid: string }[]>(nodes.map((n) => [n.id, []]));
    const byName = new Map(nodes.map((n) => [n.hypervisorHostname, n]));
    const byHost = new Map<string, ComputeNode[]>();
    for (const n of nodes) byHost.set(n.host, [...(byHost.get(n.host) ?? []), n]);
    const hosts = [...byHost.keys()];
    for (let i = 0; i < hosts.length; i += 500) {
      const rows = await this.db.selectFrom('compute_instances').select(['id', 'name', 'host', 'node'])
        .where('deleted_at', 'is', null).where('host', 'in', hosts.slice(i, i + 500)).orderBy('created_at').execute();
      for (const r of rows) {
        const node = (r.node ? byName.get(r.node) : undefined) ?? byHost.get(r.host)?.[0];
        if (node) out.get(node.id)!.push({ name: r.name, uuid: r.id });
      }
    }
    return out;
  }

  /**
   * What each node uses: Placement's usages of its provider plus the host's reservations (Nova's memory_mb_used and
   * local_gb_used include reserved_host_memory_mb and reserved_host_disk_mb), instance counts from the instances.
   */
  async usageOf(nodes: ComputeNode[]): Promise<Map<string, NodeUsage>> {
    const counts = new Map<string, { running: number; busy: number }>(nodes.map((n) => [n.id, { running: 0, busy: 0 }]));
    const byName = new Map(nodes.map((n) => [n.hypervisorHostname, n]));
    const byHost = new Map<string, ComputeNode>();
    for (const n of nodes) if (!byHost.has(n.host)) byHost.set(n.host, n);
    const hosts = [...byHost.keys()];
    for (let i = 0; i < hosts.length; i += 500) {
      const rows = await this.db.selectFrom('compute_instances').select(['host', 'node', 'vm_state', 'task_state'])
        .where('deleted_at', 'is', null).where('host', 'in', hosts.slice(i, i + 500)).execute();
      for (const r of rows) {
        const node = (r.node ? byName.get(r.node) : undefined) ?? byHost.get(r.host);
        if (!node) continue;
        const c = counts.get(node.id)!;
        c.running++;
        if (r.vm_state === 'building' || r.task_state !== null) c.busy++;
      }
    }
    const out = new Map<string, NodeUsage>();
    await Promise.all(nodes.map(async (n) => {
      const usages = await this.placement.getProviderUsages(n.id).then((u) => u.usages).catch((err) => {
        if (err instanceof NotFound) return {} as Record<string, number>;
        throw err;
      });
      const reservedDiskGb = Math.ceil(n.reservedHostDiskMb / 1024);
      const memoryMbUsed = n.reservedHostMemoryMb + (usages.MEMORY_MB ?? 0);
      const localGbUsed = reservedDiskGb + (usages.DISK_GB ?? 0);
      const c = counts.get(n.id)!;
      out.set(n.id, {
        vcpusUsed: usages.VCPU ?? 0,
        memoryMbUsed,
        localGbUsed,
        freeRamMb: n.memoryMb - memoryMbUsed,
        freeDiskGb: n.localGb - localGbUsed,
        diskAvailableLeast: n.localGb - localGbUsed,
        runningVms: c.running,
        currentWorkload: c.busy,
      });
    }));
    return out;
  }

  /** Sums over the nodes of enabled nova-compute services (Nova's compute_node_statistics). */
  async statistics(): Promise<HypervisorStatistics> {
    const nodes = await this.listNodes();
    const services = await this.servicesOf(nodes);
    const counted = nodes.filter((n) => { const s = services.get(n.serviceId); return s !== undefined && !s.disabled; });
    const usage = await this.usageOf(counted);
    const stats: HypervisorStatistics = {
      count: 0, vcpus: 0, memory_mb: 0, local_gb: 0, vcpus_used: 0, memory_mb_used: 0, local_gb_used: 0, free_ram_mb: 0,
      free_disk_gb: 0, current_workload: 0, running_vms: 0, disk_available_least: 0,
    };
    for (const n of counted) {
      const u = usage.get(n.id)!;
      stats.count++;
      stats.vcpus += n.vcpus;
      stats.memory_mb += n.memoryMb;
      stats.local_gb += n.localGb;
      stats.vcpus_used += u.vcpusUsed;
      stats.memory_mb_used += u.memoryMbUsed;
      stats.local_gb_used += u.localGbUsed;
      stats.free_ram_mb += u.freeRamMb;
      stats.free_disk_gb += u.freeDiskGb;
      stats.current_workload += u.currentWorkload;
      stats.running_vms += u.runningVms;
      stats.disk_available_least += u.diskAvailableLeast;
    }
    return stats;
  }

  /** Stops the control services' heartbeats. */
  close(): void {
    this.closed = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
  }
}
