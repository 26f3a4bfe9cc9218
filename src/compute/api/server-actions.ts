// POST /servers/{id}/action: one body key names the action. Each action is an entry in a
// registry (its policy rule, microversions, body check and handler), so areas add actions
// without touching the dispatch.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { BadRequest, NotFound, NuboError } from '../../core/errors.js';
import { atLeast } from '../../http/microversion.js';
import type { Instance } from '../instances.js';
import type { Caller } from '../servers.js';
import { allowed, authorize, callerOf, type ComputeApiDeps } from './common.js';

export interface ActionContext {
  request: FastifyRequest;
  reply: FastifyReply;
  deps: ComputeApiDeps;
  caller: Caller;
  instance: Instance;
  /** The value under the action's key in the body. */
  body: unknown;
}

export interface ServerAction {
  /** Nova's policy rule and its default. */
  policy: string;
  rule: string;
  /** Microversions the action exists in: from minVersion, up to (not including) removedIn. */
  minVersion?: string;
  removedIn?: string;
  /** A removed action (Nova's @wsgi.removed): 410 Gone at every microversion, before the server is looked up. */
  gone?: boolean;
  /** Resolves with the response body (undefined: 202 with no body). */
  run(ctx: ActionContext): Promise<unknown>;
}

const MEMBER = 'rule:project_member_or_admin';
const ADMIN = 'rule:admin_api';

/** Returns an action whose body must be null or an object (the form Nova's schemas give most actions). */
function objectBody(name: string, body: unknown): Record<string, unknown> {
  if (body === null || body === undefined) return {};
  if (typeof body !== 'object' || Array.isArray(body)) throw new BadRequest(`Invalid input for field/attribute ${name}. Value: ${JSON.stringify(body)}. ${JSON.stringify(body)} is not of type 'object', 'null'`);
  return body as Record<string, unknown>;
}

function onlyKeys(name: string, body: Record<string, unknown>, keys: string[]): void {
  const extra = Object.keys(body).filter((k) => !keys.includes(k));
  if (extra.length) throw new BadRequest(`Invalid input for field/attribute ${name}. Additional properties are not allowed ('${extra[0]}' was unexpected)`);
}

const power = (operation: Parameters<ComputeApiDeps['compute']['lifecycle']['power']>[2], name: string): ServerAction['run'] => async (ctx) => {
  onlyKeys(name, objectBody(name, ctx.body), []);
  await ctx.deps.compute.lifecycle.power(ctx.caller, ctx.instance, operation);
};

/** The actions of this module; other areas (resize, migrate, shelve, ...) add theirs with registerServerActions. */
const ACTIONS: Record<string, ServerAction> = {
  'os-start': { policy: 'os_compute_api:servers:start', rule: MEMBER, run: power('start', 'os-start') },
  'os-stop': { policy: 'os_compute_api:servers:stop', rule: MEMBER, run: power('stop', 'os-stop') },
  pause: { policy: 'os_compute_api:os-pause-server:pause', rule: MEMBER, run: power('pause', 'pause') },
  unpause: { policy: 'os_compute_api:os-pause-server:unpause', rule: MEMBER, run: power('unpause', 'unpause') },
  suspend: { policy: 'os_compute_api:os-suspend-server:suspend', rule: MEMBER, run: power('suspend', 'suspend') },
  resume: { policy: 'os_compute_api:os-suspend-server:resume', rule: MEMBER, run: power('resume', 'resume') },
  reboot: {
    policy: 'os_compute_api:servers:reboot', rule: MEMBER,
    run: async (ctx) => {
      const body = objectBody('reboot', ctx.body);
      onlyKeys('reboot', body, ['type']);
      const type = typeof body.type === 'string' ? body.type.toUpperCase() : undefined;
      if (type !== 'SOFT' && type !== 'HARD') {
        throw new BadRequest(`Invalid input for field/attribute type. Value: ${String(body.type)}. ${JSON.stringify(body.type)} is not one of ['HARD', 'Hard', 'hard', 'SOFT', 'Soft', 'soft']`);
      }
      await ctx.deps.compute.lifecycle.power(ctx.caller, ctx.instance, type === 'SOFT' ? 'reboot-soft' : 'reboot-hard');
    },
  },
  lock: {
    policy: 'os_compute_api:os-lock-server:lock', rule: MEMBER,
    run: async (ctx) => {
      const body = objectBody('lock', ctx.body);
      let reason: string | null = null;
      if (atLeast(ctx.request, '2.73')) {
        onlyKeys('lock', body, ['locked_reason']);
        if (body.locked_reason !== undefined) {
          if (typeof body.locked_reason !== 'string' || body.locked_reason.length > 255) throw new BadRequest('Invalid input for field/attribute locked_reason. It must be a string of at most 255 characters.');
          reason = body.locked_reason;
        }
      }
      await ctx.deps.compute.lifecycle.lock(ctx.caller, ctx.instance, reason);
    },
  },
  unlock: {
    policy: 'os_compute_api:os-lock-server:unlock', rule: MEMBER,
    run: async (ctx) => {
      onlyKeys('unlock', objectBody('unlock', ctx.body), []);
      const mayOverride = allowed(ctx.deps, ctx.request, 'os_compute_api:os-lock-server:unlock:unlock_override', { project_id: ctx.instance.projectId });
      await ctx.deps.compute.lifecycle.unlock(ctx.caller, ctx.instance, mayOverride);
    },
  },
  'os-resetState': {
    policy: 'os_compute_api:os-admin-actions:reset_state', rule: ADMIN,
    run: async (ctx) => {
      const body = objectBody('os-resetState', ctx.body);
      onlyKeys('os-resetState', body, ['state']);
      if (body.state !== 'active' && body.state !== 'error') {
        throw new BadRequest(`Invalid input for field/attribute state. Value: ${String(body.state)}. ${JSON.stringify(body.state)} is not one of ['active', 'error']`);
      }
      await ctx.deps.compute.lifecycle.resetState(ctx.caller, ctx.instance, body.state);
    },
  },
  'os-getConsoleOutput': {
    policy: 'os_compute_api:os-console-output', rule: MEMBER,
    run: async (ctx) => {
      const body = objectBody('os-getConsoleOutput', ctx.body);
      onlyKeys('os-getConsoleOutput', body, ['length']);
      let length: number | undefined;
      if (body.length !== undefined && body.length !== null) {
        const n = typeof body.length === 'string' && /^-?\d+$/.test(body.length) ? Number(body.length) : body.length;
        if (typeof n !== 'number' || !Number.isInteger(n) || n < -1) throw new BadRequest(`Invalid input for field/attribute length. Value: ${String(body.length)}. It must be an integer of at least -1.`);
        length = n === -1 ? undefined : n;
      }
      ctx.reply.status(200);
      return { output: await ctx.deps.compute.lifecycle.consoleOutput(ctx.instance, length) };
    },
  },
  changePassword: {
    policy: 'os_compute_api:os-admin-password', rule: MEMBER,
    run: async (ctx) => {
      const body = objectBody('changePassword', ctx.body);
      onlyKeys('changePassword', body, ['adminPass']);
      if (typeof body.adminPass !== 'string') throw new BadRequest("Invalid input for field/attribute changePassword. 'adminPass' is a required property");
      await ctx.deps.compute.lifecycle.changePassword(ctx.caller, ctx.instance, body.adminPass);
    },
  },
  trigger_crash_dump: {
    policy: 'os_compute_api:servers:trigger_crash_dump', rule: MEMBER, minVersion: '2.17',
    run: async (ctx) => {
      if (ctx.body !== null) throw new BadRequest("Invalid input for field/attribute trigger_crash_dump. Value: must be null");
      await ctx.deps.compute.lifecycle.triggerCrashDump(ctx.caller, ctx.instance);
    },
  },
};

/** Adds actions to the registry (another module's area of the lifecycle). */
export function registerServerActions(actions: Record<string, ServerAction>): void {
  Object.assign(ACTIONS, actions);
}

export function serverActionRoutes(app: FastifyInstance, deps: ComputeApiDeps): void {
  deps.policy.register({
    ...Object.fromEntries(Object.values(ACTIONS).map((a) => [a.policy, a.rule])),
    'os_compute_api:os-lock-server:unlock:unlock_override': ADMIN,
  });

  app.post('/servers/:id/action', async (request, reply) => {
    const { id } = request.params as { id: string };
    const body = request.body;
    if (!body || typeof body !== 'object' || Array.isArray(body) || Object.keys(body).length !== 1) {
      throw new BadRequest('Malformed request body: an action body has exactly one key, the action name.');
    }
    const [name, value] = Object.entries(body as Record<string, unknown>)[0];
    const action = ACTIONS[name];
    if (!action || (action.minVersion && !atLeast(request, action.minVersion)) || (action.removedIn && atLeast(request, action.removedIn))) {
      throw new BadRequest(`There is no such action: ${name}`);
    }
    if (action.gone) throw new NuboError(410, 'Gone', 'This resource is no longer available.  No forwarding address is given.');
    const caller = callerOf(request);
    const instance = await deps.compute.servers.get(caller, id).catch((err) => {
      // Nova checks the policy before it reveals whether the server exists.
      if (err instanceof NotFound) authorize(deps, request, action.policy);
      throw err;
    });
    authorize(deps, request, action.policy, { project_id: instance.projectId, user_id: instance.userId });
    reply.status(202);
    const result = await action.run({ request, reply, deps, caller, instance, body: value });
    return result === undefined ? reply.send() : result;
  });
}
