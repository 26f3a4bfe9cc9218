// Shared pieces of the Neutron REST layer: the caller, policy, and the list conventions every
// collection follows (filters by any attribute, `fields`, `sort_key`/`sort_dir`, `limit`/`marker`
// with `<collection>_links`).
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { BadRequest, Forbidden, NotFound } from '../../core/errors.js';
import { authOf } from '../../http/auth.js';
import type { PolicyEngine } from '../../http/policy.js';
import type { NetworkServices } from '../index.js';
import type { Database } from '../../db/index.js';
import { neutronError } from './errors.js';

export interface NetworkApiDeps {
  network: NetworkServices;
  /** For the few routes that touch rows of several areas at once (tags). */
  database: Database;
  policy: PolicyEngine;
  /** [DEFAULT] pagination_max_limit: the largest page any list returns (-1: no limit). */
  maxLimit: number;
}

/** What an API area contributes: its routes, its policy defaults and the extensions it serves (/v2.0/extensions). */
export interface NetworkApiArea {
  routes(app: FastifyInstance, deps: NetworkApiDeps): void;
  policy: Record<string, string>;
  extensions: NeutronExtension[];
}

export interface NeutronExtension { alias: string; name: string; description: string; updated: string }

export { callerOf, type Caller } from '../../http/auth.js';

/**
 * Checks a Neutron policy rule (create_network, get_port:binding:host_id, ...) against the
 * resource (its project_id/tenant_id and whatever the rule names). Neutron hides resources
 * the caller may not see: `hideAs404` makes a refused read a 404 of that resource.
 */
export function authorize(deps: NetworkApiDeps, request: FastifyRequest, action: string, target: Record<string, unknown> = {}, hideAs404?: string): void {
  if (allowed(deps, request, action, target)) return;
  if (hideAs404) throw new NotFound(hideAs404);
  throw neutronError(new Forbidden(`(rule:${action}) is disallowed by policy`), 'PolicyNotAuthorized');
}

export function allowed(deps: NetworkApiDeps, request: FastifyRequest, action: string, target: Record<string, unknown> = {}): boolean {
  const auth = authOf(request);
  const project = (target.project_id ?? target.tenant_id ?? auth.projectId) as string | undefined;
  return deps.policy.enforce(action, { ...target, project_id: project, tenant_id: project }, auth.credentials);
}

/** Where this request reached the service: http://host:port/networking */
export function serviceUrl(request: FastifyRequest): string {
  const proto = (request.headers['x-forwarded-proto'] as string | undefined) ?? request.protocol;
  return `${proto}://${request.headers.host}/networking`;
}

type Query = Record<string, string | string[] | undefined>;
const RESERVED = new Set(['fields', 'sort_key', 'sort_dir', 'limit', 'marker', 'page_reverse', 'tags', 'tags-any', 'not-tags', 'not-tags-any']);

/**
 * One Neutron list, done on rendered objects: filters (`?name=a&name=b` matches either; values are
 * compared as the rendered JSON's string form, so booleans are `true`/`false` and numbers plain),
 * tag filters, sorting by `sort_key`/`sort_dir` pairs, paging, then `fields`. Unknown filter
 * attributes are ignored, as Neutron does for attributes that are not filterable. Filters in
 * `options.handled` are left to the route.
 */
export function listView<T extends Record<string, unknown>>(request: FastifyRequest, deps: NetworkApiDeps, collection: string, items: T[], options: { handled?: string[] } = {}): Record<string, unknown> {
  // `handled`: filters the route applied itself (e.g. ports' fixed_ips=ip_address=...).
  const query = Object.fromEntries(Object.entries(request.query as Query).filter(([key]) => !options.handled?.includes(key))) as Query;
  const all = (key: string) => { const v = query[key]; return v === undefined ? [] : Array.isArray(v) ? v : [v]; };
  let result = items.filter((item) => {
    for (const [key, raw] of Object.entries(query)) {
      if (RESERVED.has(key) || raw === undefined || !(key in item)) continue;
      const wanted = Array.isArray(raw) ? raw : [raw];
      const value = item[key];
      const text = (v: unknown) => (v === null ? '' : typeof v === 'object' ? JSON.stringify(v) : String(v));
      if (Array.isArray(value)) { if (!wanted.some((w) => value.map(text).includes(w))) return false; continue; }
      // Booleans filter as Neutron converts them: True, true, 1 (clients send ?router:external=True).
      if (typeof value === 'boolean') { if (!wanted.some((w) => /^(true|1)$/i.test(w) === value && /^(true|false|1|0)$/i.test(w))) return false; continue; }
      if (!wanted.includes(text(value))) return false;
    }
    const tags = (item.tags as string[] | undefined) ?? [];
    const split = (key: string) => all(key).flatMap((v) => v.split(',')).filter(Boolean);
    if (split('tags').some((t) => !tags.includes(t))) return false;
    const any = split('tags-any'); if (any.length > 0 && !any.some((t) => tags.includes(t))) return false;
    const not = split('not-tags'); if (not.length > 0 && not.every((t) => tags.includes(t))) return false;
    if (split('not-tags-any').some((t) => tags.includes(t))) return false;
    return true;
  });
  const keys = all('sort_key');
  const dirs = all('sort_dir');
  if (dirs.length > 0 && dirs.length !== keys.length) throw new BadRequest('The number of sort_keys and sort_dirs must be same');
  for (const dir of dirs) if (dir !== 'asc' && dir !== 'desc') throw new BadRequest(`Sort direction ${dir} is not supported`);
  for (const key of keys) if (result.length > 0 && !(key in result[0])) throw new BadRequest(`${key} is invalid attribute for sort_keys`);
  const sortKeys = keys.length > 0 ? keys : ['id'];
  result = [...result].sort((a, b) => {
    for (let i = 0; i < sortKeys.length; i++) {
      const x = a[sortKeys[i]] as any; const y = b[sortKeys[i]] as any;
      const order = x === y ? 0 : x === null || x === undefined ? -1 : y === null || y === undefined ? 1 : x < y ? -1 : 1;
      if (order !== 0) return dirs[i] === 'desc' ? -order : order;
    }
    return 0;
  });
  const body: Record<string, unknown> = {};
  const limitText = all('limit').at(-1);
  const marker = all('marker').at(-1);
  let page = result;
  if (limitText !== undefined || marker !== undefined) {
    let limit = limitText === undefined ? Number.MAX_SAFE_INTEGER : Number(limitText);
    if (!Number.isInteger(limit) || limit < 0) throw new BadRequest(`Limit must be an integer 0 or greater and not '${limitText}'`);
    if (limit === 0) limit = Number.MAX_SAFE_INTEGER;
    if (deps.maxLimit > 0) limit = Math.min(limit, deps.maxLimit);
    let start = 0;
    if (marker !== undefined) {
      const index = result.findIndex((item) => item.id === marker);
      if (index < 0) throw new NotFound(`Marker ${marker} could not be found.`);
      start = index + 1;
    }
    page = result.slice(start, start + limit);
    const links: { rel: string; href: string }[] = [];
    const base = `${serviceUrl(request)}${request.url.split('?')[0].replace(/^\/networking/, '')}`;
    const params = new URLSearchParams(request.url.split('?')[1] ?? '');
    if (page.length > 0 && start + limit < result.length) {
      params.set('marker', String(page[page.length - 1].id)); params.set('limit', String(limit));
      links.push({ rel: 'next', href: `${base}?${params.toString()}` });
    }
    if (marker !== undefined && page.length > 0) {
      params.set('marker', String(page[0].id)); params.set('limit', String(limit)); params.set('page_reverse', 'True');
      links.push({ rel: 'previous', href: `${base}?${params.toString()}` });
    }
    if (links.length > 0) body[`${collection}_links`] = links;
  }
  body[collection] = page.map((item) => selectFields(request, item));
  return body;
}

/** `?fields=a&fields=b` keeps only those attributes (Neutron always keeps none extra). */
export function selectFields<T extends Record<string, unknown>>(request: FastifyRequest, item: T): Partial<T> {
  const raw = (request.query as Query).fields;
  const fields = raw === undefined ? [] : Array.isArray(raw) ? raw : [raw];
  if (fields.length === 0) return item;
  return Object.fromEntries(Object.entries(item).filter(([key]) => fields.includes(key))) as Partial<T>;
}

/** The body's one resource object (`{"network": {...}}`), or a 400 in Neutron's words. */
export function resourceBody(body: unknown, resource: string): Record<string, unknown> {
  const value = (body as Record<string, unknown> | null | undefined)?.[resource];
  if (value === undefined || value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new BadRequest(`Resource body required`);
  }
  return value as Record<string, unknown>;
}
