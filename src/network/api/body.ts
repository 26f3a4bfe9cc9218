// Reading Neutron request bodies: each attribute converted as Neutron's attribute map does
// (booleans from true/"True"/"1", integers from numbers or digit strings), unknown attributes
// refused with Neutron's "Unrecognized attribute(s)" and read-only ones on update refused.
import type { FastifyRequest } from 'fastify';
import { BadRequest } from '../../core/errors.js';
import { neutronError } from './errors.js';
import { allowed, authorize, callerOf, type NetworkApiDeps } from './common.js';

export const badInput = (attribute: string, reason: string) =>
  neutronError(new BadRequest(`Invalid input for ${attribute}. Reason: ${reason}.`), 'HTTPBadRequest');

export class BodyReader {
  constructor(readonly body: Record<string, unknown>) {}

  has(key: string): boolean { return this.body[key] !== undefined; }

  /** Refuses attributes outside `known` (Neutron: 400 Unrecognized attribute(s)). */
  only(known: string[]): this {
    const unknown = Object.keys(this.body).filter((k) => !known.includes(k));
    if (unknown.length > 0) throw neutronError(new BadRequest(`Unrecognized attribute(s) '${unknown.join(', ')}'`), 'HTTPBadRequest');
    return this;
  }

  /** Refuses attributes that cannot change after create (Neutron: "Cannot update read-only attribute"). */
  notUpdatable(keys: string[]): this {
    for (const key of keys) if (this.has(key)) throw neutronError(new BadRequest(`Cannot update read-only attribute ${key}`), 'HTTPBadRequest');
    return this;
  }

  string(key: string, max = 255): string | undefined {
    const value = this.body[key];
    if (value === undefined) return undefined;
    if (typeof value !== 'string') throw badInput(key, `'${JSON.stringify(value)}' is not a valid string`);
    if (value.length > max) throw badInput(key, `'${value}' exceeds maximum length of ${max}`);
    return value;
  }

  /** A string that may be null (e.g. gateway_ip: null means none). */
  nullableString(key: string, max = 255): string | null | undefined {
    return this.body[key] === null ? null : this.string(key, max);
  }

  boolean(key: string): boolean | undefined {
    const value = this.body[key];
    if (value === undefined) return undefined;
    if (typeof value === 'boolean') return value;
    if (value === 1 || value === 0) return value === 1;
    if (typeof value === 'string' && /^(true|false|1|0)$/i.test(value)) return /^(true|1)$/i.test(value);
    throw badInput(key, `'${JSON.stringify(value)}' cannot be converted to boolean`);
  }

  integer(key: string): number | undefined {
    const value = this.body[key];
    if (value === undefined || value === null) return undefined;
    const number = typeof value === 'string' && /^-?\d+$/.test(value) ? Number(value) : value;
    if (typeof number !== 'number' || !Number.isInteger(number)) throw badInput(key, `'${JSON.stringify(value)}' is not an integer`);
    return number;
  }

  list<T = unknown>(key: string): T[] | undefined {
    const value = this.body[key];
    if (value === undefined) return undefined;
    if (value === null) return [];
    if (!Array.isArray(value)) throw badInput(key, `'${JSON.stringify(value)}' is not a list`);
    return value as T[];
  }

  stringList(key: string): string[] | undefined {
    const list = this.list(key);
    if (list && list.some((v) => typeof v !== 'string')) throw badInput(key, `'${JSON.stringify(list)}' is not a list of strings`);
    return list as string[] | undefined;
  }

  object(key: string): Record<string, unknown> | undefined {
    const value = this.body[key];
    if (value === undefined || value === null) return value === null ? {} : undefined;
    if (typeof value !== 'object' || Array.isArray(value)) throw badInput(key, `'${JSON.stringify(value)}' is not a dictionary`);
    return value as Record<string, unknown>;
  }
}

/**
 * The project a new resource belongs to: the caller's, or the one in the body (tenant_id /
 * project_id) — another project's only for an admin, as Neutron's API requires.
 */
export function owningProject(request: FastifyRequest, body: BodyReader): string {
  const caller = callerOf(request);
  const tenant = body.string('tenant_id'); const project = body.string('project_id');
  if (tenant !== undefined && project !== undefined && tenant !== project) throw neutronError(new BadRequest('Both tenant_id and project_id passed as attributes, they do not match.'), 'HTTPBadRequest');
  const asked = project ?? tenant;
  if (asked !== undefined && asked !== caller.projectId && !caller.isAdmin) {
    throw neutronError(new BadRequest("Specifying 'project_id' or 'tenant_id' other than the authenticated project in request requires admin privileges"), 'HTTPBadRequest');
  }
  return asked ?? caller.projectId;
}

/** `<action>_<resource>:<attribute>` for each attribute of the body that has such a rule. */
export function authorizeAttributes(deps: NetworkApiDeps, request: FastifyRequest, action: string, body: BodyReader, attributes: string[], target: Record<string, unknown>): void {
  for (const attribute of attributes) if (body.has(attribute)) authorize(deps, request, `${action}:${attribute}`, target);
}

/** Drops attributes the caller may not see (get_<resource>:<attribute> rules). */
export function hideAttributes<T extends Record<string, unknown>>(deps: NetworkApiDeps, request: FastifyRequest, resource: string, item: T, attributes: string[], target: Record<string, unknown> = item): T {
  const result: Record<string, unknown> = { ...item };
  for (const attribute of attributes) if (attribute in result && !allowed(deps, request, `get_${resource}:${attribute}`, target)) delete result[attribute];
  return result as T;
}
