// Server groups (Nova's instance groups): an (anti-)affinity policy, hard or soft, with an
// optional max_server_per_host rule, and the servers that belong to it. Server create puts
// members in (addMembers, quota server_group_members); the scheduler reads groupOf.
import { Forbidden, NotFound } from '../core/errors.js';
import { newUuid } from '../core/ids.js';
import { transaction, type Database } from '../db/index.js';
import type { ComputeDeps } from './index.js';
import type { QuotaService } from './quotas.js';

export type ServerGroupPolicy = 'affinity' | 'anti-affinity' | 'soft-affinity' | 'soft-anti-affinity';
export const SERVER_GROUP_POLICIES: ServerGroupPolicy[] = ['affinity', 'anti-affinity', 'soft-affinity', 'soft-anti-affinity'];

export interface ServerGroupRules { max_server_per_host?: number }

export interface ServerGroup {
  id: string;
  name: string;
  projectId: string;
  userId: string;
  policy: ServerGroupPolicy;
  rules: ServerGroupRules;
  /** Instances in the group that are not deleted (in creation order of membership). */
  members: string[];
  createdAt: string;
}

export class ServerGroupService {
  private readonly database: Database;
  private readonly quotas: QuotaService;

  constructor(deps: Pick<ComputeDeps, 'database'> & { quotas: QuotaService }) {
    this.database = deps.database;
    this.quotas = deps.quotas;
  }

  private get db() { return this.database.db; }

  /** Members whose server is not deleted (a member with no server row yet is being built: it counts). */
  private async membersOf(groupIds: string[]): Promise<Map<string, string[]>> {
    const out = new Map<string, string[]>();
    for (let i = 0; i < groupIds.length; i += 500) {
      const rows = await this.db.selectFrom('compute_server_group_members as m')
        .leftJoin('compute_instances as i', 'i.id', 'm.instance_uuid')
        .select(['m.group_id', 'm.instance_uuid', 'i.deleted_at'])
        .where('m.group_id', 'in', groupIds.slice(i, i + 500))
        .execute();
      for (const r of rows) {
        if (r.deleted_at) continue;
        (out.get(r.group_id) ?? out.set(r.group_id, []).get(r.group_id)!).push(r.instance_uuid);
      }
    }
    return out;
  }

  private toGroup(row: any, members: string[]): ServerGroup {
    const rules = JSON.parse(row.rules || '{}') as Record<string, unknown>;
    const typed: ServerGroupRules = {};
    if (rules.max_server_per_host !== undefined) typed.max_server_per_host = Number(rules.max_server_per_host);
    return { id: row.id, name: row.name, projectId: row.project_id, userId: row.user_id, policy: row.policy, rules: typed, members, createdAt: row.created_at };
  }

  /** The group; 404 "Instance group <id> could not be found." otherwise. */
  async get(id: string): Promise<ServerGroup> {
    const row = await this.db.selectFrom('compute_server_groups').selectAll().where('id', '=', id).executeTakeFirst();
    if (!row) throw new NotFound(`Instance group ${id} could not be found.`);
    return this.toGroup(row, (await this.membersOf([id])).get(id) ?? []);
  }

  /** Groups of a project (all groups when projectId is undefined), oldest first. */
  async list(projectId?: string): Promise<ServerGroup[]> {
    let query = this.db.selectFrom('compute_server_groups').selectAll();
    if (projectId !== undefined) query = query.where('project_id', '=', projectId);
    const rows = await query.orderBy('created_at').orderBy('id').execute();
    const members = await this.membersOf(rows.map((r: any) => r.id));
    return rows.map((r: any) => this.toGroup(r, members.get(r.id) ?? []));
  }

  /** Creates a group (input validated by the API); 403 when the server_groups quota is used up. */
  async create(caller: { projectId: string; userId: string }, input: { name: string; policy: ServerGroupPolicy; rules?: ServerGroupRules }): Promise<ServerGroup> {
    await this.quotas.check(caller.projectId, caller.userId, { server_groups: 1 });
    const row = {
      id: newUuid(), name: input.name, project_id: caller.projectId, user_id: caller.userId, policy: input.policy,
      rules: JSON.stringify(input.rules ?? {}), created_at: new Date().toISOString(),
    };
    await this.db.insertInto('compute_server_groups').values(row).execute();
    return this.toGroup(row, []);
  }

  async delete(id: string): Promise<void> {
    await transaction(this.database, async (trx) => {
      const result = await trx.deleteFrom('compute_server_groups').where('id', '=', id).executeTakeFirst();
      if (Number(result.numDeletedRows) === 0) throw new NotFound(`Instance group ${id} could not be found.`);
      await trx.deleteFrom('compute_server_group_members').where('group_id', '=', id).execute();
    });
  }

  /**
   * Adds servers to a group (server create, before scheduling). The server_group_members quota of
   * `userId` (default: the group's owner) in the group's project bounds the group's size:
   * 403 "Quota exceeded, too many servers in group". A server already in the group stays once.
   */
  async addMembers(groupId: string, instanceUuids: string[], userId?: string): Promise<void> {
    const group = await this.get(groupId);
    const fresh = [...new Set(instanceUuids)].filter((u) => !group.members.includes(u));
    if (!fresh.length) return;
    const limit = await this.quotas.limitFor(group.projectId, userId ?? group.userId, 'server_group_members');
    if (limit >= 0 && group.members.length + fresh.length > limit) throw new Forbidden('Quota exceeded, too many servers in group');
    await transaction(this.database, async (trx) => {
      await trx.insertInto('compute_server_group_members').values(fresh.map((instance_uuid) => ({ group_id: groupId, instance_uuid }))).execute();
    });
  }

  /** The group a server belongs to, if any. */
  async groupOf(instanceUuid: string): Promise<ServerGroup | undefined> {
    const row = await this.db.selectFrom('compute_server_group_members').select('group_id').where('instance_uuid', '=', instanceUuid).executeTakeFirst();
    if (!row) return undefined;
    try {
      return await this.get(row.group_id);
    } catch (err) {
      if (err instanceof NotFound) return undefined;
      throw err;
    }
  }

  /** Takes a server out of its group (server delete); nothing happens when it is in none. */
  async removeMember(instanceUuid: string): Promise<void> {
    await this.db.deleteFrom('compute_server_group_members').where('instance_uuid', '=', instanceUuid).execute();
  }
}
