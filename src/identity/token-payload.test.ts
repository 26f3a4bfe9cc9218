import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Fernet, InvalidToken, generateKey, parseKey } from './fernet.js';
import { decodePayload, encodePayload, newAuditId, type TokenPayload } from './token-payload.js';

const hexId = () => randomBytes(16).toString('hex');
const roundTrip = (p: TokenPayload) => decodePayload(encodePayload(p));

function typical(): TokenPayload {
  return {
    userId: hexId(),
    methods: ['password'],
    scope: { kind: 'project', id: hexId() },
    expiresAt: new Date('2031-05-06T07:08:09.123Z'),
    issuedAt: new Date('2031-05-06T06:08:09.456Z'),
    auditIds: [newAuditId()],
  };
}

describe('token payload', () => {
  it('round-trips a typical project-scoped password token in a few dozen bytes', () => {
    const p = typical();
    const raw = encodePayload(p);
    assert.deepEqual(decodePayload(raw), p);
    assert.equal(raw[0], 1, 'starts with the version byte');
    assert.ok(raw.length <= 72, `payload is ${raw.length} bytes`);
  });

  it('keeps milliseconds of the expiry', () => {
    const p = typical();
    p.expiresAt = new Date(Date.UTC(2099, 11, 31, 23, 59, 59, 999));
    assert.equal(roundTrip(p).expiresAt.toISOString(), '2099-12-31T23:59:59.999Z');
  });

  it('round-trips every scope kind', () => {
    for (const scope of [
      { kind: 'unscoped' },
      { kind: 'project', id: hexId() },
      { kind: 'domain', id: 'default' },
      { kind: 'domain', id: hexId() },
      { kind: 'system' },
    ] as const) {
      const p = { ...typical(), scope };
      assert.deepEqual(roundTrip(p), p, scope.kind);
    }
  });

  it('round-trips ids that do not pack: non-hex, upper-case hex, non-ASCII, empty', () => {
    for (const userId of ['admin', 'ldap-user@example.org', hexId().toUpperCase(), hexId() + '0', 'ünïcødé-用户', '']) {
      const p = { ...typical(), userId, scope: { kind: 'project' as const, id: userId }, appCredId: userId };
      assert.deepEqual(roundTrip(p), p, JSON.stringify(userId));
    }
  });

  it('packs 32-hex ids and canonical audit ids as 16 bytes', () => {
    const p = typical();
    const packed = encodePayload(p).length;
    const longer = encodePayload({ ...p, userId: 'a'.repeat(32).toUpperCase() }).length;
    assert.equal(longer - packed, 17, 'string form: 1 length byte + 32 chars instead of 16 bytes');
  });

  it('round-trips audit ids that are not canonical 16-byte base64url', () => {
    // 'B' has a non-zero low bit: 22 chars that decode to the same 16 bytes as '...A' would.
    const nonCanonical = 'A'.repeat(21) + 'B';
    for (const auditId of [nonCanonical, 'short', 'x'.repeat(40), 'has+slash/=']) {
      const p = { ...typical(), auditIds: [auditId] };
      assert.deepEqual(roundTrip(p), p, auditId);
    }
  });

  it('carries the audit chain id of a rescoped token', () => {
    const p = { ...typical(), methods: ['token', 'password'], auditIds: [newAuditId(), newAuditId()] };
    const back = roundTrip(p);
    assert.deepEqual(back.auditIds, p.auditIds);
    assert.deepEqual(back.methods, ['password', 'token'], 'methods are a set, in Keystone bit order');
  });

  it('packs the known methods into a bitmask and keeps unknown ones', () => {
    const all = ['external', 'password', 'token', 'oauth1', 'mapped', 'application_credential', 'totp'];
    assert.deepEqual(roundTrip({ ...typical(), methods: all }).methods, all);
    assert.deepEqual(roundTrip({ ...typical(), methods: [] }).methods, []);
    const mixed = ['password', 'x509', 'totp', 'kerberos', 'x509'];
    assert.deepEqual(roundTrip({ ...typical(), methods: mixed }).methods, ['password', 'totp', 'x509', 'kerberos']);
    assert.equal(encodePayload({ ...typical(), methods: all }).length, encodePayload(typical()).length, 'one byte for any set of known methods');
  });

  it('round-trips an application credential token', () => {
    const p = { ...typical(), methods: ['application_credential'], appCredId: hexId() };
    assert.deepEqual(roundTrip(p), p);
    assert.equal('appCredId' in roundTrip(typical()), false);
  });

  it('refuses payloads it cannot represent', () => {
    assert.throws(() => encodePayload({ ...typical(), auditIds: [] }), RangeError);
    assert.throws(() => encodePayload({ ...typical(), auditIds: [newAuditId(), newAuditId(), newAuditId()] }), RangeError);
    assert.throws(() => encodePayload({ ...typical(), userId: 'u'.repeat(256) }), RangeError);
    assert.throws(() => encodePayload({ ...typical(), expiresAt: new Date(NaN) }), RangeError);
    assert.throws(() => encodePayload({ ...typical(), scope: { kind: 'galaxy' } as unknown as TokenPayload['scope'] }), TypeError);
  });

  it('rejects unknown versions, reserved flags, truncation and trailing bytes with InvalidToken', () => {
    const raw = encodePayload({ ...typical(), methods: ['password', 'custom'], appCredId: 'cred', auditIds: [newAuditId(), 'chain'] });
    for (let n = 0; n < raw.length; n++) {
      assert.throws(() => decodePayload(raw.subarray(0, n)), InvalidToken, `truncated to ${n} bytes`);
    }
    assert.throws(() => decodePayload(Buffer.concat([raw, Buffer.of(0)])), InvalidToken);
    const edit = (at: number, value: number) => { const b = Buffer.from(raw); b[at] = value; return b; };
    assert.throws(() => decodePayload(edit(0, 2)), /version 2/);
    assert.throws(() => decodePayload(edit(0, 0x80)), InvalidToken);
    assert.throws(() => decodePayload(edit(1, raw[1]! | 0x10)), InvalidToken);
    const userTag = 2 + 1 + 1 + 1 + 'custom'.length; // version, flags, mask, count, length + name
    assert.equal(raw[userTag], 0);
    assert.throws(() => decodePayload(edit(userTag, 7)), InvalidToken, 'unknown id tag');
  });

  it('newAuditId makes 22-char url-safe ids of 16 random bytes', () => {
    const ids = new Set(Array.from({ length: 100 }, newAuditId));
    assert.equal(ids.size, 100);
    for (const id of ids) {
      assert.match(id, /^[A-Za-z0-9_-]{22}$/);
      assert.equal(Buffer.from(id, 'base64url').length, 16);
    }
  });

  it('a typical project-scoped password token is shorter than 255 characters', () => {
    const key = parseKey(generateKey(), 1);
    const fernet = new Fernet({ keys: () => [key] });
    const p = typical();
    const token = fernet.encrypt(encodePayload(p));
    assert.ok(token.length < 255, `token is ${token.length} chars`);
    assert.deepEqual(decodePayload(fernet.decrypt(token)), p);
    // Even a rescoped token with a string domain-style user id stays well under the limit.
    const big = fernet.encrypt(encodePayload({ ...p, userId: 'ldap-user@example.org', methods: ['token', 'password', 'totp'], auditIds: [newAuditId(), newAuditId()] }));
    assert.ok(big.length < 255, `token is ${big.length} chars`);
  });
});
