// Nova's instance system_metadata: key/value pairs the service itself keeps about an instance
// (shelved_image_id, shelved_at, shelved_host, image_base_image_ref), never shown to users.
import type { Kysely } from 'kysely';
import type { Database } from '../db/index.js';

export class SystemMetadataStore {
  constructor(private readonly database: Database) {}

  private db(trx?: Kysely<any>): Kysely<any> {
    return trx ?? this.database.db;
  }

  async get(instanceId: string, trx?: Kysely<any>): Promise<Record<string, string>> {
    const rows = await this.db(trx).selectFrom('compute_instance_system_metadata').selectAll().where('instance_id', '=', instanceId).execute();
    return Object.fromEntries((rows as any[]).map((r) => [r.key, r.value]));
  }

  /** Sets the given keys (others stay). */
  async set(instanceId: string, values: Record<string, string>, trx?: Kysely<any>): Promise<void> {
    const db = this.db(trx);
    const keys = Object.keys(values);
    if (keys.length === 0) return;
    await db.deleteFrom('compute_instance_system_metadata').where('instance_id', '=', instanceId).where('key', 'in', keys).execute();
    await db.insertInto('compute_instance_system_metadata').values(keys.map((key) => ({ instance_id: instanceId, key, value: values[key] }))).execute();
  }

  async remove(instanceId: string, keys: string[], trx?: Kysely<any>): Promise<void> {
    if (keys.length === 0) return;
    await this.db(trx).deleteFrom('compute_instance_system_metadata').where('instance_id', '=', instanceId).where('key', 'in', keys).execute();
  }
}

/** The keys shelving leaves (Nova's remove_shelved_keys_from_system_metadata removes them on unshelve). */
export const SHELVED_KEYS = ['shelved_at', 'shelved_image_id', 'shelved_host'];
