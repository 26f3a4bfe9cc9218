// Networking quotas as Neutron's DbQuotaDriver keeps them: per-project hard limits over the
// [QUOTAS] quota_<resource> defaults, -1 for unlimited; usage is the count of the project's rows.
import type { Kysely } from 'kysely';
import { BadRequest, Conflict } from '../core/errors.js';
import { transaction } from '../db/index.js';
import { neutronError } from './api/errors.js';
import type { NetworkContext } from './index.js';

export type NetworkQuotaResource = 'network' | 'subnet' | 'subnetpool' | 'port' | 'router' | 'floatingip'
  | 'security_group' | 'security_group_rule' | 'rbac_policy';

export const QUOTA_DEFAULTS: Record<NetworkQuotaResource, number> = {
  network: 100, subnet: 100, subnetpool: -1, port: 500, router: 10, floatingip: 50,
  security_group: 10, security_group_rule: 100, rbac_policy: 10,
};

/** The table whose rows of a project count against each quota (rbac policies are not kept: none counted). */
const TABLES: Record<NetworkQuotaResource, string | null> = {
  network: 'network_networks', subnet: 'network_subnets', subnetpool: 'network_subnet_pools', port: 'network_ports',
  router: 'network_routers', floatingip: 'network_floating_ips', security_group: 'network_security_groups',
  security_group_rule: 'network_security_group_rules', rbac_policy: null,
};

export const QUOTA_RESOURCES = Object.keys(QUOTA_DEFAULTS) as NetworkQuotaResource[];

export interface QuotaDetail { limit: number; used: number; reserved: number }

export class NetworkQuotaService {
  constructor(private readonly context: NetworkContext) {}

  /** The defaults, after [QUOTAS] quota_<resource> overrides. */
  defaults(): Record<NetworkQuotaResource, number> {
    const result = { ...QUOTA_DEFAULTS };
    for (const resource of QUOTA_RESOURCES) result[resource] = this.context.config.getInt('QUOTAS', `quota_${resource}`, QUOTA_DEFAULTS[resource]);
    return result;
  }

  async limits(projectId: string, db: Kysely<any> = this.context.database.db): Promise<Record<NetworkQuotaResource, number>> {
    const result = this.defaults();
    const rows = await db.selectFrom('network_quotas').select(['resource', 'hard_limit']).where('project_id', '=', projectId).execute();
    for (const row of rows) if (row.resource in result) result[row.resource as NetworkQuotaResource] = Number(row.hard_limit);
    return result;
  }

  /** Projects with any limit set (GET /v2.0/quotas lists those). */
  async projectsWithLimits(): Promise<string[]> {
    const rows = await this.context.database.db.selectFrom('network_quotas').select('project_id').distinct().execute();
    return rows.map((r) => r.project_id as string).sort();
  }

  async usage(projectId: string, resource: NetworkQuotaResource, db: Kysely<any> = this.context.database.db): Promise<number> {
    const table = TABLES[resource];
    if (!table) return 0;
    const inTransaction = db !== this.context.database.db;
    let query = db.selectFrom(table).select((eb) => eb.fn.countAll<number>().as('n')).where('project_id', '=', projectId);
    // InnoDB's plain reads see the transaction's first snapshot, not the rows committed while it waited for the
    // quota lock: a locking read sees them. (PostgreSQL reads committed rows per statement, and refuses FOR UPDATE with count.)
    if (inTransaction && this.context.database.engine === 'mysql') query = query.forUpdate();
    const count = async () => Number((await query.executeTakeFirst())?.n ?? 0);
    // Outside a transaction an area whose tables are not there yet counts 0; inside one an error must
    // surface (PostgreSQL aborts the transaction on any failed statement).
    if (inTransaction) return count();
    return count().catch(() => 0);
  }

  async details(projectId: string): Promise<Record<NetworkQuotaResource, QuotaDetail>> {
    const limits = await this.limits(projectId);
    const result = {} as Record<NetworkQuotaResource, QuotaDetail>;
    for (const resource of QUOTA_RESOURCES) result[resource] = { limit: limits[resource], used: await this.usage(projectId, resource), reserved: 0 };
    return result;
  }

  /**
   * Throws 409 OverQuota when `count` more rows of `resource` would exceed the project's limit.
   * Call inside the transaction that inserts the rows, before inserting them.
   */
  async check(trx: Kysely<any>, projectId: string, resource: NetworkQuotaResource, count = 1): Promise<void> {
    const limit = (await this.limits(projectId, trx))[resource];
    if (limit < 0) return;
    await this.lockUsage(trx, projectId, resource);
    const used = await this.usage(projectId, resource, trx);
    if (used + count > limit) throw neutronError(new Conflict(`Quota exceeded for resources: ['${resource}'].`), 'OverQuota');
  }

  /**
   * Holds the project's lock row of `resource` until the transaction ends: a concurrent create of the same
   * resource waits here and then counts the rows this one inserted. An upsert takes the row's exclusive lock
   * whether it is new or not (a select-then-insert would deadlock on InnoDB's gap and shared locks).
   * SQLite runs one write transaction at a time.
   */
  private async lockUsage(trx: Kysely<any>, projectId: string, resource: NetworkQuotaResource): Promise<void> {
    const engine = this.context.database.engine;
    if (engine === 'sqlite') return;
    const insert = trx.insertInto('network_quota_locks').values({ project_id: projectId, resource });
    await (engine === 'mysql' ? insert.onDuplicateKeyUpdate({ resource }) : insert.onConflict((c) => c.columns(['project_id', 'resource']).doUpdateSet({ resource }))).execute();
  }

  /** Sets some limits (-1 = unlimited); unknown resources or non-integers are a 400. */
  async update(projectId: string, changes: Record<string, unknown>): Promise<Record<NetworkQuotaResource, number>> {
    const parsed: [NetworkQuotaResource, number][] = [];
    for (const [resource, value] of Object.entries(changes)) {
      if (!(resource in QUOTA_DEFAULTS)) throw neutronError(new BadRequest(`Unrecognized attribute(s) '${resource}'`), 'HTTPBadRequest');
      const limit = typeof value === 'string' && /^-?\d+$/.test(value) ? Number(value) : value;
      if (typeof limit !== 'number' || !Number.isInteger(limit) || limit < -1) {
        throw neutronError(new BadRequest(`Invalid input for ${resource}. Reason: '${String(value)}' is not an integer or -1.`), 'InvalidInput');
      }
      parsed.push([resource as NetworkQuotaResource, limit]);
    }
    await transaction(this.context.database, async (trx) => {
      for (const [resource, limit] of parsed) {
        await trx.deleteFrom('network_quotas').where('project_id', '=', projectId).where('resource', '=', resource).execute();
        await trx.insertInto('network_quotas').values({ project_id: projectId, resource, hard_limit: limit }).execute();
      }
    });
    return this.limits(projectId);
  }

  /** Back to the defaults (DELETE /v2.0/quotas/{project}). */
  async reset(projectId: string): Promise<void> {
    await this.context.database.db.deleteFrom('network_quotas').where('project_id', '=', projectId).execute();
  }
}
