// A pass-through stream that counts bytes, computes md5 + sha512 and enforces a byte limit.
import { createHash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { OverQuota } from '../../core/errors.js';
import type { StoreLimits } from './types.js';

export class HashingCounter extends Transform {
  size = 0;
  private readonly md5 = createHash('md5');
  private readonly sha512 = createHash('sha512');

  constructor(private readonly limits: StoreLimits = {}) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.size += chunk.length;
    if (this.limits.maxBytes !== undefined && this.size > this.limits.maxBytes) {
      callback(this.limits.onLimit?.() ?? new OverQuota(`The image data exceeds the limit of ${this.limits.maxBytes} bytes.`));
      return;
    }
    this.md5.update(chunk);
    this.sha512.update(chunk);
    callback(null, chunk);
  }

  digests(): { checksum: string; sha512: string } {
    return { checksum: this.md5.digest('hex'), sha512: this.sha512.digest('hex') };
  }
}
