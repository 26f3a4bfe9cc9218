// Domains, projects (with tags and hierarchy), users (with password change) and groups.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { BadRequest, NotFound } from '../../core/errors.js';
import { authOf } from '../../http/auth.js';
import type { Project } from '../service.js';
import { requireMatchingId, authorize, boolQuery, entitySchema, flagQuery, idSchema, listBody, listQuery, nameSchema, nullableString, queryOf, splitExtra, v3Url, type IdentityApiDeps } from './common.js';
import { domainView, groupView, projectView, userView } from './views.js';

const tagsSchema = { type: 'array', items: { type: 'string', minLength: 1, maxLength: 255 }, maxItems: 80 };
const domainProps = { name: nameSchema, description: nullableString, enabled: { type: 'boolean' }, tags: tagsSchema, options: { type: 'object' } };
const projectProps = { name: nameSchema, description: nullableString, enabled: { type: 'boolean' }, domain_id: idSchema, parent_id: { type: ['string', 'null'] }, is_domain: { type: 'boolean' }, tags: tagsSchema, options: { type: 'object' } };
const userProps = { name: nameSchema, password: nullableString, enabled: { type: 'boolean' }, domain_id: idSchema, default_project_id: { type: ['string', 'null'] }, description: nullableString, options: { type: 'object' } };
const groupProps = { name: nameSchema, description: nullableString, domain_id: idSchema };

type Params = Record<string, string>;
const params = (request: FastifyRequest) => request.params as Params;

export function resourceRoutes(app: FastifyInstance, deps: IdentityApiDeps): void {
  const { identity } = deps;

  // ------------------------------------------------------------ domains
  app.get('/v3/domains', async (request) => {
    authorize(deps, request, 'identity:list_domains');
    const q = queryOf(request);
    const domains = await identity.listDomains({ name: q.name, enabled: boolQuery(q, 'enabled') });
    return listBody(request, 'domains', domains.map((d) => domainView(request, d)));
  });
  app.post('/v3/domains', { schema: { body: entitySchema('domain', domainProps, ['name']) } }, async (request, reply) => {
    authorize(deps, request, 'identity:create_domain');
    const { known, extra } = splitExtra((request.body as any).domain, Object.keys(domainProps));
    const domain = await identity.createDomain({ ...(known as any), description: known.description ?? undefined, extra });
    reply.status(201);
    return { domain: domainView(request, domain) };
  });
  app.get('/v3/domains/:id', async (request) => {
    authorize(deps, request, 'identity:get_domain', { domain_id: params(request).id });
    return { domain: domainView(request, await identity.getDomain(params(request).id)) };
  });
  app.patch('/v3/domains/:id', { schema: { body: entitySchema('domain', { ...domainProps, name: nameSchema }) } }, async (request) => {
    requireMatchingId((request.body as any).domain, params(request).id);
    authorize(deps, request, 'identity:update_domain', { domain_id: params(request).id });
    const { known, extra } = splitExtra((request.body as any).domain, Object.keys(domainProps));
    const domain = await identity.updateDomain(params(request).id, { ...(known as any), description: known.description ?? undefined, extra: Object.keys(extra).length ? extra : undefined });
    return { domain: domainView(request, domain) };
  });
  app.delete('/v3/domains/:id', async (request, reply) => {
    authorize(deps, request, 'identity:delete_domain', { domain_id: params(request).id });
    await identity.deleteDomain(params(request).id);
    reply.status(204).send();
  });

  // ------------------------------------------------------------ projects
  app.get('/v3/projects', async (request) => {
    const q = queryOf(request);
    authorize(deps, request, 'identity:list_projects', { domain_id: q.domain_id });
    if (boolQuery(q, 'is_domain') === true) return listBody(request, 'projects', []);
    const projects = await identity.listProjects({
      domain_id: q.domain_id, name: q.name, enabled: boolQuery(q, 'enabled'), parent_id: q.parent_id,
      tags: listQuery(q, 'tags'), tagsAny: listQuery(q, 'tags-any'), notTags: listQuery(q, 'not-tags'), notTagsAny: listQuery(q, 'not-tags-any'),
    });
    return listBody(request, 'projects', projects.map((p) => projectView(request, p)));
  });
  app.post('/v3/projects', { schema: { body: entitySchema('project', projectProps, ['name']) } }, async (request, reply) => {
    const { known, extra } = splitExtra((request.body as any).project, Object.keys(projectProps));
    if (known.is_domain === true) throw new BadRequest('Projects acting as domains (is_domain=true) are not supported: create a domain instead.');
    authorize(deps, request, 'identity:create_project', { domain_id: known.domain_id ?? authOf(request).projectDomainId });
    // Keystone takes the domain from the token's scope when none is given.
    const auth = authOf(request);
    const domainId = (known.domain_id as string | undefined) ?? auth.domainId ?? auth.projectDomainId;
    const project = await identity.createProject({ ...(known as any), domain_id: domainId, description: known.description ?? undefined, extra });
    reply.status(201);
    return { project: projectView(request, project) };
  });
  const loadProject = async (request: FastifyRequest, action: string): Promise<Project> => {
    const project = await identity.getProject(params(request).id);
    authorize(deps, request, action, { project_id: project.id, domain_id: project.domain_id });
    return project;
  };
  app.get('/v3/projects/:id', async (request) => {
    const project = await loadProject(request, 'identity:get_project');
    const q = queryOf(request);
    const view: Record<string, unknown> = projectView(request, project);
    const parentsAsList = flagQuery(q, 'parents_as_list');
    const subtreeAsList = flagQuery(q, 'subtree_as_list');
    if (parentsAsList || subtreeAsList) {
      // As Keystone does, the lists hold only the projects the caller has a role on.
      const visible = new Set((await identity.projectsOfUser(authOf(request).userId)).map((p) => p.id));
      const list = (projects: Project[]) => projects.filter((p) => visible.has(p.id)).map((p) => ({ project: projectView(request, p) }));
      if (parentsAsList) view.parents = list(await identity.projectAncestors(project));
      if (subtreeAsList) view.subtree = list(await identity.projectSubtree(project));
    }
    return { project: view };
  });
  app.patch('/v3/projects/:id', { schema: { body: entitySchema('project', projectProps) } }, async (request) => {
    requireMatchingId((request.body as any).project, params(request).id);
    await loadProject(request, 'identity:update_project');
    const { known, extra } = splitExtra((request.body as any).project, Object.keys(projectProps));
    if (known.is_domain !== undefined) throw new BadRequest('Update of `is_domain` is not allowed.');
    const project = await identity.updateProject(params(request).id, { ...(known as any), description: known.description ?? undefined, extra: Object.keys(extra).length ? extra : undefined });
    return { project: projectView(request, project) };
  });
  app.delete('/v3/projects/:id', async (request, reply) => {
    await loadProject(request, 'identity:delete_project');
    await identity.deleteProject(params(request).id);
    reply.status(204).send();
  });

  // Project tags: the whole list, or one tag at a time.
  const tagsUrl = (request: FastifyRequest, tag?: string) => v3Url(request, `/projects/${params(request).id}/tags${tag === undefined ? '' : `/${encodeURIComponent(tag)}`}`);
  app.get('/v3/projects/:id/tags', async (request) => ({ tags: (await loadProject(request, 'identity:list_project_tags')).tags, links: { self: tagsUrl(request) } }));
  app.put('/v3/projects/:id/tags', { schema: { body: { type: 'object', required: ['tags'], properties: { tags: tagsSchema } } } }, async (request) => {
    await loadProject(request, 'identity:update_project_tags');
    const tags = [...new Set((request.body as { tags: string[] }).tags)];
    return { tags: (await identity.updateProject(params(request).id, { tags })).tags, links: { self: tagsUrl(request) } };
  });
  app.delete('/v3/projects/:id/tags', async (request, reply) => {
    await loadProject(request, 'identity:delete_project_tags');
    await identity.updateProject(params(request).id, { tags: [] });
    reply.status(204).send();
  });
  app.get('/v3/projects/:id/tags/:tag', async (request, reply) => {
    const project = await loadProject(request, 'identity:get_project_tag');
    if (!project.tags.includes(params(request).tag)) throw new NotFound(`Tag ${params(request).tag} not found on project ${project.id}.`);
    reply.status(204).send();
  });
  app.put('/v3/projects/:id/tags/:tag', async (request, reply) => {
    const project = await loadProject(request, 'identity:create_project_tag');
    const tag = params(request).tag;
    if (!project.tags.includes(tag)) await identity.updateProject(project.id, { tags: [...project.tags, tag] });
    reply.status(201).header('Location', tagsUrl(request, tag)).send();
  });
  app.delete('/v3/projects/:id/tags/:tag', async (request, reply) => {
    const project = await loadProject(request, 'identity:delete_project_tag');
    const tag = params(request).tag;
    if (!project.tags.includes(tag)) throw new NotFound(`Tag ${tag} not found on project ${project.id}.`);
    await identity.updateProject(project.id, { tags: project.tags.filter((t) => t !== tag) });
    reply.status(204).send();
  });

  // ------------------------------------------------------------ users
  app.get('/v3/users', async (request) => {
    const q = queryOf(request);
    authorize(deps, request, 'identity:list_users', { domain_id: q.domain_id });
    const users = await identity.listUsers({ domain_id: q.domain_id, name: q.name, enabled: boolQuery(q, 'enabled') });
    return listBody(request, 'users', users.map((u) => userView(request, u)));
  });
  app.post('/v3/users', { schema: { body: entitySchema('user', userProps, ['name']) } }, async (request, reply) => {
    const { known, extra } = splitExtra((request.body as any).user, Object.keys(userProps));
    const auth = authOf(request);
    const domainId = (known.domain_id as string | undefined) ?? auth.domainId ?? auth.projectDomainId;
    authorize(deps, request, 'identity:create_user', { domain_id: domainId });
    if (known.default_project_id) await identity.getProject(known.default_project_id as string).catch(() => { throw new BadRequest(`Could not find project: ${known.default_project_id}.`); });
    const user = await identity.createUser({ ...(known as any), domain_id: domainId, extra });
    reply.status(201);
    return { user: userView(request, user) };
  });
  const loadUser = async (request: FastifyRequest, action: string, id = params(request).id) => {
    const user = await identity.getUser(id).catch((err) => {
      // Hide whether a user exists from callers who could not read it anyway.
      authorize(deps, request, action, { user_id: id });
      throw err;
    });
    authorize(deps, request, action, { user_id: user.id, domain_id: user.domain_id });
    return user;
  };
  app.get('/v3/users/:id', async (request) => ({ user: userView(request, await loadUser(request, 'identity:get_user')) }));
  app.patch('/v3/users/:id', { schema: { body: entitySchema('user', userProps) } }, async (request) => {
    requireMatchingId((request.body as any).user, params(request).id);
    await loadUser(request, 'identity:update_user');
    const { known, extra } = splitExtra((request.body as any).user, Object.keys(userProps));
    const user = await identity.updateUser(params(request).id, { ...(known as any), extra: Object.keys(extra).length ? extra : undefined });
    return { user: userView(request, user) };
  });
  app.delete('/v3/users/:id', async (request, reply) => {
    await loadUser(request, 'identity:delete_user');
    await identity.deleteUser(params(request).id);
    reply.status(204).send();
  });
  // Keystone leaves this call unenforced and needs no token: the original password is the
  // proof, so a user whose password expired can still set a new one.
  app.post('/v3/users/:id/password', {
    config: { public: true },
    schema: { body: entitySchema('user', { original_password: { type: 'string' }, password: { type: 'string', minLength: 1 } }, ['original_password', 'password']) },
  }, async (request, reply) => {
    const { original_password, password } = (request.body as any).user;
    await identity.changePassword(params(request).id, original_password, password);
    reply.status(204).send();
  });
  app.get('/v3/users/:id/groups', async (request) => {
    await loadUser(request, 'identity:list_groups_for_user');
    return listBody(request, 'groups', (await identity.listGroupsOfUser(params(request).id)).map((g) => groupView(request, g)));
  });
  app.get('/v3/users/:id/projects', async (request) => {
    await loadUser(request, 'identity:list_user_projects');
    return listBody(request, 'projects', (await identity.projectsOfUser(params(request).id)).map((p) => projectView(request, p)));
  });

  // ------------------------------------------------------------ groups
  app.get('/v3/groups', async (request) => {
    const q = queryOf(request);
    authorize(deps, request, 'identity:list_groups', { domain_id: q.domain_id });
    const groups = await identity.listGroups({ domain_id: q.domain_id, name: q.name });
    return listBody(request, 'groups', groups.map((g) => groupView(request, g)));
  });
  app.post('/v3/groups', { schema: { body: entitySchema('group', groupProps, ['name']) } }, async (request, reply) => {
    const { known, extra } = splitExtra((request.body as any).group, Object.keys(groupProps));
    const auth = authOf(request);
    const domainId = (known.domain_id as string | undefined) ?? auth.domainId ?? auth.projectDomainId;
    authorize(deps, request, 'identity:create_group', { domain_id: domainId });
    const group = await identity.createGroup({ ...(known as any), description: known.description ?? undefined, domain_id: domainId, extra });
    reply.status(201);
    return { group: groupView(request, group) };
  });
  const loadGroup = async (request: FastifyRequest, action: string) => {
    const group = await identity.getGroup(params(request).id);
    authorize(deps, request, action, { group_id: group.id, domain_id: group.domain_id });
    return group;
  };
  app.get('/v3/groups/:id', async (request) => ({ group: groupView(request, await loadGroup(request, 'identity:get_group')) }));
  app.patch('/v3/groups/:id', { schema: { body: entitySchema('group', groupProps) } }, async (request) => {
    requireMatchingId((request.body as any).group, params(request).id);
    await loadGroup(request, 'identity:update_group');
    const { known, extra } = splitExtra((request.body as any).group, Object.keys(groupProps));
    const group = await identity.updateGroup(params(request).id, { ...(known as any), description: known.description ?? undefined, extra: Object.keys(extra).length ? extra : undefined });
    return { group: groupView(request, group) };
  });
  app.delete('/v3/groups/:id', async (request, reply) => {
    await loadGroup(request, 'identity:delete_group');
    await identity.deleteGroup(params(request).id);
    reply.status(204).send();
  });
  app.get('/v3/groups/:id/users', async (request) => {
    await loadGroup(request, 'identity:list_users_in_group');
    return listBody(request, 'users', (await identity.listGroupMembers(params(request).id)).map((u) => userView(request, u)));
  });
  app.put('/v3/groups/:id/users/:userId', async (request, reply) => {
    await loadGroup(request, 'identity:add_user_to_group');
    await identity.addUserToGroup(params(request).id, params(request).userId);
    reply.status(204).send();
  });
  const checkMember = async (request: FastifyRequest, reply: any) => {
    await loadGroup(request, 'identity:check_user_in_group');
    if (!(await identity.isUserInGroup(params(request).id, params(request).userId))) {
      throw new NotFound(`User ${params(request).userId} is not a member of group ${params(request).id}.`);
    }
    reply.status(204).send();
  };
  app.head('/v3/groups/:id/users/:userId', checkMember);
  app.get('/v3/groups/:id/users/:userId', checkMember);
  app.delete('/v3/groups/:id/users/:userId', async (request, reply) => {
    await loadGroup(request, 'identity:remove_user_from_group');
    await identity.removeUserFromGroup(params(request).id, params(request).userId);
    reply.status(204).send();
  });
}
