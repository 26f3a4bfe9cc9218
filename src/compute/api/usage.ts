// os-simple-tenant-usage: instance-hours per project in a time window, as Nova computes them
// (deleted servers count for the time they ran; a server runs from launched_at to terminated_at).
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { BadRequest } from '../../core/errors.js';
import { atLeast } from '../../http/microversion.js';
import { nextPageUrl, pageOf, parsePaging } from '../../http/paging.js';
import type { Instance } from '../instances.js';
import { authorize, boolQuery, one, queryOf, serviceUrl, type ComputeApiDeps } from './common.js';

export const usagePolicy: Record<string, string> = {
  'os_compute_api:os-simple-tenant-usage:list': 'rule:admin_api',
  'os_compute_api:os-simple-tenant-usage:show': 'rule:project_reader_or_admin',
};

/** Nova renders usage times without a zone: 2026-12-01T10:00:00.000000 */
const usageTime = (date: Date) => date.toISOString().replace('Z', '').replace(/\.(\d{3})$/, '.$1000');

function parseTime(name: string, value: string | undefined, fallback: Date): Date {
  if (value === undefined) return fallback;
  // Nova accepts ISO 8601 with or without a zone (UTC assumed), with a space or a T.
  const text = value.trim().replace(' ', 'T');
  const parsed = Date.parse(/[zZ]|[+-]\d{2}:?\d{2}$/.test(text) ? text : `${text}Z`);
  if (Number.isNaN(parsed)) throw new BadRequest(`Invalid ${name} time. The time may not be in ISO 8601 format: ${value}`);
  return new Date(parsed);
}

interface ServerUsage {
  instance_id: string; name: string; hours: number; memory_mb: number; local_gb: number; vcpus: number; tenant_id: string;
  flavor: string; started_at: string; ended_at: string | null; state: string; uptime: number;
}

function serverUsage(instance: Instance, start: Date, end: Date, now: Date): ServerUsage | undefined {
  const launched = new Date(instance.launchedAt ?? instance.createdAt);
  const terminated = instance.terminatedAt ? new Date(instance.terminatedAt) : undefined;
  if (launched >= end || (terminated && terminated < start)) return undefined;
  const from = launched > start ? launched : start;
  const to = terminated && terminated < end ? terminated : end;
  const hours = Math.max(0, (to.getTime() - from.getTime()) / 3_600_000);
  const flavor = instance.flavor;
  return {
    instance_id: instance.id, name: instance.name, hours, memory_mb: flavor.memoryMb, local_gb: flavor.rootGb + flavor.ephemeralGb,
    vcpus: flavor.vcpus, tenant_id: instance.projectId, flavor: flavor.name, started_at: usageTime(launched),
    ended_at: terminated ? usageTime(terminated) : null, state: instance.deletedAt ? 'terminated' : instance.vmState,
    uptime: Math.floor(((terminated ?? now).getTime() - launched.getTime()) / 1000),
  };
}

function totals(tenantId: string, usages: ServerUsage[], start: Date, end: Date, detailed: boolean) {
  const sum = (f: (u: ServerUsage) => number) => usages.reduce((acc, u) => acc + f(u), 0);
  return {
    tenant_id: tenantId,
    total_local_gb_usage: sum((u) => u.hours * u.local_gb),
    total_vcpus_usage: sum((u) => u.hours * u.vcpus),
    total_memory_mb_usage: sum((u) => u.hours * u.memory_mb),
    total_hours: sum((u) => u.hours),
    start: usageTime(start),
    stop: usageTime(end),
    ...(detailed ? { server_usages: usages } : {}),
  };
}

export function usageRoutes(app: FastifyInstance, deps: ComputeApiDeps): void {
  deps.policy.register(usagePolicy);

  async function usagesIn(request: FastifyRequest, projectId: string | undefined) {
    const query = queryOf(request);
    const now = new Date();
    const start = parseTime('start', one(query, 'start'), now);
    const end = parseTime('end', one(query, 'end'), now);
    if (start > end) throw new BadRequest('Invalid start time. The start time cannot occur after the end time.');
    const instances = await deps.compute.instances.list({ projectId, includeDeleted: true }, [{ key: 'created_at', dir: 'asc' }]);
    let usages = instances.map((i) => serverUsage(i, start, end, now)).filter((u): u is ServerUsage => !!u);
    let next: string | undefined;
    if (atLeast(request, '2.40')) {
      const page = pageOf(usages, (u) => u.instance_id, parsePaging(query as Record<string, unknown>, deps.maxLimit));
      usages = page.items;
      next = page.next;
    }
    return { usages, start, end, next };
  }

  app.get('/os-simple-tenant-usage', async (request) => {
    authorize(deps, request, 'os_compute_api:os-simple-tenant-usage:list');
    const detailed = boolQuery(queryOf(request), 'detailed') ?? false;
    const { usages, start, end, next } = await usagesIn(request, undefined);
    const byProject = new Map<string, ServerUsage[]>();
    for (const u of usages) (byProject.get(u.tenant_id) ?? byProject.set(u.tenant_id, []).get(u.tenant_id)!).push(u);
    const body: Record<string, unknown> = { tenant_usages: [...byProject].map(([tenant, list]) => totals(tenant, list, start, end, detailed)) };
    if (next) body.tenant_usages_links = [{ rel: 'next', href: nextPageUrl(`${serviceUrl(request)}/v2.1${request.url.replace(/^\/compute\/v2(\.1)?/, '')}`, next) }];
    return body;
  });

  app.get('/os-simple-tenant-usage/:tenantId', async (request) => {
    const { tenantId } = request.params as { tenantId: string };
    authorize(deps, request, 'os_compute_api:os-simple-tenant-usage:show', { project_id: tenantId });
    const { usages, start, end, next } = await usagesIn(request, tenantId);
    const body: Record<string, unknown> = { tenant_usage: usages.length ? totals(tenantId, usages, start, end, true) : {} };
    if (next) body.tenant_usage_links = [{ rel: 'next', href: nextPageUrl(`${serviceUrl(request)}/v2.1${request.url.replace(/^\/compute\/v2(\.1)?/, '')}`, next) }];
    return body;
  });
}
