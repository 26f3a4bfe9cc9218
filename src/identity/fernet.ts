// Fernet tokens (https://github.com/fernet/spec) and a Keystone-compatible key repository.
//
// Token layout, base64url-encoded:
//   0x80 | timestamp (8 bytes, big-endian seconds) | IV (16) | AES-128-CBC ciphertext (PKCS7) | HMAC-SHA256 (32)
// The HMAC covers everything before it. Like Keystone, tokens are handed out without '='
// padding and accepted with or without it.

import { createCipheriv, createDecipheriv, createHmac, createSecretKey, randomBytes, timingSafeEqual, type KeyObject } from 'node:crypto';
import { closeSync, fchmodSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';

const VERSION = 0x80;
const HEADER = 1 + 8 + 16; // version, timestamp, IV
const MAC = 32;
const BLOCK = 16;
const MIN_TOKEN_BYTES = HEADER + BLOCK + MAC; // PKCS7 always yields at least one block
const MAX_TOKEN_CHARS = 8192; // refuse to spend work on absurd input
/** Tokens stamped further than this in the future are refused when a TTL is checked (as in `cryptography`). */
const MAX_CLOCK_SKEW_SECONDS = 60;
/** How often keys() may stat the repository directory. */
const RECHECK_MS = 1000;

const B64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
const TOKEN_RE = /^[A-Za-z0-9_-]+={0,2}$/;
const KEY_RE = /^[A-Za-z0-9_-]{43}=?$/;
const KEY_FILE_RE = /^\d+$/;

/** Any token that fails to decode, verify, decrypt or has expired. Deliberately carries no detail a client could use. */
export class InvalidToken extends Error {
  constructor(message = 'invalid token') {
    super(message);
    this.name = 'InvalidToken';
  }
}

/** One key, with its halves already imported so the hot path does no parsing. */
export interface FernetKey {
  /** File number in the repository (0 = staged); -1 for keys not read from a repository. */
  readonly id: number;
  /** The key as written on disk: 32 bytes, base64url with padding (44 chars). */
  readonly secret: string;
  readonly signing: KeyObject;
  readonly encryption: KeyObject;
}

/** Where Fernet gets its keys: primary (used to encrypt) first, then the others. */
export interface FernetKeySource {
  keys(): readonly FernetKey[];
}

/** A fresh random key in the format `cryptography`'s Fernet.generate_key() and keystone-manage write. */
export function generateKey(): string {
  return randomBytes(32).toString('base64url') + '=';
}

/** Parses a 44-char base64url key: first 16 bytes sign, last 16 encrypt. */
export function parseKey(secret: string, id = -1): FernetKey {
  const text = secret.trim();
  if (!KEY_RE.test(text)) throw new Error('a Fernet key must be 32 bytes encoded as url-safe base64');
  const raw = Buffer.from(text, 'base64url');
  return { id, secret: text, signing: createSecretKey(raw.subarray(0, 16)), encryption: createSecretKey(raw.subarray(16, 32)) };
}

/**
 * Builds a token with an explicit timestamp and IV. Internal: only the spec's known-answer
 * test needs a fixed IV; everything else goes through Fernet.encrypt().
 */
export function encryptWithIv(key: FernetKey, payload: Buffer, timestampSeconds: number, iv: Buffer): string {
  const cipher = createCipheriv('aes-128-cbc', key.encryption, iv);
  const ciphertext = Buffer.concat([cipher.update(payload), cipher.final()]);
  const macAt = HEADER + ciphertext.length;
  const out = Buffer.allocUnsafe(macAt + MAC);
  out[0] = VERSION;
  out.writeBigUInt64BE(BigInt(timestampSeconds), 1);
  iv.copy(out, 9);
  ciphertext.copy(out, HEADER);
  createHmac('sha256', key.signing).update(out.subarray(0, macAt)).digest().copy(out, macAt);
  return out.toString('base64url'); // unpadded, as Keystone hands tokens out
}

/** base64url-decodes a token strictly; Buffer.from alone silently skips bad characters. */
function decodeToken(token: string): Buffer {
  if (typeof token !== 'string' || token.length > MAX_TOKEN_CHARS || !TOKEN_RE.test(token)) throw new InvalidToken('malformed token');
  const end = token.indexOf('=');
  const body = end < 0 ? token : token.slice(0, end);
  // Reject encodings whose unused trailing bits are set, so each token has exactly one spelling.
  const rest = body.length % 4;
  if (rest === 1) throw new InvalidToken('malformed token');
  if (rest !== 0) {
    const value = B64URL.indexOf(body[body.length - 1]!);
    if ((value & (rest === 2 ? 0x0f : 0x03)) !== 0) throw new InvalidToken('malformed token');
  }
  const data = Buffer.from(body, 'base64url');
  if (data.length < MIN_TOKEN_BYTES || (data.length - HEADER - MAC) % BLOCK !== 0 || data[0] !== VERSION) {
    throw new InvalidToken('malformed token');
  }
  return data;
}

export class Fernet {
  constructor(private readonly repo: FernetKeySource) {}

  /** Encrypts with the primary key. */
  encrypt(payload: Buffer, now: Date = new Date()): string {
    const primary = this.repo.keys()[0];
    if (!primary) throw new Error('no Fernet keys available (run setup on the key repository)');
    return encryptWithIv(primary, payload, Math.floor(now.getTime() / 1000), randomBytes(16));
  }

  /** Verifies and decrypts with whichever key signed the token; throws InvalidToken on any failure. */
  decrypt(token: string, ttlSeconds?: number, now: Date = new Date()): Buffer {
    const data = decodeToken(token);
    if (ttlSeconds !== undefined) {
      // Checked before the HMAC, as the spec orders it: expired tokens are cheap to refuse.
      const issued = Number(data.readBigUInt64BE(1));
      const current = Math.floor(now.getTime() / 1000);
      if (issued + ttlSeconds < current) throw new InvalidToken('token expired');
      if (current + MAX_CLOCK_SKEW_SECONDS < issued) throw new InvalidToken('token timestamp is in the future');
    }
    const macAt = data.length - MAC;
    const signed = data.subarray(0, macAt);
    const mac = data.subarray(macAt);
    for (const key of this.repo.keys()) {
      const expected = createHmac('sha256', key.signing).update(signed).digest();
      if (!timingSafeEqual(expected, mac)) continue;
      try {
        const decipher = createDecipheriv('aes-128-cbc', key.encryption, data.subarray(1 + 8, HEADER));
        return Buffer.concat([decipher.update(data.subarray(HEADER, macAt)), decipher.final()]);
      } catch {
        throw new InvalidToken('token does not decrypt'); // bad PKCS7 padding
      }
    }
    throw new InvalidToken('token not signed by any known key');
  }
}

/**
 * A directory of key files laid out as keystone-manage fernet_setup / fernet_rotate do:
 * `0` is the staged key (next primary), the highest number is the primary, the rest are
 * secondary keys still accepted for decryption. Keystone can share the same directory.
 */
export class FernetKeyRepository implements FernetKeySource {
  private cache: FernetKey[] | undefined;
  private checkedAt = 0;
  private mtimeMs = NaN;
  private racy = false;

  constructor(readonly dir: string, readonly maxActiveKeys = 3) {
    // Keystone needs room for the staged, primary and at least zero secondaries.
    if (!Number.isInteger(maxActiveKeys) || maxActiveKeys < 2) throw new Error('maxActiveKeys must be an integer >= 2');
  }

  /** Creates the directory with keys 0 and 1 unless it already holds keys. Never overwrites. */
  setup(): void {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    if (this.keyFiles().size > 0) return;
    this.writeStagedKey();
    this.rotate(); // 0 becomes 1, a new 0 is staged — exactly Keystone's initialize_key_repository
  }

  /** Promotes the staged key to primary, stages a new key and purges the oldest secondaries. */
  rotate(): void {
    const files = this.keyFiles();
    if (!files.has(0)) throw new Error(`no staged key "0" in ${this.dir} (run setup first)`);
    const newPrimary = Math.max(...files.keys()) + 1;
    renameSync(join(this.dir, '0'), join(this.dir, String(newPrimary)));
    files.delete(0);
    files.add(newPrimary);
    this.writeStagedKey();
    // Keystone's purge: the new staged key is not in `files`, so keep maxActiveKeys - 1 of them.
    const numbers = [...files].sort((a, b) => b - a);
    while (numbers.length > this.maxActiveKeys - 1) unlinkSync(join(this.dir, String(numbers.pop())));
    this.cache = undefined;
  }

  /** Keys with the primary first, then the other secondaries newest first, the staged key last. */
  keys(): readonly FernetKey[] {
    const now = Date.now();
    if (this.cache && now - this.checkedAt < RECHECK_MS) return this.cache;
    this.checkedAt = now;
    let mtimeMs: number;
    try {
      mtimeMs = statSync(this.dir).mtimeMs;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      return (this.cache = []);
    }
    if (!this.cache || this.racy || mtimeMs !== this.mtimeMs) {
      this.cache = this.load();
      this.mtimeMs = mtimeMs;
      // A change within the same timestamp tick as the one we saw would not move mtime;
      // keep re-reading until the directory has been quiet for a while (git's "racy" rule).
      this.racy = now - mtimeMs < RECHECK_MS;
    }
    return this.cache;
  }

  private keyFiles(): Set<number> {
    let names: string[];
    try {
      names = readdirSync(this.dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return new Set();
      throw err;
    }
    return new Set(names.filter((n) => KEY_FILE_RE.test(n)).map(Number));
  }

  private load(): FernetKey[] {
    const keys: FernetKey[] = [];
    for (const id of this.keyFiles()) {
      let text: string;
      try {
        text = readFileSync(join(this.dir, String(id)), 'utf8');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue; // purged by a concurrent rotation
        throw err;
      }
      try {
        keys.push(parseKey(text, id));
      } catch {
        throw new Error(`invalid Fernet key in ${join(this.dir, String(id))}`);
      }
    }
    // Highest number is primary; 0 (staged) sorts last, as in Keystone's load_keys.
    return keys.sort((a, b) => b.id - a.id);
  }

  /** Writes a new key 0 atomically: readers see either no file or a complete one. */
  private writeStagedKey(): void {
    const tmp = join(this.dir, `0.tmp.${process.pid}`);
    const fd = openSync(tmp, 'w', 0o600);
    try {
      fchmodSync(fd, 0o600); // in case a stale temp file had looser permissions
      writeSync(fd, generateKey());
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, join(this.dir, '0'));
  }
}
