// The file store: one file per image under a directory (DATA_DIR/images by default).
// Data is written to a temporary name and renamed into place only when complete, so a
// failed or interrupted upload never leaves a partial file behind.
import { createReadStream, createWriteStream, mkdirSync } from 'node:fs';
import { rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import { NotFound } from '../../core/errors.js';
import { newUuid } from '../../core/ids.js';
import { HashingCounter } from './hashing.js';
import type { ByteRange, ImageStore, StoreLimits, StoredData } from './types.js';

const SAFE_ID = /^[A-Za-z0-9._-]+$/;

export class FileStore implements ImageStore {
  readonly id: string;
  readonly description: string;

  constructor(readonly dir: string, options: { id?: string; description?: string } = {}) {
    this.id = options.id ?? 'file';
    this.description = options.description ?? 'Local file store';
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  }

  private pathOf(imageId: string): string {
    if (!SAFE_ID.test(imageId) || imageId.startsWith('.')) throw new NotFound(`No image data for ${imageId}`);
    return join(this.dir, imageId);
  }

  localPath(imageId: string): string | undefined {
    return this.pathOf(imageId);
  }

  async add(imageId: string, data: Readable, limits?: StoreLimits): Promise<StoredData> {
    const path = this.pathOf(imageId);
    const partial = join(this.dir, `.partial-${imageId}-${newUuid()}`);
    const counter = new HashingCounter(limits);
    try {
      await pipeline(data, counter, createWriteStream(partial, { flags: 'wx', mode: 0o600 }));
      await rename(partial, path);
    } catch (err) {
      await rm(partial, { force: true });
      // A stream that failed on its own may still hold the socket open; stop reading it.
      data.destroy();
      throw err;
    }
    const { checksum, sha512 } = counter.digests();
    return { location: pathToFileURL(path).toString(), size: counter.size, checksum, hashes: { sha512 } };
  }

  async get(imageId: string, range?: ByteRange): Promise<Readable> {
    const path = this.pathOf(imageId);
    try {
      await stat(path);
    } catch {
      throw new NotFound(`No image data for ${imageId}`);
    }
    return createReadStream(path, range ? { start: range.start, end: range.end } : {});
  }

  async delete(imageId: string): Promise<void> {
    await rm(this.pathOf(imageId), { force: true });
  }
}
