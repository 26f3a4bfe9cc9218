// Renders placement objects in the exact JSON of the Placement API, by microversion.
import type { FastifyRequest } from 'fastify';
import type { NuboError } from '../../core/errors.js';
import { codeOf } from '../errors.js';
import type { CandidateQuery, Candidates, Inventory, ResourceProvider } from '../service.js';
import { atLeast } from './microversion.js';

export const PREFIX = '/placement';

export function errorView(err: NuboError, requestId: string) {
  return { errors: [{ status: err.status, title: err.title, detail: err.message, code: codeOf(err), request_id: requestId }] };
}

export function providerView(request: FastifyRequest, p: ResourceProvider) {
  const base = `${PREFIX}/resource_providers/${p.uuid}`;
  const links = [
    { rel: 'self', href: base },
    { rel: 'inventories', href: `${base}/inventories` },
    { rel: 'usages', href: `${base}/usages` },
  ];
  if (atLeast(request, 1)) links.push({ rel: 'aggregates', href: `${base}/aggregates` });
  if (atLeast(request, 6)) links.push({ rel: 'traits', href: `${base}/traits` });
  if (atLeast(request, 11)) links.push({ rel: 'allocations', href: `${base}/allocations` });
  const body: Record<string, unknown> = { generation: p.generation, uuid: p.uuid, name: p.name, links };
  if (atLeast(request, 14)) {
    body.parent_provider_uuid = p.parent_provider_uuid;
    body.root_provider_uuid = p.root_provider_uuid;
  }
  return body;
}

export const inventoryView = (inv: Inventory) => ({
  allocation_ratio: inv.allocation_ratio, max_unit: inv.max_unit, min_unit: inv.min_unit, reserved: inv.reserved, step_size: inv.step_size, total: inv.total,
});

export const resourceClassView = (name: string) => ({ name, links: [{ rel: 'self', href: `${PREFIX}/resource_classes/${name}` }] });

/** allocation_requests and provider_summaries in the shape of the request's microversion. */
export function candidatesView(request: FastifyRequest, query: CandidateQuery, result: Candidates) {
  const requested = new Set<string>([
    ...Object.keys(query.unsuffixed.resources),
    ...Object.values(query.granular ?? {}).flatMap((g) => Object.keys(g.resources)),
  ]);
  const allClasses = atLeast(request, 27);
  const nested = atLeast(request, 29);
  const used = new Set<string>();
  const allocationRequests = result.allocation_requests.map((ar) => {
    for (const rp of Object.keys(ar.allocations)) used.add(rp);
    if (!atLeast(request, 12)) {
      return { allocations: Object.entries(ar.allocations).map(([uuid, a]) => ({ resource_provider: { uuid }, resources: a.resources })) };
    }
    return atLeast(request, 34) ? { allocations: ar.allocations, mappings: ar.mappings ?? {} } : { allocations: ar.allocations };
  });
  const summaries: Record<string, unknown> = {};
  for (const [uuid, s] of Object.entries(result.provider_summaries)) {
    if (!nested && !used.has(uuid)) continue;
    const resources = allClasses ? s.resources : Object.fromEntries(Object.entries(s.resources).filter(([cls]) => requested.has(cls)));
    const summary: Record<string, unknown> = { resources };
    if (atLeast(request, 17)) summary.traits = s.traits;
    if (nested) {
      summary.parent_provider_uuid = s.parent_provider_uuid;
      summary.root_provider_uuid = s.root_provider_uuid;
    }
    summaries[uuid] = summary;
  }
  return { allocation_requests: allocationRequests, provider_summaries: summaries };
}
