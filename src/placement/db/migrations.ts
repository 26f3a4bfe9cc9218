// Placement tables. Conventions (src/db): varchar ids, integer 0/1 booleans, ISO timestamps, JSON as text.
// Standard resource classes and traits live in code (standard.ts); only CUSTOM_ ones are rows.
import type { Kysely, Migration } from 'kysely';

const id = 'varchar(64)';
const ts = 'varchar(32)';
const className = 'varchar(255)';

async function createSchema(db: Kysely<any>): Promise<void> {
  await db.schema.createTable('placement_resource_providers')
    .addColumn('uuid', id, (c) => c.primaryKey())
    .addColumn('name', 'varchar(200)', (c) => c.notNull().unique())
    .addColumn('generation', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('parent_provider_uuid', id)
    .addColumn('root_provider_uuid', id, (c) => c.notNull())
    .addColumn('created_at', ts, (c) => c.notNull())
    .addColumn('updated_at', ts, (c) => c.notNull())
    .execute();
  await db.schema.createIndex('placement_rp_parent').on('placement_resource_providers').column('parent_provider_uuid').execute();
  await db.schema.createIndex('placement_rp_root').on('placement_resource_providers').column('root_provider_uuid').execute();

  await db.schema.createTable('placement_inventories')
    .addColumn('provider_uuid', id, (c) => c.notNull().references('placement_resource_providers.uuid').onDelete('cascade'))
    .addColumn('resource_class', className, (c) => c.notNull())
    .addColumn('total', 'integer', (c) => c.notNull())
    .addColumn('reserved', 'integer', (c) => c.notNull())
    .addColumn('min_unit', 'integer', (c) => c.notNull())
    .addColumn('max_unit', 'integer', (c) => c.notNull())
    .addColumn('step_size', 'integer', (c) => c.notNull())
    .addColumn('allocation_ratio', 'double precision', (c) => c.notNull())
    .addPrimaryKeyConstraint('placement_inventories_pk', ['provider_uuid', 'resource_class'])
    .execute();
  await db.schema.createIndex('placement_inventories_class').on('placement_inventories').column('resource_class').execute();

  await db.schema.createTable('placement_custom_resource_classes')
    .addColumn('name', className, (c) => c.primaryKey())
    .addColumn('created_at', ts, (c) => c.notNull())
    .execute();

  await db.schema.createTable('placement_custom_traits')
    .addColumn('name', className, (c) => c.primaryKey())
    .addColumn('created_at', ts, (c) => c.notNull())
    .execute();

  await db.schema.createTable('placement_provider_traits')
    .addColumn('provider_uuid', id, (c) => c.notNull().references('placement_resource_providers.uuid').onDelete('cascade'))
    .addColumn('trait', className, (c) => c.notNull())
    .addPrimaryKeyConstraint('placement_provider_traits_pk', ['provider_uuid', 'trait'])
    .execute();
  await db.schema.createIndex('placement_provider_traits_trait').on('placement_provider_traits').column('trait').execute();

  await db.schema.createTable('placement_provider_aggregates')
    .addColumn('provider_uuid', id, (c) => c.notNull().references('placement_resource_providers.uuid').onDelete('cascade'))
    .addColumn('aggregate_uuid', id, (c) => c.notNull())
    .addPrimaryKeyConstraint('placement_provider_aggregates_pk', ['provider_uuid', 'aggregate_uuid'])
    .execute();
  await db.schema.createIndex('placement_provider_aggregates_agg').on('placement_provider_aggregates').column('aggregate_uuid').execute();

  await db.schema.createTable('placement_consumers')
    .addColumn('uuid', id, (c) => c.primaryKey())
    .addColumn('project_id', 'varchar(255)', (c) => c.notNull())
    .addColumn('user_id', 'varchar(255)', (c) => c.notNull())
    .addColumn('consumer_type', 'varchar(255)')
    .addColumn('generation', 'integer', (c) => c.notNull())
    .addColumn('created_at', ts, (c) => c.notNull())
    .addColumn('updated_at', ts, (c) => c.notNull())
    .execute();
  await db.schema.createIndex('placement_consumers_project_user').on('placement_consumers').columns(['project_id', 'user_id']).execute();

  await db.schema.createTable('placement_allocations')
    .addColumn('consumer_uuid', id, (c) => c.notNull())
    .addColumn('provider_uuid', id, (c) => c.notNull())
    .addColumn('resource_class', className, (c) => c.notNull())
    .addColumn('used', 'integer', (c) => c.notNull())
    .addColumn('created_at', ts, (c) => c.notNull())
    .addPrimaryKeyConstraint('placement_allocations_pk', ['consumer_uuid', 'provider_uuid', 'resource_class'])
    .execute();
  await db.schema.createIndex('placement_allocations_provider').on('placement_allocations').columns(['provider_uuid', 'resource_class']).execute();

  // One row: a counter bumped (under its row lock) by every write that changes what candidates
  // see, and a log of which providers each version changed, so that every controller process can
  // refresh its in-memory view of providers incrementally and stay exact.
  await db.schema.createTable('placement_state')
    .addColumn('id', 'varchar(16)', (c) => c.primaryKey())
    .addColumn('version', 'integer', (c) => c.notNull())
    .execute();
  await db.insertInto('placement_state').values({ id: 'providers', version: 0 }).execute();
  await db.schema.createTable('placement_changes')
    .addColumn('version', 'integer', (c) => c.notNull())
    .addColumn('provider_uuid', id, (c) => c.notNull())
    .execute();
  await db.schema.createIndex('placement_changes_version').on('placement_changes').column('version').execute();
}

export const placementMigrations: Record<string, Migration> = {
  '0001_initial': {
    up: createSchema,
    down: async (db) => {
      for (const table of ['placement_changes', 'placement_state', 'placement_allocations', 'placement_consumers', 'placement_provider_aggregates',
        'placement_provider_traits', 'placement_custom_traits', 'placement_custom_resource_classes', 'placement_inventories', 'placement_resource_providers']) {
        await db.schema.dropTable(table).ifExists().execute();
      }
    },
  },
};
