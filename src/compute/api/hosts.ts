// os-services and os-hypervisors (nova/api/openstack/compute/services.py, hypervisors.py).
// Ids are the records' uuids at every microversion: Nova shows integer ids before 2.53 and
// uuids from 2.53; Nubo has only uuids (docs/COMPATIBILITY.md).
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { BadRequest, NotFound, NuboError } from '../../core/errors.js';
import { atLeast } from '../../http/microversion.js';
import type { ComputeNode, NodeUsage, ServiceChanges, ServiceRecord } from '../hosts.js';
import { COMPUTE_BINARY } from '../rpc.js';
import { collectionLinks, limitAndMarker } from './collection-links.js';
import { authorize, type ComputeApiDeps } from './common.js';
import { isUuidLike, toBool, types, validateBody, validateQuery, type Schema } from './jsonschema.js';

export const hostsPolicy: Record<string, string> = {
  'os_compute_api:os-services:list': 'rule:context_is_admin',
  'os_compute_api:os-services:update': 'rule:context_is_admin',
  'os_compute_api:os-services:delete': 'rule:context_is_admin',
  'os_compute_api:os-hypervisors:list': 'rule:context_is_admin',
  'os_compute_api:os-hypervisors:list-detail': 'rule:context_is_admin',
  'os_compute_api:os-hypervisors:show': 'rule:context_is_admin',
  'os_compute_api:os-hypervisors:statistics': 'rule:context_is_admin',
  'os_compute_api:os-hypervisors:uptime': 'rule:context_is_admin',
  'os_compute_api:os-hypervisors:search': 'rule:context_is_admin',
  'os_compute_api:os-hypervisors:servers': 'rule:context_is_admin',
};

// ---- schemas (nova/api/openstack/compute/schemas/services.py, hypervisors.py) ----

const reason: Schema = { type: 'string', minLength: 1, maxLength: 255 };
const updateSchema = (withForcedDown: boolean): Schema => ({
  type: 'object',
  properties: {
    host: types.fqdn,
    binary: { type: 'string', minLength: 1, maxLength: 255 },
    disabled_reason: reason,
    ...(withForcedDown ? { forced_down: types.boolean } : {}),
  },
  required: ['host', 'binary'],
  additionalProperties: false,
});
const updateSchemaV253: Schema = {
  type: 'object',
  properties: { status: { type: 'string', enum: ['enabled', 'disabled'] }, disabled_reason: reason, forced_down: types.boolean },
  additionalProperties: false,
};
const servicesQuery: Record<string, Schema> = { host: { type: 'string' }, binary: { type: 'string' } };
const hypervisorsQueryV233: Record<string, Schema> = { limit: types.nonNegativeInteger, marker: { type: 'string' } };
const hypervisorsQueryV253: Record<string, Schema> = { ...hypervisorsQueryV233, hypervisor_hostname_pattern: types.fqdn, with_servers: types.boolean };

/** A 501, as Nova's common.raise_feature_not_supported answers. */
class NotImplemented extends NuboError {
  constructor(message: string) { super(501, 'Not Implemented', message); }
}

/** Nova renders service times as naive ISO datetimes with microseconds: 2012-10-29T13:42:02.000000 */
function serviceTime(iso: string | null): string | null {
  if (!iso) return null;
  const m = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d+))?Z?$/.exec(iso);
  return m ? `${m[1]}.${(m[2] ?? '').padEnd(6, '0').slice(0, 6)}` : iso;
}

export function hostRoutes(app: FastifyInstance, deps: ComputeApiDeps): void {
  deps.policy.register(hostsPolicy);
  const hosts = () => deps.compute.hosts;
  const allow = (request: FastifyRequest, rule: string) => authorize(deps, request, rule, {});
  /** Methods dropped by a microversion answer 404 from it on, as Nova's version routing does. */
  const belowVersion = (request: FastifyRequest, version: string) => {
    if (atLeast(request, version)) throw new NotFound('The resource could not be found.');
  };

  // ---- os-services ----

  function serviceView(request: FastifyRequest, s: ServiceRecord, zone: string): Record<string, unknown> {
    const view: Record<string, unknown> = {
      id: s.id,
      binary: s.binary,
      host: s.host,
      zone,
      status: s.disabled ? 'disabled' : 'enabled',
      state: hosts().isUp(s) ? 'up' : 'down',
      updated_at: serviceTime(s.updatedAt),
      disabled_reason: s.disabledReason,
    };
    if (atLeast(request, '2.11')) view.forced_down = s.forcedDown;
    return view;
  }

  app.get('/os-services', async (request) => {
    allow(request, 'os_compute_api:os-services:list');
    const params = validateQuery(request, servicesQuery, !atLeast(request, '2.75'));
    const list = await hosts().listServices({ host: params.host?.[0] || undefined, binary: params.binary?.[0] || undefined });
    const zones = await hosts().zonesOf(list);
    return { services: list.map((s) => serviceView(request, s, zones.get(s.id)!)) };
  });

  app.put<{ Params: { id: string } }>('/os-services/:id', async (request) => {
    const id = request.params.id;
    const body = request.body as Record<string, unknown> | undefined;
    if (!atLeast(request, '2.53')) {
      // Before 2.53 the path names an action and the body names the service by host and binary.
      allow(request, 'os_compute_api:os-services:update');
      validateBody(updateSchema(atLeast(request, '2.11')), body);
      const host = String(body!.host);
      const binary = String(body!.binary);
      if (id === 'enable') {
        await hosts().updateServiceByHostBinary(host, binary, { disabled: false });
        return { service: { host, binary, status: 'enabled' } };
      }
      if (id === 'disable' || id === 'disable-log-reason') {
        let disabledReason: string | null = null;
        if (id === 'disable-log-reason') {
          if (body!.disabled_reason === undefined) throw new BadRequest('Missing disabled reason field');
          disabledReason = String(body!.disabled_reason);
        }
        await hosts().updateServiceByHostBinary(host, binary, { disabled: true, disabledReason });
        return { service: { host, binary, status: 'disabled', ...(disabledReason ? { disabled_reason: disabledReason } : {}) } };
      }
      if (id === 'force-down' && atLeast(request, '2.11')) {
        if (body!.forced_down === undefined) throw new BadRequest('Missing forced_down field');
        const forcedDown = toBool(body!.forced_down);
        await hosts().updateServiceByHostBinary(host, binary, { forcedDown });
        return { service: { host, binary, forced_down: forcedDown } };
      }
      throw new NotFound('Unknown action');
    }
    if (!isUuidLike(id)) throw new BadRequest(`Invalid uuid ${id}`);
    allow(request, 'os_compute_api:os-services:update');
    validateBody(updateSchemaV253, body);
    const service = await hosts().getService(id);
    if (service.binary !== COMPUTE_BINARY) {
      throw new BadRequest(`Updating a ${service.binary} service is not supported. Only nova-compute services can be updated.`);
    }
    const changes: ServiceChanges = {};
    if (body!.status === 'enabled') {
      if (body!.disabled_reason) throw new BadRequest("Specifying 'disabled_reason' with status 'enabled' is invalid.");
      changes.disabled = false;
    } else if (body!.status === 'disabled') {
      changes.disabled = true;
      changes.disabledReason = body!.disabled_reason === undefined ? null : String(body!.disabled_reason);
    }
    if (body!.forced_down !== undefined) changes.forcedDown = toBool(body!.forced_down);
    if (changes.disabled === undefined && changes.forcedDown === undefined) {
      throw new BadRequest("No updates were requested. Fields 'status' or 'forced_down' should be specified.");
    }
    const updated = await hosts().updateService(id, changes);
    const zones = await hosts().zonesOf([updated]);
    return { service: serviceView(request, updated, zones.get(updated.id)!) };
  });

  app.delete<{ Params: { id: string } }>('/os-services/:id', async (request, reply) => {
    const id = request.params.id;
    allow(request, 'os_compute_api:os-services:delete');
    if (atLeast(request, '2.53') && !isUuidLike(id)) throw new BadRequest(`Invalid uuid ${id}`);
    try {
      await hosts().deleteService(id);
    } catch (err) {
      if (err instanceof NotFound) throw new NotFound(`Service ${id} not found.`);
      throw err;
    }
    reply.code(204);
    return null;
  });

  // ---- os-hypervisors ----

  function hypervisorView(request: FastifyRequest, node: ComputeNode, service: ServiceRecord, detail: false | NodeUsage,
    servers?: { name: string; uuid: string }[], withServers = false): Record<string, unknown> {
    const view: Record<string, unknown> = {
      id: node.id,
      hypervisor_hostname: node.hypervisorHostname,
      state: hosts().isUp(service) ? 'up' : 'down',
      status: service.disabled ? 'disabled' : 'enabled',
    };
    if (detail) {
      Object.assign(view, {
        vcpus: node.vcpus,
        memory_mb: node.memoryMb,
        local_gb: node.localGb,
        vcpus_used: detail.vcpusUsed,
        memory_mb_used: detail.memoryMbUsed,
        local_gb_used: detail.localGbUsed,
        hypervisor_type: node.hypervisorType,
        hypervisor_version: node.hypervisorVersion,
        free_ram_mb: detail.freeRamMb,
        free_disk_gb: detail.freeDiskGb,
        current_workload: detail.currentWorkload,
        running_vms: detail.runningVms,
        disk_available_least: detail.diskAvailableLeast,
        host_ip: node.hostIp,
        service: { id: service.id, host: node.host, disabled_reason: service.disabledReason },
        cpu_info: atLeast(request, '2.28') ? node.cpuInfo : JSON.stringify(node.cpuInfo),
      });
    }
    if (servers && servers.length) view.servers = servers.map((s) => ({ name: s.name, uuid: s.uuid }));
    else if (withServers && atLeast(request, '2.75')) view.servers = [];
    return view;
  }

  /** Nodes with their services (a node whose service is gone is left out, as Nova does), usage and servers as asked. */
  async function render(request: FastifyRequest, nodes: ComputeNode[], detail: boolean, withServers: boolean) {
    const services = await hosts().servicesOf(nodes);
    const kept = nodes.filter((n) => services.has(n.serviceId));
    const usage = detail ? await hosts().usageOf(kept) : undefined;
    const servers = withServers ? await hosts().instancesOf(kept) : undefined;
    return kept.map((n) => hypervisorView(request, n, services.get(n.serviceId)!, usage ? usage.get(n.id)! : false, servers?.get(n.id), withServers));
  }

  async function listHypervisors(request: FastifyRequest, detail: boolean) {
    allow(request, detail ? 'os_compute_api:os-hypervisors:list-detail' : 'os_compute_api:os-hypervisors:list');
    const v253 = atLeast(request, '2.53');
    const paged = atLeast(request, '2.33');
    const params = v253 ? validateQuery(request, hypervisorsQueryV253, false) : paged ? validateQuery(request, hypervisorsQueryV233, true) : {};
    const pattern = v253 ? params.hypervisor_hostname_pattern?.[0] : undefined;
    const withServers = v253 && params.with_servers !== undefined ? toBool(params.with_servers[0]) : false;
    const collection = detail ? 'os-hypervisors/detail' : 'os-hypervisors';
    if (pattern !== undefined) {
      if (params.limit !== undefined || params.marker !== undefined) {
        throw new BadRequest('Paging over hypervisors with the hypervisor_hostname_pattern query parameter is not supported.');
      }
      const nodes = await hosts().listNodes({ pattern });
      if (nodes.length === 0) throw new NotFound(`No hypervisor matching '${pattern}' could be found.`);
      return { hypervisors: await render(request, nodes, detail, withServers) };
    }
    let nodes = await hosts().listNodes();
    if (paged) {
      const { limit, marker } = limitAndMarker(params, deps.maxLimit);
      let start = 0;
      if (marker !== undefined) {
        start = nodes.findIndex((n) => n.id === marker) + 1;
        if (start === 0) throw new BadRequest(`marker [${marker}] not found`);
      }
      nodes = nodes.slice(start, start + limit);
    }
    const body: Record<string, unknown> = { hypervisors: await render(request, nodes, detail, withServers) };
    if (paged) {
      const links = collectionLinks(request, nodes.length, nodes[nodes.length - 1]?.id, collection, deps.maxLimit);
      if (links.length) body.hypervisors_links = links;
    }
    return body;
  }

  app.get('/os-hypervisors', (request) => listHypervisors(request, false));
  app.get('/os-hypervisors/detail', (request) => listHypervisors(request, true));

  app.get('/os-hypervisors/statistics', async (request) => {
    allow(request, 'os_compute_api:os-hypervisors:statistics');
    return { hypervisor_statistics: await hosts().statistics() };
  });

  /** The node an {id} names: a uuid from 2.53 (400 otherwise), 404 when none. */
  async function nodeById(request: FastifyRequest, id: string): Promise<ComputeNode> {
    if (atLeast(request, '2.53') && !isUuidLike(id)) throw new BadRequest(`Invalid uuid ${id}`);
    return hosts().getNode(id);
  }

  app.get<{ Params: { id: string } }>('/os-hypervisors/:id', async (request) => {
    allow(request, 'os_compute_api:os-hypervisors:show');
    const v253 = atLeast(request, '2.53');
    const params = v253 ? validateQuery(request, { with_servers: types.boolean }, false) : {};
    const withServers = params.with_servers !== undefined ? toBool(params.with_servers[0]) : false;
    const node = await nodeById(request, request.params.id);
    const [view] = await render(request, [node], true, withServers);
    if (!view) throw new NotFound(`Hypervisor with ID '${request.params.id}' could not be found.`);
    return { hypervisor: view };
  });

  app.get<{ Params: { id: string } }>('/os-hypervisors/:id/uptime', async (request) => {
    allow(request, 'os_compute_api:os-hypervisors:uptime');
    const node = await nodeById(request, request.params.id);
    const services = await hosts().servicesOf([node]);
    const service = services.get(node.serviceId);
    if (!service) throw new NotFound(`Hypervisor with ID '${request.params.id}' could not be found.`);
    if (!hosts().isUp(service)) throw new BadRequest(`Compute service of ${node.host} is unavailable at this time.`);
    const uptime = await hosts().hostUptime(node.host);
    // An agent that cannot tell: the feature is missing there, as for a Nova driver without get_host_uptime.
    if (uptime === null) throw new NotImplemented('The requested functionality is not supported.');
    return { hypervisor: { ...hypervisorView(request, node, service, false), uptime } };
  });

  app.get<{ Params: { id: string } }>('/os-hypervisors/:id/search', async (request) => {
    belowVersion(request, '2.53');
    allow(request, 'os_compute_api:os-hypervisors:search');
    const nodes = await hosts().listNodes({ pattern: request.params.id });
    const views = nodes.length ? await render(request, nodes, false, false) : [];
    if (views.length === 0) throw new NotFound(`No hypervisor matching '${request.params.id}' could be found.`);
    return { hypervisors: views };
  });

  app.get<{ Params: { id: string } }>('/os-hypervisors/:id/servers', async (request) => {
    belowVersion(request, '2.53');
    allow(request, 'os_compute_api:os-hypervisors:servers');
    const nodes = await hosts().listNodes({ pattern: request.params.id });
    const views = nodes.length ? await render(request, nodes, false, true) : [];
    if (views.length === 0) throw new NotFound(`No hypervisor matching '${request.params.id}' could be found.`);
    return { hypervisors: views };
  });
}
