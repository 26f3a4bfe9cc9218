import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Fernet, FernetKeyRepository, InvalidToken, encryptWithIv, generateKey, parseKey, type FernetKeySource } from './fernet.js';

// Vectors from https://github.com/fernet/spec (generate.json, verify.json, invalid.json).
const SPEC_SECRET = 'cw_0x689RpI-jtRR7oE8h_eQsKImvJapLeSbXpwF4e4=';
const SPEC_TOKEN = 'gAAAAAAdwJ6wAAECAwQFBgcICQoLDA0ODy021cpGVWKZ_eEwCGM4BLLF_5CV9dOPmrhuVUPgJobwOz7JcbmrR64jVmpU4IwqDA==';
const SPEC_TIME = new Date('1985-10-26T01:20:00-07:00');
const SPEC_NOW = new Date('1985-10-26T01:20:01-07:00');
const SPEC_IV = Buffer.from([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]);
const SPEC_INVALID: Array<{ desc: string; token: string; now: string }> = [
  { desc: 'incorrect mac', token: 'gAAAAAAdwJ6xAAECAwQFBgcICQoLDA0OD3HkMATM5lFqGaerZ-fWPAl1-szkFVzXTuGb4hR8AKtwcaX1YdykQUFBQUFBQUFBQQ==', now: '1985-10-26T01:20:01-07:00' },
  { desc: 'too short', token: 'gAAAAAAdwJ6xAAECAwQFBgcICQoLDA0OD3HkMATM5lFqGaerZ-fWPA==', now: '1985-10-26T01:20:01-07:00' },
  { desc: 'invalid base64', token: '%%%%%%%%%%%%%AECAwQFBgcICQoLDA0OD3HkMATM5lFqGaerZ-fWPAl1-szkFVzXTuGb4hR8AKtwcaX1YdykRtfsH-p1YsUD2Q==', now: '1985-10-26T01:20:01-07:00' },
  { desc: 'payload size not multiple of block size', token: 'gAAAAAAdwJ6xAAECAwQFBgcICQoLDA0OD3HkMATM5lFqGaerZ-fWPOm73QeoCk9uGib28Xe5vz6oxq5nmxbx_v7mrfyudzUm', now: '1985-10-26T01:20:01-07:00' },
  { desc: 'payload padding error', token: 'gAAAAAAdwJ6xAAECAwQFBgcICQoLDA0ODz4LEpdELGQAad7aNEHbf-JkLPIpuiYRLQ3RtXatOYREu2FWke6CnJNYIbkuKNqOhw==', now: '1985-10-26T01:20:01-07:00' },
  { desc: 'far-future TS (unacceptable clock skew)', token: 'gAAAAAAdwStRAAECAwQFBgcICQoLDA0OD3HkMATM5lFqGaerZ-fWPAnja1xKYyhd-Y6mSkTOyTGJmw2Xc2a6kBd-iX9b_qXQcw==', now: '1985-10-26T01:20:01-07:00' },
  { desc: 'expired TTL', token: 'gAAAAAAdwJ6xAAECAwQFBgcICQoLDA0OD3HkMATM5lFqGaerZ-fWPAl1-szkFVzXTuGb4hR8AKtwcaX1YdykRtfsH-p1YsUD2Q==', now: '1985-10-26T01:21:31-07:00' },
  { desc: 'incorrect IV (causes padding error)', token: 'gAAAAAAdwJ6xBQECAwQFBgcICQoLDA0OD3HkMATM5lFqGaerZ-fWPAkLhFLHpGtDBRLRTZeUfWgHSv49TF2AUEZ1TIvcZjK1zQ==', now: '1985-10-26T01:20:01-07:00' },
];

const staticKeys = (...secrets: string[]): FernetKeySource => {
  const keys = secrets.map((s, i) => parseKey(s, secrets.length - i));
  return { keys: () => keys };
};

const tempDirs: string[] = [];
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'nubo-fernet-'));
  tempDirs.push(dir);
  return dir;
}
after(() => { for (const d of tempDirs) rmSync(d, { recursive: true, force: true }); });

const keyFiles = (dir: string) => readdirSync(dir).sort((a, b) => Number(a) - Number(b));
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('Fernet spec vectors', () => {
  const fernet = new Fernet(staticKeys(SPEC_SECRET));

  it('encrypt with the spec IV and time reproduces the published token (without padding)', () => {
    const token = encryptWithIv(parseKey(SPEC_SECRET), Buffer.from('hello'), SPEC_TIME.getTime() / 1000, SPEC_IV);
    assert.equal(token, SPEC_TOKEN.replace(/=+$/, ''));
  });

  it('decrypts the published token, padded or not, within its TTL', () => {
    assert.equal(fernet.decrypt(SPEC_TOKEN, 60, SPEC_NOW).toString(), 'hello');
    assert.equal(fernet.decrypt(SPEC_TOKEN.replace(/=+$/, ''), 60, SPEC_NOW).toString(), 'hello');
    assert.equal(fernet.decrypt(SPEC_TOKEN).toString(), 'hello'); // no TTL: age is not checked
  });

  for (const v of SPEC_INVALID) {
    it(`refuses the invalid vector "${v.desc}"`, () => {
      assert.throws(() => fernet.decrypt(v.token, 60, new Date(v.now)), InvalidToken);
    });
  }
});

describe('Fernet', () => {
  const fernet = new Fernet(staticKeys(generateKey()));

  it('round-trips payloads of every padding length', () => {
    for (const size of [0, 1, 15, 16, 17, 31, 32, 100, 4096]) {
      const payload = Buffer.alloc(size, size & 0xff);
      const token = fernet.encrypt(payload);
      assert.match(token, /^[A-Za-z0-9_-]+$/, 'unpadded url-safe base64');
      assert.deepEqual(fernet.decrypt(token), payload);
    }
  });

  it('uses a fresh IV per token', () => {
    const payload = Buffer.from('same');
    assert.notEqual(fernet.encrypt(payload), fernet.encrypt(payload));
  });

  it('refuses a token with any single byte changed', () => {
    const raw = Buffer.from(fernet.encrypt(Buffer.from('tamper with me please')), 'base64url');
    for (let i = 0; i < raw.length; i++) {
      for (const bit of [0x01, 0x80]) {
        const bad = Buffer.from(raw);
        bad[i]! ^= bit;
        assert.throws(() => fernet.decrypt(bad.toString('base64url')), InvalidToken, `byte ${i} bit ${bit}`);
      }
    }
  });

  it('refuses truncated, extended, mis-encoded and non-string tokens', () => {
    const token = fernet.encrypt(Buffer.from('x'));
    const raw = Buffer.from(token, 'base64url');
    assert.throws(() => fernet.decrypt(raw.subarray(0, raw.length - 1).toString('base64url')), InvalidToken);
    assert.throws(() => fernet.decrypt(Buffer.concat([raw, Buffer.alloc(16)]).toString('base64url')), InvalidToken);
    assert.throws(() => fernet.decrypt(token.slice(0, 10) + '!' + token.slice(11)), InvalidToken);
    assert.throws(() => fernet.decrypt(token.replace(/-/g, '+').replace(/_/g, '/') + '+'), InvalidToken);
    assert.throws(() => fernet.decrypt(''), InvalidToken);
    assert.throws(() => fernet.decrypt(undefined as unknown as string), InvalidToken);
    assert.throws(() => fernet.decrypt('A'.repeat(100_000)), InvalidToken);
  });

  it('refuses a second spelling of the same token (unused trailing bits set)', () => {
    // 73 bytes: the last base64 char carries 2 bits of data and 4 unused bits.
    const token = fernet.encrypt(Buffer.from('hello'));
    assert.equal(Buffer.from(token, 'base64url').length, 73);
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    const last = alphabet.indexOf(token.at(-1)!);
    const twin = token.slice(0, -1) + alphabet[last | 1];
    assert.deepEqual(Buffer.from(twin, 'base64url'), Buffer.from(token, 'base64url'));
    assert.throws(() => fernet.decrypt(twin), InvalidToken);
  });

  it('refuses tokens from another key', () => {
    const other = new Fernet(staticKeys(generateKey()));
    assert.throws(() => other.decrypt(fernet.encrypt(Buffer.from('x'))), InvalidToken);
  });

  it('enforces the TTL and the clock-skew limit only when a TTL is given', () => {
    const issued = new Date('2030-01-01T00:00:00Z');
    const token = fernet.encrypt(Buffer.from('ttl'), issued);
    const at = (seconds: number) => new Date(issued.getTime() + seconds * 1000);
    assert.equal(fernet.decrypt(token, 3600, at(3600)).toString(), 'ttl');
    assert.throws(() => fernet.decrypt(token, 3600, at(3601)), InvalidToken);
    assert.equal(fernet.decrypt(token, 3600, at(-60)).toString(), 'ttl', '60 s of clock skew tolerated');
    assert.throws(() => fernet.decrypt(token, 3600, at(-61)), InvalidToken);
    assert.equal(fernet.decrypt(token, undefined, at(10 ** 6)).toString(), 'ttl');
  });

  it('fails cleanly without keys', () => {
    const empty = new Fernet({ keys: () => [] });
    assert.throws(() => empty.encrypt(Buffer.from('x')), /no Fernet keys/);
    assert.throws(() => empty.decrypt(fernet.encrypt(Buffer.from('x'))), InvalidToken);
  });

  it('InvalidToken is a plain Error', () => {
    const err = new InvalidToken();
    assert.ok(err instanceof Error);
    assert.equal(err.name, 'InvalidToken');
  });
});

describe('keys', () => {
  it('generates keys in the cryptography / keystone-manage format', () => {
    const key = generateKey();
    assert.match(key, /^[A-Za-z0-9_-]{43}=$/);
    assert.equal(Buffer.from(key, 'base64url').length, 32);
    assert.equal(parseKey(key + '\n').secret, key, 'trailing newline tolerated');
  });

  it('rejects malformed keys', () => {
    assert.throws(() => parseKey('too-short='));
    assert.throws(() => parseKey(Buffer.alloc(32, 0xff).toString('base64')), 'standard alphabet (/) is not url-safe');
    assert.throws(() => parseKey(Buffer.alloc(24).toString('base64url')), 'wrong length');
    assert.throws(() => parseKey('!' + generateKey().slice(1)));
  });
});

describe('FernetKeyRepository', () => {
  let dir: string;
  before(() => { dir = join(tempDir(), 'fernet-keys'); });

  it('setup creates keys 0 and 1 with private permissions, and is idempotent', () => {
    const repo = new FernetKeyRepository(dir);
    assert.deepEqual(repo.keys(), [], 'missing directory means no keys');
    repo.setup();
    assert.deepEqual(keyFiles(dir), ['0', '1']);
    assert.equal(statSync(dir).mode & 0o777, 0o700);
    for (const f of keyFiles(dir)) {
      assert.equal(statSync(join(dir, f)).mode & 0o777, 0o600);
      assert.match(readFileSync(join(dir, f), 'utf8'), /^[A-Za-z0-9_-]{43}=$/);
    }
    const before = keyFiles(dir).map((f) => readFileSync(join(dir, f), 'utf8'));
    new FernetKeyRepository(dir).setup();
    assert.deepEqual(keyFiles(dir).map((f) => readFileSync(join(dir, f), 'utf8')), before, 'existing keys untouched');
    assert.deepEqual(repo.keys().map((k) => k.id), [1, 0], 'primary first, staged last');
  });

  it('rotates like keystone-manage fernet_rotate and honours maxActiveKeys', () => {
    const d = tempDir();
    const repo = new FernetKeyRepository(d, 3);
    const fernet = new Fernet(repo);
    repo.setup();
    const staged = readFileSync(join(d, '0'), 'utf8');
    const withKey1 = fernet.encrypt(Buffer.from('made with key 1'));

    repo.rotate();
    assert.deepEqual(keyFiles(d), ['0', '1', '2']);
    assert.equal(readFileSync(join(d, '2'), 'utf8'), staged, 'the staged key became the primary');
    assert.deepEqual(repo.keys().map((k) => k.id), [2, 1, 0]);
    assert.equal(repo.keys()[0]!.secret, staged);
    assert.equal(fernet.decrypt(withKey1).toString(), 'made with key 1', 'secondary key still accepted');
    const withKey2 = fernet.encrypt(Buffer.from('made with key 2'));
    assert.equal(staticKeysDecrypt(staged, withKey2), 'made with key 2', 'new tokens use the new primary');

    repo.rotate();
    assert.deepEqual(keyFiles(d), ['0', '2', '3'], 'oldest secondary purged');
    assert.throws(() => fernet.decrypt(withKey1), InvalidToken, 'tokens of a purged key are refused');
    assert.equal(fernet.decrypt(withKey2).toString(), 'made with key 2');

    repo.rotate();
    repo.rotate();
    assert.deepEqual(keyFiles(d), ['0', '4', '5']);
  });

  it('keeps more secondaries with a larger maxActiveKeys', () => {
    const d = tempDir();
    const repo = new FernetKeyRepository(d, 5);
    repo.setup();
    for (let i = 0; i < 6; i++) repo.rotate();
    assert.deepEqual(keyFiles(d), ['0', '4', '5', '6', '7']);
    assert.throws(() => new FernetKeyRepository(d, 1));
  });

  it('refuses to rotate an empty repository and reports a corrupt key file', () => {
    const d = tempDir();
    assert.throws(() => new FernetKeyRepository(d).rotate(), /run setup/);
    writeFileSync(join(d, '1'), 'not a key');
    assert.throws(() => new FernetKeyRepository(d).keys(), /invalid Fernet key/);
  });

  it("a second instance on the same directory picks up another process's rotation", async () => {
    const d = tempDir();
    const a = new FernetKeyRepository(d);
    const b = new FernetKeyRepository(d);
    a.setup();
    assert.deepEqual(b.keys().map((k) => k.id), [1, 0]);
    a.rotate(); // likely within the same mtime tick as setup: exercises the racy-snapshot re-read
    assert.deepEqual(b.keys().map((k) => k.id), [1, 0], 'cached for up to a second');
    await sleep(1100);
    assert.deepEqual(b.keys().map((k) => k.id), [2, 1, 0]);
    const token = new Fernet(a).encrypt(Buffer.from('from a'));
    assert.equal(new Fernet(b).decrypt(token).toString(), 'from a');
  });
});

function staticKeysDecrypt(secret: string, token: string): string {
  return new Fernet(staticKeys(secret)).decrypt(token).toString();
}
