// Databases for tests: SQLite always; PostgreSQL and MariaDB/MySQL when
// NUBO_TEST_POSTGRES_URL / NUBO_TEST_MYSQL_URL name a server we may create databases on.
// Each test gets a fresh database of its own, dropped afterwards.
import { randomBytes } from 'node:crypto';
import { openDatabase, engineOf } from './index.js';
import { sql } from 'kysely';

export interface TestDatabase { engine: string; connection: string; drop(): Promise<void> }
export interface TestEngine { engine: string; skip?: string; create(): Promise<TestDatabase> }

export function testEngines(): TestEngine[] {
  const servers = [
    { engine: 'postgres', url: process.env.NUBO_TEST_POSTGRES_URL },
    { engine: 'mysql', url: process.env.NUBO_TEST_MYSQL_URL },
  ];
  return [
    { engine: 'sqlite', create: async () => ({ engine: 'sqlite', connection: 'sqlite://:memory:', drop: async () => undefined }) },
    ...servers.map(({ engine, url }) => ({
      engine,
      skip: url ? undefined : `set NUBO_TEST_${engine.toUpperCase()}_URL to run on ${engine}`,
      create: () => createServerDatabase(url!),
    })),
  ];
}

async function createServerDatabase(serverUrl: string): Promise<TestDatabase> {
  const name = `nubo_test_${randomBytes(6).toString('hex')}`;
  const admin = await openDatabase(serverUrl);
  await sql.raw(`CREATE DATABASE ${name}`).execute(admin.db);
  await admin.close();
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  return {
    engine: engineOf(serverUrl),
    connection: url.toString(),
    drop: async () => {
      const again = await openDatabase(serverUrl);
      const force = engineOf(serverUrl) === 'postgres' ? ' WITH (FORCE)' : '';
      await sql.raw(`DROP DATABASE IF EXISTS ${name}${force}`).execute(again.db);
      await again.close();
    },
  };
}
