// Security groups and their rules, as Neutron's securitygroups_db does it: a `default` group per
// project made on first use (egress anything; ingress from members of the group itself), rules
// checked and normalised the way Neutron's attribute converters and rule validation do it
// (protocol names and numbers, port ranges, ICMP type/code, ethertype against the prefix's family),
// duplicates refused naming the existing rule. Agents hear about changes after each commit.
import type { Kysely } from 'kysely';
import { BadRequest, Conflict, NotFound } from '../core/errors.js';
import { newUuid } from '../core/ids.js';
import { isUniqueViolation } from '../db/index.js';
import { neutronError } from './api/errors.js';
import { bitsOf, formatAddress, formatCidr, parseAddress, parseCidr } from './addresses.js';
import { removeTags, replaceTags, tagsOf, validateTag } from './tags.js';
import { insertUnlessDuplicate, nowStamp, retryingTransaction } from './transactions.js';
import type { NetworkContext } from './index.js';

export type RuleDirection = 'ingress' | 'egress';
export type Ethertype = 'IPv4' | 'IPv6';

export interface SecurityGroupRule {
  id: string;
  projectId: string;
  securityGroupId: string;
  /** The project of the rule's group (policy's security_group:project_id); usually the rule's own. */
  groupProjectId: string;
  direction: RuleDirection;
  ethertype: Ethertype;
  /** A protocol name or a number's decimal string, as given; null = any protocol. */
  protocol: string | null;
  /** Port range for port protocols; ICMP type (min) and code (max) for icmp/ipv6-icmp. */
  portRangeMin: number | null;
  portRangeMax: number | null;
  /** The prefix as given, with its length ("10.0.0.5/24"); see normalizedCidr. */
  remoteIpPrefix: string | null;
  /** The prefix's network ("10.0.0.0/24"). */
  normalizedCidr: string | null;
  remoteGroupId: string | null;
  description: string;
  /** True when the rule's group is its project's default group. */
  belongsToDefaultGroup: boolean;
  createdAt: string;
  updatedAt: string;
  revisionNumber: number;
}

export interface SecurityGroup {
  id: string;
  projectId: string;
  name: string;
  description: string;
  stateful: boolean;
  isDefault: boolean;
  rules: SecurityGroupRule[];
  tags: string[];
  createdAt: string;
  updatedAt: string;
  revisionNumber: number;
}

/** Who asks. `null` where a method takes a caller means the cloud itself (no scoping). */
export interface SecurityGroupCaller { projectId: string; isAdmin: boolean }

/** A request body's attributes, unconverted: the service converts and checks them as Neutron does. */
export type SecurityGroupAttributes = Record<string, unknown>;

export const DEFAULT_GROUP_DESCRIPTION = 'Default security group';

// ---- Neutron's protocol tables (neutron_lib.constants) -------------------------------------

/** IP_PROTOCOL_MAP, in Neutron's order (its error message lists them so). */
const PROTOCOL_NUMBERS: Record<string, number> = {
  ah: 51, dccp: 33, egp: 8, esp: 50, gre: 47, hopopt: 0, icmp: 1, igmp: 2, ip: 0, ipip: 4,
  'ipv6-encap': 41, 'ipv6-frag': 44, 'ipv6-icmp': 58, icmpv6: 58, 'ipv6-nonxt': 59, 'ipv6-opts': 60,
  'ipv6-route': 43, ospf: 89, pgm: 113, rsvp: 46, sctp: 132, tcp: 6, udp: 17, udplite: 136, vrrp: 112,
};
/** Number → the one normalised name ('58' → 'ipv6-icmp', never the legacy 'icmpv6'). */
const PROTOCOL_NAMES: Record<string, string> = Object.fromEntries(
  Object.entries(PROTOCOL_NUMBERS).filter(([name]) => name !== 'icmpv6').map(([name, number]) => [String(number), name]));
const SUPPORTED_PROTOCOLS = `(None, 'any', ${Object.keys(PROTOCOL_NUMBERS).map((p) => `'${p}'`).join(', ')})`;
/** Protocols whose rules may carry a port range (SG_PORT_PROTO_NUMS). */
const PORT_PROTOCOLS = new Set([33, 132, 6, 17, 136]);
const PORT_PROTOCOL_NAMES = 'DCCP, SCTP, TCP, UDP, UDPLITE';
const ICMP_PROTOCOLS = new Set([1, 58]);
/** Protocols that only exist over IPv6: an IPv4 rule for one is refused. */
const IPV6_ONLY_PROTOCOLS = new Set(['ipv6-encap', 'ipv6-frag', 'ipv6-icmp', 'icmpv6', 'ipv6-nonxt', 'ipv6-opts', 'ipv6-route', '41', '44', '58', '59', '60', '43']);

const invalid = (type: string, message: string) => neutronError(new BadRequest(message), type);
const badAttribute = (attribute: string, reason: string) => new BadRequest(`Invalid input for ${attribute}. Reason: ${reason}.`);
const groupNotFound = (id: string) => neutronError(new NotFound(`Security group ${id} does not exist`), 'SecurityGroupNotFound');
const ruleNotFound = (id: string) => neutronError(new NotFound(`Security group rule ${id} does not exist`), 'SecurityGroupRuleNotFound');
const groupInUse = (id: string) => neutronError(new Conflict(`Security Group ${id} in use.`), 'SecurityGroupInUse');

/** Python's repr of a request value, as Neutron's messages quote it. */
function pyRepr(value: unknown): string {
  if (value === null || value === undefined) return 'None';
  if (typeof value === 'string') return `'${value}'`;
  if (typeof value === 'boolean') return value ? 'True' : 'False';
  return typeof value === 'object' ? JSON.stringify(value) : String(value);
}

function convertProtocol(value: unknown): string | null {
  if (value === null || value === undefined || value === 'any') return null;
  const refuse = () => invalid('SecurityGroupRuleInvalidProtocol',
    `Security group rule protocol ${typeof value === 'string' ? value : pyRepr(value)} not supported. Only protocol values ${SUPPORTED_PROTOCOLS} and integer representations [0 to 255] are supported.`);
  if (typeof value === 'number' || (typeof value === 'string' && /^\s*[+-]?\d+\s*$/.test(value))) {
    const number = Number(value);
    if (!Number.isInteger(number) || number < 0 || number > 255) throw refuse();
    return String(number);
  }
  if (typeof value === 'string' && value.toLowerCase() in PROTOCOL_NUMBERS) return value.toLowerCase();
  throw refuse();
}

function convertPort(value: unknown): number | null {
  if (value === null || value === undefined) return null;
  const number = typeof value === 'number' ? value : typeof value === 'string' && /^\s*[+-]?\d+\s*$/.test(value) ? Number(value) : NaN;
  if (!Number.isFinite(number) || Math.trunc(number) < 0 || Math.trunc(number) > 65535) {
    throw invalid('SecurityGroupInvalidPortValue', `Invalid value for port ${typeof value === 'string' ? value : pyRepr(value)}`);
  }
  return Math.trunc(number);
}

function convertEthertype(value: unknown): Ethertype {
  if (typeof value === 'string') {
    if (value.toLowerCase() === 'ipv4') return 'IPv4';
    if (value.toLowerCase() === 'ipv6') return 'IPv6';
  }
  throw invalid('SecurityGroupRuleInvalidEtherType', `Security group rule for ethertype '${typeof value === 'string' ? value : pyRepr(value)}' not supported. Allowed values are ['IPv4', 'IPv6'].`);
}

function convertBoolean(attribute: string, value: unknown): boolean {
  if (typeof value === 'boolean') return value;
  if (value === 0 || value === 1) return value === 1;
  if (typeof value === 'string') {
    const lower = value.toLowerCase();
    if (lower === 'true' || lower === '1') return true;
    if (lower === 'false' || lower === '0') return false;
  }
  throw badAttribute(attribute, `${pyRepr(value)} cannot be converted to boolean`);
}

function checkString(attribute: string, value: unknown, maxLength = 255): string {
  if (typeof value !== 'string') throw badAttribute(attribute, `${pyRepr(value)} is not a valid string`);
  if (value.length > maxLength) throw badAttribute(attribute, `'${value}' exceeds maximum length of ${maxLength}`);
  return value;
}

function checkTags(value: unknown): string[] {
  if (!Array.isArray(value)) throw badAttribute('tags', `${pyRepr(value)} is not a list`);
  return value.map((tag) => validateTag(tag));
}

function checkGroupName(value: unknown): string {
  const name = checkString('name', value);
  if (name.toLowerCase() === 'default') throw neutronError(new Conflict('Default security group already exists.'), 'SecurityGroupDefaultAlreadyExists');
  return name;
}

// ---- IP prefixes -----------------------------------------------------------------------------

/**
 * A remote_ip_prefix as Neutron keeps it (netaddr's str(IPNetwork)): the address as given in its
 * canonical text, with the length added when missing ("10.0.0.5" → "10.0.0.5/32").
 */
function convertPrefix(value: unknown): { text: string; version: 4 | 6 } | null {
  if (value === null || value === undefined || value === '') return null;
  const [addressText, lengthText, ...rest] = typeof value === 'string' ? value.trim().split('/') : [];
  const address = rest.length === 0 ? parseAddress(addressText) : undefined;
  const bits = address ? bitsOf(address.version) : 0;
  const length = lengthText === undefined ? bits : /^\d{1,3}$/.test(lengthText) ? Number(lengthText) : NaN;
  if (!address || !(length >= 0 && length <= bits)) {
    throw invalid('InvalidCIDR', `Invalid CIDR ${typeof value === 'string' ? value : pyRepr(value)} given as IP prefix.`);
  }
  return { text: `${formatAddress(address.version, address.value)}/${length}`, version: address.version };
}

/** The prefix's network ("10.0.0.5/24" → "10.0.0.0/24"): Neutron's normalized_cidr. */
function normalizedCidr(prefix: string | null): string | null {
  const cidr = prefix === null ? undefined : parseCidr(prefix);
  return cidr ? formatCidr(cidr) : null;
}

// ---- Rules: conversion, validation, identity --------------------------------------------------

/** A rule as checked and normalised, before it has an id. */
interface RuleSpec {
  projectId: string;
  securityGroupId: string;
  direction: RuleDirection;
  ethertype: Ethertype;
  protocol: string | null;
  portRangeMin: number | null;
  portRangeMax: number | null;
  remoteIpPrefix: string | null;
  remoteGroupId: string | null;
  description: string;
}

/** The protocol's number, for range checks ('tcp' → 6, '6' → 6); undefined for any. */
function protocolNumber(protocol: string | null): number | undefined {
  if (protocol === null) return undefined;
  return PROTOCOL_NUMBERS[protocol] ?? Number(protocol);
}

/**
 * Converts a rule body the way Neutron's attribute map does, then applies its rule checks in its
 * order: IPv6 ICMP names made canonical, the full port range dropped, port range / ICMP checks,
 * the prefix's family against the ethertype, IPv6-only protocols, one remote at most.
 */
export function normaliseRule(body: SecurityGroupAttributes, projectId: string): RuleSpec {
  for (const required of ['security_group_id', 'direction']) {
    if (body[required] === undefined) throw new BadRequest(`Failed to parse request. Required attribute '${required}' not specified`);
  }
  const securityGroupId = checkString('security_group_id', body.security_group_id, 36);
  const remoteGroupId = body.remote_group_id === undefined || body.remote_group_id === null || body.remote_group_id === ''
    ? null : checkString('remote_group_id', body.remote_group_id, 36);
  if (body.direction !== 'ingress' && body.direction !== 'egress') {
    throw badAttribute('direction', `${pyRepr(body.direction)} is not in ['ingress', 'egress']`);
  }
  let protocol = convertProtocol(body.protocol);
  let portRangeMin = convertPort(body.port_range_min);
  let portRangeMax = convertPort(body.port_range_max);
  const ethertype = body.ethertype === undefined ? 'IPv4' : convertEthertype(body.ethertype);
  const prefix = convertPrefix(body.remote_ip_prefix);
  const description = body.description === undefined || body.description === null ? '' : checkString('description', body.description);

  if (ethertype === 'IPv6') {
    if (protocol === 'icmp' || protocol === 'icmpv6') protocol = 'ipv6-icmp';
    else if (protocol === '1') protocol = '58';
  }
  if (portRangeMin === 1 && portRangeMax === 65535) { portRangeMin = null; portRangeMax = null; }
  if (portRangeMin !== null || portRangeMax !== null) {
    if (protocol === null) throw invalid('SecurityGroupProtocolRequiredWithPorts', 'Must also specify protocol if port range is given.');
    const number = protocolNumber(protocol)!;
    if (PORT_PROTOCOLS.has(number)) {
      if (portRangeMin === 0 || portRangeMax === 0) throw invalid('SecurityGroupInvalidPortValue', 'Invalid value for port 0');
      if (portRangeMin === null || portRangeMax === null || portRangeMin > portRangeMax) {
        throw invalid('SecurityGroupInvalidPortRange', 'For TCP/UDP protocols, port_range_min must be <= port_range_max');
      }
    } else if (ICMP_PROTOCOLS.has(number)) {
      for (const [value, attribute, field] of [[portRangeMin, 'port_range_min', 'type'], [portRangeMax, 'port_range_max', 'code']] as const) {
        if (value !== null && value > 255) {
          throw invalid('SecurityGroupInvalidIcmpValue', `Invalid value for ICMP ${field} (${attribute}) ${value}. It must be 0 to 255.`);
        }
      }
      if (portRangeMin === null && portRangeMax !== null) {
        throw invalid('SecurityGroupMissingIcmpType', `ICMP code (port-range-max) ${portRangeMax} is provided but ICMP type (port-range-min) is missing.`);
      }
    } else {
      throw invalid('SecurityGroupInvalidProtocolForPort', `Ports cannot be specified for protocol ${number}. Ports are only supported for ${PORT_PROTOCOL_NAMES}.`);
    }
  }
  const remoteIpPrefix = prefix ? prefix.text : null;
  if (prefix && ethertype !== `IPv${prefix.version}`) {
    throw invalid('SecurityGroupRuleParameterConflict', `Conflicting value ethertype ${ethertype} for CIDR ${remoteIpPrefix}`);
  }
  if (protocol !== null && ethertype === 'IPv4' && IPV6_ONLY_PROTOCOLS.has(protocol)) {
    throw invalid('SecurityGroupEthertypeConflictWithProtocol', `Invalid ethertype ${ethertype} for protocol ${protocol}.`);
  }
  if (remoteIpPrefix && remoteGroupId) {
    throw invalid('SecurityGroupMultipleRemoteEntites', 'Only one of remote_ip_prefix or remote_group_id or remote_address_group_id may be provided.');
  }
  return { projectId, securityGroupId, direction: body.direction, ethertype, protocol, portRangeMin, portRangeMax, remoteIpPrefix, remoteGroupId, description };
}

/**
 * What makes two rules the same (Neutron's _rule_to_key): a protocol compares by name and number
 * together ('tcp' = '6'), an any-address prefix (0.0.0.0/0, ::/0) is the same as none.
 */
export function ruleKey(rule: Omit<RuleSpec, 'projectId' | 'description'>): string {
  const none = '+';
  let protocol = none;
  if (rule.protocol !== null) {
    const p = rule.protocol === 'icmpv6' ? 'ipv6-icmp' : rule.protocol;
    const [name, number] = p in PROTOCOL_NUMBERS ? [p, String(PROTOCOL_NUMBERS[p])] : [PROTOCOL_NAMES[p] ?? p, p];
    protocol = `${name}/${number}`;
  }
  const prefix = rule.remoteIpPrefix === null || rule.remoteIpPrefix === '0.0.0.0/0' || rule.remoteIpPrefix === '::/0' ? none : rule.remoteIpPrefix;
  return [rule.direction, rule.ethertype, rule.portRangeMax ?? none, rule.portRangeMin ?? none, protocol,
    rule.remoteGroupId ?? none, none, prefix, rule.securityGroupId].join('_');
}

// ---- Rows --------------------------------------------------------------------------------------

function ruleOf(row: any, defaultGroups: Set<string>, groupProjectId: string): SecurityGroupRule {
  return {
    id: row.id, projectId: row.project_id, securityGroupId: row.security_group_id, groupProjectId, direction: row.direction, ethertype: row.ethertype,
    protocol: row.protocol, portRangeMin: row.port_range_min, portRangeMax: row.port_range_max,
    remoteIpPrefix: row.remote_ip_prefix, normalizedCidr: normalizedCidr(row.remote_ip_prefix), remoteGroupId: row.remote_group_id,
    description: row.description, belongsToDefaultGroup: defaultGroups.has(row.security_group_id),
    createdAt: row.created_at, updatedAt: row.updated_at, revisionNumber: Number(row.revision_number),
  };
}

function ruleRow(id: string, spec: RuleSpec, at: string) {
  return {
    id, project_id: spec.projectId, security_group_id: spec.securityGroupId, direction: spec.direction, ethertype: spec.ethertype,
    protocol: spec.protocol, port_range_min: spec.portRangeMin, port_range_max: spec.portRangeMax, remote_ip_prefix: spec.remoteIpPrefix,
    remote_group_id: spec.remoteGroupId, description: spec.description, dedup_key: ruleKey(spec), created_at: at, updated_at: at, revision_number: 0,
  };
}

/** Neutron's rule templates: every group egresses anywhere; a default group also admits its own members. */
function templateRules(groupId: string, projectId: string, isDefault: boolean): RuleSpec[] {
  const base = { projectId, securityGroupId: groupId, protocol: null, portRangeMin: null, portRangeMax: null, remoteIpPrefix: null, description: '' };
  const rules: RuleSpec[] = [
    { ...base, direction: 'egress', ethertype: 'IPv4', remoteGroupId: null },
    { ...base, direction: 'egress', ethertype: 'IPv6', remoteGroupId: null },
  ];
  if (isDefault) {
    rules.push({ ...base, direction: 'ingress', ethertype: 'IPv4', remoteGroupId: groupId }, { ...base, direction: 'ingress', ethertype: 'IPv6', remoteGroupId: groupId });
  }
  return rules;
}

export class SecurityGroupService {
  constructor(private readonly context: NetworkContext) {}

  private get db(): Kysely<any> { return this.context.database.db; }

  // ---- the contract other areas use -------------------------------------------------------------

  /**
   * The id of the project's `default` group, made (with its four rules) on first use. Safe when
   * several requests make it at once: one insert wins, the others read its row. Call it before
   * opening a transaction of your own (on SQLite the database has one connection); `trx` runs it
   * inside one instead, without the retry.
   */
  async ensureDefault(projectId: string, trx?: Kysely<any>): Promise<string> {
    const existing = await this.defaultGroupId(trx ?? this.db, projectId);
    if (existing) return existing;
    const id = newUuid();
    const at = nowStamp();
    const insertGroup = (t: Kysely<any>) => t.insertInto('network_security_groups').values({
      id, project_id: projectId, name: 'default', description: DEFAULT_GROUP_DESCRIPTION, stateful: 1,
      default_for_project: projectId, created_at: at, updated_at: at, revision_number: 0,
    }).execute();
    const insertRules = async (t: Kysely<any>) => {
      for (const rule of templateRules(id, projectId, true)) await t.insertInto('network_security_group_rules').values(ruleRow(newUuid(), rule, at)).execute();
    };
    if (trx) {
      // Inside the caller's transaction a lost race must not abort it (PostgreSQL would): a savepoint
      // takes the refused insert back, and a locking read sees the winner's committed row.
      if (!(await insertUnlessDuplicate(trx, insertGroup))) {
        const winner = await this.defaultGroupId(trx, projectId, true);
        if (!winner) throw neutronError(new Conflict(`The default security group of project ${projectId} is being made; try again.`), 'SecurityGroupConflict');
        return winner;
      }
      await insertRules(trx);
      return id;
    }
    try {
      return await retryingTransaction(this.context.database, async (t) => { await insertGroup(t); await insertRules(t); return id; });
    } catch (err) {
      if (!isUniqueViolation(err)) throw err;
      const winner = await this.defaultGroupId(this.db, projectId);
      if (!winner) throw err;
      return winner;
    }
  }

  /**
   * Group ids for names or ids (Nova's --security-group, a port's security_groups), as seen from
   * `projectId`: an id must be one of that project's groups (any project's for an admin), a name
   * one of that project's group names (`default` is made when asked for). 404 SecurityGroupNotFound
   * names what was not found; a name two groups share is a 409.
   */
  async resolve(caller: SecurityGroupCaller | null, namesOrIds: string[], projectId: string): Promise<string[]> {
    if (namesOrIds.some((n) => n === 'default')) await this.ensureDefault(projectId);
    const wanted = [...new Set(namesOrIds)];
    if (wanted.length === 0) return [];
    const rows = await this.db.selectFrom('network_security_groups').select(['id', 'name', 'project_id'])
      .where((eb) => eb.or([eb('id', 'in', wanted), eb.and([eb('name', 'in', wanted), eb('project_id', '=', projectId)])])).execute();
    const seesAll = caller === null || caller.isAdmin;
    const missing: string[] = [];
    const ids: string[] = [];
    for (const value of wanted) {
      const byId = rows.find((r) => r.id === value && (seesAll || r.project_id === projectId));
      if (byId) { ids.push(byId.id); continue; }
      const byName = rows.filter((r) => r.name === value && r.project_id === projectId);
      if (byName.length > 1) {
        throw neutronError(new Conflict(`Multiple security_group matches found for name '${value}', use an ID to be more specific.`), 'NoUniqueMatch');
      }
      if (byName.length === 1) ids.push(byName[0].id); else missing.push(value);
    }
    if (missing.length > 0) throw groupNotFound(missing.join(', '));
    return [...new Set(ids)];
  }

  /** Every rule of these groups (what an agent applies to the ports bound to them). */
  async rulesOf(groupIds: string[]): Promise<SecurityGroupRule[]> {
    return this.rules(this.db, { groupIds });
  }

  // ---- groups -----------------------------------------------------------------------------------

  /** Neutron's lists make the default group of the project listed (the caller's, or one an admin filters on). */
  private async ensureDefaultForList(caller: SecurityGroupCaller | null, projectId: string | undefined): Promise<void> {
    if (!caller) return;
    const project = projectId ?? caller.projectId;
    if (project && (project === caller.projectId || caller.isAdmin)) await this.ensureDefault(project);
  }

  /** One group with its rules; 404 when it does not exist or the caller may not see its project. */
  async get(caller: SecurityGroupCaller | null, id: string): Promise<SecurityGroup> {
    const [group] = await this.groups(this.db, { ids: [id], projectId: caller && !caller.isAdmin ? caller.projectId : undefined });
    if (!group) throw groupNotFound(id);
    return group;
  }

  /**
   * The groups the caller sees (an admin: all; else its project's), after making the project's
   * default group as Neutron's list does (the caller's project, or the project it filters on).
   */
  async list(caller: SecurityGroupCaller | null, filter: { projectId?: string } = {}): Promise<SecurityGroup[]> {
    await this.ensureDefaultForList(caller, filter.projectId);
    const scope = caller && !caller.isAdmin ? caller.projectId : filter.projectId;
    return this.groups(this.db, { projectId: scope });
  }

  /** Creates groups (one body or a bulk list) in one transaction, each with its egress rules. */
  async create(caller: SecurityGroupCaller, bodies: SecurityGroupAttributes[]): Promise<SecurityGroup[]> {
    const specs = bodies.map((body) => ({
      projectId: this.ownerOf(caller, body),
      name: body.name === undefined ? '' : checkGroupName(body.name),
      description: body.description === undefined || body.description === null ? '' : checkString('description', body.description),
      stateful: body.stateful === undefined ? true : convertBoolean('stateful', body.stateful),
      tags: body.tags === undefined || body.tags === null ? [] : checkTags(body.tags),
    }));
    // Neutron makes a project's default group before its first other group.
    for (const project of new Set(specs.map((s) => s.projectId))) await this.ensureDefault(project);
    const ids = await retryingTransaction(this.context.database, async (trx) => {
      const perProject = new Map<string, number>();
      for (const spec of specs) perProject.set(spec.projectId, (perProject.get(spec.projectId) ?? 0) + 1);
      for (const [project, count] of perProject) await this.context.services.quotas.check(trx, project, 'security_group', count);
      const created: string[] = [];
      for (const spec of specs) {
        const id = newUuid();
        const at = nowStamp();
        await trx.insertInto('network_security_groups').values({
          id, project_id: spec.projectId, name: spec.name, description: spec.description, stateful: spec.stateful ? 1 : 0,
          default_for_project: null, created_at: at, updated_at: at, revision_number: 0,
        }).execute();
        for (const rule of templateRules(id, spec.projectId, false)) await trx.insertInto('network_security_group_rules').values(ruleRow(newUuid(), rule, at)).execute();
        if (spec.tags.length > 0) await replaceTags(trx, 'security-groups', id, spec.tags);
        created.push(id);
      }
      return created;
    });
    return this.groups(this.db, { ids });
  }

  /** name / description / stateful; the default group keeps its name, a group bound to ports its statefulness. */
  async update(caller: SecurityGroupCaller, id: string, changes: SecurityGroupAttributes): Promise<SecurityGroup> {
    const values: Record<string, unknown> = {};
    if (changes.name !== undefined) values.name = checkGroupName(changes.name);
    if (changes.description !== undefined) values.description = changes.description === null ? '' : checkString('description', changes.description);
    if (changes.stateful !== undefined) values.stateful = convertBoolean('stateful', changes.stateful) ? 1 : 0;
    let statefulChanged = false;
    await retryingTransaction(this.context.database, async (trx) => {
      const [group] = await this.groups(trx, { ids: [id], projectId: caller.isAdmin ? undefined : caller.projectId });
      if (!group) throw groupNotFound(id);
      if ('name' in changes && group.isDefault) {
        throw neutronError(new Conflict('Updating default security group not allowed.'), 'SecurityGroupCannotUpdateDefault');
      }
      if (values.stateful !== undefined && (values.stateful === 1) !== group.stateful) {
        if (await this.boundPortCount(trx, id) > 0) throw groupInUse(id);
        statefulChanged = true;
      }
      await trx.updateTable('network_security_groups')
        .set({ ...values, updated_at: nowStamp(), revision_number: group.revisionNumber + 1 }).where('id', '=', id).execute();
    });
    if (statefulChanged) this.notify([id]);
    return this.get(null, id);
  }

  /**
   * Deletes a group with its rules, and the rules of other groups that name it as their remote
   * group (Neutron's foreign key cascades so). A group bound to a port is in use (409); a
   * project's default group only an admin may delete.
   */
  async delete(caller: SecurityGroupCaller, id: string): Promise<void> {
    const touched = await retryingTransaction(this.context.database, async (trx) => {
      const group = await trx.selectFrom('network_security_groups').selectAll().where('id', '=', id).executeTakeFirst();
      if (!group || (!caller.isAdmin && group.project_id !== caller.projectId)) throw groupNotFound(id);
      if (await this.boundPortCount(trx, id) > 0) throw groupInUse(id);
      if (group.default_for_project !== null && !caller.isAdmin) {
        throw neutronError(new Conflict('Insufficient rights for removing default security group.'), 'SecurityGroupCannotRemoveDefault');
      }
      const referring = await trx.selectFrom('network_security_group_rules').select('security_group_id')
        .where('remote_group_id', '=', id).where('security_group_id', '!=', id).execute();
      await trx.deleteFrom('network_security_group_rules').where((eb) => eb.or([eb('security_group_id', '=', id), eb('remote_group_id', '=', id)])).execute();
      await removeTags(trx, 'security-groups', id);
      await trx.deleteFrom('network_security_groups').where('id', '=', id).execute();
      return [...new Set(referring.map((r) => r.security_group_id as string))];
    });
    if (touched.length > 0) this.notify(touched);
  }

  // ---- rules ------------------------------------------------------------------------------------

  async getRule(caller: SecurityGroupCaller | null, id: string): Promise<SecurityGroupRule> {
    const [rule] = await this.rules(this.db, { ids: [id], visibleTo: caller && !caller.isAdmin ? caller.projectId : undefined });
    if (!rule) throw ruleNotFound(id);
    return rule;
  }

  /** Rules the caller sees: an admin all; else its project's rules and the rules of its groups. */
  async listRules(caller: SecurityGroupCaller | null, filter: { projectId?: string } = {}): Promise<SecurityGroupRule[]> {
    await this.ensureDefaultForList(caller, filter.projectId);
    return this.rules(this.db, { visibleTo: caller && !caller.isAdmin ? caller.projectId : undefined });
  }

  /**
   * Creates rules (one body or a bulk list, all for one group and one project) in one transaction:
   * checked and normalised, the group and any remote group visible to the rule's project, quota
   * security_group_rule, duplicates (in the request or against the group's rules) refused.
   */
  async createRules(caller: SecurityGroupCaller, bodies: SecurityGroupAttributes[]): Promise<SecurityGroupRule[]> {
    const specs = bodies.map((body) => normaliseRule(body, this.ownerOf(caller, body)));
    if (specs.length === 0) return [];
    if (new Set(specs.map((s) => s.securityGroupId)).size > 1) {
      throw invalid('SecurityGroupNotSingleGroupRules', 'Only allowed to update rules for one security profile at a time');
    }
    if (new Set(specs.map((s) => s.projectId)).size > 1) {
      throw invalid('SecurityGroupRulesNotSingleProject', 'Multiple project_ids in bulk security group rule create not allowed');
    }
    const { securityGroupId, projectId } = specs[0];
    const scope = caller.isAdmin ? undefined : projectId;
    const keys = new Set<string>();
    for (const spec of specs) {
      const key = ruleKey(spec);
      if (keys.has(key)) throw neutronError(new Conflict('Duplicate Security Group Rule in POST.'), 'DuplicateSecurityGroupRuleInPost');
      keys.add(key);
    }
    const ids = await retryingTransaction(this.context.database, async (trx) => {
      for (const remote of new Set(specs.map((s) => s.remoteGroupId).filter((r): r is string => r !== null))) {
        if (!(await this.groupExists(trx, remote, scope))) throw groupNotFound(remote);
      }
      const group = await this.groupExists(trx, securityGroupId, scope);
      if (!group) throw groupNotFound(securityGroupId);
      const existing = await trx.selectFrom('network_security_group_rules').select(['id', 'dedup_key'])
        .where('dedup_key', 'in', [...keys]).executeTakeFirst();
      if (existing) throw this.ruleExists(existing.id);
      await this.context.services.quotas.check(trx, projectId, 'security_group_rule', specs.length);
      const at = nowStamp();
      const created: string[] = [];
      for (const spec of specs) {
        const id = newUuid();
        await trx.insertInto('network_security_group_rules').values(ruleRow(id, spec, at)).execute();
        created.push(id);
      }
      await this.touchGroup(trx, securityGroupId, at);
      return created;
    }).catch(async (err) => {
      // Another request made the same rule between our check and our insert.
      if (!isUniqueViolation(err)) throw err;
      const winner = await this.db.selectFrom('network_security_group_rules').select('id').where('dedup_key', 'in', [...keys]).executeTakeFirst();
      throw winner ? this.ruleExists(winner.id) : err;
    });
    this.notify([securityGroupId]);
    const rules = await this.rules(this.db, { ids });
    return ids.map((id) => rules.find((r) => r.id === id)!);
  }

  /** Only a rule's description may change (standard-attr-description). */
  async updateRule(caller: SecurityGroupCaller, id: string, changes: SecurityGroupAttributes): Promise<SecurityGroupRule> {
    const description = changes.description === undefined ? undefined : changes.description === null ? '' : checkString('description', changes.description);
    await retryingTransaction(this.context.database, async (trx) => {
      const [rule] = await this.rules(trx, { ids: [id], visibleTo: caller.isAdmin ? undefined : caller.projectId });
      if (!rule) throw ruleNotFound(id);
      if (description === undefined) return;
      await trx.updateTable('network_security_group_rules')
        .set({ description, updated_at: nowStamp(), revision_number: rule.revisionNumber + 1 }).where('id', '=', id).execute();
    });
    return this.getRule(null, id);
  }

  async deleteRule(caller: SecurityGroupCaller, id: string): Promise<void> {
    const groupId = await retryingTransaction(this.context.database, async (trx) => {
      const [rule] = await this.rules(trx, { ids: [id], visibleTo: caller.isAdmin ? undefined : caller.projectId });
      if (!rule) throw ruleNotFound(id);
      await trx.deleteFrom('network_security_group_rules').where('id', '=', id).execute();
      await this.touchGroup(trx, rule.securityGroupId, nowStamp());
      return rule.securityGroupId;
    });
    this.notify([groupId]);
  }

  // ---- helpers ----------------------------------------------------------------------------------

  /** The project a new group or rule belongs to: the body's project_id (or tenant_id), else the caller's. */
  private ownerOf(caller: SecurityGroupCaller, body: SecurityGroupAttributes): string {
    const project = body.project_id ?? body.tenant_id;
    if (project === undefined || project === null) return caller.projectId;
    if (body.project_id !== undefined && body.tenant_id !== undefined && body.project_id !== body.tenant_id) {
      throw new BadRequest("'project_id' and 'tenant_id' do not match");
    }
    return checkString('project_id', project, 255);
  }

  private ruleExists(id: string) {
    return neutronError(new Conflict(`Security group rule already exists. Rule id is ${id}.`), 'SecurityGroupRuleExists');
  }

  /** `locking`: read the latest committed row (MariaDB's plain reads keep the transaction's first snapshot). */
  private async defaultGroupId(db: Kysely<any>, projectId: string, locking = false): Promise<string | undefined> {
    let query = db.selectFrom('network_security_groups').select('id').where('default_for_project', '=', projectId);
    if (locking && this.context.database.engine !== 'sqlite') query = query.forUpdate();
    const row = await query.executeTakeFirst();
    return row?.id;
  }

  private async groupExists(db: Kysely<any>, id: string, projectId: string | undefined): Promise<boolean> {
    let query = db.selectFrom('network_security_groups').select('id').where('id', '=', id);
    if (projectId !== undefined) query = query.where('project_id', '=', projectId);
    return (await query.executeTakeFirst()) !== undefined;
  }

  /** Ports bound to the group (network_port_security_groups, written by the port service). */
  private async boundPortCount(db: Kysely<any>, groupId: string): Promise<number> {
    const row = await db.selectFrom('network_port_security_groups').select((eb) => eb.fn.countAll().as('n'))
      .where('security_group_id', '=', groupId).executeTakeFirst();
    return Number(row?.n ?? 0);
  }

  /** A rule added or removed is a change of its group: revision and updated_at move (Neutron's revises_on_change). */
  private async touchGroup(trx: Kysely<any>, groupId: string, at: string): Promise<void> {
    await trx.updateTable('network_security_groups')
      .set((eb) => ({ updated_at: at, revision_number: eb('revision_number', '+', 1) })).where('id', '=', groupId).execute();
  }

  private async groups(db: Kysely<any>, filter: { ids?: string[]; projectId?: string }): Promise<SecurityGroup[]> {
    if (filter.ids && filter.ids.length === 0) return [];
    let query = db.selectFrom('network_security_groups').selectAll();
    if (filter.ids) query = query.where('id', 'in', filter.ids);
    if (filter.projectId !== undefined) query = query.where('project_id', '=', filter.projectId);
    const rows = await query.orderBy('created_at').orderBy('id').execute();
    if (rows.length === 0) return [];
    const defaults = new Set(rows.filter((r) => r.default_for_project !== null).map((r) => r.id as string));
    const tags = await tagsOf(db, 'security-groups', rows.map((r) => r.id as string));
    const ruleRows = await db.selectFrom('network_security_group_rules').selectAll()
      .where('security_group_id', 'in', rows.map((r) => r.id)).orderBy('created_at').orderBy('id').execute();
    return rows.map((row) => ({
      id: row.id, projectId: row.project_id, name: row.name, description: row.description, stateful: Number(row.stateful) === 1,
      isDefault: row.default_for_project !== null,
      rules: ruleRows.filter((r) => r.security_group_id === row.id).map((r) => ruleOf(r, defaults, row.project_id)),
      tags: tags.get(row.id) ?? [],
      createdAt: row.created_at, updatedAt: row.updated_at, revisionNumber: Number(row.revision_number),
    }));
  }

  /** Rules by id, or those a project sees (its own rules and the rules of its groups). */
  private async rules(db: Kysely<any>, filter: { ids?: string[]; groupIds?: string[]; visibleTo?: string }): Promise<SecurityGroupRule[]> {
    if ((filter.ids && filter.ids.length === 0) || (filter.groupIds && filter.groupIds.length === 0)) return [];
    let query = db.selectFrom('network_security_group_rules as r').innerJoin('network_security_groups as g', 'g.id', 'r.security_group_id')
      .selectAll('r').select(['g.default_for_project as group_default_for', 'g.project_id as group_project_id']);
    if (filter.ids) query = query.where('r.id', 'in', filter.ids);
    if (filter.groupIds) query = query.where('r.security_group_id', 'in', filter.groupIds);
    if (filter.visibleTo !== undefined) {
      const project = filter.visibleTo;
      query = query.where((eb) => eb.or([eb('r.project_id', '=', project), eb('g.project_id', '=', project)]));
    }
    const rows = await query.orderBy('r.created_at').orderBy('r.id').execute();
    const defaults = new Set(rows.filter((r) => r.group_default_for !== null).map((r) => r.security_group_id as string));
    return rows.map((r) => ruleOf(r, defaults, r.group_project_id));
  }

  /** Tells the agents after a commit; a lost cast must not fail the request (agents resync). */
  private notify(groupIds: string[]): void {
    Promise.resolve().then(() => this.context.services.agents.notifySecurityGroupsChanged(groupIds)).catch((err: unknown) => {
      this.context.logger.warn(`security group change of ${groupIds.join(', ')} not sent to the agents: ${(err as Error).message}`);
    });
  }
}
