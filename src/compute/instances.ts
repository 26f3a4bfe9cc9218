// Instance records: the compute_instances row with its metadata, tags, fault and block
// device mappings, and Nova's state model (vm_state + task_state → API status).
import { sql, type Kysely } from 'kysely';
import { NotFound } from '../core/errors.js';
import type { Database } from '../db/index.js';
import type { FlavorSize } from './flavors.js';

/** Nova's vm_states. */
export const VmState = {
  ACTIVE: 'active', BUILDING: 'building', PAUSED: 'paused', SUSPENDED: 'suspended', STOPPED: 'stopped', RESCUED: 'rescued',
  RESIZED: 'resized', SOFT_DELETED: 'soft-delete', DELETED: 'deleted', ERROR: 'error', SHELVED: 'shelved',
  SHELVED_OFFLOADED: 'shelved_offloaded',
} as const;

/** The flavor as an instance keeps it (a snapshot taken at create time). */
export interface FlavorSnapshot extends FlavorSize {
  rxtxFactor?: number;
  description?: string | null;
}

/** What the create request asked for beyond the columns: kept for rescheduling and later issues (networking). */
export interface InstanceRequest {
  networks: 'auto' | 'none' | { uuid?: string; port?: string; fixed_ip?: string; tag?: string }[];
  securityGroups: string[];
  schedulerHints: Record<string, string | string[]>;
  personality: { path: string; contents: string }[];
  requestedHost?: string;
  requestedNode?: string;
  /** The server group given as the `group` hint. */
  groupId?: string;
}

export interface InstanceFault { code: number; message: string; details: string | null; created: string }

export interface Instance {
  id: string;
  name: string;
  description: string | null;
  projectId: string;
  userId: string;
  hostname: string;
  host: string | null;
  node: string | null;
  requestedAvailabilityZone: string | null;
  availabilityZone: string | null;
  flavorId: string;
  flavor: FlavorSnapshot;
  imageRef: string | null;
  keyName: string | null;
  keyData: string | null;
  userData: string | null;
  configDrive: boolean;
  vmState: string;
  taskState: string | null;
  powerState: number;
  progress: number;
  locked: boolean;
  lockedBy: string | null;
  lockedReason: string | null;
  reservationId: string;
  launchIndex: number;
  accessIpV4: string | null;
  accessIpV6: string | null;
  adminPass: string | null;
  request: InstanceRequest;
  launchedAt: string | null;
  terminatedAt: string | null;
  createdAt: string;
  updatedAt: string;
  deletedAt: string | null;
  metadata: Record<string, string>;
  tags: string[];
  fault: InstanceFault | null;
}

export interface BlockDeviceMapping {
  id: string;
  instanceId: string;
  bootIndex: number | null;
  sourceType: string;
  destinationType: string;
  uuid: string | null;
  volumeSize: number | null;
  deleteOnTermination: boolean;
  deviceName: string | null;
  deviceType: string | null;
  diskBus: string | null;
  guestFormat: string | null;
}

/** The API status of a server, from vm_state and task_state (nova/api/openstack/common.py's state map). */
export function serverStatus(vmState: string, taskState: string | null): string {
  const byTask: Record<string, Record<string, string>> = {
    active: {
      rebooting: 'REBOOT', reboot_pending: 'REBOOT', reboot_started: 'REBOOT',
      rebooting_hard: 'HARD_REBOOT', reboot_pending_hard: 'HARD_REBOOT', reboot_started_hard: 'HARD_REBOOT',
      rebuilding: 'REBUILD', rebuild_block_device_mapping: 'REBUILD', rebuild_spawning: 'REBUILD',
      updating_password: 'PASSWORD', resize_prep: 'RESIZE', resize_migrating: 'RESIZE', resize_migrated: 'RESIZE',
      resize_finish: 'RESIZE', migrating: 'MIGRATING',
    },
    paused: { migrating: 'MIGRATING' },
    stopped: {
      resize_prep: 'RESIZE', resize_migrating: 'RESIZE', resize_migrated: 'RESIZE', resize_finish: 'RESIZE',
      rebuilding: 'REBUILD', rebuild_block_device_mapping: 'REBUILD', rebuild_spawning: 'REBUILD',
    },
    error: { rebuilding: 'REBUILD', rebuild_block_device_mapping: 'REBUILD', rebuild_spawning: 'REBUILD' },
    resized: { resize_reverting: 'REVERT_RESIZE' },
  };
  const fromTask = taskState ? byTask[vmState]?.[taskState] : undefined;
  if (fromTask) return fromTask;
  return ({
    active: 'ACTIVE', building: 'BUILD', stopped: 'SHUTOFF', resized: 'VERIFY_RESIZE', paused: 'PAUSED', suspended: 'SUSPENDED',
    rescued: 'RESCUE', error: 'ERROR', deleted: 'DELETED', 'soft-delete': 'SOFT_DELETED', shelved: 'SHELVED',
    shelved_offloaded: 'SHELVED_OFFLOADED',
  } as Record<string, string>)[vmState] ?? 'UNKNOWN';
}

/** vm_states a status filter means (the inverse of serverStatus for the base states). */
export function vmStatesForStatus(status: string): string[] | undefined {
  const map: Record<string, string[]> = {
    ACTIVE: ['active'], BUILD: ['building'], SHUTOFF: ['stopped'], VERIFY_RESIZE: ['resized'], PAUSED: ['paused'],
    SUSPENDED: ['suspended'], RESCUE: ['rescued'], ERROR: ['error'], DELETED: ['deleted'], SOFT_DELETED: ['soft-delete'],
    SHELVED: ['shelved'], SHELVED_OFFLOADED: ['shelved_offloaded'],
  };
  return map[status.toUpperCase()];
}

const COLUMN_OF: Record<string, string> = {
  name: 'name', description: 'description', host: 'host', node: 'node', availabilityZone: 'availability_zone',
  vmState: 'vm_state', taskState: 'task_state', powerState: 'power_state', progress: 'progress', locked: 'locked',
  lockedBy: 'locked_by', lockedReason: 'locked_reason', accessIpV4: 'access_ip_v4', accessIpV6: 'access_ip_v6',
  adminPass: 'admin_pass', launchedAt: 'launched_at', terminatedAt: 'terminated_at', deletedAt: 'deleted_at',
  hostname: 'hostname', flavorId: 'flavor_id', imageRef: 'image_ref', keyName: 'key_name', keyData: 'key_data',
  userData: 'user_data', configDrive: 'config_drive', requestedAvailabilityZone: 'requested_availability_zone',
  flavor: 'flavor',
};

export type InstanceChanges = Partial<Pick<Instance, 'name' | 'description' | 'host' | 'node' | 'availabilityZone' | 'vmState' | 'taskState'
  | 'powerState' | 'progress' | 'locked' | 'lockedBy' | 'lockedReason' | 'accessIpV4' | 'accessIpV6' | 'adminPass' | 'launchedAt'
  | 'terminatedAt' | 'deletedAt' | 'hostname' | 'imageRef' | 'keyName' | 'keyData' | 'userData' | 'requestedAvailabilityZone' | 'flavorId' | 'flavor'>>;

export interface InstanceListFilters {
  projectId?: string;          // undefined = every project (admin all_tenants)
  userId?: string;
  includeDeleted?: boolean;    // deleted rows too (changes-since, deleted=true)
  onlyDeleted?: boolean;
  ids?: string[];
  host?: string;
  node?: string;
  vmStates?: string[];
  taskState?: string | null;
  reservationId?: string;
  flavorId?: string;
  imageRef?: string;
  availabilityZone?: string;
  changesSince?: string;
  changesBefore?: string;
  lockedOnly?: boolean;
}

/** Reads and writes instance rows. Every method takes an optional transaction handle. */
export class InstanceStore {
  constructor(private readonly database: Database) {}

  private db(trx?: Kysely<any>): Kysely<any> {
    return trx ?? this.database.db;
  }

  async insert(instance: Instance, bdms: BlockDeviceMapping[], trx?: Kysely<any>): Promise<void> {
    const db = this.db(trx);
    await db.insertInto('compute_instances').values({
      id: instance.id, name: instance.name, description: instance.description, project_id: instance.projectId, user_id: instance.userId,
      hostname: instance.hostname, host: instance.host, node: instance.node, requested_availability_zone: instance.requestedAvailabilityZone,
      availability_zone: instance.availabilityZone, flavor_id: instance.flavorId, flavor: JSON.stringify(instance.flavor),
      image_ref: instance.imageRef, key_name: instance.keyName, key_data: instance.keyData, user_data: instance.userData,
      config_drive: instance.configDrive ? 1 : 0, vm_state: instance.vmState, task_state: instance.taskState, power_state: instance.powerState,
      progress: instance.progress, locked: instance.locked ? 1 : 0, locked_by: instance.lockedBy, locked_reason: instance.lockedReason,
      reservation_id: instance.reservationId, launch_index: instance.launchIndex, access_ip_v4: instance.accessIpV4,
      access_ip_v6: instance.accessIpV6, admin_pass: instance.adminPass, request: JSON.stringify(instance.request),
      launched_at: instance.launchedAt, terminated_at: instance.terminatedAt, created_at: instance.createdAt, updated_at: instance.updatedAt,
      deleted_at: instance.deletedAt,
    }).execute();
    const metadata = Object.entries(instance.metadata);
    if (metadata.length) await db.insertInto('compute_instance_metadata').values(metadata.map(([key, value]) => ({ instance_id: instance.id, key, value }))).execute();
    if (instance.tags.length) await db.insertInto('compute_instance_tags').values(instance.tags.map((tag) => ({ instance_id: instance.id, tag }))).execute();
    if (bdms.length) {
      await db.insertInto('compute_block_device_mappings').values(bdms.map((b) => ({
        id: b.id, instance_id: b.instanceId, boot_index: b.bootIndex, source_type: b.sourceType, destination_type: b.destinationType,
        uuid: b.uuid, volume_size: b.volumeSize, delete_on_termination: b.deleteOnTermination ? 1 : 0, device_name: b.deviceName,
        device_type: b.deviceType, disk_bus: b.diskBus, guest_format: b.guestFormat,
      }))).execute();
    }
  }

  /** The instance (deleted ones too), or NotFound in Nova's words. */
  async get(id: string, trx?: Kysely<any>): Promise<Instance> {
    const found = await this.find(id, trx);
    if (!found) throw new NotFound(`Instance ${id} could not be found.`);
    return found;
  }

  async find(id: string, trx?: Kysely<any>): Promise<Instance | undefined> {
    const rows = await this.db(trx).selectFrom('compute_instances').selectAll().where('id', '=', id).execute();
    if (rows.length === 0) return undefined;
    return (await this.hydrate(rows, trx))[0];
  }

  /** Instances matching the filters, newest first (Nova's default sort: created_at desc, then id desc). */
  async list(filters: InstanceListFilters, sort: { key: string; dir: 'asc' | 'desc' }[] = [], trx?: Kysely<any>): Promise<Instance[]> {
    let query = this.db(trx).selectFrom('compute_instances').selectAll();
    if (filters.projectId !== undefined) query = query.where('project_id', '=', filters.projectId);
    if (filters.userId !== undefined) query = query.where('user_id', '=', filters.userId);
    if (filters.onlyDeleted) query = query.where('deleted_at', 'is not', null);
    else if (!filters.includeDeleted) query = query.where('deleted_at', 'is', null);
    if (filters.ids) query = filters.ids.length ? query.where('id', 'in', filters.ids) : query.where(sql.lit(false));
    if (filters.host !== undefined) query = query.where('host', '=', filters.host);
    if (filters.node !== undefined) query = query.where('node', '=', filters.node);
    if (filters.vmStates) query = query.where('vm_state', 'in', filters.vmStates);
    if (filters.taskState !== undefined) query = filters.taskState === null ? query.where('task_state', 'is', null) : query.where('task_state', '=', filters.taskState);
    if (filters.reservationId !== undefined) query = query.where('reservation_id', '=', filters.reservationId);
    if (filters.flavorId !== undefined) query = query.where('flavor_id', '=', filters.flavorId);
    if (filters.imageRef !== undefined) query = query.where('image_ref', '=', filters.imageRef);
    if (filters.availabilityZone !== undefined) query = query.where('availability_zone', '=', filters.availabilityZone);
    if (filters.changesSince !== undefined) query = query.where('updated_at', '>=', filters.changesSince);
    if (filters.changesBefore !== undefined) query = query.where('updated_at', '<=', filters.changesBefore);
    if (filters.lockedOnly !== undefined) query = query.where('locked', '=', filters.lockedOnly ? 1 : 0);
    const order = sort.length ? sort : [{ key: 'created_at', dir: 'desc' as const }];
    for (const s of order) query = query.orderBy(s.key, s.dir);
    if (!order.some((s) => s.key === 'id')) query = query.orderBy('id', order[0].dir);
    return this.hydrate(await query.execute(), trx);
  }

  /** Changes columns and bumps updated_at; returns the updated instance. */
  async update(id: string, changes: InstanceChanges, trx?: Kysely<any>): Promise<Instance> {
    await this.db(trx).updateTable('compute_instances').set({ ...this.columns(changes), updated_at: new Date().toISOString() }).where('id', '=', id).execute();
    return this.get(id, trx);
  }

  /**
   * Changes columns only when the instance is in one of `expected` task states (null = no task) and not deleted:
   * Nova's expected_task_state guard against two actions racing. Returns false when the guard failed.
   */
  async updateIf(id: string, expected: { taskState?: (string | null)[]; vmState?: string[] }, changes: InstanceChanges, trx?: Kysely<any>): Promise<boolean> {
    let query = this.db(trx).updateTable('compute_instances').set({ ...this.columns(changes), updated_at: new Date().toISOString() })
      .where('id', '=', id).where('deleted_at', 'is', null);
    if (expected.taskState) {
      const states = expected.taskState.filter((s): s is string => s !== null);
      const allowNull = expected.taskState.includes(null);
      query = query.where((eb) => eb.or([
        ...(states.length ? [eb('task_state', 'in', states)] : []),
        ...(allowNull ? [eb('task_state', 'is', null)] : []),
      ]));
    }
    if (expected.vmState) query = query.where('vm_state', 'in', expected.vmState);
    const result = await query.executeTakeFirst();
    return Number(result.numUpdatedRows) > 0;
  }

  private columns(changes: InstanceChanges): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(changes)) {
      const column = COLUMN_OF[key];
      if (!column) throw new Error(`instance field ${key} has no column`);
      out[column] = typeof value === 'boolean' ? (value ? 1 : 0) : (value !== null && typeof value === 'object' ? JSON.stringify(value) : value);
    }
    return out;
  }

  async setFault(id: string, fault: { code: number; message: string; details?: string | null }, trx?: Kysely<any>): Promise<void> {
    const db = this.db(trx);
    await db.deleteFrom('compute_instance_faults').where('instance_id', '=', id).execute();
    await db.insertInto('compute_instance_faults').values({ instance_id: id, code: fault.code, message: fault.message, details: fault.details ?? null, created_at: new Date().toISOString() }).execute();
  }

  async replaceMetadata(id: string, metadata: Record<string, string>, trx?: Kysely<any>): Promise<void> {
    const db = this.db(trx);
    await db.deleteFrom('compute_instance_metadata').where('instance_id', '=', id).execute();
    const entries = Object.entries(metadata);
    if (entries.length) await db.insertInto('compute_instance_metadata').values(entries.map(([key, value]) => ({ instance_id: id, key, value }))).execute();
    await this.touch(id, db);
  }

  async replaceTags(id: string, tags: string[], trx?: Kysely<any>): Promise<void> {
    const db = this.db(trx);
    await db.deleteFrom('compute_instance_tags').where('instance_id', '=', id).execute();
    const unique = [...new Set(tags)];
    if (unique.length) await db.insertInto('compute_instance_tags').values(unique.map((tag) => ({ instance_id: id, tag }))).execute();
    await this.touch(id, db);
  }

  private async touch(id: string, db: Kysely<any>): Promise<void> {
    await db.updateTable('compute_instances').set({ updated_at: new Date().toISOString() }).where('id', '=', id).execute();
  }

  async blockDeviceMappings(id: string, trx?: Kysely<any>): Promise<BlockDeviceMapping[]> {
    const rows = await this.db(trx).selectFrom('compute_block_device_mappings').selectAll().where('instance_id', '=', id).orderBy('boot_index').execute();
    return rows.map((r: any) => ({
      id: r.id, instanceId: r.instance_id, bootIndex: r.boot_index, sourceType: r.source_type, destinationType: r.destination_type,
      uuid: r.uuid, volumeSize: r.volume_size, deleteOnTermination: !!r.delete_on_termination, deviceName: r.device_name,
      deviceType: r.device_type, diskBus: r.disk_bus, guestFormat: r.guest_format,
    }));
  }

  /** Rows → instances, loading metadata, tags and faults for all of them in three queries. */
  private async hydrate(rows: any[], trx?: Kysely<any>): Promise<Instance[]> {
    if (rows.length === 0) return [];
    const db = this.db(trx);
    const metadata = new Map<string, Record<string, string>>();
    const tags = new Map<string, string[]>();
    const faults = new Map<string, InstanceFault>();
    // Chunks keep the IN lists within every engine's parameter limit.
    for (let i = 0; i < rows.length; i += 500) {
      const ids = rows.slice(i, i + 500).map((r) => r.id);
      const [meta, tagRows, faultRows] = await Promise.all([
        db.selectFrom('compute_instance_metadata').selectAll().where('instance_id', 'in', ids).execute(),
        db.selectFrom('compute_instance_tags').selectAll().where('instance_id', 'in', ids).orderBy('tag').execute(),
        db.selectFrom('compute_instance_faults').selectAll().where('instance_id', 'in', ids).execute(),
      ]);
      for (const m of meta as any[]) (metadata.get(m.instance_id) ?? metadata.set(m.instance_id, {}).get(m.instance_id)!)[m.key] = m.value;
      for (const t of tagRows as any[]) (tags.get(t.instance_id) ?? tags.set(t.instance_id, []).get(t.instance_id)!).push(t.tag);
      for (const f of faultRows as any[]) faults.set(f.instance_id, { code: f.code, message: f.message, details: f.details, created: f.created_at });
    }
    return rows.map((r) => ({
      id: r.id, name: r.name, description: r.description, projectId: r.project_id, userId: r.user_id, hostname: r.hostname,
      host: r.host, node: r.node, requestedAvailabilityZone: r.requested_availability_zone, availabilityZone: r.availability_zone,
      flavorId: r.flavor_id, flavor: JSON.parse(r.flavor), imageRef: r.image_ref, keyName: r.key_name, keyData: r.key_data,
      userData: r.user_data, configDrive: !!r.config_drive, vmState: r.vm_state, taskState: r.task_state, powerState: Number(r.power_state),
      progress: Number(r.progress), locked: !!r.locked, lockedBy: r.locked_by, lockedReason: r.locked_reason, reservationId: r.reservation_id,
      launchIndex: Number(r.launch_index), accessIpV4: r.access_ip_v4, accessIpV6: r.access_ip_v6, adminPass: r.admin_pass,
      request: JSON.parse(r.request), launchedAt: r.launched_at, terminatedAt: r.terminated_at, createdAt: r.created_at,
      updatedAt: r.updated_at, deletedAt: r.deleted_at, metadata: metadata.get(r.id) ?? {}, tags: tags.get(r.id) ?? [],
      fault: faults.get(r.id) ?? null,
    }));
  }
}
