// The Neutron v2.0 REST API, mounted under /networking. Thin: validate → authorize → call the
// service → render. Errors in Neutron's format. Each area (api/<area>.ts) brings its routes,
// its policy defaults and the extensions it serves; /v2.0/extensions lists exactly those.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { NotFound } from '../../core/errors.js';
import { requireAuthentication, type TokenValidator } from '../../http/auth.js';
import { useErrorFormat } from '../../http/errors.js';
import { serviceUrl, type NetworkApiArea, type NetworkApiDeps, type NeutronExtension } from './common.js';
import { neutronErrorBody, neutronError } from './errors.js';
import { networkArea } from './networks.js';
import { subnetArea } from './subnets.js';
import { portArea } from './ports.js';
import { quotaArea } from './quotas.js';
import { agentArea } from './agents.js';
import { securityGroupArea } from './security-groups.js';
import { routerArea } from './routers.js';
import { floatingIpArea } from './floating-ips.js';

export const NETWORK_API_AREAS: NetworkApiArea[] = [networkArea, subnetArea, portArea, quotaArea, agentArea, securityGroupArea, routerArea, floatingIpArea];

function version(request: FastifyRequest) {
  return { id: 'v2.0', status: 'CURRENT', links: [{ rel: 'self', href: `${serviceUrl(request)}/v2.0/` }] };
}

export function extensionView(extension: NeutronExtension) {
  return { ...extension, links: [] };
}

export function networkApi(deps: NetworkApiDeps & { tokens: TokenValidator }) {
  const extensions = NETWORK_API_AREAS.flatMap((area) => area.extensions).sort((a, b) => a.alias.localeCompare(b.alias));
  return async function networkPlugin(app: FastifyInstance): Promise<void> {
    useErrorFormat(app, neutronErrorBody);
    requireAuthentication(app, deps.tokens);
    app.get('/', { config: { public: true } }, async (request) => ({ versions: [version(request)] }));
    app.get('/v2.0', { config: { public: true } }, async (request) => ({ resources: resourcesOf(request) }));
    app.get('/v2.0/extensions', async () => ({ extensions: extensions.map(extensionView) }));
    app.get('/v2.0/extensions/:alias', async (request) => {
      const { alias } = request.params as { alias: string };
      const found = extensions.find((e) => e.alias === alias);
      if (!found) throw neutronError(new NotFound(`Extension with alias ${alias} does not exist`), 'HTTPNotFound');
      return { extension: extensionView(found) };
    });
    for (const area of NETWORK_API_AREAS) area.routes(app, deps);
  };
}

function resourcesOf(request: FastifyRequest) {
  const base = `${serviceUrl(request)}/v2.0`;
  return ['subnet', 'network', 'subnetpool', 'port'].map((name) => ({
    name, collection: `${name}s`, links: [{ rel: 'self', href: `${base}/${name}s` }],
  }));
}
