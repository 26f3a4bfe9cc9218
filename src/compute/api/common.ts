// Shared pieces of the Nova REST layer: dependencies, the caller, policy, query parsing, links.
import type { FastifyRequest } from 'fastify';
import { BadRequest, Forbidden } from '../../core/errors.js';
import { authOf } from '../../http/auth.js';
import type { PolicyEngine } from '../../http/policy.js';
import type { ComputeServices } from '../index.js';

export interface ComputeApiDeps {
  compute: ComputeServices;
  policy: PolicyEngine;
  /** [api] max_limit: the largest page any list returns. */
  maxLimit: number;
}

export { callerOf, type Caller } from '../../http/auth.js';

/**
 * Checks a Nova policy rule against a target ({project_id, user_id} of the resource; the
 * caller's own project by default); a refusal is a 403 in Nova's words, naming the rule.
 */
export function authorize(deps: ComputeApiDeps, request: FastifyRequest, action: string, target?: Record<string, unknown>): void {
  if (!allowed(deps, request, action, target)) throw new Forbidden(`Policy doesn't allow ${action} to be performed.`);
}

export function allowed(deps: ComputeApiDeps, request: FastifyRequest, action: string, target?: Record<string, unknown>): boolean {
  const auth = authOf(request);
  return deps.policy.enforce(action, target ?? { project_id: auth.projectId, user_id: auth.userId }, auth.credentials);
}

/** Where this request reached the service: http://host:port/compute */
export function serviceUrl(request: FastifyRequest): string {
  const proto = (request.headers['x-forwarded-proto'] as string | undefined) ?? request.protocol;
  return `${proto}://${request.headers.host}/compute`;
}

/** Nova's self and bookmark links for a resource: .../v2.1/<collection>/<id> and .../<collection>/<id>. */
export function resourceLinks(request: FastifyRequest, collection: string, id: string | number) {
  const base = serviceUrl(request);
  return [
    { rel: 'self', href: `${base}/v2.1/${collection}/${id}` },
    { rel: 'bookmark', href: `${base}/${collection}/${id}` },
  ];
}

export type Query = Record<string, string | string[] | undefined>;

export function queryOf(request: FastifyRequest): Query {
  return request.query as Query;
}

/** The last value of a query parameter given once or several times. */
export function one(query: Query, key: string): string | undefined {
  const value = query[key];
  return Array.isArray(value) ? value[value.length - 1] : value;
}

/** Nova's boolean parsing for query strings (strutils.bool_from_string, strict). */
export function boolQuery(query: Query, key: string): boolean | undefined {
  const value = one(query, key);
  if (value === undefined) return undefined;
  const v = value.toLowerCase();
  if (['1', 't', 'true', 'on', 'y', 'yes'].includes(v)) return true;
  if (['0', 'f', 'false', 'off', 'n', 'no'].includes(v)) return false;
  throw new BadRequest(`Invalid input for query parameters ${key}. Value: ${value}. Unrecognized value '${value}', acceptable values are: '0', '1', 'f', 'false', 'n', 'no', 'off', 'on', 't', 'true', 'y', 'yes'`);
}

/** ISO 8601 without fractions, as Nova renders created/updated. */
export function novaTime(iso: string | null | undefined): string | null {
  return iso ? iso.replace(/\.\d+Z$/, 'Z') : null;
}
