// /v2.0/floatingips (router's floating IPs, fip-port-details) and
// /v2.0/floatingips/{id}/port_forwardings (floating-ip-port-forwarding), and floating IP tags.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { BadRequest, NotFound } from '../../core/errors.js';
import { floatingIpNotFound, type FloatingIp, type ForwardingProtocol, type PortForwarding, type PortForwardingCreate } from '../floating-ips.js';
import type { Port } from '../ports.js';
import { parseAddress } from '../addresses.js';
import { allowed, authorize, callerOf, listView, resourceBody, selectFields, type NetworkApiArea, type NetworkApiDeps } from './common.js';
import { BodyReader, badInput, owningProject } from './body.js';
import { neutronError } from './errors.js';
import { visibleNetwork } from './networks.js';
import { tagRoutes } from './tags.js';

export function floatingIpView(fip: FloatingIp, port: Port | undefined): Record<string, unknown> {
  return {
    id: fip.id, tenant_id: fip.projectId, project_id: fip.projectId, description: fip.description,
    floating_network_id: fip.floatingNetworkId, floating_ip_address: fip.floatingIpAddress,
    router_id: fip.routerId, port_id: fip.portId, fixed_ip_address: fip.fixedIpAddress, status: fip.status,
    // fip-port-details: the associated port's summary.
    port_details: port ? {
      name: port.name, network_id: port.networkId, mac_address: port.macAddress, admin_state_up: port.adminStateUp,
      status: port.status, device_id: port.deviceId, device_owner: port.deviceOwner,
    } : null,
    tags: fip.tags, created_at: fip.createdAt, updated_at: fip.updatedAt, revision_number: fip.revisionNumber,
  };
}

function forwardingView(pf: PortForwarding): Record<string, unknown> {
  return {
    id: pf.id, protocol: pf.protocol, internal_ip_address: pf.internalIpAddress, internal_port: pf.internalPort,
    internal_port_id: pf.internalPortId, external_port: pf.externalPort, description: pf.description,
  };
}

const fipTarget = (fip: { projectId: string }) => ({ project_id: fip.projectId, tenant_id: fip.projectId });

async function visibleFloatingIp(deps: NetworkApiDeps, request: FastifyRequest, id: string): Promise<FloatingIp> {
  const fip = await deps.network.floatingIps.find(id);
  if (!fip || !allowed(deps, request, 'get_floatingip', fipTarget(fip))) throw floatingIpNotFound(id);
  return fip;
}

async function render(deps: NetworkApiDeps, fips: FloatingIp[]): Promise<Record<string, unknown>[]> {
  const portIds = fips.map((f) => f.portId).filter((id): id is string => !!id);
  const ports = new Map((portIds.length > 0 ? await deps.network.ports.list({ ids: portIds }) : []).map((p) => [p.id, p]));
  return fips.map((f) => floatingIpView(f, f.portId ? ports.get(f.portId) : undefined));
}

function optionalAddress(body: BodyReader, key: string): string | undefined {
  const value = body.string(key);
  if (value !== undefined && !parseAddress(value)) throw badInput(key, `'${value}' is not a valid IP address`);
  return value;
}

const PROTOCOLS: ForwardingProtocol[] = ['tcp', 'udp'];

function forwardingBody(raw: Record<string, unknown>, creating: boolean): Partial<PortForwardingCreate> {
  const body = new BodyReader(raw).only(['protocol', 'internal_ip_address', 'internal_port', 'internal_port_id', 'external_port', 'description']);
  const required = ['protocol', 'internal_port', 'internal_port_id', 'external_port'];
  if (creating) for (const key of required) if (!body.has(key)) throw neutronError(new BadRequest(`Failed to parse request. Required attribute '${key}' not specified`), 'HTTPBadRequest');
  const protocol = body.string('protocol');
  if (protocol !== undefined && !PROTOCOLS.includes(protocol as ForwardingProtocol)) throw badInput('protocol', `'${protocol}' is not in ['tcp', 'udp']`);
  const port = (key: string) => {
    const value = body.integer(key);
    if (value !== undefined && (value < 1 || value > 65535)) throw badInput(key, `'${value}' is not a valid port number (1 through 65535)`);
    return value;
  };
  return {
    protocol: protocol as ForwardingProtocol | undefined, internalIpAddress: optionalAddress(body, 'internal_ip_address'),
    internalPort: port('internal_port'), internalPortId: body.string('internal_port_id'), externalPort: port('external_port'),
    description: body.string('description'),
  };
}

function register(app: FastifyInstance, deps: NetworkApiDeps): void {
  const { floatingIps } = deps.network;

  app.get('/v2.0/floatingips', async (request) => {
    const visible = (await floatingIps.list()).filter((f) => allowed(deps, request, 'get_floatingip', fipTarget(f)));
    return listView(request, deps, 'floatingips', await render(deps, visible));
  });

  app.post('/v2.0/floatingips', async (request, reply) => {
    const body = new BodyReader(resourceBody(request.body, 'floatingip'))
      .only(['floating_network_id', 'floating_ip_address', 'subnet_id', 'port_id', 'fixed_ip_address', 'description', 'tenant_id', 'project_id', 'tags']);
    const projectId = owningProject(request, body);
    const target = { project_id: projectId, tenant_id: projectId };
    authorize(deps, request, 'create_floatingip', target);
    if (body.has('floating_ip_address')) authorize(deps, request, 'create_floatingip:floating_ip_address', target);
    const networkId = body.string('floating_network_id');
    if (networkId === undefined) throw neutronError(new BadRequest("Failed to parse request. Required attribute 'floating_network_id' not specified"), 'HTTPBadRequest');
    await visibleNetwork(deps, request, networkId);
    const portId = body.nullableString('port_id') ?? undefined;
    if (portId !== undefined) await visiblePort(deps, request, portId);
    const fip = await floatingIps.create(callerOf(request), {
      projectId, floatingNetworkId: networkId, floatingIpAddress: optionalAddress(body, 'floating_ip_address'),
      subnetId: body.string('subnet_id'), portId, fixedIpAddress: optionalAddress(body, 'fixed_ip_address'),
      description: body.string('description'), tags: body.stringList('tags'),
    });
    return reply.code(201).send({ floatingip: (await render(deps, [fip]))[0] });
  });

  app.get('/v2.0/floatingips/:id', async (request) => {
    const fip = await visibleFloatingIp(deps, request, (request.params as { id: string }).id);
    return { floatingip: selectFields(request, (await render(deps, [fip]))[0]) };
  });

  app.put('/v2.0/floatingips/:id', async (request) => {
    const fip = await visibleFloatingIp(deps, request, (request.params as { id: string }).id);
    const body = new BodyReader(resourceBody(request.body, 'floatingip'))
      .notUpdatable(['id', 'tenant_id', 'project_id', 'floating_network_id', 'floating_ip_address', 'status', 'router_id'])
      .only(['port_id', 'fixed_ip_address', 'description']);
    authorize(deps, request, 'update_floatingip', fipTarget(fip));
    const portId = body.nullableString('port_id');
    if (typeof portId === 'string') await visiblePort(deps, request, portId);
    const updated = await floatingIps.update(callerOf(request), fip.id, { portId, fixedIpAddress: optionalAddress(body, 'fixed_ip_address'), description: body.string('description') });
    return { floatingip: (await render(deps, [updated]))[0] };
  });

  app.delete('/v2.0/floatingips/:id', async (request, reply) => {
    const fip = await visibleFloatingIp(deps, request, (request.params as { id: string }).id);
    authorize(deps, request, 'delete_floatingip', fipTarget(fip));
    await floatingIps.delete(fip.id);
    return reply.code(204).send();
  });

  const base = '/v2.0/floatingips/:fip/port_forwardings';
  const parent = (request: FastifyRequest) => visibleFloatingIp(deps, request, (request.params as { fip: string }).fip);

  app.get(base, async (request) => {
    const fip = await parent(request);
    authorize(deps, request, 'get_floatingip_port_forwarding', fipTarget(fip));
    return listView(request, deps, 'port_forwardings', (await floatingIps.listForwardings(fip.id)).map(forwardingView));
  });

  app.post(base, async (request, reply) => {
    const fip = await parent(request);
    authorize(deps, request, 'create_floatingip_port_forwarding', fipTarget(fip));
    const asked = forwardingBody(resourceBody(request.body, 'port_forwarding'), true) as PortForwardingCreate;
    await visiblePort(deps, request, asked.internalPortId);
    const pf = await floatingIps.createForwarding(fip.id, asked);
    return reply.code(201).send({ port_forwarding: forwardingView(pf) });
  });

  app.get(`${base}/:id`, async (request) => {
    const fip = await parent(request);
    authorize(deps, request, 'get_floatingip_port_forwarding', fipTarget(fip));
    const pf = await floatingIps.getForwarding(fip.id, (request.params as { id: string }).id);
    return { port_forwarding: selectFields(request, forwardingView(pf)) };
  });

  app.put(`${base}/:id`, async (request) => {
    const fip = await parent(request);
    authorize(deps, request, 'update_floatingip_port_forwarding', fipTarget(fip));
    const changes = forwardingBody(resourceBody(request.body, 'port_forwarding'), false);
    if (changes.internalPortId !== undefined) await visiblePort(deps, request, changes.internalPortId);
    const pf = await floatingIps.updateForwarding(fip.id, (request.params as { id: string }).id, changes);
    return { port_forwarding: forwardingView(pf) };
  });

  app.delete(`${base}/:id`, async (request, reply) => {
    const fip = await parent(request);
    authorize(deps, request, 'delete_floatingip_port_forwarding', fipTarget(fip));
    await floatingIps.deleteForwarding(fip.id, (request.params as { id: string }).id);
    return reply.code(204).send();
  });

  tagRoutes(app, deps, {
    collection: 'floatingips', resource: 'floatingip', table: 'network_floating_ips',
    target: async (request, id) => fipTarget(await visibleFloatingIp(deps, request, id)),
  });

  /** The port if the caller may see it (get_port), else its 404. */
  async function visiblePort(_deps: NetworkApiDeps, request: FastifyRequest, id: string): Promise<Port> {
    const port = await deps.network.ports.find(id);
    const network = port ? await deps.network.networks.find(port.networkId) : undefined;
    const target = port ? { project_id: port.projectId, tenant_id: port.projectId, 'network:project_id': network?.projectId ?? '', 'network:tenant_id': network?.projectId ?? '' } : {};
    if (!port || !allowed(deps, request, 'get_port', target)) throw neutronError(new NotFound(`Port ${id} could not be found.`), 'PortNotFound');
    return port;
  }
}

const OWNER = 'rule:admin_or_owner';

export const floatingIpArea: NetworkApiArea = {
  routes: register,
  policy: {
    create_floatingip: 'rule:regular_user',
    'create_floatingip:floating_ip_address': 'rule:admin_only',
    get_floatingip: OWNER,
    update_floatingip: OWNER,
    delete_floatingip: OWNER,
    create_floatingip_port_forwarding: OWNER,
    get_floatingip_port_forwarding: OWNER,
    update_floatingip_port_forwarding: OWNER,
    delete_floatingip_port_forwarding: OWNER,
  },
  extensions: [
    { alias: 'fip-port-details', name: 'Floating IP Port Details Extension', description: 'Add port_details attribute to Floating IP resource', updated: '2018-04-09T10:00:00-00:00' },
    { alias: 'floating-ip-port-forwarding', name: 'Floating IP Port Forwarding', description: 'Provide a way to configure port forwarding rules for floating IPs', updated: '2018-06-25T10:00:00-00:00' },
  ],
};
