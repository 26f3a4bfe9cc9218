// Compact binary form of what a Fernet token carries, so tokens stay as short as Keystone's.
//
// Version 1 layout:
//   version (1) | flags (1) | methods mask (1) [| count (1) | unknown method strings]
//   | user id | [scope id] | expiresAt ms (6, big-endian) | issuedAt ms (6) | audit id [| audit chain id] | [app cred id]
// flags: bits 0-1 scope kind, bit 2 app credential present, bit 3 two audit ids; others must be 0.
// Each id starts with a tag byte: 0 = 16 raw bytes (32-hex id, or 22-char base64url audit id),
// 1 = length byte + UTF-8 string for anything that does not pack.

import { randomBytes } from 'node:crypto';
import { InvalidToken } from './fernet.js';

export type TokenScope =
  | { kind: 'unscoped' }
  | { kind: 'project'; id: string }
  | { kind: 'domain'; id: string }
  | { kind: 'system' };

export interface TokenPayload {
  userId: string;
  methods: string[];
  scope: TokenScope;
  /** Millisecond precision. */
  expiresAt: Date;
  /** Millisecond precision: revocation events compare against it, and a second is too coarse
   *  (a token issued just after a password change would count as revoked). */
  issuedAt: Date;
  /** The token's own audit id, then the audit chain id when the token was rescoped. */
  auditIds: string[];
  appCredId?: string;
}

const VERSION = 1;
const SCOPE_KINDS = ['unscoped', 'project', 'domain', 'system'] as const;
const FLAG_APP_CRED = 0x04;
const FLAG_TWO_AUDIT_IDS = 0x08;
const FLAGS_KNOWN = 0x0f;

// Bit values follow Keystone's default [auth] methods order (1, 2, 4, ...), with totp after them.
// Decoding yields methods in this order — the list is a set, as in Keystone.
const KNOWN_METHODS = ['external', 'password', 'token', 'oauth1', 'mapped', 'application_credential', 'totp'] as const;
const UNKNOWN_METHODS_FOLLOW = 0x80;

const TAG_PACKED = 0;
const TAG_STRING = 1;
const HEX_ID_RE = /^[0-9a-f]{32}$/;
const AUDIT_ID_RE = /^[A-Za-z0-9_-]{22}$/;
const MAX_EXPIRES_MS = 2 ** 48 - 1;

/** A Keystone-format audit id: 16 random bytes as 22 chars of unpadded base64url. */
export function newAuditId(): string {
  return randomBytes(16).toString('base64url');
}

type IdForm = 'hex' | 'audit';

/** Returns the 16 bytes an id packs to, or undefined when it must travel as a string (it would not round-trip). */
function packId(id: string, form: IdForm): Buffer | undefined {
  if (form === 'hex') return HEX_ID_RE.test(id) ? Buffer.from(id, 'hex') : undefined;
  if (!AUDIT_ID_RE.test(id)) return undefined;
  const raw = Buffer.from(id, 'base64url');
  return raw.toString('base64url') === id ? raw : undefined; // non-zero trailing bits would not round-trip
}

function stringBytes(value: string, what: string): Buffer {
  const raw = Buffer.from(value, 'utf8');
  if (raw.length > 255) throw new RangeError(`${what} is longer than 255 bytes`);
  return raw;
}

export function encodePayload(p: TokenPayload): Buffer {
  const parts: Buffer[] = [];
  const byte = (b: number) => parts.push(Buffer.of(b));
  const str = (value: string, what: string) => {
    const raw = stringBytes(value, what);
    parts.push(Buffer.of(raw.length), raw);
  };
  const id = (value: string, form: IdForm, what: string) => {
    const packed = packId(value, form);
    if (packed) parts.push(Buffer.of(TAG_PACKED), packed);
    else { byte(TAG_STRING); str(value, what); }
  };

  const kind = SCOPE_KINDS.indexOf(p.scope.kind);
  if (kind < 0) throw new TypeError(`unknown scope kind ${String(p.scope.kind)}`);
  if (p.auditIds.length < 1 || p.auditIds.length > 2) throw new RangeError('a token carries one or two audit ids');
  const expires = p.expiresAt.getTime();
  if (!Number.isInteger(expires) || expires < 0 || expires > MAX_EXPIRES_MS) throw new RangeError('expiresAt is out of range');
  const issued = p.issuedAt.getTime();
  if (!Number.isInteger(issued) || issued < 0 || issued > MAX_EXPIRES_MS) throw new RangeError('issuedAt is out of range');

  byte(VERSION);
  byte(kind | (p.appCredId !== undefined ? FLAG_APP_CRED : 0) | (p.auditIds.length === 2 ? FLAG_TWO_AUDIT_IDS : 0));

  let mask = 0;
  const unknown: string[] = [];
  for (const m of p.methods) {
    const bit = (KNOWN_METHODS as readonly string[]).indexOf(m);
    if (bit >= 0) mask |= 1 << bit;
    else if (!unknown.includes(m)) unknown.push(m);
  }
  if (unknown.length > 255) throw new RangeError('too many authentication methods');
  byte(mask | (unknown.length > 0 ? UNKNOWN_METHODS_FOLLOW : 0));
  if (unknown.length > 0) {
    byte(unknown.length);
    for (const m of unknown) str(m, 'method name');
  }

  id(p.userId, 'hex', 'user id');
  if (p.scope.kind === 'project' || p.scope.kind === 'domain') id(p.scope.id, 'hex', 'scope id');
  const time = Buffer.alloc(12);
  time.writeUIntBE(expires, 0, 6);
  time.writeUIntBE(issued, 6, 6);
  parts.push(time);
  for (const a of p.auditIds) id(a, 'audit', 'audit id');
  if (p.appCredId !== undefined) id(p.appCredId, 'hex', 'application credential id');
  return Buffer.concat(parts);
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Bounds-checked reads: anything short or odd is an InvalidToken, never a RangeError. */
class Reader {
  private at = 0;
  constructor(private readonly buf: Buffer) {}

  private take(n: number): Buffer {
    if (this.at + n > this.buf.length) throw new InvalidToken('truncated token payload');
    const out = this.buf.subarray(this.at, this.at + n);
    this.at += n;
    return out;
  }
  byte(): number {
    return this.take(1)[0]!;
  }
  uint48(): number {
    return this.take(6).readUIntBE(0, 6);
  }
  str(): string {
    try {
      return utf8.decode(this.take(this.byte()));
    } catch (err) {
      if (err instanceof InvalidToken) throw err;
      throw new InvalidToken('malformed token payload');
    }
  }
  id(form: IdForm): string {
    const tag = this.byte();
    if (tag === TAG_PACKED) return this.take(16).toString(form === 'hex' ? 'hex' : 'base64url');
    if (tag === TAG_STRING) return this.str();
    throw new InvalidToken('malformed token payload');
  }
  end(): void {
    if (this.at !== this.buf.length) throw new InvalidToken('trailing bytes in token payload');
  }
}

export function decodePayload(b: Buffer): TokenPayload {
  const r = new Reader(b);
  const version = r.byte();
  if (version !== VERSION) throw new InvalidToken(`unsupported token payload version ${version}`);
  const flags = r.byte();
  if ((flags & ~FLAGS_KNOWN) !== 0) throw new InvalidToken('malformed token payload');

  const mask = r.byte();
  const methods = KNOWN_METHODS.filter((_, bit) => (mask & (1 << bit)) !== 0) as string[];
  if ((mask & UNKNOWN_METHODS_FOLLOW) !== 0) {
    for (let n = r.byte(); n > 0; n--) methods.push(r.str());
  }

  const userId = r.id('hex');
  const kind = SCOPE_KINDS[flags & 0x03]!;
  const scope: TokenScope = kind === 'project' || kind === 'domain' ? { kind, id: r.id('hex') } : { kind };
  const expiresAt = new Date(r.uint48());
  const issuedAt = new Date(r.uint48());
  const auditIds = [r.id('audit')];
  if ((flags & FLAG_TWO_AUDIT_IDS) !== 0) auditIds.push(r.id('audit'));
  const payload: TokenPayload = { userId, methods, scope, expiresAt, issuedAt, auditIds };
  if ((flags & FLAG_APP_CRED) !== 0) payload.appCredId = r.id('hex');
  r.end();
  return payload;
}
