// Transaction helpers for the networking service's concurrent allocations (IP addresses, MACs,
// segmentation ids): a savepoint lets one insert fail on a unique index without aborting the
// whole transaction (PostgreSQL aborts on any error), and a whole transaction is retried when
// the engine picked it as a deadlock or serialization victim (MariaDB under concurrent inserts).
import { sql, type Kysely } from 'kysely';
import { isUniqueViolation, transaction, type Database } from '../db/index.js';

let savepoints = 0;

/** Inserts through `insert`; false when a unique index refused it (the transaction stays usable). */
export async function insertUnlessDuplicate(trx: Kysely<any>, insert: (trx: Kysely<any>) => Promise<unknown>): Promise<boolean> {
  const name = sql.raw(`nubo_sp_${++savepoints}`);
  await sql`savepoint ${name}`.execute(trx);
  try {
    await insert(trx);
    await sql`release savepoint ${name}`.execute(trx);
    return true;
  } catch (err) {
    if (isUniqueViolation(err)) {
      await sql`rollback to savepoint ${name}`.execute(trx);
      return false;
    }
    // InnoDB rolls a deadlock victim back whole, savepoints and all: the original error is what the caller
    // (a retrying transaction) must see, not the failed rollback's "SAVEPOINT does not exist".
    await sql`rollback to savepoint ${name}`.execute(trx).catch(() => undefined);
    throw err;
  }
}

function isRetryable(err: unknown): boolean {
  const e = err as { code?: string; errno?: number };
  return e?.code === '40001' || e?.code === '40P01' || e?.code === 'ER_LOCK_DEADLOCK' || e?.errno === 1213
    || e?.code === 'ER_LOCK_WAIT_TIMEOUT' || e?.code === 'SQLITE_BUSY';
}

/** Runs `fn` in a transaction of its own, again (a few times) when the engine aborted it as a deadlock victim. */
export async function retryingTransaction<T>(database: Database, fn: (trx: Kysely<any>) => Promise<T>, attempts = 8): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await transaction(database, fn);
    } catch (err) {
      if (attempt >= attempts || !isRetryable(err)) throw err;
      await new Promise((resolve) => setTimeout(resolve, Math.random() * 20 * attempt));
    }
  }
}

/**
 * Locks rows for the rest of the transaction (SELECT ... FOR UPDATE) on PostgreSQL and MariaDB, so
 * checks that no unique index can express (overlapping cidrs, a pool's free prefixes) run one at a
 * time. Make it the transaction's first read: MariaDB's snapshot starts at the first plain read.
 * SQLite runs one transaction at a time anyway.
 */
export async function lockRows(database: Database, trx: Kysely<any>, table: string, ids: string[]): Promise<void> {
  if (database.engine === 'sqlite' || ids.length === 0) return;
  await trx.selectFrom(table).select('id').where('id', 'in', ids).forUpdate().execute();
}

/** `fn` inside the caller's transaction when given, otherwise in a retrying transaction of its own. */
export function inTransaction<T>(database: Database, trx: Kysely<any> | undefined, fn: (trx: Kysely<any>) => Promise<T>): Promise<T> {
  return trx ? fn(trx) : retryingTransaction(database, fn);
}

/** Neutron's timestamp form: 2026-12-02T04:00:00Z. */
export const nowStamp = (): string => new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');

export const parseJson = <T>(text: unknown, fallback: T): T => {
  if (typeof text !== 'string' || text === '') return fallback;
  try { return JSON.parse(text) as T; } catch { return fallback; }
};
