// One row per (project, resource) that creates lock before counting usage, so concurrent creates
// of one project's resource count one after another and cannot both take the last unit of quota.
import type { Kysely, Migration } from 'kysely';

export const quotaLockMigration: Migration = {
  async up(db: Kysely<any>): Promise<void> {
    await db.schema.createTable('network_quota_locks')
      .addColumn('project_id', 'varchar(64)', (c) => c.notNull())
      .addColumn('resource', 'varchar(32)', (c) => c.notNull())
      .addPrimaryKeyConstraint('network_quota_locks_pk', ['project_id', 'resource'])
      .execute();
  },
};
