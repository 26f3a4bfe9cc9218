// os-migrateLive and evacuate (server actions), and the server migrations API:
// GET /servers/{id}/migrations[/{mid}] (2.23), POST .../{mid}/action force_complete (2.22),
// DELETE .../{mid} abort (2.24; queued/preparing too from 2.65). Admin by default, as in Nova.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { BadRequest, NotFound } from '../../core/errors.js';
import { atLeast } from '../../http/microversion.js';
import type { Migration } from '../migrations.js';
import { generatePassword } from '../moves.js';
import { authorize, callerOf, novaTime, type ComputeApiDeps } from './common.js';
import { toBool, types, validateBody, type Schema } from './jsonschema.js';
import { registerServerActions } from './server-actions.js';

const ADMIN = 'rule:admin_api';

/** A route that does not exist before `version` (Nova's 404 for it). */
function requireVersion(request: FastifyRequest, version: string): void {
  if (!atLeast(request, version)) throw new NotFound('The resource could not be found.');
}
const host = { oneOf: [{ type: 'null' }, types.fqdn] } as unknown as Schema;

function liveSchema(request: FastifyRequest): Schema {
  const properties: Record<string, Schema> = { host };
  const required = ['block_migration', 'host'];
  if (atLeast(request, '2.25')) {
    properties.block_migration = { oneOf: [types.boolean, { type: 'string', enum: ['auto'] }] } as unknown as Schema;
  } else {
    properties.block_migration = types.boolean;
    properties.disk_over_commit = types.boolean;
    required.push('disk_over_commit');
  }
  if (atLeast(request, '2.30') && !atLeast(request, '2.68')) properties.force = types.boolean;
  return {
    type: 'object', required: ['os-migrateLive'], additionalProperties: false,
    properties: { 'os-migrateLive': { type: 'object', properties, required, additionalProperties: false } as Schema },
  } as Schema;
}

function evacuateSchema(request: FastifyRequest): Schema {
  const properties: Record<string, Schema> = { host: types.fqdn, adminPass: { type: 'string' } as Schema };
  const required: string[] = [];
  if (!atLeast(request, '2.14')) {
    properties.onSharedStorage = types.boolean;
    required.push('onSharedStorage');
  }
  if (atLeast(request, '2.29') && !atLeast(request, '2.68')) properties.force = types.boolean;
  return {
    type: 'object', required: ['evacuate'], additionalProperties: false,
    properties: { evacuate: { type: 'object', properties, required, additionalProperties: false } as Schema },
  } as Schema;
}

registerServerActions({
  'os-migrateLive': {
    policy: 'os_compute_api:os-migrate-server:migrate_live', rule: ADMIN,
    run: async (ctx) => {
      validateBody(liveSchema(ctx.request), { 'os-migrateLive': ctx.body });
      const body = ctx.body as Record<string, unknown>;
      const hostName = (body.host as string | null) ?? null;
      let force = false;
      if (atLeast(ctx.request, '2.30') && body.force !== undefined) {
        force = toBool(body.force);
        if (force && !hostName) throw new BadRequest("Can't force to a non-provided destination");
      }
      const blockMigration = body.block_migration === 'auto' ? null : toBool(body.block_migration);
      // Before 2.25 there was no scheduler check of a given host unless forced: as in Nova, a host then means forced.
      if (!atLeast(ctx.request, '2.30') && hostName) force = true;
      await ctx.deps.compute.moves.liveMigrate(ctx.caller, ctx.instance, { host: hostName, blockMigration, force, waitForPrechecks: !atLeast(ctx.request, '2.34') });
    },
  },
  evacuate: {
    policy: 'os_compute_api:os-evacuate', rule: ADMIN,
    run: async (ctx) => {
      validateBody(evacuateSchema(ctx.request), { evacuate: ctx.body });
      const body = ctx.body as Record<string, unknown>;
      const hostName = (body.host as string | undefined) ?? null;
      let force = false;
      if (atLeast(ctx.request, '2.29') && body.force !== undefined) {
        force = toBool(body.force);
        if (force && !hostName) throw new BadRequest("Can't force to a non-provided destination");
      }
      let adminPass: string | null;
      if (atLeast(ctx.request, '2.14')) {
        adminPass = typeof body.adminPass === 'string' ? body.adminPass : generatePassword();
      } else {
        const shared = toBool(body.onSharedStorage);
        if (typeof body.adminPass === 'string') {
          if (shared) throw new BadRequest("admin password can't be changed on existing disk");
          adminPass = body.adminPass;
        } else {
          adminPass = shared ? null : generatePassword();
        }
      }
      if (hostName !== null) {
        const known = await ctx.deps.compute.hosts.findService(hostName, 'nova-compute').catch(() => undefined);
        if (!known) throw new NotFound(`Compute host ${hostName} not found.`);
      }
      if (ctx.instance.host === hostName) throw new BadRequest("The target host can't be the same one.");
      // Before 2.25 a given host skipped the scheduler (2.29 made it checked unless forced).
      if (!atLeast(ctx.request, '2.29') && hostName) force = true;
      await ctx.deps.compute.moves.evacuate(ctx.caller, ctx.instance, { host: hostName, force, adminPass });
      // Nova answers 200 here (kept for compatibility), with the password before 2.14.
      ctx.reply.status(200);
      if (!atLeast(ctx.request, '2.14') && ctx.deps.compute.enablePasswordGeneration) return { adminPass };
      return undefined;
    },
  },
});

/** Nova's server migration view (server_migrations.output). */
function migrationView(request: FastifyRequest, m: Migration) {
  return {
    created_at: novaTime(m.createdAt), dest_compute: m.destCompute, dest_host: m.destHost, dest_node: m.destNode,
    disk_processed_bytes: m.diskProcessed, disk_remaining_bytes: m.diskRemaining, disk_total_bytes: m.diskTotal,
    id: m.id, memory_processed_bytes: m.memoryProcessed, memory_remaining_bytes: m.memoryRemaining, memory_total_bytes: m.memoryTotal,
    server_uuid: m.instanceId, source_compute: m.sourceCompute, source_node: m.sourceNode, status: m.status,
    updated_at: novaTime(m.updatedAt),
    ...(atLeast(request, '2.59') ? { uuid: m.uuid } : {}),
  };
}

export function serverMigrationRoutes(app: FastifyInstance, deps: ComputeApiDeps): void {
  const root = 'os_compute_api:servers:migrations';
  deps.policy.register({ [`${root}:index`]: ADMIN, [`${root}:show`]: ADMIN, [`${root}:force_complete`]: ADMIN, [`${root}:delete`]: ADMIN });

  /** The server (404 when the caller cannot see it), after the policy rule. */
  const serverFor = async (request: FastifyRequest, rule: string) => {
    const { server_id: serverId } = request.params as { server_id: string };
    const instance = await deps.compute.servers.get(callerOf(request), serverId).catch((err) => {
      if (err instanceof NotFound) authorize(deps, request, `${root}:${rule}`);
      throw err;
    });
    authorize(deps, request, `${root}:${rule}`, { project_id: instance.projectId });
    return instance;
  };

  app.get('/servers/:server_id/migrations', async (request) => {
    requireVersion(request, '2.23');
    const instance = await serverFor(request, 'index');
    return { migrations: (await deps.compute.moves.inProgress(instance)).map((m) => migrationView(request, m)) };
  });

  app.get('/servers/:server_id/migrations/:id', async (request) => {
    requireVersion(request, '2.23');
    const instance = await serverFor(request, 'show');
    const { id } = request.params as { id: string };
    return { migration: migrationView(request, await deps.compute.moves.showInProgress(instance, id)) };
  });

  app.post('/servers/:server_id/migrations/:id/action', async (request, reply) => {
    requireVersion(request, '2.22');
    const body = request.body as Record<string, unknown> | null;
    if (!body || typeof body !== 'object' || Array.isArray(body) || !('force_complete' in body) || Object.keys(body).length !== 1) {
      throw new BadRequest("Invalid input for field/attribute force_complete. 'force_complete' is a required property");
    }
    if (body.force_complete !== null) throw new BadRequest(`Invalid input for field/attribute force_complete. Value: ${JSON.stringify(body.force_complete)}. ${JSON.stringify(body.force_complete)} is not of type 'null'`);
    const instance = await serverFor(request, 'force_complete');
    const { id } = request.params as { id: string };
    await deps.compute.moves.forceComplete(callerOf(request), instance, id);
    return reply.status(202).send();
  });

  app.delete('/servers/:server_id/migrations/:id', async (request, reply) => {
    requireVersion(request, '2.24');
    const instance = await serverFor(request, 'delete');
    const { id } = request.params as { id: string };
    await deps.compute.moves.abort(callerOf(request), instance, id, atLeast(request, '2.65'));
    return reply.status(202).send();
  });
}
