// /v2.0/networks (with the provider, external-net, port-security, net-mtu, dns-domain,
// availability zone and tag extensions) and /v2.0/availability_zones.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { BadRequest } from '../../core/errors.js';
import { neutronError } from './errors.js';
import { parseAddress } from '../addresses.js';
import { BASE_POLICY, adminOnlyAttributes } from '../policy.js';
import { DEFAULT_AVAILABILITY_ZONE, networkNotFound, type Network } from '../networks.js';
import { allowed, authorize, callerOf, listView, resourceBody, selectFields, type NetworkApiArea, type NetworkApiDeps } from './common.js';
import { BodyReader, authorizeAttributes, hideAttributes, owningProject } from './body.js';
import { tagRoutes } from './tags.js';

const PROVIDER = ['provider:network_type', 'provider:physical_network', 'provider:segmentation_id'];
const ADMIN_CREATE = ['shared', 'router:external', 'is_default', ...PROVIDER, 'segments'];
const WRITABLE = ['name', 'description', 'admin_state_up', 'shared', 'router:external', 'is_default', 'mtu', 'port_security_enabled', 'dns_domain', 'tags'];

export function networkView(network: Network): Record<string, unknown> {
  const segment = network.segment;
  return {
    id: network.id, name: network.name, tenant_id: network.projectId, project_id: network.projectId,
    admin_state_up: network.adminStateUp, mtu: network.mtu, status: network.status, subnets: network.subnets,
    shared: network.shared, availability_zone_hints: network.availabilityZoneHints,
    availability_zones: [DEFAULT_AVAILABILITY_ZONE], ipv4_address_scope: null, ipv6_address_scope: null,
    'router:external': network.external, description: network.description, port_security_enabled: network.portSecurityEnabled,
    dns_domain: network.dnsDomain, is_default: network.isDefault, l2_adjacency: true,
    'provider:network_type': segment?.networkType ?? 'local', 'provider:physical_network': segment?.physicalNetwork ?? null,
    'provider:segmentation_id': segment?.segmentationId ?? null,
    tags: network.tags, created_at: network.createdAt, updated_at: network.updatedAt, revision_number: network.revisionNumber,
  };
}

/** The policy target of a network: its owner and the attributes `shared` / `external` rules test. */
export function networkTarget(network: Network): Record<string, unknown> {
  return { project_id: network.projectId, tenant_id: network.projectId, shared: network.shared, 'router:external': network.external, id: network.id };
}

/** The network if the caller may see it (get_network), else its 404. */
export async function visibleNetwork(deps: NetworkApiDeps, request: FastifyRequest, id: string): Promise<Network> {
  const network = await deps.network.networks.find(id);
  if (!network) throw networkNotFound(id);
  if (!allowed(deps, request, 'get_network', networkTarget(network))) throw networkNotFound(id);
  return network;
}

function render(deps: NetworkApiDeps, request: FastifyRequest, network: Network): Record<string, unknown> {
  return hideAttributes(deps, request, 'network', networkView(network), [...PROVIDER, 'segments'], networkTarget(network));
}

function routes(app: FastifyInstance, deps: NetworkApiDeps): void {
  const { networks } = deps.network;

  app.get('/v2.0/networks', async (request) => {
    const all = await networks.list();
    const visible = all.filter((n) => allowedToSee(deps, request, n));
    return listView(request, deps, 'networks', visible.map((n) => render(deps, request, n)));
  });

  app.post('/v2.0/networks', async (request, reply) => {
    const body = new BodyReader(resourceBody(request.body, 'network'))
      .only([...WRITABLE, 'tenant_id', 'project_id', ...PROVIDER, 'availability_zone_hints']);
    const projectId = owningProject(request, body);
    const target = { project_id: projectId, tenant_id: projectId };
    authorize(deps, request, 'create_network', target);
    authorizeAttributes(deps, request, 'create_network', body, ADMIN_CREATE, target);
    const network = await networks.create({
      projectId, name: body.string('name'), description: body.string('description'), adminStateUp: body.boolean('admin_state_up'),
      shared: body.boolean('shared'), external: body.boolean('router:external'), isDefault: body.boolean('is_default'),
      mtu: body.integer('mtu'), portSecurityEnabled: body.boolean('port_security_enabled'), dnsDomain: body.string('dns_domain'),
      availabilityZoneHints: body.stringList('availability_zone_hints'),
      networkType: body.string('provider:network_type'), physicalNetwork: body.string('provider:physical_network'),
      segmentationId: body.integer('provider:segmentation_id'), tags: body.stringList('tags'),
    });
    return reply.code(201).send({ network: render(deps, request, network) });
  });

  app.get('/v2.0/networks/:id', async (request) => {
    const network = await visibleNetwork(deps, request, (request.params as { id: string }).id);
    return { network: selectFields(request, render(deps, request, network)) };
  });

  app.put('/v2.0/networks/:id', async (request) => {
    const network = await visibleNetwork(deps, request, (request.params as { id: string }).id);
    const body = new BodyReader(resourceBody(request.body, 'network'))
      .notUpdatable(['id', 'tenant_id', 'project_id', 'status', 'subnets', 'availability_zone_hints'])
      .only(WRITABLE.filter((k) => k !== 'tags').concat(PROVIDER));
    const target = networkTarget(network);
    authorize(deps, request, 'update_network', target);
    authorizeAttributes(deps, request, 'update_network', body, ADMIN_CREATE, target);
    // Provider attributes may be sent back unchanged (clients do), never changed.
    const current = networkView(network);
    const changed = PROVIDER.filter((k) => body.has(k) && body.body[k] !== current[k]);
    if (changed.length > 0) {
      throw neutronError(new BadRequest(`Invalid input for operation: Plugin does not support updating the following provider network attributes: ${changed.join(', ')}.`), 'InvalidInput');
    }
    const updated = await networks.update(network.id, {
      name: body.string('name'), description: body.string('description'), adminStateUp: body.boolean('admin_state_up'),
      shared: body.boolean('shared'), external: body.boolean('router:external'), isDefault: body.boolean('is_default'),
      mtu: body.integer('mtu'), portSecurityEnabled: body.boolean('port_security_enabled'), dnsDomain: body.string('dns_domain'),
    });
    return { network: render(deps, request, updated) };
  });

  app.delete('/v2.0/networks/:id', async (request, reply) => {
    const network = await visibleNetwork(deps, request, (request.params as { id: string }).id);
    authorize(deps, request, 'delete_network', networkTarget(network));
    await networks.delete(network.id);
    return reply.code(204).send();
  });

  tagRoutes(app, deps, {
    collection: 'networks', resource: 'network', table: 'network_networks',
    target: async (request, id) => networkTarget(await visibleNetwork(deps, request, id)),
  });

  // network-ip-availability: how many addresses each network's subnets have (their pools) and use.
  const availability = async (network: Network) => {
    const subnets = await deps.network.subnets.list({ networkId: network.id });
    const perSubnet = [];
    for (const subnet of subnets) {
      const total = subnet.allocationPools.reduce((sum, p) => sum + (parseAddress(p.end)!.value - parseAddress(p.start)!.value + 1n), 0n);
      perSubnet.push({ subnet_id: subnet.id, subnet_name: subnet.name, ip_version: subnet.ipVersion, cidr: subnet.cidr, total_ips: Number(total), used_ips: await deps.network.subnets.usedCount(subnet.id) });
    }
    return {
      network_id: network.id, network_name: network.name, tenant_id: network.projectId, project_id: network.projectId,
      total_ips: perSubnet.reduce((sum, s) => sum + s.total_ips, 0), used_ips: perSubnet.reduce((sum, s) => sum + s.used_ips, 0),
      subnet_ip_availability: perSubnet,
    };
  };
  app.get('/v2.0/network-ip-availabilities', async (request) => {
    authorize(deps, request, 'get_network_ip_availability');
    const items = [];
    for (const network of await networks.list()) items.push(await availability(network));
    return listView(request, deps, 'network_ip_availabilities', items);
  });
  app.get('/v2.0/network-ip-availabilities/:id', async (request) => {
    authorize(deps, request, 'get_network_ip_availability');
    const { id } = request.params as { id: string };
    const network = await networks.find(id);
    if (!network) throw networkNotFound(id);
    return { network_ip_availability: selectFields(request, await availability(network)) };
  });

  app.get('/v2.0/availability_zones', async (request) => {
    callerOf(request);
    const zones = ['network', 'router'].map((resource) => ({ name: DEFAULT_AVAILABILITY_ZONE, resource, state: 'available' }));
    return listView(request, deps, 'availability_zones', zones);
  });
}

function allowedToSee(deps: NetworkApiDeps, request: FastifyRequest, network: Network): boolean {
  return allowed(deps, request, 'get_network', networkTarget(network));
}

export const networkArea: NetworkApiArea = {
  routes,
  policy: {
    ...BASE_POLICY,
    create_network: '',
    get_network: 'rule:admin_or_owner or rule:shared or rule:external or rule:context_is_advsvc',
    'get_network:router:external': '',
    update_network: 'rule:admin_or_owner',
    delete_network: 'rule:admin_or_owner',
    ...adminOnlyAttributes(['create', 'update'], 'network', ['shared', 'router:external', 'is_default', 'segments', ...PROVIDER]),
    ...adminOnlyAttributes(['get'], 'network', ['segments', ...PROVIDER]),
    'get_network:is_default': '',
    'get_network:shared': '',
    get_network_ip_availability: 'rule:admin_only',
  },
  extensions: [
    { alias: 'network_availability_zone', name: 'Network Availability Zone', description: 'Availability zone support for network.', updated: '2015-01-01T10:00:00-00:00' },
    { alias: 'availability_zone', name: 'Availability Zone', description: 'The availability zone extension.', updated: '2015-01-01T10:00:00-00:00' },
    { alias: 'external-net', name: 'Neutron external network', description: 'Adds external network attribute to network resource.', updated: '2013-01-14T10:00:00-00:00' },
    { alias: 'provider', name: 'Provider Network', description: 'Expose mapping of virtual networks to physical networks', updated: '2012-09-07T10:00:00-00:00' },
    { alias: 'net-mtu', name: 'Network MTU', description: 'Provides MTU attribute for a network resource.', updated: '2015-03-25T10:00:00-00:00' },
    { alias: 'net-mtu-writable', name: 'Network MTU (writable)', description: 'Provides a writable MTU attribute for a network resource.', updated: '2017-07-12T00:00:00-00:00' },
    { alias: 'network-ip-availability', name: 'Network IP Availability', description: 'Provides IP availability data for each network and subnet.', updated: '2015-09-24T00:00:00-00:00' },
    { alias: 'dns-integration', name: 'DNS Integration', description: 'Provides integration with DNS.', updated: '2015-08-15T18:00:00-00:00' },
    { alias: 'standard-attr-tag', name: 'Tag support for resources with standard attribute: subnet, trunk, network_segment_range, router, network, policy, subnetpool, port, security_group, floatingip', description: 'Enables to set tag on resources with standard attribute.', updated: '2017-01-01T00:00:00-00:00' },
    { alias: 'standard-attr-description', name: 'standard-attr-description', description: 'Extension to add descriptions to standard attributes', updated: '2016-02-10T10:00:00-00:00' },
    { alias: 'standard-attr-timestamp', name: 'Resource timestamps', description: 'Adds created_at and updated_at fields to all Neutron resources that have Neutron standard attributes.', updated: '2016-09-12T10:00:00-00:00' },
    { alias: 'standard-attr-revisions', name: 'Resource revision numbers', description: 'This extension will display the revision number of neutron resources.', updated: '2016-04-11T10:00:00-00:00' },
  ],
};
