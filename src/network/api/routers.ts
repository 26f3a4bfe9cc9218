// /v2.0/routers (router, ext-gw-mode, extraroute, extraroute-atomic): CRUD with
// external_gateway_info, add/remove_router_interface, add/remove_extraroutes, and their tags.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { BadRequest } from '../../core/errors.js';
import { routerNotFound, type GatewayRequest, type Router, type RouterInterfaceInfo, type RouterRoute } from '../routers.js';
import type { FixedIpRequest } from '../ports.js';
import { parseAddress } from '../addresses.js';
import { DEFAULT_AVAILABILITY_ZONE } from '../networks.js';
import { allowed, authorize, callerOf, listView, resourceBody, selectFields, type NetworkApiArea, type NetworkApiDeps } from './common.js';
import { BodyReader, badInput, owningProject } from './body.js';
import { neutronError } from './errors.js';
import { visibleNetwork } from './networks.js';
import { tagRoutes } from './tags.js';

const WRITABLE = ['name', 'description', 'admin_state_up', 'external_gateway_info'];

export function routerView(router: Router): Record<string, unknown> {
  return {
    id: router.id, name: router.name, description: router.description, tenant_id: router.projectId, project_id: router.projectId,
    admin_state_up: router.adminStateUp, status: router.status,
    external_gateway_info: router.gateway && {
      network_id: router.gateway.networkId, enable_snat: router.gateway.enableSnat,
      external_fixed_ips: router.gateway.externalFixedIps.map((f) => ({ subnet_id: f.subnetId, ip_address: f.ipAddress })),
    },
    routes: router.routes.map((r) => ({ destination: r.destination, nexthop: r.nexthop })),
    availability_zone_hints: router.availabilityZoneHints, availability_zones: [DEFAULT_AVAILABILITY_ZONE],
    tags: router.tags, created_at: router.createdAt, updated_at: router.updatedAt, revision_number: router.revisionNumber,
  };
}

const routerTarget = (router: { projectId: string }) => ({ project_id: router.projectId, tenant_id: router.projectId });

async function visibleRouter(deps: NetworkApiDeps, request: FastifyRequest, id: string): Promise<Router> {
  const router = await deps.network.routers.find(id);
  if (!router || !allowed(deps, request, 'get_router', routerTarget(router))) throw routerNotFound(id);
  return router;
}

/** external_gateway_info as sent: null / {} removes the gateway; each sub-attribute has its own policy rule. */
async function gatewayOf(deps: NetworkApiDeps, request: FastifyRequest, action: string, body: BodyReader, target: Record<string, unknown>): Promise<GatewayRequest | null | undefined> {
  if (!('external_gateway_info' in body.body)) return undefined;
  authorize(deps, request, `${action}:external_gateway_info`, target);
  const info = body.object('external_gateway_info');
  if (info === undefined || Object.keys(info).length === 0) return null;
  const gateway = new BodyReader(info).only(['network_id', 'enable_snat', 'external_fixed_ips', 'qos_policy_id']);
  const networkId = gateway.string('network_id');
  if (networkId === undefined) throw badInput('external_gateway_info', `Validation of dictionary's keys failed. Expected keys: {'network_id'}`);
  authorize(deps, request, `${action}:external_gateway_info:network_id`, target);
  if (gateway.has('enable_snat')) authorize(deps, request, `${action}:external_gateway_info:enable_snat`, target);
  if (gateway.has('external_fixed_ips')) authorize(deps, request, `${action}:external_gateway_info:external_fixed_ips`, target);
  await visibleNetwork(deps, request, networkId);
  const fixedIps = gateway.list<Record<string, unknown>>('external_fixed_ips')?.map((entry): FixedIpRequest => {
    if (typeof entry !== 'object' || entry === null) throw badInput('external_fixed_ips', `'${JSON.stringify(entry)}' is not a dictionary`);
    if (entry.ip_address !== undefined && !parseAddress(entry.ip_address)) throw badInput('external_fixed_ips', `'${String(entry.ip_address)}' is not a valid IP address`);
    return { subnetId: entry.subnet_id as string | undefined, ipAddress: entry.ip_address as string | undefined };
  });
  return { networkId, enableSnat: gateway.boolean('enable_snat'), externalFixedIps: fixedIps };
}

function routesOf(body: BodyReader): RouterRoute[] | undefined {
  const list = body.list('routes');
  return list as RouterRoute[] | undefined;
}

function interfaceView(info: RouterInterfaceInfo): Record<string, unknown> {
  return { id: info.id, tenant_id: info.projectId, project_id: info.projectId, port_id: info.portId, network_id: info.networkId, subnet_id: info.subnetId, subnet_ids: info.subnetIds };
}

function interfaceBody(raw: unknown): { subnetId?: string; portId?: string } {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw neutronError(new BadRequest('Bad router request: Either subnet_id or port_id must be specified'), 'BadRequest');
  const body = new BodyReader(raw as Record<string, unknown>);
  return { subnetId: body.string('subnet_id'), portId: body.string('port_id') };
}

function register(app: FastifyInstance, deps: NetworkApiDeps): void {
  const { routers } = deps.network;

  app.get('/v2.0/routers', async (request) => {
    const visible = (await routers.list()).filter((r) => allowed(deps, request, 'get_router', routerTarget(r)));
    return listView(request, deps, 'routers', visible.map(routerView));
  });

  app.post('/v2.0/routers', async (request, reply) => {
    const body = new BodyReader(resourceBody(request.body, 'router')).only([...WRITABLE, 'tenant_id', 'project_id', 'tags', 'availability_zone_hints']);
    const projectId = owningProject(request, body);
    const target = { project_id: projectId, tenant_id: projectId };
    authorize(deps, request, 'create_router', target);
    const gateway = await gatewayOf(deps, request, 'create_router', body, target);
    const router = await routers.create({
      projectId, name: body.string('name'), description: body.string('description'), adminStateUp: body.boolean('admin_state_up'),
      gateway: gateway ?? undefined, availabilityZoneHints: body.stringList('availability_zone_hints'), tags: body.stringList('tags'),
    });
    return reply.code(201).send({ router: routerView(router) });
  });

  app.get('/v2.0/routers/:id', async (request) => {
    const router = await visibleRouter(deps, request, (request.params as { id: string }).id);
    return { router: selectFields(request, routerView(router)) };
  });

  app.put('/v2.0/routers/:id', async (request) => {
    const router = await visibleRouter(deps, request, (request.params as { id: string }).id);
    const body = new BodyReader(resourceBody(request.body, 'router')).notUpdatable(['id', 'tenant_id', 'project_id', 'status', 'availability_zone_hints', 'availability_zones']).only([...WRITABLE, 'routes']);
    const target = routerTarget(router);
    authorize(deps, request, 'update_router', target);
    const gateway = await gatewayOf(deps, request, 'update_router', body, target);
    const updated = await routers.update(router.id, {
      name: body.string('name'), description: body.string('description'), adminStateUp: body.boolean('admin_state_up'), gateway, routes: routesOf(body),
    });
    return { router: routerView(updated) };
  });

  app.delete('/v2.0/routers/:id', async (request, reply) => {
    const router = await visibleRouter(deps, request, (request.params as { id: string }).id);
    authorize(deps, request, 'delete_router', routerTarget(router));
    await routers.delete(router.id);
    return reply.code(204).send();
  });

  app.put('/v2.0/routers/:id/add_router_interface', async (request) => {
    const router = await visibleRouter(deps, request, (request.params as { id: string }).id);
    authorize(deps, request, 'add_router_interface', routerTarget(router));
    return interfaceView(await routers.addInterface(callerOf(request), router.id, interfaceBody(request.body)));
  });

  app.put('/v2.0/routers/:id/remove_router_interface', async (request) => {
    const router = await visibleRouter(deps, request, (request.params as { id: string }).id);
    authorize(deps, request, 'remove_router_interface', routerTarget(router));
    return interfaceView(await routers.removeInterface(router.id, interfaceBody(request.body)));
  });

  for (const [path, action] of [['add_extraroutes', 'add'], ['remove_extraroutes', 'remove']] as const) {
    app.put(`/v2.0/routers/:id/${path}`, async (request) => {
      const router = await visibleRouter(deps, request, (request.params as { id: string }).id);
      authorize(deps, request, path, routerTarget(router));
      const body = new BodyReader(resourceBody(request.body, 'router')).only(['routes']);
      const routes = routesOf(body) ?? [];
      const updated = action === 'add' ? await routers.changeRoutes(router.id, routes, []) : await routers.changeRoutes(router.id, [], routes);
      return { router: routerView(updated) };
    });
  }

  tagRoutes(app, deps, {
    collection: 'routers', resource: 'router', table: 'network_routers',
    target: async (request, id) => routerTarget(await visibleRouter(deps, request, id)),
  });
}

const OWNER = 'rule:admin_or_owner';

export const routerArea: NetworkApiArea = {
  routes: register,
  policy: {
    create_router: 'rule:regular_user',
    'create_router:external_gateway_info': OWNER,
    'create_router:external_gateway_info:network_id': OWNER,
    'create_router:external_gateway_info:enable_snat': 'rule:admin_only',
    'create_router:external_gateway_info:external_fixed_ips': 'rule:admin_only',
    get_router: OWNER,
    update_router: OWNER,
    'update_router:external_gateway_info': OWNER,
    'update_router:external_gateway_info:network_id': OWNER,
    'update_router:external_gateway_info:enable_snat': 'rule:admin_only',
    'update_router:external_gateway_info:external_fixed_ips': 'rule:admin_only',
    delete_router: OWNER,
    add_router_interface: OWNER,
    remove_router_interface: OWNER,
    add_extraroutes: OWNER,
    remove_extraroutes: OWNER,
  },
  extensions: [
    { alias: 'router', name: 'Neutron L3 Router', description: 'Router abstraction for basic L3 forwarding between L2 Neutron networks and access to external networks via a NAT gateway.', updated: '2012-07-20T10:00:00-00:00' },
    { alias: 'ext-gw-mode', name: 'Neutron L3 Configurable external gateway mode', description: 'Extension of the router abstraction for specifying whether SNAT should occur on the external gateway', updated: '2013-03-28T10:00:00-00:00' },
    { alias: 'extraroute', name: 'Neutron Extra Route', description: 'Extra routes configuration for L3 router', updated: '2013-02-01T10:00:00-00:00' },
    { alias: 'router_availability_zone', name: 'Router Availability Zone', description: 'Availability zone support for router.', updated: '2015-01-01T10:00:00-00:00' },
    { alias: 'extraroute-atomic', name: 'Atomically add/remove extra routes', description: 'Edit extra routes of a router on server side by atomically adding/removing extra routes', updated: '2019-07-10T00:00:00-00:00' },
  ],
};
