// The Placement service: resource providers (trees, generations), inventories, resource
// classes, traits, aggregates, consumers and their allocations, usages, and allocation
// candidates. Claims (putAllocations/postAllocations) check capacity in the database and bump
// provider generations with `... WHERE generation = <read>` inside one transaction, retrying
// when another claim got there first, so concurrent claims never oversubscribe on SQLite,
// PostgreSQL or MariaDB. Reads for candidates come from ProviderView (view.ts).
import { sql, type Kysely } from 'kysely';
import { BadRequest, Conflict, NotFound } from '../core/errors.js';
import { newUuid } from '../core/ids.js';
import type { Logger } from '../core/log.js';
import { isUniqueViolation, transaction, type Database } from '../db/index.js';
import { findCandidates, providerMatches, type CandidateQuery, type Candidates, type RequestGroup } from './candidates.js';
import { CODES, generationConflict, providerNotFound, withCode } from './errors.js';
import { CUSTOM_NAME, STANDARD_CLASS_SET, STANDARD_RESOURCE_CLASSES, STANDARD_TRAIT_SET, STANDARD_TRAITS } from './standard.js';
import { ProviderView, capacityOf, chunks, inventoryOf, type Inventory } from './view.js';

export type { AllocationRequest, CandidateQuery, Candidates, ProviderSummary, RequestGroup } from './candidates.js';
export type { Inventory } from './view.js';

/** Inventory fields as given: only total is required. */
export interface InventoryInput {
  total: number;
  reserved?: number;
  min_unit?: number;
  max_unit?: number;
  step_size?: number;
  allocation_ratio?: number;
}

export interface ResourceProvider {
  uuid: string;
  name: string;
  generation: number;
  parent_provider_uuid: string | null;
  root_provider_uuid: string;
  created_at: string;
  updated_at: string;
}

export interface ProviderFilters {
  name?: string;
  uuid?: string;
  /** Providers with capacity for these amounts themselves, carrying these traits, in these aggregates. */
  group?: RequestGroup;
  /** Providers in the tree of this provider. */
  inTree?: string;
}

export type Allocations = Record<string, { resources: Record<string, number> }>;

export interface ConsumerAllocations {
  allocations: Allocations;
  projectId: string;
  userId: string;
  /** null: the consumer is new; undefined: not checked (microversions before 1.28). */
  consumerGeneration: number | null | undefined;
  consumerType?: string;
}

/** Placement's defaults for omitted inventory fields. */
export const MAX_INT = 2147483647;
const DEFAULT_CONSUMER_TYPE = 'UNKNOWN';
/** Attempts of a claim or a generation-retrying helper before giving up with a 409. */
const ATTEMPTS = 10;

/** A claim that lost a race on a provider generation it read itself: the transaction is retried. */
class RetryClaim extends Error {}

const now = (): string => new Date().toISOString();
let lastCreated = 0;
/** Creation times strictly increase within a process, so providers list in the order they were made. */
const creationTime = (): string => {
  lastCreated = Math.max(Date.now(), lastCreated + 1);
  return new Date(lastCreated).toISOString();
};
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function isRetryable(err: unknown): boolean {
  if (err instanceof RetryClaim) return true;
  const e = err as { code?: string; errno?: number };
  return e?.code === '40P01' || e?.code === '40001' || e?.code === 'ER_LOCK_DEADLOCK' || e?.errno === 1213
    || e?.code === 'ER_LOCK_WAIT_TIMEOUT' || e?.errno === 1205 || e?.code === 'SQLITE_BUSY' || e?.code === 'SQLITE_BUSY_SNAPSHOT';
}

function providerOf(row: Record<string, any>): ResourceProvider {
  return {
    uuid: row.uuid, name: row.name, generation: Number(row.generation), parent_provider_uuid: row.parent_provider_uuid ?? null,
    root_provider_uuid: row.root_provider_uuid, created_at: row.created_at, updated_at: row.updated_at,
  };
}

/** Fills defaults and checks an inventory record the way Placement's schema and objects do. */
export function normalizeInventory(cls: string, input: InventoryInput, providerUuid: string): Inventory {
  const inv: Inventory = {
    total: input.total,
    reserved: input.reserved ?? 0,
    min_unit: input.min_unit ?? 1,
    max_unit: input.max_unit ?? MAX_INT,
    step_size: input.step_size ?? 1,
    allocation_ratio: input.allocation_ratio ?? 1.0,
  };
  for (const field of ['total', 'reserved', 'min_unit', 'max_unit', 'step_size'] as const) {
    const v = inv[field];
    const min = field === 'reserved' ? 0 : 1;
    if (!Number.isInteger(v) || v < min || v > MAX_INT) {
      throw new BadRequest(`Bad inventory ${cls} for resource provider ${providerUuid}: '${field}' must be an integer between ${min} and ${MAX_INT}, got ${JSON.stringify(v)}`);
    }
  }
  if (typeof inv.allocation_ratio !== 'number' || !Number.isFinite(inv.allocation_ratio) || inv.allocation_ratio <= 0 || inv.allocation_ratio > 3.40282e38) {
    throw new BadRequest(`Bad inventory ${cls} for resource provider ${providerUuid}: 'allocation_ratio' must be a positive number`);
  }
  if (inv.reserved > inv.total) {
    throw new BadRequest(`Unable to update inventory for resource provider ${providerUuid}: Invalid inventory for '${cls}' on resource provider '${providerUuid}'. The reserved value is greater than total.`);
  }
  if (inv.min_unit > inv.max_unit) {
    throw new BadRequest(`Unable to update inventory for resource provider ${providerUuid}: Invalid inventory for '${cls}': min_unit greater than max_unit.`);
  }
  return inv;
}

function sameInventories(a: Record<string, Inventory>, b: Record<string, Inventory>): boolean {
  const ka = Object.keys(a).sort();
  const kb = Object.keys(b).sort();
  if (ka.join() !== kb.join()) return false;
  return ka.every((k) => (Object.keys(a[k]) as (keyof Inventory)[]).every((f) => a[k][f] === b[k][f]));
}

export class PlacementService {
  readonly view: ProviderView;
  private readonly database: Database;
  private readonly logger?: Logger;
  private changesSincePrune = 0;

  constructor(options: { database: Database; logger?: Logger }) {
    this.database = options.database;
    this.logger = options.logger;
    this.view = new ProviderView(options.database);
  }

  private get db(): Kysely<any> { return this.database.db; }

  /** Runs a write transaction, retrying deadlocks, busy databases and lost generation races. */
  private async write<T>(fn: (trx: Kysely<any>) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await transaction(this.database, fn);
      } catch (err) {
        if (attempt >= ATTEMPTS || !isRetryable(err)) {
          if (err instanceof RetryClaim) throw generationConflict('resource provider generation conflict: too many concurrent updates, try again');
          throw err;
        }
        await sleep(Math.random() * 5 * attempt);
      }
    }
  }

  /**
   * Records that these providers changed (for every process's ProviderView). Runs last in a
   * write transaction: the state row's lock orders versions by commit.
   */
  private async noteChange(trx: Kysely<any>, uuids: Iterable<string>): Promise<void> {
    const list = [...new Set(uuids)];
    if (list.length === 0) return;
    await trx.updateTable('placement_state').set({ version: sql`version + 1` }).where('id', '=', 'providers').execute();
    const row = await trx.selectFrom('placement_state').select('version').where('id', '=', 'providers').executeTakeFirstOrThrow();
    const version = Number(row.version);
    for (const part of chunks(list)) await trx.insertInto('placement_changes').values(part.map((provider_uuid) => ({ version, provider_uuid }))).execute();
    if (++this.changesSincePrune >= 1000) {
      this.changesSincePrune = 0;
      await trx.deleteFrom('placement_changes').where('version', '<', version - 20000).execute();
    }
  }

  /** Bumps a provider's generation if it is still `expected`; 409 concurrent_update otherwise. */
  private async bumpGeneration(trx: Kysely<any>, uuid: string, expected: number): Promise<number> {
    const result = await trx.updateTable('placement_resource_providers').set({ generation: expected + 1, updated_at: now() })
      .where('uuid', '=', uuid).where('generation', '=', expected).executeTakeFirst();
    if (Number(result.numUpdatedRows) === 0) {
      await this.providerRow(trx, uuid);
      throw generationConflict(`resource provider generation conflict: the provider's generation is not ${expected}`);
    }
    return expected + 1;
  }

  private async providerRow(trx: Kysely<any>, uuid: string): Promise<ResourceProvider> {
    const row = await trx.selectFrom('placement_resource_providers').selectAll().where('uuid', '=', uuid).executeTakeFirst();
    if (!row) throw providerNotFound(uuid);
    return providerOf(row);
  }

  // ---- resource providers ----

  async createProvider(input: { name: string; uuid?: string; parent_provider_uuid?: string | null }): Promise<ResourceProvider> {
    const uuid = input.uuid ?? newUuid();
    try {
      return await this.write(async (trx) => {
        let root = uuid;
        if (input.parent_provider_uuid) {
          const parent = await trx.selectFrom('placement_resource_providers').selectAll().where('uuid', '=', input.parent_provider_uuid).executeTakeFirst();
          if (!parent) throw new BadRequest(`parent provider UUID does not exist.`);
          root = parent.root_provider_uuid;
        }
        await this.checkNameFree(trx, input.name, uuid);
        const existing = await trx.selectFrom('placement_resource_providers').select('uuid').where('uuid', '=', uuid).executeTakeFirst();
        if (existing) throw withCode(new Conflict(`Conflicting resource provider uuid: ${uuid} already exists.`), CODES.duplicateName);
        const ts = creationTime();
        const row = { uuid, name: input.name, generation: 0, parent_provider_uuid: input.parent_provider_uuid ?? null, root_provider_uuid: root, created_at: ts, updated_at: ts };
        await trx.insertInto('placement_resource_providers').values(row).execute();
        await this.noteChange(trx, [uuid]);
        return providerOf(row);
      });
    } catch (err) {
      if (isUniqueViolation(err)) throw withCode(new Conflict(`Conflicting resource provider name: ${input.name} already exists.`), CODES.duplicateName);
      throw err;
    }
  }

  private async checkNameFree(trx: Kysely<any>, name: string, uuid: string): Promise<void> {
    const clash = await trx.selectFrom('placement_resource_providers').select('uuid').where('name', '=', name).executeTakeFirst();
    if (clash && clash.uuid !== uuid) throw withCode(new Conflict(`Conflicting resource provider name: ${name} already exists.`), CODES.duplicateName);
  }

  async getProvider(uuid: string): Promise<ResourceProvider> {
    return this.providerRow(this.db, uuid);
  }

  /** Providers matching the filters, in creation order (answered from the view). */
  async listProviders(filters: ProviderFilters = {}): Promise<ResourceProvider[]> {
    await this.view.refresh();
    let treeRoot: string | undefined;
    if (filters.inTree !== undefined) {
      const p = this.view.providers.get(filters.inTree);
      if (!p) return [];
      treeRoot = p.root;
    }
    const out: ResourceProvider[] = [];
    for (const p of this.view.providers.values()) {
      if (filters.name !== undefined && p.name !== filters.name) continue;
      if (filters.uuid !== undefined && p.uuid !== filters.uuid) continue;
      if (treeRoot !== undefined && p.root !== treeRoot) continue;
      if (filters.group && !providerMatches(p, filters.group)) continue;
      out.push({ uuid: p.uuid, name: p.name, generation: p.generation, parent_provider_uuid: p.parent, root_provider_uuid: p.root, created_at: p.created_at, updated_at: p.updated_at });
    }
    return out;
  }

  /**
   * Renames and/or re-parents a provider. Before 1.37 a parent, once set, cannot change
   * (`allowReparent` false); from 1.37 a provider may move to another tree or become a root.
   */
  async updateProvider(uuid: string, input: { name: string; parent_provider_uuid?: string | null }, options: { allowReparent: boolean }): Promise<ResourceProvider> {
    try {
      return await this.write(async (trx) => {
        const current = await this.providerRow(trx, uuid);
        await this.checkNameFree(trx, input.name, uuid);
        let parent = current.parent_provider_uuid;
        let root = current.root_provider_uuid;
        const changed = new Set<string>([uuid]);
        if (input.parent_provider_uuid !== undefined && input.parent_provider_uuid !== current.parent_provider_uuid) {
          const wanted = input.parent_provider_uuid;
          if (current.parent_provider_uuid !== null && !options.allowReparent) {
            throw new BadRequest('Unable to save resource provider ' + uuid + ': Object action update failed because: re-parenting a provider is not currently allowed.');
          }
          if (wanted === null) {
            if (!options.allowReparent) throw new BadRequest(`Unable to save resource provider ${uuid}: Object action update failed because: un-parenting a provider is not currently allowed.`);
            root = uuid;
          } else {
            const parentRow = await trx.selectFrom('placement_resource_providers').selectAll().where('uuid', '=', wanted).executeTakeFirst();
            if (!parentRow) throw new BadRequest('parent provider UUID does not exist.');
            // No loops: the new parent must not be in this provider's subtree.
            const subtree = await this.subtreeUuids(trx, current);
            if (subtree.has(wanted)) throw new BadRequest(`creating loop in the provider tree is not allowed.`);
            root = parentRow.root_provider_uuid;
          }
          parent = wanted;
          if (root !== current.root_provider_uuid) {
            const subtree = await this.subtreeUuids(trx, current);
            for (const part of chunks([...subtree])) {
              await trx.updateTable('placement_resource_providers').set({ root_provider_uuid: root }).where('uuid', 'in', part).execute();
            }
            for (const u of subtree) changed.add(u);
          }
        }
        const ts = now();
        await trx.updateTable('placement_resource_providers')
          .set({ name: input.name, parent_provider_uuid: parent, root_provider_uuid: root, generation: current.generation + 1, updated_at: ts })
          .where('uuid', '=', uuid).execute();
        await this.noteChange(trx, changed);
        return { ...current, name: input.name, parent_provider_uuid: parent, root_provider_uuid: root, generation: current.generation + 1, updated_at: ts };
      });
    } catch (err) {
      if (isUniqueViolation(err)) throw withCode(new Conflict(`Conflicting resource provider name: ${input.name} already exists.`), CODES.duplicateName);
      throw err;
    }
  }

  private async subtreeUuids(trx: Kysely<any>, provider: ResourceProvider): Promise<Set<string>> {
    const rows = await trx.selectFrom('placement_resource_providers').select(['uuid', 'parent_provider_uuid']).where('root_provider_uuid', '=', provider.root_provider_uuid).execute();
    const out = new Set<string>([provider.uuid]);
    let grew = true;
    while (grew) {
      grew = false;
      for (const r of rows) if (r.parent_provider_uuid && out.has(r.parent_provider_uuid) && !out.has(r.uuid)) { out.add(r.uuid); grew = true; }
    }
    return out;
  }

  /** Deletes a provider (404 when missing; 409 while it has allocations or children). */
  async deleteProvider(uuid: string): Promise<void> {
    await this.write(async (trx) => {
      await this.providerRow(trx, uuid);
      const child = await trx.selectFrom('placement_resource_providers').select('uuid').where('parent_provider_uuid', '=', uuid).executeTakeFirst();
      if (child) throw withCode(new Conflict(`Unable to delete parent resource provider ${uuid}: It has child resource providers.`), CODES.cannotDeleteParent);
      const used = await trx.selectFrom('placement_allocations').select('consumer_uuid').where('provider_uuid', '=', uuid).executeTakeFirst();
      if (used) throw withCode(new Conflict(`Unable to delete resource provider ${uuid}: Resource provider has allocations.`), CODES.providerInUse);
      for (const table of ['placement_inventories', 'placement_provider_traits', 'placement_provider_aggregates']) {
        await trx.deleteFrom(table).where('provider_uuid', '=', uuid).execute();
      }
      await trx.deleteFrom('placement_resource_providers').where('uuid', '=', uuid).execute();
      await this.noteChange(trx, [uuid]);
    });
  }

  // ---- inventories ----

  async getInventories(uuid: string): Promise<{ generation: number; inventories: Record<string, Inventory> }> {
    const provider = await this.providerRow(this.db, uuid);
    return { generation: provider.generation, inventories: await this.inventoriesOf(this.db, uuid) };
  }

  private async inventoriesOf(trx: Kysely<any>, uuid: string): Promise<Record<string, Inventory>> {
    const rows = await trx.selectFrom('placement_inventories').selectAll().where('provider_uuid', '=', uuid).orderBy('resource_class').execute();
    return Object.fromEntries(rows.map((r) => [r.resource_class, inventoryOf(r)]));
  }

  private async usedByClass(trx: Kysely<any>, uuid: string): Promise<Map<string, number>> {
    const rows = await trx.selectFrom('placement_allocations').select(['resource_class', sql<number>`sum(used)`.as('used')])
      .where('provider_uuid', '=', uuid).groupBy('resource_class').execute();
    return new Map(rows.map((r) => [r.resource_class as string, Number(r.used)]));
  }

  private async checkClassesExist(trx: Kysely<any>, classes: string[]): Promise<void> {
    const custom = classes.filter((c) => !STANDARD_CLASS_SET.has(c));
    if (custom.length === 0) return;
    const rows = await trx.selectFrom('placement_custom_resource_classes').select('name').where('name', 'in', custom).execute();
    const known = new Set(rows.map((r) => r.name));
    const missing = custom.filter((c) => !known.has(c));
    if (missing.length) throw new BadRequest(`Unknown resource class in inventory for resource provider: ${missing.join(', ')}`);
  }

  /**
   * Replaces all inventories of a provider at generation `generation` (409 concurrent_update
   * when it moved). Removing a class that has allocations is a 409 inventory.inuse.
   */
  async setInventories(uuid: string, generation: number, input: Record<string, InventoryInput>, options: { allowSame?: boolean } = {}): Promise<{ generation: number; inventories: Record<string, Inventory> }> {
    const inventories: Record<string, Inventory> = {};
    for (const [cls, inv] of Object.entries(input)) inventories[cls] = normalizeInventory(cls, inv, uuid);
    return this.write(async (trx) => {
      await this.checkClassesExist(trx, Object.keys(inventories));
      const current = await this.inventoriesOf(trx, uuid);
      const provider = await this.providerRow(trx, uuid);
      if (options.allowSame && provider.generation === generation && sameInventories(current, inventories)) return { generation, inventories: current };
      const next = await this.bumpGeneration(trx, uuid, generation);
      const used = await this.usedByClass(trx, uuid);
      const removed = Object.keys(current).filter((cls) => !(cls in inventories));
      const inUse = removed.filter((cls) => (used.get(cls) ?? 0) > 0);
      if (inUse.length) {
        throw withCode(new Conflict(`Inventory for '${inUse.join(', ')}' on resource provider '${uuid}' in use.`), CODES.inventoryInUse);
      }
      await this.writeInventories(trx, uuid, current, inventories, used);
      await this.noteChange(trx, [uuid]);
      return { generation: next, inventories };
    });
  }

  private async writeInventories(trx: Kysely<any>, uuid: string, current: Record<string, Inventory>, wanted: Record<string, Inventory>, used: Map<string, number>): Promise<void> {
    for (const cls of Object.keys(current)) {
      if (!(cls in wanted)) await trx.deleteFrom('placement_inventories').where('provider_uuid', '=', uuid).where('resource_class', '=', cls).execute();
    }
    for (const [cls, inv] of Object.entries(wanted)) {
      if ((used.get(cls) ?? 0) > capacityOf(inv)) {
        this.logger?.warn(`resource provider ${uuid}: new inventory of ${cls} has capacity ${capacityOf(inv)} below its usage ${used.get(cls)}`);
      }
      if (cls in current) {
        await trx.updateTable('placement_inventories').set(inv).where('provider_uuid', '=', uuid).where('resource_class', '=', cls).execute();
      } else {
        await trx.insertInto('placement_inventories').values({ provider_uuid: uuid, resource_class: cls, ...inv }).execute();
      }
    }
  }

  /** POST /resource_providers/{uuid}/inventories: one new class (409 when it exists). */
  async addInventory(uuid: string, generation: number, cls: string, input: InventoryInput): Promise<{ generation: number; inventory: Inventory }> {
    const inv = normalizeInventory(cls, input, uuid);
    return this.write(async (trx) => {
      await this.checkClassesExist(trx, [cls]);
      const current = await this.inventoriesOf(trx, uuid);
      await this.providerRow(trx, uuid);
      if (cls in current) throw new Conflict(`Update conflict: Inventory for ${cls} on resource provider ${uuid} already exists.`);
      const next = await this.bumpGeneration(trx, uuid, generation);
      await this.writeInventories(trx, uuid, current, { ...current, [cls]: inv }, new Map());
      await this.noteChange(trx, [uuid]);
      return { generation: next, inventory: inv };
    });
  }

  async getInventory(uuid: string, cls: string): Promise<{ generation: number; inventory: Inventory }> {
    const { generation, inventories } = await this.getInventories(uuid);
    const inventory = inventories[cls];
    if (!inventory) throw new NotFound(`No inventory of class ${cls} for ${uuid}`);
    return { generation, inventory };
  }

  /** PUT /resource_providers/{uuid}/inventories/{class}: updates or adds one class. */
  async setInventory(uuid: string, generation: number, cls: string, input: InventoryInput): Promise<{ generation: number; inventory: Inventory }> {
    const inv = normalizeInventory(cls, input, uuid);
    return this.write(async (trx) => {
      await this.checkClassesExist(trx, [cls]);
      const current = await this.inventoriesOf(trx, uuid);
      await this.providerRow(trx, uuid);
      const next = await this.bumpGeneration(trx, uuid, generation);
      await this.writeInventories(trx, uuid, current, { ...current, [cls]: inv }, await this.usedByClass(trx, uuid));
      await this.noteChange(trx, [uuid]);
      return { generation: next, inventory: inv };
    });
  }

  /** DELETE one class (404 when absent; 409 inventory.inuse while allocated). */
  async deleteInventory(uuid: string, cls: string): Promise<void> {
    await this.write(async (trx) => {
      const provider = await this.providerRow(trx, uuid);
      const current = await this.inventoriesOf(trx, uuid);
      if (!(cls in current)) throw new NotFound(`No inventory of class ${cls} found for delete`);
      const used = await this.usedByClass(trx, uuid);
      if ((used.get(cls) ?? 0) > 0) throw withCode(new Conflict(`Inventory for '${cls}' on resource provider '${uuid}' in use.`), CODES.inventoryInUse);
      await this.bumpGeneration(trx, uuid, provider.generation);
      await trx.deleteFrom('placement_inventories').where('provider_uuid', '=', uuid).where('resource_class', '=', cls).execute();
      await this.noteChange(trx, [uuid]);
    });
  }

  /** DELETE all inventories (1.5): 409 when any class has allocations. */
  async deleteInventories(uuid: string): Promise<void> {
    await this.write(async (trx) => {
      const provider = await this.providerRow(trx, uuid);
      const used = await this.usedByClass(trx, uuid);
      const inUse = [...used].filter(([, n]) => n > 0).map(([cls]) => cls);
      if (inUse.length) throw withCode(new Conflict(`Inventory for '${inUse.join(', ')}' on resource provider '${uuid}' in use.`), CODES.inventoryInUse);
      await this.bumpGeneration(trx, uuid, provider.generation);
      await trx.deleteFrom('placement_inventories').where('provider_uuid', '=', uuid).execute();
      await this.noteChange(trx, [uuid]);
    });
  }

  // ---- resource classes ----

  async listResourceClasses(): Promise<string[]> {
    const rows = await this.db.selectFrom('placement_custom_resource_classes').select('name').orderBy('name').execute();
    return [...STANDARD_RESOURCE_CLASSES, ...rows.map((r) => r.name as string)];
  }

  async resourceClassExists(name: string): Promise<boolean> {
    if (STANDARD_CLASS_SET.has(name)) return true;
    return !!(await this.db.selectFrom('placement_custom_resource_classes').select('name').where('name', '=', name).executeTakeFirst());
  }

  /** Creates a CUSTOM_ class; `ifMissing` makes an existing one a no-op. Returns whether it was created. */
  async createResourceClass(name: string, options: { ifMissing?: boolean } = {}): Promise<boolean> {
    if (!CUSTOM_NAME.test(name) || name.length > 255) throw new BadRequest(`JSON does not validate: '${name}' does not match '^CUSTOM_[A-Z0-9_]+$'`);
    if (await this.resourceClassExists(name)) {
      if (options.ifMissing) return false;
      throw withCode(new Conflict(`Conflicting resource class already exists: ${name}`), CODES.duplicateName);
    }
    try {
      await this.db.insertInto('placement_custom_resource_classes').values({ name, created_at: now() }).execute();
      return true;
    } catch (err) {
      if (!isUniqueViolation(err)) throw err;
      if (options.ifMissing) return false;
      throw withCode(new Conflict(`Conflicting resource class already exists: ${name}`), CODES.duplicateName);
    }
  }

  async deleteResourceClass(name: string): Promise<void> {
    if (STANDARD_CLASS_SET.has(name)) throw new BadRequest(`Cannot delete standard resource class ${name}: Cannot delete standard resource class`);
    await this.write(async (trx) => {
      const row = await trx.selectFrom('placement_custom_resource_classes').select('name').where('name', '=', name).executeTakeFirst();
      if (!row) throw new NotFound(`No such resource class ${name}.`);
      const inUse = await trx.selectFrom('placement_inventories').select('provider_uuid').where('resource_class', '=', name).executeTakeFirst();
      if (inUse) throw new Conflict(`Unable to delete resource class ${name}. Class is in use in inventory`);
      await trx.deleteFrom('placement_custom_resource_classes').where('name', '=', name).execute();
    });
  }

  // ---- traits ----

  async listTraits(filter: { names?: string[]; prefix?: string; associated?: boolean } = {}): Promise<string[]> {
    const custom = (await this.db.selectFrom('placement_custom_traits').select('name').execute()).map((r) => r.name as string);
    let all = [...STANDARD_TRAITS, ...custom];
    if (filter.names) { const wanted = new Set(filter.names); all = all.filter((t) => wanted.has(t)); }
    if (filter.prefix !== undefined) all = all.filter((t) => t.startsWith(filter.prefix!));
    if (filter.associated !== undefined) {
      const rows = await this.db.selectFrom('placement_provider_traits').select('trait').distinct().execute();
      const associated = new Set(rows.map((r) => r.trait as string));
      all = all.filter((t) => associated.has(t) === filter.associated);
    }
    return all.sort();
  }

  async traitExists(name: string): Promise<boolean> {
    if (STANDARD_TRAIT_SET.has(name)) return true;
    return !!(await this.db.selectFrom('placement_custom_traits').select('name').where('name', '=', name).executeTakeFirst());
  }

  /** Traits among `names` that nobody created (standard ones always exist). */
  async unknownTraits(names: string[]): Promise<string[]> {
    const custom = [...new Set(names.filter((n) => !STANDARD_TRAIT_SET.has(n)))];
    if (custom.length === 0) return [];
    const rows = await this.db.selectFrom('placement_custom_traits').select('name').where('name', 'in', custom).execute();
    const known = new Set(rows.map((r) => r.name));
    return custom.filter((n) => !known.has(n));
  }

  /** Creates a CUSTOM_ trait when missing; returns whether it was created. */
  async ensureTrait(name: string): Promise<boolean> {
    if (!CUSTOM_NAME.test(name) || name.length > 255) throw new BadRequest(`The trait is invalid. A valid trait must be no longer than 255 characters, start with the prefix "CUSTOM_" and use following characters: "A"-"Z", "0"-"9" and "_"`);
    if (await this.traitExists(name)) return false;
    try {
      await this.db.insertInto('placement_custom_traits').values({ name, created_at: now() }).execute();
      return true;
    } catch (err) {
      if (isUniqueViolation(err)) return false;
      throw err;
    }
  }

  async deleteTrait(name: string): Promise<void> {
    if (STANDARD_TRAIT_SET.has(name)) throw new BadRequest(`Cannot delete standard trait ${name}.`);
    await this.write(async (trx) => {
      const row = await trx.selectFrom('placement_custom_traits').select('name').where('name', '=', name).executeTakeFirst();
      if (!row) throw new NotFound(`No such trait(s): ${name}.`);
      const inUse = await trx.selectFrom('placement_provider_traits').select('provider_uuid').where('trait', '=', name).executeTakeFirst();
      if (inUse) throw new Conflict(`The trait ${name} is in use by a resource provider.`);
      await trx.deleteFrom('placement_custom_traits').where('name', '=', name).execute();
    });
  }

  async getProviderTraits(uuid: string): Promise<{ generation: number; traits: string[] }> {
    const provider = await this.providerRow(this.db, uuid);
    const rows = await this.db.selectFrom('placement_provider_traits').select('trait').where('provider_uuid', '=', uuid).orderBy('trait').execute();
    return { generation: provider.generation, traits: rows.map((r) => r.trait as string) };
  }

  /** Replaces a provider's traits at `generation`; every trait must exist (400 otherwise). */
  async setProviderTraits(uuid: string, generation: number, traits: string[], options: { allowSame?: boolean } = {}): Promise<{ generation: number; traits: string[] }> {
    const wanted = [...new Set(traits)].sort();
    const unknown = await this.unknownTraits(wanted);
    if (unknown.length) throw new BadRequest(`No such trait(s): ${unknown.join(', ')}`);
    return this.write(async (trx) => {
      const provider = await this.providerRow(trx, uuid);
      const rows = await trx.selectFrom('placement_provider_traits').select('trait').where('provider_uuid', '=', uuid).execute();
      const current = new Set(rows.map((r) => r.trait as string));
      if (options.allowSame && provider.generation === generation && current.size === wanted.length && wanted.every((t) => current.has(t))) {
        return { generation, traits: wanted };
      }
      const next = await this.bumpGeneration(trx, uuid, generation);
      const removed = [...current].filter((t) => !wanted.includes(t));
      for (const part of chunks(removed)) await trx.deleteFrom('placement_provider_traits').where('provider_uuid', '=', uuid).where('trait', 'in', part).execute();
      const added = wanted.filter((t) => !current.has(t));
      for (const part of chunks(added)) await trx.insertInto('placement_provider_traits').values(part.map((trait) => ({ provider_uuid: uuid, trait }))).execute();
      await this.noteChange(trx, [uuid]);
      return { generation: next, traits: wanted };
    });
  }

  async deleteProviderTraits(uuid: string): Promise<void> {
    await this.write(async (trx) => {
      const provider = await this.providerRow(trx, uuid);
      await this.bumpGeneration(trx, uuid, provider.generation);
      await trx.deleteFrom('placement_provider_traits').where('provider_uuid', '=', uuid).execute();
      await this.noteChange(trx, [uuid]);
    });
  }

  // ---- aggregates ----

  async getProviderAggregatesWithGeneration(uuid: string): Promise<{ generation: number; aggregates: string[] }> {
    const provider = await this.providerRow(this.db, uuid);
    const rows = await this.db.selectFrom('placement_provider_aggregates').select('aggregate_uuid').where('provider_uuid', '=', uuid).orderBy('aggregate_uuid').execute();
    return { generation: provider.generation, aggregates: rows.map((r) => r.aggregate_uuid as string) };
  }

  async getProviderAggregates(uuid: string): Promise<string[]> {
    return (await this.getProviderAggregatesWithGeneration(uuid)).aggregates;
  }

  /**
   * Replaces a provider's aggregates. With `generation` (API 1.19+) it must match; without it
   * (the in-process interface) a generation conflict is retried internally.
   */
  async setProviderAggregates(uuid: string, aggregates: string[], generation?: number): Promise<{ generation: number; aggregates: string[] }> {
    const wanted = [...new Set(aggregates)].sort();
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.write(async (trx) => {
          const provider = await this.providerRow(trx, uuid);
          const expected = generation ?? provider.generation;
          const next = await this.bumpGeneration(trx, uuid, expected);
          const rows = await trx.selectFrom('placement_provider_aggregates').select('aggregate_uuid').where('provider_uuid', '=', uuid).execute();
          const current = new Set(rows.map((r) => r.aggregate_uuid as string));
          const removed = [...current].filter((a) => !wanted.includes(a));
          for (const part of chunks(removed)) await trx.deleteFrom('placement_provider_aggregates').where('provider_uuid', '=', uuid).where('aggregate_uuid', 'in', part).execute();
          const added = wanted.filter((a) => !current.has(a));
          for (const part of chunks(added)) await trx.insertInto('placement_provider_aggregates').values(part.map((aggregate_uuid) => ({ provider_uuid: uuid, aggregate_uuid }))).execute();
          await this.noteChange(trx, [uuid]);
          return { generation: next, aggregates: wanted };
        });
      } catch (err) {
        if (generation === undefined && attempt < ATTEMPTS && err instanceof Conflict) { await sleep(Math.random() * 5 * attempt); continue; }
        throw err;
      }
    }
  }

  // ---- allocations and usages ----

  async getProviderAllocations(uuid: string): Promise<{ generation: number; allocations: Allocations }> {
    const provider = await this.providerRow(this.db, uuid);
    const rows = await this.db.selectFrom('placement_allocations').selectAll().where('provider_uuid', '=', uuid).orderBy('consumer_uuid').execute();
    const allocations: Allocations = {};
    for (const r of rows) ((allocations[r.consumer_uuid] ??= { resources: {} }).resources[r.resource_class] = Number(r.used));
    return { generation: provider.generation, allocations };
  }

  /** Usage of every inventoried class of a provider (0 when unused). */
  async getProviderUsages(uuid: string): Promise<{ generation: number; usages: Record<string, number> }> {
    const provider = await this.providerRow(this.db, uuid);
    const inventories = await this.inventoriesOf(this.db, uuid);
    const used = await this.usedByClass(this.db, uuid);
    const usages: Record<string, number> = {};
    for (const cls of Object.keys(inventories)) usages[cls] = used.get(cls) ?? 0;
    for (const [cls, n] of used) usages[cls] = n;
    return { generation: provider.generation, usages };
  }

  async getAllocations(consumerId: string): Promise<{ allocations: Record<string, { resources: Record<string, number>; generation: number }>; consumerGeneration: number | null; projectId?: string; userId?: string; consumerType?: string }> {
    const rows = await this.db.selectFrom('placement_allocations as a')
      .innerJoin('placement_resource_providers as p', 'p.uuid', 'a.provider_uuid')
      .select(['a.provider_uuid', 'a.resource_class', 'a.used', 'p.generation'])
      .where('a.consumer_uuid', '=', consumerId).orderBy('a.provider_uuid').orderBy('a.resource_class').execute();
    const consumer = await this.db.selectFrom('placement_consumers').selectAll().where('uuid', '=', consumerId).executeTakeFirst();
    const allocations: Record<string, { resources: Record<string, number>; generation: number }> = {};
    for (const r of rows) {
      const entry = (allocations[r.provider_uuid] ??= { resources: {}, generation: Number(r.generation) });
      entry.resources[r.resource_class] = Number(r.used);
    }
    if (!consumer) return { allocations, consumerGeneration: null };
    return {
      allocations, consumerGeneration: Number(consumer.generation), projectId: consumer.project_id, userId: consumer.user_id,
      consumerType: consumer.consumer_type ?? DEFAULT_CONSUMER_TYPE,
    };
  }

  /** Replaces the consumer's allocations atomically (see replaceAllocations). */
  async putAllocations(consumerId: string, body: { allocations: Allocations; projectId: string; userId: string; consumerGeneration: number | null | undefined; consumerType?: string }): Promise<void> {
    await this.replaceAllocations({ [consumerId]: body });
  }

  /** Several consumers' allocations replaced in one transaction (POST /allocations); empty allocations delete. */
  async postAllocations(body: Record<string, { allocations: Allocations; projectId: string; userId: string; consumerGeneration: number | null | undefined; consumerType?: string }>): Promise<void> {
    await this.replaceAllocations(body);
  }

  /** Removes a consumer's allocations; returns whether there were any. */
  async deleteAllocations(consumerId: string): Promise<boolean> {
    return this.write(async (trx) => {
      const rows = await trx.selectFrom('placement_allocations').select('provider_uuid').where('consumer_uuid', '=', consumerId).execute();
      await trx.deleteFrom('placement_allocations').where('consumer_uuid', '=', consumerId).execute();
      await trx.deleteFrom('placement_consumers').where('uuid', '=', consumerId).execute();
      await this.noteChange(trx, rows.map((r) => r.provider_uuid as string));
      return rows.length > 0;
    });
  }

  private validateAllocations(consumerId: string, allocations: Allocations): void {
    for (const [rp, entry] of Object.entries(allocations)) {
      const resources = entry?.resources;
      if (!resources || typeof resources !== 'object') throw new BadRequest(`Allocation of consumer ${consumerId} on resource provider ${rp} has no resources.`);
      for (const [cls, amount] of Object.entries(resources)) {
        if (!/^[A-Z0-9_]+$/.test(cls)) throw new BadRequest(`Invalid resource class name: ${cls}`);
        if (!Number.isInteger(amount) || amount < 1 || amount > MAX_INT) {
          throw new BadRequest(`JSON does not validate: ${JSON.stringify(amount)} is not a valid amount of ${cls}: it must be an integer of at least 1.`);
        }
      }
    }
  }

  /**
   * The claim. One transaction: check every consumer's generation, drop its old allocations,
   * read each target provider's generation, then its inventories and usage, check min_unit /
   * max_unit / step_size / capacity, write the new allocations and bump each target provider's
   * generation only if it is still the one read. A lost race retries the whole transaction.
   */
  private async replaceAllocations(consumers: Record<string, ConsumerAllocations>): Promise<void> {
    for (const [consumerId, c] of Object.entries(consumers)) this.validateAllocations(consumerId, c.allocations);
    try {
      await this.claim(consumers);
    } catch (err) {
      // Two requests creating the same consumer: the loser sees the winner's generation.
      if (isUniqueViolation(err)) throw generationConflict('consumer generation conflict - expected null but got 1');
      throw err;
    }
  }

  private async claim(consumers: Record<string, ConsumerAllocations>): Promise<void> {
    await this.write(async (trx) => {
      const touched = new Set<string>();
      const ts = now();
      // 1. Consumers: generations, old allocations out.
      for (const [consumerId, c] of Object.entries(consumers)) {
        const row = await trx.selectFrom('placement_consumers').selectAll().where('uuid', '=', consumerId).executeTakeFirst();
        const actual = row ? Number(row.generation) : null;
        if (c.consumerGeneration !== undefined && c.consumerGeneration !== actual) {
          throw generationConflict(`consumer generation conflict - expected ${c.consumerGeneration ?? 'null'} but got ${actual ?? 'null'}`);
        }
        const old = await trx.selectFrom('placement_allocations').select('provider_uuid').where('consumer_uuid', '=', consumerId).execute();
        for (const r of old) touched.add(r.provider_uuid as string);
        if (old.length) await trx.deleteFrom('placement_allocations').where('consumer_uuid', '=', consumerId).execute();
        const empty = Object.keys(c.allocations).length === 0;
        if (empty) {
          if (row) await trx.deleteFrom('placement_consumers').where('uuid', '=', consumerId).execute();
        } else if (row) {
          const updated = await trx.updateTable('placement_consumers')
            .set({ generation: actual! + 1, project_id: c.projectId, user_id: c.userId, consumer_type: c.consumerType ?? row.consumer_type ?? null, updated_at: ts })
            .where('uuid', '=', consumerId).where('generation', '=', actual!).executeTakeFirst();
          if (Number(updated.numUpdatedRows) === 0) {
            if (c.consumerGeneration !== undefined) throw generationConflict(`consumer generation conflict - expected ${c.consumerGeneration} but got a newer one`);
            throw new RetryClaim();
          }
        } else {
          await trx.insertInto('placement_consumers').values({
            uuid: consumerId, project_id: c.projectId, user_id: c.userId, consumer_type: c.consumerType ?? null, generation: 1, created_at: ts, updated_at: ts,
          }).execute();
        }
      }
      // 2. Target providers: generations first, then inventories and usage.
      const wanted = new Map<string, Map<string, number>>();
      for (const c of Object.values(consumers)) {
        for (const [rp, entry] of Object.entries(c.allocations)) {
          const byClass = wanted.get(rp) ?? new Map<string, number>();
          wanted.set(rp, byClass);
          for (const [cls, amount] of Object.entries(entry.resources)) byClass.set(cls, (byClass.get(cls) ?? 0) + amount);
        }
      }
      const targets = [...wanted.keys()].sort();
      const generations = new Map<string, number>();
      for (const part of chunks(targets)) {
        const rows = await trx.selectFrom('placement_resource_providers').select(['uuid', 'generation']).where('uuid', 'in', part).execute();
        for (const r of rows) generations.set(r.uuid as string, Number(r.generation));
      }
      for (const rp of targets) if (!generations.has(rp)) throw new BadRequest(`Allocation for resource provider '${rp}' that does not exist.`);
      const inventories = new Map<string, Map<string, Inventory>>();
      const usage = new Map<string, Map<string, number>>();
      for (const part of chunks(targets)) {
        const invRows = await trx.selectFrom('placement_inventories').selectAll().where('provider_uuid', 'in', part).execute();
        for (const r of invRows) (inventories.get(r.provider_uuid) ?? inventories.set(r.provider_uuid, new Map()).get(r.provider_uuid)!).set(r.resource_class, inventoryOf(r));
        const useRows = await trx.selectFrom('placement_allocations').select(['provider_uuid', 'resource_class', sql<number>`sum(used)`.as('used')])
          .where('provider_uuid', 'in', part).groupBy(['provider_uuid', 'resource_class']).execute();
        for (const r of useRows) (usage.get(r.provider_uuid) ?? usage.set(r.provider_uuid, new Map()).get(r.provider_uuid)!).set(r.resource_class, Number(r.used));
      }
      // 3. Constraints per consumer's amount, capacity on the sum.
      for (const c of Object.values(consumers)) {
        for (const [rp, entry] of Object.entries(c.allocations)) {
          for (const [cls, amount] of Object.entries(entry.resources)) {
            const inv = inventories.get(rp)?.get(cls);
            if (!inv) throw new Conflict(`Unable to allocate inventory: Inventory for '${cls}' on resource provider '${rp}' invalid.`);
            if (amount < inv.min_unit || amount > inv.max_unit || amount % inv.step_size !== 0) {
              throw new Conflict(`Unable to allocate inventory: Unable to create allocation for '${cls}' on resource provider '${rp}'. The requested amount would violate inventory constraints.`);
            }
          }
        }
      }
      for (const [rp, byClass] of wanted) {
        for (const [cls, amount] of byClass) {
          const inv = inventories.get(rp)!.get(cls)!;
          const used = usage.get(rp)?.get(cls) ?? 0;
          if (used + amount > capacityOf(inv)) {
            throw new Conflict(`Unable to allocate inventory: Unable to create allocation for '${cls}' on resource provider '${rp}'. The requested amount would exceed the capacity.`);
          }
        }
      }
      // 4. Write, then claim the generations read above.
      const rows: Record<string, unknown>[] = [];
      for (const [consumerId, c] of Object.entries(consumers)) {
        for (const [rp, entry] of Object.entries(c.allocations)) {
          for (const [cls, amount] of Object.entries(entry.resources)) rows.push({ consumer_uuid: consumerId, provider_uuid: rp, resource_class: cls, used: amount, created_at: ts });
        }
      }
      for (const part of chunks(rows)) await trx.insertInto('placement_allocations').values(part).execute();
      for (const rp of targets) {
        const result = await trx.updateTable('placement_resource_providers').set({ generation: generations.get(rp)! + 1 })
          .where('uuid', '=', rp).where('generation', '=', generations.get(rp)!).executeTakeFirst();
        if (Number(result.numUpdatedRows) === 0) throw new RetryClaim();
        touched.add(rp);
      }
      await this.noteChange(trx, touched);
    });
  }

  /** Usage summed over a project's (and optionally a user's) consumers. */
  async usagesOfProject(projectId: string, userId?: string): Promise<Record<string, number>> {
    let query = this.db.selectFrom('placement_allocations as a').innerJoin('placement_consumers as c', 'c.uuid', 'a.consumer_uuid')
      .select(['a.resource_class', sql<number>`sum(a.used)`.as('used')]).where('c.project_id', '=', projectId);
    if (userId !== undefined) query = query.where('c.user_id', '=', userId);
    const rows = await query.groupBy('a.resource_class').orderBy('a.resource_class').execute();
    return Object.fromEntries(rows.map((r) => [r.resource_class, Number(r.used)]));
  }

  /** GET /usages at 1.38: usages and consumer counts by consumer type (optionally one type, or `all`/`unknown`). */
  async usagesByConsumerType(projectId: string, userId?: string, consumerType?: string): Promise<Record<string, Record<string, number>>> {
    let query = this.db.selectFrom('placement_allocations as a').innerJoin('placement_consumers as c', 'c.uuid', 'a.consumer_uuid')
      .select(['a.consumer_uuid', 'a.resource_class', 'a.used', 'c.consumer_type']).where('c.project_id', '=', projectId);
    if (userId !== undefined) query = query.where('c.user_id', '=', userId);
    const rows = await query.execute();
    const out: Record<string, Record<string, number>> = {};
    const consumersByType = new Map<string, Set<string>>();
    for (const r of rows) {
      const type = consumerType === 'all' ? 'all' : (r.consumer_type ?? DEFAULT_CONSUMER_TYPE);
      if (consumerType !== undefined && consumerType !== 'all') {
        const want = consumerType === 'unknown' ? DEFAULT_CONSUMER_TYPE : consumerType;
        if (type !== want) continue;
      }
      const entry = (out[type] ??= {});
      entry[r.resource_class] = (entry[r.resource_class] ?? 0) + Number(r.used);
      (consumersByType.get(type) ?? consumersByType.set(type, new Set()).get(type)!).add(r.consumer_uuid);
    }
    for (const [type, set] of consumersByType) out[type].consumer_count = set.size;
    return out;
  }

  /**
   * Registers many new root providers at once (one transaction, batched inserts): for
   * simulations and benchmarks of large clouds. Every trait named must exist; classes too.
   */
  async importProviders(list: { uuid: string; name: string; inventories: Record<string, InventoryInput>; traits?: string[]; aggregates?: string[] }[]): Promise<void> {
    const providers: Record<string, unknown>[] = [];
    const inventories: Record<string, unknown>[] = [];
    const traits: Record<string, unknown>[] = [];
    const aggregates: Record<string, unknown>[] = [];
    const allTraits = new Set<string>();
    for (const p of list) {
      const ts = creationTime();
      providers.push({ uuid: p.uuid, name: p.name, generation: 1, parent_provider_uuid: null, root_provider_uuid: p.uuid, created_at: ts, updated_at: ts });
      for (const [cls, inv] of Object.entries(p.inventories)) inventories.push({ provider_uuid: p.uuid, resource_class: cls, ...normalizeInventory(cls, inv, p.uuid) });
      for (const trait of p.traits ?? []) { traits.push({ provider_uuid: p.uuid, trait }); allTraits.add(trait); }
      for (const aggregate_uuid of p.aggregates ?? []) aggregates.push({ provider_uuid: p.uuid, aggregate_uuid });
    }
    const unknown = await this.unknownTraits([...allTraits]);
    if (unknown.length) throw new BadRequest(`No such trait(s): ${unknown.join(', ')}`);
    try {
      await this.write(async (trx) => {
        await this.checkClassesExist(trx, [...new Set(inventories.map((i) => i.resource_class as string))]);
        for (const [table, rows] of [['placement_resource_providers', providers], ['placement_inventories', inventories], ['placement_provider_traits', traits], ['placement_provider_aggregates', aggregates]] as const) {
          for (const part of chunks(rows, 200)) await trx.insertInto(table).values(part).execute();
        }
        await this.noteChange(trx, list.map((p) => p.uuid));
      });
    } catch (err) {
      if (isUniqueViolation(err)) throw withCode(new Conflict('Conflicting resource provider uuid or name: one of the providers already exists.'), CODES.duplicateName);
      throw err;
    }
  }

  // ---- candidates and the agents' helper ----

  async getAllocationCandidates(query: CandidateQuery): Promise<Candidates> {
    await this.view.refresh();
    return findCandidates(this.view, query);
  }

  /**
   * Creates the provider when missing, then sets its inventories and traits (CUSTOM_ traits and
   * resource classes are created on demand), retrying on generation conflicts. Unchanged
   * inventories or traits are not rewritten (the generation stays).
   */
  async ensureProvider(p: { uuid: string; name: string; inventories: Record<string, InventoryInput>; traits: string[]; parentProviderUuid?: string }): Promise<void> {
    for (const cls of Object.keys(p.inventories)) if (!STANDARD_CLASS_SET.has(cls)) await this.createResourceClass(cls, { ifMissing: true });
    for (const trait of p.traits) if (!STANDARD_TRAIT_SET.has(trait)) {
      if (!CUSTOM_NAME.test(trait)) throw new BadRequest(`No such trait(s): ${trait}`);
      await this.ensureTrait(trait);
    }
    for (let attempt = 1; ; attempt++) {
      try {
        let provider: ResourceProvider;
        try {
          provider = await this.getProvider(p.uuid);
          if (provider.name !== p.name) provider = await this.updateProvider(p.uuid, { name: p.name }, { allowReparent: false });
        } catch (err) {
          if (!(err instanceof NotFound)) throw err;
          provider = await this.createProvider({ uuid: p.uuid, name: p.name, parent_provider_uuid: p.parentProviderUuid });
        }
        const inv = await this.setInventories(p.uuid, provider.generation, p.inventories, { allowSame: true });
        await this.setProviderTraits(p.uuid, inv.generation, p.traits, { allowSame: true });
        return;
      } catch (err) {
        const retry = err instanceof Conflict && (err as Conflict & { code?: string }).code === CODES.concurrentUpdate;
        const raced = err instanceof Conflict && /uuid: .* already exists/.test(err.message);
        if (attempt < ATTEMPTS && (retry || raced)) { await sleep(Math.random() * 5 * attempt); continue; }
        throw err;
      }
    }
  }
}
