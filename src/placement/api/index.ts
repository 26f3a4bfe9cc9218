// The Placement REST API, mounted under /placement. Thin: negotiate the microversion →
// validate → authorize → call PlacementService → render with views.ts. Errors are rendered in
// Placement's format {"errors": [{status, title, detail, code, request_id}]}.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { BadRequest, Forbidden, NotFound } from '../../core/errors.js';
import { authOf, requireAuthentication, type TokenValidator } from '../../http/auth.js';
import { toNuboError } from '../../http/errors.js';
import type { PolicyEngine } from '../../http/policy.js';
import { badQuery } from '../errors.js';
import { PLACEMENT_POLICY_PREFIX } from '../policy.js';
import type { Allocations, InventoryInput, PlacementService, RequestGroup } from '../service.js';
import { MAX_INT } from '../service.js';
import { CUSTOM_NAME } from '../standard.js';
import { MAX_VERSION, MIN_VERSION, atLeast, negotiate, versionOf, versionString } from './microversion.js';
import {
  UUID, all, checkNames, normalizeUuid, parseCandidateQuery, parseInTree, parseMemberOf, parseResources, parseTraits, rejectUnknown, single, type Query,
} from './params.js';
import { PREFIX, candidatesView, errorView, inventoryView, providerView, resourceClassView } from './views.js';

export interface PlacementApiDeps {
  placement: PlacementService;
  tokens: TokenValidator;
  policy: PolicyEngine;
}

/** What Placement records for consumers created before 1.8 (no project/user in the request). */
const INCOMPLETE_CONSUMER = '00000000-0000-0000-0000-000000000000';
const INVENTORY_FIELDS = new Set(['total', 'reserved', 'min_unit', 'max_unit', 'step_size', 'allocation_ratio']);

type Json = Record<string, unknown>;

function objectBody(request: FastifyRequest): Json {
  const body = request.body;
  if (body === null || body === undefined || typeof body !== 'object' || Array.isArray(body)) {
    throw new BadRequest('Malformed JSON: the request body must be a JSON object.');
  }
  return body as Json;
}

function invalid(message: string): never {
  throw new BadRequest(`JSON does not validate: ${message}`);
}

function onlyKeys(body: Json, allowed: string[], where = 'body'): void {
  for (const key of Object.keys(body)) if (!allowed.includes(key)) invalid(`Additional properties are not allowed ('${key}' was unexpected) in ${where}`);
}

function requireInt(value: unknown, name: string, min = 0): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > MAX_INT) invalid(`${JSON.stringify(value)} is not a valid '${name}': an integer of at least ${min} is expected`);
  return value;
}

function requireUuid(value: unknown, name: string): string {
  if (typeof value !== 'string' || !UUID.test(value)) invalid(`${JSON.stringify(value)} is not a 'uuid' (${name})`);
  return normalizeUuid(value);
}

function generationOf(body: Json): number {
  if (!('resource_provider_generation' in body)) invalid(`'resource_provider_generation' is a required property`);
  return requireInt(body.resource_provider_generation, 'resource_provider_generation');
}

function inventoryInput(value: unknown, cls: string, allowGeneration: boolean): InventoryInput {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) invalid(`inventory of ${cls} must be an object`);
  const inv = value as Json;
  for (const key of Object.keys(inv)) {
    if (!INVENTORY_FIELDS.has(key) && !(allowGeneration && (key === 'resource_provider_generation' || key === 'resource_class'))) {
      invalid(`Additional properties are not allowed ('${key}' was unexpected)`);
    }
  }
  if (!('total' in inv)) invalid(`'total' is a required property`);
  const out: InventoryInput = { total: requireInt(inv.total, 'total', 1) };
  for (const field of ['reserved', 'min_unit', 'max_unit', 'step_size'] as const) {
    if (field in inv) out[field] = requireInt(inv[field], field, field === 'reserved' ? 0 : 1);
  }
  if ('allocation_ratio' in inv) {
    if (typeof inv.allocation_ratio !== 'number' || inv.allocation_ratio <= 0) invalid(`${JSON.stringify(inv.allocation_ratio)} is not a valid 'allocation_ratio'`);
    out.allocation_ratio = inv.allocation_ratio;
  }
  return out;
}

function resourceClassName(value: unknown): string {
  if (typeof value !== 'string' || !/^[A-Z0-9_]+$/.test(value) || value.length > 255) invalid(`${JSON.stringify(value)} is not a valid resource class name`);
  return value;
}

function resourcesOf(value: unknown, where: string): Record<string, number> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) invalid(`'resources' of ${where} must be an object`);
  const resources = value as Json;
  if (Object.keys(resources).length === 0) invalid(`'resources' of ${where} does not have enough properties`);
  const out: Record<string, number> = {};
  for (const [cls, amount] of Object.entries(resources)) {
    resourceClassName(cls);
    out[cls] = requireInt(amount, cls, 1);
  }
  return out;
}

/** The allocations of a PUT/POST body: a list of {resource_provider: {uuid}, resources} before 1.12, a dict after. */
function allocationsOf(request: FastifyRequest, value: unknown, allowEmpty: boolean): Allocations {
  const out: Allocations = {};
  if (!atLeast(request, 12)) {
    if (!Array.isArray(value) || value.length === 0) invalid(`'allocations' must be a non-empty array`);
    for (const item of value as unknown[]) {
      if (item === null || typeof item !== 'object') invalid(`each allocation must be an object`);
      const entry = item as Json;
      const rp = entry.resource_provider as Json | undefined;
      const uuid = requireUuid(rp?.uuid, 'resource_provider.uuid');
      const resources = resourcesOf(entry.resources, uuid);
      const existing = out[uuid]?.resources ?? {};
      out[uuid] = { resources: { ...existing, ...resources } };
    }
    return out;
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) invalid(`'allocations' must be an object`);
  const entries = Object.entries(value as Json);
  if (entries.length === 0 && !allowEmpty) invalid(`'allocations' does not have enough properties`);
  for (const [uuid, entry] of entries) {
    requireUuid(uuid, 'allocations key');
    if (entry === null || typeof entry !== 'object' || Array.isArray(entry)) invalid(`allocation on ${uuid} must be an object`);
    for (const key of Object.keys(entry as Json)) if (key !== 'resources' && key !== 'generation') invalid(`Additional properties are not allowed ('${key}' was unexpected)`);
    out[normalizeUuid(uuid)] = { resources: resourcesOf((entry as Json).resources, uuid) };
  }
  return out;
}

/** project_id/user_id (required from 1.8), consumer_generation (required from 1.28), consumer_type (required from 1.38). */
function consumerFields(request: FastifyRequest, body: Json) {
  const allowed = ['allocations'];
  if (atLeast(request, 8)) allowed.push('project_id', 'user_id');
  if (atLeast(request, 28)) allowed.push('consumer_generation');
  if (atLeast(request, 38)) allowed.push('consumer_type');
  onlyKeys(body, allowed);
  let projectId = INCOMPLETE_CONSUMER;
  let userId = INCOMPLETE_CONSUMER;
  if (atLeast(request, 8)) {
    for (const key of ['project_id', 'user_id']) {
      if (typeof body[key] !== 'string' || (body[key] as string).length === 0 || (body[key] as string).length > 255) invalid(`'${key}' is a required property (a non-empty string)`);
    }
    projectId = body.project_id as string;
    userId = body.user_id as string;
  }
  let consumerGeneration: number | null | undefined;
  if (atLeast(request, 28)) {
    if (!('consumer_generation' in body)) invalid(`'consumer_generation' is a required property`);
    consumerGeneration = body.consumer_generation === null ? null : requireInt(body.consumer_generation, 'consumer_generation');
  }
  let consumerType: string | undefined;
  if (atLeast(request, 38)) {
    if (typeof body.consumer_type !== 'string' || !/^[A-Z0-9_]+$/.test(body.consumer_type) || body.consumer_type.length > 255) invalid(`'consumer_type' is a required property matching '^[A-Z0-9_]+$'`);
    consumerType = body.consumer_type;
  }
  return { projectId, userId, consumerGeneration, consumerType };
}

export function placementApi(deps: PlacementApiDeps) {
  const { placement, policy } = deps;

  function authorize(request: FastifyRequest, action: string, target: Record<string, unknown> = {}): void {
    const auth = authOf(request);
    const fullTarget = { project_id: auth.projectId, user_id: auth.userId, ...target };
    if (!policy.enforce(`${PLACEMENT_POLICY_PREFIX}${action}`, fullTarget, auth.credentials)) {
      throw new Forbidden(`Policy does not allow ${PLACEMENT_POLICY_PREFIX}${action} to be performed.`);
    }
  }
  /** Routes that exist only from 1.<minor>: 404 below, as Placement answers. */
  function since(request: FastifyRequest, minor: number): void {
    if (!atLeast(request, minor)) throw new NotFound('The resource could not be found.');
  }

  return async function placementPlugin(app: FastifyInstance): Promise<void> {
    app.decorateRequest('placementVersion', undefined);
    app.addHook('onRequest', async (request) => {
      request.placementVersion = negotiate(request);
    });
    app.addHook('onSend', async (request, reply) => {
      reply.header('OpenStack-API-Version', `placement ${versionString(versionOf(request))}`);
      reply.header('Vary', 'openstack-api-version');
    });
    app.setErrorHandler((err, request, reply) => {
      const error = toNuboError(err);
      if (error.status >= 500) app.logger.error(`${request.method} ${request.url} failed`, { request_id: request.id, error: (err as Error)?.stack ?? String(err) });
      reply.status(error.status).type('application/json').send(errorView(error, request.id));
    });
    app.setNotFoundHandler((request, reply) => {
      reply.status(404).type('application/json').send(errorView(new NotFound('The resource could not be found.'), request.id));
    });
    requireAuthentication(app, deps.tokens);

    app.get('/', { config: { public: true } }, async () => ({
      versions: [{ id: 'v1.0', max_version: MAX_VERSION, min_version: MIN_VERSION, status: 'CURRENT', links: [{ rel: 'self', href: '' }] }],
    }));

    // ---- resource providers ----
    const RP_LIST_PARAMS: Record<string, number> = { name: 0, uuid: 0, member_of: 3, resources: 4, in_tree: 14, required: 18 };
    app.get('/resource_providers', async (request) => {
      authorize(request, 'resource_providers:list');
      const query = request.query as Query;
      rejectUnknown(query, (key) => key in RP_LIST_PARAMS && atLeast(request, RP_LIST_PARAMS[key]));
      const uuid = single(query, 'uuid');
      if (uuid !== undefined && !UUID.test(uuid)) throw badQuery(`Invalid query string parameters: Failed validating 'format' in schema['properties']['uuid']: '${uuid}' is not a 'uuid'`);
      const resources = single(query, 'resources');
      const group: RequestGroup = { resources: resources === undefined ? {} : parseResources(resources) };
      Object.assign(group, parseTraits(request, all(query.required), 'required'));
      Object.assign(group, parseMemberOf(request, all(query.member_of), 'member_of'));
      await checkNames(placement, [group]);
      const providers = await placement.listProviders({
        name: single(query, 'name'), uuid: uuid === undefined ? undefined : normalizeUuid(uuid), group,
        inTree: parseInTree(single(query, 'in_tree'), 'in_tree'),
      });
      return { resource_providers: providers.map((p) => providerView(request, p)) };
    });

    app.post('/resource_providers', async (request, reply) => {
      authorize(request, 'resource_providers:create');
      const body = objectBody(request);
      onlyKeys(body, atLeast(request, 14) ? ['name', 'uuid', 'parent_provider_uuid'] : ['name', 'uuid']);
      if (typeof body.name !== 'string' || body.name.length === 0 || body.name.length > 200) invalid(`'name' is a required property (1 to 200 characters)`);
      const uuid = body.uuid === undefined ? undefined : requireUuid(body.uuid, 'uuid');
      const parent = body.parent_provider_uuid === undefined || body.parent_provider_uuid === null ? undefined : requireUuid(body.parent_provider_uuid, 'parent_provider_uuid');
      const provider = await placement.createProvider({ name: body.name, uuid, parent_provider_uuid: parent });
      reply.status(201).header('Location', `${PREFIX}/resource_providers/${provider.uuid}`);
      if (!atLeast(request, 20)) return reply.send();
      return providerView(request, provider);
    });

    app.get<{ Params: { uuid: string } }>('/resource_providers/:uuid', async (request) => {
      authorize(request, 'resource_providers:show');
      return providerView(request, await placement.getProvider(request.params.uuid));
    });

    app.put<{ Params: { uuid: string } }>('/resource_providers/:uuid', async (request) => {
      authorize(request, 'resource_providers:update');
      const body = objectBody(request);
      onlyKeys(body, atLeast(request, 14) ? ['name', 'parent_provider_uuid'] : ['name']);
      if (typeof body.name !== 'string' || body.name.length === 0 || body.name.length > 200) invalid(`'name' is a required property (1 to 200 characters)`);
      const parent = body.parent_provider_uuid === undefined ? undefined : body.parent_provider_uuid === null ? null : requireUuid(body.parent_provider_uuid, 'parent_provider_uuid');
      const provider = await placement.updateProvider(request.params.uuid, { name: body.name, parent_provider_uuid: parent }, { allowReparent: atLeast(request, 37) });
      return providerView(request, provider);
    });

    app.delete<{ Params: { uuid: string } }>('/resource_providers/:uuid', async (request, reply) => {
      authorize(request, 'resource_providers:delete');
      await placement.deleteProvider(request.params.uuid);
      reply.status(204).send();
    });

    // ---- inventories ----
    const inventoriesBody = (generation: number, inventories: Record<string, import('../service.js').Inventory>) => ({
      inventories: Object.fromEntries(Object.entries(inventories).map(([cls, inv]) => [cls, inventoryView(inv)])),
      resource_provider_generation: generation,
    });

    app.get<{ Params: { uuid: string } }>('/resource_providers/:uuid/inventories', async (request) => {
      authorize(request, 'resource_providers:inventories:list');
      const { generation, inventories } = await placement.getInventories(request.params.uuid);
      return inventoriesBody(generation, inventories);
    });

    app.put<{ Params: { uuid: string } }>('/resource_providers/:uuid/inventories', async (request) => {
      authorize(request, 'resource_providers:inventories:update');
      const body = objectBody(request);
      onlyKeys(body, ['inventories', 'resource_provider_generation']);
      const generation = generationOf(body);
      const raw = body.inventories;
      if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) invalid(`'inventories' is a required property (an object)`);
      const input: Record<string, InventoryInput> = {};
      for (const [cls, inv] of Object.entries(raw as Json)) input[resourceClassName(cls)] = inventoryInput(inv, cls, false);
      const result = await placement.setInventories(request.params.uuid, generation, input);
      return inventoriesBody(result.generation, result.inventories);
    });

    app.post<{ Params: { uuid: string } }>('/resource_providers/:uuid/inventories', async (request, reply) => {
      authorize(request, 'resource_providers:inventories:create');
      const body = objectBody(request);
      const generation = generationOf(body);
      const cls = resourceClassName(body.resource_class);
      const result = await placement.addInventory(request.params.uuid, generation, cls, inventoryInput(body, cls, true));
      reply.status(201).header('Location', `${PREFIX}/resource_providers/${request.params.uuid}/inventories/${cls}`);
      return { resource_provider_generation: result.generation, ...inventoryView(result.inventory) };
    });

    app.delete<{ Params: { uuid: string } }>('/resource_providers/:uuid/inventories', async (request, reply) => {
      since(request, 5);
      authorize(request, 'resource_providers:inventories:delete');
      await placement.deleteInventories(request.params.uuid);
      reply.status(204).send();
    });

    app.get<{ Params: { uuid: string; cls: string } }>('/resource_providers/:uuid/inventories/:cls', async (request) => {
      authorize(request, 'resource_providers:inventories:show');
      const { generation, inventory } = await placement.getInventory(request.params.uuid, request.params.cls);
      return { resource_provider_generation: generation, ...inventoryView(inventory) };
    });

    app.put<{ Params: { uuid: string; cls: string } }>('/resource_providers/:uuid/inventories/:cls', async (request) => {
      authorize(request, 'resource_providers:inventories:update');
      const body = objectBody(request);
      const generation = generationOf(body);
      const cls = resourceClassName(request.params.cls);
      if (body.resource_class !== undefined && body.resource_class !== cls) invalid(`'resource_class' does not match the URL`);
      const result = await placement.setInventory(request.params.uuid, generation, cls, inventoryInput(body, cls, true));
      return { resource_provider_generation: result.generation, ...inventoryView(result.inventory) };
    });

    app.delete<{ Params: { uuid: string; cls: string } }>('/resource_providers/:uuid/inventories/:cls', async (request, reply) => {
      authorize(request, 'resource_providers:inventories:delete');
      await placement.deleteInventory(request.params.uuid, request.params.cls);
      reply.status(204).send();
    });

    // ---- usages ----
    app.get<{ Params: { uuid: string } }>('/resource_providers/:uuid/usages', async (request) => {
      authorize(request, 'resource_providers:usages');
      const { generation, usages } = await placement.getProviderUsages(request.params.uuid);
      return { usages, resource_provider_generation: generation };
    });

    app.get('/usages', async (request) => {
      since(request, 9);
      const query = request.query as Query;
      rejectUnknown(query, (key) => key === 'project_id' || key === 'user_id' || (key === 'consumer_type' && atLeast(request, 38)));
      const projectId = single(query, 'project_id');
      if (!projectId) throw badQuery(`Invalid query string parameters: 'project_id' is a required property`);
      const userId = single(query, 'user_id');
      authorize(request, 'usages', { project_id: projectId });
      if (atLeast(request, 38)) {
        const consumerType = single(query, 'consumer_type');
        return { usages: await placement.usagesByConsumerType(projectId, userId, consumerType) };
      }
      return { usages: await placement.usagesOfProject(projectId, userId) };
    });

    // ---- resource classes ----
    app.get('/resource_classes', async (request) => {
      since(request, 2);
      authorize(request, 'resource_classes:list');
      return { resource_classes: (await placement.listResourceClasses()).map(resourceClassView) };
    });
    app.post('/resource_classes', async (request, reply) => {
      since(request, 2);
      authorize(request, 'resource_classes:create');
      const body = objectBody(request);
      onlyKeys(body, ['name']);
      if (typeof body.name !== 'string') invalid(`'name' is a required property`);
      await placement.createResourceClass(body.name);
      reply.status(201).header('Location', `${PREFIX}/resource_classes/${body.name}`).send();
    });
    app.get<{ Params: { name: string } }>('/resource_classes/:name', async (request) => {
      since(request, 2);
      authorize(request, 'resource_classes:show');
      if (!(await placement.resourceClassExists(request.params.name))) throw new NotFound(`No such resource class ${request.params.name}.`);
      return resourceClassView(request.params.name);
    });
    app.put<{ Params: { name: string } }>('/resource_classes/:name', async (request, reply) => {
      since(request, 7);
      authorize(request, 'resource_classes:update');
      const name = request.params.name;
      if (!CUSTOM_NAME.test(name)) invalid(`'${name}' does not match '^CUSTOM_[A-Z0-9_]+$'`);
      const created = await placement.createResourceClass(name, { ifMissing: true });
      if (created) reply.status(201).header('Location', `${PREFIX}/resource_classes/${name}`);
      else reply.status(204);
      return reply.send();
    });
    app.delete<{ Params: { name: string } }>('/resource_classes/:name', async (request, reply) => {
      since(request, 2);
      authorize(request, 'resource_classes:delete');
      await placement.deleteResourceClass(request.params.name);
      reply.status(204).send();
    });

    // ---- traits ----
    app.get('/traits', async (request) => {
      since(request, 6);
      authorize(request, 'traits:list');
      const query = request.query as Query;
      rejectUnknown(query, (key) => key === 'name' || key === 'associated');
      const name = single(query, 'name');
      const filter: { names?: string[]; prefix?: string; associated?: boolean } = {};
      if (name !== undefined) {
        if (name.startsWith('in:')) filter.names = name.slice(3).split(',').map((s) => s.trim());
        else if (name.startsWith('startswith:')) filter.prefix = name.slice('startswith:'.length);
        else throw badQuery(`Badly formed name parameter. Expected in: or startswith:. Got: ${name}`);
      }
      const associated = single(query, 'associated');
      if (associated !== undefined) {
        if (!['true', 'false'].includes(associated.toLowerCase())) throw badQuery(`Invalid query string parameters: 'associated' must be true or false, got '${associated}'`);
        filter.associated = associated.toLowerCase() === 'true';
      }
      return { traits: await placement.listTraits(filter) };
    });
    app.get<{ Params: { name: string } }>('/traits/:name', async (request, reply) => {
      since(request, 6);
      authorize(request, 'traits:show');
      if (!(await placement.traitExists(request.params.name))) throw new NotFound(`No such trait(s): ${request.params.name}.`);
      reply.status(204).send();
    });
    app.put<{ Params: { name: string } }>('/traits/:name', async (request, reply) => {
      since(request, 6);
      authorize(request, 'traits:update');
      const name = request.params.name;
      if (!CUSTOM_NAME.test(name) && await placement.traitExists(name)) return reply.status(204).send();
      const created = await placement.ensureTrait(name);
      if (created) reply.status(201).header('Location', `${PREFIX}/traits/${name}`);
      else reply.status(204);
      return reply.send();
    });
    app.delete<{ Params: { name: string } }>('/traits/:name', async (request, reply) => {
      since(request, 6);
      authorize(request, 'traits:delete');
      await placement.deleteTrait(request.params.name);
      reply.status(204).send();
    });

    app.get<{ Params: { uuid: string } }>('/resource_providers/:uuid/traits', async (request) => {
      since(request, 6);
      authorize(request, 'resource_providers:traits:list');
      const { generation, traits } = await placement.getProviderTraits(request.params.uuid);
      return { traits, resource_provider_generation: generation };
    });
    app.put<{ Params: { uuid: string } }>('/resource_providers/:uuid/traits', async (request) => {
      since(request, 6);
      authorize(request, 'resource_providers:traits:update');
      const body = objectBody(request);
      onlyKeys(body, ['traits', 'resource_provider_generation']);
      const generation = generationOf(body);
      if (!Array.isArray(body.traits) || body.traits.some((t) => typeof t !== 'string' || !/^[A-Z0-9_]+$/.test(t))) invalid(`'traits' is a required property (an array of trait names)`);
      await placement.getProvider(request.params.uuid);
      const result = await placement.setProviderTraits(request.params.uuid, generation, body.traits as string[]);
      return { traits: result.traits, resource_provider_generation: result.generation };
    });
    app.delete<{ Params: { uuid: string } }>('/resource_providers/:uuid/traits', async (request, reply) => {
      since(request, 6);
      authorize(request, 'resource_providers:traits:delete');
      await placement.deleteProviderTraits(request.params.uuid);
      reply.status(204).send();
    });

    // ---- aggregates ----
    const aggregatesBody = (request: FastifyRequest, generation: number, aggregates: string[]) =>
      (atLeast(request, 19) ? { aggregates, resource_provider_generation: generation } : { aggregates });
    app.get<{ Params: { uuid: string } }>('/resource_providers/:uuid/aggregates', async (request) => {
      since(request, 1);
      authorize(request, 'resource_providers:aggregates:list');
      const { generation, aggregates } = await placement.getProviderAggregatesWithGeneration(request.params.uuid);
      return aggregatesBody(request, generation, aggregates);
    });
    app.put<{ Params: { uuid: string } }>('/resource_providers/:uuid/aggregates', async (request) => {
      since(request, 1);
      authorize(request, 'resource_providers:aggregates:update');
      let list: unknown;
      let generation: number | undefined;
      if (atLeast(request, 19)) {
        const body = objectBody(request);
        onlyKeys(body, ['aggregates', 'resource_provider_generation']);
        generation = generationOf(body);
        list = body.aggregates;
      } else {
        list = request.body;
      }
      if (!Array.isArray(list)) invalid(`the aggregates must be an array of uuids`);
      const aggregates = (list as unknown[]).map((a) => requireUuid(a, 'aggregate'));
      if (new Set(aggregates).size !== aggregates.length) invalid(`the aggregates have non-unique elements`);
      const result = await placement.setProviderAggregates(request.params.uuid, aggregates, generation);
      return aggregatesBody(request, result.generation, result.aggregates);
    });

    // ---- allocations ----
    app.get<{ Params: { uuid: string } }>('/resource_providers/:uuid/allocations', async (request) => {
      authorize(request, 'resource_providers:allocations:list');
      const { generation, allocations } = await placement.getProviderAllocations(request.params.uuid);
      return { allocations, resource_provider_generation: generation };
    });

    app.get<{ Params: { consumer: string } }>('/allocations/:consumer', async (request) => {
      authorize(request, 'allocations:list');
      const result = await placement.getAllocations(request.params.consumer);
      const body: Record<string, unknown> = { allocations: result.allocations };
      const hasAllocations = Object.keys(result.allocations).length > 0;
      if (atLeast(request, 12) && hasAllocations && result.projectId !== undefined) {
        body.project_id = result.projectId;
        body.user_id = result.userId;
      }
      if (atLeast(request, 28) && hasAllocations) body.consumer_generation = result.consumerGeneration;
      if (atLeast(request, 38) && hasAllocations) body.consumer_type = result.consumerType;
      return body;
    });

    app.put<{ Params: { consumer: string } }>('/allocations/:consumer', async (request, reply) => {
      authorize(request, 'allocations:update');
      const consumer = request.params.consumer;
      if (!UUID.test(consumer)) throw new BadRequest(`Malformed consumer_uuid: ${consumer}`);
      const body = objectBody(request);
      if (!('allocations' in body)) invalid(`'allocations' is a required property`);
      const fields = consumerFields(request, body);
      const allocations = allocationsOf(request, body.allocations, atLeast(request, 28));
      await placement.putAllocations(consumer, { allocations, ...fields });
      reply.status(204).send();
    });

    app.delete<{ Params: { consumer: string } }>('/allocations/:consumer', async (request, reply) => {
      authorize(request, 'allocations:delete');
      const had = await placement.deleteAllocations(request.params.consumer);
      if (!had) throw new NotFound(`No allocations for consumer '${request.params.consumer}'`);
      reply.status(204).send();
    });

    app.post('/allocations', async (request, reply) => {
      since(request, 13);
      authorize(request, 'allocations:manage');
      const body = objectBody(request);
      if (Object.keys(body).length === 0) invalid(`the body must name at least one consumer`);
      const consumers: Parameters<PlacementService['postAllocations']>[0] = {};
      for (const [consumer, entry] of Object.entries(body)) {
        if (!UUID.test(consumer)) invalid(`'${consumer}' is not a consumer uuid`);
        if (entry === null || typeof entry !== 'object' || Array.isArray(entry)) invalid(`the entry of consumer ${consumer} must be an object`);
        const e = entry as Json;
        if (!('allocations' in e)) invalid(`'allocations' is a required property of consumer ${consumer}`);
        consumers[consumer] = { allocations: allocationsOf(request, e.allocations, true), ...consumerFields(request, e) };
      }
      await placement.postAllocations(consumers);
      reply.status(204).send();
    });

    // ---- allocation candidates ----
    app.get('/allocation_candidates', async (request: FastifyRequest, _reply: FastifyReply) => {
      since(request, 10);
      authorize(request, 'allocation_candidates:list');
      const query = await parseCandidateQuery(request, placement);
      query.excludeNested = !atLeast(request, 29);
      const result = await placement.getAllocationCandidates(query);
      return candidatesView(request, query, result);
    });
  };
}
