// Image tables. Conventions (src/db): varchar ids, integer 0/1 booleans, ISO timestamps, JSON as text.
import type { Kysely, Migration } from 'kysely';

const id = 'varchar(64)';
const ts = 'varchar(32)';

async function createSchema(db: Kysely<any>): Promise<void> {
  await db.schema.createTable('image_images')
    .addColumn('id', id, (c) => c.primaryKey())
    .addColumn('name', 'varchar(255)')
    .addColumn('status', 'varchar(30)', (c) => c.notNull())
    .addColumn('visibility', 'varchar(20)', (c) => c.notNull())
    .addColumn('owner', 'varchar(255)')
    .addColumn('disk_format', 'varchar(20)')
    .addColumn('container_format', 'varchar(20)')
    .addColumn('size', 'bigint')
    .addColumn('virtual_size', 'bigint')
    .addColumn('checksum', 'varchar(32)')
    .addColumn('os_hash_algo', 'varchar(64)')
    .addColumn('os_hash_value', 'varchar(128)')
    .addColumn('min_disk', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('min_ram', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('protected', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('os_hidden', 'integer', (c) => c.notNull().defaultTo(0))
    /** Custom (additional) properties: a JSON object of string values. */
    .addColumn('properties', 'text', (c) => c.notNull())
    /** Where the store keeps the data (the store's own location string), once there is data. */
    .addColumn('location', 'text')
    /** Why the image ended `killed`, for operators. */
    .addColumn('failure_reason', 'text')
    .addColumn('created_at', ts, (c) => c.notNull())
    .addColumn('updated_at', ts, (c) => c.notNull())
    .execute();
  await db.schema.createIndex('image_images_owner').on('image_images').column('owner').execute();
  await db.schema.createIndex('image_images_visibility').on('image_images').column('visibility').execute();

  await db.schema.createTable('image_tags')
    .addColumn('image_id', id, (c) => c.notNull().references('image_images.id').onDelete('cascade'))
    .addColumn('tag', 'varchar(255)', (c) => c.notNull())
    .addPrimaryKeyConstraint('image_tags_pk', ['image_id', 'tag'])
    .execute();

  await db.schema.createTable('image_members')
    .addColumn('image_id', id, (c) => c.notNull().references('image_images.id').onDelete('cascade'))
    .addColumn('member_id', 'varchar(255)', (c) => c.notNull())
    .addColumn('status', 'varchar(20)', (c) => c.notNull())
    .addColumn('created_at', ts, (c) => c.notNull())
    .addColumn('updated_at', ts, (c) => c.notNull())
    .addPrimaryKeyConstraint('image_members_pk', ['image_id', 'member_id'])
    .execute();
  await db.schema.createIndex('image_members_member').on('image_members').column('member_id').execute();
}

export const imageMigrations: Record<string, Migration> = {
  '0001_initial': {
    up: createSchema,
    down: async (db) => {
      for (const table of ['image_members', 'image_tags', 'image_images']) await db.schema.dropTable(table).ifExists().execute();
    },
  },
};
