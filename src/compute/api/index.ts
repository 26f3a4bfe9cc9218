// The Nova v2.1 REST API, mounted under /compute. Thin: validate → authorize → call the
// service → render. Errors in Nova's format; microversions 2.1 up to MAX_MICROVERSION.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { requireAuthentication, type TokenValidator } from '../../http/auth.js';
import { useErrorFormat } from '../../http/errors.js';
import { useMicroversions } from '../../http/microversion.js';
import { serviceUrl, type ComputeApiDeps } from './common.js';
import { novaErrorBody } from './errors.js';
import { hostRoutes } from './hosts.js';
import { serverRoutes } from './servers.js';
import { usageRoutes } from './usage.js';
import { serverActionRoutes } from './server-actions.js';
import { imageActionRoutes } from './shelve-actions.js';
import { flavorRoutes } from './flavors.js';
import { keypairRoutes } from './keypairs.js';
import { quotaRoutes } from './quotas.js';
import { serverGroupRoutes } from './server-groups.js';
import { aggregateRoutes } from './aggregates.js';
import { extraRoutes } from './extras.js';
import './resize-actions.js';
import { migrationRoutes } from './migrations.js';
import { serverMigrationRoutes } from './live-migration.js';
import { serverNetworkingRoutes } from './server-networking.js';
import { diagnosticsRoutes } from './diagnostics.js';

export const MIN_MICROVERSION = '2.1';
export const MAX_MICROVERSION = '2.79';

function versions(request: FastifyRequest) {
  const base = serviceUrl(request);
  return [
    { id: 'v2.0', status: 'SUPPORTED', version: '', min_version: '', updated: '2011-01-21T11:33:21Z', links: [{ rel: 'self', href: `${base}/v2/` }] },
    { id: 'v2.1', status: 'CURRENT', version: MAX_MICROVERSION, min_version: MIN_MICROVERSION, updated: '2013-07-23T11:33:21Z', links: [{ rel: 'self', href: `${base}/v2.1/` }] },
  ];
}

/** The resources every version prefix serves; each area registers its routes and its policy rules. */
async function resources(app: FastifyInstance, deps: ComputeApiDeps): Promise<void> {
  app.get('/', { config: { public: true } }, async (request) => {
    const v = versions(request)[1];
    return { version: { ...v, 'media-types': [{ base: 'application/json', type: 'application/vnd.openstack.compute+json;version=2.1' }] } };
  });
  hostRoutes(app, deps);
  serverRoutes(app, deps);
  usageRoutes(app, deps);
  serverActionRoutes(app, deps);
  imageActionRoutes(app, deps);
  flavorRoutes(app, deps);
  keypairRoutes(app, deps);
  quotaRoutes(app, deps);
  serverGroupRoutes(app, deps);
  aggregateRoutes(app, deps);
  extraRoutes(app, deps);
  migrationRoutes(app, deps);
  serverMigrationRoutes(app, deps);
  serverNetworkingRoutes(app, deps);
  diagnosticsRoutes(app, deps);
}

export function computeApi(deps: ComputeApiDeps & { tokens: TokenValidator }) {
  return async function computePlugin(app: FastifyInstance): Promise<void> {
    useErrorFormat(app, novaErrorBody);
    app.get('/', { config: { public: true } }, async (request) => ({ versions: versions(request) }));
    // v2.1 negotiates microversions; the legacy v2 endpoint serves the same resources at the minimum.
    app.register(async (v21) => {
      useMicroversions(v21, { service: 'compute', min: MIN_MICROVERSION, max: MAX_MICROVERSION, legacyHeader: 'X-OpenStack-Nova-API-Version' });
      requireAuthentication(v21, deps.tokens);
      await resources(v21, deps);
    }, { prefix: '/v2.1' });
    app.register(async (v2) => {
      useMicroversions(v2, { service: 'compute', min: MIN_MICROVERSION, max: MIN_MICROVERSION });
      requireAuthentication(v2, deps.tokens);
      await resources(v2, deps);
    }, { prefix: '/v2' });
  };
}
