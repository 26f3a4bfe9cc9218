// The contract every image store honours, as one suite run against each store driver.
// An object-store or S3 store joins `stores` below and must pass the same tests.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { text } from 'node:stream/consumers';
import { OverQuota } from '../../core/errors.js';
import { FileStore } from './file.js';
import type { ImageStore } from './types.js';

const dirs: string[] = [];
after(() => { for (const dir of dirs) rmSync(dir, { recursive: true, force: true }); });

const stores: { name: string; create(): ImageStore; leftovers(): string[] }[] = [
  (() => {
    const dir = mkdtempSync(join(tmpdir(), 'nubo-file-store-'));
    dirs.push(dir);
    return { name: 'file', create: () => new FileStore(dir), leftovers: () => readdirSync(dir) };
  })(),
];

async function bytes(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

function chunked(data: Buffer, size = 64 * 1024): Readable {
  return Readable.from((function* () { for (let i = 0; i < data.length; i += size) yield data.subarray(i, i + size); })());
}

for (const s of stores) {
  describe(`image store contract: ${s.name}`, () => {
    const store = s.create();

    it('adds a stream and reports location, size, md5 and sha512', async () => {
      const data = randomBytes(300 * 1024 + 3);
      const stored = await store.add('img-1', chunked(data));
      assert.equal(stored.size, data.length);
      assert.equal(stored.checksum, createHash('md5').update(data).digest('hex'));
      assert.equal(stored.hashes.sha512, createHash('sha512').update(data).digest('hex'));
      assert.ok(stored.location.length > 0);
      assert.ok((await bytes(await store.get('img-1'))).equals(data));
      assert.ok((await bytes(await store.get('img-1', { start: 5, end: 9 }))).equals(data.subarray(5, 10)));
    });

    it('replaces data added again under the same id', async () => {
      await store.add('img-2', Readable.from([Buffer.from('first')]));
      await store.add('img-2', Readable.from([Buffer.from('second')]));
      assert.equal(await text(await store.get('img-2')), 'second');
    });

    it('keeps nothing when the stream fails or the limit is exceeded', async () => {
      const failing = new Readable({ read() {} });
      failing.push(randomBytes(1000));
      setTimeout(() => failing.destroy(new Error('client went away')), 10);
      await assert.rejects(store.add('img-3', failing), /client went away/);
      await assert.rejects(store.add('img-3', chunked(randomBytes(5000), 1000), { maxBytes: 4096 }), OverQuota);
      await assert.rejects(store.add('img-3', chunked(randomBytes(5000), 1000), { maxBytes: 10, onLimit: () => new Error('custom limit') }), /custom limit/);
      await assert.rejects(store.get('img-3'), /No image data/);
      assert.ok(!s.leftovers().some((f) => f.includes('img-3')));
    });

    it('deletes, and deleting again succeeds', async () => {
      await store.add('img-4', Readable.from([Buffer.from('x')]));
      await store.delete('img-4');
      await store.delete('img-4');
      await assert.rejects(store.get('img-4'), /No image data/);
    });

    it('refuses ids that could escape its namespace', async () => {
      await assert.rejects(store.get('../etc/passwd'));
      await assert.rejects(store.add('../escape', Readable.from([Buffer.from('x')])));
    });
  });
}
