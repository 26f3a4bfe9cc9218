// /servers: create, list (+detail) with Nova's filters, show, update, delete, metadata,
// tags, instance actions. Rendering follows the negotiated microversion.
import { createHash, randomBytes } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { BadRequest, Forbidden, NotFound } from '../../core/errors.js';
import { atLeast } from '../../http/microversion.js';
import { nextPageUrl, pageOf, parsePaging } from '../../http/paging.js';
import type { Instance, InstanceListFilters } from '../instances.js';
import { serverStatus, vmStatesForStatus } from '../instances.js';
import { checkTags, type CreateServerRequest } from '../servers.js';
import type { ServerNetworkView } from '../networking.js';
import { allowed, authorize, boolQuery, callerOf, novaTime, one, queryOf, resourceLinks, serviceUrl, type ComputeApiDeps, type Query } from './common.js';

const PROJECT_READER_OR_ADMIN = 'rule:project_reader_or_admin';
const PROJECT_MEMBER_OR_ADMIN = 'rule:project_member_or_admin';
const ADMIN = 'rule:admin_api';

export const serverPolicy: Record<string, string> = {
  'os_compute_api:servers:index': PROJECT_READER_OR_ADMIN,
  'os_compute_api:servers:detail': PROJECT_READER_OR_ADMIN,
  'os_compute_api:servers:index:get_all_tenants': ADMIN,
  'os_compute_api:servers:detail:get_all_tenants': ADMIN,
  'os_compute_api:servers:allow_all_filters': ADMIN,
  'os_compute_api:servers:show': PROJECT_READER_OR_ADMIN,
  'os_compute_api:servers:show:host_status': ADMIN,
  'os_compute_api:servers:create': PROJECT_MEMBER_OR_ADMIN,
  'os_compute_api:servers:create:forced_host': ADMIN,
  'os_compute_api:servers:create:requested_destination': ADMIN,
  'os_compute_api:servers:create:attach_volume': PROJECT_MEMBER_OR_ADMIN,
  'os_compute_api:servers:create:attach_network': PROJECT_MEMBER_OR_ADMIN,
  'os_compute_api:servers:update': PROJECT_MEMBER_OR_ADMIN,
  'os_compute_api:servers:delete': PROJECT_MEMBER_OR_ADMIN,
  'os_compute_api:os-extended-server-attributes': ADMIN,
  'os_compute_api:server-metadata:index': PROJECT_READER_OR_ADMIN,
  'os_compute_api:server-metadata:show': PROJECT_READER_OR_ADMIN,
  'os_compute_api:server-metadata:create': PROJECT_MEMBER_OR_ADMIN,
  'os_compute_api:server-metadata:update_all': PROJECT_MEMBER_OR_ADMIN,
  'os_compute_api:server-metadata:update': PROJECT_MEMBER_OR_ADMIN,
  'os_compute_api:server-metadata:delete': PROJECT_MEMBER_OR_ADMIN,
  'os_compute_api:os-server-tags:index': PROJECT_READER_OR_ADMIN,
  'os_compute_api:os-server-tags:show': PROJECT_READER_OR_ADMIN,
  'os_compute_api:os-server-tags:update': PROJECT_MEMBER_OR_ADMIN,
  'os_compute_api:os-server-tags:update_all': PROJECT_MEMBER_OR_ADMIN,
  'os_compute_api:os-server-tags:delete': PROJECT_MEMBER_OR_ADMIN,
  'os_compute_api:os-server-tags:delete_all': PROJECT_MEMBER_OR_ADMIN,
  'os_compute_api:os-instance-actions:list': PROJECT_READER_OR_ADMIN,
  'os_compute_api:os-instance-actions:show': PROJECT_READER_OR_ADMIN,
  'os_compute_api:os-instance-actions:events': ADMIN,
  'os_compute_api:os-instance-actions:events:details': ADMIN,
};

const metadataValue = { type: 'string', maxLength: 255 };
const metadataSchema = { type: 'object', patternProperties: { '^[a-zA-Z0-9-_:. ]{1,255}$': metadataValue }, additionalProperties: false };
const nameSchema = { type: 'string', minLength: 1, maxLength: 255, pattern: '^(?!\\s)[\\s\\S]*\\S$|^\\S$' };

const createSchema = {
  type: 'object',
  required: ['server'],
  properties: {
    server: {
      type: 'object',
      required: ['name', 'flavorRef'],
      properties: {
        name: nameSchema,
        description: { type: ['string', 'null'], maxLength: 255 },
        imageRef: { type: 'string' },
        flavorRef: { type: ['string', 'integer'], minLength: 1 },
        adminPass: { type: 'string' },
        metadata: metadataSchema,
        networks: {
          oneOf: [
            { type: 'string', enum: ['auto', 'none'] },
            { type: 'array', items: { type: 'object', properties: { uuid: { type: 'string' }, port: { type: ['string', 'null'] }, fixed_ip: { type: 'string' }, tag: { type: 'string' } }, additionalProperties: false } },
          ],
        },
        'OS-DCF:diskConfig': { type: 'string', enum: ['AUTO', 'MANUAL'] },
        accessIPv4: { type: 'string' },
        accessIPv6: { type: 'string' },
        personality: { type: 'array', items: { type: 'object', required: ['path', 'contents'], properties: { path: { type: 'string', maxLength: 255 }, contents: { type: 'string' } }, additionalProperties: false } },
        availability_zone: { type: 'string', minLength: 1, maxLength: 255 },
        key_name: { type: 'string', minLength: 1, maxLength: 255 },
        user_data: { type: 'string', maxLength: 65535 },
        config_drive: { type: ['boolean', 'string'] },
        min_count: { type: ['integer', 'string'], pattern: '^[0-9]+$' },
        max_count: { type: ['integer', 'string'], pattern: '^[0-9]+$' },
        return_reservation_id: { type: ['boolean', 'string'] },
        security_groups: { type: 'array', items: { type: 'object', properties: { name: { type: 'string', minLength: 1 } }, additionalProperties: false } },
        block_device_mapping_v2: { type: 'array', items: { type: 'object' } },
        block_device_mapping: { type: 'array', items: { type: 'object' } },
        tags: { type: 'array', items: { type: 'string' }, maxItems: 50 },
        host: { type: 'string', minLength: 1, maxLength: 255 },
        hypervisor_hostname: { type: 'string', minLength: 1, maxLength: 255 },
        trusted_image_certificates: { type: ['array', 'null'] },
      },
      additionalProperties: false,
    },
    'os:scheduler_hints': { type: 'object' },
    'OS-SCH-HNT:scheduler_hints': { type: 'object' },
  },
  additionalProperties: false,
};

const updateSchema = {
  type: 'object',
  required: ['server'],
  properties: {
    server: {
      type: 'object',
      properties: {
        name: nameSchema,
        description: { type: ['string', 'null'], maxLength: 255 },
        accessIPv4: { type: 'string' },
        accessIPv6: { type: 'string' },
        'OS-DCF:diskConfig': { type: 'string', enum: ['AUTO', 'MANUAL'] },
        hostname: { type: 'string', minLength: 1, maxLength: 63 },
      },
      additionalProperties: false,
    },
  },
  additionalProperties: false,
};

/** Nova's hostId: a hash of the project and the host, so a project sees co-location without learning host names. */
function hostId(instance: Instance): string {
  return instance.host ? createHash('sha224').update(instance.projectId + instance.host).digest('hex') : '';
}

function boolFromBody(value: unknown, field: string): boolean {
  if (typeof value === 'boolean') return value;
  const v = String(value).toLowerCase();
  if (['1', 't', 'true', 'on', 'y', 'yes'].includes(v)) return true;
  if (['0', 'f', 'false', 'off', 'n', 'no', ''].includes(v)) return false;
  throw new BadRequest(`Invalid input for field/attribute ${field}. Value: ${String(value)}.`);
}

/** Each API's server renderer (set up by serverRoutes), for actions that answer with the server (rebuild). */
const serverViews = new WeakMap<ComputeApiDeps, (request: FastifyRequest, instance: Instance) => Promise<Record<string, unknown>>>();

/** The detailed server body at the request's microversion, as GET /servers/{id} renders it. */
export function renderServer(deps: ComputeApiDeps, request: FastifyRequest, instance: Instance): Promise<Record<string, unknown>> {
  const view = serverViews.get(deps);
  if (!view) throw new Error('server routes are not set up');
  return view(request, instance);
}

export function serverRoutes(app: FastifyInstance, deps: ComputeApiDeps): void {
  deps.policy.register(serverPolicy);
  const servers = deps.compute.servers;

  /** The detailed body of one server at the request's microversion. */
  function detailView(request: FastifyRequest, instance: Instance, hostStatus: Map<string, string>, networks: Map<string, ServerNetworkView>) {
    const net = networks.get(instance.id);
    const admin = allowed(deps, request, 'os_compute_api:os-extended-server-attributes', { project_id: instance.projectId });
    const status = serverStatus(instance.vmState, instance.taskState);
    const base = serviceUrl(request);
    const flavor = atLeast(request, '2.47')
      ? {
        vcpus: instance.flavor.vcpus, ram: instance.flavor.memoryMb, disk: instance.flavor.rootGb, ephemeral: instance.flavor.ephemeralGb,
        swap: instance.flavor.swapMb, original_name: instance.flavor.name, extra_specs: instance.flavor.extraSpecs,
      }
      : { id: instance.flavorId, links: [{ rel: 'bookmark', href: `${base}/flavors/${instance.flavorId}` }] };
    const body: Record<string, unknown> = {
      id: instance.id,
      name: instance.name,
      status,
      tenant_id: instance.projectId,
      user_id: instance.userId,
      metadata: instance.metadata,
      hostId: hostId(instance),
      image: instance.imageRef ? { id: instance.imageRef, links: [{ rel: 'bookmark', href: `${base}/images/${instance.imageRef}` }] } : '',
      flavor,
      created: novaTime(instance.createdAt),
      updated: novaTime(instance.updatedAt),
      addresses: net?.addresses ?? {},
      accessIPv4: instance.accessIpV4 ?? '',
      accessIPv6: instance.accessIpV6 ?? '',
      links: resourceLinks(request, 'servers', instance.id),
      'OS-DCF:diskConfig': 'MANUAL',
      'OS-EXT-AZ:availability_zone': instance.availabilityZone ?? '',
      config_drive: instance.configDrive ? 'True' : '',
      key_name: instance.keyName,
      'OS-SRV-USG:launched_at': instance.launchedAt ? instance.launchedAt.replace(/Z$/, '').padEnd(26, '0') : null,
      'OS-SRV-USG:terminated_at': instance.terminatedAt ? instance.terminatedAt.replace(/Z$/, '').padEnd(26, '0') : null,
      'OS-EXT-STS:task_state': instance.taskState,
      'OS-EXT-STS:vm_state': instance.vmState,
      'OS-EXT-STS:power_state': instance.powerState,
      'os-extended-volumes:volumes_attached': [],
      // From the ports' groups once it has ports (Nova asks Neutron); before, what the create asked for.
      security_groups: (net && net.ports.length > 0 ? net.securityGroups : instance.request.securityGroups).map((name) => ({ name })),
    };
    if (['ACTIVE', 'BUILD', 'REBUILD', 'RESIZE', 'VERIFY_RESIZE', 'MIGRATING'].includes(status)) body.progress = instance.progress;
    if (admin) {
      body['OS-EXT-SRV-ATTR:host'] = instance.host;
      body['OS-EXT-SRV-ATTR:hypervisor_hostname'] = instance.node;
      body['OS-EXT-SRV-ATTR:instance_name'] = `instance-${instance.id.slice(0, 8)}`;
      if (atLeast(request, '2.3')) {
        Object.assign(body, {
          'OS-EXT-SRV-ATTR:reservation_id': instance.reservationId,
          'OS-EXT-SRV-ATTR:launch_index': instance.launchIndex,
          'OS-EXT-SRV-ATTR:hostname': instance.hostname,
          'OS-EXT-SRV-ATTR:kernel_id': '',
          'OS-EXT-SRV-ATTR:ramdisk_id': '',
          'OS-EXT-SRV-ATTR:root_device_name': '/dev/vda',
          'OS-EXT-SRV-ATTR:user_data': instance.userData,
        });
      }
    }
    if (atLeast(request, '2.9')) body.locked = instance.locked;
    if (atLeast(request, '2.16') && allowed(deps, request, 'os_compute_api:servers:show:host_status', { project_id: instance.projectId })) {
      body.host_status = instance.host ? (hostStatus.get(instance.host) ?? 'UNKNOWN') : '';
    }
    if (atLeast(request, '2.19')) body.description = instance.description;
    if (atLeast(request, '2.26')) body.tags = instance.tags;
    if (atLeast(request, '2.63')) body.trusted_image_certificates = null;
    if (atLeast(request, '2.73')) body.locked_reason = instance.lockedReason;
    if (instance.fault && (status === 'ERROR' || status === 'DELETED')) {
      body.fault = {
        code: instance.fault.code,
        created: novaTime(instance.fault.created),
        message: instance.fault.message,
        ...(admin && instance.fault.details ? { details: instance.fault.details } : {}),
      };
    }
    return body;
  }

  /** host_status (UP, DOWN, MAINTENANCE, UNKNOWN) of the hosts of the servers about to be rendered. */
  async function loadHostStatus(request: FastifyRequest, instances: Instance[]): Promise<Map<string, string>> {
    const statuses = new Map<string, string>();
    if (!atLeast(request, '2.16')) return statuses;
    const hosts = [...new Set(instances.map((i) => i.host).filter((h): h is string => !!h))];
    for (const host of hosts) statuses.set(host, await deps.compute.hosts.hostStatus(host));
    return statuses;
  }

  serverViews.set(deps, async (request, instance) => detailView(request, instance, await loadHostStatus(request, [instance]), await deps.compute.networking.views([instance.id])));

  async function serverOf(request: FastifyRequest, id: string, action: string): Promise<Instance> {
    const caller = callerOf(request);
    const instance = await servers.get(caller, id).catch((err) => {
      // Nova checks the policy before it reveals whether the server exists.
      if (err instanceof NotFound) authorize(deps, request, action);
      throw err;
    });
    authorize(deps, request, action, { project_id: instance.projectId, user_id: instance.userId });
    return instance;
  }

  app.post('/servers', { schema: { body: createSchema } }, async (request, reply) => {
    authorize(deps, request, 'os_compute_api:servers:create');
    const caller = callerOf(request);
    const body = request.body as any;
    const s = body.server;
    const v237 = atLeast(request, '2.37');
    if (v237 && s.networks === undefined) throw new BadRequest("Invalid input for field/attribute server. 'networks' is a required property");
    if (!v237 && typeof s.networks === 'string') throw new BadRequest(`Invalid input for field/attribute networks. Value: ${s.networks}. '${s.networks}' is not of type 'array'`);
    if (s.description !== undefined && !atLeast(request, '2.19')) throw new BadRequest("Invalid input for field/attribute server. Additional properties are not allowed ('description' was unexpected)");
    if (s.tags !== undefined && !atLeast(request, '2.52')) throw new BadRequest("Invalid input for field/attribute server. Additional properties are not allowed ('tags' was unexpected)");
    if (s.personality !== undefined && atLeast(request, '2.57')) throw new BadRequest("Invalid input for field/attribute server. Additional properties are not allowed ('personality' was unexpected)");
    if ((s.host !== undefined || s.hypervisor_hostname !== undefined) && !atLeast(request, '2.74')) {
      throw new BadRequest(`Invalid input for field/attribute server. Additional properties are not allowed ('${s.host !== undefined ? 'host' : 'hypervisor_hostname'}' was unexpected)`);
    }
    // Device tags on networks: 2.32, then again from 2.42 (Nova dropped them in between).
    if (Array.isArray(s.networks) && s.networks.some((n: { tag?: string }) => n.tag !== undefined) && !(atLeast(request, '2.42') || (atLeast(request, '2.32') && !atLeast(request, '2.33')))) {
      throw new BadRequest("Invalid input for field/attribute networks. Additional properties are not allowed ('tag' was unexpected)");
    }
    if (s.tags) checkTags(s.tags);
    if (s.user_data !== undefined && !/^[A-Za-z0-9+/]*={0,2}$/.test(s.user_data.replace(/\s/g, ''))) {
      throw new BadRequest('User data needs to be valid base 64.');
    }
    const minCount = s.min_count === undefined ? 1 : Number(s.min_count);
    const maxCount = s.max_count === undefined ? minCount : Number(s.max_count);
    if (minCount < 1) throw new BadRequest(`Invalid input for field/attribute min_count. Value: ${s.min_count}. ${s.min_count} is less than the minimum of 1`);
    if (maxCount < 1) throw new BadRequest(`Invalid input for field/attribute max_count. Value: ${s.max_count}. ${s.max_count} is less than the minimum of 1`);
    if (minCount > maxCount) throw new BadRequest('min_count must be <= max_count');

    // availability_zone may carry an admin's forced host: "zone", "zone:host", "zone:host:node", ":host".
    let zone: string | undefined = s.availability_zone;
    let host: string | undefined = s.host;
    let node: string | undefined = s.hypervisor_hostname;
    if (zone !== undefined && zone.includes(':')) {
      const [z, h, n] = zone.split(':');
      authorize(deps, request, 'os_compute_api:servers:create:forced_host');
      zone = z || undefined;
      host = h || undefined;
      node = n || undefined;
    }
    if (s.host !== undefined || s.hypervisor_hostname !== undefined) authorize(deps, request, 'os_compute_api:servers:create:requested_destination');

    const hints = (body['os:scheduler_hints'] ?? body['OS-SCH-HNT:scheduler_hints'] ?? {}) as Record<string, string | string[]>;
    const create: CreateServerRequest = {
      name: s.name,
      imageRef: s.imageRef || undefined,
      flavorRef: String(s.flavorRef),
      keyName: s.key_name,
      metadata: s.metadata,
      userData: s.user_data,
      personality: s.personality,
      availabilityZone: zone,
      host,
      node,
      networks: s.networks,
      securityGroups: s.security_groups?.map((g: { name: string }) => g.name),
      blockDeviceMappings: s.block_device_mapping_v2,
      configDrive: s.config_drive === undefined ? undefined : boolFromBody(s.config_drive, 'config_drive'),
      minCount,
      maxCount,
      accessIpV4: s.accessIPv4,
      accessIpV6: s.accessIPv6,
      adminPass: s.adminPass ?? (deps.compute.enablePasswordGeneration ? randomBytes(9).toString('base64url').slice(0, 12) : undefined),
      description: s.description,
      tags: s.tags,
      schedulerHints: hints,
    };
    const { instances, reservationId } = await servers.create(caller, create);
    reply.status(202);
    if (s.return_reservation_id !== undefined && boolFromBody(s.return_reservation_id, 'return_reservation_id')) return { reservation_id: reservationId };
    const first = instances[0];
    reply.header('Location', `${serviceUrl(request)}/v2.1/servers/${first.id}`);
    return {
      server: {
        id: first.id,
        links: resourceLinks(request, 'servers', first.id),
        'OS-DCF:diskConfig': 'MANUAL',
        security_groups: first.request.securityGroups.map((name) => ({ name })),
        ...(create.adminPass !== undefined ? { adminPass: create.adminPass } : {}),
      },
    };
  });

  async function listServers(request: FastifyRequest, detail: boolean) {
    const action = detail ? 'os_compute_api:servers:detail' : 'os_compute_api:servers:index';
    authorize(deps, request, action);
    const caller = callerOf(request);
    const query = queryOf(request);
    const allFilters = allowed(deps, request, 'os_compute_api:servers:allow_all_filters');
    const allTenants = boolQuery(query, 'all_tenants') ?? false;
    if (allTenants) authorize(deps, request, `${action}:get_all_tenants`);
    const filters: InstanceListFilters = {};
    const projectFilter = one(query, 'project_id') ?? one(query, 'tenant_id');
    if (allTenants && allFilters) filters.projectId = projectFilter;
    else filters.projectId = allFilters && projectFilter ? projectFilter : caller.projectId;
    const statusParam = one(query, 'status');
    if (statusParam !== undefined) {
      const states = vmStatesForStatus(statusParam);
      // Nova: an unknown status matches nothing for users and is an error for admins.
      if (!states) {
        if (!allFilters) return { servers: [] };
        throw new BadRequest('Invalid status value');
      }
      filters.vmStates = states;
      if (statusParam.toUpperCase() === 'DELETED') filters.includeDeleted = true;
    }
    const changesSince = one(query, 'changes-since');
    const changesBefore = one(query, 'changes-before');
    for (const [name, value] of [['changes-since', changesSince], ['changes-before', changesBefore]] as const) {
      if (value !== undefined && Number.isNaN(Date.parse(value))) throw new BadRequest(`Invalid input for query parameters ${name}. Value: ${value}. '${value}' is not a 'date-time'`);
    }
    if (changesBefore !== undefined && !atLeast(request, '2.66')) throw new BadRequest('Invalid filter field: changes-before.');
    if (changesSince !== undefined) { filters.changesSince = new Date(changesSince).toISOString(); filters.includeDeleted = true; }
    if (changesBefore !== undefined) { filters.changesBefore = new Date(changesBefore).toISOString(); filters.includeDeleted = true; }
    if (changesSince && changesBefore && filters.changesSince! > filters.changesBefore!) {
      throw new BadRequest(`The value of changes-since must be less than or equal to changes-before.`);
    }
    if (allFilters && boolQuery(query, 'deleted')) filters.onlyDeleted = true;
    if (allFilters) {
      if (one(query, 'host') !== undefined) filters.host = one(query, 'host');
      if (one(query, 'node') !== undefined) filters.node = one(query, 'node');
      if (one(query, 'user_id') !== undefined) filters.userId = one(query, 'user_id');
      if (one(query, 'task_state') !== undefined) filters.taskState = one(query, 'task_state');
    }
    if (one(query, 'reservation_id') !== undefined) filters.reservationId = one(query, 'reservation_id');
    if (one(query, 'flavor') !== undefined) filters.flavorId = one(query, 'flavor');
    if (one(query, 'image') !== undefined) filters.imageRef = one(query, 'image')!.replace(/^.*\//, '');
    if (one(query, 'availability_zone') !== undefined) filters.availabilityZone = one(query, 'availability_zone');
    if (atLeast(request, '2.73') && one(query, 'locked') !== undefined) filters.lockedOnly = boolQuery(query, 'locked');
    const uuid = one(query, 'uuid');
    if (uuid !== undefined) filters.ids = [uuid];

    const sort = parseSort(query, allFilters);
    let instances = await servers.list(filters, sort);
    const name = one(query, 'name');
    if (name !== undefined) {
      let pattern: RegExp | undefined;
      try { pattern = new RegExp(name); } catch { pattern = undefined; }
      instances = instances.filter((i) => (pattern ? pattern.test(i.name) : i.name.includes(name)));
    }
    if (atLeast(request, '2.26')) instances = filterByTags(instances, query);
    if (one(query, 'key_name') !== undefined && allFilters) instances = instances.filter((i) => i.keyName === one(query, 'key_name'));
    if (one(query, 'description') !== undefined && atLeast(request, '2.83')) instances = instances.filter((i) => (i.description ?? '').includes(one(query, 'description')!));

    const page = pageOf(instances, (i) => i.id, parsePaging(query as Record<string, unknown>, deps.maxLimit));
    const statuses = detail ? await loadHostStatus(request, page.items) : new Map<string, string>();
    const networks = detail ? await deps.compute.networking.views(page.items.map((i) => i.id)) : new Map<string, ServerNetworkView>();
    const body: Record<string, unknown> = {
      servers: page.items.map((i) => (detail ? detailView(request, i, statuses, networks) : { id: i.id, name: i.name, links: resourceLinks(request, 'servers', i.id) })),
    };
    if (page.next) body.servers_links = [{ rel: 'next', href: nextPageUrl(`${serviceUrl(request)}/v2.1/servers${detail ? '/detail' : ''}?${new URLSearchParams(query as Record<string, string>).toString()}`, page.next) }];
    return body;
  }

  app.get('/servers', async (request) => listServers(request, false));
  app.get('/servers/detail', async (request) => listServers(request, true));

  app.get('/servers/:id', async (request) => {
    const instance = await serverOf(request, (request.params as { id: string }).id, 'os_compute_api:servers:show');
    return { server: detailView(request, instance, await loadHostStatus(request, [instance]), await deps.compute.networking.views([instance.id])) };
  });

  app.put('/servers/:id', { schema: { body: updateSchema } }, async (request) => {
    const { id } = request.params as { id: string };
    const s = (request.body as any).server;
    if (s.description !== undefined && !atLeast(request, '2.19')) throw new BadRequest("Invalid input for field/attribute server. Additional properties are not allowed ('description' was unexpected)");
    if (s.hostname !== undefined && !atLeast(request, '2.90')) throw new BadRequest("Invalid input for field/attribute server. Additional properties are not allowed ('hostname' was unexpected)");
    await serverOf(request, id, 'os_compute_api:servers:update');
    const instance = await servers.update(callerOf(request), id, { name: s.name, description: s.description, accessIpV4: s.accessIPv4, accessIpV6: s.accessIPv6 });
    return { server: detailView(request, instance, await loadHostStatus(request, [instance]), await deps.compute.networking.views([instance.id])) };
  });

  app.delete('/servers/:id', async (request, reply) => {
    const { id } = request.params as { id: string };
    await serverOf(request, id, 'os_compute_api:servers:delete');
    await deps.compute.softDeletes.delete(callerOf(request), id);
    reply.status(204).send();
  });

  // Server metadata.
  const metadataBody = { type: 'object', required: ['metadata'], properties: { metadata: metadataSchema }, additionalProperties: false };
  const metaItemBody = { type: 'object', required: ['meta'], properties: { meta: { ...metadataSchema, minProperties: 1, maxProperties: 1 } }, additionalProperties: false };
  app.get('/servers/:id/metadata', async (request) => {
    const instance = await serverOf(request, (request.params as { id: string }).id, 'os_compute_api:server-metadata:index');
    return { metadata: instance.metadata };
  });
  app.post('/servers/:id/metadata', { schema: { body: metadataBody } }, async (request) => {
    const { id } = request.params as { id: string };
    await serverOf(request, id, 'os_compute_api:server-metadata:create');
    return { metadata: await servers.setMetadata(callerOf(request), id, (request.body as any).metadata, false) };
  });
  app.put('/servers/:id/metadata', { schema: { body: metadataBody } }, async (request) => {
    const { id } = request.params as { id: string };
    await serverOf(request, id, 'os_compute_api:server-metadata:update_all');
    return { metadata: await servers.setMetadata(callerOf(request), id, (request.body as any).metadata, true) };
  });
  app.get('/servers/:id/metadata/:key', async (request) => {
    const { id, key } = request.params as { id: string; key: string };
    const instance = await serverOf(request, id, 'os_compute_api:server-metadata:show');
    if (!(key in instance.metadata)) throw new NotFound('Metadata item was not found');
    return { meta: { [key]: instance.metadata[key] } };
  });
  app.put('/servers/:id/metadata/:key', { schema: { body: metaItemBody } }, async (request) => {
    const { id, key } = request.params as { id: string; key: string };
    const meta = (request.body as any).meta as Record<string, string>;
    if (!(key in meta)) throw new BadRequest('Request body and URI mismatch');
    await serverOf(request, id, 'os_compute_api:server-metadata:update');
    await servers.setMetadata(callerOf(request), id, { [key]: meta[key] }, false);
    return { meta: { [key]: meta[key] } };
  });
  app.delete('/servers/:id/metadata/:key', async (request, reply) => {
    const { id, key } = request.params as { id: string; key: string };
    await serverOf(request, id, 'os_compute_api:server-metadata:delete');
    await servers.deleteMetadataItem(callerOf(request), id, key);
    reply.status(204).send();
  });

  // Server tags (2.26+).
  const requireTags = (request: FastifyRequest) => {
    if (!atLeast(request, '2.26')) throw new NotFound('The resource could not be found.');
  };
  app.get('/servers/:id/tags', async (request) => {
    requireTags(request);
    const instance = await serverOf(request, (request.params as { id: string }).id, 'os_compute_api:os-server-tags:index');
    return { tags: instance.tags };
  });
  app.put('/servers/:id/tags', { schema: { body: { type: 'object', required: ['tags'], properties: { tags: { type: 'array', items: { type: 'string' } } }, additionalProperties: false } } }, async (request) => {
    requireTags(request);
    const { id } = request.params as { id: string };
    await serverOf(request, id, 'os_compute_api:os-server-tags:update_all');
    return { tags: await servers.setTags(callerOf(request), id, (request.body as any).tags) };
  });
  app.delete('/servers/:id/tags', async (request, reply) => {
    requireTags(request);
    const { id } = request.params as { id: string };
    await serverOf(request, id, 'os_compute_api:os-server-tags:delete_all');
    await servers.setTags(callerOf(request), id, []);
    reply.status(204).send();
  });
  app.get('/servers/:id/tags/:tag', async (request, reply) => {
    requireTags(request);
    const { id, tag } = request.params as { id: string; tag: string };
    const instance = await serverOf(request, id, 'os_compute_api:os-server-tags:show');
    if (!instance.tags.includes(tag)) throw new NotFound(`Tag ${tag} could not be found.`);
    reply.status(204).send();
  });
  app.put('/servers/:id/tags/:tag', async (request, reply) => {
    requireTags(request);
    const { id, tag } = request.params as { id: string; tag: string };
    await serverOf(request, id, 'os_compute_api:os-server-tags:update');
    const added = await servers.addTag(callerOf(request), id, tag);
    reply.header('Location', `${serviceUrl(request)}/v2.1/servers/${id}/tags/${encodeURIComponent(tag)}`);
    reply.status(added ? 201 : 204).send();
  });
  app.delete('/servers/:id/tags/:tag', async (request, reply) => {
    requireTags(request);
    const { id, tag } = request.params as { id: string; tag: string };
    await serverOf(request, id, 'os_compute_api:os-server-tags:delete');
    await servers.removeTag(callerOf(request), id, tag);
    reply.status(204).send();
  });

  // Instance actions and their events.
  app.get('/servers/:id/os-instance-actions', async (request) => {
    const { id } = request.params as { id: string };
    const query = queryOf(request);
    // Deleted servers keep their action history (Nova reads it with read_deleted=yes).
    const instance = await deps.compute.instances.find(id);
    const caller = callerOf(request);
    if (!instance || (!caller.isAdmin && instance.projectId !== caller.projectId)) {
      authorize(deps, request, 'os_compute_api:os-instance-actions:list');
      throw new NotFound(`Instance ${id} could not be found.`);
    }
    authorize(deps, request, 'os_compute_api:os-instance-actions:list', { project_id: instance.projectId });
    const filters: { changesSince?: string; changesBefore?: string } = {};
    if (atLeast(request, '2.58')) {
      for (const [param, key] of [['changes-since', 'changesSince'], ['changes-before', 'changesBefore']] as const) {
        const value = one(query, param);
        if (value === undefined) continue;
        if (param === 'changes-before' && !atLeast(request, '2.66')) continue;
        if (Number.isNaN(Date.parse(value))) throw new BadRequest(`Invalid input for query parameters ${param}. Value: ${value}. '${value}' is not a 'date-time'`);
        filters[key] = new Date(value).toISOString();
      }
    }
    const actions = await deps.compute.actions.list(id, filters);
    const render = (a: (typeof actions)[number]) => ({
      action: a.action, instance_uuid: a.instanceId, message: a.message, project_id: a.projectId, request_id: a.requestId,
      start_time: novaTime(a.startTime), user_id: a.userId, ...(atLeast(request, '2.58') ? { updated_at: novaTime(a.updatedAt) } : {}),
    });
    if (!atLeast(request, '2.58')) return { instanceActions: actions.map(render) };
    const page = pageOf(actions, (a) => a.requestId, parsePaging(query as Record<string, unknown>, deps.maxLimit));
    const body: Record<string, unknown> = { instanceActions: page.items.map(render) };
    if (page.next) body.links = [{ rel: 'next', href: nextPageUrl(`${serviceUrl(request)}/v2.1/servers/${id}/os-instance-actions?${new URLSearchParams(query as Record<string, string>).toString()}`, page.next) }];
    return body;
  });

  app.get('/servers/:id/os-instance-actions/:requestId', async (request) => {
    const { id, requestId } = request.params as { id: string; requestId: string };
    const instance = await deps.compute.instances.find(id);
    const caller = callerOf(request);
    if (!instance || (!caller.isAdmin && instance.projectId !== caller.projectId)) {
      authorize(deps, request, 'os_compute_api:os-instance-actions:show');
      throw new NotFound(`Instance ${id} could not be found.`);
    }
    const target = { project_id: instance.projectId };
    authorize(deps, request, 'os_compute_api:os-instance-actions:show', target);
    const action = await deps.compute.actions.get(id, requestId);
    if (!action) throw new NotFound(`Action ${requestId} could not be found.`);
    const body: Record<string, unknown> = {
      action: action.action, instance_uuid: action.instanceId, message: action.message, project_id: action.projectId,
      request_id: action.requestId, start_time: novaTime(action.startTime), user_id: action.userId,
      ...(atLeast(request, '2.58') ? { updated_at: novaTime(action.updatedAt) } : {}),
    };
    // Before 2.51 only those allowed the events see them; from 2.51 everyone does, tracebacks still need the details rule.
    const seesEvents = atLeast(request, '2.51') || allowed(deps, request, 'os_compute_api:os-instance-actions:events', target);
    if (seesEvents) {
      const details = allowed(deps, request, 'os_compute_api:os-instance-actions:events:details', target);
      const events = await deps.compute.actions.events(action.id);
      body.events = events.map((e) => ({
        event: e.event, start_time: novaTime(e.startTime), finish_time: novaTime(e.finishTime), result: e.result,
        ...(details ? { traceback: e.traceback } : {}),
        ...(atLeast(request, '2.62') ? { hostId: e.host ? createHash('sha224').update(action.projectId + e.host).digest('hex') : '', ...(details ? { host: e.host } : {}) } : {}),
        ...(atLeast(request, '2.84') && details ? { details: e.details } : {}),
      }));
    }
    return { instanceAction: body };
  });
}

/** Nova's sort keys for servers (admins get the full list); the default is created_at desc. */
function parseSort(query: Query, admin: boolean): { key: string; dir: 'asc' | 'desc' }[] {
  const columns: Record<string, string> = {
    created_at: 'created_at', updated_at: 'updated_at', display_name: 'name', uuid: 'id', vm_state: 'vm_state', task_state: 'task_state',
    power_state: 'power_state', launched_at: 'launched_at', terminated_at: 'terminated_at', availability_zone: 'availability_zone',
    key_name: 'key_name', hostname: 'hostname', locked: 'locked', launch_index: 'launch_index', instance_type_id: 'flavor_id',
    image_ref: 'image_ref', project_id: 'project_id', user_id: 'user_id', host: 'host', node: 'node',
  };
  const adminOnly = new Set(['host', 'node']);
  const list = (k: string) => { const v = query[k]; return v === undefined ? [] : Array.isArray(v) ? v : [v]; };
  const keys = list('sort_key');
  const dirs = list('sort_dir');
  const out: { key: string; dir: 'asc' | 'desc' }[] = [];
  keys.forEach((key, index) => {
    const column = columns[key];
    if (!column) throw new BadRequest(`Invalid input for query parameters sort_key. Value: ${key}.`);
    if (adminOnly.has(key) && !admin) throw new Forbidden(`Only administrators can sort servers by ${key}`);
    const dir = (dirs[index] ?? dirs[0] ?? 'desc').toLowerCase();
    if (dir !== 'asc' && dir !== 'desc') throw new BadRequest(`Invalid input for query parameters sort_dir. Value: ${dir}.`);
    out.push({ key: column, dir });
  });
  if (out.length === 0 && dirs.length > 0) {
    const dir = dirs[0].toLowerCase();
    if (dir !== 'asc' && dir !== 'desc') throw new BadRequest(`Invalid input for query parameters sort_dir. Value: ${dir}.`);
    out.push({ key: 'created_at', dir });
  }
  return out;
}

/** tags (all of), tags-any, not-tags (not all of), not-tags-any (none of): comma-separated lists. */
function filterByTags(instances: Instance[], query: Query): Instance[] {
  const list = (key: string) => { const v = one(query, key); return v === undefined ? undefined : v.split(',').filter(Boolean); };
  const all = list('tags'), any = list('tags-any'), notAll = list('not-tags'), notAny = list('not-tags-any');
  return instances.filter((i) => {
    const has = (t: string) => i.tags.includes(t);
    if (all && !all.every(has)) return false;
    if (any && !any.some(has)) return false;
    if (notAll && notAll.length && notAll.every(has)) return false;
    if (notAny && notAny.some(has)) return false;
    return true;
  });
}
