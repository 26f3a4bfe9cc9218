// The contract every image store implements (file today; object-store and S3 later).
// A store keeps image bytes under the image id; the service keeps the metadata.
import type { Readable } from 'node:stream';

export interface StoreLimits {
  /** Stop reading and fail once more than this many bytes arrived (quota or size cap). */
  maxBytes?: number;
  /** The error to throw when maxBytes is exceeded (default: a 413 OverQuota). */
  onLimit?: () => Error;
}

export interface StoredData {
  /** The store's location string for the data (e.g. file:///…/images/<id>). */
  location: string;
  size: number;
  /** md5 of the data, hex — Glance's `checksum`. */
  checksum: string;
  /** Multihash values computed while streaming, hex, keyed by algorithm (`sha512`). */
  hashes: { sha512: string };
}

export interface ByteRange {
  /** First byte, inclusive. */
  start: number;
  /** Last byte, inclusive. */
  end: number;
}

export interface ImageStore {
  /** Store id as /v2/info/stores lists it. */
  readonly id: string;
  readonly description: string;
  /**
   * Streams `data` into the store under `imageId` without holding it in memory, computing size
   * and hashes on the way. On any failure (stream error, client abort, limit exceeded) nothing
   * of the partial data remains and the promise rejects. Adding over existing data replaces it.
   */
  add(imageId: string, data: Readable, limits?: StoreLimits): Promise<StoredData>;
  /** A stream of the data (or of an inclusive byte range of it). Rejects with NotFound when absent. */
  get(imageId: string, range?: ByteRange): Promise<Readable>;
  /** Removes the data; succeeds when it is already gone. */
  delete(imageId: string): Promise<void>;
  /** A local file holding the data, when the store has one (qemu-img can inspect it in place). */
  localPath?(imageId: string): string | undefined;
}
