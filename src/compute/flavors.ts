// Flavors (Nova's instance types): sizes servers are built from, public or shared with chosen
// projects, with extra specs the scheduler reads. Keyed by the API id (Nova's "flavorid").
import { BadRequest, Conflict, NotFound } from '../core/errors.js';
import { newUuid } from '../core/ids.js';
import { isUniqueViolation, transaction, type Database } from '../db/index.js';
import type { ComputeDeps } from './index.js';

/** What a flavor makes a server: its size and the extra specs the scheduler and drivers read. */
export interface FlavorSize {
  id: string;
  name: string;
  vcpus: number;
  memoryMb: number;
  rootGb: number;
  ephemeralGb: number;
  swapMb: number;
  extraSpecs: Record<string, string>;
}

export interface Flavor extends FlavorSize {
  rxtxFactor: number;
  isPublic: boolean;
  disabled: boolean;
  description: string | null;
  createdAt: string;
  updatedAt: string | null;
}

export interface NewFlavor {
  id?: string | null;
  name: string;
  vcpus: number;
  memoryMb: number;
  rootGb: number;
  ephemeralGb?: number;
  swapMb?: number;
  rxtxFactor?: number;
  isPublic?: boolean;
  description?: string | null;
}

/** Who looks at flavors: admins see every flavor, others public ones and those shared with their project. */
export interface FlavorViewer { projectId?: string; isAdmin: boolean }

export interface FlavorListOptions {
  /** true: public ones (plus private ones shared with the viewer's project); false: private only; null: all. */
  isPublic: boolean | null;
  includeDisabled: boolean;
  minRam?: number;
  minDisk?: number;
  sortKey: string;
  sortDir: 'asc' | 'desc';
  limit: number;
  marker?: string;
}

/** Nova's flavor sort keys mapped to our fields (vcpu_weight is not kept: it sorts as unset). */
const SORT_FIELDS: Record<string, (f: Flavor) => string | number | boolean | null> = {
  created_at: (f) => f.createdAt, description: (f) => f.description, disabled: (f) => f.disabled, ephemeral_gb: (f) => f.ephemeralGb,
  flavorid: (f) => f.id, id: (f) => f.createdAt, is_public: (f) => f.isPublic, memory_mb: (f) => f.memoryMb, name: (f) => f.name,
  root_gb: (f) => f.rootGb, rxtx_factor: (f) => f.rxtxFactor, swap: (f) => f.swapMb, updated_at: (f) => f.updatedAt, vcpu_weight: () => null,
  vcpus: (f) => f.vcpus,
};
export const FLAVOR_SORT_KEYS = Object.keys(SORT_FIELDS);

/** devstack's default flavors, created when a cloud has none. */
const DEFAULT_FLAVORS: NewFlavor[] = [
  { id: '1', name: 'm1.tiny', vcpus: 1, memoryMb: 512, rootGb: 1 },
  { id: '2', name: 'm1.small', vcpus: 1, memoryMb: 2048, rootGb: 20 },
  { id: '3', name: 'm1.medium', vcpus: 2, memoryMb: 4096, rootGb: 40 },
  { id: '4', name: 'm1.large', vcpus: 4, memoryMb: 8192, rootGb: 80 },
  { id: '5', name: 'm1.xlarge', vcpus: 8, memoryMb: 16384, rootGb: 160 },
];

const MAX_INT = 2147483647;
const SQL_SP_FLOAT_MAX = 3.40282e+38;

function compare(a: unknown, b: unknown): number {
  if (a === b) return 0;
  if (a === null || a === undefined) return -1;
  if (b === null || b === undefined) return 1;
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  if (typeof a === 'boolean' && typeof b === 'boolean') return Number(a) - Number(b);
  return String(a) < String(b) ? -1 : 1;
}

export class FlavorService {
  private readonly database: Database;

  constructor(deps: Pick<ComputeDeps, 'database'>) {
    this.database = deps.database;
  }

  private get db() { return this.database.db; }

  private toFlavor(row: any, specs: Record<string, string>): Flavor {
    return {
      id: row.id, name: row.name, vcpus: Number(row.vcpus), memoryMb: Number(row.memory_mb), rootGb: Number(row.root_gb),
      ephemeralGb: Number(row.ephemeral_gb), swapMb: Number(row.swap), rxtxFactor: Number(row.rxtx_factor),
      isPublic: Number(row.is_public) === 1, disabled: Number(row.disabled) === 1, description: row.description ?? null,
      extraSpecs: specs, createdAt: row.created_at, updatedAt: row.updated_at ?? null,
    };
  }

  private async specsOf(ids: string[]): Promise<Map<string, Record<string, string>>> {
    const out = new Map<string, Record<string, string>>();
    for (let i = 0; i < ids.length; i += 500) {
      const rows = await this.db.selectFrom('compute_flavor_extra_specs').selectAll().where('flavor_id', 'in', ids.slice(i, i + 500)).execute();
      for (const r of rows) (out.get(r.flavor_id) ?? out.set(r.flavor_id, {}).get(r.flavor_id)!)[r.key] = r.value;
    }
    return out;
  }

  private async projectsOf(id: string): Promise<string[]> {
    const rows = await this.db.selectFrom('compute_flavor_projects').select('project_id').where('flavor_id', '=', id).execute();
    return rows.map((r: any) => r.project_id).sort();
  }

  /**
   * The flavor with this id, as server create and the API use it. With a viewer that is not an
   * admin, a private flavor not shared with the viewer's project is not found, as in Nova.
   */
  async get(id: string, viewer?: FlavorViewer): Promise<Flavor> {
    const row = await this.db.selectFrom('compute_flavors').selectAll().where('id', '=', id).executeTakeFirst();
    if (!row) throw new NotFound(`Flavor ${id} could not be found.`);
    if (viewer && !viewer.isAdmin && Number(row.is_public) !== 1) {
      const shared = viewer.projectId ? await this.db.selectFrom('compute_flavor_projects').select('project_id')
        .where('flavor_id', '=', id).where('project_id', '=', viewer.projectId).executeTakeFirst() : undefined;
      if (!shared) throw new NotFound(`Flavor ${id} could not be found.`);
    }
    const specs = await this.specsOf([id]);
    return this.toFlavor(row, specs.get(id) ?? {});
  }

  /** Flavors the viewer may list, filtered, sorted and paged as Nova's FlavorList.get_all. */
  async list(viewer: FlavorViewer, options: FlavorListOptions): Promise<Flavor[]> {
    const rows = await this.db.selectFrom('compute_flavors').selectAll().execute();
    const shared = new Set<string>();
    if (viewer.projectId) {
      for (const r of await this.db.selectFrom('compute_flavor_projects').select('flavor_id').where('project_id', '=', viewer.projectId).execute()) shared.add(r.flavor_id);
    }
    const specs = await this.specsOf(rows.map((r: any) => r.id));
    let flavors = rows.map((r: any) => this.toFlavor(r, specs.get(r.id) ?? {})).filter((f) => {
      if (options.isPublic === true && !(f.isPublic || shared.has(f.id))) return false;
      if (options.isPublic === false && f.isPublic) return false;
      if (!options.includeDisabled && f.disabled) return false;
      if (options.minRam !== undefined && f.memoryMb < options.minRam) return false;
      if (options.minDisk !== undefined && f.rootGb < options.minDisk) return false;
      return true;
    });
    const key = SORT_FIELDS[options.sortKey] ?? SORT_FIELDS.flavorid;
    const sign = options.sortDir === 'desc' ? -1 : 1;
    flavors.sort((a, b) => sign * (compare(key(a), key(b)) || compare(a.createdAt, b.createdAt) || compare(a.id, b.id)));
    if (options.marker !== undefined) {
      const index = flavors.findIndex((f) => f.id === options.marker);
      if (index < 0) throw new BadRequest(`marker [${options.marker}] not found`);
      flavors = flavors.slice(index + 1);
    }
    return flavors.slice(0, options.limit);
  }

  /** Creates a flavor (values already validated by the API's schema); 409 on a duplicate name or id. */
  async create(input: NewFlavor): Promise<Flavor> {
    const id = input.id === undefined || input.id === null || input.id === '' ? newUuid() : String(input.id);
    const name = input.name.trim();
    const check = (value: number, field: string, min: number): number => {
      if (!Number.isInteger(value)) throw new BadRequest(`Invalid input received: ${field} must be an integer`);
      if (value < min) throw new BadRequest(`Invalid input received: ${field} must be >= ${min}`);
      if (value > MAX_INT) throw new BadRequest(`Invalid input received: ${field} must be <= ${MAX_INT}`);
      return value;
    };
    const rxtx = input.rxtxFactor ?? 1;
    if (!(rxtx > 0 && rxtx <= SQL_SP_FLOAT_MAX)) throw new BadRequest(`Invalid input received: 'rxtx_factor' argument must be a float between 0 and 3.40282e+38`);
    const now = new Date().toISOString();
    const row = {
      id, name, vcpus: check(input.vcpus, 'vcpus', 1), memory_mb: check(input.memoryMb, 'ram', 1), root_gb: check(input.rootGb, 'disk', 0),
      ephemeral_gb: check(input.ephemeralGb ?? 0, 'ephemeral', 0), swap: check(input.swapMb ?? 0, 'swap', 0), rxtx_factor: rxtx,
      is_public: input.isPublic === false ? 0 : 1, disabled: 0, description: input.description ?? null, created_at: now, updated_at: null,
    };
    const existing = async () => {
      if (await this.db.selectFrom('compute_flavors').select('id').where('id', '=', id).executeTakeFirst()) throw new Conflict(`Flavor with ID ${id} already exists.`);
      if (await this.db.selectFrom('compute_flavors').select('id').where('name', '=', name).executeTakeFirst()) throw new Conflict(`Flavor with name ${name} already exists.`);
    };
    await existing();
    try {
      await this.db.insertInto('compute_flavors').values(row).execute();
    } catch (err) {
      if (isUniqueViolation(err)) {
        await existing();
        throw new Conflict(`Flavor with name ${name} already exists.`);
      }
      throw err;
    }
    return this.get(id);
  }

  async updateDescription(id: string, description: string | null): Promise<Flavor> {
    await this.get(id);
    await this.db.updateTable('compute_flavors').set({ description, updated_at: new Date().toISOString() }).where('id', '=', id).execute();
    return this.get(id);
  }

  async delete(id: string): Promise<void> {
    await transaction(this.database, async (trx) => {
      const result = await trx.deleteFrom('compute_flavors').where('id', '=', id).executeTakeFirst();
      if (Number(result.numDeletedRows) === 0) throw new NotFound(`Flavor ${id} could not be found.`);
      await trx.deleteFrom('compute_flavor_extra_specs').where('flavor_id', '=', id).execute();
      await trx.deleteFrom('compute_flavor_projects').where('flavor_id', '=', id).execute();
    });
  }

  // ---- access (private flavors) ----------------------------------------------------------

  /** Projects a private flavor is shared with; 404 for a public flavor, as Nova answers. */
  async accessList(id: string): Promise<string[]> {
    const flavor = await this.get(id);
    if (flavor.isPublic) throw new NotFound('Access list not available for public flavors.');
    return this.projectsOf(id);
  }

  /** Shares a flavor with a project; `refusePublic` (microversion ≥ 2.7) answers 409 for public flavors. */
  async addAccess(id: string, projectId: string, refusePublic: boolean): Promise<string[]> {
    const flavor = await this.get(id);
    if (refusePublic && flavor.isPublic) throw new Conflict('Can not add access to a public flavor.');
    try {
      await this.db.insertInto('compute_flavor_projects').values({ flavor_id: id, project_id: projectId }).execute();
    } catch (err) {
      if (isUniqueViolation(err)) throw new Conflict(`Flavor access already exists for flavor ${id} and project ${projectId} combination.`);
      throw err;
    }
    return this.projectsOf(id);
  }

  async removeAccess(id: string, projectId: string): Promise<string[]> {
    await this.get(id);
    const result = await this.db.deleteFrom('compute_flavor_projects').where('flavor_id', '=', id).where('project_id', '=', projectId).executeTakeFirst();
    if (Number(result.numDeletedRows) === 0) throw new NotFound(`Flavor access not found for ${id} / ${projectId} combination.`);
    return this.projectsOf(id);
  }

  // ---- extra specs -----------------------------------------------------------------------

  /** Adds or replaces the given extra specs (others stay). */
  async setExtraSpecs(id: string, specs: Record<string, string>): Promise<Record<string, string>> {
    await this.get(id);
    await transaction(this.database, async (trx) => {
      for (const [key, value] of Object.entries(specs)) {
        const updated = await trx.updateTable('compute_flavor_extra_specs').set({ value }).where('flavor_id', '=', id).where('key', '=', key).executeTakeFirst();
        if (Number(updated.numUpdatedRows) === 0) await trx.insertInto('compute_flavor_extra_specs').values({ flavor_id: id, key, value }).execute();
      }
      await trx.updateTable('compute_flavors').set({ updated_at: new Date().toISOString() }).where('id', '=', id).execute();
    });
    return (await this.get(id)).extraSpecs;
  }

  async deleteExtraSpec(id: string, key: string): Promise<void> {
    await this.get(id);
    const result = await this.db.deleteFrom('compute_flavor_extra_specs').where('flavor_id', '=', id).where('key', '=', key).executeTakeFirst();
    if (Number(result.numDeletedRows) === 0) throw new NotFound(`Flavor ${id} has no extra specs with key ${key}.`);
  }

  /** Creates devstack's m1.* flavors (ids 1..5) when the cloud has no flavor at all. Idempotent. */
  async ensureDefaultFlavors(): Promise<void> {
    const any = await this.db.selectFrom('compute_flavors').select('id').limit(1).executeTakeFirst();
    if (any) return;
    for (const flavor of DEFAULT_FLAVORS) {
      try {
        await this.create(flavor);
      } catch (err) {
        if (!(err instanceof Conflict)) throw err; // another controller created it first
      }
    }
  }
}
