// Tables for security groups and rules.
import type { Kysely, Migration } from 'kysely';

export const securityGroupMigration: Migration = {
  async up(_db: Kysely<any>): Promise<void> {
    // Filled in by the area's work.
  },
};
