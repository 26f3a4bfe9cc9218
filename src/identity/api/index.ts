// The Keystone v3 REST API, mounted under /identity.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { requireAuthentication } from '../../http/auth.js';
import { useErrorFormat } from '../../http/errors.js';
import { appCredRoutes } from './app-creds.js';
import { authRoutes } from './auth.js';
import { catalogRoutes } from './catalog.js';
import { serviceUrl, type IdentityApiDeps } from './common.js';
import { resourceRoutes } from './resources.js';
import { roleRoutes } from './roles.js';

export const IDENTITY_API_VERSION = 'v3.14';

function versionDocument(request: FastifyRequest) {
  return {
    id: IDENTITY_API_VERSION,
    status: 'stable',
    updated: '2020-04-07T00:00:00Z',
    links: [{ rel: 'self', href: `${serviceUrl(request)}/v3/` }],
    'media-types': [{ base: 'application/json', type: 'application/vnd.openstack.identity-v3+json' }],
  };
}

export function identityApi(deps: IdentityApiDeps) {
  return async function identityPlugin(app: FastifyInstance): Promise<void> {
    useErrorFormat(app, (err) => ({ error: { code: err.status, title: err.title, message: err.message } }));
    requireAuthentication(app, deps.tokens);

    // Version discovery: the service root lists versions (300), /v3 describes itself.
    app.get('/', { config: { public: true } }, async (request, reply) => {
      reply.status(300);
      return { versions: { values: [versionDocument(request)] } };
    });
    app.get('/v3', { config: { public: true } }, async (request) => ({ version: versionDocument(request) }));

    authRoutes(app, deps);
    resourceRoutes(app, deps);
    roleRoutes(app, deps);
    catalogRoutes(app, deps);
    appCredRoutes(app, deps);
  };
}
