// Quota sets, quota class sets and limits (nova/api/openstack/compute/quota_sets.py,
// quota_classes.py, limits.py and views/limits.py).
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { BadRequest } from '../../core/errors.js';
import { atLeast } from '../../http/microversion.js';
import { QUOTA_RESOURCES } from '../quotas.js';
import { authorize, callerOf, type ComputeApiDeps } from './common.js';
import { toBool, types, validateBody, validateQuery, type Schema } from './jsonschema.js';

export const quotaPolicy: Record<string, string> = {
  'os_compute_api:os-quota-sets:update': 'rule:context_is_admin',
  'os_compute_api:os-quota-sets:defaults': '@',
  'os_compute_api:os-quota-sets:show': 'rule:project_reader_or_admin',
  'os_compute_api:os-quota-sets:delete': 'rule:context_is_admin',
  'os_compute_api:os-quota-sets:detail': 'rule:project_reader_or_admin',
  'os_compute_api:os-quota-class-sets:show': 'rule:context_is_admin',
  'os_compute_api:os-quota-class-sets:update': 'rule:context_is_admin',
  'os_compute_api:limits': '@',
  'os_compute_api:limits:other_project': 'rule:context_is_admin',
};

const NETWORK_QUOTAS = ['fixed_ips', 'floating_ips', 'security_group_rules', 'security_groups'];
const INJECTED_QUOTAS = ['injected_files', 'injected_file_content_bytes', 'injected_file_path_bytes'];

/** Quota-set resources hidden at this microversion. */
function filteredQuotas(request: FastifyRequest): string[] {
  if (atLeast(request, '2.57')) return [...NETWORK_QUOTAS, ...INJECTED_QUOTAS];
  if (atLeast(request, '2.36')) return NETWORK_QUOTAS;
  return [];
}

/** Quota-class resources hidden at this microversion (server groups only from 2.50). */
function filteredClassQuotas(request: FastifyRequest): string[] {
  if (atLeast(request, '2.57')) return [...NETWORK_QUOTAS, ...INJECTED_QUOTAS];
  if (atLeast(request, '2.50')) return NETWORK_QUOTAS;
  return ['server_groups', 'server_group_members'];
}

function formatSet<T>(id: string | undefined, values: Record<string, T>, filtered: string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (id !== undefined) out.id = id;
  for (const resource of QUOTA_RESOURCES) if (!filtered.includes(resource) && resource in values) out[resource] = values[resource];
  return out;
}

const commonQuota: Schema = { type: ['integer', 'string'], pattern: '^-?[0-9]+$', minimum: -1, maximum: 0x7FFFFFFF };

function updateSchema(wrapper: string, allowed: string[], withForce: boolean): Schema {
  const properties: Record<string, Schema> = Object.fromEntries(allowed.map((r) => [r, commonQuota]));
  if (withForce) properties.force = types.boolean;
  return {
    type: 'object',
    properties: { [wrapper]: { type: 'object', properties, additionalProperties: false } },
    required: [wrapper], additionalProperties: false,
  };
}

const userQuery: Record<string, Schema> = { user_id: { type: 'string' } };

const LIMIT_NAMES: Record<string, string[]> = {
  ram: ['maxTotalRAMSize'], instances: ['maxTotalInstances'], cores: ['maxTotalCores'], key_pairs: ['maxTotalKeypairs'],
  floating_ips: ['maxTotalFloatingIps'], metadata_items: ['maxServerMeta', 'maxImageMeta'], injected_files: ['maxPersonality'],
  injected_file_content_bytes: ['maxPersonalitySize'], security_groups: ['maxSecurityGroups'], security_group_rules: ['maxSecurityGroupRules'],
  server_groups: ['maxServerGroups'], server_group_members: ['maxServerGroupMembers'],
};
const USED_NAMES: Record<string, string> = {
  totalRAMUsed: 'ram', totalCoresUsed: 'cores', totalInstancesUsed: 'instances', totalFloatingIpsUsed: 'floating_ips',
  totalSecurityGroupsUsed: 'security_groups', totalServerGroupsUsed: 'server_groups',
};

export function quotaRoutes(app: FastifyInstance, deps: ComputeApiDeps): void {
  deps.policy.register(quotaPolicy);
  const quotas = () => deps.compute.quotas;
  const userOf = (request: FastifyRequest): string | undefined => {
    const params = validateQuery(request, userQuery, !atLeast(request, '2.75'));
    return params.user_id?.[0] || undefined;
  };

  app.get<{ Params: { id: string } }>('/os-quota-sets/:id', async (request) => {
    authorize(deps, request, 'os_compute_api:os-quota-sets:show', { project_id: request.params.id });
    const userId = userOf(request);
    const limits = userId ? await quotas().userLimits(request.params.id, userId) : await quotas().projectLimits(request.params.id);
    return { quota_set: formatSet(request.params.id, limits, filteredQuotas(request)) };
  });

  app.get<{ Params: { id: string } }>('/os-quota-sets/:id/defaults', async (request) => {
    authorize(deps, request, 'os_compute_api:os-quota-sets:defaults', { project_id: request.params.id });
    return { quota_set: formatSet(request.params.id, await quotas().defaults(), filteredQuotas(request)) };
  });

  app.get<{ Params: { id: string } }>('/os-quota-sets/:id/detail', async (request) => {
    authorize(deps, request, 'os_compute_api:os-quota-sets:detail', { project_id: request.params.id });
    const userId = userOf(request);
    return { quota_set: formatSet(request.params.id, await quotas().detail(request.params.id, userId), filteredQuotas(request)) };
  });

  app.put<{ Params: { id: string } }>('/os-quota-sets/:id', async (request) => {
    const hidden = filteredQuotas(request);
    validateBody(updateSchema('quota_set', QUOTA_RESOURCES.filter((r) => !hidden.includes(r)), true), request.body);
    authorize(deps, request, 'os_compute_api:os-quota-sets:update', { project_id: request.params.id });
    const userId = userOf(request);
    const set = (request.body as { quota_set: Record<string, unknown> }).quota_set;
    const force = set.force !== undefined && toBool(set.force);
    const values: Record<string, number> = {};
    for (const [key, value] of Object.entries(set)) {
      if (key === 'force' || (value !== 0 && !value)) continue;
      values[key] = Number(value);
    }
    const limits = await quotas().update(request.params.id, userId, values, force);
    return { quota_set: formatSet(undefined, limits, hidden) };
  });

  app.delete<{ Params: { id: string } }>('/os-quota-sets/:id', async (request, reply) => {
    authorize(deps, request, 'os_compute_api:os-quota-sets:delete', { project_id: request.params.id });
    await quotas().delete(request.params.id, userOf(request));
    reply.status(202).send();
  });

  // ---- quota classes ---------------------------------------------------------------------

  app.get<{ Params: { id: string } }>('/os-quota-class-sets/:id', async (request) => {
    authorize(deps, request, 'os_compute_api:os-quota-class-sets:show', {});
    return { quota_class_set: formatSet(request.params.id, await quotas().classQuotas(request.params.id), filteredClassQuotas(request)) };
  });

  app.put<{ Params: { id: string } }>('/os-quota-class-sets/:id', async (request) => {
    authorize(deps, request, 'os_compute_api:os-quota-class-sets:update', {});
    const schemaHidden = atLeast(request, '2.57') ? [...NETWORK_QUOTAS, ...INJECTED_QUOTAS] : atLeast(request, '2.50') ? NETWORK_QUOTAS : [];
    validateBody(updateSchema('quota_class_set', QUOTA_RESOURCES.filter((r) => !schemaHidden.includes(r)), false), request.body);
    const name = request.params.id;
    if (name.length < 1 || name.length > 255) throw new BadRequest('Invalid input received: quota_class_name has a maximum length of 255.');
    const set = (request.body as { quota_class_set: Record<string, unknown> }).quota_class_set;
    const values = Object.fromEntries(Object.entries(set).map(([k, v]) => [k, Number(v)]));
    const limits = await quotas().setClassQuotas(name, values);
    return { quota_class_set: formatSet(undefined, limits, filteredClassQuotas(request)) };
  });

  // ---- limits ----------------------------------------------------------------------------

  app.get('/limits', async (request) => {
    const params = validateQuery(request, { tenant_id: { type: 'string' } }, !atLeast(request, '2.75'));
    authorize(deps, request, 'os_compute_api:limits', {});
    let projectId = callerOf(request).projectId;
    if (params.tenant_id) {
      projectId = params.tenant_id[0];
      authorize(deps, request, 'os_compute_api:limits:other_project');
    }
    const filtered = atLeast(request, '2.57') ? ['floating_ips', 'security_groups', 'security_group_rules', 'injected_files', 'injected_file_content_bytes']
      : atLeast(request, '2.36') ? ['floating_ips', 'security_groups', 'security_group_rules'] : [];
    const maxImageMeta = !atLeast(request, '2.39');
    const detail = await quotas().detail(projectId);
    const absolute: Record<string, number> = {};
    for (const [resource, names] of Object.entries(LIMIT_NAMES)) {
      if (filtered.includes(resource) || !(resource in detail)) continue;
      for (const name of names) if (maxImageMeta || name !== 'maxImageMeta') absolute[name] = detail[resource].limit;
    }
    for (const [name, resource] of Object.entries(USED_NAMES)) {
      if (!filtered.includes(resource) && resource in detail) absolute[name] = detail[resource].in_use;
    }
    return { limits: { rate: [], absolute } };
  });
}
