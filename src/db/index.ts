// One Kysely connection for the whole process. SQLite (better-sqlite3) in the data dir by
// default; PostgreSQL or MariaDB/MySQL when [database] connection is such a URL.
// Column conventions that hold on all three engines: ids and names are varchar, booleans
// are integers 0/1, timestamps are ISO 8601 strings, JSON is text.
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Kysely, SqliteDialect, PostgresDialect, MysqlDialect, Migrator, sql, type Migration, type MigrationProvider } from 'kysely';
import SQLite from 'better-sqlite3';
import pg from 'pg';
import { createPool } from 'mysql2';
import { BadRequest, InternalError } from '../core/errors.js';

export type Engine = 'sqlite' | 'postgres' | 'mysql';

export interface Database {
  db: Kysely<any>;
  engine: Engine;
  close(): Promise<void>;
}

/** Default connection when none is configured: a SQLite file in the data dir. */
export function defaultConnection(dataDir: string): string {
  return `sqlite://${join(dataDir, 'nubo.sqlite')}`;
}

export function engineOf(connection: string): Engine {
  const scheme = connection.split(':', 1)[0].split('+', 1)[0].toLowerCase();
  if (scheme === 'sqlite') return 'sqlite';
  if (scheme === 'postgres' || scheme === 'postgresql') return 'postgres';
  if (scheme === 'mysql' || scheme === 'mariadb') return 'mysql';
  throw new BadRequest(`[database] connection: unsupported scheme "${scheme}" (use sqlite://, postgres:// or mysql://)`);
}

export async function openDatabase(connection: string): Promise<Database> {
  const engine = engineOf(connection);
  // oslo-style URLs may name a driver ("mysql+pymysql://"); keep only the engine.
  const url = connection.replace(/^([a-z]+)\+[a-z0-9]+:/i, '$1:');
  let db: Kysely<any>;
  if (engine === 'sqlite') {
    const path = url.replace(/^sqlite:\/\//, '') || ':memory:';
    if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
    const sqlite = new SQLite(path);
    sqlite.pragma('journal_mode = WAL');
    // WAL with synchronous=NORMAL survives a crash of the process (not of the machine's power) without an
    // fsync per commit; better-sqlite3 is synchronous, so per-commit fsyncs would stall the event loop.
    sqlite.pragma('synchronous = NORMAL');
    sqlite.pragma('busy_timeout = 5000');
    sqlite.pragma('foreign_keys = ON');
    db = new Kysely({ dialect: new SqliteDialect({ database: withStatementCache(sqlite) }) });
  } else if (engine === 'postgres') {
    const pool = new pg.Pool({ connectionString: url.replace(/^postgresql:/, 'postgres:'), max: 10 });
    pool.on('error', () => { /* a dropped idle connection is replaced on next use */ });
    db = new Kysely({ dialect: new PostgresDialect({ pool }) });
  } else {
    const pool = createPool({ uri: url.replace(/^mariadb:/, 'mysql:'), connectionLimit: 10, timezone: 'Z', supportBigNumbers: true });
    db = new Kysely({ dialect: new MysqlDialect({ pool }) });
  }
  try {
    await sql`select 1`.execute(db);
  } catch (err) {
    await db.destroy().catch(() => undefined);
    throw new InternalError(`cannot connect to the ${engine} database: ${(err as Error).message}`);
  }
  return { db, engine, close: () => db.destroy() };
}

/**
 * Kysely prepares every query anew; preparing costs SQLite about as much as running a small
 * query, so statements are kept by their SQL text (a bounded map: the oldest goes first).
 * better-sqlite3 runs one statement at a time, so sharing a statement is safe.
 */
function withStatementCache(sqlite: SQLite.Database, size = 500) {
  const cache = new Map<string, SQLite.Statement>();
  return {
    close: () => sqlite.close(),
    prepare(text: string) {
      let statement = cache.get(text);
      if (statement) {
        cache.delete(text);
      } else {
        statement = sqlite.prepare(text);
        if (cache.size >= size) cache.delete(cache.keys().next().value!);
      }
      cache.set(text, statement);
      return statement;
    },
  };
}

/**
 * Runs one service's migrations, in name order, recording them in `<service>_migrations`.
 * Each service owns its tables (prefixed with the service name) and its migrations.
 */
export async function migrateService(database: Database, service: string, migrations: Record<string, Migration>): Promise<string[]> {
  const provider: MigrationProvider = { getMigrations: async () => migrations };
  const migrator = new Migrator({
    db: database.db,
    provider,
    migrationTableName: `${service}_migrations`,
    migrationLockTableName: `${service}_migrations_lock`,
  });
  const { error, results } = await migrator.migrateToLatest();
  if (error) throw new InternalError(`migrations of ${service} failed: ${(error as Error).message ?? error}`);
  return (results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName);
}

/** Runs `fn` in a transaction (all engines); the callback gets the transaction handle. */
export function transaction<T>(database: Database, fn: (trx: Kysely<any>) => Promise<T>): Promise<T> {
  return database.db.transaction().execute(fn);
}

/** True when an error is a unique-constraint violation on any of the three engines. */
export function isUniqueViolation(err: unknown): boolean {
  const e = err as { code?: string; errno?: number; message?: string };
  return e?.code === 'SQLITE_CONSTRAINT_UNIQUE' || e?.code === 'SQLITE_CONSTRAINT_PRIMARYKEY'
    || e?.code === '23505' || e?.code === 'ER_DUP_ENTRY' || e?.errno === 1062;
}
