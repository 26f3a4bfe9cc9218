// The identity service's domain logic: domains, projects, users, groups, roles, role
// assignments, the catalog (regions, services, endpoints) and application credentials.
// Tokens live in tokens.ts; the REST layer in api/. Other services use this interface.
import bcrypt from 'bcrypt';
import type { Kysely } from 'kysely';
import type { Database } from '../db/index.js';
import { isUniqueViolation, transaction } from '../db/index.js';
import { BadRequest, Conflict, Forbidden, NotFound, Unauthorized } from '../core/errors.js';
import { newHexId, newSecret } from '../core/ids.js';
import type { Bus } from '../bus/types.js';

export const DEFAULT_DOMAIN_ID = 'default';

export interface Domain { id: string; name: string; description: string; enabled: boolean; tags: string[]; options: Record<string, unknown>; extra: Record<string, unknown> }
export interface Project { id: string; name: string; domain_id: string; parent_id: string | null; description: string; enabled: boolean; tags: string[]; options: Record<string, unknown>; extra: Record<string, unknown> }
export interface User { id: string; name: string; domain_id: string; enabled: boolean; default_project_id: string | null; description: string | null; password_expires_at: string | null; options: Record<string, unknown>; extra: Record<string, unknown>; has_password: boolean; password_changed_at: string | null }
export interface Group { id: string; name: string; domain_id: string; description: string; extra: Record<string, unknown> }
export interface Role { id: string; name: string; domain_id: string | null; description: string | null; options: Record<string, unknown>; extra: Record<string, unknown> }
export interface Region { id: string; description: string; parent_region_id: string | null; extra: Record<string, unknown> }
export interface Service { id: string; type: string; name: string | null; description: string | null; enabled: boolean; extra: Record<string, unknown> }
export interface Endpoint { id: string; service_id: string; interface: string; url: string; region_id: string | null; enabled: boolean; extra: Record<string, unknown> }
export interface ApplicationCredential { id: string; name: string; user_id: string; project_id: string; description: string | null; expires_at: string | null; unrestricted: boolean; roles: { id: string; name: string }[] }

export type ActorType = 'user' | 'group';
export type TargetType = 'project' | 'domain' | 'system';
export interface Assignment { actor_type: ActorType; actor_id: string; target_type: TargetType; target_id: string; role_id: string; inherited: boolean }

/** An effective assignment, with where it came from (for GET /v3/role_assignments?effective). */
export interface EffectiveAssignment extends Assignment { via_group_id?: string; via_inheritance_from?: { type: 'project' | 'domain'; id: string }; implied_by?: string }

export interface CatalogEntry { id: string; type: string; name: string; endpoints: { id: string; interface: string; region: string | null; region_id: string | null; url: string }[] }

export const USER_OPTIONS = ['ignore_change_password_upon_first_use', 'ignore_password_expiry', 'ignore_lockout_failure_attempts', 'lock_password', 'multi_factor_auth_enabled', 'multi_factor_auth_rules', 'ignore_user_inactivity'];
const INTERFACES = ['public', 'internal', 'admin'];

/** What changed, for caches and notifications. Revocations are kept by tokens.ts. */
export type IdentityChange =
  | { kind: 'user-disabled' | 'user-deleted' | 'password-changed'; userId: string }
  | { kind: 'role-revoked'; assignment: Assignment }
  | { kind: 'project-disabled' | 'project-deleted'; projectId: string }
  | { kind: 'domain-disabled' | 'domain-deleted'; domainId: string }
  | { kind: 'app-cred-deleted'; appCredId: string; userId: string }
  | { kind: 'other' };

const json = (text: string | null | undefined): any => (text ? JSON.parse(text) : {});
const bool = (value: unknown): boolean => Number(value) === 1 || value === true;
const nowIso = (): string => new Date().toISOString();

export interface IdentityServiceOptions {
  database: Database;
  bus?: Bus;
  /** bcrypt cost; Keystone's default is 12. */
  passwordHashRounds?: number;
}

export class IdentityService {
  private readonly database: Database;
  private readonly db: Kysely<any>;
  private readonly bus?: Bus;
  private readonly rounds: number;
  private readonly listeners: ((change: IdentityChange) => void | Promise<void>)[] = [];
  /** Bumped on every write, so caches of derived data (effective roles) know they are stale. */
  generation = 0;

  constructor(options: IdentityServiceOptions) {
    this.database = options.database;
    this.db = options.database.db;
    this.bus = options.bus;
    this.rounds = options.passwordHashRounds ?? 12;
  }

  onChange(listener: (change: IdentityChange) => void | Promise<void>): void {
    this.listeners.push(listener);
  }

  private async changed(change: IdentityChange, event?: { type: string; id: string }): Promise<void> {
    this.generation++;
    for (const listener of this.listeners) await listener(change);
    // Keystone's basic notifications: identity.<resource>.<operation> with the resource id.
    if (event) await this.bus?.notify(`identity.${event.type}`, { resource_info: event.id }, { publisherId: 'identity' }).catch(() => undefined);
  }

  // ---------------------------------------------------------------- domains
  private toDomain(row: any): Domain {
    return { id: row.id, name: row.name, description: row.description ?? '', enabled: bool(row.enabled), tags: JSON.parse(row.tags), options: json(row.options), extra: json(row.extra) };
  }

  async createDomain(input: { id?: string; name: string; description?: string; enabled?: boolean; tags?: string[]; options?: Record<string, unknown>; extra?: Record<string, unknown> }): Promise<Domain> {
    const id = input.id ?? newHexId();
    await this.insertUnique('identity_domains', {
      id, name: input.name, description: input.description ?? '', enabled: input.enabled === false ? 0 : 1,
      tags: JSON.stringify(input.tags ?? []), options: JSON.stringify(input.options ?? {}), extra: JSON.stringify(input.extra ?? {}),
    }, `Duplicate entry found with name ${input.name} at domain level.`);
    await this.changed({ kind: 'other' }, { type: 'domain.created', id });
    return this.getDomain(id);
  }

  async getDomain(id: string): Promise<Domain> {
    const row = await this.db.selectFrom('identity_domains').selectAll().where('id', '=', id).executeTakeFirst();
    if (!row) throw new NotFound(`Could not find domain: ${id}.`);
    return this.toDomain(row);
  }

  async findDomainByName(name: string): Promise<Domain> {
    const row = await this.db.selectFrom('identity_domains').selectAll().where('name', '=', name).executeTakeFirst();
    if (!row) throw new NotFound(`Could not find domain: ${name}.`);
    return this.toDomain(row);
  }

  async listDomains(filter: { name?: string; enabled?: boolean } = {}): Promise<Domain[]> {
    let query = this.db.selectFrom('identity_domains').selectAll().orderBy('name');
    if (filter.name !== undefined) query = query.where('name', '=', filter.name);
    if (filter.enabled !== undefined) query = query.where('enabled', '=', filter.enabled ? 1 : 0);
    return (await query.execute()).map((r) => this.toDomain(r));
  }

  async updateDomain(id: string, patch: { name?: string; description?: string; enabled?: boolean; tags?: string[]; options?: Record<string, unknown>; extra?: Record<string, unknown> }): Promise<Domain> {
    const before = await this.getDomain(id);
    if (id === DEFAULT_DOMAIN_ID && patch.enabled === false) throw new Forbidden('The default domain cannot be disabled.');
    const values: Record<string, unknown> = {};
    if (patch.name !== undefined) values.name = patch.name;
    if (patch.description !== undefined) values.description = patch.description;
    if (patch.enabled !== undefined) values.enabled = patch.enabled ? 1 : 0;
    if (patch.tags !== undefined) values.tags = JSON.stringify(patch.tags);
    if (patch.options !== undefined) values.options = JSON.stringify({ ...before.options, ...patch.options });
    if (patch.extra !== undefined) values.extra = JSON.stringify({ ...before.extra, ...patch.extra });
    await this.updateUnique('identity_domains', id, values, `Duplicate entry found with name ${patch.name} at domain level.`);
    await this.changed(before.enabled && patch.enabled === false ? { kind: 'domain-disabled', domainId: id } : { kind: 'other' }, { type: 'domain.updated', id });
    return this.getDomain(id);
  }

  /** Keystone refuses to delete an enabled domain; deleting one removes everything it owns. */
  async deleteDomain(id: string): Promise<void> {
    const domain = await this.getDomain(id);
    if (domain.enabled) throw new Forbidden('Cannot delete a domain that is enabled, please disable it first.');
    await transaction(this.database, async (trx) => {
      const projects = (await trx.selectFrom('identity_projects').select('id').where('domain_id', '=', id).execute()).map((r) => r.id);
      const users = (await trx.selectFrom('identity_users').select('id').where('domain_id', '=', id).execute()).map((r) => r.id);
      const groups = (await trx.selectFrom('identity_groups').select('id').where('domain_id', '=', id).execute()).map((r) => r.id);
      const roles = (await trx.selectFrom('identity_roles').select('id').where('domain_id', '=', id).execute()).map((r) => r.id);
      await this.deleteAssignmentsOf(trx, { targets: [['domain', [id]], ['project', projects]], actors: [['user', users], ['group', groups]] });
      if (roles.length) await trx.deleteFrom('identity_assignments').where('role_id', 'in', roles).execute();
      await trx.deleteFrom('identity_roles').where('domain_id', '=', id).execute();
      await trx.deleteFrom('identity_groups').where('domain_id', '=', id).execute();
      await trx.deleteFrom('identity_users').where('domain_id', '=', id).execute();
      await trx.deleteFrom('identity_projects').where('domain_id', '=', id).execute();
      await trx.deleteFrom('identity_domains').where('id', '=', id).execute();
    });
    await this.changed({ kind: 'domain-deleted', domainId: id }, { type: 'domain.deleted', id });
  }

  // ---------------------------------------------------------------- projects
  private toProject(row: any): Project {
    return { id: row.id, name: row.name, domain_id: row.domain_id, parent_id: row.parent_id ?? null, description: row.description ?? '', enabled: bool(row.enabled), tags: JSON.parse(row.tags), options: json(row.options), extra: json(row.extra) };
  }

  async createProject(input: { id?: string; name: string; domain_id?: string; parent_id?: string | null; description?: string; enabled?: boolean; tags?: string[]; options?: Record<string, unknown>; extra?: Record<string, unknown> }): Promise<Project> {
    let domainId = input.domain_id;
    let parentId = input.parent_id ?? null;
    if (parentId) {
      const parent = await this.getProject(parentId).catch(() => undefined);
      if (parent) {
        if (domainId && domainId !== parent.domain_id) {
          throw new BadRequest(`Cannot create project, since it specifies its domain_id ${domainId}, but specifies a parent in a different domain (${parent.domain_id}).`);
        }
        domainId = parent.domain_id;
      } else {
        // A domain acts as the parent of its top-level projects: parent_id may name it.
        const domain = await this.getDomain(parentId).catch(() => { throw new BadRequest(`Could not find project: ${parentId}.`); });
        if (domainId && domainId !== domain.id) {
          throw new BadRequest(`Cannot create project, the parent (${domain.id}) is acting as a domain, but this project's domain id (${domainId}) does not match the parent's id.`);
        }
        domainId = domain.id;
        parentId = null;
      }
    }
    domainId ??= DEFAULT_DOMAIN_ID;
    await this.getDomain(domainId).catch(() => { throw new BadRequest(`Could not find domain: ${domainId}.`); });
    validateTags(input.tags ?? []);
    const id = input.id ?? newHexId();
    await this.insertUnique('identity_projects', {
      id, name: input.name, domain_id: domainId, parent_id: parentId, description: input.description ?? '',
      enabled: input.enabled === false ? 0 : 1, tags: JSON.stringify(input.tags ?? []),
      options: JSON.stringify(input.options ?? {}), extra: JSON.stringify(input.extra ?? {}),
    }, `Duplicate entry found with name ${input.name} at domain ${domainId}.`);
    await this.changed({ kind: 'other' }, { type: 'project.created', id });
    return this.getProject(id);
  }

  async getProject(id: string): Promise<Project> {
    const row = await this.db.selectFrom('identity_projects').selectAll().where('id', '=', id).executeTakeFirst();
    if (!row) throw new NotFound(`Could not find project: ${id}.`);
    return this.toProject(row);
  }

  async findProjectByName(name: string, domainId: string): Promise<Project> {
    const row = await this.db.selectFrom('identity_projects').selectAll().where('name', '=', name).where('domain_id', '=', domainId).executeTakeFirst();
    if (!row) throw new NotFound(`Could not find project: ${name}.`);
    return this.toProject(row);
  }

  async listProjects(filter: { domain_id?: string; name?: string; enabled?: boolean; parent_id?: string; ids?: string[]; tags?: string[]; tagsAny?: string[]; notTags?: string[]; notTagsAny?: string[] } = {}): Promise<Project[]> {
    let query = this.db.selectFrom('identity_projects').selectAll().orderBy('name');
    if (filter.domain_id !== undefined) query = query.where('domain_id', '=', filter.domain_id);
    if (filter.name !== undefined) query = query.where('name', '=', filter.name);
    if (filter.enabled !== undefined) query = query.where('enabled', '=', filter.enabled ? 1 : 0);
    if (filter.parent_id !== undefined) query = query.where('parent_id', '=', filter.parent_id);
    if (filter.ids !== undefined) {
      if (filter.ids.length === 0) return [];
      query = query.where('id', 'in', filter.ids);
    }
    const projects = (await query.execute()).map((r) => this.toProject(r));
    // Tag filters as Keystone defines them: tags = all of, tags-any = any of, not-tags = not all of, not-tags-any = none of.
    return projects.filter((p) => {
      const has = (t: string) => p.tags.includes(t);
      if (filter.tags && !filter.tags.every(has)) return false;
      if (filter.tagsAny && !filter.tagsAny.some(has)) return false;
      if (filter.notTags && filter.notTags.every(has)) return false;
      if (filter.notTagsAny && filter.notTagsAny.some(has)) return false;
      return true;
    });
  }

  async updateProject(id: string, patch: { name?: string; description?: string; enabled?: boolean; tags?: string[]; options?: Record<string, unknown>; extra?: Record<string, unknown>; domain_id?: string; parent_id?: string | null }): Promise<Project> {
    const before = await this.getProject(id);
    if (patch.domain_id !== undefined && patch.domain_id !== before.domain_id) throw new BadRequest('Update of `domain_id` is not allowed.');
    if (patch.parent_id !== undefined && patch.parent_id !== before.parent_id) throw new Forbidden('Update of `parent_id` is not allowed.');
    if (patch.enabled === false) {
      // Keystone does not allow disabling a project whose subtree has enabled projects.
      const children = await this.listProjects({ parent_id: id, enabled: true });
      if (children.length) throw new Forbidden(`Cannot disable project ${id} since its subtree contains enabled projects.`);
    }
    const values: Record<string, unknown> = {};
    if (patch.name !== undefined) values.name = patch.name;
    if (patch.description !== undefined) values.description = patch.description;
    if (patch.enabled !== undefined) values.enabled = patch.enabled ? 1 : 0;
    if (patch.tags !== undefined) { validateTags(patch.tags); values.tags = JSON.stringify(patch.tags); }
    if (patch.options !== undefined) values.options = JSON.stringify({ ...before.options, ...patch.options });
    if (patch.extra !== undefined) values.extra = JSON.stringify({ ...before.extra, ...patch.extra });
    await this.updateUnique('identity_projects', id, values, `Duplicate entry found with name ${patch.name} at domain ${before.domain_id}.`);
    await this.changed(before.enabled && patch.enabled === false ? { kind: 'project-disabled', projectId: id } : { kind: 'other' }, { type: 'project.updated', id });
    return this.getProject(id);
  }

  async deleteProject(id: string): Promise<void> {
    await this.getProject(id);
    const children = await this.listProjects({ parent_id: id });
    if (children.length) throw new Forbidden(`Cannot delete the project ${id} since it is not a leaf in the hierarchy. Use the cascade option if you want to delete a whole subtree.`);
    await transaction(this.database, async (trx) => {
      await this.deleteAssignmentsOf(trx, { targets: [['project', [id]]] });
      await trx.deleteFrom('identity_application_credentials').where('project_id', '=', id).execute();
      await trx.updateTable('identity_users').set({ default_project_id: null }).where('default_project_id', '=', id).execute();
      await trx.deleteFrom('identity_projects').where('id', '=', id).execute();
    });
    await this.changed({ kind: 'project-deleted', projectId: id }, { type: 'project.deleted', id });
  }

  /** Ancestors of a project, nearest first. */
  async projectAncestors(project: Project): Promise<Project[]> {
    const ancestors: Project[] = [];
    let parentId = project.parent_id;
    while (parentId && ancestors.length < 100) {
      const parent = await this.getProject(parentId);
      ancestors.push(parent);
      parentId = parent.parent_id;
    }
    return ancestors;
  }

  async projectSubtree(project: Project): Promise<Project[]> {
    const all = await this.listProjects({ domain_id: project.domain_id });
    const subtree: Project[] = [];
    const walk = (parentId: string) => {
      for (const p of all.filter((x) => x.parent_id === parentId)) { subtree.push(p); walk(p.id); }
    };
    walk(project.id);
    return subtree;
  }

  // ---------------------------------------------------------------- users
  private toUser(row: any): User {
    return {
      id: row.id, name: row.name, domain_id: row.domain_id, enabled: bool(row.enabled), default_project_id: row.default_project_id ?? null,
      description: row.description ?? null, password_expires_at: row.password_expires_at ?? null, options: json(row.options), extra: json(row.extra),
      has_password: !!row.password_hash, password_changed_at: row.password_changed_at ?? null,
    };
  }

  async createUser(input: { id?: string; name: string; domain_id?: string; password?: string | null; enabled?: boolean; default_project_id?: string | null; description?: string | null; options?: Record<string, unknown>; extra?: Record<string, unknown> }): Promise<User> {
    const domainId = input.domain_id ?? DEFAULT_DOMAIN_ID;
    await this.getDomain(domainId).catch(() => { throw new BadRequest(`Could not find domain: ${domainId}.`); });
    validateUserOptions(input.options ?? {});
    const id = input.id ?? newHexId();
    const now = nowIso();
    await this.insertUnique('identity_users', {
      id, name: input.name, domain_id: domainId, enabled: input.enabled === false ? 0 : 1,
      password_hash: input.password ? await bcrypt.hash(input.password, this.rounds) : null,
      password_changed_at: input.password ? now : null, default_project_id: input.default_project_id ?? null,
      description: input.description ?? null, options: JSON.stringify(Object.fromEntries(Object.entries(input.options ?? {}).filter(([, v]) => v !== null))), extra: JSON.stringify(input.extra ?? {}), created_at: now,
    }, `Duplicate entry found with name ${input.name} at domain ${domainId}.`);
    await this.changed({ kind: 'other' }, { type: 'user.created', id });
    return this.getUser(id);
  }

  async getUser(id: string): Promise<User> {
    const row = await this.db.selectFrom('identity_users').selectAll().where('id', '=', id).executeTakeFirst();
    if (!row) throw new NotFound(`Could not find user: ${id}.`);
    return this.toUser(row);
  }

  async findUserByName(name: string, domainId: string): Promise<User> {
    const row = await this.db.selectFrom('identity_users').selectAll().where('name', '=', name).where('domain_id', '=', domainId).executeTakeFirst();
    if (!row) throw new NotFound(`Could not find user: ${name}.`);
    return this.toUser(row);
  }

  async listUsers(filter: { domain_id?: string; name?: string; enabled?: boolean; ids?: string[] } = {}): Promise<User[]> {
    let query = this.db.selectFrom('identity_users').selectAll().orderBy('name');
    if (filter.domain_id !== undefined) query = query.where('domain_id', '=', filter.domain_id);
    if (filter.name !== undefined) query = query.where('name', '=', filter.name);
    if (filter.enabled !== undefined) query = query.where('enabled', '=', filter.enabled ? 1 : 0);
    if (filter.ids !== undefined) {
      if (filter.ids.length === 0) return [];
      query = query.where('id', 'in', filter.ids);
    }
    return (await query.execute()).map((r) => this.toUser(r));
  }

  async updateUser(id: string, patch: { name?: string; password?: string | null; enabled?: boolean; default_project_id?: string | null; description?: string | null; options?: Record<string, unknown>; extra?: Record<string, unknown>; domain_id?: string }): Promise<User> {
    const before = await this.getUser(id);
    if (patch.domain_id !== undefined && patch.domain_id !== before.domain_id) throw new BadRequest('Update of `domain_id` is not allowed.');
    const values: Record<string, unknown> = {};
    if (patch.name !== undefined) values.name = patch.name;
    if (patch.enabled !== undefined) values.enabled = patch.enabled ? 1 : 0;
    if (patch.default_project_id !== undefined) values.default_project_id = patch.default_project_id;
    if (patch.description !== undefined) values.description = patch.description;
    if (patch.options !== undefined) {
      validateUserOptions(patch.options);
      // A null option value removes the option, as in Keystone.
      const merged: Record<string, unknown> = { ...before.options, ...patch.options };
      for (const [k, v] of Object.entries(merged)) if (v === null) delete merged[k];
      values.options = JSON.stringify(merged);
    }
    if (patch.extra !== undefined) values.extra = JSON.stringify({ ...before.extra, ...patch.extra });
    if (patch.password !== undefined) {
      values.password_hash = patch.password ? await bcrypt.hash(patch.password, this.rounds) : null;
      values.password_changed_at = nowIso();
    }
    await this.updateUnique('identity_users', id, values, `Duplicate entry found with name ${patch.name} at domain ${before.domain_id}.`);
    if (before.enabled && patch.enabled === false) await this.changed({ kind: 'user-disabled', userId: id });
    if (patch.password !== undefined) await this.changed({ kind: 'password-changed', userId: id });
    await this.changed({ kind: 'other' }, { type: 'user.updated', id });
    return this.getUser(id);
  }

  async deleteUser(id: string): Promise<void> {
    await this.getUser(id);
    await transaction(this.database, async (trx) => {
      await this.deleteAssignmentsOf(trx, { actors: [['user', [id]]] });
      await trx.deleteFrom('identity_group_members').where('user_id', '=', id).execute();
      await trx.deleteFrom('identity_application_credentials').where('user_id', '=', id).execute();
      await trx.deleteFrom('identity_users').where('id', '=', id).execute();
    });
    await this.changed({ kind: 'user-deleted', userId: id }, { type: 'user.deleted', id });
  }

  /** Checks a user's password; the same error whether the user or the password is wrong. */
  async checkPassword(userId: string, password: string): Promise<User> {
    const row = await this.db.selectFrom('identity_users').selectAll().where('id', '=', userId).executeTakeFirst();
    if (!row || !row.password_hash || !(await bcrypt.compare(password, row.password_hash))) {
      throw new Unauthorized('The request you have made requires authentication.');
    }
    return this.toUser(row);
  }

  /** Self-service password change (POST /v3/users/{id}/password). */
  async changePassword(userId: string, originalPassword: string, newPassword: string): Promise<void> {
    const user = await this.checkPassword(userId, originalPassword);
    if (user.options.lock_password === true) {
      throw new BadRequest('You cannot change your password at this time due to password policy disallowing password changes. Please contact your administrator to reset your password.');
    }
    await this.updateUser(userId, { password: newPassword });
  }

  // ---------------------------------------------------------------- groups
  private toGroup(row: any): Group {
    return { id: row.id, name: row.name, domain_id: row.domain_id, description: row.description ?? '', extra: json(row.extra) };
  }

  async createGroup(input: { name: string; domain_id?: string; description?: string; extra?: Record<string, unknown> }): Promise<Group> {
    const domainId = input.domain_id ?? DEFAULT_DOMAIN_ID;
    await this.getDomain(domainId).catch(() => { throw new BadRequest(`Could not find domain: ${domainId}.`); });
    const id = newHexId();
    await this.insertUnique('identity_groups', { id, name: input.name, domain_id: domainId, description: input.description ?? '', extra: JSON.stringify(input.extra ?? {}) },
      `Duplicate entry found with name ${input.name} at domain ${domainId}.`);
    await this.changed({ kind: 'other' }, { type: 'group.created', id });
    return this.getGroup(id);
  }

  async getGroup(id: string): Promise<Group> {
    const row = await this.db.selectFrom('identity_groups').selectAll().where('id', '=', id).executeTakeFirst();
    if (!row) throw new NotFound(`Could not find group: ${id}.`);
    return this.toGroup(row);
  }

  async listGroups(filter: { domain_id?: string; name?: string } = {}): Promise<Group[]> {
    let query = this.db.selectFrom('identity_groups').selectAll().orderBy('name');
    if (filter.domain_id !== undefined) query = query.where('domain_id', '=', filter.domain_id);
    if (filter.name !== undefined) query = query.where('name', '=', filter.name);
    return (await query.execute()).map((r) => this.toGroup(r));
  }

  async updateGroup(id: string, patch: { name?: string; description?: string; extra?: Record<string, unknown>; domain_id?: string }): Promise<Group> {
    const before = await this.getGroup(id);
    if (patch.domain_id !== undefined && patch.domain_id !== before.domain_id) throw new BadRequest('Update of `domain_id` is not allowed.');
    const values: Record<string, unknown> = {};
    if (patch.name !== undefined) values.name = patch.name;
    if (patch.description !== undefined) values.description = patch.description;
    if (patch.extra !== undefined) values.extra = JSON.stringify({ ...before.extra, ...patch.extra });
    await this.updateUnique('identity_groups', id, values, `Duplicate entry found with name ${patch.name} at domain ${before.domain_id}.`);
    await this.changed({ kind: 'other' }, { type: 'group.updated', id });
    return this.getGroup(id);
  }

  async deleteGroup(id: string): Promise<void> {
    await this.getGroup(id);
    const members = await this.listGroupMembers(id);
    const grants = await this.listAssignments({ actorType: 'group', actorId: id });
    await transaction(this.database, async (trx) => {
      await this.deleteAssignmentsOf(trx, { actors: [['group', [id]]] });
      await trx.deleteFrom('identity_group_members').where('group_id', '=', id).execute();
      await trx.deleteFrom('identity_groups').where('id', '=', id).execute();
    });
    // Members lose what the group gave them: their tokens for those targets are revoked.
    for (const grant of grants) for (const user of members) await this.changed({ kind: 'role-revoked', assignment: { ...grant, actor_type: 'user', actor_id: user.id } });
    await this.changed({ kind: 'other' }, { type: 'group.deleted', id });
  }

  async addUserToGroup(groupId: string, userId: string): Promise<void> {
    await this.getGroup(groupId);
    await this.getUser(userId);
    try {
      await this.db.insertInto('identity_group_members').values({ group_id: groupId, user_id: userId }).execute();
    } catch (err) {
      if (!isUniqueViolation(err)) throw err; // already a member: PUT is idempotent
    }
    await this.changed({ kind: 'other' });
  }

  async removeUserFromGroup(groupId: string, userId: string): Promise<void> {
    await this.getGroup(groupId);
    await this.getUser(userId);
    const grants = await this.listAssignments({ actorType: 'group', actorId: groupId });
    const result = await this.db.deleteFrom('identity_group_members').where('group_id', '=', groupId).where('user_id', '=', userId).executeTakeFirst();
    if (Number(result.numDeletedRows) === 0) throw new NotFound(`User ${userId} is not a member of group ${groupId}.`);
    for (const grant of grants) await this.changed({ kind: 'role-revoked', assignment: { ...grant, actor_type: 'user', actor_id: userId } });
    await this.changed({ kind: 'other' });
  }

  async isUserInGroup(groupId: string, userId: string): Promise<boolean> {
    await this.getGroup(groupId);
    await this.getUser(userId);
    const row = await this.db.selectFrom('identity_group_members').select('user_id').where('group_id', '=', groupId).where('user_id', '=', userId).executeTakeFirst();
    return !!row;
  }

  async listGroupMembers(groupId: string): Promise<User[]> {
    await this.getGroup(groupId);
    const ids = (await this.db.selectFrom('identity_group_members').select('user_id').where('group_id', '=', groupId).execute()).map((r) => r.user_id);
    return this.listUsers({ ids });
  }

  async listGroupsOfUser(userId: string): Promise<Group[]> {
    const rows = await this.db.selectFrom('identity_groups').innerJoin('identity_group_members', 'identity_group_members.group_id', 'identity_groups.id')
      .selectAll('identity_groups').where('identity_group_members.user_id', '=', userId).orderBy('identity_groups.name').execute();
    return rows.map((r) => this.toGroup(r));
  }

  // ---------------------------------------------------------------- roles
  private toRole(row: any): Role {
    return { id: row.id, name: row.name, domain_id: row.domain_id || null, description: row.description ?? null, options: json(row.options), extra: json(row.extra) };
  }

  async createRole(input: { id?: string; name: string; domain_id?: string | null; description?: string | null; options?: Record<string, unknown>; extra?: Record<string, unknown> }): Promise<Role> {
    if (input.domain_id) await this.getDomain(input.domain_id).catch(() => { throw new BadRequest(`Could not find domain: ${input.domain_id}.`); });
    const id = input.id ?? newHexId();
    await this.insertUnique('identity_roles', {
      id, name: input.name, domain_id: input.domain_id ?? '', description: input.description ?? null,
      options: JSON.stringify(input.options ?? {}), extra: JSON.stringify(input.extra ?? {}),
    }, `Duplicate entry found with name ${input.name}.`);
    await this.changed({ kind: 'other' }, { type: 'role.created', id });
    return this.getRole(id);
  }

  async getRole(id: string): Promise<Role> {
    const row = await this.db.selectFrom('identity_roles').selectAll().where('id', '=', id).executeTakeFirst();
    if (!row) throw new NotFound(`Could not find role: ${id}.`);
    return this.toRole(row);
  }

  async findRoleByName(name: string, domainId: string | null = null): Promise<Role> {
    const row = await this.db.selectFrom('identity_roles').selectAll().where('name', '=', name).where('domain_id', '=', domainId ?? '').executeTakeFirst();
    if (!row) throw new NotFound(`Could not find role: ${name}.`);
    return this.toRole(row);
  }

  async listRoles(filter: { name?: string; domain_id?: string | null } = {}): Promise<Role[]> {
    let query = this.db.selectFrom('identity_roles').selectAll().orderBy('name');
    if (filter.name !== undefined) query = query.where('name', '=', filter.name);
    // Without a domain_id filter Keystone lists the global roles only.
    query = query.where('domain_id', '=', filter.domain_id ?? '');
    return (await query.execute()).map((r) => this.toRole(r));
  }

  async updateRole(id: string, patch: { name?: string; description?: string | null; options?: Record<string, unknown>; extra?: Record<string, unknown>; domain_id?: string | null }): Promise<Role> {
    const before = await this.getRole(id);
    if (patch.domain_id !== undefined && (patch.domain_id ?? null) !== before.domain_id) throw new BadRequest('Update of `domain_id` is not allowed.');
    const values: Record<string, unknown> = {};
    if (patch.name !== undefined) values.name = patch.name;
    if (patch.description !== undefined) values.description = patch.description;
    if (patch.options !== undefined) values.options = JSON.stringify({ ...before.options, ...patch.options });
    if (patch.extra !== undefined) values.extra = JSON.stringify({ ...before.extra, ...patch.extra });
    await this.updateUnique('identity_roles', id, values, `Duplicate entry found with name ${patch.name}.`);
    await this.changed({ kind: 'other' }, { type: 'role.updated', id });
    return this.getRole(id);
  }

  async deleteRole(id: string): Promise<void> {
    const role = await this.getRole(id);
    if (role.options.immutable === true) throw new Forbidden(`Role ${id} is immutable and cannot be deleted.`);
    const grants = await this.listAssignments({ roleId: id });
    await transaction(this.database, async (trx) => {
      await trx.deleteFrom('identity_assignments').where('role_id', '=', id).execute();
      await trx.deleteFrom('identity_implied_roles').where((eb) => eb.or([eb('prior_role_id', '=', id), eb('implied_role_id', '=', id)])).execute();
      await trx.deleteFrom('identity_roles').where('id', '=', id).execute();
    });
    for (const grant of grants) await this.changed({ kind: 'role-revoked', assignment: grant });
    await this.changed({ kind: 'other' }, { type: 'role.deleted', id });
  }

  // ---------------------------------------------------------------- implied roles
  async createImpliedRole(priorId: string, impliedId: string): Promise<{ prior: Role; implied: Role }> {
    const prior = await this.getRole(priorId);
    const implied = await this.getRole(impliedId);
    if (implied.domain_id) throw new Forbidden(`${impliedId} cannot be an implied roles.`);
    // Keystone's [assignment] prohibited_implied_role, whose default is admin.
    if (implied.name === 'admin') throw new Forbidden(`${impliedId} cannot be an implied roles.`);
    if (priorId === impliedId || (await this.expandImplied([impliedId])).includes(priorId)) {
      throw new Forbidden(`Implied role ${impliedId} would create a cycle with ${priorId}.`);
    }
    try {
      await this.db.insertInto('identity_implied_roles').values({ prior_role_id: priorId, implied_role_id: impliedId }).execute();
    } catch (err) {
      if (!isUniqueViolation(err)) throw err;
    }
    await this.changed({ kind: 'other' });
    return { prior, implied };
  }

  async getImpliedRole(priorId: string, impliedId: string): Promise<{ prior: Role; implied: Role }> {
    const prior = await this.getRole(priorId);
    const implied = await this.getRole(impliedId);
    const row = await this.db.selectFrom('identity_implied_roles').selectAll().where('prior_role_id', '=', priorId).where('implied_role_id', '=', impliedId).executeTakeFirst();
    if (!row) throw new NotFound(`${priorId} does not imply ${impliedId}.`);
    return { prior, implied };
  }

  async deleteImpliedRole(priorId: string, impliedId: string): Promise<void> {
    await this.getImpliedRole(priorId, impliedId);
    await this.db.deleteFrom('identity_implied_roles').where('prior_role_id', '=', priorId).where('implied_role_id', '=', impliedId).execute();
    await this.changed({ kind: 'other' });
  }

  /** Direct inferences: prior role id → implied role ids. */
  async listRoleInferences(priorId?: string): Promise<Map<string, string[]>> {
    let query = this.db.selectFrom('identity_implied_roles').selectAll();
    if (priorId) query = query.where('prior_role_id', '=', priorId);
    const inferences = new Map<string, string[]>();
    for (const row of await query.execute()) inferences.set(row.prior_role_id, [...(inferences.get(row.prior_role_id) ?? []), row.implied_role_id]);
    return inferences;
  }

  /** The role ids together with every role they imply, transitively. */
  async expandImplied(roleIds: string[]): Promise<string[]> {
    const inferences = await this.listRoleInferences();
    const result = new Set(roleIds);
    const queue = [...roleIds];
    while (queue.length) {
      for (const implied of inferences.get(queue.shift()!) ?? []) {
        if (!result.has(implied)) { result.add(implied); queue.push(implied); }
      }
    }
    return [...result];
  }

  // ---------------------------------------------------------------- assignments
  private toAssignment(row: any): Assignment {
    return { actor_type: row.actor_type, actor_id: row.actor_id, target_type: row.target_type, target_id: row.target_id, role_id: row.role_id, inherited: bool(row.inherited) };
  }

  private async checkAssignmentParts(a: Assignment): Promise<Role> {
    const role = await this.getRole(a.role_id);
    if (a.actor_type === 'user') await this.getUser(a.actor_id); else await this.getGroup(a.actor_id);
    if (a.target_type === 'project') {
      const project = await this.getProject(a.target_id);
      if (role.domain_id && role.domain_id !== project.domain_id) throw new Forbidden(`Domain-specific role ${role.id} can only be assigned within its domain.`);
    } else if (a.target_type === 'domain') {
      await this.getDomain(a.target_id);
      if (role.domain_id && role.domain_id !== a.target_id) throw new Forbidden(`Domain-specific role ${role.id} can only be assigned within its domain.`);
    } else if (a.target_id !== 'all') {
      throw new NotFound(`Could not find system: ${a.target_id}.`);
    }
    return role;
  }

  async grantRole(a: Assignment): Promise<void> {
    await this.checkAssignmentParts(a);
    try {
      await this.db.insertInto('identity_assignments').values({ ...a, inherited: a.inherited ? 1 : 0 }).execute();
    } catch (err) {
      if (!isUniqueViolation(err)) throw err; // granting twice is not an error
    }
    await this.changed({ kind: 'other' });
  }

  async checkGrant(a: Assignment): Promise<void> {
    await this.checkAssignmentParts(a);
    const row = await this.assignmentQuery(this.db, a).executeTakeFirst();
    if (!row) throw new NotFound(`Could not find role assignment with role: ${a.role_id}, ${a.actor_type}: ${a.actor_id}, ${a.target_type}: ${a.target_id}.`);
  }

  async revokeRole(a: Assignment): Promise<void> {
    await this.checkGrant(a);
    await this.db.deleteFrom('identity_assignments').where('actor_type', '=', a.actor_type).where('actor_id', '=', a.actor_id)
      .where('target_type', '=', a.target_type).where('target_id', '=', a.target_id).where('role_id', '=', a.role_id)
      .where('inherited', '=', a.inherited ? 1 : 0).execute();
    if (a.actor_type === 'group') {
      for (const user of await this.listGroupMembers(a.actor_id)) await this.changed({ kind: 'role-revoked', assignment: { ...a, actor_type: 'user', actor_id: user.id } });
    }
    await this.changed({ kind: 'role-revoked', assignment: a });
  }

  private assignmentQuery(db: Kysely<any>, a: Assignment) {
    return db.selectFrom('identity_assignments').selectAll().where('actor_type', '=', a.actor_type).where('actor_id', '=', a.actor_id)
      .where('target_type', '=', a.target_type).where('target_id', '=', a.target_id).where('role_id', '=', a.role_id).where('inherited', '=', a.inherited ? 1 : 0);
  }

  async listAssignments(filter: { actorType?: ActorType; actorId?: string; targetType?: TargetType; targetId?: string; roleId?: string; inherited?: boolean } = {}): Promise<Assignment[]> {
    let query = this.db.selectFrom('identity_assignments').selectAll();
    if (filter.actorType) query = query.where('actor_type', '=', filter.actorType);
    if (filter.actorId) query = query.where('actor_id', '=', filter.actorId);
    if (filter.targetType) query = query.where('target_type', '=', filter.targetType);
    if (filter.targetId) query = query.where('target_id', '=', filter.targetId);
    if (filter.roleId) query = query.where('role_id', '=', filter.roleId);
    if (filter.inherited !== undefined) query = query.where('inherited', '=', filter.inherited ? 1 : 0);
    return (await query.execute()).map((r) => this.toAssignment(r));
  }

  private async deleteAssignmentsOf(trx: Kysely<any>, which: { targets?: [TargetType, string[]][]; actors?: [ActorType, string[]][] }): Promise<void> {
    for (const [type, ids] of which.targets ?? []) {
      if (ids.length) await trx.deleteFrom('identity_assignments').where('target_type', '=', type).where('target_id', 'in', ids).execute();
    }
    for (const [type, ids] of which.actors ?? []) {
      if (ids.length) await trx.deleteFrom('identity_assignments').where('actor_type', '=', type).where('actor_id', 'in', ids).execute();
    }
  }

  /**
   * Effective assignments of users: group grants expanded to the group's members, inherited
   * grants (OS-INHERIT) applied to the projects below their target, and implied roles added.
   */
  async effectiveAssignments(filter: { userId?: string; targetType?: TargetType; targetId?: string; roleId?: string; includeImplied?: boolean }): Promise<EffectiveAssignment[]> {
    const groupsOf = new Map<string, string[]>();
    const members = await this.db.selectFrom('identity_group_members').selectAll().execute();
    for (const m of members) groupsOf.set(m.group_id, [...(groupsOf.get(m.group_id) ?? []), m.user_id]);

    const direct = await this.listAssignments();
    const projects = await this.db.selectFrom('identity_projects').select(['id', 'domain_id', 'parent_id']).execute();
    const childrenOf = new Map<string, string[]>();
    for (const p of projects) if (p.parent_id) childrenOf.set(p.parent_id, [...(childrenOf.get(p.parent_id) ?? []), p.id]);
    const subtree = (id: string): string[] => (childrenOf.get(id) ?? []).flatMap((c) => [c, ...subtree(c)]);

    const result: EffectiveAssignment[] = [];
    for (const a of direct) {
      const users = a.actor_type === 'user' ? [{ id: a.actor_id }] : (groupsOf.get(a.actor_id) ?? []).map((id) => ({ id, via: a.actor_id }));
      const targets: { type: TargetType; id: string; from?: { type: 'project' | 'domain'; id: string } }[] = [];
      if (!a.inherited) targets.push({ type: a.target_type, id: a.target_id });
      else if (a.target_type === 'domain') {
        for (const p of projects.filter((p) => p.domain_id === a.target_id)) targets.push({ type: 'project', id: p.id, from: { type: 'domain', id: a.target_id } });
      } else if (a.target_type === 'project') {
        for (const id of subtree(a.target_id)) targets.push({ type: 'project', id, from: { type: 'project', id: a.target_id } });
      }
      for (const user of users) {
        if (filter.userId && user.id !== filter.userId) continue;
        for (const t of targets) {
          if (filter.targetType && (t.type !== filter.targetType || (filter.targetId && t.id !== filter.targetId))) continue;
          result.push({ actor_type: 'user', actor_id: user.id, target_type: t.type, target_id: t.id, role_id: a.role_id, inherited: false,
            via_group_id: (user as { via?: string }).via, via_inheritance_from: t.from });
        }
      }
    }
    let expanded = result;
    if (filter.includeImplied !== false) {
      const inferences = await this.listRoleInferences();
      expanded = [];
      for (const a of result) {
        expanded.push(a);
        const seen = new Set([a.role_id]);
        const queue = [a.role_id];
        while (queue.length) {
          const prior = queue.shift()!;
          for (const implied of inferences.get(prior) ?? []) {
            if (seen.has(implied)) continue;
            seen.add(implied);
            queue.push(implied);
            expanded.push({ ...a, role_id: implied, implied_by: prior });
          }
        }
      }
    }
    return filter.roleId ? expanded.filter((a) => a.role_id === filter.roleId) : expanded;
  }

  /** The roles a user holds on a target (groups, inheritance and implied roles included), by name order. */
  async rolesOnTarget(userId: string, targetType: TargetType, targetId: string): Promise<Role[]> {
    const assignments = await this.effectiveAssignments({ userId, targetType, targetId });
    const ids = [...new Set(assignments.map((a) => a.role_id))];
    if (ids.length === 0) return [];
    const rows = await this.db.selectFrom('identity_roles').selectAll().where('id', 'in', ids).orderBy('name').execute();
    return rows.map((r) => this.toRole(r));
  }

  /** Projects on which a user has any role (GET /v3/auth/projects, /v3/users/{id}/projects). */
  async projectsOfUser(userId: string): Promise<Project[]> {
    const ids = [...new Set((await this.effectiveAssignments({ userId, targetType: 'project', includeImplied: false })).map((a) => a.target_id))];
    return this.listProjects({ ids });
  }

  async domainsOfUser(userId: string): Promise<Domain[]> {
    const ids = new Set((await this.effectiveAssignments({ userId, targetType: 'domain', includeImplied: false })).map((a) => a.target_id));
    return (await this.listDomains()).filter((d) => ids.has(d.id));
  }

  // ---------------------------------------------------------------- regions, services, endpoints
  private toRegion(row: any): Region { return { id: row.id, description: row.description ?? '', parent_region_id: row.parent_region_id ?? null, extra: json(row.extra) }; }
  private toService(row: any): Service { return { id: row.id, type: row.type, name: row.name ?? null, description: row.description ?? null, enabled: bool(row.enabled), extra: json(row.extra) }; }
  private toEndpoint(row: any): Endpoint { return { id: row.id, service_id: row.service_id, interface: row.interface, url: row.url, region_id: row.region_id ?? null, enabled: bool(row.enabled), extra: json(row.extra) }; }

  async createRegion(input: { id?: string; description?: string; parent_region_id?: string | null; extra?: Record<string, unknown> }): Promise<Region> {
    const id = input.id ?? newHexId();
    // An unknown parent is a 404 in Keystone (RegionNotFound), not a 400.
    if (input.parent_region_id) await this.getRegion(input.parent_region_id);
    await this.insertUnique('identity_regions', { id, description: input.description ?? '', parent_region_id: input.parent_region_id ?? null, extra: JSON.stringify(input.extra ?? {}) },
      `Duplicate ID, ${id}.`);
    await this.changed({ kind: 'other' }, { type: 'region.created', id });
    return this.getRegion(id);
  }

  async getRegion(id: string): Promise<Region> {
    const row = await this.db.selectFrom('identity_regions').selectAll().where('id', '=', id).executeTakeFirst();
    if (!row) throw new NotFound(`Could not find region: ${id}.`);
    return this.toRegion(row);
  }

  async listRegions(filter: { parent_region_id?: string } = {}): Promise<Region[]> {
    let query = this.db.selectFrom('identity_regions').selectAll().orderBy('id');
    if (filter.parent_region_id !== undefined) query = query.where('parent_region_id', '=', filter.parent_region_id);
    return (await query.execute()).map((r) => this.toRegion(r));
  }

  async updateRegion(id: string, patch: { description?: string; parent_region_id?: string | null; extra?: Record<string, unknown> }): Promise<Region> {
    const before = await this.getRegion(id);
    const values: Record<string, unknown> = {};
    if (patch.description !== undefined) values.description = patch.description;
    if (patch.parent_region_id !== undefined) {
      if (patch.parent_region_id) {
        // Walk up from the new parent: finding this region there would make a cycle.
        let cursor: string | null = patch.parent_region_id;
        while (cursor) {
          if (cursor === id) throw new BadRequest(`The specified parent region ${patch.parent_region_id} would create a circular region hierarchy.`);
          cursor = (await this.getRegion(cursor)).parent_region_id;
        }
      }
      values.parent_region_id = patch.parent_region_id;
    }
    if (patch.extra !== undefined) values.extra = JSON.stringify({ ...before.extra, ...patch.extra });
    if (Object.keys(values).length) await this.db.updateTable('identity_regions').set(values).where('id', '=', id).execute();
    await this.changed({ kind: 'other' }, { type: 'region.updated', id });
    return this.getRegion(id);
  }

  /** Deletes a region and, as Keystone does, all regions below it — unless any of them has endpoints. */
  async deleteRegion(id: string): Promise<void> {
    await this.getRegion(id);
    const all = await this.listRegions();
    const doomed = [id];
    for (let i = 0; i < doomed.length; i++) {
      for (const child of all) if (child.parent_region_id === doomed[i] && !doomed.includes(child.id)) doomed.push(child.id);
    }
    const endpoints = await this.db.selectFrom('identity_endpoints').select('id').where('region_id', 'in', doomed).execute();
    if (endpoints.length) throw new Forbidden(`Unable to delete region ${id} because it or its child regions have associated endpoints.`);
    await transaction(this.database, async (trx) => {
      await trx.deleteFrom('identity_regions').where('id', 'in', doomed).execute();
    });
    for (const gone of doomed) await this.changed({ kind: 'other' }, { type: 'region.deleted', id: gone });
  }

  async createService(input: { type: string; name?: string | null; description?: string | null; enabled?: boolean; extra?: Record<string, unknown> }): Promise<Service> {
    const id = newHexId();
    await this.db.insertInto('identity_services').values({ id, type: input.type, name: input.name ?? null, description: input.description ?? null,
      enabled: input.enabled === false ? 0 : 1, extra: JSON.stringify(input.extra ?? {}) }).execute();
    await this.changed({ kind: 'other' }, { type: 'service.created', id });
    return this.getService(id);
  }

  async getService(id: string): Promise<Service> {
    const row = await this.db.selectFrom('identity_services').selectAll().where('id', '=', id).executeTakeFirst();
    if (!row) throw new NotFound(`Could not find service: ${id}.`);
    return this.toService(row);
  }

  async listServices(filter: { type?: string; name?: string } = {}): Promise<Service[]> {
    let query = this.db.selectFrom('identity_services').selectAll().orderBy('type');
    if (filter.type !== undefined) query = query.where('type', '=', filter.type);
    if (filter.name !== undefined) query = query.where('name', '=', filter.name);
    return (await query.execute()).map((r) => this.toService(r));
  }

  async updateService(id: string, patch: { type?: string; name?: string | null; description?: string | null; enabled?: boolean; extra?: Record<string, unknown> }): Promise<Service> {
    const before = await this.getService(id);
    const values: Record<string, unknown> = {};
    if (patch.type !== undefined) values.type = patch.type;
    if (patch.name !== undefined) values.name = patch.name;
    if (patch.description !== undefined) values.description = patch.description;
    if (patch.enabled !== undefined) values.enabled = patch.enabled ? 1 : 0;
    if (patch.extra !== undefined) values.extra = JSON.stringify({ ...before.extra, ...patch.extra });
    if (Object.keys(values).length) await this.db.updateTable('identity_services').set(values).where('id', '=', id).execute();
    await this.changed({ kind: 'other' }, { type: 'service.updated', id });
    return this.getService(id);
  }

  /** Deleting a service deletes its endpoints, as Keystone does. */
  async deleteService(id: string): Promise<void> {
    await this.getService(id);
    await transaction(this.database, async (trx) => {
      await trx.deleteFrom('identity_endpoints').where('service_id', '=', id).execute();
      await trx.deleteFrom('identity_services').where('id', '=', id).execute();
    });
    await this.changed({ kind: 'other' }, { type: 'service.deleted', id });
  }

  async createEndpoint(input: { service_id: string; interface: string; url: string; region_id?: string | null; enabled?: boolean; extra?: Record<string, unknown> }): Promise<Endpoint> {
    await this.validateEndpoint(input);
    const id = newHexId();
    await this.db.insertInto('identity_endpoints').values({ id, service_id: input.service_id, interface: input.interface, url: input.url,
      region_id: input.region_id ?? null, enabled: input.enabled === false ? 0 : 1, extra: JSON.stringify(input.extra ?? {}) }).execute();
    await this.changed({ kind: 'other' }, { type: 'endpoint.created', id });
    return this.getEndpoint(id);
  }

  private async validateEndpoint(input: { service_id?: string; interface?: string; region_id?: string | null }): Promise<void> {
    if (input.interface !== undefined && !INTERFACES.includes(input.interface)) {
      throw new BadRequest(`Invalid input for field 'interface': '${input.interface}' is not one of ${INTERFACES.join(', ')}`);
    }
    if (input.service_id !== undefined) await this.getService(input.service_id).catch(() => { throw new BadRequest(`Could not find service: ${input.service_id}.`); });
    if (input.region_id) await this.getRegion(input.region_id).catch(() => { throw new BadRequest(`Could not find region: ${input.region_id}.`); });
  }

  async getEndpoint(id: string): Promise<Endpoint> {
    const row = await this.db.selectFrom('identity_endpoints').selectAll().where('id', '=', id).executeTakeFirst();
    if (!row) throw new NotFound(`Could not find endpoint: ${id}.`);
    return this.toEndpoint(row);
  }

  async listEndpoints(filter: { service_id?: string; interface?: string; region_id?: string } = {}): Promise<Endpoint[]> {
    let query = this.db.selectFrom('identity_endpoints').selectAll().orderBy('id');
    if (filter.service_id !== undefined) query = query.where('service_id', '=', filter.service_id);
    if (filter.interface !== undefined) query = query.where('interface', '=', filter.interface);
    if (filter.region_id !== undefined) query = query.where('region_id', '=', filter.region_id);
    return (await query.execute()).map((r) => this.toEndpoint(r));
  }

  async updateEndpoint(id: string, patch: { service_id?: string; interface?: string; url?: string; region_id?: string | null; enabled?: boolean; extra?: Record<string, unknown> }): Promise<Endpoint> {
    const before = await this.getEndpoint(id);
    await this.validateEndpoint(patch);
    const values: Record<string, unknown> = {};
    for (const key of ['service_id', 'interface', 'url', 'region_id'] as const) if (patch[key] !== undefined) values[key] = patch[key];
    if (patch.enabled !== undefined) values.enabled = patch.enabled ? 1 : 0;
    if (patch.extra !== undefined) values.extra = JSON.stringify({ ...before.extra, ...patch.extra });
    if (Object.keys(values).length) await this.db.updateTable('identity_endpoints').set(values).where('id', '=', id).execute();
    await this.changed({ kind: 'other' }, { type: 'endpoint.updated', id });
    return this.getEndpoint(id);
  }

  async deleteEndpoint(id: string): Promise<void> {
    await this.getEndpoint(id);
    await this.db.deleteFrom('identity_endpoints').where('id', '=', id).execute();
    await this.changed({ kind: 'other' }, { type: 'endpoint.deleted', id });
  }

  /** The service catalog: enabled services with their enabled endpoints. */
  async catalog(): Promise<CatalogEntry[]> {
    const services = (await this.listServices()).filter((s) => s.enabled);
    const endpoints = (await this.listEndpoints()).filter((e) => e.enabled);
    return services.map((s) => ({
      id: s.id, type: s.type, name: s.name ?? '',
      endpoints: endpoints.filter((e) => e.service_id === s.id).map((e) => ({ id: e.id, interface: e.interface, region: e.region_id, region_id: e.region_id, url: e.url })),
    }));
  }

  // ---------------------------------------------------------------- application credentials
  private toAppCred(row: any, rolesById: Map<string, Role>): ApplicationCredential {
    const roleIds: string[] = JSON.parse(row.roles);
    return {
      id: row.id, name: row.name, user_id: row.user_id, project_id: row.project_id, description: row.description ?? null,
      expires_at: row.expires_at ?? null, unrestricted: bool(row.unrestricted),
      roles: roleIds.map((id) => ({ id, name: rolesById.get(id)?.name ?? id })),
    };
  }

  private async rolesById(): Promise<Map<string, Role>> {
    const rows = await this.db.selectFrom('identity_roles').selectAll().execute();
    return new Map(rows.map((r) => [r.id, this.toRole(r)]));
  }

  /**
   * Creates an application credential for the user on the project of the token that asks.
   * Its roles must be a subset of the user's roles there (all of them by default). Returns the
   * secret once, unhashed.
   */
  async createApplicationCredential(input: { userId: string; projectId: string; name: string; secret?: string; description?: string | null; expires_at?: string | null; unrestricted?: boolean; roles?: { id?: string; name?: string }[]; allowedRoleIds?: string[] }): Promise<ApplicationCredential & { secret: string }> {
    // The roles the creator holds: its roles on the project, narrowed to those of the token
    // that asks (a token from an application credential carries only that credential's roles).
    let userRoles = await this.rolesOnTarget(input.userId, 'project', input.projectId);
    if (input.allowedRoleIds) userRoles = userRoles.filter((r) => input.allowedRoleIds!.includes(r.id));
    const unassigned = () => new BadRequest('Invalid application credential: Cannot create an application credential with unassigned role');
    let roleIds = userRoles.map((r) => r.id);
    if (input.roles && input.roles.length) {
      const wantedIds = input.roles.map((wanted) => {
        const match = userRoles.find((r) => (wanted.id && r.id === wanted.id) || (!wanted.id && wanted.name && r.name === wanted.name));
        if (!match) throw unassigned();
        return match.id;
      });
      // As Keystone does, the roles the given ones imply come along, and must be held too.
      roleIds = await this.expandImplied(wantedIds);
      if (roleIds.some((id) => !userRoles.some((r) => r.id === id))) throw unassigned();
    }
    if (roleIds.length === 0) throw unassigned();
    let expiresAt: string | null = null;
    if (input.expires_at) {
      const parsed = new Date(input.expires_at);
      if (Number.isNaN(parsed.getTime())) throw new BadRequest(`Invalid input for field 'expires_at': '${input.expires_at}' is not a valid date-time.`);
      if (parsed.getTime() <= Date.now()) throw new BadRequest(`The expiration time ${input.expires_at} is in the past.`);
      expiresAt = parsed.toISOString();
    }
    const id = newHexId();
    const secret = input.secret ?? newSecret(64);
    await this.insertUnique('identity_application_credentials', {
      id, name: input.name, user_id: input.userId, project_id: input.projectId, secret_hash: await bcrypt.hash(secret, this.rounds),
      description: input.description ?? null, expires_at: expiresAt, unrestricted: input.unrestricted ? 1 : 0,
      roles: JSON.stringify([...new Set(roleIds)]), created_at: nowIso(),
    }, `Duplicate entry found with name ${input.name}.`);
    await this.changed({ kind: 'other' }, { type: 'application_credential.created', id });
    return { ...(await this.getApplicationCredential(input.userId, id)), secret };
  }

  async getApplicationCredential(userId: string, id: string): Promise<ApplicationCredential> {
    const row = await this.db.selectFrom('identity_application_credentials').selectAll().where('id', '=', id).where('user_id', '=', userId).executeTakeFirst();
    if (!row) throw new NotFound(`Could not find Application Credential: ${id}.`);
    return this.toAppCred(row, await this.rolesById());
  }

  async listApplicationCredentials(userId: string, filter: { name?: string } = {}): Promise<ApplicationCredential[]> {
    let query = this.db.selectFrom('identity_application_credentials').selectAll().where('user_id', '=', userId).orderBy('name');
    if (filter.name !== undefined) query = query.where('name', '=', filter.name);
    const roles = await this.rolesById();
    return (await query.execute()).map((r) => this.toAppCred(r, roles));
  }

  async deleteApplicationCredential(userId: string, id: string): Promise<void> {
    await this.getApplicationCredential(userId, id);
    await this.db.deleteFrom('identity_application_credentials').where('id', '=', id).execute();
    await this.changed({ kind: 'app-cred-deleted', appCredId: id, userId }, { type: 'application_credential.deleted', id });
  }

  /** Verifies an application credential's secret (by id, or by name and user); 401 on any mismatch. */
  async verifyApplicationCredential(ref: { id?: string; name?: string; userId?: string }, secret: string): Promise<ApplicationCredential> {
    if ([ref.id, ref.name, ref.userId, secret].some((v) => v !== undefined && typeof v !== 'string')) {
      throw new BadRequest('Invalid input for field application_credential: id, name, user and secret are strings.');
    }
    let query = this.db.selectFrom('identity_application_credentials').selectAll();
    if (ref.id) query = query.where('id', '=', ref.id);
    else if (ref.name && ref.userId) query = query.where('name', '=', ref.name).where('user_id', '=', ref.userId);
    else throw new BadRequest('An application credential needs an id, or a name and a user.');
    const row = await query.executeTakeFirst();
    if (!row || !(await bcrypt.compare(secret, row.secret_hash))) throw new Unauthorized('Invalid application credential.');
    if (row.expires_at && new Date(row.expires_at).getTime() <= Date.now()) throw new Unauthorized('Application credential has expired.');
    return this.toAppCred(row, await this.rolesById());
  }

  // ---------------------------------------------------------------- helpers
  private async insertUnique(table: string, values: Record<string, unknown>, duplicateMessage: string): Promise<void> {
    try {
      await this.db.insertInto(table).values(values).execute();
    } catch (err) {
      if (isUniqueViolation(err)) throw new Conflict(`Conflict occurred attempting to store ${table.replace('identity_', '').replace(/s$/, '')} - ${duplicateMessage}`);
      throw err;
    }
  }

  private async updateUnique(table: string, id: string, values: Record<string, unknown>, duplicateMessage: string): Promise<void> {
    if (Object.keys(values).length === 0) return;
    try {
      await this.db.updateTable(table).set(values).where('id', '=', id).execute();
    } catch (err) {
      if (isUniqueViolation(err)) throw new Conflict(`Conflict occurred attempting to store ${table.replace('identity_', '').replace(/s$/, '')} - ${duplicateMessage}`);
      throw err;
    }
  }
}

function validateTags(tags: string[]): void {
  if (tags.length > 80) throw new BadRequest('Invalid input for field \'tags\': a project can have at most 80 tags.');
  for (const tag of tags) {
    if (typeof tag !== 'string' || tag.length === 0 || tag.length > 255 || tag.includes('/') || tag.includes(',')) {
      throw new BadRequest(`Invalid input for field 'tags': '${tag}' must be 1-255 characters without '/' or ','.`);
    }
  }
}

/** Keystone's user options: booleans, except multi_factor_auth_rules (a list of lists of method names); null unsets. */
function validateUserOptions(options: Record<string, unknown>): void {
  for (const [key, value] of Object.entries(options)) {
    if (!USER_OPTIONS.includes(key)) throw new BadRequest(`Invalid input for field 'options': '${key}' is not a supported user option.`);
    if (value === null) continue;
    const valid = key === 'multi_factor_auth_rules'
      ? Array.isArray(value) && value.every((rule) => Array.isArray(rule) && rule.every((m) => typeof m === 'string'))
      : typeof value === 'boolean';
    if (!valid) throw new BadRequest(`Invalid input for field 'options/${key}': ${JSON.stringify(value)} is not ${key === 'multi_factor_auth_rules' ? 'a list of lists of method names' : 'a boolean'}.`);
  }
}
