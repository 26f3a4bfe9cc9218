// The image service's storage on every engine: records, tags, members, visibility, quotas
// and the status machine must behave the same on SQLite, PostgreSQL and MariaDB.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { openDatabase, migrateService } from '../db/index.js';
import { testEngines } from '../db/testing.js';
import { Conflict, Forbidden, NotFound, OverQuota } from '../core/errors.js';
import { createLogger, setLogLevel } from '../core/log.js';
import { imageMigrations } from './db/migrations.js';
import { ImageService } from './service.js';
import { FileStore } from './stores/file.js';

setLogLevel('silent');
const sort = [{ key: 'name', dir: 'asc' as const }];

for (const engine of testEngines()) {
  describe(`image storage on ${engine.engine}`, { skip: engine.skip }, () => {
    it('stores images, tags, members and data state; enforces visibility and quotas', async () => {
      const target = await engine.create();
      const database = await openDatabase(target.connection);
      const dir = mkdtempSync(join(tmpdir(), 'nubo-image-engine-'));
      try {
        await migrateService(database, 'image', imageMigrations);
        assert.deepEqual(await migrateService(database, 'image', imageMigrations), [], 'a second run applies nothing');
        const images = new ImageService({
          database, store: new FileStore(join(dir, 'images')), staging: new FileStore(join(dir, 'staging')),
          quotas: { imageCountTotal: 3, imageSizeTotalBytes: 10 }, logger: createLogger('test'),
        });
        const alice = { projectId: 'p-alice', isAdmin: false };
        const bob = { projectId: 'p-bob', isAdmin: false };
        const admin = { projectId: 'p-admin', isAdmin: true };

        const a = await images.createImage(alice, { name: 'a', disk_format: 'raw', container_format: 'bare', tags: ['x', 'y'], os_distro: 'debian' });
        const b = await images.createImage(alice, { name: 'b', visibility: 'private' });
        await assert.rejects(images.createImage(alice, { id: a.id }), Conflict);
        assert.deepEqual((await images.getImage(alice, a.id)).tags, ['x', 'y']);
        assert.equal((await images.getImage(alice, a.id)).properties.os_distro, 'debian');

        await images.updateImage(alice, a.id, [{ op: 'replace', name: 'tags', value: ['z'] }, { op: 'add', name: 'hw', value: 'v' }], { publicize: false, communitize: true });
        const updated = await images.getImage(alice, a.id);
        assert.deepEqual(updated.tags, ['z']);
        assert.equal(updated.properties.hw, 'v');

        await assert.rejects(images.getImage(bob, a.id), NotFound);
        await images.addMember(alice, a.id, 'p-bob');
        await assert.rejects(images.addMember(alice, a.id, 'p-bob'), Conflict);
        assert.equal((await images.getImage(bob, a.id)).id, a.id, 'a pending member can read it');
        assert.deepEqual((await images.listImages(bob, { sort })).map((i) => i.name), []);
        await images.updateMember(bob, a.id, 'p-bob', 'accepted');
        assert.deepEqual((await images.listImages(bob, { sort })).map((i) => i.name), ['a']);
        assert.deepEqual((await images.listImages(admin, { sort })).map((i) => i.name), ['a', 'b']);

        await images.upload(alice, a.id, Readable.from([Buffer.from('12345678')]));
        const active = await images.getImage(alice, a.id);
        assert.equal(active.status, 'active');
        assert.equal(active.size, 8);
        assert.equal(active.checksum, '25d55ad283aa400af464c76d713c07ad');
        // 8 of 10 bytes used: 3 more are refused.
        await images.updateImage(alice, b.id, [{ op: 'replace', name: 'disk_format', value: 'raw' }, { op: 'replace', name: 'container_format', value: 'bare' }], { publicize: false, communitize: true });
        await assert.rejects(images.upload(alice, b.id, Readable.from([Buffer.from('abc')])), OverQuota);
        assert.equal((await images.getImage(alice, b.id)).status, 'killed');

        await images.createImage(alice, { name: 'c' });
        await assert.rejects(images.createImage(alice, { name: 'd' }), OverQuota);

        await images.updateImage(alice, a.id, [{ op: 'replace', name: 'protected', value: true }], { publicize: false, communitize: true });
        await assert.rejects(images.deleteImage(alice, a.id), Forbidden);
        await images.updateImage(alice, a.id, [{ op: 'replace', name: 'protected', value: false }], { publicize: false, communitize: true });
        await images.deleteImage(alice, a.id);
        await assert.rejects(images.getImage(admin, a.id), NotFound);
        await assert.rejects(images.getMember(admin, a.id, 'p-bob'), NotFound);
      } finally {
        await database.close();
        await target.drop();
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });
}
