// An in-memory view of every resource provider (inventories, usages, traits, aggregates) that
// GET /allocation_candidates and GET /resource_providers answer from. It is exact across
// controller processes sharing one database: every write that changes what it holds bumps
// placement_state.version (under that row's lock, in the writing transaction) and logs the
// providers it touched in placement_changes; before answering, the view reads the version
// (one tiny query) and reloads only the providers changed since. Claims never trust it: they
// re-check capacity in the database (service.ts).
import { sql } from 'kysely';
import type { Database } from '../db/index.js';

export interface Inventory {
  total: number;
  reserved: number;
  min_unit: number;
  max_unit: number;
  step_size: number;
  allocation_ratio: number;
}

export interface ProviderState {
  uuid: string;
  name: string;
  generation: number;
  parent: string | null;
  root: string;
  created_at: string;
  updated_at: string;
  inventories: Map<string, Inventory>;
  usages: Map<string, number>;
  traits: Set<string>;
  aggregates: Set<string>;
  /** The provider summary as candidates render it, kept until the provider changes (candidates.ts). */
  summary?: unknown;
}

/** (total - reserved) * allocation_ratio, as Placement computes it (truncated). */
export const capacityOf = (inv: Inventory): number => Math.floor((inv.total - inv.reserved) * inv.allocation_ratio);

/** More changed versions than this and a full reload is cheaper (and the log may be pruned). */
const FULL_RELOAD_AFTER = 5000;
const CHUNK = 500;

export function chunks<T>(items: T[], size = CHUNK): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

export class ProviderView {
  /** Providers in creation order (a tree is listed where its root is). */
  readonly providers = new Map<string, ProviderState>();
  /** root uuid -> the uuids of the providers of its tree. */
  private readonly trees = new Map<string, Set<string>>();
  private version = -1;
  private loading: Promise<void> = Promise.resolve();

  constructor(private readonly database: Database) {}

  /** Brings the view up to the latest committed version. */
  async refresh(): Promise<void> {
    const latest = await this.readVersion();
    if (latest <= this.version) return;
    const run = this.loading.then(() => this.catchUp(latest));
    this.loading = run.catch(() => undefined);
    await run;
  }

  /** The providers of a tree, root first, then by depth. */
  treeOf(root: string): ProviderState[] {
    const members = this.trees.get(root);
    if (!members) return [];
    if (members.size === 1) { const only = this.providers.get(root); return only ? [only] : []; }
    const list = [...members].map((u) => this.providers.get(u)!).filter(Boolean);
    if (list.length <= 1) return list;
    const depth = (p: ProviderState): number => {
      let d = 0;
      for (let cur = p; cur.parent && d < 64; d++) cur = this.providers.get(cur.parent) ?? { ...cur, parent: null };
      return d;
    };
    return list.map((p) => ({ p, d: depth(p) })).sort((a, b) => a.d - b.d).map((x) => x.p);
  }

  /** True when the tree rooted here has this one provider only. */
  isSingle(root: string): boolean {
    return this.trees.get(root)?.size === 1;
  }

  /** Uuids of the provider and its descendants. */
  subtreeOf(uuid: string): Set<string> {
    const p = this.providers.get(uuid);
    const out = new Set<string>();
    if (!p) return out;
    const tree = this.treeOf(p.root);
    out.add(uuid);
    let grew = true;
    while (grew) {
      grew = false;
      for (const member of tree) if (member.parent && out.has(member.parent) && !out.has(member.uuid)) { out.add(member.uuid); grew = true; }
    }
    return out;
  }

  private async readVersion(): Promise<number> {
    const row = await this.database.db.selectFrom('placement_state').select('version').where('id', '=', 'providers').executeTakeFirst();
    return Number(row?.version ?? 0);
  }

  private async catchUp(latest: number): Promise<void> {
    if (this.version >= latest) return;
    if (this.version < 0 || latest - this.version > FULL_RELOAD_AFTER) {
      const at = await this.readVersion();
      await this.loadAll();
      this.version = at;
      return;
    }
    const rows = await this.database.db.selectFrom('placement_changes').select('provider_uuid')
      .where('version', '>', this.version).where('version', '<=', latest).execute();
    const changed = [...new Set(rows.map((r) => r.provider_uuid as string))];
    for (const part of chunks(changed)) await this.reload(part);
    this.version = latest;
  }

  /** Reads everything first, then swaps synchronously: a request never sees a half-loaded view. */
  private async loadAll(): Promise<void> {
    const db = this.database.db;
    const [rows, inventories, usages, traits, aggregates] = await Promise.all([
      db.selectFrom('placement_resource_providers').selectAll().orderBy('created_at').orderBy('uuid').execute(),
      db.selectFrom('placement_inventories').selectAll().execute(),
      db.selectFrom('placement_allocations').select(['provider_uuid', 'resource_class', sql<number>`sum(used)`.as('used')])
        .groupBy(['provider_uuid', 'resource_class']).execute(),
      db.selectFrom('placement_provider_traits').selectAll().execute(),
      db.selectFrom('placement_provider_aggregates').selectAll().execute(),
    ]);
    this.providers.clear();
    this.trees.clear();
    this.apply(rows, inventories, usages, traits, aggregates);
  }

  private apply(rows: any[], inventories: any[], usages: any[], traits: any[], aggregates: any[]): void {
    for (const row of rows) this.put(row);
    for (const row of inventories) this.providers.get(row.provider_uuid)?.inventories.set(row.resource_class, inventoryOf(row));
    for (const row of usages) this.providers.get(row.provider_uuid)?.usages.set(row.resource_class, Number(row.used));
    for (const row of traits) this.providers.get(row.provider_uuid)?.traits.add(row.trait);
    for (const row of aggregates) this.providers.get(row.provider_uuid)?.aggregates.add(row.aggregate_uuid);
  }

  private async reload(uuids: string[]): Promise<void> {
    if (uuids.length === 0) return;
    const db = this.database.db;
    const [rows, inventories, usages, traits, aggregates] = await Promise.all([
      db.selectFrom('placement_resource_providers').selectAll().where('uuid', 'in', uuids).orderBy('created_at').orderBy('uuid').execute(),
      db.selectFrom('placement_inventories').selectAll().where('provider_uuid', 'in', uuids).execute(),
      db.selectFrom('placement_allocations').select(['provider_uuid', 'resource_class', sql<number>`sum(used)`.as('used')])
        .where('provider_uuid', 'in', uuids).groupBy(['provider_uuid', 'resource_class']).execute(),
      db.selectFrom('placement_provider_traits').selectAll().where('provider_uuid', 'in', uuids).execute(),
      db.selectFrom('placement_provider_aggregates').selectAll().where('provider_uuid', 'in', uuids).execute(),
    ]);
    const found = new Set(rows.map((r) => r.uuid as string));
    for (const uuid of uuids) if (!found.has(uuid)) this.remove(uuid);
    this.apply(rows, inventories, usages, traits, aggregates);
  }

  /** Inserts or resets a provider from its row (its inventories, usages, traits, aggregates are reloaded after). */
  private put(row: Record<string, any>): void {
    const existing = this.providers.get(row.uuid);
    if (existing && existing.root !== row.root_provider_uuid) this.trees.get(existing.root)?.delete(row.uuid);
    const state: ProviderState = {
      uuid: row.uuid, name: row.name, generation: Number(row.generation), parent: row.parent_provider_uuid ?? null, root: row.root_provider_uuid,
      created_at: row.created_at, updated_at: row.updated_at,
      inventories: new Map(), usages: new Map(), traits: new Set(), aggregates: new Set(), summary: undefined,
    };
    if (existing) Object.assign(existing, state);
    else this.providers.set(row.uuid, state);
    let tree = this.trees.get(state.root);
    if (!tree) this.trees.set(state.root, (tree = new Set()));
    tree.add(state.uuid);
  }

  private remove(uuid: string): void {
    const existing = this.providers.get(uuid);
    if (!existing) return;
    this.providers.delete(uuid);
    const tree = this.trees.get(existing.root);
    tree?.delete(uuid);
    if (tree && tree.size === 0) this.trees.delete(existing.root);
  }
}

export function inventoryOf(row: Record<string, any>): Inventory {
  return {
    total: Number(row.total), reserved: Number(row.reserved), min_unit: Number(row.min_unit), max_unit: Number(row.max_unit),
    step_size: Number(row.step_size), allocation_ratio: Number(row.allocation_ratio),
  };
}
