// Flavors, flavor access and flavor extra specs (nova/api/openstack/compute/flavors.py,
// flavor_access.py, flavors_extraspecs.py).
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { BadRequest, NotFound } from '../../core/errors.js';
import { atLeast } from '../../http/microversion.js';
import { FLAVOR_SORT_KEYS, type Flavor } from '../flavors.js';
import { allowed, authorize, callerOf, resourceLinks, type ComputeApiDeps } from './common.js';
import { collectionLinks, limitAndMarker } from './collection-links.js';
import { DESCRIPTION_PATTERN, types, toBool, validateBody, validateQuery, type Schema } from './jsonschema.js';

export const flavorPolicy: Record<string, string> = {
  'os_compute_api:os-flavor-manage:create': 'rule:context_is_admin',
  'os_compute_api:os-flavor-manage:update': 'rule:context_is_admin',
  'os_compute_api:os-flavor-manage:delete': 'rule:context_is_admin',
  'os_compute_api:os-flavor-access': 'rule:context_is_admin',
  'os_compute_api:os-flavor-access:add_tenant_access': 'rule:context_is_admin',
  'os_compute_api:os-flavor-access:remove_tenant_access': 'rule:context_is_admin',
  'os_compute_api:os-flavor-extra-specs:index': 'rule:project_reader_or_admin',
  'os_compute_api:os-flavor-extra-specs:show': 'rule:project_reader_or_admin',
  'os_compute_api:os-flavor-extra-specs:create': 'rule:context_is_admin',
  'os_compute_api:os-flavor-extra-specs:update': 'rule:context_is_admin',
  'os_compute_api:os-flavor-extra-specs:delete': 'rule:context_is_admin',
};

const flavorParamPositive: Schema = { type: ['integer', 'string'], pattern: '^[0-9]*$', minimum: 1, maximum: 2147483647 };
const flavorParamNonNegative: Schema = { type: ['integer', 'string'], pattern: '^[0-9]*$', minimum: 0, maximum: 2147483647 };
const description: Schema = { type: ['string', 'null'], minLength: 0, maxLength: 65535, pattern: DESCRIPTION_PATTERN };

function createSchema(withDescription: boolean): Schema {
  const properties: Record<string, Schema> = {
    name: types.name,
    id: { type: ['string', 'number', 'null'], minLength: 1, maxLength: 255, pattern: '^(?! )[a-zA-Z0-9. _-]+(?<! )$' },
    ram: flavorParamPositive,
    vcpus: flavorParamPositive,
    disk: flavorParamNonNegative,
    'OS-FLV-EXT-DATA:ephemeral': flavorParamNonNegative,
    swap: flavorParamNonNegative,
    rxtx_factor: { type: ['number', 'string'], pattern: '^[0-9]+(\\.[0-9]+)?$', exclusiveMinimum: 0, maximum: 3.40282e+38 },
    'os-flavor-access:is_public': types.boolean,
  };
  if (withDescription) properties.description = description;
  return {
    type: 'object',
    properties: { flavor: { type: 'object', properties, required: ['name', 'ram', 'vcpus', 'disk'], additionalProperties: false } },
    required: ['flavor'], additionalProperties: false,
  };
}

const updateSchema: Schema = {
  type: 'object',
  properties: { flavor: { type: 'object', properties: { description }, required: ['description'], additionalProperties: false } },
  required: ['flavor'], additionalProperties: false,
};

const tenantAccessSchema = (action: string): Schema => ({
  type: 'object',
  properties: { [action]: { type: 'object', properties: { tenant: { type: 'string', minLength: 1, maxLength: 255 } }, required: ['tenant'], additionalProperties: false } },
  required: [action], additionalProperties: false,
});

const METADATA_KEY = '^[a-zA-Z0-9-_:. ]{1,255}$';
const extraSpecsMetadata: Schema = { type: 'object', patternProperties: { [METADATA_KEY]: { type: ['string', 'number'], maxLength: 255 } }, additionalProperties: false };
const extraSpecsCreateSchema: Schema = { type: 'object', properties: { extra_specs: extraSpecsMetadata }, required: ['extra_specs'], additionalProperties: false };
const extraSpecsUpdateSchema: Schema = { ...extraSpecsMetadata, minProperties: 1, maxProperties: 1 };

const listQuery: Record<string, Schema> = {
  limit: types.nonNegativeInteger,
  marker: { type: 'string' },
  is_public: { type: 'string' },
  minRam: { type: 'string' },
  minDisk: { type: 'string' },
  sort_key: { type: 'string', enum: FLAVOR_SORT_KEYS },
  sort_dir: { type: 'string', enum: ['asc', 'desc'] },
};

/** The brief view (GET /flavors). */
function basicView(request: FastifyRequest, flavor: Flavor): Record<string, unknown> {
  const view: Record<string, unknown> = { id: flavor.id, name: flavor.name, links: resourceLinks(request, 'flavors', flavor.id) };
  if (atLeast(request, '2.55')) view.description = flavor.description;
  return view;
}

/** The full view (show, detail, create, update) at the request's microversion. */
export function flavorView(request: FastifyRequest, flavor: Flavor, includeExtraSpecs: boolean): Record<string, unknown> {
  const view: Record<string, unknown> = {
    id: flavor.id,
    name: flavor.name,
    ram: flavor.memoryMb,
    disk: flavor.rootGb,
    swap: atLeast(request, '2.75') ? flavor.swapMb : (flavor.swapMb || ''),
    'OS-FLV-EXT-DATA:ephemeral': flavor.ephemeralGb,
    'OS-FLV-DISABLED:disabled': flavor.disabled,
    vcpus: flavor.vcpus,
    'os-flavor-access:is_public': flavor.isPublic,
    rxtx_factor: flavor.rxtxFactor || '',
    links: resourceLinks(request, 'flavors', flavor.id),
  };
  if (atLeast(request, '2.55')) view.description = flavor.description;
  if (includeExtraSpecs) view.extra_specs = flavor.extraSpecs;
  return view;
}

function accessView(flavorId: string, projects: string[]) {
  return { flavor_access: projects.map((tenant_id) => ({ flavor_id: flavorId, tenant_id })) };
}

/** strutils.bool_from_string(strict=True) for the is_public filter. */
function parseIsPublic(value: string | undefined): boolean | null {
  if (value === undefined) return true;
  if (value.toLowerCase() === 'none') return null;
  const v = value.trim().toLowerCase();
  if (['1', 't', 'true', 'on', 'y', 'yes'].includes(v)) return true;
  if (['0', 'f', 'false', 'off', 'n', 'no'].includes(v)) return false;
  throw new BadRequest(`Invalid is_public filter [${value}]`);
}

/** Python's int() of a query value (surrounding spaces allowed, no fractions). */
function pyInt(value: string, what: string): number {
  if (!/^\s*[-+]?\d+\s*$/.test(value)) throw new BadRequest(`Invalid ${what} filter [${value}]`);
  return Number(value.trim());
}

export function flavorRoutes(app: FastifyInstance, deps: ComputeApiDeps): void {
  deps.policy.register(flavorPolicy);
  const flavors = () => deps.compute.flavors;
  const viewer = (request: FastifyRequest) => {
    const caller = callerOf(request);
    return { projectId: caller.projectId || undefined, isAdmin: caller.isAdmin };
  };
  const showsExtraSpecs = (request: FastifyRequest) => atLeast(request, '2.61') && allowed(deps, request, 'os_compute_api:os-flavor-extra-specs:index');
  /** Methods added by a microversion answer 404 below it, as Nova's version routing does. */
  const requireVersion = (request: FastifyRequest, version: string) => {
    if (!atLeast(request, version)) throw new NotFound('The resource could not be found.');
  };

  async function listFlavors(request: FastifyRequest): Promise<Flavor[]> {
    const params = validateQuery(request, listQuery, !atLeast(request, '2.75'));
    const { limit, marker } = limitAndMarker(params, deps.maxLimit);
    const who = viewer(request);
    const options = {
      isPublic: who.isAdmin ? parseIsPublic(params.is_public?.[0]) : true,
      includeDisabled: who.isAdmin,
      minRam: params.minRam ? pyInt(params.minRam[0], 'minRam') : undefined,
      minDisk: params.minDisk ? pyInt(params.minDisk[0], 'minDisk') : undefined,
      sortKey: params.sort_key?.[0] || 'flavorid',
      sortDir: (params.sort_dir?.[0] || 'asc') as 'asc' | 'desc',
      limit, marker,
    };
    return flavors().list(who, options);
  }

  app.get('/flavors', async (request) => {
    const list = await listFlavors(request);
    const body: Record<string, unknown> = { flavors: list.map((f) => basicView(request, f)) };
    const links = collectionLinks(request, list.length, list[list.length - 1]?.id, 'flavors', deps.maxLimit);
    if (links.length) body.flavors_links = links;
    return body;
  });

  app.get('/flavors/detail', async (request) => {
    const list = await listFlavors(request);
    const extra = showsExtraSpecs(request);
    const body: Record<string, unknown> = { flavors: list.map((f) => flavorView(request, f, extra)) };
    const links = collectionLinks(request, list.length, list[list.length - 1]?.id, 'flavors/detail', deps.maxLimit);
    if (links.length) body.flavors_links = links;
    return body;
  });

  app.get<{ Params: { id: string } }>('/flavors/:id', async (request) => {
    const flavor = await flavors().get(request.params.id, viewer(request));
    return { flavor: flavorView(request, flavor, showsExtraSpecs(request)) };
  });

  app.post('/flavors', async (request) => {
    const withDescription = atLeast(request, '2.55');
    validateBody(createSchema(withDescription), request.body);
    authorize(deps, request, 'os_compute_api:os-flavor-manage:create', {});
    const vals = (request.body as { flavor: Record<string, any> }).flavor;
    const flavor = await flavors().create({
      id: vals.id === undefined || vals.id === null ? undefined : String(vals.id),
      name: vals.name,
      memoryMb: Number(vals.ram),
      vcpus: Number(vals.vcpus),
      rootGb: Number(vals.disk),
      ephemeralGb: vals['OS-FLV-EXT-DATA:ephemeral'] === undefined ? 0 : Number(vals['OS-FLV-EXT-DATA:ephemeral']),
      swapMb: vals.swap === undefined ? 0 : Number(vals.swap),
      rxtxFactor: vals.rxtx_factor === undefined ? 1 : Number(vals.rxtx_factor),
      isPublic: vals['os-flavor-access:is_public'] === undefined ? true : toBool(vals['os-flavor-access:is_public']),
      description: withDescription ? vals.description ?? null : null,
    });
    return { flavor: flavorView(request, flavor, showsExtraSpecs(request)) };
  });

  app.put<{ Params: { id: string } }>('/flavors/:id', async (request) => {
    requireVersion(request, '2.55');
    validateBody(updateSchema, request.body);
    authorize(deps, request, 'os_compute_api:os-flavor-manage:update', {});
    const flavor = await flavors().updateDescription(request.params.id, (request.body as any).flavor.description);
    return { flavor: flavorView(request, flavor, showsExtraSpecs(request)) };
  });

  app.delete<{ Params: { id: string } }>('/flavors/:id', async (request, reply) => {
    authorize(deps, request, 'os_compute_api:os-flavor-manage:delete', {});
    await flavors().delete(request.params.id);
    reply.status(202).send();
  });

  // ---- flavor access ---------------------------------------------------------------------

  app.get<{ Params: { id: string } }>('/flavors/:id/os-flavor-access', async (request) => {
    authorize(deps, request, 'os_compute_api:os-flavor-access');
    const projects = await flavors().accessList(request.params.id);
    return accessView(request.params.id, projects);
  });

  app.post<{ Params: { id: string } }>('/flavors/:id/action', async (request) => {
    const body = request.body as Record<string, unknown> | null;
    const action = body && typeof body === 'object' && !Array.isArray(body) ? Object.keys(body)[0] : undefined;
    if (action === 'addTenantAccess') {
      validateBody(tenantAccessSchema('addTenantAccess'), body);
      authorize(deps, request, 'os_compute_api:os-flavor-access:add_tenant_access', {});
      const tenant = (body as any).addTenantAccess.tenant as string;
      const projects = await flavors().addAccess(request.params.id, tenant, atLeast(request, '2.7'));
      return accessView(request.params.id, projects);
    }
    if (action === 'removeTenantAccess') {
      validateBody(tenantAccessSchema('removeTenantAccess'), body);
      authorize(deps, request, 'os_compute_api:os-flavor-access:remove_tenant_access', {});
      const tenant = (body as any).removeTenantAccess.tenant as string;
      const projects = await flavors().removeAccess(request.params.id, tenant);
      return accessView(request.params.id, projects);
    }
    throw new BadRequest('There is no such action: ' + (action ?? 'None'));
  });

  // ---- extra specs -----------------------------------------------------------------------

  const specValues = (specs: Record<string, unknown>): Record<string, string> =>
    Object.fromEntries(Object.entries(specs).map(([k, v]) => [k, String(v)]));

  app.get<{ Params: { id: string } }>('/flavors/:id/os-extra_specs', async (request) => {
    authorize(deps, request, 'os_compute_api:os-flavor-extra-specs:index');
    const flavor = await flavors().get(request.params.id, viewer(request));
    return { extra_specs: flavor.extraSpecs };
  });

  app.post<{ Params: { id: string } }>('/flavors/:id/os-extra_specs', async (request) => {
    validateBody(extraSpecsCreateSchema, request.body);
    authorize(deps, request, 'os_compute_api:os-flavor-extra-specs:create', {});
    const specs = (request.body as { extra_specs: Record<string, unknown> }).extra_specs;
    await flavors().setExtraSpecs(request.params.id, specValues(specs));
    return request.body;
  });

  app.get<{ Params: { id: string; key: string } }>('/flavors/:id/os-extra_specs/:key', async (request) => {
    authorize(deps, request, 'os_compute_api:os-flavor-extra-specs:show');
    const flavor = await flavors().get(request.params.id, viewer(request));
    const { key } = request.params;
    if (!(key in flavor.extraSpecs)) throw new NotFound(`Flavor ${request.params.id} has no extra specs with key ${key}.`);
    return { [key]: flavor.extraSpecs[key] };
  });

  app.put<{ Params: { id: string; key: string } }>('/flavors/:id/os-extra_specs/:key', async (request) => {
    validateBody(extraSpecsUpdateSchema, request.body);
    authorize(deps, request, 'os_compute_api:os-flavor-extra-specs:update', {});
    const body = request.body as Record<string, unknown>;
    if (!(request.params.key in body)) throw new BadRequest('Request body and URI mismatch');
    await flavors().setExtraSpecs(request.params.id, specValues(body));
    return body;
  });

  app.delete<{ Params: { id: string; key: string } }>('/flavors/:id/os-extra_specs/:key', async (request, reply: FastifyReply) => {
    authorize(deps, request, 'os_compute_api:os-flavor-extra-specs:delete', {});
    await flavors().deleteExtraSpec(request.params.id, request.params.key);
    reply.status(200).send();
  });
}
