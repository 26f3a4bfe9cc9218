// Server groups (nova/api/openstack/compute/server_groups.py).
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { BadRequest } from '../../core/errors.js';
import { atLeast } from '../../http/microversion.js';
import type { ServerGroup, ServerGroupPolicy, ServerGroupRules } from '../server-groups.js';
import { authorize, callerOf, type ComputeApiDeps } from './common.js';
import { types, validateBody, validateQuery, type Schema } from './jsonschema.js';

export const serverGroupPolicy: Record<string, string> = {
  'os_compute_api:os-server-groups:create': 'rule:project_member_or_admin',
  'os_compute_api:os-server-groups:delete': 'rule:project_member_or_admin',
  'os_compute_api:os-server-groups:index': 'rule:project_reader_or_admin',
  'os_compute_api:os-server-groups:index:all_projects': 'rule:context_is_admin',
  'os_compute_api:os-server-groups:show': 'rule:project_reader_or_admin',
};

function createSchema(request: FastifyRequest): Schema {
  const properties: Record<string, Schema> = { name: types.name };
  let required = ['name', 'policies'];
  if (atLeast(request, '2.64')) {
    properties.policy = { type: 'string', enum: ['anti-affinity', 'affinity', 'soft-anti-affinity', 'soft-affinity'] };
    properties.rules = { type: 'object', properties: { max_server_per_host: types.positiveInteger }, additionalProperties: false };
    required = ['name', 'policy'];
  } else {
    const allowed = atLeast(request, '2.15') ? ['anti-affinity', 'affinity', 'soft-anti-affinity', 'soft-affinity'] : ['anti-affinity', 'affinity'];
    properties.policies = { type: 'array', prefixItems: [{ type: 'string', enum: allowed }], uniqueItems: true, minItems: 1, maxItems: 1 };
  }
  return {
    type: 'object',
    properties: { server_group: { type: 'object', properties, required, additionalProperties: false } },
    required: ['server_group'], additionalProperties: false,
  };
}

function groupView(request: FastifyRequest, group: ServerGroup): Record<string, unknown> {
  const view: Record<string, unknown> = { id: group.id, name: group.name };
  if (atLeast(request, '2.64')) {
    view.policy = group.policy;
    view.rules = group.rules;
  } else {
    view.policies = [group.policy];
    view.metadata = {};
  }
  view.members = group.members;
  if (atLeast(request, '2.13')) {
    view.project_id = group.projectId;
    view.user_id = group.userId;
  }
  return view;
}

export function serverGroupRoutes(app: FastifyInstance, deps: ComputeApiDeps): void {
  deps.policy.register(serverGroupPolicy);
  const groups = () => deps.compute.serverGroups;

  app.get('/os-server-groups', async (request) => {
    const params = validateQuery(request, {
      all_projects: { type: 'string' }, limit: types.nonNegativeInteger, offset: types.nonNegativeInteger,
    }, !atLeast(request, '2.75'));
    const caller = callerOf(request);
    authorize(deps, request, 'os_compute_api:os-server-groups:index', { project_id: caller.projectId });
    let list: ServerGroup[];
    if (params.all_projects !== undefined && caller.isAdmin) {
      authorize(deps, request, 'os_compute_api:os-server-groups:index:all_projects', { project_id: caller.projectId });
      list = await groups().list();
    } else {
      list = await groups().list(caller.projectId);
    }
    // common.limited: offset (default 0), limit (0 or absent = max_limit, capped by it).
    const offset = params.offset ? Number(params.offset[0]) : 0;
    const asked = params.limit ? Number(params.limit[0]) : 0;
    const limit = Math.min(deps.maxLimit, asked || deps.maxLimit);
    return { server_groups: list.slice(offset, offset + limit).map((g) => groupView(request, g)) };
  });

  app.post('/os-server-groups', async (request) => {
    validateBody(createSchema(request), request.body);
    const caller = callerOf(request);
    authorize(deps, request, 'os_compute_api:os-server-groups:create', { project_id: caller.projectId });
    const vals = (request.body as { server_group: Record<string, any> }).server_group;
    let policy: ServerGroupPolicy;
    let rules: ServerGroupRules = {};
    if (atLeast(request, '2.64')) {
      policy = vals.policy;
      const given = (vals.rules ?? {}) as Record<string, unknown>;
      if (policy !== 'anti-affinity' && Object.keys(given).length) {
        // Nova checks quota before the rules.
        await deps.compute.quotas.check(caller.projectId, caller.userId, { server_groups: 1 });
        throw new BadRequest('Only anti-affinity policy supports rules.');
      }
      if (given.max_server_per_host !== undefined) rules = { max_server_per_host: Number(given.max_server_per_host) };
    } else {
      policy = vals.policies[0];
    }
    const group = await groups().create(caller, { name: vals.name, policy, rules });
    return { server_group: groupView(request, group) };
  });

  app.get<{ Params: { id: string } }>('/os-server-groups/:id', async (request) => {
    const group = await groups().get(request.params.id);
    authorize(deps, request, 'os_compute_api:os-server-groups:show', { project_id: group.projectId });
    return { server_group: groupView(request, group) };
  });

  app.delete<{ Params: { id: string } }>('/os-server-groups/:id', async (request, reply) => {
    const group = await groups().get(request.params.id);
    authorize(deps, request, 'os_compute_api:os-server-groups:delete', { project_id: group.projectId });
    await groups().delete(group.id);
    reply.status(204).send();
  });
}
