// Host aggregates and availability zones, as Nova keeps them: an aggregate groups compute hosts
// and carries metadata; the metadata key availability_zone makes it a zone. A host in no zone
// aggregate is in [DEFAULT] default_availability_zone; services other than nova-compute are in
// [DEFAULT] internal_service_availability_zone. Membership is mirrored into Placement as
// provider aggregates of the host's compute nodes (the node id is its provider uuid).
import { BadRequest, Conflict, NotFound } from '../core/errors.js';
import type { Config } from '../core/config.js';
import { newUuid } from '../core/ids.js';
import type { Logger } from '../core/log.js';
import { isUniqueViolation, transaction, type Database } from '../db/index.js';
import type { PlacementService } from '../placement/service.js';
import type { ComputeDeps } from './index.js';

export interface Aggregate {
  id: number;
  uuid: string;
  name: string;
  availabilityZone: string | null;
  hosts: string[];
  metadata: Record<string, string>;
  createdAt: string;
  updatedAt: string | null;
}

/** One service as the availability-zone views need it. */
export interface ZoneService {
  host: string;
  binary: string;
  zone: string;
  disabled: boolean;
  up: boolean;
  updatedAt: string | null;
}

export interface Zones {
  /** Zones with at least one enabled service (the internal zone included), sorted. */
  available: string[];
  /** Zones whose services are all disabled. */
  unavailable: string[];
}

const AZ_KEY = 'availability_zone';
/** Python's repr of a list of strings, as Nova puts conflicting zones in its messages. */
const pyList = (items: string[]) => `[${items.map((i) => `'${i}'`).join(', ')}]`;

export class AggregateService {
  private readonly database: Database;
  private readonly placement?: PlacementService;
  private readonly logger?: Logger;
  readonly defaultZone: string;
  readonly internalZone: string;
  private readonly serviceDownTime: number;

  constructor(deps: Pick<ComputeDeps, 'database' | 'config'> & { placement?: PlacementService; logger?: Logger }) {
    this.database = deps.database;
    this.placement = deps.placement;
    this.logger = deps.logger;
    const config: Config = deps.config;
    this.defaultZone = config.get('DEFAULT', 'default_availability_zone', 'nova');
    this.internalZone = config.get('DEFAULT', 'internal_service_availability_zone', 'internal');
    this.serviceDownTime = config.getInt('DEFAULT', 'service_down_time', 60);
  }

  private get db() { return this.database.db; }

  private async load(ids?: number[]): Promise<Aggregate[]> {
    let query = this.db.selectFrom('compute_aggregates').selectAll();
    if (ids) query = query.where('id', 'in', ids);
    const rows = await query.orderBy('id').execute();
    if (!rows.length) return [];
    const aggregateIds = rows.map((r: any) => Number(r.id));
    const hosts = await this.db.selectFrom('compute_aggregate_hosts').selectAll().where('aggregate_id', 'in', aggregateIds).execute();
    const metadata = await this.db.selectFrom('compute_aggregate_metadata').selectAll().where('aggregate_id', 'in', aggregateIds).execute();
    return rows.map((r: any) => {
      const id = Number(r.id);
      const meta = Object.fromEntries(metadata.filter((m: any) => Number(m.aggregate_id) === id).map((m: any) => [m.key, m.value]));
      return {
        id, uuid: r.uuid, name: r.name, availabilityZone: meta[AZ_KEY] ?? null,
        hosts: hosts.filter((h: any) => Number(h.aggregate_id) === id).map((h: any) => h.host).sort(),
        metadata: meta, createdAt: r.created_at, updatedAt: r.updated_at ?? null,
      };
    });
  }

  async list(): Promise<Aggregate[]> {
    return this.load();
  }

  /** The aggregate; 404 "Aggregate <id> could not be found." otherwise. */
  async get(id: number): Promise<Aggregate> {
    const [aggregate] = Number.isSafeInteger(id) ? await this.load([id]) : [];
    if (!aggregate) throw new NotFound(`Aggregate ${id} could not be found.`);
    return aggregate;
  }

  /** Aggregates a host belongs to. */
  async aggregatesOfHost(host: string): Promise<Aggregate[]> {
    const rows = await this.db.selectFrom('compute_aggregate_hosts').select('aggregate_id').where('host', '=', host).execute();
    return rows.length ? this.load(rows.map((r: any) => Number(r.aggregate_id))) : [];
  }

  private refuseInternalZone(zone: string | null | undefined): void {
    if (zone && zone === this.internalZone) {
      throw new BadRequest(`Aggregates cannot be placed in the internal availability zone '${this.internalZone}'.`);
    }
  }

  /** Creates an aggregate (integer id = max + 1, retried when another controller took it). */
  async create(name: string, availabilityZone?: string | null): Promise<Aggregate> {
    this.refuseInternalZone(availabilityZone);
    for (let attempt = 0; ; attempt++) {
      try {
        const id = await transaction(this.database, async (trx) => {
          if (await trx.selectFrom('compute_aggregates').select('id').where('name', '=', name).executeTakeFirst()) throw new Conflict(`Aggregate ${name} already exists.`);
          const max = await trx.selectFrom('compute_aggregates').select((eb) => eb.fn.max('id').as('m')).executeTakeFirst();
          const next = Number((max as any)?.m ?? 0) + 1;
          await trx.insertInto('compute_aggregates').values({ id: next, uuid: newUuid(), name, created_at: new Date().toISOString(), updated_at: null }).execute();
          if (availabilityZone) await trx.insertInto('compute_aggregate_metadata').values({ aggregate_id: next, key: AZ_KEY, value: availabilityZone }).execute();
          return next;
        });
        return this.get(id);
      } catch (err) {
        if (!isUniqueViolation(err)) throw err;
        if (await this.db.selectFrom('compute_aggregates').select('id').where('name', '=', name).executeTakeFirst()) throw new Conflict(`Aggregate ${name} already exists.`);
        if (attempt >= 20) throw err;
      }
    }
  }

  /** Renames an aggregate and/or moves it to another zone (Nova's update_aggregate). */
  async update(id: number, values: { name?: string; availability_zone?: string | null }): Promise<Aggregate> {
    const aggregate = await this.get(id);
    if (values.name !== undefined && values.name !== aggregate.name) {
      try {
        await this.db.updateTable('compute_aggregates').set({ name: values.name, updated_at: new Date().toISOString() }).where('id', '=', id).execute();
      } catch (err) {
        if (isUniqueViolation(err)) throw new Conflict(`Aggregate ${values.name} already exists.`);
        throw err;
      }
      aggregate.name = values.name;
    }
    if ('availability_zone' in values) {
      const metadata = { [AZ_KEY]: values.availability_zone ?? null };
      await this.checkZoneChange(aggregate, metadata, aggregate.hosts, (reason) => new BadRequest(`Cannot update aggregate ${id}. Reason: ${reason}.`), true);
      await this.writeMetadata(id, metadata);
    }
    return this.get(id);
  }

  /** Deletes an empty aggregate; 400 while hosts remain, as Nova answers. */
  async delete(id: number): Promise<void> {
    const aggregate = await this.get(id);
    if (aggregate.hosts.length) throw new BadRequest(`Cannot remove host from aggregate ${id}. Reason: Host aggregate is not empty.`);
    await transaction(this.database, async (trx) => {
      await trx.deleteFrom('compute_aggregate_metadata').where('aggregate_id', '=', id).execute();
      await trx.deleteFrom('compute_aggregate_hosts').where('aggregate_id', '=', id).execute();
      await trx.deleteFrom('compute_aggregates').where('id', '=', id).execute();
    });
  }

  /** Sets metadata keys (null removes one); availability_zone moves the aggregate's hosts. */
  async setMetadata(id: number, metadata: Record<string, string | null>): Promise<Aggregate> {
    const aggregate = await this.get(id);
    await this.checkZoneChange(aggregate, metadata, aggregate.hosts, (reason) => new BadRequest(`Cannot update metadata of aggregate ${id}. Reason: ${reason}.`), true);
    await this.writeMetadata(id, metadata);
    return this.get(id);
  }

  private async writeMetadata(id: number, metadata: Record<string, string | null>): Promise<void> {
    await transaction(this.database, async (trx) => {
      for (const [key, value] of Object.entries(metadata)) {
        if (value === null) {
          await trx.deleteFrom('compute_aggregate_metadata').where('aggregate_id', '=', id).where('key', '=', key).execute();
          continue;
        }
        const updated = await trx.updateTable('compute_aggregate_metadata').set({ value }).where('aggregate_id', '=', id).where('key', '=', key).executeTakeFirst();
        if (Number(updated.numUpdatedRows) === 0) await trx.insertInto('compute_aggregate_metadata').values({ aggregate_id: id, key, value }).execute();
      }
      await trx.updateTable('compute_aggregates').set({ updated_at: new Date().toISOString() }).where('id', '=', id).execute();
    });
  }

  /** Nova's is_safe_to_update_az: no empty zone name, no host in two zones, no instance changing zone. */
  private async checkZoneChange(aggregate: Aggregate, metadata: Record<string, string | null>, hosts: string[],
    error: (reason: string) => Error, checkInstances: boolean): Promise<void> {
    if (!(AZ_KEY in metadata)) return;
    const zone = metadata[AZ_KEY];
    if (!zone) throw error(`Aggregate ${aggregate.name} does not support empty named availability zone`);
    this.refuseInternalZone(zone);
    const conflicting: string[] = [];
    for (const host of hosts) {
      for (const other of await this.aggregatesOfHost(host)) {
        if (other.id !== aggregate.id && other.availabilityZone !== null && other.availabilityZone !== zone) conflicting.push(other.availabilityZone);
      }
    }
    if (conflicting.length) throw error(`One or more hosts already in availability zone(s) ${pyList(conflicting)}`);
    if (checkInstances && aggregate.availabilityZone !== zone && hosts.length) {
      if ((await this.instancesOnHosts(hosts)) > 0) throw error('One or more hosts contain instances in this zone');
    }
  }

  private async instancesOnHosts(hosts: string[]): Promise<number> {
    const row = await this.db.selectFrom('compute_instances').select((eb) => eb.fn.countAll().as('n'))
      .where('host', 'in', hosts).where('deleted_at', 'is', null).executeTakeFirst();
    return Number((row as any)?.n ?? 0);
  }

  private async computeService(host: string): Promise<any | undefined> {
    return this.db.selectFrom('compute_services').selectAll().where('host', '=', host).where('binary', '=', 'nova-compute').executeTakeFirst();
  }

  /** Adds a compute host (404 when no nova-compute runs there; 409 when already in, or in another zone). */
  async addHost(id: number, host: string): Promise<Aggregate> {
    if (!(await this.computeService(host))) throw new NotFound(`Compute host ${host} could not be found.`);
    const aggregate = await this.get(id);
    const conflict = (reason: string) => new Conflict(`Cannot add host to aggregate ${id}. Reason: ${reason}.`);
    await this.checkZoneChange(aggregate, aggregate.metadata, [host], conflict, false);
    const newZone = aggregate.availabilityZone;
    if (newZone) {
      const instances = await this.instancesOnHosts([host]);
      if (instances > 0) {
        const oldZone = (await this.aggregatesOfHost(host)).map((a) => a.availabilityZone).find((z) => z !== null) ?? null;
        if (oldZone !== newZone) {
          throw conflict(`The host cannot be added to the aggregate as the availability zone of the host would change from '${oldZone ?? 'None'}' to '${newZone}' but the host already has ${instances} instance(s). Changing the AZ of an existing instance is not supported by this action. Move the instances away from this host then try again. If you need to move the instances between AZs then you can use shelve_offload and unshelve to achieve this.`);
        }
      }
    }
    try {
      await this.db.insertInto('compute_aggregate_hosts').values({ aggregate_id: id, host }).execute();
    } catch (err) {
      if (isUniqueViolation(err)) throw new Conflict(`Aggregate ${id} already has host ${host}.`);
      throw err;
    }
    await this.mirrorToPlacement(host, aggregate.uuid, 'add');
    return this.get(id);
  }

  /** Removes a host; 404 "Cannot remove host X in aggregate Y" when either is unknown or not a member. */
  async removeHost(id: number, host: string): Promise<Aggregate> {
    const notFound = new NotFound(`Cannot remove host ${host} in aggregate ${id}`);
    if (!(await this.computeService(host))) throw notFound;
    const aggregate = await this.get(id).catch((err) => { throw err instanceof NotFound ? notFound : err; });
    if (!aggregate.hosts.includes(host)) throw notFound;
    if (aggregate.availabilityZone) {
      const instances = await this.instancesOnHosts([host]);
      const newZone = (await this.aggregatesOfHost(host)).filter((a) => a.id !== id).map((a) => a.availabilityZone).find((z) => z !== null) ?? null;
      if (instances > 0 && newZone !== aggregate.availabilityZone) {
        throw new Conflict(`Cannot remove host from aggregate ${id}. Reason: The host cannot be removed from the aggregate as the availability zone of the host would change from '${aggregate.availabilityZone}' to '${newZone ?? 'None'}' but the host already has ${instances} instance(s). Changing the AZ of an existing instance is not supported by this action. Move the instances away from this host then try again. If you need to move the instances between AZs then you can use shelve_offload and unshelve to achieve this..`);
      }
    }
    await this.mirrorToPlacement(host, aggregate.uuid, 'remove');
    await this.db.deleteFrom('compute_aggregate_hosts').where('aggregate_id', '=', id).where('host', '=', host).execute();
    return this.get(id);
  }

  /** Adds/removes the aggregate on the provider of each compute node of the host; failures are logged, as in Nova. */
  private async mirrorToPlacement(host: string, aggregateUuid: string, change: 'add' | 'remove'): Promise<void> {
    if (!this.placement) return;
    const nodes = await this.db.selectFrom('compute_nodes').select(['id', 'hypervisor_hostname']).where('host', '=', host).execute();
    for (const node of nodes) {
      try {
        const current = await this.placement.getProviderAggregates(node.id);
        const next = change === 'add' ? [...new Set([...current, aggregateUuid])] : current.filter((u) => u !== aggregateUuid);
        await this.placement.setProviderAggregates(node.id, next);
      } catch (err) {
        this.logger?.warn(`Failed to ${change === 'add' ? 'associate' : 'remove association of'} ${node.hypervisor_hostname} with placement aggregate ${aggregateUuid}: ${(err as Error).message}`);
      }
    }
  }

  // ---- availability zones ----------------------------------------------------------------

  /** The zone of a compute host: its zone aggregates' zones (comma-joined, as Nova does), else the default zone. */
  async availabilityZoneOfHost(host: string): Promise<string> {
    const zones = [...new Set((await this.aggregatesOfHost(host)).map((a) => a.availabilityZone).filter((z): z is string => z !== null))];
    return zones.length ? zones.join(',') : this.defaultZone;
  }

  /** Every service (API services excepted) with its zone and liveness. */
  async services(): Promise<ZoneService[]> {
    const rows = await this.db.selectFrom('compute_services').selectAll().orderBy('host').orderBy('binary').execute();
    const zoneRows = await this.db.selectFrom('compute_aggregate_hosts as h')
      .innerJoin('compute_aggregate_metadata as m', 'm.aggregate_id', 'h.aggregate_id')
      .select(['h.host', 'm.value']).where('m.key', '=', AZ_KEY).execute();
    const zonesByHost = new Map<string, Set<string>>();
    for (const r of zoneRows) (zonesByHost.get(r.host) ?? zonesByHost.set(r.host, new Set()).get(r.host)!).add(r.value);
    const now = Date.now();
    return rows.filter((r: any) => r.binary !== 'nova-osapi_compute' && r.binary !== 'nova-metadata').map((r: any) => {
      const compute = r.topic === 'compute' || r.binary === 'nova-compute';
      const hostZones = zonesByHost.get(r.host);
      const zone = !compute ? this.internalZone : hostZones?.size ? [...hostZones].sort().join(',') : this.defaultZone;
      const heartbeat = r.last_seen_up ?? r.updated_at ?? r.created_at;
      const up = Number(r.forced_down) !== 1 && heartbeat !== null && now - Date.parse(heartbeat) <= this.serviceDownTime * 1000;
      return { host: r.host, binary: r.binary, zone, disabled: Number(r.disabled) === 1, up, updatedAt: r.updated_at ?? null };
    });
  }

  /** Zones as Nova's get_availability_zones computes them (server create checks a requested zone against `available`). */
  async zones(): Promise<Zones> {
    const services = await this.services();
    const available = [...new Set(services.filter((s) => !s.disabled).map((s) => s.zone))].sort();
    const unavailable = [...new Set(services.filter((s) => s.disabled && !available.includes(s.zone)).map((s) => s.zone))].sort();
    return { available, unavailable };
  }
}
