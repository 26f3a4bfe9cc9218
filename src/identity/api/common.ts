// Shared pieces of the Keystone REST layer: links, list bodies, query parsing, policy.
import type { FastifyRequest } from 'fastify';
import { BadRequest } from '../../core/errors.js';
import { authOf } from '../../http/auth.js';
import type { PolicyEngine } from '../../http/policy.js';
import type { IdentityService } from '../service.js';
import type { TokenService } from '../tokens.js';

export interface IdentityApiDeps {
  identity: IdentityService;
  tokens: TokenService;
  policy: PolicyEngine;
}

/** Where this request reached the service: http://host:port/identity */
export function serviceUrl(request: FastifyRequest): string {
  const proto = (request.headers['x-forwarded-proto'] as string | undefined) ?? request.protocol;
  return `${proto}://${request.headers.host}/identity`;
}

export function v3Url(request: FastifyRequest, path = ''): string {
  return `${serviceUrl(request)}/v3${path}`;
}

export function withLinks<T extends object>(request: FastifyRequest, collection: string, entity: T & { id: string }): T & { links: { self: string } } {
  return { ...entity, links: { self: v3Url(request, `/${collection}/${entity.id}`) } };
}

export function listBody(request: FastifyRequest, key: string, items: unknown[]): Record<string, unknown> {
  return { [key]: items, links: { self: `${serviceUrl(request)}${request.url.replace(/^\/identity/, '')}`, previous: null, next: null } };
}

export type Query = Record<string, string | undefined>;

export function queryOf(request: FastifyRequest): Query {
  const out: Query = {};
  for (const [k, v] of Object.entries(request.query as Record<string, unknown>)) out[k] = Array.isArray(v) ? String(v[v.length - 1]) : (v as string | undefined);
  return out;
}

/** Keystone accepts true/false in any case, 1/0, and a bare key (`?enabled`) as true. */
export function boolQuery(query: Query, key: string): boolean | undefined {
  const value = query[key];
  if (value === undefined) return undefined;
  const v = value.toLowerCase();
  if (v === '' || v === 'true' || v === '1' || v === 'yes') return true;
  if (v === 'false' || v === '0' || v === 'no') return false;
  throw new BadRequest(`Invalid input for field '${key}': '${value}' is not a boolean.`);
}

/**
 * A key-only flag (`?effective`, `?include_names`, `?parents_as_list`...) read as Keystone's
 * query_filter_is_true does: present with any value but "0" is true.
 */
export function flagQuery(query: Query, key: string): boolean {
  return query[key] !== undefined && query[key] !== '0';
}

export function listQuery(query: Query, key: string): string[] | undefined {
  return query[key] === undefined ? undefined : query[key]!.split(',').filter(Boolean);
}

/**
 * Enforces a policy rule. The rules reach the target's attributes as `%(target.<attr>)s`
 * (the default rules of policy.ts, and Keystone's); the same attributes are also given
 * unprefixed, as Keystone passes the URL's view arguments (`user_id:%(user_id)s`).
 */
export function authorize(deps: IdentityApiDeps, request: FastifyRequest, action: string, target: Record<string, unknown> = {}): void {
  deps.policy.authorize(action, { ...target, target }, authOf(request).credentials);
}

/** Splits an entity body into known fields and the free-form rest Keystone keeps as extra attributes. */
export function splitExtra<T extends Record<string, unknown>>(body: T, known: string[]): { known: Partial<T>; extra: Record<string, unknown> } {
  const knownPart: Partial<T> = {};
  const extra: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(body)) {
    if (known.includes(k)) (knownPart as Record<string, unknown>)[k] = v;
    else if (k !== 'links' && k !== 'id') extra[k] = v;
  }
  return { known: knownPart, extra };
}

/** Keystone's _require_matching_id: a PATCH body may repeat the entity's id, never change it. */
export function requireMatchingId(entity: unknown, id: string): void {
  const given = (entity as { id?: unknown } | null)?.id;
  if (given !== undefined && given !== null && given !== id) throw new BadRequest('Cannot change ID');
}

/** JSON schema of a body {<key>: {...}} whose entity has the given properties. */
export function entitySchema(key: string, properties: Record<string, object>, required: string[] = [], additional = true): object {
  return {
    type: 'object',
    required: [key],
    properties: { [key]: { type: 'object', required, properties, additionalProperties: additional } },
  };
}

export const nameSchema = { type: 'string', minLength: 1, maxLength: 255, pattern: '[\\S]' };
export const nullableString = { type: ['string', 'null'] };
export const idSchema = { type: 'string', minLength: 1, maxLength: 64 };
