// os-server-password: the password a guest posts to the metadata service (encrypted with the
// server's key pair by the guest, e.g. cloudbase-init), kept per instance. Nova keeps it in
// system_metadata (password_0..3); clearing sets it empty, and the metadata service accepts a
// new one only while it is empty.
import { Conflict } from '../core/errors.js';
import type { Database } from '../db/index.js';

/** Nova's limit for the posted password (metadata/password.py MAX_SIZE: 4 system_metadata chunks of 255). */
export const MAX_PASSWORD_SIZE = 4 * 255;

export class ServerPasswordStore {
  constructor(private readonly database: Database) {}

  /** The stored (encrypted) password, '' when there is none. */
  async get(instanceId: string): Promise<string> {
    const row = await this.database.db.selectFrom('compute_server_passwords').select('password').where('instance_id', '=', instanceId).executeTakeFirst() as any;
    return row?.password ?? '';
  }

  async clear(instanceId: string): Promise<void> {
    await this.database.db.deleteFrom('compute_server_passwords').where('instance_id', '=', instanceId).execute();
  }

  /** For the metadata service's POST: 409 when a password is already set (clear it first), as Nova's handle_password. */
  async set(instanceId: string, password: string): Promise<void> {
    if (await this.get(instanceId)) throw new Conflict('A password is already set for this server.');
    await this.clear(instanceId);
    await this.database.db.insertInto('compute_server_passwords').values({ instance_id: instanceId, password, updated_at: new Date().toISOString() }).execute();
  }
}
