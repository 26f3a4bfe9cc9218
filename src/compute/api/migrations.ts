// GET /os-migrations (admin): every move's migration record, Nova's view per microversion —
// migration_type and links of in-progress live migrations from 2.23; uuid, limit/marker paging
// and changes-since from 2.59; changes-before from 2.66. Newest first.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { BadRequest } from '../../core/errors.js';
import { atLeast } from '../../http/microversion.js';
import type { Migration, MigrationFilters, MigrationType } from '../migrations.js';
import { collectionLinks, limitAndMarker } from './collection-links.js';
import { authorize, serviceUrl, type ComputeApiDeps } from './common.js';
import { validateQuery, type Schema } from './jsonschema.js';
import { RESIZE_POLICY_RULES } from './resize-actions.js';

const LIVE_IN_PROGRESS = ['queued', 'preparing', 'running', 'post-migrating'];
const COMMON = ['hidden', 'host', 'instance_uuid', 'source_compute', 'status', 'migration_type'];
const STRING: Schema = { type: 'string' } as Schema;
const DATE_TIME = STRING; // checked by dateParam, with Nova's message

/** Nova's datetime primitive: 2013-10-29T13:42:02.000000 (no zone). */
function primitiveTime(iso: string | null): string | null {
  if (!iso) return null;
  const d = new Date(iso);
  return `${d.toISOString().slice(0, 19)}.${String(d.getUTCMilliseconds() * 1000).padStart(6, '0')}`;
}

function view(request: FastifyRequest, m: Migration) {
  const out: Record<string, unknown> = {
    created_at: primitiveTime(m.createdAt), dest_compute: m.destCompute, dest_host: m.destHost, dest_node: m.destNode, id: m.id,
    instance_uuid: m.instanceId, new_instance_type_id: m.newFlavorId, old_instance_type_id: m.oldFlavorId, source_compute: m.sourceCompute,
    source_node: m.sourceNode, status: m.status, updated_at: primitiveTime(m.updatedAt),
  };
  if (atLeast(request, '2.23')) {
    out.migration_type = m.migrationType;
    if (m.migrationType === 'live-migration' && LIVE_IN_PROGRESS.includes(m.status)) {
      const base = serviceUrl(request);
      out.links = [
        { rel: 'self', href: `${base}/v2.1/servers/${m.instanceId}/migrations/${m.id}` },
        { rel: 'bookmark', href: `${base}/servers/${m.instanceId}/migrations/${m.id}` },
      ];
    }
  }
  if (atLeast(request, '2.59')) out.uuid = m.uuid;
  return out;
}

function dateParam(params: Record<string, string[]>, name: string): string | undefined {
  const values = params[name];
  if (!values) return undefined;
  const value = values[values.length - 1];
  if (Number.isNaN(Date.parse(value))) throw new BadRequest(`Invalid input for query parameters ${name}. Value: ${value}. '${value}' is not a 'date-time'`);
  return new Date(value).toISOString();
}

export function migrationRoutes(app: FastifyInstance, deps: ComputeApiDeps): void {
  deps.policy.register({ 'os_compute_api:os-migrations:index': 'rule:admin_api', ...RESIZE_POLICY_RULES });

  app.get('/os-migrations', async (request) => {
    authorize(deps, request, 'os_compute_api:os-migrations:index');
    const v259 = atLeast(request, '2.59');
    const v266 = atLeast(request, '2.66');
    const properties: Record<string, Schema> = Object.fromEntries(COMMON.map((k) => [k, STRING]));
    if (v259) Object.assign(properties, { limit: STRING, marker: STRING, 'changes-since': DATE_TIME });
    if (v266) properties['changes-before'] = DATE_TIME;
    // Before 2.59 other parameters are let through (and ignored); from 2.59 they are refused.
    const params = validateQuery(request, properties, !v259);
    const last = (key: string) => params[key]?.[params[key].length - 1];
    const filters: MigrationFilters = {};
    if (last('status') !== undefined) filters.status = [last('status')!];
    if (last('host') !== undefined) filters.host = last('host');
    if (last('instance_uuid') !== undefined) filters.instanceId = last('instance_uuid');
    if (last('source_compute') !== undefined) filters.sourceCompute = last('source_compute');
    if (last('migration_type') !== undefined) filters.migrationType = last('migration_type') as MigrationType;
    if (v259) filters.changesSince = dateParam(params, 'changes-since');
    if (v266) {
      filters.changesBefore = dateParam(params, 'changes-before');
      if (filters.changesSince && filters.changesBefore && filters.changesBefore < filters.changesSince) {
        throw new BadRequest('The value of changes-since must be less than or equal to changes-before.');
      }
    }
    let migrations = await deps.compute.migrations.list(filters);
    if (!v259) return { migrations: migrations.map((m) => view(request, m)) };
    const { limit, marker } = limitAndMarker(params, deps.maxLimit);
    if (marker !== undefined) {
      const index = migrations.findIndex((m) => m.uuid === marker);
      if (index < 0) throw new BadRequest(`Marker ${marker} could not be found.`);
      migrations = migrations.slice(index + 1);
    }
    const page = migrations.slice(0, limit);
    const body: Record<string, unknown> = { migrations: page.map((m) => view(request, m)) };
    const links = collectionLinks(request, page.length, page[page.length - 1]?.uuid, 'os-migrations', deps.maxLimit);
    if (links.length) body.migrations_links = links;
    return body;
  });
}
