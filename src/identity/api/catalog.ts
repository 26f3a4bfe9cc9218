// Regions, services and endpoints: the service catalog as operators manage it.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { BadRequest, NotFound } from '../../core/errors.js';
import { requireMatchingId, authorize, entitySchema, listBody, queryOf, splitExtra, type IdentityApiDeps } from './common.js';
import { endpointView, regionView, serviceView } from './views.js';

const regionProps = { id: { type: 'string', minLength: 1, maxLength: 255 }, description: { type: ['string', 'null'] }, parent_region_id: { type: ['string', 'null'], maxLength: 255 } };
const serviceProps = { type: { type: 'string', minLength: 1, maxLength: 255 }, name: { type: ['string', 'null'] }, description: { type: ['string', 'null'] }, enabled: { type: 'boolean' } };
const endpointProps = {
  service_id: { type: 'string', minLength: 1 }, interface: { type: 'string', enum: ['public', 'internal', 'admin'] },
  url: { type: 'string', minLength: 1, pattern: '^[a-zA-Z][a-zA-Z0-9+.-]*://' }, region_id: { type: ['string', 'null'] }, region: { type: ['string', 'null'] }, enabled: { type: 'boolean' },
};
type Params = Record<string, string>;
const params = (request: FastifyRequest) => request.params as Params;

export function catalogRoutes(app: FastifyInstance, deps: IdentityApiDeps): void {
  const { identity } = deps;

  app.get('/v3/regions', async (request) => {
    authorize(deps, request, 'identity:list_regions');
    const regions = await identity.listRegions({ parent_region_id: queryOf(request).parent_region_id });
    return listBody(request, 'regions', regions.map((r) => regionView(request, r)));
  });
  const createRegion = async (request: FastifyRequest, id?: string) => {
    authorize(deps, request, 'identity:create_region');
    const body = (request.body as any).region;
    if (id !== undefined && body.id !== undefined && body.id !== id) throw new BadRequest(`Conflicting region IDs specified: "${id}" != "${body.id}"`);
    if (id !== undefined && id.length > 255) throw new BadRequest("Invalid input for field 'id': the region ID is longer than 255 characters.");
    const { known, extra } = splitExtra(body, Object.keys(regionProps));
    return { region: regionView(request, await identity.createRegion({ ...(known as any), id: id ?? known.id, extra })) };
  };
  app.post('/v3/regions', { schema: { body: entitySchema('region', regionProps) } }, async (request, reply) => {
    reply.status(201);
    return createRegion(request);
  });
  app.put('/v3/regions/:id', { schema: { body: entitySchema('region', regionProps) } }, async (request, reply) => {
    reply.status(201);
    return createRegion(request, params(request).id);
  });
  app.get('/v3/regions/:id', async (request) => {
    authorize(deps, request, 'identity:get_region');
    return { region: regionView(request, await identity.getRegion(params(request).id)) };
  });
  app.patch('/v3/regions/:id', { schema: { body: entitySchema('region', regionProps) } }, async (request) => {
    requireMatchingId((request.body as any).region, params(request).id);
    authorize(deps, request, 'identity:update_region');
    const { known, extra } = splitExtra((request.body as any).region, Object.keys(regionProps));
    const region = await identity.updateRegion(params(request).id, { description: known.description === null ? '' : known.description as string | undefined, parent_region_id: known.parent_region_id as string | null | undefined, extra: Object.keys(extra).length ? extra : undefined });
    return { region: regionView(request, region) };
  });
  app.delete('/v3/regions/:id', async (request, reply) => {
    authorize(deps, request, 'identity:delete_region');
    await identity.deleteRegion(params(request).id);
    reply.status(204).send();
  });

  app.get('/v3/services', async (request) => {
    authorize(deps, request, 'identity:list_services');
    const q = queryOf(request);
    const services = await identity.listServices({ type: q.type, name: q.name });
    return listBody(request, 'services', services.map((s) => serviceView(request, s)));
  });
  app.post('/v3/services', { schema: { body: entitySchema('service', serviceProps, ['type']) } }, async (request, reply) => {
    authorize(deps, request, 'identity:create_service');
    const { known, extra } = splitExtra((request.body as any).service, Object.keys(serviceProps));
    reply.status(201);
    return { service: serviceView(request, await identity.createService({ ...(known as any), extra })) };
  });
  app.get('/v3/services/:id', async (request) => {
    authorize(deps, request, 'identity:get_service');
    return { service: serviceView(request, await identity.getService(params(request).id)) };
  });
  app.patch('/v3/services/:id', { schema: { body: entitySchema('service', serviceProps) } }, async (request) => {
    requireMatchingId((request.body as any).service, params(request).id);
    authorize(deps, request, 'identity:update_service');
    const { known, extra } = splitExtra((request.body as any).service, Object.keys(serviceProps));
    return { service: serviceView(request, await identity.updateService(params(request).id, { ...(known as any), extra: Object.keys(extra).length ? extra : undefined })) };
  });
  app.delete('/v3/services/:id', async (request, reply) => {
    authorize(deps, request, 'identity:delete_service');
    await identity.deleteService(params(request).id);
    reply.status(204).send();
  });

  app.get('/v3/endpoints', async (request) => {
    authorize(deps, request, 'identity:list_endpoints');
    const q = queryOf(request);
    const endpoints = await identity.listEndpoints({ service_id: q.service_id, interface: q.interface, region_id: q.region_id });
    return listBody(request, 'endpoints', endpoints.map((e) => endpointView(request, e)));
  });
  // `region` is the older name of region_id; Keystone still accepts it and, for clients of the
  // v2 era, creates that region when it does not exist (region_id must name an existing one).
  const endpointInput = async (body: any) => {
    const { known, extra } = splitExtra(body, Object.keys(endpointProps));
    const { region, ...rest } = known as any;
    if ((rest.region_id === undefined || rest.region_id === null) && typeof region === 'string' && region !== '') {
      await identity.getRegion(region).catch(async (err) => {
        if (!(err instanceof NotFound)) throw err;
        await identity.createRegion({ id: region });
      });
      return { ...rest, region_id: region, extra };
    }
    return { ...rest, extra };
  };
  app.post('/v3/endpoints', { schema: { body: entitySchema('endpoint', endpointProps, ['service_id', 'interface', 'url']) } }, async (request, reply) => {
    authorize(deps, request, 'identity:create_endpoint');
    reply.status(201);
    return { endpoint: endpointView(request, await identity.createEndpoint(await endpointInput((request.body as any).endpoint))) };
  });
  app.get('/v3/endpoints/:id', async (request) => {
    authorize(deps, request, 'identity:get_endpoint');
    return { endpoint: endpointView(request, await identity.getEndpoint(params(request).id)) };
  });
  app.patch('/v3/endpoints/:id', { schema: { body: entitySchema('endpoint', endpointProps) } }, async (request) => {
    requireMatchingId((request.body as any).endpoint, params(request).id);
    authorize(deps, request, 'identity:update_endpoint');
    await identity.getEndpoint(params(request).id); // 404 before any region gets created
    const input: Record<string, unknown> = await endpointInput((request.body as any).endpoint);
    if (Object.keys(input.extra as object).length === 0) delete input.extra;
    return { endpoint: endpointView(request, await identity.updateEndpoint(params(request).id, input as any)) };
  });
  app.delete('/v3/endpoints/:id', async (request, reply) => {
    authorize(deps, request, 'identity:delete_endpoint');
    await identity.deleteEndpoint(params(request).id);
    reply.status(204).send();
  });
}
