// Key pairs, per user as in Nova: generated (RSA 2048, the private key handed back once) or
// imported (OpenSSH public keys; x509 certificates for the x509 type), with Nova's
// fingerprints (MD5 of the SSH key blob; SHA-1 of an x509 certificate's DER).
import { createHash, createPublicKey, generateKeyPairSync, randomBytes, sign, X509Certificate, type KeyObject } from 'node:crypto';
import { BadRequest, Conflict, NotFound } from '../core/errors.js';
import { isUniqueViolation, transaction, type Database } from '../db/index.js';
import type { ComputeDeps } from './index.js';
import type { QuotaService } from './quotas.js';

export type KeypairType = 'ssh' | 'x509';

export interface Keypair {
  id: number;
  name: string;
  userId: string;
  type: KeypairType;
  publicKey: string;
  fingerprint: string;
  createdAt: string;
}

const invalid = (reason: string) => new BadRequest(`Keypair data is invalid: ${reason}`);
const colonHex = (hex: string) => hex.match(/../g)!.join(':');

// ---- OpenSSH public keys ------------------------------------------------------------------

function sshString(data: Buffer | string): Buffer {
  const bytes = typeof data === 'string' ? Buffer.from(data) : data;
  const length = Buffer.alloc(4);
  length.writeUInt32BE(bytes.length);
  return Buffer.concat([length, bytes]);
}

/** An SSH mpint: big-endian two's complement, a leading zero when the high bit is set. */
function sshMpint(unsigned: Buffer): Buffer {
  let i = 0;
  while (i < unsigned.length - 1 && unsigned[i] === 0) i++;
  let bytes = unsigned.subarray(i);
  if (bytes[0] & 0x80) bytes = Buffer.concat([Buffer.from([0]), bytes]);
  return sshString(bytes);
}

/** The `ssh-rsa AAAA...` line of an RSA public key. */
export function opensshRsaPublicKey(key: KeyObject, comment: string): string {
  const jwk = key.export({ format: 'jwk' }) as { n: string; e: string };
  const blob = Buffer.concat([sshString('ssh-rsa'), sshMpint(Buffer.from(jwk.e, 'base64url')), sshMpint(Buffer.from(jwk.n, 'base64url'))]);
  return `ssh-rsa ${blob.toString('base64')} ${comment}`;
}

/** Reads the SSH wire strings of a key blob; undefined when the blob is malformed. */
function readStrings(blob: Buffer): Buffer[] | undefined {
  const out: Buffer[] = [];
  let offset = 0;
  while (offset < blob.length) {
    if (offset + 4 > blob.length) return undefined;
    const length = blob.readUInt32BE(offset);
    offset += 4;
    if (offset + length > blob.length) return undefined;
    out.push(blob.subarray(offset, offset + length));
    offset += length;
  }
  return out;
}

const ECDSA_CURVES: Record<string, { curve: string; pointBytes: number }> = {
  'ecdsa-sha2-nistp256': { curve: 'nistp256', pointBytes: 65 },
  'ecdsa-sha2-nistp384': { curve: 'nistp384', pointBytes: 97 },
  'ecdsa-sha2-nistp521': { curve: 'nistp521', pointBytes: 133 },
};

/**
 * Checks an OpenSSH public key line (ssh-rsa, ssh-ed25519, ecdsa-sha2-nistp256/384/521) the way
 * cryptography's load_ssh_public_key does, and returns Nova's MD5 fingerprint of its blob.
 */
export function sshFingerprint(publicKey: string): string {
  const fail = () => invalid('failed to generate fingerprint');
  const parts = publicKey.trim().split(/\s+/);
  if (parts.length < 2) throw fail();
  const [type, data] = parts;
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(data) || data.length % 4 !== 0) throw fail();
  const blob = Buffer.from(data, 'base64');
  const fields = readStrings(blob);
  if (!fields || fields.length === 0 || fields[0].toString() !== type) throw fail();
  if (type === 'ssh-rsa') {
    if (fields.length !== 3 || fields[1].length === 0 || fields[2].length < 64) throw fail();
    try {
      createPublicKey({ key: { kty: 'RSA', e: stripSign(fields[1]).toString('base64url'), n: stripSign(fields[2]).toString('base64url') }, format: 'jwk' });
    } catch {
      throw fail();
    }
  } else if (type === 'ssh-ed25519') {
    if (fields.length !== 2 || fields[1].length !== 32) throw fail();
  } else if (ECDSA_CURVES[type]) {
    const { curve, pointBytes } = ECDSA_CURVES[type];
    if (fields.length !== 3 || fields[1].toString() !== curve || fields[2].length !== pointBytes || fields[2][0] !== 4) throw fail();
  } else {
    throw fail();
  }
  return colonHex(createHash('md5').update(blob).digest('hex'));
}

function stripSign(mpint: Buffer): Buffer {
  return mpint.length > 1 && mpint[0] === 0 ? mpint.subarray(1) : mpint;
}

// ---- x509 ---------------------------------------------------------------------------------

/** Nova's x509 fingerprint: SHA-1 of the certificate's DER, as aa:bb:... */
export function x509Fingerprint(pem: string): string {
  try {
    const certificate = new X509Certificate(pem);
    return certificate.fingerprint.toLowerCase();
  } catch (err) {
    throw invalid(`failed to generate X509 fingerprint. Error message: ${(err as Error).message}`);
  }
}

// A minimal DER writer, enough for a self-signed client certificate.
function derLength(length: number): Buffer {
  if (length < 0x80) return Buffer.from([length]);
  const bytes: number[] = [];
  for (let n = length; n > 0; n >>= 8) bytes.unshift(n & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}
const der = (tag: number, ...content: Buffer[]) => {
  const body = Buffer.concat(content);
  return Buffer.concat([Buffer.from([tag]), derLength(body.length), body]);
};
const seq = (...c: Buffer[]) => der(0x30, ...c);
const set = (...c: Buffer[]) => der(0x31, ...c);
const utf8 = (s: string) => der(0x0c, Buffer.from(s, 'utf8'));
const octets = (b: Buffer) => der(0x04, b);
const bitString = (b: Buffer) => der(0x03, Buffer.from([0]), b);
function oid(text: string): Buffer {
  const parts = text.split('.').map(Number);
  const bytes = [40 * parts[0] + parts[1]];
  for (const part of parts.slice(2)) {
    const chunk: number[] = [];
    let n = part;
    do { chunk.unshift(n & 0x7f); n = Math.floor(n / 128); } while (n > 0);
    for (let i = 0; i < chunk.length - 1; i++) chunk[i] |= 0x80;
    bytes.push(...chunk);
  }
  return der(0x06, Buffer.from(bytes));
}
function derInteger(unsigned: Buffer): Buffer {
  let bytes = unsigned;
  while (bytes.length > 1 && bytes[0] === 0 && !(bytes[1] & 0x80)) bytes = bytes.subarray(1);
  if (bytes[0] & 0x80) bytes = Buffer.concat([Buffer.from([0]), bytes]);
  return der(0x02, bytes);
}
function derTime(date: Date): Buffer {
  const iso = date.toISOString().replace(/[-:T]/g, '').slice(0, 14) + 'Z';
  return date.getUTCFullYear() < 2050 ? der(0x17, Buffer.from(iso.slice(2))) : der(0x18, Buffer.from(iso));
}

/**
 * What Nova's generate_winrm_x509_cert makes with openssl: a self-signed RSA certificate for
 * CN=<user>, valid ten years, extendedKeyUsage clientAuth and a UPN subjectAltName.
 */
function generateX509(userId: string): { certificate: string; privateKey: string } {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const sha256WithRsa = seq(oid('1.2.840.113549.1.1.11'), Buffer.from([0x05, 0x00]));
  const name = seq(set(seq(oid('2.5.4.3'), utf8(userId))));
  const now = new Date();
  const validity = seq(derTime(now), derTime(new Date(now.getTime() + 3650 * 86400_000)));
  const serial = randomBytes(16);
  serial[0] &= 0x7f;
  const extensions = der(0xa3, seq(
    seq(oid('2.5.29.37'), octets(seq(oid('1.3.6.1.5.5.7.3.2')))),
    seq(oid('2.5.29.17'), octets(seq(der(0xa0, oid('1.3.6.1.4.1.311.20.2.3'), der(0xa0, utf8(`${userId}@localhost`)))))),
  ));
  const tbs = seq(der(0xa0, derInteger(Buffer.from([2]))), derInteger(serial), sha256WithRsa, name, validity, name,
    publicKey.export({ type: 'spki', format: 'der' }), extensions);
  const signature = sign('sha256', tbs, privateKey);
  const cert = seq(tbs, sha256WithRsa, bitString(signature));
  const pem = `-----BEGIN CERTIFICATE-----\n${cert.toString('base64').match(/.{1,64}/g)!.join('\n')}\n-----END CERTIFICATE-----\n`;
  return { certificate: pem, privateKey: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string };
}

// ---- the service --------------------------------------------------------------------------

export class KeypairService {
  private readonly database: Database;
  private readonly quotas: QuotaService;

  constructor(deps: Pick<ComputeDeps, 'database'> & { quotas: QuotaService }) {
    this.database = deps.database;
    this.quotas = deps.quotas;
  }

  private get db() { return this.database.db; }

  private toKeypair(row: any): Keypair {
    return { id: Number(row.id), name: row.name, userId: row.user_id, type: row.type, publicKey: row.public_key, fingerprint: row.fingerprint, createdAt: row.created_at };
  }

  /** The user's key pair; 404 "Keypair <name> not found for user <user>" otherwise. Server create reads key_data from it. */
  async get(userId: string, name: string): Promise<Keypair> {
    const row = await this.db.selectFrom('compute_keypairs').selectAll().where('user_id', '=', userId).where('name', '=', name).executeTakeFirst();
    if (!row) throw new NotFound(`Keypair ${name} not found for user ${userId}`);
    return this.toKeypair(row);
  }

  /** The user's key pairs by name, after `marker` (a key pair name; 400 when it names none), at most `limit`. */
  async list(userId: string, page: { limit?: number; marker?: string } = {}): Promise<Keypair[]> {
    const rows = await this.db.selectFrom('compute_keypairs').selectAll().where('user_id', '=', userId).orderBy('name').execute();
    let keypairs = rows.map((r: any) => this.toKeypair(r));
    if (page.marker !== undefined) {
      const index = keypairs.findIndex((k) => k.name === page.marker);
      if (index < 0) throw new BadRequest(`Marker ${page.marker} could not be found.`);
      keypairs = keypairs.slice(index + 1);
    }
    return page.limit === undefined ? keypairs : keypairs.slice(0, page.limit);
  }

  /** Generates a key pair; the private key is returned here only and never stored. */
  async create(caller: { projectId: string }, userId: string, name: string, type: KeypairType): Promise<{ keypair: Keypair; privateKey: string }> {
    await this.quotas.check(caller.projectId, userId, { key_pairs: 1 });
    let publicKey: string;
    let privateKey: string;
    let fingerprint: string;
    if (type === 'x509') {
      const generated = generateX509(userId);
      publicKey = generated.certificate;
      privateKey = generated.privateKey;
      fingerprint = x509Fingerprint(publicKey);
    } else {
      const pair = generateKeyPairSync('rsa', { modulusLength: 2048 });
      publicKey = opensshRsaPublicKey(pair.publicKey, 'Generated-by-Nova');
      privateKey = pair.privateKey.export({ type: 'pkcs1', format: 'pem' }) as string;
      fingerprint = sshFingerprint(publicKey);
    }
    const keypair = await this.insert(userId, name, type, publicKey, fingerprint);
    return { keypair, privateKey };
  }

  /** Imports a public key (OpenSSH line for ssh, PEM certificate for x509). */
  async import(caller: { projectId: string }, userId: string, name: string, publicKey: string, type: KeypairType): Promise<Keypair> {
    await this.quotas.check(caller.projectId, userId, { key_pairs: 1 });
    const fingerprint = type === 'x509' ? x509Fingerprint(publicKey) : sshFingerprint(publicKey);
    return this.insert(userId, name, type, publicKey, fingerprint);
  }

  private async insert(userId: string, name: string, type: KeypairType, publicKey: string, fingerprint: string): Promise<Keypair> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await transaction(this.database, async (trx) => {
          const existing = await trx.selectFrom('compute_keypairs').select('name').where('user_id', '=', userId).where('name', '=', name).executeTakeFirst();
          if (existing) throw new Conflict(`Key pair '${name}' already exists.`);
          const max = await trx.selectFrom('compute_keypairs').select((eb) => eb.fn.max('id').as('m')).executeTakeFirst();
          const row = { id: Number((max as any)?.m ?? 0) + 1, user_id: userId, name, type, public_key: publicKey, fingerprint, created_at: new Date().toISOString() };
          await trx.insertInto('compute_keypairs').values(row).execute();
          return this.toKeypair(row);
        });
      } catch (err) {
        if (!isUniqueViolation(err)) throw err;
        const clash = await this.db.selectFrom('compute_keypairs').select('name').where('user_id', '=', userId).where('name', '=', name).executeTakeFirst();
        if (clash) throw new Conflict(`Key pair '${name}' already exists.`);
        if (attempt >= 20) throw err; // id race lost too often
      }
    }
  }

  async delete(userId: string, name: string): Promise<void> {
    const result = await this.db.deleteFrom('compute_keypairs').where('user_id', '=', userId).where('name', '=', name).executeTakeFirst();
    if (Number(result.numDeletedRows) === 0) throw new NotFound(`Keypair ${name} not found for user ${userId}`);
  }
}
