// Networking tables, one migration per area (names sort in the order they run). Conventions
// (src/db): varchar ids, integer 0/1 booleans, ISO timestamps, JSON as text; tables prefixed `network_`.
import type { Migration } from 'kysely';
import { coreMigration } from './core.js';
import { securityGroupMigration } from './security-groups.js';
import { l3Migration } from './l3.js';
import { quotaLockMigration } from './quota-locks.js';

export const networkMigrations: Record<string, Migration> = {
  '0001_core': coreMigration,
  '0002_security_groups': securityGroupMigration,
  '0003_l3': l3Migration,
  '0004_quota_locks': quotaLockMigration,
};
