// Migration records (Nova's Migration object): one per move of an instance between hosts —
// resize, cold migration, live migration, evacuation. The record is also the Placement
// consumer that holds the source host's allocations while a move is under way (Nova's
// "migration-based allocations"), so the instance's own allocations can sit on the target.
import type { Kysely } from 'kysely';
import { NotFound } from '../core/errors.js';
import { newUuid } from '../core/ids.js';
import { isUniqueViolation, transaction, type Database } from '../db/index.js';

export type MigrationType = 'migration' | 'resize' | 'live-migration' | 'evacuation';

export interface Migration {
  id: number;
  uuid: string;
  instanceId: string;
  migrationType: MigrationType;
  /** Nova's statuses: pre-migrating, migrating, post-migrating, finished, confirming, confirmed, reverting, reverted, error, failed, running, preparing, queued, accepted, done, completed, cancelled. */
  status: string;
  sourceCompute: string | null;
  sourceNode: string | null;
  destCompute: string | null;
  destNode: string | null;
  destHost: string | null;
  oldFlavorId: string | null;
  newFlavorId: string | null;
  oldFlavor: unknown;
  newFlavor: unknown;
  projectId: string;
  userId: string;
  memoryTotal: number | null;
  memoryProcessed: number | null;
  memoryRemaining: number | null;
  diskTotal: number | null;
  diskProcessed: number | null;
  diskRemaining: number | null;
  createdAt: string;
  updatedAt: string | null;
}

export type NewMigration = Pick<Migration, 'instanceId' | 'migrationType' | 'status' | 'projectId' | 'userId'>
  & Partial<Pick<Migration, 'sourceCompute' | 'sourceNode' | 'destCompute' | 'destNode' | 'destHost' | 'oldFlavorId' | 'newFlavorId' | 'oldFlavor' | 'newFlavor'>>;

export type MigrationChanges = Partial<Pick<Migration, 'status' | 'sourceCompute' | 'sourceNode' | 'destCompute' | 'destNode' | 'destHost'
  | 'memoryTotal' | 'memoryProcessed' | 'memoryRemaining' | 'diskTotal' | 'diskProcessed' | 'diskRemaining'>>;

export interface MigrationFilters {
  instanceId?: string;
  projectId?: string;
  userId?: string;
  host?: string;          // source or destination
  sourceCompute?: string;
  status?: string[];
  migrationType?: MigrationType;
  changesSince?: string;
  changesBefore?: string;
}

const COLUMN_OF: Record<string, string> = {
  status: 'status', sourceCompute: 'source_compute', sourceNode: 'source_node', destCompute: 'dest_compute', destNode: 'dest_node',
  destHost: 'dest_host', memoryTotal: 'memory_total', memoryProcessed: 'memory_processed', memoryRemaining: 'memory_remaining',
  diskTotal: 'disk_total', diskProcessed: 'disk_processed', diskRemaining: 'disk_remaining',
};

export class MigrationStore {
  constructor(private readonly database: Database) {}

  /** Records a migration (integer id = max + 1, retried when another controller took it). */
  async create(values: NewMigration, trx?: Kysely<any>): Promise<Migration> {
    const insert = async (db: Kysely<any>) => {
      const max = await db.selectFrom('compute_instance_migrations').select((eb) => eb.fn.max('id').as('m')).executeTakeFirst();
      const id = Number((max as any)?.m ?? 0) + 1;
      const now = new Date().toISOString();
      await db.insertInto('compute_instance_migrations').values({
        id, uuid: newUuid(), instance_id: values.instanceId, migration_type: values.migrationType, status: values.status,
        source_compute: values.sourceCompute ?? null, source_node: values.sourceNode ?? null, dest_compute: values.destCompute ?? null,
        dest_node: values.destNode ?? null, dest_host: values.destHost ?? null, old_flavor_id: values.oldFlavorId ?? null,
        new_flavor_id: values.newFlavorId ?? null, old_flavor: values.oldFlavor === undefined ? null : JSON.stringify(values.oldFlavor),
        new_flavor: values.newFlavor === undefined ? null : JSON.stringify(values.newFlavor), project_id: values.projectId, user_id: values.userId,
        created_at: now, updated_at: now,
      }).execute();
      return id;
    };
    if (trx) return this.get(await insert(trx), trx);
    for (let attempt = 0; ; attempt++) {
      try {
        return this.get(await transaction(this.database, insert));
      } catch (err) {
        if (!isUniqueViolation(err) || attempt >= 20) throw err;
      }
    }
  }

  async get(id: number, trx?: Kysely<any>): Promise<Migration> {
    const row = await (trx ?? this.database.db).selectFrom('compute_instance_migrations').selectAll().where('id', '=', id).executeTakeFirst();
    if (!row) throw new NotFound(`Migration ${id} could not be found.`);
    return migrationOf(row);
  }

  async byUuid(uuid: string): Promise<Migration | undefined> {
    const row = await this.database.db.selectFrom('compute_instance_migrations').selectAll().where('uuid', '=', uuid).executeTakeFirst();
    return row ? migrationOf(row) : undefined;
  }

  async update(id: number, changes: MigrationChanges, trx?: Kysely<any>): Promise<Migration> {
    const set: Record<string, unknown> = { updated_at: new Date().toISOString() };
    for (const [key, value] of Object.entries(changes)) set[COLUMN_OF[key]] = value;
    await (trx ?? this.database.db).updateTable('compute_instance_migrations').set(set).where('id', '=', id).execute();
    return this.get(id, trx);
  }

  /** Changes the record only while its status is one of `statuses` (two actors racing, e.g. an abort and the workflow); false when it was not. */
  async updateIf(id: number, statuses: string[], changes: MigrationChanges, trx?: Kysely<any>): Promise<boolean> {
    const set: Record<string, unknown> = { updated_at: new Date().toISOString() };
    for (const [key, value] of Object.entries(changes)) set[COLUMN_OF[key]] = value;
    const result = await (trx ?? this.database.db).updateTable('compute_instance_migrations').set(set).where('id', '=', id).where('status', 'in', statuses).executeTakeFirst();
    return Number(result.numUpdatedRows) > 0;
  }

  /** Newest first, as os-migrations lists them. */
  async list(filters: MigrationFilters = {}): Promise<Migration[]> {
    let query = this.database.db.selectFrom('compute_instance_migrations').selectAll();
    if (filters.instanceId !== undefined) query = query.where('instance_id', '=', filters.instanceId);
    if (filters.projectId !== undefined) query = query.where('project_id', '=', filters.projectId);
    if (filters.userId !== undefined) query = query.where('user_id', '=', filters.userId);
    if (filters.host !== undefined) query = query.where((eb) => eb.or([eb('source_compute', '=', filters.host!), eb('dest_compute', '=', filters.host!)]));
    if (filters.sourceCompute !== undefined) query = query.where('source_compute', '=', filters.sourceCompute);
    if (filters.status) query = query.where('status', 'in', filters.status);
    if (filters.migrationType !== undefined) query = query.where('migration_type', '=', filters.migrationType);
    if (filters.changesSince !== undefined) query = query.where('updated_at', '>=', filters.changesSince);
    if (filters.changesBefore !== undefined) query = query.where('updated_at', '<=', filters.changesBefore);
    const rows = await query.orderBy('created_at', 'desc').orderBy('id', 'desc').execute();
    return rows.map(migrationOf);
  }
}

function migrationOf(r: any): Migration {
  const num = (v: unknown) => (v === null || v === undefined ? null : Number(v));
  return {
    id: Number(r.id), uuid: r.uuid, instanceId: r.instance_id, migrationType: r.migration_type, status: r.status,
    sourceCompute: r.source_compute, sourceNode: r.source_node, destCompute: r.dest_compute, destNode: r.dest_node, destHost: r.dest_host,
    oldFlavorId: r.old_flavor_id, newFlavorId: r.new_flavor_id, oldFlavor: r.old_flavor ? JSON.parse(r.old_flavor) : null,
    newFlavor: r.new_flavor ? JSON.parse(r.new_flavor) : null, projectId: r.project_id, userId: r.user_id,
    memoryTotal: num(r.memory_total), memoryProcessed: num(r.memory_processed), memoryRemaining: num(r.memory_remaining),
    diskTotal: num(r.disk_total), diskProcessed: num(r.disk_processed), diskRemaining: num(r.disk_remaining),
    createdAt: r.created_at, updatedAt: r.updated_at,
  };
}
