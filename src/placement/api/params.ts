// Query-string parsing shared by GET /resource_providers and GET /allocation_candidates:
// resources, required (!forbidden, in:any-of), member_of (in:, !), in_tree, granular suffixes.
import type { FastifyRequest } from 'fastify';
import { CODES, badQuery } from '../errors.js';
import type { CandidateQuery, PlacementService, RequestGroup } from '../service.js';
import { atLeast } from './microversion.js';

export type Query = Record<string, string | string[] | undefined>;
export const UUID = /^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$/;

export const all = (value: string | string[] | undefined): string[] => (value === undefined ? [] : Array.isArray(value) ? value : [value]);

/** A parameter that may appear once. */
export function single(query: Query, name: string): string | undefined {
  const values = all(query[name]);
  if (values.length > 1) throw badQuery(`Invalid query string parameters: '${name}' may be given only once.`, CODES.duplicateKey);
  return values[0];
}

export function rejectUnknown(query: Query, allowed: (key: string) => boolean): void {
  for (const key of Object.keys(query)) {
    if (!allowed(key)) throw badQuery(`Invalid query string parameters: Additional properties are not allowed ('${key}' was unexpected)`);
  }
}

/** "VCPU:2,MEMORY_MB:512" -> { VCPU: 2, MEMORY_MB: 512 }. */
export function parseResources(text: string, param = 'resources'): Record<string, number> {
  const out: Record<string, number> = {};
  if (text.trim() === '') throw badQuery(`Badly formed ${param} parameter. Expected ${param} query string parameter in form: ?${param}=VCPU:2,MEMORY_MB:1024. Got: empty string.`);
  for (const part of text.split(',')) {
    const m = /^\s*([A-Z0-9_]+)\s*:\s*(-?\d+)\s*$/.exec(part);
    if (!m) throw badQuery(`Badly formed ${param} parameter. Expected ${param} query string parameter in form: ?${param}=VCPU:2,MEMORY_MB:1024. Got: ${text}.`);
    const amount = Number(m[2]);
    if (amount < 1) throw badQuery(`Requested resource ${m[1]} expected positive integer amount. Got: ${m[2]}.`);
    if (m[1] in out) throw badQuery(`Badly formed ${param} parameter: resource class ${m[1]} given more than once.`);
    out[m[1]] = amount;
  }
  return out;
}

interface TraitTerms { required: string[]; forbidden: string[]; requiredAny: string[][] }

/** required=A,!B (1.22) and required=in:A,B (1.39); several required params AND together (1.39). */
export function parseTraits(request: FastifyRequest, values: string[], param: string): TraitTerms {
  const terms: TraitTerms = { required: [], forbidden: [], requiredAny: [] };
  if (values.length > 1 && !atLeast(request, 39)) throw badQuery(`Invalid query string parameters: '${param}' may be given only once.`, CODES.duplicateKey);
  for (const value of values) {
    if (value.startsWith('in:')) {
      if (!atLeast(request, 39)) throw badQuery(`Invalid query string parameters: 'in:' is not supported in '${param}' before microversion 1.39.`);
      const names = value.slice(3).split(',').map((s) => s.trim());
      if (names.some((n) => n === '' || n.startsWith('!'))) throw badQuery(`Invalid query string parameters: '${param}' has a malformed 'in:' list: ${value}`);
      terms.requiredAny.push(names);
      continue;
    }
    for (const raw of value.split(',').map((s) => s.trim())) {
      if (raw === '') throw badQuery(`Invalid query string parameters: Expected '${param}' parameter value of the form: HW_CPU_X86_VMX,CUSTOM_MAGIC. Got: ${value}`);
      if (raw.startsWith('!')) {
        if (!atLeast(request, 22)) throw badQuery(`Invalid query string parameters: Expected '${param}' parameter value of the form: HW_CPU_X86_VMX,CUSTOM_MAGIC. Got: ${value}`);
        terms.forbidden.push(raw.slice(1));
      } else {
        terms.required.push(raw);
      }
    }
  }
  const conflicting = terms.required.filter((t) => terms.forbidden.includes(t));
  if (conflicting.length) throw badQuery(`Conflicting required and forbidden traits found in the following traits keys: ${param}: (${conflicting.join(', ')})`);
  return terms;
}

interface AggregateTerms { memberOf: string[][]; forbiddenAggregates: string[] }

/** member_of=in:a,b / member_of=a (1.3), repeated (1.24), !a / !in:a,b (1.32). */
export function parseMemberOf(request: FastifyRequest, values: string[], param: string): AggregateTerms {
  const terms: AggregateTerms = { memberOf: [], forbiddenAggregates: [] };
  if (values.length > 1 && !atLeast(request, 24)) throw badQuery(`Invalid query string parameters: '${param}' may be given only once.`, CODES.duplicateKey);
  for (let value of values) {
    let negative = false;
    if (value.startsWith('!')) {
      if (!atLeast(request, 32)) throw badQuery(`Invalid query string parameters: Expected '${param}' parameter to contain valid UUID(s). Got: ${value}`);
      negative = true;
      value = value.slice(1);
    }
    const inList = value.startsWith('in:');
    const uuids = (inList ? value.slice(3) : value).split(',').map((s) => s.trim());
    if (!inList && uuids.length > 1) throw badQuery(`Invalid query string parameters: Expected '${param}' parameter to contain valid UUID(s). Got: ${value}`);
    for (const u of uuids) if (!UUID.test(u)) throw badQuery(`Invalid query string parameters: Expected '${param}' parameter to contain valid UUID(s). Got: ${value}`);
    const normalized = uuids.map(normalizeUuid);
    if (negative) {
      terms.forbiddenAggregates.push(...normalized);
    } else {
      terms.memberOf.push(normalized);
    }
  }
  return terms;
}

export function normalizeUuid(text: string): string {
  const hex = text.replace(/-/g, '').toLowerCase();
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

export function parseInTree(value: string | undefined, param: string): string | undefined {
  if (value === undefined) return undefined;
  if (!UUID.test(value)) throw badQuery(`Invalid query string parameters: Expected '${param}' parameter to be a format of uuid. Got: ${value}`);
  return normalizeUuid(value);
}

/** Every class and trait named must exist (400 otherwise), as Placement checks. */
export async function checkNames(placement: PlacementService, groups: RequestGroup[], extraTraits: string[] = []): Promise<void> {
  for (const group of groups) {
    for (const cls of Object.keys(group.resources)) {
      if (!(await placement.resourceClassExists(cls))) throw badQuery(`Invalid resource class in resources parameter: No such resource class ${cls}.`);
    }
  }
  const traits = [...groups.flatMap((g) => [...(g.required ?? []), ...(g.forbidden ?? []), ...(g.requiredAny ?? []).flat()]), ...extraTraits];
  const unknown = await placement.unknownTraits(traits);
  if (unknown.length) throw badQuery(`No such trait(s): ${unknown.join(', ')}`);
}

const GRANULAR_DIGITS = /^(resources|required|member_of|in_tree)([1-9][0-9]*)$/;
const GRANULAR_STRING = /^(resources|required|member_of|in_tree)([a-zA-Z0-9_-]{1,64})$/;
const CANDIDATE_BASE = new Set(['resources', 'required', 'member_of', 'in_tree', 'limit', 'group_policy', 'root_required', 'same_subtree']);

/** GET /allocation_candidates query -> CandidateQuery, gated by microversion. */
export async function parseCandidateQuery(request: FastifyRequest, placement: PlacementService): Promise<CandidateQuery> {
  const query = request.query as Query;
  const granularKeys = new Map<string, Record<string, string[]>>();
  for (const key of Object.keys(query)) {
    if (CANDIDATE_BASE.has(key)) continue;
    const m = (atLeast(request, 33) ? GRANULAR_STRING : GRANULAR_DIGITS).exec(key);
    if (!m || !atLeast(request, 25)) throw badQuery(`Invalid query string parameters: Additional properties are not allowed ('${key}' was unexpected)`);
    const entry = granularKeys.get(m[2]) ?? {};
    entry[m[1]] = all(query[key]);
    granularKeys.set(m[2], entry);
  }
  const gate = (name: string, minor: number) => {
    if (query[name] !== undefined && !atLeast(request, minor)) throw badQuery(`Invalid query string parameters: Additional properties are not allowed ('${name}' was unexpected)`);
  };
  gate('limit', 16); gate('required', 17); gate('member_of', 21); gate('group_policy', 25); gate('in_tree', 31); gate('root_required', 35); gate('same_subtree', 36);

  const resourcesText = single(query, 'resources');
  const unsuffixed: RequestGroup = { resources: resourcesText === undefined ? {} : parseResources(resourcesText) };
  Object.assign(unsuffixed, parseTraits(request, all(query.required), 'required'));
  Object.assign(unsuffixed, parseMemberOf(request, all(query.member_of), 'member_of'));
  unsuffixed.inTree = parseInTree(single(query, 'in_tree'), 'in_tree');

  const granular: Record<string, RequestGroup> = {};
  for (const [suffix, params] of granularKeys) {
    const param = (base: string) => `${base}${suffix}`;
    if (!params.resources) {
      throw badQuery(`Invalid query string parameters: All traits parameters must be associated with resources. Found the following orphaned traits keys: ${Object.keys(params).map(param).join(', ')}`);
    }
    if (params.resources.length > 1) throw badQuery(`Invalid query string parameters: '${param('resources')}' may be given only once.`, CODES.duplicateKey);
    const group: RequestGroup = { resources: parseResources(params.resources[0], param('resources')) };
    Object.assign(group, parseTraits(request, params.required ?? [], param('required')));
    Object.assign(group, parseMemberOf(request, params.member_of ?? [], param('member_of')));
    if ((params.in_tree ?? []).length > 1) throw badQuery(`Invalid query string parameters: '${param('in_tree')}' may be given only once.`, CODES.duplicateKey);
    group.inTree = parseInTree(params.in_tree?.[0], param('in_tree'));
    granular[suffix] = group;
  }
  if (Object.keys(unsuffixed.resources).length === 0 && Object.keys(granular).length === 0) {
    throw badQuery('Badly formed resources parameter. Expected resources query string parameter in form: ?resources=VCPU:2,MEMORY_MB:1024. Got: empty string.');
  }
  const policy = single(query, 'group_policy');
  if (policy !== undefined && policy !== 'none' && policy !== 'isolate') {
    throw badQuery(`Invalid query string parameters: '${policy}' is not one of ['none', 'isolate']`);
  }
  if (Object.keys(granular).length > 1 && policy === undefined) {
    throw badQuery('The "group_policy" parameter is required when specifying more than one "resources{N}" parameter.');
  }
  const limitText = single(query, 'limit');
  let limit: number | undefined;
  if (limitText !== undefined) {
    if (!/^[1-9][0-9]*$/.test(limitText)) throw badQuery(`Invalid query string parameters: Failed validating 'pattern' in schema['properties']['limit']: '${limitText}' does not match '^[1-9][0-9]*$'`);
    limit = Number(limitText);
  }
  const root = parseTraits(request, all(query.root_required), 'root_required');
  const sameSubtree = all(query.same_subtree).map((v) => v.split(',').map((s) => s.trim()));
  for (const suffixes of sameSubtree) {
    for (const s of suffixes) if (!(s in granular)) throw badQuery(`Real suffixes should be specified in same_subtree: ${s} not found in [${Object.keys(granular).join(', ')}].`);
  }
  await checkNames(placement, [unsuffixed, ...Object.values(granular)], [...root.required, ...root.forbidden, ...root.requiredAny.flat()]);
  return {
    unsuffixed, granular, groupPolicy: policy as 'none' | 'isolate' | undefined, limit,
    rootRequired: root.required, rootForbidden: root.forbidden, rootRequiredAny: root.requiredAny,
    sameSubtree: sameSubtree.length ? sameSubtree : undefined,
  };
}
