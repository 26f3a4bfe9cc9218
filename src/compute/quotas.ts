// Compute quotas as Nova's DbQuotaDriver keeps them: limits from [quota] defaults, overridden by
// the "default" quota class, then by a project's own limits, then by per-user limits; usage
// counted from the live rows (instances, cores, ram, key pairs, server groups) — no reservations.
import { BadRequest, Forbidden } from '../core/errors.js';
import type { Config } from '../core/config.js';
import { transaction, type Database } from '../db/index.js';
import type { ComputeDeps } from './index.js';

/** Every resource Nova's quota engine knows, in its order. */
export const QUOTA_RESOURCES = [
  'cores', 'injected_files', 'injected_file_content_bytes', 'injected_file_path_bytes', 'instances', 'key_pairs',
  'metadata_items', 'ram', 'server_groups', 'server_group_members',
  // Deprecated nova-network quotas, kept because responses below 2.36 (2.50 for classes) show them.
  'fixed_ips', 'floating_ips', 'security_groups', 'security_group_rules',
] as const;
export type QuotaResource = typeof QUOTA_RESOURCES[number];

/** Resources counted from rows; the rest are limits on a single request (absolute). */
const COUNTABLE = new Set(['instances', 'cores', 'ram', 'key_pairs', 'server_groups', 'server_group_members']);

/** [quota] option per resource (injected_file_path_bytes reads injected_file_path_length, as in Nova). */
const DEFAULTS: Record<string, [string, number]> = {
  instances: ['instances', 10], cores: ['cores', 20], ram: ['ram', 51200], key_pairs: ['key_pairs', 100],
  metadata_items: ['metadata_items', 128], server_groups: ['server_groups', 10], server_group_members: ['server_group_members', 10],
  injected_files: ['injected_files', 5], injected_file_content_bytes: ['injected_file_content_bytes', 10240],
  injected_file_path_bytes: ['injected_file_path_length', 255],
};

export interface QuotaDetail { limit: number; in_use: number; reserved: number }

const inf = (v: number) => (v === -1 ? Infinity : v);

export class QuotaService {
  private readonly database: Database;
  private readonly config: Config;

  constructor(deps: Pick<ComputeDeps, 'database' | 'config'>) {
    this.database = deps.database;
    this.config = deps.config;
  }

  private get db() { return this.database.db; }

  /** [quota] values (deprecated nova-network resources default to unlimited). */
  configDefaults(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const resource of QUOTA_RESOURCES) {
      const d = DEFAULTS[resource];
      out[resource] = d ? this.config.getInt('quota', d[0], d[1]) : -1;
    }
    return out;
  }

  private async classRows(name: string): Promise<Record<string, number>> {
    const rows = await this.db.selectFrom('compute_quota_classes').select(['resource', 'hard_limit']).where('class_name', '=', name).execute();
    return Object.fromEntries(rows.map((r: any) => [r.resource, Number(r.hard_limit)]));
  }

  /** The limits every project starts from: [quota] defaults overridden by the "default" class. */
  async defaults(): Promise<Record<string, number>> {
    return { ...this.configDefaults(), ...(await this.classRows('default')) };
  }

  /** A quota class's limits (the [quota] defaults where the class sets none). */
  async classQuotas(name: string): Promise<Record<string, number>> {
    return { ...this.configDefaults(), ...(await this.classRows(name)) };
  }

  async setClassQuotas(name: string, values: Record<string, number>): Promise<Record<string, number>> {
    await transaction(this.database, async (trx) => {
      for (const [resource, limit] of Object.entries(values)) {
        const updated = await trx.updateTable('compute_quota_classes').set({ hard_limit: limit }).where('class_name', '=', name).where('resource', '=', resource).executeTakeFirst();
        if (Number(updated.numUpdatedRows) === 0) await trx.insertInto('compute_quota_classes').values({ class_name: name, resource, hard_limit: limit }).execute();
      }
    });
    return this.classQuotas(name);
  }

  private async rows(projectId: string, userId: string): Promise<Record<string, number>> {
    const rows = await this.db.selectFrom('compute_quotas').select(['resource', 'hard_limit']).where('project_id', '=', projectId).where('user_id', '=', userId).execute();
    return Object.fromEntries(rows.map((r: any) => [r.resource, Number(r.hard_limit)]));
  }

  /** A project's limits. */
  async projectLimits(projectId: string): Promise<Record<string, number>> {
    return { ...(await this.defaults()), ...(await this.rows(projectId, '')) };
  }

  /** A user's limits within a project (the project's where no user limit is set). */
  async userLimits(projectId: string, userId: string): Promise<Record<string, number>> {
    return { ...(await this.projectLimits(projectId)), ...(await this.rows(projectId, userId)) };
  }

  /**
   * Usage as the quota APIs show it: instances, cores, ram and server groups counted for the
   * project (or the user in it); key_pairs and server_group_members always 0, as in Nova.
   */
  async usages(projectId: string, userId?: string): Promise<Record<string, number>> {
    const out: Record<string, number> = Object.fromEntries(QUOTA_RESOURCES.map((r) => [r, 0]));
    Object.assign(out, await this.countInstances(projectId, userId));
    out.server_groups = await this.countServerGroups(projectId, userId);
    return out;
  }

  private async countInstances(projectId: string, userId?: string): Promise<{ instances: number; cores: number; ram: number }> {
    let query = this.db.selectFrom('compute_instances').select('flavor').where('project_id', '=', projectId).where('deleted_at', 'is', null);
    if (userId) query = query.where('user_id', '=', userId);
    const rows = await query.execute();
    let cores = 0;
    let ram = 0;
    for (const row of rows) {
      const flavor = parseFlavor(row.flavor);
      cores += flavor.vcpus;
      ram += flavor.ram;
    }
    return { instances: rows.length, cores, ram };
  }

  private async countServerGroups(projectId: string, userId?: string): Promise<number> {
    let query = this.db.selectFrom('compute_server_groups').select((eb) => eb.fn.countAll().as('n')).where('project_id', '=', projectId);
    if (userId) query = query.where('user_id', '=', userId);
    const row = await query.executeTakeFirst();
    return Number((row as any)?.n ?? 0);
  }

  private async countKeypairs(userId: string): Promise<number> {
    const row = await this.db.selectFrom('compute_keypairs').select((eb) => eb.fn.countAll().as('n')).where('user_id', '=', userId).executeTakeFirst();
    return Number((row as any)?.n ?? 0);
  }

  /** limit / in_use / reserved per resource (os-quota-sets/{id}/detail). */
  async detail(projectId: string, userId?: string): Promise<Record<string, QuotaDetail>> {
    const limits = userId ? await this.userLimits(projectId, userId) : await this.projectLimits(projectId);
    const usages = await this.usages(projectId, userId);
    return Object.fromEntries(QUOTA_RESOURCES.map((r) => [r, { limit: limits[r], in_use: usages[r] ?? 0, reserved: 0 }]));
  }

  /** Nova's get_settable_quotas: the range an admin may set each limit to. */
  private async settable(projectId: string, userId?: string): Promise<Record<string, { minimum: number; maximum: number }>> {
    const project = await this.projectLimits(projectId);
    const userRows = await this.db.selectFrom('compute_quotas').select(['user_id', 'resource', 'hard_limit'])
      .where('project_id', '=', projectId).where('user_id', '!=', '').execute();
    const sumOfUsers: Record<string, number> = {};
    for (const r of userRows) sumOfUsers[r.resource] = (sumOfUsers[r.resource] ?? 0) + Number(r.hard_limit);
    const out: Record<string, { minimum: number; maximum: number }> = {};
    if (userId) {
      const own = await this.rows(projectId, userId);
      const usages = await this.usages(projectId, userId);
      for (const r of QUOTA_RESOURCES) {
        const remains = project[r] === -1 ? -1 : project[r] - (sumOfUsers[r] ?? 0);
        out[r] = { minimum: usages[r] ?? 0, maximum: remains === -1 ? -1 : remains + (own[r] ?? 0) };
      }
    } else {
      const usages = await this.usages(projectId);
      for (const r of QUOTA_RESOURCES) {
        const setForUsers = project[r] === -1 ? 0 : (sumOfUsers[r] ?? 0);
        out[r] = { minimum: Math.max(setForUsers, usages[r] ?? 0), maximum: -1 };
      }
    }
    return out;
  }

  /**
   * Sets limits for a project (or a user in it). Without `force`, a limit below what is in use
   * (or, for a user, above what the project has left) is refused with Nova's 400 messages.
   * Nothing is written unless every value passes.
   */
  async update(projectId: string, userId: string | undefined, values: Record<string, number>, force: boolean): Promise<Record<string, number>> {
    if (!force) {
      const ranges = await this.settable(projectId, userId);
      for (const [resource, limit] of Object.entries(values)) {
        const { minimum, maximum } = ranges[resource] ?? { minimum: 0, maximum: -1 };
        if (inf(limit) < inf(minimum)) {
          throw new BadRequest(`Quota limit ${limit} for ${resource} must be greater than or equal to already used and reserved ${minimum}.`);
        }
        if (inf(limit) > inf(maximum)) throw new BadRequest(`Quota limit ${limit} for ${resource} must be less than or equal to ${maximum}.`);
      }
    }
    const user = userId ?? '';
    await transaction(this.database, async (trx) => {
      for (const [resource, limit] of Object.entries(values)) {
        const updated = await trx.updateTable('compute_quotas').set({ hard_limit: limit })
          .where('project_id', '=', projectId).where('user_id', '=', user).where('resource', '=', resource).executeTakeFirst();
        if (Number(updated.numUpdatedRows) === 0) {
          await trx.insertInto('compute_quotas').values({ project_id: projectId, user_id: user, resource, hard_limit: limit }).execute();
        }
      }
    });
    return userId ? this.userLimits(projectId, userId) : this.projectLimits(projectId);
  }

  /** Drops a project's limits (and its users'), or one user's; defaults apply again. */
  async delete(projectId: string, userId?: string): Promise<void> {
    let query = this.db.deleteFrom('compute_quotas').where('project_id', '=', projectId);
    if (userId) query = query.where('user_id', '=', userId);
    await query.execute();
  }

  /** The limit that applies to a user in a project for one resource (-1 = unlimited). */
  async limitFor(projectId: string, userId: string, resource: string): Promise<number> {
    return (await this.userLimits(projectId, userId))[resource] ?? -1;
  }

  /**
   * Checks that adding `deltas` stays within the limits, as Nova's check_deltas / limit_check do;
   * throws Forbidden with Nova's message otherwise. Countable resources compare usage + delta
   * with the project's limit (and the user's where a user limit is set; key pairs are counted
   * per user); absolute ones (metadata_items, injected_*) compare the value itself.
   * server_group_members is checked by ServerGroupService.addMembers, which knows the group.
   */
  async check(projectId: string, userId: string, deltas: Record<string, number>): Promise<void> {
    const project = await this.projectLimits(projectId);
    const userRows = await this.rows(projectId, userId);
    const counted = Object.keys(deltas).some((r) => ['instances', 'cores', 'ram'].includes(r));
    const projectCounts = counted ? await this.countInstances(projectId) : undefined;
    const userCounts = counted && ['instances', 'cores', 'ram'].some((r) => r in userRows) ? await this.countInstances(projectId, userId) : undefined;
    const overs: { resource: string; requested: number; used: number; allowed: number }[] = [];
    for (const [resource, delta] of Object.entries(deltas)) {
      if (!COUNTABLE.has(resource)) {
        const limit = resource in userRows ? userRows[resource] : project[resource] ?? -1;
        if (limit >= 0 && delta > limit) overs.push({ resource, requested: delta, used: 0, allowed: limit });
        continue;
      }
      let used: number;
      let limit: number;
      if (resource === 'key_pairs') {
        used = await this.countKeypairs(userId);
        limit = resource in userRows ? userRows[resource] : project[resource];
      } else if (resource === 'server_groups') {
        used = await this.countServerGroups(projectId, resource in userRows ? userId : undefined);
        limit = resource in userRows ? userRows[resource] : project[resource];
        if (resource in userRows && project[resource] >= 0) {
          const projectUsed = await this.countServerGroups(projectId);
          if (projectUsed + delta > project[resource]) { overs.push({ resource, requested: delta, used: projectUsed, allowed: project[resource] }); continue; }
        }
      } else if (resource === 'server_group_members') {
        continue;
      } else {
        const key = resource as 'instances' | 'cores' | 'ram';
        if (userCounts && key in userRows && userRows[key] >= 0 && userCounts[key] + delta > userRows[key]) {
          overs.push({ resource, requested: delta, used: userCounts[key], allowed: userRows[key] });
          continue;
        }
        used = projectCounts![key];
        limit = project[key];
      }
      if (limit >= 0 && used + delta > limit) overs.push({ resource, requested: delta, used, allowed: limit });
    }
    if (!overs.length) return;
    overs.sort((a, b) => (a.resource < b.resource ? -1 : 1));
    const names = overs.map((o) => o.resource);
    if (names.includes('key_pairs')) throw new Forbidden('Quota exceeded, too many key pairs.');
    if (names.includes('server_groups')) throw new Forbidden('Quota exceeded, too many server groups.');
    const metadata = overs.find((o) => o.resource === 'metadata_items');
    if (metadata) throw new Forbidden(`Maximum number of metadata items exceeds ${metadata.allowed}`);
    const path = overs.find((o) => o.resource === 'injected_file_path_bytes');
    if (path) throw new Forbidden(`Personality file path exceeds maximum ${path.allowed}`);
    const content = overs.find((o) => o.resource === 'injected_file_content_bytes');
    if (content) throw new Forbidden(`Personality file content exceeds maximum ${content.allowed}`);
    if (names.includes('injected_files')) throw new Forbidden('Personality file limit exceeded');
    const join = (f: (o: typeof overs[number]) => number | string) => overs.map(f).join(', ');
    const list = names.join(', ');
    throw new Forbidden(`Quota exceeded for ${list}: Requested ${join((o) => o.requested)}, but already used ${join((o) => o.used)} of ${join((o) => o.allowed)} ${list}`);
  }
}

/** vcpus and RAM of an instance's flavor snapshot (whichever spelling it was stored with). */
function parseFlavor(text: unknown): { vcpus: number; ram: number } {
  try {
    const f = typeof text === 'string' ? JSON.parse(text) : (text as Record<string, unknown>);
    const vcpus = Number(f?.vcpus ?? 0);
    const ram = Number(f?.ram ?? f?.memoryMb ?? f?.memory_mb ?? 0);
    return { vcpus: Number.isFinite(vcpus) ? vcpus : 0, ram: Number.isFinite(ram) ? ram : 0 };
  } catch {
    return { vcpus: 0, ram: 0 };
  }
}
