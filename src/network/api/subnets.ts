// /v2.0/subnets (IPv4 and IPv6 with the address modes, host routes, DNS servers, allocation
// pools, subnet pool allocation) and their tags.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { BadRequest } from '../../core/errors.js';
import type { Network } from '../networks.js';
import { subnetNotFound, subnetPoolNotFound, type Subnet, type SubnetPool, type AllocationPool, type HostRoute } from '../subnets.js';
import { authorize, allowed, listView, resourceBody, selectFields, type NetworkApiArea, type NetworkApiDeps } from './common.js';
import { BodyReader, authorizeAttributes, owningProject } from './body.js';
import { neutronError } from './errors.js';
import { networkTarget, visibleNetwork } from './networks.js';
import { tagRoutes } from './tags.js';

export function subnetView(subnet: Subnet): Record<string, unknown> {
  return {
    id: subnet.id, name: subnet.name, tenant_id: subnet.projectId, project_id: subnet.projectId, network_id: subnet.networkId,
    ip_version: subnet.ipVersion, subnetpool_id: subnet.subnetpoolId, enable_dhcp: subnet.enableDhcp,
    ipv6_ra_mode: subnet.ipv6RaMode, ipv6_address_mode: subnet.ipv6AddressMode, gateway_ip: subnet.gatewayIp, cidr: subnet.cidr,
    allocation_pools: subnet.allocationPools, host_routes: subnet.hostRoutes, dns_nameservers: subnet.dnsNameservers,
    description: subnet.description, service_types: [], segment_id: null, tags: subnet.tags,
    created_at: subnet.createdAt, updated_at: subnet.updatedAt, revision_number: subnet.revisionNumber,
  };
}

/** A subnet's policy target: its owner, its network's owner and whether the network is shared. */
export function subnetTarget(subnet: Subnet, network: Network | undefined): Record<string, unknown> {
  return {
    project_id: subnet.projectId, tenant_id: subnet.projectId, network_id: subnet.networkId,
    'network:project_id': network?.projectId ?? '', 'network:tenant_id': network?.projectId ?? '', shared: network?.shared ?? false,
  };
}

async function visibleSubnet(deps: NetworkApiDeps, request: FastifyRequest, id: string): Promise<{ subnet: Subnet; network: Network }> {
  const [subnet] = await deps.network.subnets.list({ ids: [id] });
  if (!subnet) throw subnetNotFound(id);
  const network = await deps.network.networks.get(subnet.networkId);
  if (!allowed(deps, request, 'get_subnet', subnetTarget(subnet, network))) throw subnetNotFound(id);
  return { subnet, network };
}

export function subnetPoolView(pool: SubnetPool): Record<string, unknown> {
  return {
    id: pool.id, name: pool.name, tenant_id: pool.projectId, project_id: pool.projectId, prefixes: pool.prefixes,
    default_prefixlen: pool.defaultPrefixlen, min_prefixlen: pool.minPrefixlen, max_prefixlen: pool.maxPrefixlen,
    default_quota: pool.defaultQuota, address_scope_id: pool.addressScopeId, is_default: pool.isDefault, shared: pool.shared,
    ip_version: pool.ipVersion, description: pool.description, tags: pool.tags,
    created_at: pool.createdAt, updated_at: pool.updatedAt, revision_number: pool.revisionNumber,
  };
}

const poolTarget = (pool: SubnetPool) => ({ project_id: pool.projectId, tenant_id: pool.projectId, shared: pool.shared });

async function visiblePool(deps: NetworkApiDeps, request: FastifyRequest, id: string): Promise<SubnetPool> {
  const [pool] = await deps.network.subnets.listPools([id]);
  if (!pool || !allowed(deps, request, 'get_subnetpool', poolTarget(pool))) throw subnetPoolNotFound(id);
  return pool;
}

const POOL_WRITABLE = ['name', 'description', 'prefixes', 'default_prefixlen', 'min_prefixlen', 'max_prefixlen', 'default_quota', 'is_default', 'address_scope_id'];

function poolRoutes(app: FastifyInstance, deps: NetworkApiDeps): void {
  const { subnets } = deps.network;
  const changes = (body: BodyReader) => ({
    name: body.string('name'), description: body.string('description'), prefixes: body.stringList('prefixes'),
    defaultPrefixlen: body.integer('default_prefixlen'), minPrefixlen: body.integer('min_prefixlen'), maxPrefixlen: body.integer('max_prefixlen'),
    defaultQuota: body.has('default_quota') ? body.integer('default_quota') ?? null : undefined,
    isDefault: body.boolean('is_default'), addressScopeId: body.nullableString('address_scope_id'),
  });

  app.get('/v2.0/subnetpools', async (request) => {
    const visible = (await subnets.listPools()).filter((p) => allowed(deps, request, 'get_subnetpool', poolTarget(p)));
    return listView(request, deps, 'subnetpools', visible.map(subnetPoolView));
  });

  app.post('/v2.0/subnetpools', async (request, reply) => {
    const body = new BodyReader(resourceBody(request.body, 'subnetpool')).only([...POOL_WRITABLE, 'shared', 'tenant_id', 'project_id', 'tags']);
    const projectId = owningProject(request, body);
    const target = { project_id: projectId, tenant_id: projectId };
    authorize(deps, request, 'create_subnetpool', target);
    authorizeAttributes(deps, request, 'create_subnetpool', body, ['shared', 'is_default'], target);
    const prefixes = body.stringList('prefixes');
    if (prefixes === undefined) throw neutronError(new BadRequest("Failed to parse request. Required attribute 'prefixes' not specified"), 'HTTPBadRequest');
    const pool = await subnets.createPool({ ...changes(body), prefixes, projectId, shared: body.boolean('shared'), tags: body.stringList('tags') });
    return reply.code(201).send({ subnetpool: subnetPoolView(pool) });
  });

  app.get('/v2.0/subnetpools/:id', async (request) => {
    const pool = await visiblePool(deps, request, (request.params as { id: string }).id);
    return { subnetpool: selectFields(request, subnetPoolView(pool)) };
  });

  app.put('/v2.0/subnetpools/:id', async (request) => {
    const pool = await visiblePool(deps, request, (request.params as { id: string }).id);
    const body = new BodyReader(resourceBody(request.body, 'subnetpool')).notUpdatable(['id', 'tenant_id', 'project_id', 'ip_version', 'shared']).only(POOL_WRITABLE);
    authorize(deps, request, 'update_subnetpool', poolTarget(pool));
    authorizeAttributes(deps, request, 'update_subnetpool', body, ['is_default'], poolTarget(pool));
    return { subnetpool: subnetPoolView(await subnets.updatePool(pool.id, changes(body))) };
  });

  // subnetpool-prefix-ops: PUT /subnetpools/{id}/add_prefixes | remove_prefixes {"prefixes": [...]}
  for (const action of ['add_prefixes', 'remove_prefixes'] as const) {
    app.put(`/v2.0/subnetpools/:id/${action}`, async (request) => {
      const pool = await visiblePool(deps, request, (request.params as { id: string }).id);
      authorize(deps, request, `${action === 'add_prefixes' ? 'add' : 'remove'}_prefixes`, poolTarget(pool));
      const prefixes = new BodyReader((request.body ?? {}) as Record<string, unknown>).only(['prefixes']).stringList('prefixes') ?? [];
      const updated = await subnets.updatePool(pool.id, action === 'add_prefixes' ? { addPrefixes: prefixes } : { removePrefixes: prefixes });
      return { prefixes: updated.prefixes };
    });
  }

  app.delete('/v2.0/subnetpools/:id', async (request, reply) => {
    const pool = await visiblePool(deps, request, (request.params as { id: string }).id);
    authorize(deps, request, 'delete_subnetpool', poolTarget(pool));
    await subnets.deletePool(pool.id);
    return reply.code(204).send();
  });

  tagRoutes(app, deps, {
    collection: 'subnetpools', resource: 'subnetpool', table: 'network_subnet_pools',
    target: async (request, id) => poolTarget(await visiblePool(deps, request, id)),
  });
}

const WRITABLE = ['name', 'description', 'gateway_ip', 'allocation_pools', 'dns_nameservers', 'host_routes', 'enable_dhcp'];

function pools(body: BodyReader): AllocationPool[] | undefined {
  const list = body.list<Record<string, unknown>>('allocation_pools');
  return list?.map((p) => ({ start: p?.start as string, end: p?.end as string }));
}

function routes(body: BodyReader): HostRoute[] | undefined {
  const list = body.list<Record<string, unknown>>('host_routes');
  return list?.map((r) => ({ destination: r?.destination as string, nexthop: r?.nexthop as string }));
}

function register(app: FastifyInstance, deps: NetworkApiDeps): void {
  const { subnets, networks } = deps.network;
  poolRoutes(app, deps);

  app.get('/v2.0/subnets', async (request) => {
    const all = await subnets.list();
    const byId = new Map((await networks.list()).map((n) => [n.id, n]));
    const visible = all.filter((s) => allowed(deps, request, 'get_subnet', subnetTarget(s, byId.get(s.networkId))));
    return listView(request, deps, 'subnets', visible.map(subnetView));
  });

  app.post('/v2.0/subnets', async (request, reply) => {
    const body = new BodyReader(resourceBody(request.body, 'subnet'))
      .only([...WRITABLE, 'tenant_id', 'project_id', 'network_id', 'ip_version', 'cidr', 'ipv6_ra_mode', 'ipv6_address_mode',
        'subnetpool_id', 'use_default_subnetpool', 'prefixlen', 'tags', 'segment_id', 'service_types']);
    const networkId = body.string('network_id');
    if (networkId === undefined) throw neutronError(new BadRequest("Failed to parse request. Required attribute 'network_id' not specified"), 'HTTPBadRequest');
    const ipVersion = body.integer('ip_version');
    if (ipVersion === undefined) throw neutronError(new BadRequest("Failed to parse request. Required attribute 'ip_version' not specified"), 'HTTPBadRequest');
    if (body.has('segment_id') && body.body.segment_id !== null) throw neutronError(new BadRequest('Invalid input for operation: segment_id is not supported (one segment per network).'), 'InvalidInput');
    if ((body.list('service_types') ?? []).length > 0) throw neutronError(new BadRequest('Invalid input for operation: service_types are not supported.'), 'InvalidInput');
    const network = await visibleNetwork(deps, request, networkId);
    const poolId = body.nullableString('subnetpool_id');
    if (poolId) await visiblePool(deps, request, poolId);
    const projectId = owningProject(request, body);
    const target = { project_id: projectId, tenant_id: projectId, 'network:project_id': network.projectId, 'network:tenant_id': network.projectId, ...sharedOf(network) };
    authorize(deps, request, 'create_subnet', target);
    authorizeAttributes(deps, request, 'create_subnet', body, ['segment_id', 'service_types'], target);
    const subnet = await subnets.create({
      projectId, networkId: network.id, name: body.string('name'), description: body.string('description'), ipVersion,
      cidr: body.string('cidr'), gatewayIp: body.nullableString('gateway_ip'), allocationPools: pools(body),
      dnsNameservers: body.stringList('dns_nameservers'), hostRoutes: routes(body), enableDhcp: body.boolean('enable_dhcp'),
      ipv6RaMode: body.nullableString('ipv6_ra_mode'), ipv6AddressMode: body.nullableString('ipv6_address_mode'),
      subnetpoolId: body.nullableString('subnetpool_id'), useDefaultSubnetpool: body.boolean('use_default_subnetpool'),
      prefixlen: body.integer('prefixlen'), tags: body.stringList('tags'),
    });
    return reply.code(201).send({ subnet: subnetView(subnet) });
  });

  app.get('/v2.0/subnets/:id', async (request) => {
    const { subnet } = await visibleSubnet(deps, request, (request.params as { id: string }).id);
    return { subnet: selectFields(request, subnetView(subnet)) };
  });

  app.put('/v2.0/subnets/:id', async (request) => {
    const { subnet, network } = await visibleSubnet(deps, request, (request.params as { id: string }).id);
    const body = new BodyReader(resourceBody(request.body, 'subnet'))
      .notUpdatable(['id', 'tenant_id', 'project_id', 'network_id', 'ip_version', 'cidr', 'subnetpool_id', 'ipv6_ra_mode', 'ipv6_address_mode', 'prefixlen'])
      .only([...WRITABLE, 'segment_id', 'service_types']);
    authorize(deps, request, 'update_subnet', subnetTarget(subnet, network));
    const updated = await subnets.update(subnet.id, {
      name: body.string('name'), description: body.string('description'), gatewayIp: body.nullableString('gateway_ip'),
      allocationPools: pools(body), dnsNameservers: body.stringList('dns_nameservers'), hostRoutes: routes(body), enableDhcp: body.boolean('enable_dhcp'),
    });
    return { subnet: subnetView(updated) };
  });

  app.delete('/v2.0/subnets/:id', async (request, reply) => {
    const { subnet, network } = await visibleSubnet(deps, request, (request.params as { id: string }).id);
    authorize(deps, request, 'delete_subnet', subnetTarget(subnet, network));
    await subnets.delete(subnet.id);
    return reply.code(204).send();
  });

  tagRoutes(app, deps, {
    collection: 'subnets', resource: 'subnet', table: 'network_subnets',
    target: async (request, id) => { const { subnet, network } = await visibleSubnet(deps, request, id); return subnetTarget(subnet, network); },
  });
}

const sharedOf = (network: Network) => ({ shared: networkTarget(network).shared });

export const subnetArea: NetworkApiArea = {
  routes: register,
  policy: {
    create_subnet: 'rule:admin_or_network_owner',
    'create_subnet:segment_id': 'rule:admin_only',
    'create_subnet:service_types': 'rule:admin_only',
    get_subnet: 'rule:admin_or_owner or rule:shared',
    'get_subnet:segment_id': 'rule:admin_only',
    update_subnet: 'rule:admin_or_network_owner',
    'update_subnet:segment_id': 'rule:admin_only',
    'update_subnet:service_types': 'rule:admin_only',
    delete_subnet: 'rule:admin_or_network_owner',
    create_subnetpool: '',
    'create_subnetpool:shared': 'rule:admin_only',
    'create_subnetpool:is_default': 'rule:admin_only',
    get_subnetpool: 'rule:admin_or_owner or rule:shared_subnetpools',
    update_subnetpool: 'rule:admin_or_owner',
    'update_subnetpool:is_default': 'rule:admin_only',
    delete_subnetpool: 'rule:admin_or_owner',
    add_prefixes: 'rule:admin_or_owner',
    remove_prefixes: 'rule:admin_or_owner',
  },
  extensions: [
    { alias: 'default-subnetpools', name: 'Default Subnetpools', description: 'Provides ability to mark and use a subnetpool as the default.', updated: '2016-02-18T18:00:00-00:00' },
    { alias: 'subnetpool-prefix-ops', name: 'Subnet Pool Prefix Operations', description: 'Provides support for adjusting the prefix list of subnet pools', updated: '2019-09-15T10:00:00-00:00' },
    { alias: 'subnet_allocation', name: 'Subnet Allocation', description: 'Enables allocation of subnets from a subnet pool', updated: '2015-03-30T10:00:00-00:00' },
  ],
};
