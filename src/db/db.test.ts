import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { Migration } from 'kysely';
import { openDatabase, migrateService, transaction, isUniqueViolation, engineOf } from './index.js';
import { testEngines } from './testing.js';

const migrations: Record<string, Migration> = {
  '0001_things': {
    up: async (db) => {
      await db.schema.createTable('test_things')
        .addColumn('id', 'varchar(64)', (c) => c.primaryKey())
        .addColumn('name', 'varchar(255)', (c) => c.notNull().unique())
        .addColumn('enabled', 'integer', (c) => c.notNull().defaultTo(1))
        .execute();
    },
  },
  '0002_extra': {
    up: async (db) => { await db.schema.alterTable('test_things').addColumn('extra', 'text').execute(); },
  },
};

describe('engineOf', () => {
  it('recognises the three engines and oslo driver suffixes', () => {
    assert.equal(engineOf('sqlite:///tmp/x.db'), 'sqlite');
    assert.equal(engineOf('postgresql://u@h/db'), 'postgres');
    assert.equal(engineOf('mysql+pymysql://root@h/db'), 'mysql');
    assert.throws(() => engineOf('oracle://x'), /unsupported scheme "oracle"/);
  });
});

for (const engine of testEngines()) {
  describe(`database on ${engine.engine}`, { skip: engine.skip }, () => {
    it('migrates once, detects unique violations, rolls back transactions', async () => {
      const target = await engine.create();
      const database = await openDatabase(target.connection);
      try {
        assert.deepEqual(await migrateService(database, 'test', migrations), ['0001_things', '0002_extra']);
        assert.deepEqual(await migrateService(database, 'test', migrations), [], 'second run applies nothing');

        const { db } = database;
        await db.insertInto('test_things').values({ id: 'a', name: 'one', enabled: 0, extra: '{"k":1}' }).execute();
        const row = await db.selectFrom('test_things').selectAll().where('id', '=', 'a').executeTakeFirstOrThrow();
        assert.equal(Number(row.enabled), 0);
        assert.deepEqual(JSON.parse(row.extra), { k: 1 });

        await assert.rejects(
          db.insertInto('test_things').values({ id: 'b', name: 'one' }).execute(),
          (err) => isUniqueViolation(err),
        );
        await assert.rejects(transaction(database, async (trx) => {
          await trx.insertInto('test_things').values({ id: 'c', name: 'two' }).execute();
          throw new Error('abort');
        }), /abort/);
        const count = await db.selectFrom('test_things').select((eb) => eb.fn.countAll().as('n')).executeTakeFirstOrThrow();
        assert.equal(Number(count.n), 1, 'the aborted insert is gone');
      } finally {
        await database.close();
        await target.drop();
      }
    });
  });
}
