// The per-host image cache (Nova's _base directory): each image is fetched once from the
// conductor (readImageChunk over the bus), checked against the Image service's os_hash_value
// (else its MD5 checksum), and kept as <cache>/<image id>.<format>. Instance disks are qcow2
// overlays on these files, so a cached image is never written to. Formats QEMU cannot use as a
// backing file directly are converted to qcow2 once.
import { createHash } from 'node:crypto';
import { mkdir, open, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { BadRequest, Conflict } from '../../../core/errors.js';
import type { ConductorRpc } from '../../rpc.js';
import { IMAGE_CHUNK_BYTES } from '../../conductor/image-data.js';
import { qemuImg, qemuImgInfo } from './disks.js';

/** Bytes per readImageChunk call. */

/** Glance disk formats whose bytes QEMU can back an overlay with as they are (format name for -F). */
const DIRECT_FORMATS: Record<string, string> = { qcow2: 'qcow2', raw: 'raw' };
/** Formats converted to qcow2 before use (qemu-img's name for them). */
const CONVERTED_FORMATS: Record<string, string> = { vmdk: 'vmdk', vhd: 'vpc', vhdx: 'vhdx', vdi: 'vdi', ploop: 'parallels' };

export interface CachedImage {
  path: string;
  /** qemu's format name of `path` ('qcow2' or 'raw'). */
  format: string;
  virtualSize: number;
}

const SAFE_ID = /^[A-Za-z0-9._-]+$/;

export class ImageCache {
  private readonly inFlight = new Map<string, Promise<CachedImage>>();

  constructor(readonly directory: string, private readonly conductor: Pick<ConductorRpc, 'readImageChunk'>) {}

  /** The cached copy of the image, fetched and checked first when this host does not have it. */
  get(imageId: string): Promise<CachedImage> {
    if (!SAFE_ID.test(imageId)) return Promise.reject(new BadRequest(`invalid image id ${JSON.stringify(imageId)}`));
    let entry = this.inFlight.get(imageId);
    if (!entry) {
      entry = this.fetch(imageId).finally(() => this.inFlight.delete(imageId));
      this.inFlight.set(imageId, entry);
    }
    return entry;
  }

  private async cached(imageId: string): Promise<CachedImage | null> {
    for (const format of ['qcow2', 'raw']) {
      const path = join(this.directory, `${imageId}.${format}`);
      const found = await stat(path).catch(() => null);
      if (!found) continue;
      const info = await qemuImgInfo(path, format);
      return { path, format, virtualSize: info['virtual-size'] };
    }
    return null;
  }

  private async fetch(imageId: string): Promise<CachedImage> {
    const existing = await this.cached(imageId);
    if (existing) return existing;
    await mkdir(this.directory, { recursive: true });
    // Another process sharing this directory may fetch the same image: each writes its own temp file and renames.
    const partial = join(this.directory, `.${imageId}.${process.pid}.${Date.now()}.part`);
    try {
      const first = await this.conductor.readImageChunk({ imageId, offset: 0, length: IMAGE_CHUNK_BYTES });
      const { image } = first;
      const diskFormat = image.diskFormat ?? 'raw';
      const direct = DIRECT_FORMATS[diskFormat];
      const converted = CONVERTED_FORMATS[diskFormat];
      if (!direct && !converted) throw new BadRequest(`Image ${imageId} has disk_format ${diskFormat}, which the QEMU driver cannot boot from`);
      const algo = image.osHashValue && image.osHashAlgo ? image.osHashAlgo : null;
      const hash = algo ? createHash(algo) : null;
      const md5 = createHash('md5');
      const file = await open(partial, 'w', 0o644);
      let written = 0;
      try {
        let chunk = first;
        for (;;) {
          const data = Buffer.from(chunk.data, 'base64');
          if (data.length > 0) {
            await file.write(data, 0, data.length, written);
            hash?.update(data);
            md5.update(data);
            written += data.length;
          }
          if (data.length === 0 || written >= image.size) break;
          chunk = await this.conductor.readImageChunk({ imageId, offset: written, length: IMAGE_CHUNK_BYTES });
        }
      } finally {
        await file.close();
      }
      if (written !== image.size) throw new Conflict(`Image ${imageId}: fetched ${written} bytes, the Image service says ${image.size}`);
      if (hash && hash.digest('hex') !== image.osHashValue) throw new Conflict(`Image ${imageId}: the data does not match its ${algo} os_hash_value`);
      if (!hash && image.checksum && md5.digest('hex') !== image.checksum) throw new Conflict(`Image ${imageId}: the data does not match its checksum`);

      const info = await qemuImgInfo(partial, direct ?? converted);
      // A backing file named inside an image would let it read any file on this host.
      if (info['backing-filename']) throw new BadRequest(`Image ${imageId} names a backing file; refusing it`);
      let format = direct;
      if (!direct) {
        const convertedPath = `${partial}.qcow2`;
        await qemuImg(['convert', '-f', converted, '-O', 'qcow2', partial, convertedPath]);
        await rm(partial, { force: true });
        await rename(convertedPath, partial);
        format = 'qcow2';
      }
      const path = join(this.directory, `${imageId}.${format}`);
      await rename(partial, path);
      return { path, format, virtualSize: info['virtual-size'] };
    } catch (err) {
      await rm(partial, { force: true });
      await rm(`${partial}.qcow2`, { force: true });
      throw err;
    }
  }
}
