// Host aggregates and availability zones (nova/api/openstack/compute/aggregates.py,
// availability_zone.py).
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { BadRequest } from '../../core/errors.js';
import { atLeast } from '../../http/microversion.js';
import type { Aggregate } from '../aggregates.js';
import { authorize, type ComputeApiDeps } from './common.js';
import { normalizeName, types, validateBody, type Schema } from './jsonschema.js';

export const aggregatePolicy: Record<string, string> = {
  'os_compute_api:os-aggregates:set_metadata': 'rule:context_is_admin',
  'os_compute_api:os-aggregates:add_host': 'rule:context_is_admin',
  'os_compute_api:os-aggregates:create': 'rule:context_is_admin',
  'os_compute_api:os-aggregates:remove_host': 'rule:context_is_admin',
  'os_compute_api:os-aggregates:update': 'rule:context_is_admin',
  'os_compute_api:os-aggregates:index': 'rule:context_is_admin',
  'os_compute_api:os-aggregates:delete': 'rule:context_is_admin',
  'os_compute_api:os-aggregates:show': 'rule:context_is_admin',
  'os_compute_api:os-availability-zone:list': '@',
  'os_compute_api:os-availability-zone:detail': 'rule:context_is_admin',
};

const availabilityZone: Schema = { oneOf: [types.azName, { type: 'null' }] };

const createSchema: Schema = {
  type: 'object',
  properties: { aggregate: { type: 'object', properties: { name: types.name, availability_zone: availabilityZone }, required: ['name'], additionalProperties: false } },
  required: ['aggregate'], additionalProperties: false,
};

const updateSchema: Schema = {
  type: 'object',
  properties: {
    aggregate: {
      type: 'object',
      properties: { name: types.nameWithSpaces, availability_zone: availabilityZone },
      additionalProperties: false,
      anyOf: [{ required: ['name'] }, { required: ['availability_zone'] }],
    },
  },
  required: ['aggregate'], additionalProperties: false,
};

const hostActionSchema = (action: string): Schema => ({
  type: 'object',
  properties: { [action]: { type: 'object', properties: { host: types.fqdn }, required: ['host'], additionalProperties: false } },
  required: [action], additionalProperties: false,
});

const setMetadataSchema: Schema = {
  type: 'object',
  properties: { set_metadata: { type: 'object', properties: { metadata: types.metadataWithNull }, required: ['metadata'], additionalProperties: false } },
  required: ['set_metadata'], additionalProperties: false,
};

/** Python's naive isoformat (datetime without tzinfo), as Nova renders aggregate timestamps. */
function pyTime(iso: string | null): string | null {
  return iso === null ? null : iso.replace(/Z$/, '').replace(/\.(\d{3})$/, '.$1000');
}

function aggregateView(request: FastifyRequest, a: Aggregate, withMembers = true): Record<string, unknown> {
  const view: Record<string, unknown> = {
    availability_zone: a.availabilityZone,
    created_at: pyTime(a.createdAt),
    deleted: false,
    deleted_at: null,
  };
  if (withMembers) view.hosts = a.hosts;
  view.id = a.id;
  if (withMembers) view.metadata = a.metadata;
  view.name = a.name;
  view.updated_at = pyTime(a.updatedAt);
  if (atLeast(request, '2.41')) view.uuid = a.uuid;
  return view;
}

/** utils.validate_integer(id, 'id'): 400 "Invalid input received: id must be an integer". */
function aggregateId(raw: string): number {
  if (!/^\s*[-+]?\d+\s*$/.test(raw)) throw new BadRequest('Invalid input received: id must be an integer');
  return Number(raw.trim());
}

export function aggregateRoutes(app: FastifyInstance, deps: ComputeApiDeps): void {
  deps.policy.register(aggregatePolicy);
  const aggregates = () => deps.compute.aggregates;

  app.get('/os-aggregates', async (request) => {
    authorize(deps, request, 'os_compute_api:os-aggregates:index', {});
    return { aggregates: (await aggregates().list()).map((a) => aggregateView(request, a)) };
  });

  app.post('/os-aggregates', async (request) => {
    validateBody(createSchema, request.body);
    authorize(deps, request, 'os_compute_api:os-aggregates:create', {});
    const vals = (request.body as { aggregate: { name: string; availability_zone?: string | null } }).aggregate;
    const zone = vals.availability_zone ? normalizeName(vals.availability_zone) : null;
    const aggregate = await aggregates().create(normalizeName(vals.name), zone);
    return { aggregate: aggregateView(request, aggregate, false) };
  });

  app.get<{ Params: { id: string } }>('/os-aggregates/:id', async (request) => {
    authorize(deps, request, 'os_compute_api:os-aggregates:show', {});
    return { aggregate: aggregateView(request, await aggregates().get(aggregateId(request.params.id))) };
  });

  app.put<{ Params: { id: string } }>('/os-aggregates/:id', async (request) => {
    validateBody(updateSchema, request.body);
    authorize(deps, request, 'os_compute_api:os-aggregates:update', {});
    const updates = { ...(request.body as { aggregate: { name?: string; availability_zone?: string | null } }).aggregate };
    if (updates.name !== undefined) updates.name = normalizeName(updates.name);
    const aggregate = await aggregates().update(aggregateId(request.params.id), updates);
    return { aggregate: aggregateView(request, aggregate) };
  });

  app.delete<{ Params: { id: string } }>('/os-aggregates/:id', async (request, reply) => {
    authorize(deps, request, 'os_compute_api:os-aggregates:delete', {});
    await aggregates().delete(aggregateId(request.params.id));
    reply.status(200).send();
  });

  app.post<{ Params: { id: string } }>('/os-aggregates/:id/action', async (request) => {
    const body = request.body as Record<string, any> | null;
    const action = body && typeof body === 'object' && !Array.isArray(body) ? Object.keys(body)[0] : undefined;
    let aggregate: Aggregate;
    if (action === 'add_host') {
      validateBody(hostActionSchema('add_host'), body);
      authorize(deps, request, 'os_compute_api:os-aggregates:add_host', {});
      aggregate = await aggregates().addHost(aggregateId(request.params.id), body!.add_host.host);
    } else if (action === 'remove_host') {
      validateBody(hostActionSchema('remove_host'), body);
      authorize(deps, request, 'os_compute_api:os-aggregates:remove_host', {});
      aggregate = await aggregates().removeHost(aggregateId(request.params.id), body!.remove_host.host);
    } else if (action === 'set_metadata') {
      validateBody(setMetadataSchema, body);
      authorize(deps, request, 'os_compute_api:os-aggregates:set_metadata', {});
      aggregate = await aggregates().setMetadata(aggregateId(request.params.id), body!.set_metadata.metadata);
    } else {
      throw new BadRequest('There is no such action: ' + (action ?? 'None'));
    }
    return { aggregate: aggregateView(request, aggregate) };
  });

  // ---- availability zones ----------------------------------------------------------------

  app.get('/os-availability-zone', async (request) => {
    authorize(deps, request, 'os_compute_api:os-availability-zone:list', {});
    const { available, unavailable } = await aggregates().zones();
    const internal = aggregates().internalZone;
    const entries = (zones: string[], state: boolean) => zones.filter((z) => z !== internal).map((zoneName) => ({ zoneName, zoneState: { available: state }, hosts: null }));
    return { availabilityZoneInfo: [...entries(available, true), ...entries(unavailable, false)] };
  });

  app.get('/os-availability-zone/detail', async (request) => {
    authorize(deps, request, 'os_compute_api:os-availability-zone:detail', {});
    const services = await aggregates().services();
    const { available, unavailable } = await aggregates().zones();
    const result: Record<string, unknown>[] = [];
    for (const zoneName of available) {
      const hosts: Record<string, Record<string, unknown>> = {};
      for (const s of services.filter((x) => !x.disabled && x.zone === zoneName)) {
        (hosts[s.host] ??= {})[s.binary] = { available: s.up, active: !s.disabled, updated_at: pyTime(s.updatedAt) };
      }
      result.push({ zoneName, zoneState: { available: true }, hosts });
    }
    for (const zoneName of unavailable) result.push({ zoneName, zoneState: { available: false }, hosts: null });
    return { availabilityZoneInfo: result };
  });
}
