// /v2.0/security-groups and /v2.0/security-group-rules (Neutron's security-group extension with
// stateful groups, normalized_cidr and belongs_to_default_sg on rules). Single and bulk creates.
import type { FastifyReply, FastifyRequest } from 'fastify';
import { BadRequest } from '../../core/errors.js';
import { normaliseRule, type SecurityGroup, type SecurityGroupAttributes, type SecurityGroupRule } from '../security-groups.js';
import { tagRoutes } from './tags.js';
import { allowed, authorize, callerOf, listView, resourceBody, selectFields, type NetworkApiArea, type NetworkApiDeps } from './common.js';

// Neutron's secure-RBAC defaults (neutron/conf/policies/security_group.py).
const ADMIN_OR_PROJECT_MEMBER = '(rule:admin_only) or (role:member and project_id:%(project_id)s)';
const ADMIN_OR_PROJECT_READER = '(rule:admin_only) or (role:reader and project_id:%(project_id)s)';
const ADMIN_OR_SG_OWNER_MEMBER = '(rule:admin_only) or (role:member and rule:sg_owner)';
const ADMIN_OR_SG_OWNER_READER = '(rule:admin_only) or (role:reader and rule:sg_owner)';

const POLICY: Record<string, string> = {
  sg_owner: 'project_id:%(security_group:project_id)s',
  admin_or_sg_owner: 'rule:context_is_admin or project_id:%(security_group:project_id)s',
  admin_owner_or_sg_owner: 'rule:resource_owner or rule:admin_or_sg_owner',
  shared_security_group: "'True':%(shared)s",
  rule_default_sg: "'True':%(belongs_to_default_sg)s",
  create_security_group: ADMIN_OR_PROJECT_MEMBER,
  get_security_group: `${ADMIN_OR_PROJECT_READER} or rule:shared_security_group`,
  update_security_group: ADMIN_OR_PROJECT_MEMBER,
  delete_security_group: ADMIN_OR_PROJECT_MEMBER,
  create_security_group_rule: ADMIN_OR_SG_OWNER_MEMBER,
  get_security_group_rule: ADMIN_OR_SG_OWNER_READER,
  update_security_group_rule: ADMIN_OR_SG_OWNER_MEMBER,
  delete_security_group_rule: ADMIN_OR_SG_OWNER_MEMBER,
};

/** What a body may carry (POST), may change (PUT), and what is known but read-only. */
const GROUP_POST = new Set(['name', 'description', 'stateful', 'project_id', 'tenant_id', 'tags']);
const GROUP_PUT = new Set(['name', 'description', 'stateful']);
const GROUP_READ_ONLY = new Set(['id', 'project_id', 'tenant_id', 'security_group_rules', 'shared', 'tags', 'created_at', 'updated_at', 'revision_number']);
const RULE_POST = new Set(['security_group_id', 'remote_group_id', 'direction', 'protocol', 'port_range_min', 'port_range_max', 'ethertype',
  'remote_ip_prefix', 'description', 'project_id', 'tenant_id']);
const RULE_PUT = new Set(['description']);
const RULE_READ_ONLY = new Set([...RULE_POST, 'id', 'normalized_cidr', 'belongs_to_default_sg', 'created_at', 'updated_at', 'revision_number']);

function checkAttributes(body: SecurityGroupAttributes, method: 'POST' | 'PUT', writable: Set<string>, readOnly: Set<string>): void {
  // Address groups are not served: a null remote_address_group_id asks for nothing.
  if (body.remote_address_group_id === null) delete body.remote_address_group_id;
  const unknown = Object.keys(body).filter((key) => !writable.has(key) && !readOnly.has(key));
  if (unknown.length > 0) throw new BadRequest(`Unrecognized attribute(s) '${unknown.join(', ')}'`);
  const refused = Object.keys(body).find((key) => !writable.has(key));
  if (refused) throw new BadRequest(method === 'POST' ? `Attribute '${refused}' not allowed in POST` : `Cannot update read-only attribute ${refused}`);
}

/** One resource (`{"security_group": {...}}`) or a bulk list (`{"security_groups": [...]}`). */
function bodies(body: unknown, resource: string, collection: string): { items: SecurityGroupAttributes[]; bulk: boolean } {
  const list = (body as Record<string, unknown> | null | undefined)?.[collection];
  if (list !== undefined) {
    if (!Array.isArray(list) || list.length === 0 || list.some((item) => item === null || typeof item !== 'object' || Array.isArray(item))) {
      throw new BadRequest('Resources required');
    }
    return { items: list as SecurityGroupAttributes[], bulk: true };
  }
  return { items: [resourceBody(body, resource)], bulk: false };
}

export function ruleView(rule: SecurityGroupRule) {
  return {
    id: rule.id,
    tenant_id: rule.projectId,
    project_id: rule.projectId,
    security_group_id: rule.securityGroupId,
    ethertype: rule.ethertype,
    direction: rule.direction,
    protocol: rule.protocol,
    port_range_min: rule.portRangeMin,
    port_range_max: rule.portRangeMax,
    remote_ip_prefix: rule.remoteIpPrefix,
    normalized_cidr: rule.normalizedCidr,
    remote_group_id: rule.remoteGroupId,
    belongs_to_default_sg: rule.belongsToDefaultGroup,
    description: rule.description,
    created_at: rule.createdAt,
    updated_at: rule.updatedAt,
    revision_number: rule.revisionNumber,
  };
}

export function groupView(group: SecurityGroup) {
  return {
    id: group.id,
    name: group.name,
    stateful: group.stateful,
    tenant_id: group.projectId,
    project_id: group.projectId,
    description: group.description,
    // No RBAC sharing of security groups here: never shared.
    shared: false,
    security_group_rules: group.rules.map(ruleView),
    tags: group.tags,
    created_at: group.createdAt,
    updated_at: group.updatedAt,
    revision_number: group.revisionNumber,
  };
}

/** The policy target of a rule: the rule, plus its group's owner (`security_group:project_id`). */
function ruleTarget(rule: Record<string, unknown>, groupProject: string | undefined): Record<string, unknown> {
  return { ...rule, 'security_group:project_id': groupProject, 'security_group:tenant_id': groupProject };
}

const ruleTargetOf = (rule: SecurityGroupRule) => ruleTarget(ruleView(rule), rule.groupProjectId);

/** `?project_id=` (or tenant_id) of a list: the project whose default group Neutron makes first. */
function projectFilter(request: FastifyRequest): string | undefined {
  const query = request.query as Record<string, string | string[] | undefined>;
  const value = query.project_id ?? query.tenant_id;
  return Array.isArray(value) ? value[0] : value;
}

/** The project of a rule's group, for the policy target; 404 SecurityGroupNotFound when the caller cannot see the group. */
async function groupProjectOf(deps: NetworkApiDeps, request: FastifyRequest, groupId: unknown): Promise<string | undefined> {
  if (typeof groupId !== 'string') return undefined;
  return (await deps.network.securityGroups.get(callerOf(request), groupId)).projectId;
}

export const securityGroupArea: NetworkApiArea = {
  policy: POLICY,
  extensions: [
    { alias: 'security-group', name: 'security-group', description: 'The security groups extension.', updated: '2012-10-05T10:00:00-00:00' },
    { alias: 'stateful-security-group', name: 'Stateful security group', description: 'Indicates if the security group is stateful or not', updated: '2019-11-26T09:00:00-00:00' },
    { alias: 'security-groups-normalized-cidr', name: 'Normalized CIDR field for security group rules', description: 'Add new field with normalized remote_ip_prefix cidr in SG rule', updated: '2020-07-28T10:00:00-00:00' },
    {
      alias: 'security-groups-rules-belongs-to-default-sg', name: "Security group rule belongs to the project's default security group",
      description: "Flag to determine if the security group rule belongs to the project's default security group", updated: '2023-05-23T10:00:00-00:00',
    },
  ],
  routes(app, deps) {
    const groups = deps.network.securityGroups;

    // ---- security groups ----
    app.get('/v2.0/security-groups', async (request) => {
      const caller = callerOf(request);
      const found = await groups.list(caller, { projectId: projectFilter(request) });
      const views = found.map(groupView).filter((view) => allowed(deps, request, 'get_security_group', view));
      return listView(request, deps, 'security_groups', views);
    });

    app.get('/v2.0/security-groups/:id', async (request) => {
      const { id } = request.params as { id: string };
      const view = groupView(await groups.get(callerOf(request), id));
      authorize(deps, request, 'get_security_group', view, `Security group ${id} does not exist`);
      return { security_group: selectFields(request, view) };
    });

    app.post('/v2.0/security-groups', async (request, reply: FastifyReply) => {
      const caller = callerOf(request);
      const { items, bulk } = bodies(request.body, 'security_group', 'security_groups');
      for (const item of items) {
        checkAttributes(item, 'POST', GROUP_POST, GROUP_READ_ONLY);
        authorize(deps, request, 'create_security_group', { project_id: item.project_id ?? item.tenant_id ?? caller.projectId });
      }
      const created = (await groups.create(caller, items)).map(groupView);
      reply.code(201);
      return bulk ? { security_groups: created } : { security_group: created[0] };
    });

    app.put('/v2.0/security-groups/:id', async (request) => {
      const { id } = request.params as { id: string };
      const caller = callerOf(request);
      const changes = resourceBody(request.body, 'security_group');
      checkAttributes(changes, 'PUT', GROUP_PUT, GROUP_READ_ONLY);
      const current = groupView(await groups.get(caller, id));
      authorize(deps, request, 'get_security_group', current, `Security group ${id} does not exist`);
      authorize(deps, request, 'update_security_group', current);
      return { security_group: groupView(await groups.update(caller, id, changes)) };
    });

    app.delete('/v2.0/security-groups/:id', async (request, reply: FastifyReply) => {
      const { id } = request.params as { id: string };
      const caller = callerOf(request);
      const current = groupView(await groups.get(caller, id));
      authorize(deps, request, 'get_security_group', current, `Security group ${id} does not exist`);
      authorize(deps, request, 'delete_security_group', current);
      await groups.delete(caller, id);
      reply.code(204);
    });

    tagRoutes(app, deps, {
      collection: 'security-groups', resource: 'security_group', table: 'network_security_groups',
      target: async (request, id) => {
        const view = groupView(await groups.get(callerOf(request), id));
        authorize(deps, request, 'get_security_group', view, `Security group ${id} does not exist`);
        return view;
      },
    });

    // ---- security group rules ----
    app.get('/v2.0/security-group-rules', async (request) => {
      const caller = callerOf(request);
      const rules = await groups.listRules(caller, { projectId: projectFilter(request) });
      const views = rules.filter((rule) => allowed(deps, request, 'get_security_group_rule', ruleTargetOf(rule))).map(ruleView);
      return listView(request, deps, 'security_group_rules', views);
    });

    app.get('/v2.0/security-group-rules/:id', async (request) => {
      const { id } = request.params as { id: string };
      const rule = await groups.getRule(callerOf(request), id);
      authorize(deps, request, 'get_security_group_rule', ruleTargetOf(rule), `Security group rule ${id} does not exist`);
      return { security_group_rule: selectFields(request, ruleView(rule)) };
    });

    app.post('/v2.0/security-group-rules', async (request, reply: FastifyReply) => {
      const caller = callerOf(request);
      const { items, bulk } = bodies(request.body, 'security_group_rule', 'security_group_rules');
      for (const item of items) {
        checkAttributes(item, 'POST', RULE_POST, RULE_READ_ONLY);
        const project = (item.project_id ?? item.tenant_id ?? caller.projectId) as string;
        normaliseRule(item, project); // bad input is a 400 before the group is looked up, as in Neutron
        authorize(deps, request, 'create_security_group_rule', ruleTarget({ ...item, project_id: project }, await groupProjectOf(deps, request, item.security_group_id)));
      }
      const created = (await groups.createRules(caller, items)).map(ruleView);
      reply.code(201);
      return bulk ? { security_group_rules: created } : { security_group_rule: created[0] };
    });

    app.put('/v2.0/security-group-rules/:id', async (request) => {
      const { id } = request.params as { id: string };
      const caller = callerOf(request);
      const changes = resourceBody(request.body, 'security_group_rule');
      checkAttributes(changes, 'PUT', RULE_PUT, RULE_READ_ONLY);
      const target = ruleTargetOf(await groups.getRule(caller, id));
      authorize(deps, request, 'get_security_group_rule', target, `Security group rule ${id} does not exist`);
      authorize(deps, request, 'update_security_group_rule', target);
      return { security_group_rule: ruleView(await groups.updateRule(caller, id, changes)) };
    });

    app.delete('/v2.0/security-group-rules/:id', async (request, reply: FastifyReply) => {
      const { id } = request.params as { id: string };
      const caller = callerOf(request);
      const target = ruleTargetOf(await groups.getRule(caller, id));
      authorize(deps, request, 'get_security_group_rule', target, `Security group rule ${id} does not exist`);
      authorize(deps, request, 'delete_security_group_rule', target);
      await groups.deleteRule(caller, id);
      reply.code(204);
    });
  },
};
