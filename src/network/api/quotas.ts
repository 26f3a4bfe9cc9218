// /v2.0/quotas: list (projects with limits of their own), show, default, details (limit, used,
// reserved), update and delete (back to the defaults), as Neutron's quotasv2 extension.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { QUOTA_RESOURCES, type NetworkQuotaResource } from '../quotas.js';
import { authorize, callerOf, resourceBody, type NetworkApiArea, type NetworkApiDeps } from './common.js';

/** The resources a quota body shows: those whose API is served (no RBAC policies here). */
const SHOWN = QUOTA_RESOURCES.filter((r) => r !== 'rbac_policy');

const shown = <T>(values: Record<NetworkQuotaResource, T>) => Object.fromEntries(SHOWN.map((r) => [r, values[r]]));

function register(app: FastifyInstance, deps: NetworkApiDeps): void {
  const { quotas } = deps.network;
  const project = (request: FastifyRequest) => {
    const { project_id: projectId } = request.params as { project_id: string };
    return projectId;
  };
  const readable = (request: FastifyRequest) => {
    const projectId = project(request);
    authorize(deps, request, 'get_quota', { project_id: projectId, tenant_id: projectId });
    return projectId;
  };

  app.get('/v2.0/quotas', async (request) => {
    authorize(deps, request, 'get_quota', { project_id: '' });
    const result = [];
    for (const projectId of await quotas.projectsWithLimits()) result.push({ ...shown(await quotas.limits(projectId)), project_id: projectId, tenant_id: projectId });
    return { quotas: result };
  });

  app.get('/v2.0/quotas/tenant', async (request) => {
    const caller = callerOf(request);
    return { tenant: { tenant_id: caller.projectId, project_id: caller.projectId } };
  });

  for (const suffix of ['', '.json']) {
    app.get(`/v2.0/quotas/:project_id/default${suffix}`, async (request) => {
      readable(request);
      return { quota: shown(quotas.defaults()) };
    });
    app.get(`/v2.0/quotas/:project_id/details${suffix}`, async (request) => {
      const projectId = readable(request);
      return { quota: shown(await quotas.details(projectId)) };
    });
  }

  app.get('/v2.0/quotas/:project_id', async (request) => {
    const projectId = readable(request);
    return { quota: shown(await quotas.limits(projectId)) };
  });

  app.put('/v2.0/quotas/:project_id', async (request) => {
    const projectId = project(request);
    authorize(deps, request, 'update_quota', { project_id: projectId, tenant_id: projectId });
    const body = resourceBody(request.body, 'quota');
    return { quota: shown(await quotas.update(projectId, body)) };
  });

  app.delete('/v2.0/quotas/:project_id', async (request, reply) => {
    const projectId = project(request);
    authorize(deps, request, 'delete_quota', { project_id: projectId, tenant_id: projectId });
    await quotas.reset(projectId);
    return reply.code(204).send();
  });
}

export const quotaArea: NetworkApiArea = {
  routes: register,
  policy: {
    get_quota: 'rule:admin_or_owner',
    update_quota: 'rule:admin_only',
    delete_quota: 'rule:admin_only',
  },
  extensions: [
    { alias: 'quotas', name: 'Quota management support', description: 'Expose functions for quotas management per project', updated: '2012-07-29T10:00:00-00:00' },
    { alias: 'quota_details', name: 'Quota details management support', description: 'Expose functions for quotas usage statistics per project', updated: '2017-02-10T10:00:00-00:00' },
  ],
};
