// Request validation the way Nova does it (nova/api/validation): a JSON-schema subset checked
// in Nova's keyword order, with Nova's messages — "Invalid input for field/attribute ram.
// Value: 0. 0 is less than the minimum of 1" for bodies, "Invalid input for query parameters
// limit. Value: -1. ..." for query strings — and Nova's numeric-string handling of minimum and
// maximum. Values are printed the way Python prints them, as Nova's messages do.
import type { FastifyRequest } from 'fastify';
import { BadRequest } from '../../core/errors.js';

export interface Schema {
  type?: string | string[];
  properties?: Record<string, Schema>;
  patternProperties?: Record<string, Schema>;
  required?: string[];
  additionalProperties?: boolean;
  minProperties?: number;
  maxProperties?: number;
  enum?: unknown[];
  format?: 'name' | 'name_with_leading_trailing_spaces' | 'az_name' | 'az_name_with_leading_trailing_spaces' | 'uuid';
  minLength?: number;
  maxLength?: number;
  pattern?: string;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  items?: Schema;
  prefixItems?: Schema[];
  additionalItems?: boolean;
  minItems?: number;
  maxItems?: number;
  uniqueItems?: boolean;
  oneOf?: Schema[];
  anyOf?: Schema[];
  allOf?: Schema[];
}

// ---- Python-style rendering -------------------------------------------------------------

function pyString(s: string): string {
  const quote = s.includes("'") && !s.includes('"') ? '"' : "'";
  const body = s.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/\r/g, '\\r').replace(/\t/g, '\\t');
  return quote + (quote === "'" ? body.replace(/'/g, "\\'") : body) + quote;
}

function pyNumber(n: number): string {
  if (Number.isInteger(n) && Math.abs(n) < 1e16) return String(n);
  return String(n);
}

/** Python's repr() of a JSON value. */
export function pyRepr(value: unknown): string {
  if (value === null || value === undefined) return 'None';
  if (value === true) return 'True';
  if (value === false) return 'False';
  if (typeof value === 'number') return pyNumber(value);
  if (typeof value === 'string') return pyString(value);
  if (Array.isArray(value)) return `[${value.map(pyRepr).join(', ')}]`;
  return `{${Object.entries(value as Record<string, unknown>).map(([k, v]) => `${pyString(k)}: ${pyRepr(v)}`).join(', ')}}`;
}

/** Python's str() of a JSON value (strings bare, everything else as repr). */
export function pyStr(value: unknown): string {
  return typeof value === 'string' ? value : pyRepr(value);
}

// ---- formats ------------------------------------------------------------------------------

// Printable: not a control/format/unassigned character (C*), and not a line or paragraph
// separator; horizontal spaces (Zs) are printable but may not lead or trail a name.
const NAME = /^(?![\p{C}\p{Z}])[^\p{C}\p{Zl}\p{Zp}]*(?<![\p{C}\p{Z}])$/u;
const NAME_WITH_SPACES = /^[^\p{C}\p{Zl}\p{Zp}]*[^\p{C}\p{Z}][^\p{C}\p{Zl}\p{Zp}]*$/u;
const AZ_NAME = /^(?![\p{C}\p{Z}])[^\p{C}\p{Zl}\p{Zp}:]*(?<![\p{C}\p{Z}])$/u;
const AZ_NAME_WITH_SPACES = /^[^\p{C}\p{Zl}\p{Zp}:]*[^\p{C}\p{Z}:][^\p{C}\p{Zl}\p{Zp}:]*$/u;
/** parameter_types.valid_description_regex: printable characters only. */
export const DESCRIPTION_PATTERN = '^[^\\p{C}\\p{Zl}\\p{Zp}]*$';

const NAME_REASONS: Record<string, string> = {
  name: 'printable characters. Can not start or end with whitespace.',
  name_with_leading_trailing_spaces: 'printable characters with at least one non space character',
  az_name: 'printable characters except :.Can not start or end with whitespace.',
  az_name_with_leading_trailing_spaces: 'printable characters except :, with at least one non space character',
};

function formatOk(format: string, value: unknown): boolean {
  if (typeof value !== 'string') return format === 'uuid';
  switch (format) {
    case 'name': return NAME.test(value);
    case 'name_with_leading_trailing_spaces': return NAME_WITH_SPACES.test(value);
    case 'az_name': return AZ_NAME.test(value);
    case 'az_name_with_leading_trailing_spaces': return AZ_NAME_WITH_SPACES.test(value);
    case 'uuid': return isUuidLike(value);
    default: return true;
  }
}

/** oslo's is_uuid_like: 32 hex digits, dashes optional, any case. */
export function isUuidLike(value: string): boolean {
  return /^[0-9a-f]{32}$/i.test(value.replace(/-/g, '')) && /^[0-9a-f-]+$/i.test(value) && (value.length === 32 || value.length === 36);
}

// ---- validation ---------------------------------------------------------------------------

interface Failure { path: (string | number)[]; instance: unknown; message: string; invalidName?: string }

function typeMatches(type: string, value: unknown): boolean {
  switch (type) {
    case 'string': return typeof value === 'string';
    case 'integer': return typeof value === 'number' && Number.isInteger(value);
    case 'number': return typeof value === 'number';
    case 'boolean': return typeof value === 'boolean';
    case 'null': return value === null;
    case 'array': return Array.isArray(value);
    case 'object': return value !== null && typeof value === 'object' && !Array.isArray(value);
    default: return false;
  }
}

/** Nova's numeric-string handling for minimum/maximum: '10' counts as 10; non-numbers are skipped. */
function numberOf(value: unknown): number | undefined {
  if (typeof value === 'number') return value;
  if (typeof value === 'string' && value.trim() !== '' && !Number.isNaN(Number(value))) return Number(value);
  return undefined;
}

function deepEqual(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

function check(schema: Schema, value: unknown, path: (string | number)[]): Failure | undefined {
  const fail = (message: string): Failure => ({ path, instance: value, message });
  if (schema.type !== undefined) {
    const types = Array.isArray(schema.type) ? schema.type : [schema.type];
    if (!types.some((t) => typeMatches(t, value))) return fail(`${pyRepr(value)} is not of type ${types.map((t) => pyRepr(t)).join(', ')}`);
  }
  if (schema.allOf) for (const sub of schema.allOf) { const f = check(sub, value, path); if (f) return f; }
  if (schema.oneOf) {
    const matches = schema.oneOf.filter((sub) => check(sub, value, path) === undefined).length;
    if (matches === 0) return fail(`${pyRepr(value)} is not valid under any of the given schemas`);
    if (matches > 1) return fail(`${pyRepr(value)} is valid under each of ${schema.oneOf.map((s) => pyRepr(s)).join(', ')}`);
  }
  if (schema.anyOf && !schema.anyOf.some((sub) => check(sub, value, path) === undefined)) {
    return fail(`${pyRepr(value)} is not valid under any of the given schemas`);
  }
  if (schema.enum && !schema.enum.some((e) => deepEqual(e, value))) return fail(`${pyRepr(value)} is not one of ${pyRepr(schema.enum)}`);
  if (schema.format && !formatOk(schema.format, value)) {
    const reason = NAME_REASONS[schema.format];
    if (reason) return { ...fail(`An invalid 'name' value was provided. The name must be: ${reason}`), invalidName: reason };
    return fail(`${pyRepr(value)} is not a ${pyRepr(schema.format)}`);
  }
  if (typeof value === 'string') {
    const length = [...value].length;
    if (schema.minLength !== undefined && length < schema.minLength) return fail(schema.minLength === 1 && length === 0 ? `${pyRepr(value)} should be non-empty` : `${pyRepr(value)} is too short`);
    if (schema.maxLength !== undefined && length > schema.maxLength) return fail(`${pyRepr(value)} is too long`);
    if (schema.pattern !== undefined && !new RegExp(schema.pattern, 'u').test(value)) return fail(`${pyRepr(value)} does not match ${pyRepr(schema.pattern)}`);
  }
  const n = schema.minimum !== undefined || schema.maximum !== undefined ? numberOf(value) : undefined;
  if (n !== undefined && typeof value !== 'boolean') {
    if (schema.minimum !== undefined && n < schema.minimum) return { path, instance: value, message: `${pyNumber(n)} is less than the minimum of ${pyNumber(schema.minimum)}` };
    if (schema.maximum !== undefined && n > schema.maximum) return { path, instance: value, message: `${pyNumber(n)} is greater than the maximum of ${pyNumber(schema.maximum)}` };
  }
  if (schema.exclusiveMinimum !== undefined && typeof value === 'number' && value <= schema.exclusiveMinimum) {
    return fail(`${pyNumber(value)} is less than or equal to the minimum of ${pyNumber(schema.exclusiveMinimum)}`);
  }
  if (Array.isArray(value)) {
    if (schema.minItems !== undefined && value.length < schema.minItems) return fail(schema.minItems === 1 && value.length === 0 ? `${pyRepr(value)} should be non-empty` : `${pyRepr(value)} is too short`);
    if (schema.maxItems !== undefined && value.length > schema.maxItems) return fail(`${pyRepr(value)} is too long`);
    if (schema.uniqueItems && new Set(value.map((v) => JSON.stringify(v))).size !== value.length) return fail(`${pyRepr(value)} has non-unique elements`);
    if (schema.prefixItems) {
      for (let i = 0; i < Math.min(value.length, schema.prefixItems.length); i++) {
        const f = check(schema.prefixItems[i], value[i], [...path, i]);
        if (f) return f;
      }
    }
    if (schema.items) {
      for (let i = 0; i < value.length; i++) {
        const f = check(schema.items, value[i], [...path, i]);
        if (f) return f;
      }
    }
  }
  if (typeMatches('object', value)) {
    const object = value as Record<string, unknown>;
    const keys = Object.keys(object);
    for (const [key, sub] of Object.entries(schema.properties ?? {})) {
      if (key in object) {
        const f = check(sub, object[key], [...path, key]);
        if (f) return f;
      }
    }
    const patterns = Object.entries(schema.patternProperties ?? {}).map(([p, sub]) => [new RegExp(p, 'u'), sub] as const);
    for (const key of keys) {
      for (const [re, sub] of patterns) {
        if (re.test(key)) {
          const f = check(sub, object[key], [...path, key]);
          if (f) return f;
        }
      }
    }
    for (const key of schema.required ?? []) if (!(key in object)) return fail(`${pyRepr(key)} is a required property`);
    if (schema.minProperties !== undefined && keys.length < schema.minProperties) return fail(schema.minProperties === 1 ? `${pyRepr(object)} should be non-empty` : `${pyRepr(object)} does not have enough properties`);
    if (schema.maxProperties !== undefined && keys.length > schema.maxProperties) return fail(`${pyRepr(object)} has too many properties`);
    if (schema.additionalProperties === false) {
      const extra = keys.filter((k) => !(k in (schema.properties ?? {})) && !patterns.some(([re]) => re.test(k)));
      if (extra.length) {
        if (patterns.length) {
          return fail(`${pyRepr(extra.sort())} do${extra.length === 1 ? 'es' : ''} not match any of the regexes: ${Object.keys(schema.patternProperties ?? {}).map((p) => pyRepr(p)).join(', ')}`);
        }
        return fail(`Additional properties are not allowed (${extra.map((k) => pyRepr(k)).join(', ')} ${extra.length === 1 ? 'was' : 'were'} unexpected)`);
      }
    }
  }
  return undefined;
}

/** Validates a request body; throws 400 with Nova's message. */
export function validateBody(schema: Schema, body: unknown): void {
  const failure = check(schema, body, []);
  if (!failure) return;
  if (failure.invalidName) throw new BadRequest(failure.message);
  if (failure.path.length === 0) throw new BadRequest(failure.message);
  const last = failure.path[failure.path.length - 1];
  throw new BadRequest(`Invalid input for field/attribute ${last}. Value: ${pyStr(failure.instance)}. ${failure.message}`);
}

/**
 * Validates the query string (each parameter as the list of its values, as Nova sees it).
 * `properties` maps a parameter to the schema of one value; `additional` false refuses others.
 */
export function validateQuery(request: FastifyRequest, properties: Record<string, Schema>, additional: boolean): Record<string, string[]> {
  const params = queryLists(request);
  for (const [key, values] of Object.entries(params)) {
    const schema = properties[key];
    if (!schema) {
      if (!additional) throw new BadRequest(`Invalid input for query parameters ${key}. Value: ${pyStr(values)}. Additional properties are not allowed ('${key}' was unexpected)`);
      continue;
    }
    for (const value of values) {
      const failure = check(schema, value, [key]);
      if (failure) throw new BadRequest(`Invalid input for query parameters ${key}. Value: ${pyStr(value)}. ${failure.message}`);
    }
  }
  return params;
}

/** The query string as lists of values, in order. */
export function queryLists(request: FastifyRequest): Record<string, string[]> {
  const search = request.url.includes('?') ? request.url.slice(request.url.indexOf('?') + 1) : '';
  const out: Record<string, string[]> = {};
  for (const [key, value] of new URLSearchParams(search)) (out[key] ??= []).push(value);
  return out;
}

// ---- common parameter types (nova/api/validation/parameter_types.py) -----------------------

export const types = {
  name: { type: 'string', format: 'name', minLength: 1, maxLength: 255 } as Schema,
  nameWithSpaces: { type: 'string', format: 'name_with_leading_trailing_spaces', minLength: 1, maxLength: 255 } as Schema,
  azName: { type: 'string', format: 'az_name', minLength: 1, maxLength: 255 } as Schema,
  boolean: {
    type: ['boolean', 'string'],
    enum: [true, 'True', 'TRUE', 'true', '1', 'ON', 'On', 'on', 'YES', 'Yes', 'yes',
      false, 'False', 'FALSE', 'false', '0', 'OFF', 'Off', 'off', 'NO', 'No', 'no'],
  } as Schema,
  positiveInteger: { type: ['integer', 'string'], pattern: '^[0-9]*$', minimum: 1, minLength: 1 } as Schema,
  nonNegativeInteger: { type: ['integer', 'string'], pattern: '^[0-9]*$', minimum: 0, minLength: 1 } as Schema,
  fqdn: { type: 'string', pattern: '^[a-zA-Z0-9-._]*$', minLength: 1, maxLength: 255 } as Schema,
  metadata: { type: 'object', patternProperties: { '^[a-zA-Z0-9-_:. ]{1,255}$': { type: 'string', maxLength: 255 } }, additionalProperties: false } as Schema,
  metadataWithNull: { type: 'object', patternProperties: { '^[a-zA-Z0-9-_:. ]{1,255}$': { type: ['string', 'null'], maxLength: 255 } }, additionalProperties: false } as Schema,
};

/** strutils.bool_from_string for the values types.boolean admits. */
export function toBool(value: unknown): boolean {
  if (typeof value === 'boolean') return value;
  return ['1', 't', 'true', 'on', 'y', 'yes'].includes(String(value).toLowerCase());
}

/** Nova's common.normalize_name: strips surrounding whitespace (v2.0 admits it). */
export function normalizeName(name: string): string {
  return name.trim();
}
