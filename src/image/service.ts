// The image service (Glance v2 semantics): image records, visibility and sharing, tags,
// data upload/download through a store, format safety, interoperable import, quotas.
import { createReadStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createWriteStream } from 'node:fs';
import type { Readable } from 'node:stream';
import { BadRequest, Conflict, Forbidden, NotFound, NuboError, OverQuota } from '../core/errors.js';
import { newUuid } from '../core/ids.js';
import type { Logger } from '../core/log.js';
import { transaction, isUniqueViolation, type Database } from '../db/index.js';
import { convertImage, convertible, inspectImage } from './qemu.js';
import type { ByteRange, ImageStore, StoredData } from './stores/types.js';

export const DISK_FORMATS = ['ami', 'ari', 'aki', 'vhd', 'vhdx', 'vmdk', 'raw', 'qcow2', 'vdi', 'iso', 'ploop'] as const;
export const CONTAINER_FORMATS = ['ami', 'ari', 'aki', 'bare', 'ovf', 'ova', 'docker', 'compressed'] as const;
export const VISIBILITIES = ['public', 'private', 'shared', 'community'] as const;
export const MEMBER_STATUSES = ['pending', 'accepted', 'rejected'] as const;
export const STATUSES = ['queued', 'saving', 'active', 'killed', 'deleted', 'uploading', 'importing', 'pending_delete', 'deactivated'] as const;

/** Properties with their own columns; everything else is a custom (string) property. */
export const CORE_PROPERTIES = new Set(['id', 'name', 'status', 'visibility', 'owner', 'disk_format', 'container_format', 'size', 'virtual_size',
  'checksum', 'os_hash_algo', 'os_hash_value', 'min_disk', 'min_ram', 'protected', 'os_hidden', 'tags', 'created_at', 'updated_at',
  'self', 'file', 'schema', 'direct_url', 'locations', 'stores']);
/** Properties nobody may set (Glance answers 403 "Attribute 'x' is read-only."). */
export const READ_ONLY_PROPERTIES = new Set(['created_at', 'updated_at', 'status', 'checksum', 'os_hash_algo', 'os_hash_value', 'size', 'virtual_size',
  'direct_url', 'self', 'file', 'schema', 'id', 'stores']);
/** Properties Glance reserves (403 "Attribute 'x' is reserved."). */
export const RESERVED_PROPERTIES = new Set(['location', 'deleted', 'deleted_at']);

export interface Image {
  id: string;
  name: string | null;
  status: string;
  visibility: string;
  owner: string | null;
  disk_format: string | null;
  container_format: string | null;
  size: number | null;
  virtual_size: number | null;
  checksum: string | null;
  os_hash_algo: string | null;
  os_hash_value: string | null;
  min_disk: number;
  min_ram: number;
  protected: boolean;
  os_hidden: boolean;
  properties: Record<string, string>;
  tags: string[];
  location: string | null;
  created_at: string;
  updated_at: string;
}

export interface Member {
  image_id: string;
  member_id: string;
  status: string;
  created_at: string;
  updated_at: string;
}

/** Who is asking: the project of the token and whether it holds the admin role. */
export interface Caller {
  projectId?: string;
  isAdmin: boolean;
}

export interface ImageQuotas {
  /** Images a project may own; -1 = unlimited. */
  imageCountTotal: number;
  /** Bytes a project may store in total; -1 = unlimited. */
  imageSizeTotalBytes: number;
}

export interface ListFilters {
  name?: string;
  id?: string;
  status?: string;
  visibility?: string;
  owner?: string;
  member_status?: string;
  tags?: string[];
  disk_format?: string;
  container_format?: string;
  size_min?: number;
  size_max?: number;
  created_at?: { op: string; value: Date }[];
  updated_at?: { op: string; value: Date }[];
  os_hidden?: boolean;
  protected?: boolean;
  /** Custom property filters (exact string match). */
  properties?: Record<string, string>;
  sort: { key: string; dir: 'asc' | 'desc' }[];
}

export const SORT_KEYS = new Set(['name', 'status', 'container_format', 'disk_format', 'size', 'id', 'created_at', 'updated_at', 'visibility', 'owner', 'min_disk', 'min_ram', 'virtual_size']);

export interface PatchOperation {
  op: 'add' | 'replace' | 'remove';
  /** The property name (path without the leading slash; only top-level paths exist for images). */
  name: string;
  value?: unknown;
}

export interface ImageServiceOptions {
  database: Database;
  store: ImageStore;
  /** Where staged data (interoperable import) waits for the import call. */
  staging: ImageStore;
  quotas: ImageQuotas;
  /** [image_conversion] output_format: the disk_format imports are converted to (unset = no conversion). */
  conversionFormat?: string;
  logger: Logger;
}

const now = (): string => new Date().toISOString();
/** Glance renders timestamps without fractional seconds. */
export const glanceTime = (iso: string): string => iso.replace(/\.\d+Z$/, 'Z');

function rowToImage(row: any, tags: string[]): Image {
  return {
    id: row.id,
    name: row.name ?? null,
    status: row.status,
    visibility: row.visibility,
    owner: row.owner ?? null,
    disk_format: row.disk_format ?? null,
    container_format: row.container_format ?? null,
    size: row.size === null || row.size === undefined ? null : Number(row.size),
    virtual_size: row.virtual_size === null || row.virtual_size === undefined ? null : Number(row.virtual_size),
    checksum: row.checksum ?? null,
    os_hash_algo: row.os_hash_algo ?? null,
    os_hash_value: row.os_hash_value ?? null,
    min_disk: Number(row.min_disk),
    min_ram: Number(row.min_ram),
    protected: Number(row.protected) === 1,
    os_hidden: Number(row.os_hidden) === 1,
    properties: JSON.parse(row.properties),
    tags: [...tags].sort(),
    location: row.location ?? null,
    created_at: row.created_at,
    updated_at: row.updated_at,
  };
}

function imageToRow(image: Image): Record<string, unknown> {
  return {
    id: image.id, name: image.name, status: image.status, visibility: image.visibility, owner: image.owner,
    disk_format: image.disk_format, container_format: image.container_format, size: image.size, virtual_size: image.virtual_size,
    checksum: image.checksum, os_hash_algo: image.os_hash_algo, os_hash_value: image.os_hash_value,
    min_disk: image.min_disk, min_ram: image.min_ram, protected: image.protected ? 1 : 0, os_hidden: image.os_hidden ? 1 : 0,
    properties: JSON.stringify(image.properties), location: image.location, created_at: image.created_at, updated_at: image.updated_at,
  };
}

/** Validates one settable property's value as Glance's image schema does; throws 400. */
export function validateProperty(name: string, value: unknown): void {
  const fail = (what: string): never => { throw new BadRequest(`Provided object does not match schema 'image': ${what}`); };
  switch (name) {
    case 'name':
      if (value !== null && typeof value !== 'string') fail(`${JSON.stringify(value)} is not of type 'null', 'string'`);
      if (typeof value === 'string' && value.length > 255) fail(`'${name}' is too long`);
      return;
    case 'visibility':
      if (!(VISIBILITIES as readonly unknown[]).includes(value)) fail(`${JSON.stringify(value)} is not one of ${JSON.stringify(VISIBILITIES)}`);
      return;
    case 'protected': case 'os_hidden':
      if (typeof value !== 'boolean') fail(`${JSON.stringify(value)} is not of type 'boolean'`);
      return;
    case 'min_disk': case 'min_ram':
      if (typeof value !== 'number' || !Number.isInteger(value)) fail(`${JSON.stringify(value)} is not of type 'integer'`);
      if ((value as number) < 0) fail(`${value} is less than the minimum of 0`);
      if ((value as number) > 2 ** 31 - 1) fail(`${value} is greater than the maximum of ${2 ** 31 - 1}`);
      return;
    case 'disk_format':
      if (value !== null && !(DISK_FORMATS as readonly unknown[]).includes(value)) fail(`${JSON.stringify(value)} is not one of [None, ${DISK_FORMATS.map((f) => `'${f}'`).join(', ')}]`);
      return;
    case 'container_format':
      if (value !== null && !(CONTAINER_FORMATS as readonly unknown[]).includes(value)) fail(`${JSON.stringify(value)} is not one of [None, ${CONTAINER_FORMATS.map((f) => `'${f}'`).join(', ')}]`);
      return;
    case 'owner':
      if (value !== null && typeof value !== 'string') fail(`${JSON.stringify(value)} is not of type 'null', 'string'`);
      if (typeof value === 'string' && value.length > 255) fail(`'owner' is too long`);
      return;
    case 'tags':
      if (!Array.isArray(value)) fail(`${JSON.stringify(value)} is not of type 'array'`);
      for (const tag of value as unknown[]) validateTag(tag);
      return;
    default:
      if (typeof value !== 'string') fail(`${JSON.stringify(value)} is not of type 'string'`);
      if (name.length > 255) fail(`property name '${name.slice(0, 40)}…' is too long`);
      if ((value as string).length > 65535) fail(`the value of '${name}' is too long`);
  }
}

export function validateTag(tag: unknown): void {
  if (typeof tag !== 'string') throw new BadRequest(`Provided object does not match schema 'image': ${JSON.stringify(tag)} is not of type 'string'`);
  if (tag.length > 255) throw new BadRequest(`Provided object does not match schema 'image': '${tag.slice(0, 40)}…' is too long`);
}

/** Everything visibility rules need about an image: readable by the caller? */
function visibleTo(image: Image, caller: Caller, memberStatus: string | undefined): boolean {
  if (caller.isAdmin) return true;
  if (image.owner !== null && image.owner === caller.projectId) return true;
  if (image.visibility === 'public' || image.visibility === 'community') return true;
  return image.visibility === 'shared' && memberStatus !== undefined;
}

export class ImageService {
  private readonly database: Database;
  readonly store: ImageStore;
  readonly staging: ImageStore;
  readonly quotas: ImageQuotas;
  readonly conversionFormat?: string;
  private readonly logger: Logger;
  /** Imports running in this process, so tests and shutdown can wait for them. */
  private readonly running = new Set<Promise<void>>();

  constructor(options: ImageServiceOptions) {
    this.database = options.database;
    this.store = options.store;
    this.staging = options.staging;
    this.quotas = options.quotas;
    this.conversionFormat = options.conversionFormat;
    this.logger = options.logger;
  }

  private get db() { return this.database.db; }

  // ---- reading -------------------------------------------------------------------------

  private async load(id: string): Promise<Image | undefined> {
    const row = await this.db.selectFrom('image_images').selectAll().where('id', '=', id).executeTakeFirst();
    if (!row) return undefined;
    const tags = await this.db.selectFrom('image_tags').select('tag').where('image_id', '=', id).execute();
    return rowToImage(row, tags.map((t: any) => t.tag));
  }

  /** The image if the caller may see it; 404 otherwise (Glance does not reveal hidden images). */
  async getImage(caller: Caller, id: string): Promise<Image> {
    const image = await this.load(id);
    if (!image || image.status === 'deleted') throw new NotFound(`No image found with ID ${id}`);
    const membership = caller.projectId ? await this.memberRow(id, caller.projectId) : undefined;
    if (!visibleTo(image, caller, membership?.status)) throw new NotFound(`No image found with ID ${id}`);
    return image;
  }

  /** The caller's membership of an image, when it is a member. */
  async membershipOf(caller: Caller, imageId: string): Promise<Member | undefined> {
    return caller.projectId ? this.memberRow(imageId, caller.projectId) : undefined;
  }

  private async memberRow(imageId: string, memberId: string): Promise<Member | undefined> {
    const row = await this.db.selectFrom('image_members').selectAll().where('image_id', '=', imageId).where('member_id', '=', memberId).executeTakeFirst();
    return row as Member | undefined;
  }

  /**
   * Images the caller can list, filtered and sorted (paging is the API's). Glance's default
   * listing: the caller's own images, public ones and shared ones it accepted; community images
   * only with visibility=community (or all); admins see everything.
   */
  async listImages(caller: Caller, filters: ListFilters): Promise<Image[]> {
    const memberStatus = filters.member_status ?? 'accepted';
    const memberships = new Map<string, string>();
    if (caller.projectId) {
      for (const m of await this.db.selectFrom('image_members').select(['image_id', 'status']).where('member_id', '=', caller.projectId).execute()) {
        memberships.set(m.image_id, m.status);
      }
    }
    let query = this.db.selectFrom('image_images').selectAll().where('status', '!=', 'deleted');
    if (filters.visibility && filters.visibility !== 'all') query = query.where('visibility', '=', filters.visibility);
    if (filters.owner !== undefined) query = query.where('owner', '=', filters.owner);
    const rows = await query.execute();
    const ids = rows.map((r: any) => r.id);
    const tagsByImage = new Map<string, string[]>();
    for (let i = 0; i < ids.length; i += 500) {
      const chunk = ids.slice(i, i + 500);
      for (const t of await this.db.selectFrom('image_tags').select(['image_id', 'tag']).where('image_id', 'in', chunk).execute()) {
        (tagsByImage.get(t.image_id) ?? tagsByImage.set(t.image_id, []).get(t.image_id)!).push(t.tag);
      }
    }
    const sharedMatches = (image: Image): boolean => {
      const status = memberships.get(image.id);
      return status !== undefined && (memberStatus === 'all' || status === memberStatus);
    };
    const images = rows.map((r: any) => rowToImage(r, tagsByImage.get(r.id) ?? [])).filter((image) => {
      const own = image.owner !== null && image.owner === caller.projectId;
      const visibility = filters.visibility;
      if (visibility === undefined) {
        if (!caller.isAdmin && !(own || image.visibility === 'public' || (image.visibility === 'shared' && sharedMatches(image)))) return false;
      } else if (visibility === 'shared') {
        if (!caller.isAdmin && !own && !sharedMatches(image)) return false;
        if (caller.isAdmin && !own && filters.member_status !== undefined && !sharedMatches(image)) return false;
      } else if (visibility === 'private') {
        if (!caller.isAdmin && !own) return false;
      } else if (visibility === 'all') {
        if (!caller.isAdmin && !(own || image.visibility === 'public' || image.visibility === 'community' || (image.visibility === 'shared' && sharedMatches(image)))) return false;
      }
      // public and community are visible to everyone
      if (filters.os_hidden !== undefined ? image.os_hidden !== filters.os_hidden : image.os_hidden) return false;
      if (filters.protected !== undefined && image.protected !== filters.protected) return false;
      if (filters.name !== undefined && !matchesIn(filters.name, image.name)) return false;
      if (filters.id !== undefined && !matchesIn(filters.id, image.id)) return false;
      if (filters.status !== undefined && !matchesIn(filters.status, image.status)) return false;
      if (filters.disk_format !== undefined && !matchesIn(filters.disk_format, image.disk_format)) return false;
      if (filters.container_format !== undefined && !matchesIn(filters.container_format, image.container_format)) return false;
      if (filters.size_min !== undefined && (image.size === null || image.size < filters.size_min)) return false;
      if (filters.size_max !== undefined && (image.size === null || image.size > filters.size_max)) return false;
      if (filters.tags && !filters.tags.every((t) => image.tags.includes(t))) return false;
      if (filters.created_at && !filters.created_at.every((c) => compareTime(image.created_at, c))) return false;
      if (filters.updated_at && !filters.updated_at.every((c) => compareTime(image.updated_at, c))) return false;
      for (const [key, value] of Object.entries(filters.properties ?? {})) if (image.properties[key] !== value) return false;
      return true;
    });
    const keys = [...filters.sort];
    if (!keys.some((k) => k.key === 'id')) keys.push({ key: 'id', dir: keys[keys.length - 1]?.dir ?? 'desc' });
    images.sort((a, b) => {
      for (const { key, dir } of keys) {
        const c = compareValues((a as any)[key], (b as any)[key]);
        if (c !== 0) return dir === 'asc' ? c : -c;
      }
      return 0;
    });
    return images;
  }

  // ---- writing -------------------------------------------------------------------------

  async createImage(caller: Caller, fields: Record<string, unknown>): Promise<Image> {
    for (const key of Object.keys(fields)) {
      if (RESERVED_PROPERTIES.has(key)) throw new Forbidden(`Attribute '${key}' is reserved.`);
      if (READ_ONLY_PROPERTIES.has(key) && key !== 'id') throw new Forbidden(`Attribute '${key}' is read-only.`);
    }
    for (const [key, value] of Object.entries(fields)) if (key !== 'id') validateProperty(key, value);
    let id = newUuid();
    if (fields.id !== undefined) {
      if (typeof fields.id !== 'string' || !/^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/.test(fields.id)) {
        throw new BadRequest(`Provided object does not match schema 'image': ${JSON.stringify(fields.id)} does not match the UUID pattern`);
      }
      id = fields.id.toLowerCase();
    }
    const owner = fields.owner === undefined ? caller.projectId ?? null : (fields.owner as string | null);
    if (owner !== (caller.projectId ?? null) && !caller.isAdmin) throw new Forbidden(`You are not permitted to create images owned by '${owner}'.`);
    const properties: Record<string, string> = {};
    for (const [key, value] of Object.entries(fields)) if (!CORE_PROPERTIES.has(key)) properties[key] = value as string;
    const tags = [...new Set((fields.tags as string[] | undefined) ?? [])];
    const timestamp = now();
    const image: Image = {
      id, name: (fields.name as string | null | undefined) ?? null, status: 'queued',
      visibility: (fields.visibility as string | undefined) ?? 'shared', owner,
      disk_format: (fields.disk_format as string | null | undefined) ?? null, container_format: (fields.container_format as string | null | undefined) ?? null,
      size: null, virtual_size: null, checksum: null, os_hash_algo: null, os_hash_value: null,
      min_disk: (fields.min_disk as number | undefined) ?? 0, min_ram: (fields.min_ram as number | undefined) ?? 0,
      protected: (fields.protected as boolean | undefined) ?? false, os_hidden: (fields.os_hidden as boolean | undefined) ?? false,
      properties, tags: tags.sort(), location: null, created_at: timestamp, updated_at: timestamp,
    };
    await this.checkCountQuota(owner, 1);
    try {
      await transaction(this.database, async (trx) => {
        await trx.insertInto('image_images').values(imageToRow(image)).execute();
        if (tags.length) await trx.insertInto('image_tags').values(tags.map((tag) => ({ image_id: id, tag }))).execute();
      });
    } catch (err) {
      if (isUniqueViolation(err)) throw new Conflict(`Image with identifier ${id} already exists!`);
      throw err;
    }
    return image;
  }

  /**
   * Applies JSON-patch operations (already parsed by the API) to an image. The caller has
   * passed modify_image; `canPublicize`/`canCommunitize` carry the visibility policies.
   */
  async updateImage(caller: Caller, id: string, ops: PatchOperation[], can: { publicize: boolean; communitize: boolean }): Promise<Image> {
    const image = await this.getImage(caller, id);
    const next: Image = { ...image, properties: { ...image.properties }, tags: [...image.tags] };
    for (const op of ops) {
      const { name } = op;
      if (RESERVED_PROPERTIES.has(name)) throw new Forbidden(`Attribute '${name}' is reserved.`);
      if (READ_ONLY_PROPERTIES.has(name) || name === 'locations') throw new Forbidden(`Attribute '${name}' is read-only.`);
      if (CORE_PROPERTIES.has(name)) {
        if (op.op === 'remove') throw new Forbidden(`Attribute '${name}' is read-only.`);
        validateProperty(name, op.value);
        if ((name === 'disk_format' || name === 'container_format') && image.status !== 'queued' && op.value !== (image as any)[name]) {
          throw new Forbidden(`Attribute ${name} can be only replaced for a queued image.`);
        }
        if (name === 'owner' && op.value !== image.owner && !caller.isAdmin) throw new Forbidden(`Attribute 'owner' is read-only.`);
        if (name === 'tags') next.tags = [...new Set(op.value as string[])].sort();
        else (next as any)[name] = op.value;
      } else if (op.op === 'remove') {
        if (!(name in next.properties)) throw new Conflict(`Property ${name} does not exist.`);
        delete next.properties[name];
      } else {
        if (op.op === 'replace' && !(name in next.properties)) throw new Conflict(`Property ${name} does not exist.`);
        validateProperty(name, op.value);
        next.properties[name] = op.value as string;
      }
    }
    if (next.visibility !== image.visibility) {
      if (next.visibility === 'public' && !can.publicize) throw new Forbidden('You are not authorized to complete publicize_image action.');
      if (next.visibility === 'community' && !can.communitize) throw new Forbidden('You are not authorized to complete communitize_image action.');
    }
    next.updated_at = now();
    await transaction(this.database, async (trx) => {
      const row = imageToRow(next);
      delete row.id; delete row.created_at; delete row.status; delete row.location; delete row.size; delete row.checksum;
      delete row.os_hash_algo; delete row.os_hash_value; delete row.virtual_size;
      await trx.updateTable('image_images').set(row).where('id', '=', id).execute();
      if (next.tags.join('\n') !== image.tags.join('\n')) {
        await trx.deleteFrom('image_tags').where('image_id', '=', id).execute();
        if (next.tags.length) await trx.insertInto('image_tags').values(next.tags.map((tag) => ({ image_id: id, tag }))).execute();
      }
    });
    return (await this.load(id))!;
  }

  async deleteImage(caller: Caller, id: string): Promise<void> {
    const image = await this.getImage(caller, id);
    if (image.protected) throw new Forbidden(`Image ${id} is protected and cannot be deleted.`);
    await this.db.deleteFrom('image_images').where('id', '=', id).execute();
    await this.store.delete(id).catch((err) => this.logger.warn(`could not delete data of image ${id}`, { error: String(err) }));
    await this.staging.delete(id).catch(() => undefined);
  }

  async deactivate(caller: Caller, id: string): Promise<void> {
    const image = await this.getImage(caller, id);
    if (image.status === 'deactivated') return;
    if (image.status !== 'active') throw new BadRequest(`Not allowed to deactivate image in status '${image.status}'`);
    await this.setStatus(id, 'active', 'deactivated');
  }

  async reactivate(caller: Caller, id: string): Promise<void> {
    const image = await this.getImage(caller, id);
    if (image.status === 'active') return;
    if (image.status !== 'deactivated') throw new BadRequest(`Not allowed to reactivate image in status '${image.status}'`);
    await this.setStatus(id, 'deactivated', 'active');
  }

  /** Moves status from→to atomically; false when the image was not in `from`. */
  private async setStatus(id: string, from: string, to: string, extra: Record<string, unknown> = {}): Promise<boolean> {
    const result = await this.db.updateTable('image_images').set({ status: to, updated_at: now(), ...extra })
      .where('id', '=', id).where('status', '=', from).executeTakeFirst();
    return Number(result.numUpdatedRows) > 0;
  }

  async addTag(caller: Caller, id: string, tag: string): Promise<void> {
    validateTag(tag);
    const image = await this.getImage(caller, id);
    if (image.tags.includes(tag)) return;
    try {
      await this.db.insertInto('image_tags').values({ image_id: id, tag }).execute();
    } catch (err) {
      if (!isUniqueViolation(err)) throw err;
    }
    await this.db.updateTable('image_images').set({ updated_at: now() }).where('id', '=', id).execute();
  }

  async removeTag(caller: Caller, id: string, tag: string): Promise<void> {
    await this.getImage(caller, id);
    const result = await this.db.deleteFrom('image_tags').where('image_id', '=', id).where('tag', '=', tag).executeTakeFirst();
    if (Number(result.numDeletedRows) === 0) throw new NotFound(`Tag ${tag} not found on image ${id}`);
    await this.db.updateTable('image_images').set({ updated_at: now() }).where('id', '=', id).execute();
  }

  // ---- quotas --------------------------------------------------------------------------

  private async checkCountQuota(owner: string | null, delta: number): Promise<void> {
    const limit = this.quotas.imageCountTotal;
    if (limit < 0 || owner === null) return;
    const row = await this.db.selectFrom('image_images').select((eb) => eb.fn.countAll().as('n')).where('owner', '=', owner).where('status', '!=', 'deleted').executeTakeFirst();
    const usage = Number(row?.n ?? 0);
    if (usage + delta > limit) {
      throw new OverQuota(`Project ${owner} is over a limit for [Resource image_count_total is over limit of ${limit} due to current usage ${usage} and delta ${delta}]`);
    }
  }

  /** Bytes the owner may still store (undefined = unlimited); 413 when nothing is left. */
  private async remainingBytes(owner: string | null): Promise<number | undefined> {
    const limit = this.quotas.imageSizeTotalBytes;
    if (limit < 0 || owner === null) return undefined;
    const row = await this.db.selectFrom('image_images').select((eb) => eb.fn.sum('size').as('total')).where('owner', '=', owner).where('status', '!=', 'deleted').executeTakeFirst();
    const usage = Number(row?.total ?? 0);
    return Math.max(0, limit - usage);
  }

  private sizeQuotaError(owner: string | null, remaining: number): () => Error {
    const limitMiB = this.quotas.imageSizeTotalBytes / (1024 * 1024);
    return () => new OverQuota(`Project ${owner} is over a limit for [Resource image_size_total is over limit of ${limitMiB} MiB: the upload exceeds the ${remaining} bytes remaining]`);
  }

  // ---- data ----------------------------------------------------------------------------

  private requireFormats(image: Image): void {
    if (!image.disk_format || !image.container_format) {
      throw new BadRequest('Properties disk_format, container_format must be set prior to saving data.');
    }
  }

  /**
   * Streams the request body into the store: queued → saving → active. Any failure (client
   * abort, quota, bad format) removes the data and leaves the image `killed`.
   */
  async upload(caller: Caller, id: string, data: Readable): Promise<Image> {
    const image = await this.getImage(caller, id);
    this.requireFormats(image);
    if (image.status !== 'queued') throw new Conflict(`Image status transition from ${image.status} to saving is not allowed`);
    const remaining = await this.remainingBytes(image.owner);
    if (!(await this.setStatus(id, 'queued', 'saving'))) throw new Conflict(`Image status transition from ${(await this.load(id))?.status ?? 'deleted'} to saving is not allowed`);
    let stored: StoredData | undefined;
    try {
      stored = await this.store.add(id, data, remaining === undefined ? {} : { maxBytes: remaining, onLimit: this.sizeQuotaError(image.owner, remaining) });
      const inspection = await this.inspect(this.store, id, image.disk_format!);
      return await this.activate(id, 'saving', stored, image.disk_format === 'raw' ? stored.size : inspection.virtualSize);
    } catch (err) {
      await this.kill(id, this.store, err);
      throw asClientError(err);
    }
  }

  /** Stage (interoperable import): queued → uploading, data kept in the staging store. */
  async stage(caller: Caller, id: string, data: Readable): Promise<void> {
    const image = await this.getImage(caller, id);
    if (image.status !== 'queued') throw new Conflict(`Image status transition from ${image.status} to uploading is not allowed`);
    const remaining = await this.remainingBytes(image.owner);
    if (!(await this.setStatus(id, 'queued', 'uploading'))) throw new Conflict('Image status transition to uploading is not allowed');
    try {
      await this.staging.add(id, data, remaining === undefined ? {} : { maxBytes: remaining, onLimit: this.sizeQuotaError(image.owner, remaining) });
    } catch (err) {
      await this.kill(id, this.staging, err);
      throw asClientError(err);
    }
    // The image may have been deleted while staging.
    if (!(await this.load(id))) await this.staging.delete(id);
  }

  /** Import (glance-direct): uploading → importing, then asynchronously → active (or killed). */
  async startImport(caller: Caller, id: string, method: string): Promise<void> {
    const image = await this.getImage(caller, id);
    if (method !== 'glance-direct') throw new BadRequest(`Import method ${method} is not supported by this cloud (available: glance-direct).`);
    this.requireFormats(image);
    if (image.status !== 'uploading') throw new Conflict(`Image needs to be staged before 'glance-direct' method can be used`);
    if (!(await this.setStatus(id, 'uploading', 'importing'))) throw new Conflict(`Image needs to be staged before 'glance-direct' method can be used`);
    const job = this.runImport(image).catch((err) => this.logger.error(`import of image ${id} failed`, { error: String(err) }));
    this.running.add(job);
    void job.finally(() => this.running.delete(job));
  }

  /** Waits for imports started by this process (tests, shutdown). */
  async settle(): Promise<void> {
    while (this.running.size) await Promise.all([...this.running]);
  }

  private async runImport(image: Image): Promise<void> {
    const id = image.id;
    let workDir: string | undefined;
    try {
      await this.inspect(this.staging, id, image.disk_format!);
      let source = await this.staging.get(id);
      let diskFormat = image.disk_format!;
      const target = this.conversionFormat;
      if (target && target !== diskFormat && convertible(diskFormat)) {
        workDir = await mkdtemp(join(tmpdir(), 'nubo-image-convert-'));
        source.destroy();
        const input = await this.localCopy(this.staging, id, workDir);
        const output = join(workDir, `converted.${target}`);
        await convertImage(input, diskFormat, output, target);
        diskFormat = target;
        source = createReadStream(output);
      }
      const remaining = await this.remainingBytes(image.owner);
      const stored = await this.store.add(id, source, remaining === undefined ? {} : { maxBytes: remaining, onLimit: this.sizeQuotaError(image.owner, remaining) });
      const inspection = await this.inspect(this.store, id, diskFormat);
      if (diskFormat !== image.disk_format) await this.db.updateTable('image_images').set({ disk_format: diskFormat }).where('id', '=', id).execute();
      await this.activate(id, 'importing', stored, diskFormat === 'raw' ? stored.size : inspection.virtualSize);
      await this.staging.delete(id);
    } catch (err) {
      await this.staging.delete(id).catch(() => undefined);
      await this.kill(id, this.store, err);
    } finally {
      if (workDir) await rm(workDir, { recursive: true, force: true });
    }
  }

  /** A local file with the data: the store's own when it has one, else a copy in `workDir`. */
  private async localCopy(store: ImageStore, id: string, workDir: string): Promise<string> {
    const local = store.localPath?.(id);
    if (local) return local;
    const path = join(workDir, 'data');
    await pipeline(await store.get(id), createWriteStream(path));
    return path;
  }

  private async inspect(store: ImageStore, id: string, diskFormat: string): Promise<{ virtualSize: number | null }> {
    let workDir: string | undefined;
    try {
      let path = store.localPath?.(id);
      if (!path) {
        workDir = await mkdtemp(join(tmpdir(), 'nubo-image-inspect-'));
        path = await this.localCopy(store, id, workDir);
      }
      return await inspectImage(path, diskFormat).catch((err) => { throw new BadRequest((err as Error).message); });
    } finally {
      if (workDir) await rm(workDir, { recursive: true, force: true });
    }
  }

  private async activate(id: string, from: string, stored: StoredData, virtualSize: number | null): Promise<Image> {
    const ok = await this.setStatus(id, from, 'active', {
      size: stored.size, checksum: stored.checksum, os_hash_algo: 'sha512', os_hash_value: stored.hashes.sha512,
      virtual_size: virtualSize, location: stored.location, failure_reason: null,
    });
    if (!ok) {
      // Deleted (or killed) while the data was arriving: keep no orphan data.
      await this.store.delete(id);
      throw new Conflict(`Image ${id} was deleted or changed while its data was being saved.`);
    }
    return (await this.load(id))!;
  }

  /** A failed upload or import: no data left behind, status killed with the reason. */
  private async kill(id: string, store: ImageStore, err: unknown): Promise<void> {
    await store.delete(id).catch(() => undefined);
    await this.store.delete(id).catch(() => undefined);
    const reason = err instanceof Error ? err.message : String(err);
    await this.db.updateTable('image_images').set({ status: 'killed', updated_at: now(), failure_reason: reason, location: null })
      .where('id', '=', id).where('status', 'in', ['saving', 'uploading', 'importing']).execute();
  }

  /** Data of an active image, optionally an inclusive byte range. */
  async download(caller: Caller, id: string, range?: ByteRange): Promise<{ image: Image; stream: Readable }> {
    const image = await this.getImage(caller, id);
    // As in Glance, only admins may still download a deactivated image.
    if (image.status === 'deactivated' && !caller.isAdmin) throw new Forbidden('The requested image has been deactivated. Image data download is forbidden.');
    if ((image.status !== 'active' && image.status !== 'deactivated') || image.size === null) throw new NoContent();
    return { image, stream: await this.store.get(id, range) };
  }

  // ---- members -------------------------------------------------------------------------

  async listMembers(caller: Caller, id: string): Promise<Member[]> {
    const image = await this.getImage(caller, id);
    if (image.visibility !== 'shared') throw new Forbidden('Only shared images have members.');
    let query = this.db.selectFrom('image_members').selectAll().where('image_id', '=', id);
    // A member sees only its own membership; the owner and admins see all.
    if (!caller.isAdmin && image.owner !== caller.projectId) query = query.where('member_id', '=', caller.projectId ?? '');
    return (await query.orderBy('created_at').orderBy('member_id').execute()) as Member[];
  }

  async getMember(caller: Caller, id: string, memberId: string): Promise<Member> {
    const image = await this.getImage(caller, id);
    if (!caller.isAdmin && image.owner !== caller.projectId && memberId !== caller.projectId) throw new NotFound(`${memberId} not found in the member list of the image ${id}.`);
    const member = await this.memberRow(id, memberId);
    if (!member) throw new NotFound(`${memberId} not found in the member list of the image ${id}.`);
    return member;
  }

  async addMember(caller: Caller, id: string, memberId: string): Promise<Member> {
    const image = await this.getImage(caller, id);
    if (image.visibility !== 'shared') throw new Forbidden('Only shared images have members.');
    if (!caller.isAdmin && image.owner !== caller.projectId) throw new Forbidden('You are not permitted to modify membership of this image.');
    const timestamp = now();
    const member: Member = { image_id: id, member_id: memberId, status: 'pending', created_at: timestamp, updated_at: timestamp };
    try {
      await this.db.insertInto('image_members').values(member).execute();
    } catch (err) {
      if (isUniqueViolation(err)) throw new Conflict(`Member ${memberId} is duplicated for image ${id}`);
      throw err;
    }
    return member;
  }

  async updateMember(caller: Caller, id: string, memberId: string, status: string): Promise<Member> {
    await this.getImage(caller, id);
    if (!(MEMBER_STATUSES as readonly string[]).includes(status)) throw new BadRequest(`Provided object does not match schema 'member': '${status}' is not one of ['pending', 'accepted', 'rejected']`);
    const member = await this.memberRow(id, memberId);
    if (!member) throw new NotFound(`${memberId} not found in the member list of the image ${id}.`);
    if (memberId !== caller.projectId && !caller.isAdmin) throw new Forbidden(`You are not permitted to modify 'status' on this image member.`);
    const updated_at = now();
    await this.db.updateTable('image_members').set({ status, updated_at }).where('image_id', '=', id).where('member_id', '=', memberId).execute();
    return { ...member, status, updated_at };
  }

  async deleteMember(caller: Caller, id: string, memberId: string): Promise<void> {
    const image = await this.getImage(caller, id);
    if (!caller.isAdmin && image.owner !== caller.projectId) throw new Forbidden('You are not permitted to modify membership of this image.');
    const result = await this.db.deleteFrom('image_members').where('image_id', '=', id).where('member_id', '=', memberId).executeTakeFirst();
    if (Number(result.numDeletedRows) === 0) throw new NotFound(`${memberId} not found in the member list of the image ${id}.`);
  }

  /** The failure reason recorded when an image ended killed (for operators and tests). */
  async failureReason(id: string): Promise<string | null> {
    const row = await this.db.selectFrom('image_images').select('failure_reason').where('id', '=', id).executeTakeFirst();
    return row?.failure_reason ?? null;
  }
}

/** An image without data: Glance answers 204 No Content to a download. */
export class NoContent extends NuboError {
  constructor() { super(204, 'No Content', 'The image has no data.'); }
}

/** Client aborts and store errors become a clear 4xx where they are the client's doing. */
function asClientError(err: unknown): unknown {
  if (err instanceof NuboError) return err;
  const code = (err as NodeJS.ErrnoException)?.code;
  if (code === 'ECONNRESET' || code === 'ERR_STREAM_PREMATURE_CLOSE' || (err as Error)?.message === 'aborted') {
    return new BadRequest('The image data upload was interrupted.');
  }
  return err;
}

function matchesIn(filter: string, value: string | null): boolean {
  if (filter.startsWith('in:')) return filter.slice(3).split(',').map((v) => v.trim().replace(/^"|"$/g, '')).includes(value ?? '');
  return value === filter;
}

function compareTime(iso: string, condition: { op: string; value: Date }): boolean {
  const a = Math.floor(Date.parse(iso) / 1000) * 1000;
  const b = condition.value.getTime();
  switch (condition.op) {
    case 'gt': return a > b;
    case 'gte': return a >= b;
    case 'lt': return a < b;
    case 'lte': return a <= b;
    case 'neq': return a !== b;
    default: return a === b;
  }
}

function compareValues(a: unknown, b: unknown): number {
  if (a === b) return 0;
  if (a === null || a === undefined) return -1;
  if (b === null || b === undefined) return 1;
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  return String(a) < String(b) ? -1 : 1;
}
