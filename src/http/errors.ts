// Turns any error into a NuboError and renders it in the service's own OpenStack format.
import type { FastifyInstance, FastifyError } from 'fastify';
import { NuboError, BadRequest, NotFound, InternalError } from '../core/errors.js';

export type ErrorRenderer = (err: NuboError) => unknown;

/** Maps Fastify's own errors (validation, bad JSON, body too large) onto our hierarchy. */
export function toNuboError(err: unknown): NuboError {
  if (err instanceof NuboError) return err;
  const fe = err as FastifyError;
  if (fe?.validation && fe.validation.length > 0) {
    const v = fe.validation[0];
    const where = (v.instancePath || '').replace(/^\//, '').replace(/\//g, '.');
    const field = v.keyword === 'required' ? (v.params as { missingProperty: string }).missingProperty
      : v.keyword === 'additionalProperties' ? (v.params as { additionalProperty: string }).additionalProperty
      : where;
    const message = v.keyword === 'additionalProperties' ? `Additional properties are not allowed ('${field}' was unexpected)`
      : v.keyword === 'required' ? `'${field}' is a required property`
      : `'${field}' ${v.message}`;
    return new BadRequest(`Invalid input for field '${where || fe.validationContext || 'body'}': ${message}`);
  }
  const status = fe?.statusCode;
  if (typeof status === 'number' && status >= 400 && status < 500) {
    const error = new NuboError(status, titleFor(status), fe.message);
    return error;
  }
  return new InternalError();
}

function titleFor(status: number): string {
  return ({ 400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 405: 'Method Not Allowed',
    406: 'Not Acceptable', 409: 'Conflict', 413: 'Request Entity Too Large', 415: 'Unsupported Media Type' } as Record<number, string>)[status] ?? 'Error';
}

/** Installs a service's error format for every route in this (encapsulated) plugin scope. */
export function useErrorFormat(app: FastifyInstance, render: ErrorRenderer): void {
  app.setErrorHandler((err, request, reply) => {
    const error = toNuboError(err);
    if (error.status >= 500) {
      app.logger.error(`${request.method} ${request.url} failed`, { request_id: request.id, error: (err as Error)?.stack ?? String(err) });
    }
    reply.status(error.status).type('application/json').send(render(error));
  });
  app.setNotFoundHandler((request, reply) => {
    const error = new NotFound(`The resource could not be found.`);
    reply.status(404).type('application/json').send(render(error));
  });
}
