// /v2.0/ports (binding, port-security, allowed-address-pairs, extra_dhcp_opt, security groups,
// dns-integration attributes) and their tags.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { BadRequest } from '../../core/errors.js';
import type { Network } from '../networks.js';
import { portNotFound, type Port, type PortCreate, type PortUpdate, type FixedIpRequest } from '../ports.js';
import { parseAddress, formatAddress } from '../addresses.js';
import { allowed, authorize, callerOf, listView, resourceBody, selectFields, type NetworkApiArea, type NetworkApiDeps } from './common.js';
import { BodyReader, authorizeAttributes, badInput, hideAttributes, owningProject } from './body.js';
import { neutronError } from './errors.js';
import { visibleNetwork } from './networks.js';
import { tagRoutes } from './tags.js';

const BINDING = ['binding:host_id', 'binding:profile', 'binding:vif_type', 'binding:vif_details'];
const WRITABLE = ['name', 'description', 'admin_state_up', 'mac_address', 'fixed_ips', 'device_id', 'device_owner', 'security_groups',
  'port_security_enabled', 'allowed_address_pairs', 'extra_dhcp_opts', 'binding:host_id', 'binding:profile', 'binding:vnic_type', 'dns_name'];
/** Attributes only the network's owner (or an admin) may set on a port (Neutron's create_port:<attr> rules). */
const NETWORK_OWNER_ATTRIBUTES = ['mac_address', 'port_security_enabled', 'allowed_address_pairs', 'binding:host_id', 'binding:profile'];

export function portView(port: Port, dnsDomain = ''): Record<string, unknown> {
  const hostname = (ip: string) => port.dnsName || `host-${ip.replace(/[.:]/g, '-')}`;
  return {
    id: port.id, name: port.name, network_id: port.networkId, tenant_id: port.projectId, project_id: port.projectId,
    mac_address: port.macAddress, admin_state_up: port.adminStateUp, status: port.status, device_id: port.deviceId, device_owner: port.deviceOwner,
    fixed_ips: port.fixedIps.map((f) => ({ subnet_id: f.subnetId, ip_address: f.ipAddress })),
    allowed_address_pairs: port.allowedAddressPairs.map((p) => ({ ip_address: p.ipAddress, mac_address: p.macAddress })),
    extra_dhcp_opts: port.extraDhcpOpts.map((o) => ({ opt_name: o.optName, opt_value: o.optValue, ip_version: o.ipVersion })),
    security_groups: port.securityGroups, description: port.description,
    'binding:vnic_type': port.binding.vnicType, 'binding:profile': port.binding.profile, 'binding:host_id': port.binding.hostId,
    'binding:vif_type': port.binding.vifType, 'binding:vif_details': port.binding.vifDetails,
    port_security_enabled: port.portSecurityEnabled, dns_name: port.dnsName,
    dns_assignment: port.fixedIps.map((f) => ({ ip_address: f.ipAddress, hostname: hostname(f.ipAddress), fqdn: `${hostname(f.ipAddress)}.${dnsDomain || 'openstacklocal.'}` })),
    tags: port.tags, created_at: port.createdAt, updated_at: port.updatedAt, revision_number: port.revisionNumber,
  };
}

export function portTarget(port: { projectId: string; deviceOwner?: string }, network: Network | undefined): Record<string, unknown> {
  return {
    project_id: port.projectId, tenant_id: port.projectId, device_owner: port.deviceOwner ?? '',
    'network:project_id': network?.projectId ?? '', 'network:tenant_id': network?.projectId ?? '', shared: network?.shared ?? false,
  };
}

async function visiblePort(deps: NetworkApiDeps, request: FastifyRequest, id: string): Promise<{ port: Port; network: Network | undefined }> {
  const port = await deps.network.ports.find(id);
  if (!port) throw portNotFound(id);
  const network = await deps.network.networks.find(port.networkId);
  if (!allowed(deps, request, 'get_port', portTarget(port, network))) throw portNotFound(id);
  return { port, network };
}

function render(deps: NetworkApiDeps, request: FastifyRequest, port: Port, network: Network | undefined): Record<string, unknown> {
  return hideAttributes(deps, request, 'port', portView(port, network?.dnsDomain), BINDING, portTarget(port, network));
}

function fixedIps(body: BodyReader): FixedIpRequest[] | undefined {
  const list = body.list<Record<string, unknown>>('fixed_ips');
  return list?.map((entry) => {
    if (typeof entry !== 'object' || entry === null) throw badInput('fixed_ips', `'${JSON.stringify(entry)}' is not a dictionary`);
    const unknown = Object.keys(entry).filter((k) => k !== 'subnet_id' && k !== 'ip_address');
    if (unknown.length > 0) throw badInput('fixed_ips', `Unrecognized attribute(s) '${unknown.join(', ')}'`);
    if (entry.subnet_id !== undefined && typeof entry.subnet_id !== 'string') throw badInput('fixed_ips', `'${JSON.stringify(entry.subnet_id)}' is not a valid UUID`);
    if (entry.ip_address !== undefined && !parseAddress(entry.ip_address)) throw badInput('fixed_ips', `'${String(entry.ip_address)}' is not a valid IP address`);
    return { subnetId: entry.subnet_id as string | undefined, ipAddress: entry.ip_address as string | undefined };
  });
}

function common(body: BodyReader): PortUpdate {
  const pairs = body.list<Record<string, unknown>>('allowed_address_pairs');
  const options = body.list<Record<string, unknown>>('extra_dhcp_opts');
  const groups = body.stringList('security_groups');
  return {
    name: body.string('name'), description: body.string('description'), adminStateUp: body.boolean('admin_state_up'),
    macAddress: body.string('mac_address'), fixedIps: fixedIps(body), deviceId: body.string('device_id'), deviceOwner: body.string('device_owner'),
    securityGroups: groups, portSecurityEnabled: body.boolean('port_security_enabled'),
    allowedAddressPairs: pairs?.map((p) => {
      if (typeof p !== 'object' || p === null || p.ip_address === undefined) throw badInput('allowed_address_pairs', `'${JSON.stringify(p)}' must have an ip_address`);
      return { ipAddress: p.ip_address as string, macAddress: p.mac_address as string | undefined };
    }),
    extraDhcpOpts: options?.map((o) => ({ optName: o?.opt_name as string, optValue: o?.opt_value as string, ipVersion: o?.ip_version === undefined ? undefined : Number(o.ip_version) })),
    hostId: body.string('binding:host_id'), vnicType: body.string('binding:vnic_type'), profile: body.object('binding:profile'),
    dnsName: body.string('dns_name'),
  };
}

/** `?fixed_ips=ip_address=10.0.0.5&fixed_ips=subnet_id=X`: every condition must hold on one of the port's fixed IPs. */
function matchesFixedIps(request: FastifyRequest, port: Port): boolean {
  const raw = (request.query as Record<string, string | string[] | undefined>).fixed_ips;
  const wanted = raw === undefined ? [] : Array.isArray(raw) ? raw : [raw];
  return wanted.every((condition) => {
    const [key, ...rest] = condition.split('=');
    const value = rest.join('=');
    if (key === 'ip_address') {
      const address = parseAddress(value);
      const ip = address ? formatAddress(address.version, address.value) : value;
      return port.fixedIps.some((f) => f.ipAddress === ip);
    }
    if (key === 'ip_address_substr') return port.fixedIps.some((f) => f.ipAddress.includes(value));
    if (key === 'subnet_id') return port.fixedIps.some((f) => f.subnetId === value);
    return true;
  });
}

/** Picking an address is for the network's owner; picking a subnet also for users of a shared network (Neutron's fixed_ips:* rules). */
function authorizeFixedIps(deps: NetworkApiDeps, request: FastifyRequest, action: string, body: BodyReader, target: Record<string, unknown>): void {
  const entries = body.list<Record<string, unknown>>('fixed_ips') ?? [];
  if (entries.some((e) => e?.ip_address !== undefined)) authorize(deps, request, `${action}:fixed_ips:ip_address`, target);
  if (entries.some((e) => e?.subnet_id !== undefined)) authorize(deps, request, `${action}:fixed_ips:subnet_id`, target);
}

function register(app: FastifyInstance, deps: NetworkApiDeps): void {
  const { ports, networks } = deps.network;

  app.get('/v2.0/ports', async (request) => {
    const query = request.query as Record<string, string | undefined>;
    const filter = typeof query.device_id === 'string' ? { deviceId: query.device_id } : typeof query.network_id === 'string' ? { networkId: query.network_id } : {};
    const all = await ports.list(filter);
    const byId = new Map((await networks.list()).map((n) => [n.id, n]));
    const visible = all.filter((p) => allowed(deps, request, 'get_port', portTarget(p, byId.get(p.networkId))) && matchesFixedIps(request, p));
    return listView(request, deps, 'ports', visible.map((p) => render(deps, request, p, byId.get(p.networkId))), { handled: ['fixed_ips'] });
  });

  /** Checks one port body (policy included) and returns what to create and its network. */
  const prepare = async (request: FastifyRequest, raw: Record<string, unknown>) => {
    const body = new BodyReader(raw).only([...WRITABLE, 'network_id', 'tenant_id', 'project_id', 'tags']);
    const networkId = body.string('network_id');
    if (networkId === undefined) throw neutronError(new BadRequest("Failed to parse request. Required attribute 'network_id' not specified"), 'HTTPBadRequest');
    const network = await visibleNetwork(deps, request, networkId);
    const projectId = owningProject(request, body);
    const target = portTarget({ projectId, deviceOwner: body.string('device_owner') }, network);
    authorize(deps, request, 'create_port', target);
    authorizeAttributes(deps, request, 'create_port', body, NETWORK_OWNER_ATTRIBUTES, target);
    if ((body.string('device_owner') ?? '').startsWith('network:')) authorize(deps, request, 'create_port:device_owner', target);
    authorizeFixedIps(deps, request, 'create_port', body, target);
    const create: PortCreate = { ...common(body), networkId: network.id, projectId, tags: body.stringList('tags') };
    return { create, network };
  };

  app.post('/v2.0/ports', async (request, reply) => {
    const bulk = (request.body as { ports?: unknown } | null)?.ports;
    if (bulk === undefined) {
      const { create, network } = await prepare(request, resourceBody(request.body, 'port'));
      const port = await ports.create(callerOf(request), create);
      return reply.code(201).send({ port: render(deps, request, port, network) });
    }
    // Bulk create ({"ports": [...]}): all or none, as Neutron's emulated bulk does it (made ones are deleted on a failure).
    if (!Array.isArray(bulk) || bulk.some((p) => typeof p !== 'object' || p === null || Array.isArray(p))) throw neutronError(new BadRequest('Resource body required'), 'HTTPBadRequest');
    const prepared = [];
    for (const raw of bulk as Record<string, unknown>[]) prepared.push(await prepare(request, raw));
    const made: { port: Port; network: Network }[] = [];
    try {
      for (const { create, network } of prepared) made.push({ port: await ports.create(callerOf(request), create), network });
    } catch (err) {
      for (const { port } of made) await ports.delete(null, port.id).catch(() => undefined);
      throw err;
    }
    return reply.code(201).send({ ports: made.map(({ port, network }) => render(deps, request, port, network)) });
  });

  app.get('/v2.0/ports/:id', async (request) => {
    const { port, network } = await visiblePort(deps, request, (request.params as { id: string }).id);
    return { port: selectFields(request, render(deps, request, port, network)) };
  });

  app.put('/v2.0/ports/:id', async (request) => {
    const { port, network } = await visiblePort(deps, request, (request.params as { id: string }).id);
    const body = new BodyReader(resourceBody(request.body, 'port'))
      .notUpdatable(['id', 'network_id', 'tenant_id', 'project_id', 'status', 'binding:vif_type', 'binding:vif_details'])
      .only(WRITABLE);
    const target = portTarget(port, network);
    authorize(deps, request, 'update_port', target);
    authorizeAttributes(deps, request, 'update_port', body, [...NETWORK_OWNER_ATTRIBUTES, 'binding:vnic_type'], target);
    if ((body.string('device_owner') ?? '').startsWith('network:')) authorize(deps, request, 'update_port:device_owner', target);
    authorizeFixedIps(deps, request, 'update_port', body, target);
    const updated = await ports.update(callerOf(request), port.id, common(body));
    return { port: render(deps, request, updated, network) };
  });

  app.delete('/v2.0/ports/:id', async (request, reply) => {
    const { port, network } = await visiblePort(deps, request, (request.params as { id: string }).id);
    authorize(deps, request, 'delete_port', portTarget(port, network));
    await ports.delete(callerOf(request), port.id);
    return reply.code(204).send();
  });

  tagRoutes(app, deps, {
    collection: 'ports', resource: 'port', table: 'network_ports',
    target: async (request, id) => { const { port, network } = await visiblePort(deps, request, id); return portTarget(port, network); },
  });
}

const ADVSVC_OR_NETWORK_OWNER = 'rule:context_is_advsvc or rule:admin_or_network_owner';

export const portArea: NetworkApiArea = {
  routes: register,
  policy: {
    create_port: '',
    'create_port:device_owner': ADVSVC_OR_NETWORK_OWNER,
    'create_port:mac_address': ADVSVC_OR_NETWORK_OWNER,
    'create_port:fixed_ips:ip_address': ADVSVC_OR_NETWORK_OWNER,
    'create_port:fixed_ips:subnet_id': `${ADVSVC_OR_NETWORK_OWNER} or rule:shared`,
    'create_port:port_security_enabled': ADVSVC_OR_NETWORK_OWNER,
    'create_port:binding:host_id': 'rule:admin_only',
    'create_port:binding:profile': 'rule:admin_only',
    'create_port:allowed_address_pairs': 'rule:admin_or_network_owner',
    get_port: 'rule:context_is_advsvc or rule:admin_owner_or_network_owner',
    'get_port:binding:vif_type': 'rule:admin_only',
    'get_port:binding:vif_details': 'rule:admin_only',
    'get_port:binding:host_id': 'rule:admin_only',
    'get_port:binding:profile': 'rule:admin_only',
    update_port: 'rule:admin_or_owner or rule:context_is_advsvc',
    'update_port:device_owner': ADVSVC_OR_NETWORK_OWNER,
    'update_port:mac_address': 'rule:admin_only or rule:context_is_advsvc',
    'update_port:fixed_ips:ip_address': ADVSVC_OR_NETWORK_OWNER,
    'update_port:fixed_ips:subnet_id': `${ADVSVC_OR_NETWORK_OWNER} or rule:shared`,
    'update_port:port_security_enabled': ADVSVC_OR_NETWORK_OWNER,
    'update_port:binding:host_id': 'rule:admin_only',
    'update_port:binding:profile': 'rule:admin_only',
    'update_port:binding:vnic_type': 'rule:admin_or_owner or rule:context_is_advsvc',
    'update_port:allowed_address_pairs': 'rule:admin_or_network_owner',
    delete_port: 'rule:context_is_advsvc or rule:admin_owner_or_network_owner',
  },
  extensions: [
    { alias: 'binding', name: 'Port Binding', description: 'Expose port bindings of a virtual port to external application', updated: '2014-02-03T10:00:00-00:00' },
    { alias: 'port-security', name: 'Port Security', description: 'Provides port security', updated: '2012-07-23T10:00:00-00:00' },
    { alias: 'allowed-address-pairs', name: 'Allowed Address Pairs', description: 'Provides allowed address pairs', updated: '2013-07-23T10:00:00-00:00' },
    { alias: 'extra_dhcp_opt', name: 'Neutron Extra DHCP options', description: 'Extra options configuration for DHCP. For example PXE boot options to DHCP clients can be specified (e.g. tftp-server, server-ip-address, bootfile-name)', updated: '2013-03-17T12:00:00-00:00' },
  ],
};
