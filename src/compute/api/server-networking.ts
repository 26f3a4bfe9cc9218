// A server's networking in the Nova API: /servers/{id}/ips (ips.py), os-interface
// (attach_interfaces.py), the addSecurityGroup / removeSecurityGroup actions and
// /servers/{id}/os-security-groups (security_groups.py). The ports themselves are the
// Networking service's; src/compute/networking.ts does the work.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { BadRequest, NotFound } from '../../core/errors.js';
import { atLeast } from '../../http/microversion.js';
import type { Instance } from '../instances.js';
import type { Port } from '../../network/ports.js';
import type { SecurityGroup } from '../../network/security-groups.js';
import { authorize, callerOf, type ComputeApiDeps } from './common.js';
import { validateBody, type Schema } from './jsonschema.js';
import { registerServerActions } from './server-actions.js';

const READER = 'rule:project_reader_or_admin';
const MEMBER = 'rule:project_member_or_admin';

export const serverNetworkingPolicy: Record<string, string> = {
  'os_compute_api:ips:index': READER,
  'os_compute_api:ips:show': READER,
  'os_compute_api:os-attach-interfaces:list': READER,
  'os_compute_api:os-attach-interfaces:show': READER,
  'os_compute_api:os-attach-interfaces:create': MEMBER,
  'os_compute_api:os-attach-interfaces:delete': MEMBER,
  'os_compute_api:os-security-groups:list': READER,
  'os_compute_api:os-security-groups:get': READER,
  'os_compute_api:os-security-groups:show': READER,
};

const ATTACH: Schema = {
  type: 'object',
  properties: {
    interfaceAttachment: {
      type: 'object',
      properties: {
        net_id: { type: 'string', format: 'uuid' },
        port_id: { type: 'string', format: 'uuid' },
        fixed_ips: {
          type: 'array', minItems: 1, maxItems: 1,
          items: { type: 'object', properties: { ip_address: { type: 'string' } }, required: ['ip_address'], additionalProperties: false },
        },
        tag: { type: 'string', maxLength: 60 },
      },
      additionalProperties: false,
    },
  },
  additionalProperties: false,
} as Schema;

const SECURITY_GROUP_ACTION = (name: string): Schema => ({
  type: 'object',
  properties: { [name]: { type: 'object', properties: { name: { type: 'string', minLength: 1, maxLength: 255 } }, required: ['name'], additionalProperties: false } },
  required: [name],
  additionalProperties: false,
} as Schema);

/** One os-interface entry (Nova's _format_interface; tag from 2.70). */
function interfaceView(request: FastifyRequest, port: Port, tag: string | null) {
  return {
    net_id: port.networkId, port_id: port.id, mac_addr: port.macAddress, port_state: port.status,
    fixed_ips: port.fixedIps.map((f) => ({ subnet_id: f.subnetId, ip_address: f.ipAddress })),
    ...(atLeast(request, '2.70') ? { tag } : {}),
  };
}

export function serverNetworkingRoutes(app: FastifyInstance, deps: ComputeApiDeps): void {
  deps.policy.register(serverNetworkingPolicy);
  const networking = deps.compute.networking;

  async function serverOf(request: FastifyRequest, action: string): Promise<Instance> {
    const { id } = request.params as { id: string };
    const instance = await deps.compute.servers.get(callerOf(request), id).catch((err) => {
      if (err instanceof NotFound) authorize(deps, request, action);
      throw err;
    });
    authorize(deps, request, action, { project_id: instance.projectId, user_id: instance.userId });
    return instance;
  }

  /** ips.py shows the bare {version, addr} of each address. */
  const bare = (list: { version: number; addr: string }[]) => list.map((a) => ({ version: a.version, addr: a.addr }));

  app.get('/servers/:id/ips', async (request) => {
    const instance = await serverOf(request, 'os_compute_api:ips:index');
    const view = (await networking.views([instance.id])).get(instance.id)!;
    return { addresses: Object.fromEntries(Object.entries(view.addresses).map(([name, list]) => [name, bare(list)])) };
  });

  app.get('/servers/:id/ips/:network', async (request) => {
    const instance = await serverOf(request, 'os_compute_api:ips:show');
    const { network } = request.params as { network: string };
    const view = (await networking.views([instance.id])).get(instance.id)!;
    if (!(network in view.addresses)) throw new NotFound('Instance is not a member of specified network');
    return { [network]: bare(view.addresses[network]) };
  });

  app.get('/servers/:id/os-interface', async (request) => {
    const instance = await serverOf(request, 'os_compute_api:os-attach-interfaces:list');
    return { interfaceAttachments: (await networking.interfaces(instance.id)).map((i) => interfaceView(request, i.port, i.tag)) };
  });

  app.get('/servers/:id/os-interface/:portId', async (request) => {
    const instance = await serverOf(request, 'os_compute_api:os-attach-interfaces:show');
    const { portId } = request.params as { portId: string };
    const found = (await networking.interfaces(instance.id)).find((i) => i.port.id === portId);
    if (!found) throw new NotFound(`Instance ${instance.id} does not have a port with id ${portId}`);
    return { interfaceAttachment: interfaceView(request, found.port, found.tag) };
  });

  app.post('/servers/:id/os-interface', async (request) => {
    const body = (request.body ?? {}) as Record<string, any>;
    validateBody(ATTACH, body);
    const attachment = body.interfaceAttachment ?? {};
    if (attachment.tag !== undefined && !atLeast(request, '2.49')) throw new BadRequest("Invalid input for field/attribute interfaceAttachment. Additional properties are not allowed ('tag' was unexpected)");
    const instance = await serverOf(request, 'os_compute_api:os-attach-interfaces:create');
    if (attachment.net_id && attachment.port_id) throw new BadRequest('Must not input both network_id and port_id');
    if (attachment.fixed_ips && !attachment.net_id) throw new BadRequest('Must input network_id when request IP address');
    const port = await deps.compute.lifecycle.attachInterface(callerOf(request), instance, {
      portId: attachment.port_id, netId: attachment.net_id, fixedIps: attachment.fixed_ips, tag: attachment.tag,
    });
    return { interfaceAttachment: interfaceView(request, port, attachment.tag ?? null) };
  });

  app.delete('/servers/:id/os-interface/:portId', async (request, reply) => {
    const instance = await serverOf(request, 'os_compute_api:os-attach-interfaces:delete');
    const { portId } = request.params as { portId: string };
    await deps.compute.lifecycle.detachInterface(callerOf(request), instance, portId);
    reply.status(202).send();
  });

  app.get('/servers/:id/os-security-groups', async (request) => {
    const instance = await serverOf(request, 'os_compute_api:os-security-groups:list');
    const groups = await networking.securityGroupsOf(instance.id);
    return { security_groups: groups.map((g) => securityGroupView(g, groups)) };
  });

  // The os-security-groups proxy (reads only), gone from 2.36 as in Nova: the CLI's
  // `server add security group` finds the group here before the addSecurityGroup action.
  const proxyGone = (request: FastifyRequest) => {
    if (atLeast(request, '2.36')) throw new NotFound('The resource could not be found.');
  };
  app.get('/os-security-groups', async (request) => {
    proxyGone(request);
    authorize(deps, request, 'os_compute_api:os-security-groups:get');
    const groups = await networking.projectSecurityGroups(callerOf(request));
    return { security_groups: groups.map((g) => securityGroupView(g, groups)) };
  });
  app.get('/os-security-groups/:groupId', async (request) => {
    proxyGone(request);
    authorize(deps, request, 'os_compute_api:os-security-groups:show');
    const { groupId } = request.params as { groupId: string };
    const groups = await networking.projectSecurityGroups(callerOf(request));
    const group = groups.find((g) => g.id === groupId);
    if (!group) throw new NotFound(`Security group ${groupId} not found.`);
    return { security_group: securityGroupView(group, groups) };
  });
}

/** Nova's proxy format for a Neutron group (security_groups.py _format_security_group): ingress rules only. */
function securityGroupView(g: SecurityGroup, all: SecurityGroup[]) {
  return {
    id: g.id, name: g.name, description: g.description, tenant_id: g.projectId,
    rules: g.rules.filter((r) => r.direction === 'ingress').map((r) => ({
      id: r.id, parent_group_id: g.id, ip_protocol: r.protocol,
      from_port: r.portRangeMin ?? (r.protocol === null ? null : -1), to_port: r.portRangeMax ?? (r.protocol === null ? null : -1),
      ip_range: r.remoteIpPrefix ? { cidr: r.remoteIpPrefix } : {},
      group: r.remoteGroupId ? { name: all.find((o) => o.id === r.remoteGroupId)?.name ?? r.remoteGroupId, tenant_id: g.projectId } : {},
    })),
  };
}

registerServerActions({
  addSecurityGroup: {
    policy: 'os_compute_api:os-security-groups:add', rule: MEMBER,
    async run(ctx) {
      validateBody(SECURITY_GROUP_ACTION('addSecurityGroup'), { addSecurityGroup: ctx.body });
      const name = (ctx.body as { name: string }).name.trim();
      await ctx.deps.compute.networking.addSecurityGroup(ctx.instance, name);
    },
  },
  removeSecurityGroup: {
    policy: 'os_compute_api:os-security-groups:remove', rule: MEMBER,
    async run(ctx) {
      validateBody(SECURITY_GROUP_ACTION('removeSecurityGroup'), { removeSecurityGroup: ctx.body });
      const name = (ctx.body as { name: string }).name.trim();
      await ctx.deps.compute.networking.removeSecurityGroup(ctx.instance, name);
    },
  },
});
