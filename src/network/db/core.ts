// Tables for networks, segments, subnets, subnet pools, ports, fixed IPs, IP allocations, tags, quotas, agents.
import type { Kysely, Migration } from 'kysely';

export const coreMigration: Migration = {
  async up(_db: Kysely<any>): Promise<void> {
    // Filled in by the area's work.
  },
};
