// The smaller server APIs: deferred delete (restore, forceDelete), remote consoles (the
// os-get*Console actions before 2.6, POST /servers/{id}/remote-consoles from 2.6) and console
// auth tokens, os-server-password, and the removed resetNetwork action (410 Gone).
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { Conflict, NotFound, Unauthorized } from '../../core/errors.js';
import { atLeast } from '../../http/microversion.js';
import type { Instance } from '../instances.js';
import { authorize, callerOf, type ComputeApiDeps } from './common.js';
import { validateBody, type Schema } from './jsonschema.js';
import { registerServerActions, type ActionContext } from './server-actions.js';

const PROJECT_READER_OR_ADMIN = 'rule:project_reader_or_admin';
const PROJECT_MEMBER_OR_ADMIN = 'rule:project_member_or_admin';
const ADMIN = 'rule:admin_api';
const REMOTE_CONSOLES = 'os_compute_api:os-remote-consoles';

/** Nova's schema of an os-get*Console action: {"<action>": {"type": one of `types`}}. */
function consoleActionSchema(action: string, types: string[]): Schema {
  return {
    type: 'object', required: [action], additionalProperties: false,
    properties: { [action]: { type: 'object', required: ['type'], additionalProperties: false, properties: { type: { type: 'string', enum: types } } } },
  };
}

/** remote_consoles.create_v26 / create_v28 (2.8 adds the mks protocol and its webmks type). */
function remoteConsoleSchema(request: FastifyRequest): Schema {
  const mks = atLeast(request, '2.8');
  return {
    type: 'object', required: ['remote_console'], additionalProperties: false,
    properties: {
      remote_console: {
        type: 'object', required: ['protocol', 'type'], additionalProperties: false,
        properties: {
          protocol: { type: 'string', enum: ['vnc', 'spice', 'rdp', 'serial', ...(mks ? ['mks'] : [])] },
          type: { type: 'string', enum: ['novnc', 'xvpvnc', 'rdp-html5', 'spice-html5', 'serial', ...(mks ? ['webmks'] : [])] },
        },
      },
    },
  };
}

/** A console URL for the protocol: VNC is served; SPICE, RDP, serial and MKS are not enabled here (400, as Nova with them off). */
async function consoleUrl(deps: ComputeApiDeps, instance: Instance, protocol: string, consoleType: string): Promise<string> {
  const consoles = deps.compute.consoles;
  if (protocol === 'vnc') return consoles.vncConsoleUrl(instance, consoleType);
  // Nova checks the instance has a host before the compute host says the console type is off.
  if (!instance.host) throw new Conflict(`Instance ${instance.id} is not ready`);
  return consoles.unavailable(consoleType);
}

const consoleAction = (action: string, protocol: string, types: string[]) => ({
  policy: REMOTE_CONSOLES, rule: PROJECT_MEMBER_OR_ADMIN, removedIn: '2.6',
  run: async (ctx: ActionContext) => {
    validateBody(consoleActionSchema(action, types), { [action]: ctx.body });
    const consoleType = (ctx.body as { type: string }).type;
    const url = await consoleUrl(ctx.deps, ctx.instance, protocol, consoleType);
    ctx.reply.status(200);
    return { console: { type: consoleType, url } };
  },
});

registerServerActions({
  restore: {
    policy: 'os_compute_api:os-deferred-delete:restore', rule: PROJECT_MEMBER_OR_ADMIN,
    run: async (ctx) => ctx.deps.compute.softDeletes.restore(ctx.caller, ctx.instance),
  },
  forceDelete: {
    policy: 'os_compute_api:os-deferred-delete:force', rule: PROJECT_MEMBER_OR_ADMIN,
    run: async (ctx) => ctx.deps.compute.softDeletes.forceDelete(ctx.caller, ctx.instance),
  },
  'os-getVNCConsole': consoleAction('os-getVNCConsole', 'vnc', ['novnc', 'xvpvnc']),
  'os-getSPICEConsole': consoleAction('os-getSPICEConsole', 'spice', ['spice-html5']),
  'os-getRDPConsole': consoleAction('os-getRDPConsole', 'rdp', ['rdp-html5']),
  'os-getSerialConsole': consoleAction('os-getSerialConsole', 'serial', ['serial']),
  // Removed in Nova 23.0.0 (Wallaby) with nova-network: 410 at every microversion.
  resetNetwork: { policy: 'os_compute_api:os-admin-actions:reset_network', rule: ADMIN, gone: true, run: async () => undefined },
});

export function extraRoutes(app: FastifyInstance, deps: ComputeApiDeps): void {
  deps.policy.register({
    'os_compute_api:os-console-auth-tokens': ADMIN,
    'os_compute_api:os-server-password:show': PROJECT_READER_OR_ADMIN,
    'os_compute_api:os-server-password:clear': PROJECT_MEMBER_OR_ADMIN,
  });

  async function serverOf(request: FastifyRequest, id: string, action: string): Promise<Instance> {
    const instance = await deps.compute.servers.get(callerOf(request), id).catch((err) => {
      if (err instanceof NotFound) authorize(deps, request, action);
      throw err;
    });
    authorize(deps, request, action, { project_id: instance.projectId, user_id: instance.userId });
    return instance;
  }

  app.post('/servers/:id/remote-consoles', async (request) => {
    if (!atLeast(request, '2.6')) throw new NotFound('The resource could not be found.');
    const { id } = request.params as { id: string };
    validateBody(remoteConsoleSchema(request), request.body);
    const instance = await serverOf(request, id, REMOTE_CONSOLES);
    const { protocol, type } = (request.body as { remote_console: { protocol: string; type: string } }).remote_console;
    const url = await consoleUrl(deps, instance, protocol, type);
    return { remote_console: { protocol, type, url } };
  });

  app.get('/os-console-auth-tokens/:token', async (request) => {
    authorize(deps, request, 'os_compute_api:os-console-auth-tokens');
    const { token } = request.params as { token: string };
    const connection = await deps.compute.consoles.validate(token);
    if (!connection) throw new NotFound('Token not found');
    // Before 2.31 the API only showed RDP consoles' details.
    if (!atLeast(request, '2.31') && connection.consoleType !== 'rdp-html5') throw new Unauthorized('The requested console type details are not accessible');
    return {
      console: { instance_uuid: connection.instanceUuid, host: connection.host, port: connection.port, internal_access_path: connection.internalAccessPath },
    };
  });

  app.get('/servers/:id/os-server-password', async (request) => {
    const { id } = request.params as { id: string };
    const instance = await serverOf(request, id, 'os_compute_api:os-server-password:show');
    return { password: await deps.compute.serverPasswords.get(instance.id) };
  });

  app.delete('/servers/:id/os-server-password', async (request, reply) => {
    const { id } = request.params as { id: string };
    const instance = await serverOf(request, id, 'os_compute_api:os-server-password:clear');
    await deps.compute.serverPasswords.clear(instance.id);
    reply.status(204).send();
  });
}
