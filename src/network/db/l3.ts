// Tables for routers, router ports and routes, floating IPs, port forwardings.
import type { Kysely, Migration } from 'kysely';

export const l3Migration: Migration = {
  async up(_db: Kysely<any>): Promise<void> {
    // Filled in by the area's work.
  },
};
