// GET /os-migrations (admin): every migration record, newest first, with Nova's filters
// (instance_uuid, host, source_compute, status, migration_type; changes-since 2.59,
// changes-before 2.66) and its fields by microversion (migration_type and links 2.23, uuid 2.59).
// `openstack server migration list` reads it.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { BadRequest } from '../../core/errors.js';
import { atLeast } from '../../http/microversion.js';
import type { Migration, MigrationFilters, MigrationType } from '../migrations.js';
import { LIVE_IN_PROGRESS } from '../moves.js';
import { authorize, novaTime, one, queryOf, serviceUrl, intQuery, type ComputeApiDeps } from './common.js';

const POLICY = 'os_compute_api:os-migrations:index';

function view(request: FastifyRequest, m: Migration) {
  const body: Record<string, unknown> = {
    id: m.id, status: m.status, instance_uuid: m.instanceId, source_node: m.sourceNode, source_compute: m.sourceCompute,
    dest_node: m.destNode, dest_compute: m.destCompute, dest_host: m.destHost,
    old_instance_type_id: m.oldFlavorId, new_instance_type_id: m.newFlavorId,
    created_at: novaTime(m.createdAt), updated_at: novaTime(m.updatedAt),
  };
  if (atLeast(request, '2.23')) {
    body.migration_type = m.migrationType;
    // Links to the server migration resource for live migrations in progress (Nova's _output).
    if (m.migrationType === 'live-migration' && LIVE_IN_PROGRESS.includes(m.status)) {
      const base = serviceUrl(request);
      body.links = [
        { rel: 'self', href: `${base}/v2.1/servers/${m.instanceId}/migrations/${m.id}` },
        { rel: 'bookmark', href: `${base}/servers/${m.instanceId}/migrations/${m.id}` },
      ];
    }
  }
  if (atLeast(request, '2.59')) body.uuid = m.uuid;
  return body;
}

export function osMigrationRoutes(app: FastifyInstance, deps: ComputeApiDeps): void {
  deps.policy.register({ [POLICY]: 'rule:admin_api' });
  app.get('/os-migrations', async (request) => {
    authorize(deps, request, POLICY);
    const query = queryOf(request);
    const filters: MigrationFilters = {};
    const instance = one(query, 'instance_uuid');
    if (instance) filters.instanceId = instance;
    const host = one(query, 'host');
    if (host) filters.host = host;
    const source = one(query, 'source_compute');
    if (source) filters.sourceCompute = source;
    const status = one(query, 'status');
    if (status) filters.status = [status];
    const type = one(query, 'migration_type');
    if (type) filters.migrationType = type as MigrationType;
    if (atLeast(request, '2.59')) {
      const since = one(query, 'changes-since');
      if (since !== undefined) {
        if (Number.isNaN(Date.parse(since))) throw new BadRequest(`Invalid input for query parameters changes-since. Value: ${since}. '${since}' is not a 'date-time'`);
        filters.changesSince = new Date(since).toISOString();
      }
    }
    if (atLeast(request, '2.66')) {
      const before = one(query, 'changes-before');
      if (before !== undefined) {
        if (Number.isNaN(Date.parse(before))) throw new BadRequest(`Invalid input for query parameters changes-before. Value: ${before}. '${before}' is not a 'date-time'`);
        filters.changesBefore = new Date(before).toISOString();
      }
    }
    let list = await deps.compute.migrations.list(filters);
    if (atLeast(request, '2.59')) {
      const marker = one(query, 'marker');
      if (marker !== undefined) {
        const at = list.findIndex((m) => m.uuid === marker);
        if (at < 0) throw new BadRequest(`Marker ${marker} could not be found.`);
        list = list.slice(at + 1);
      }
      const limit = intQuery(query, 'limit', 0);
      list = list.slice(0, Math.min(limit ?? deps.maxLimit, deps.maxLimit));
    }
    return { migrations: list.map((m) => view(request, m)) };
  });
}
