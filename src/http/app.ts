// The Fastify app factory shared by every service: request ids, JSON handling, and a
// fallback error format. Each service registers itself as a plugin under its own prefix
// and installs its own error format with useErrorFormat().
import Fastify, { type FastifyInstance } from 'fastify';
import { newUuid } from '../core/ids.js';
import type { Logger } from '../core/log.js';
import { useErrorFormat } from './errors.js';

export interface HttpAppOptions {
  logger: Logger;
  /** Largest accepted request body for JSON APIs (image data uses streams, not this). */
  bodyLimit?: number;
}

export function createHttpApp(options: HttpAppOptions): FastifyInstance {
  const app = Fastify({
    logger: false,
    bodyLimit: options.bodyLimit ?? 1024 * 1024,
    genReqId: () => `req-${newUuid()}`,
    // OpenStack rejects wrong JSON types rather than coercing them; query strings are parsed by hand.
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, allErrors: false, allowUnionTypes: true } },
    routerOptions: { ignoreTrailingSlash: true, maxParamLength: 500 },
    keepAliveTimeout: 65_000,
    // HEAD routes are declared where the API reference has them, not derived from every GET.
    exposeHeadRoutes: false,
  });
  app.decorate('logger', options.logger);
  app.addHook('onRequest', async (request, reply) => {
    reply.header('X-OpenStack-Request-Id', request.id);
  });
  app.addHook('onResponse', async (request, reply) => {
    options.logger.debug(`${request.method} ${request.url} ${reply.statusCode}`, { request_id: request.id });
  });
  // Clients send `Content-Type: application/json` with empty bodies on DELETE and actions.
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser(['application/json', 'application/openstack-images-v2.1-json-patch'], { parseAs: 'string' }, (request, body, done) => {
    const text = (body as string).trim();
    if (text === '') return done(null, undefined);
    try {
      done(null, JSON.parse(text));
    } catch {
      const err = new Error('The request body is not valid JSON.') as Error & { statusCode: number };
      err.statusCode = 400;
      done(err, undefined);
    }
  });
  useErrorFormat(app, (err) => ({ error: { code: err.status, title: err.title, message: err.message } }));
  return app;
}

declare module 'fastify' {
  interface FastifyInstance { logger: Logger }
}
