// Image data for compute agents (Nova's compute downloads images from Glance; our agents reach
// only the bus): the conductor reads a byte range of an active image from the Image service and
// answers it base64-encoded. An agent fetches an image chunk by chunk into its image cache and
// checks the whole against the image's os_hash_value / checksum.
import { BadRequest, Conflict } from '../../core/errors.js';
import type { ImageService } from '../../image/service.js';

/** The most one call may ask for (keeps bus messages moderate). */
export const MAX_IMAGE_CHUNK_BYTES = 8 * 1024 * 1024;
/** What readers ask for per call: image data to an agent's cache, snapshot data to the conductor. */
export const IMAGE_CHUNK_BYTES = 4 * 1024 * 1024;

/** Throws 400 unless `offset` >= 0 and `length` in 1..MAX_IMAGE_CHUNK_BYTES (image and snapshot chunks alike). */
export function checkChunk(method: string, offset: unknown, length: unknown): void {
  if (!Number.isInteger(offset) || (offset as number) < 0 || !Number.isInteger(length) || (length as number) <= 0 || (length as number) > MAX_IMAGE_CHUNK_BYTES) {
    throw new BadRequest(`${method} needs an offset >= 0 and a length in 1..${MAX_IMAGE_CHUNK_BYTES}`);
  }
}

export interface ImageDataChunk {
  /** The image's size, format and hashes, as the Image service has them now. */
  image: { id: string; size: number; diskFormat: string | null; containerFormat: string | null; checksum: string | null; osHashAlgo: string | null; osHashValue: string | null };
  /** Base64 of bytes [offset, offset + length) (shorter at the end of the image). */
  data: string;
}

export interface ImageDataHandlers {
  readImageChunk(args: { imageId: string; offset: number; length: number }): Promise<ImageDataChunk>;
}

export function imageDataHandlers(images: ImageService): ImageDataHandlers {
  return {
    readImageChunk: async (args) => {
      const { imageId, offset, length } = args ?? ({} as any);
      if (typeof imageId !== 'string') throw new BadRequest('readImageChunk needs an imageId');
      checkChunk('readImageChunk', offset, length);
      const image = await images.getImage({ isAdmin: true }, imageId);
      if (image.status !== 'active' || image.size === null) throw new Conflict(`Image ${imageId} is not active (status ${image.status})`);
      const info = { id: image.id, size: image.size, diskFormat: image.disk_format, containerFormat: image.container_format, checksum: image.checksum, osHashAlgo: image.os_hash_algo, osHashValue: image.os_hash_value };
      if (offset >= image.size) return { image: info, data: '' };
      const end = Math.min(image.size, offset + length) - 1;
      const { stream } = await images.download({ isAdmin: true }, imageId, { start: offset, end });
      const parts: Buffer[] = [];
      for await (const part of stream) parts.push(Buffer.isBuffer(part) ? part : Buffer.from(part));
      return { image: info, data: Buffer.concat(parts).toString('base64') };
    },
  };
}
