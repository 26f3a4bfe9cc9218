// Roles, implied roles, grants on projects / domains / the system (direct and OS-INHERIT),
// and GET /v3/role_assignments.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { BadRequest } from '../../core/errors.js';
import type { ActorType, Assignment, EffectiveAssignment, TargetType } from '../service.js';
import { requireMatchingId, authorize, entitySchema, flagQuery, listBody, nameSchema, nullableString, queryOf, splitExtra, v3Url, type IdentityApiDeps } from './common.js';
import { roleRef, roleView } from './views.js';

const roleProps = { name: nameSchema, description: nullableString, domain_id: { type: ['string', 'null'] }, options: { type: 'object' } };
type Params = Record<string, string>;
const params = (request: FastifyRequest) => request.params as Params;

export function roleRoutes(app: FastifyInstance, deps: IdentityApiDeps): void {
  const { identity } = deps;

  // ------------------------------------------------------------ roles
  app.get('/v3/roles', async (request) => {
    const q = queryOf(request);
    authorize(deps, request, q.domain_id ? 'identity:list_domain_roles' : 'identity:list_roles');
    const roles = await identity.listRoles({ name: q.name, domain_id: q.domain_id });
    return listBody(request, 'roles', roles.map((r) => roleView(request, r)));
  });
  app.post('/v3/roles', { schema: { body: entitySchema('role', roleProps, ['name']) } }, async (request, reply) => {
    const { known, extra } = splitExtra((request.body as any).role, Object.keys(roleProps));
    authorize(deps, request, known.domain_id ? 'identity:create_domain_role' : 'identity:create_role');
    const role = await identity.createRole({ ...(known as any), extra });
    reply.status(201);
    return { role: roleView(request, role) };
  });
  app.get('/v3/roles/:id', async (request) => {
    const role = await identity.getRole(params(request).id);
    authorize(deps, request, role.domain_id ? 'identity:get_domain_role' : 'identity:get_role');
    return { role: roleView(request, role) };
  });
  app.patch('/v3/roles/:id', { schema: { body: entitySchema('role', roleProps) } }, async (request) => {
    requireMatchingId((request.body as any).role, params(request).id);
    const before = await identity.getRole(params(request).id);
    authorize(deps, request, before.domain_id ? 'identity:update_domain_role' : 'identity:update_role');
    const { known, extra } = splitExtra((request.body as any).role, Object.keys(roleProps));
    const role = await identity.updateRole(before.id, { ...(known as any), extra: Object.keys(extra).length ? extra : undefined });
    return { role: roleView(request, role) };
  });
  app.delete('/v3/roles/:id', async (request, reply) => {
    const role = await identity.getRole(params(request).id);
    authorize(deps, request, role.domain_id ? 'identity:delete_domain_role' : 'identity:delete_role');
    await identity.deleteRole(role.id);
    reply.status(204).send();
  });

  // ------------------------------------------------------------ implied roles
  const inferenceView = async (request: FastifyRequest, priorId: string, impliedIds: string[]) => ({
    prior_role: roleRef(request, await identity.getRole(priorId)),
    implies: await Promise.all(impliedIds.map(async (id) => roleRef(request, await identity.getRole(id)))),
  });
  app.get('/v3/roles/:prior/implies', async (request) => {
    authorize(deps, request, 'identity:list_implied_roles');
    const prior = await identity.getRole(params(request).prior);
    const inferences = await identity.listRoleInferences(prior.id);
    return { role_inference: await inferenceView(request, prior.id, inferences.get(prior.id) ?? []), links: { self: v3Url(request, `/roles/${prior.id}/implies`) } };
  });
  app.put('/v3/roles/:prior/implies/:implied', async (request, reply) => {
    authorize(deps, request, 'identity:create_implied_role');
    const { prior, implied } = await identity.createImpliedRole(params(request).prior, params(request).implied);
    reply.status(201);
    return { role_inference: { prior_role: roleRef(request, prior), implies: roleRef(request, implied) }, links: { self: v3Url(request, `/roles/${prior.id}/implies/${implied.id}`) } };
  });
  const getImplied = async (request: FastifyRequest) => {
    authorize(deps, request, 'identity:get_implied_role');
    return identity.getImpliedRole(params(request).prior, params(request).implied);
  };
  app.get('/v3/roles/:prior/implies/:implied', async (request) => {
    const { prior, implied } = await getImplied(request);
    return { role_inference: { prior_role: roleRef(request, prior), implies: roleRef(request, implied) }, links: { self: v3Url(request, `/roles/${prior.id}/implies/${implied.id}`) } };
  });
  app.head('/v3/roles/:prior/implies/:implied', async (request, reply) => { await getImplied(request); reply.status(204).send(); });
  app.delete('/v3/roles/:prior/implies/:implied', async (request, reply) => {
    authorize(deps, request, 'identity:delete_implied_role');
    await identity.deleteImpliedRole(params(request).prior, params(request).implied);
    reply.status(204).send();
  });
  app.get('/v3/role_inferences', async (request) => {
    authorize(deps, request, 'identity:list_role_inference_rules');
    const inferences = await identity.listRoleInferences();
    const list = await Promise.all([...inferences].map(([prior, implied]) => inferenceView(request, prior, implied)));
    return { role_inferences: list, links: { self: v3Url(request, '/role_inferences'), previous: null, next: null } };
  });

  // ------------------------------------------------------------ grants
  // One set of handlers serves every combination of target and actor, direct and inherited.
  const grantRoutes = (prefix: string, targetType: TargetType, actorType: ActorType, inherited: boolean) => {
    const suffix = inherited ? '/inherited_to_projects' : '';
    const systemAction = (verb: string) => `identity:${verb}_system_grant${verb === 'list' ? 's' : ''}_for_${actorType}`;
    const action = (verb: 'list' | 'check' | 'create' | 'revoke') =>
      targetType === 'system' ? systemAction(verb) : ({ list: 'identity:list_grants', check: 'identity:check_grant', create: 'identity:create_grant', revoke: 'identity:revoke_grant' })[verb];
    const assignmentOf = (request: FastifyRequest): Assignment => ({
      actor_type: actorType, actor_id: params(request).actor, target_type: targetType,
      target_id: targetType === 'system' ? 'all' : params(request).target, role_id: params(request).role, inherited,
    });
    const base = `${prefix}/${actorType}s/:actor/roles`;

    app.get(`${base}${suffix}`, async (request) => {
      authorize(deps, request, action('list'));
      const targetId = targetType === 'system' ? 'all' : params(request).target;
      if (targetType === 'project') await identity.getProject(targetId);
      if (targetType === 'domain') await identity.getDomain(targetId);
      if (actorType === 'user') await identity.getUser(params(request).actor); else await identity.getGroup(params(request).actor);
      const grants = await identity.listAssignments({ actorType, actorId: params(request).actor, targetType, targetId, inherited });
      const roles = await Promise.all(grants.map((g) => identity.getRole(g.role_id)));
      return listBody(request, 'roles', roles.map((r) => roleView(request, r)));
    });
    app.put(`${base}/:role${suffix}`, async (request, reply: FastifyReply) => {
      authorize(deps, request, action('create'));
      await identity.grantRole(assignmentOf(request));
      reply.status(204).send();
    });
    const check = async (request: FastifyRequest, reply: FastifyReply) => {
      authorize(deps, request, action('check'));
      await identity.checkGrant(assignmentOf(request));
      reply.status(204).send();
    };
    app.head(`${base}/:role${suffix}`, check);
    app.get(`${base}/:role${suffix}`, check);
    app.delete(`${base}/:role${suffix}`, async (request, reply) => {
      authorize(deps, request, action('revoke'));
      await identity.revokeRole(assignmentOf(request));
      reply.status(204).send();
    });
  };
  for (const actor of ['user', 'group'] as const) {
    grantRoutes('/v3/projects/:target', 'project', actor, false);
    grantRoutes('/v3/domains/:target', 'domain', actor, false);
    grantRoutes('/v3/system', 'system', actor, false);
    grantRoutes('/v3/OS-INHERIT/domains/:target', 'domain', actor, true);
    grantRoutes('/v3/OS-INHERIT/projects/:target', 'project', actor, true);
  }

  // ------------------------------------------------------------ role assignments
  app.get('/v3/role_assignments', async (request) => {
    const q = queryOf(request);
    authorize(deps, request, 'identity:list_role_assignments', { domain_id: q['scope.domain.id'] });
    const effective = flagQuery(q, 'effective');
    const includeNames = flagQuery(q, 'include_names');
    const includeSubtree = flagQuery(q, 'include_subtree');
    // scope.OS-INHERIT:inherited_to=projects lists inherited grants only; any other value, direct ones only.
    const inherited = q['scope.OS-INHERIT:inherited_to'] === undefined ? undefined : q['scope.OS-INHERIT:inherited_to'] === 'projects';
    const inheritedOnly = inherited === true;
    // The combinations Keystone refuses, with its messages.
    if (q['scope.domain.id'] && q['scope.project.id']) throw new BadRequest('Specify a domain or project, not both');
    if (q['scope.domain.id'] && q['scope.system']) throw new BadRequest('Specify system or domain, not both');
    if (q['scope.project.id'] && q['scope.system']) throw new BadRequest('Specify system or project, not both');
    if (q['user.id'] && q['group.id']) throw new BadRequest('Specify a user or group, not both');
    if (effective && q['group.id']) throw new BadRequest('Combining effective and group filter will always result in an empty list.');
    if (effective && inheritedOnly && q['scope.domain.id']) throw new BadRequest('Combining effective, domain and inherited filters will always result in an empty list.');
    if (includeSubtree && !q['scope.project.id']) throw new BadRequest('scope.project.id must be specified if include_subtree is also specified');
    const targetType: TargetType | undefined = q['scope.project.id'] ? 'project' : q['scope.domain.id'] ? 'domain' : q['scope.system'] ? 'system' : undefined;
    const targetId = q['scope.project.id'] ?? q['scope.domain.id'] ?? (q['scope.system'] ? 'all' : undefined);

    // include_subtree: the project and every project below it.
    const targetIds = targetType === 'project' && includeSubtree
      ? [targetId!, ...(await identity.projectSubtree(await identity.getProject(targetId!))).map((p) => p.id)]
      : [targetId];
    const rows: EffectiveAssignment[] = [];
    for (const id of targetIds) {
      if (effective) {
        rows.push(...await identity.effectiveAssignments({ userId: q['user.id'], targetType, targetId: id, roleId: q['role.id'] }));
      } else {
        rows.push(...await identity.listAssignments({
          actorType: q['user.id'] ? 'user' : q['group.id'] ? 'group' : undefined, actorId: q['user.id'] ?? q['group.id'],
          targetType, targetId: id, roleId: q['role.id'], inherited,
        }));
      }
    }
    const names = includeNames ? await nameResolver(deps) : undefined;
    const body = await Promise.all(rows.map((a) => assignmentView(request, a, names)));
    return listBody(request, 'role_assignments', body);
  });
}

type NameResolver = (kind: 'user' | 'group' | 'project' | 'domain' | 'role', id: string) => Promise<Record<string, unknown>>;

/** Looks up names (and owning domains) once per id for include_names. */
async function nameResolver(deps: IdentityApiDeps): Promise<NameResolver> {
  const cache = new Map<string, Promise<Record<string, unknown>>>();
  const { identity } = deps;
  const domainRef = async (id: string) => ({ id, name: (await identity.getDomain(id).catch(() => ({ name: id }))).name });
  const load = async (kind: string, id: string): Promise<Record<string, unknown>> => {
    switch (kind) {
      case 'user': { const u = await identity.getUser(id); return { id, name: u.name, domain: await domainRef(u.domain_id) }; }
      case 'group': { const g = await identity.getGroup(id); return { id, name: g.name, domain: await domainRef(g.domain_id) }; }
      case 'project': { const p = await identity.getProject(id); return { id, name: p.name, domain: await domainRef(p.domain_id) }; }
      case 'domain': return domainRef(id);
      default: {
        const r = await identity.getRole(id);
        return r.domain_id ? { id, name: r.name, domain: await domainRef(r.domain_id) } : { id, name: r.name };
      }
    }
  };
  return (kind, id) => {
    const key = `${kind}:${id}`;
    if (!cache.has(key)) cache.set(key, load(kind, id).catch(() => ({ id })));
    return cache.get(key)!;
  };
}

async function assignmentView(request: FastifyRequest, a: EffectiveAssignment, names?: NameResolver): Promise<Record<string, unknown>> {
  const ref = async (kind: 'user' | 'group' | 'project' | 'domain' | 'role', id: string) => (names ? names(kind, id) : { id });
  const scope: Record<string, unknown> = a.target_type === 'system' ? { system: { all: true } } : { [a.target_type]: await ref(a.target_type, a.target_id) };
  // Effective rows that come from an inherited grant keep the marker, as in Keystone.
  if (a.inherited || a.via_inheritance_from) scope['OS-INHERIT:inherited_to'] = 'projects';
  const targetPath = a.target_type === 'system' ? '/system' : `/${a.target_type}s/${a.target_id}`;
  // The assignment link names the grant the row comes from (the group's, or the inherited one).
  const source = a.via_inheritance_from ?? (a.target_type === 'system' ? undefined : { type: a.target_type, id: a.target_id });
  const sourcePath = a.target_type === 'system' ? '/system' : `/${source!.type}s/${source!.id}`;
  const actorPath = a.via_group_id ? `/groups/${a.via_group_id}` : `/${a.actor_type}s/${a.actor_id}`;
  const links: Record<string, string> = {
    assignment: v3Url(request, `${a.via_inheritance_from || a.inherited ? '/OS-INHERIT' : ''}${a.via_inheritance_from ? sourcePath : targetPath}${actorPath}/roles/${a.implied_by ?? a.role_id}${a.via_inheritance_from || a.inherited ? '/inherited_to_projects' : ''}`),
  };
  if (a.via_group_id) links.membership = v3Url(request, `/groups/${a.via_group_id}/users/${a.actor_id}`);
  if (a.implied_by) links.prior_role = v3Url(request, `/roles/${a.implied_by}`);
  return {
    role: await ref('role', a.role_id),
    scope,
    [a.actor_type]: await ref(a.actor_type, a.actor_id),
    links,
  };
}
