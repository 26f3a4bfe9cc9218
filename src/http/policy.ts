// The one policy engine every service uses: oslo.policy's rule language, so operators
// can reuse the policy.yaml files and rule strings they already know from OpenStack.
//
// Rules (oslo.policy syntax):
//   @ or ""               always allowed          !                      never allowed
//   role:admin            has the role (case-insensitive; %(key)s substitutes from the target)
//   rule:other            the result of another named rule
//   attr:%(path)s         credential attribute (dotted path) equals a target value
//   attr:literal          credential attribute equals a literal (True/False compare as Python prints them)
//   'literal':%(path)s    a literal on the left compares with the target value
//   not, and, or, ( )     precedence not > and > or
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { Forbidden } from '../core/errors.js';

export interface Credentials {
  user_id?: string;
  user_domain_id?: string;
  project_id?: string;
  project_domain_id?: string;
  domain_id?: string;
  /** 'all' when the token is system scoped. */
  system_scope?: string;
  /** Role names, lower-case, with implied roles already expanded. */
  roles: string[];
  is_admin_project?: boolean;
  /** The legacy context flag that `is_admin:True` rules test. */
  is_admin?: boolean;
  /** oslo credentials are an open dict: rules may reach any attribute by dotted path (e.g. token.domain.id). */
  [attribute: string]: unknown;
}

/** A parsed rule. Each rule string is parsed once, when it is registered or loaded. */
type Rule =
  | { kind: 'always' }
  | { kind: 'never' }
  | { kind: 'rule'; name: string }
  | { kind: 'role'; match: Template }
  | { kind: 'generic'; literal?: string; path: string[]; match: Template }
  | { kind: 'not'; operand: Rule }
  | { kind: 'and' | 'or'; operands: Rule[] };

/** A right-hand side with its `%(key)s` substitutions split out. */
type Template = Array<string | { path: string[] }>;

export class PolicyEngine {
  private readonly defaults = new Map<string, Rule>();
  private readonly defaultTexts = new Map<string, string>();
  private readonly overrides = new Map<string, Rule>();

  constructor(defaults: Record<string, string> = {}) {
    this.register(defaults);
  }

  /**
   * Adds default rules; a service calls this with its own defaults. Every service shares this
   * one engine, so a name registered again with another rule is a clash between services.
   */
  register(defaults: Record<string, string>): void {
    for (const [name, text] of Object.entries(defaults)) {
      const earlier = this.defaultTexts.get(name);
      if (earlier !== undefined && earlier !== text) throw new Error(`Policy rule ${name} is registered twice: "${earlier}" and "${text}"`);
    }
    for (const [name, rule] of parseRules(defaults, 'defaults')) this.defaults.set(name, rule);
    for (const [name, text] of Object.entries(defaults)) this.defaultTexts.set(name, text);
  }

  /**
   * Loads a policy file (policy.yaml or policy.json; JSON is valid YAML). Its entries win over
   * defaults, including defaults registered later. Loading several files layers them in order.
   */
  loadOverrides(path: string): void {
    let data: unknown;
    try {
      data = parseYaml(readFileSync(path, 'utf8'));
    } catch (err) {
      throw new Error(`Cannot read policy file ${path}: ${(err as Error).message}`);
    }
    if (data === null || data === undefined) return; // an empty file overrides nothing
    if (typeof data !== 'object' || Array.isArray(data)) {
      throw new Error(`Policy file ${path} must map rule names to rule strings`);
    }
    for (const [name, rule] of parseRules(data as Record<string, unknown>, `policy file ${path}`)) {
      this.overrides.set(name, rule);
    }
  }

  /** True when `creds` may perform `action` on `target`. Unknown actions fall back to the `default` rule, else deny. */
  enforce(action: string, target: Record<string, unknown>, creds: Credentials): boolean {
    const name = this.lookup(action) ? action : 'default';
    return this.evaluate(name, target, creds, new Set());
  }

  /** Like enforce, but throws Forbidden with Keystone's message when denied. */
  authorize(action: string, target: Record<string, unknown>, creds: Credentials): void {
    if (!this.enforce(action, target, creds)) {
      throw new Forbidden(`You are not authorized to perform the requested action: ${action}.`);
    }
  }

  private lookup(name: string): Rule | undefined {
    return this.overrides.get(name) ?? this.defaults.get(name);
  }

  // `active` holds the rules being evaluated on the current path, so a reference cycle denies instead of looping.
  private evaluate(name: string, target: Record<string, unknown>, creds: Credentials, active: Set<string>): boolean {
    const rule = this.lookup(name);
    if (!rule || active.has(name)) return false; // an unknown rule fails closed, as oslo intends
    active.add(name);
    try {
      return this.check(rule, target, creds, active);
    } finally {
      active.delete(name);
    }
  }

  private check(rule: Rule, target: Record<string, unknown>, creds: Credentials, active: Set<string>): boolean {
    switch (rule.kind) {
      case 'always':
        return true;
      case 'never':
        return false;
      case 'rule':
        return this.evaluate(rule.name, target, creds, active);
      case 'not':
        return !this.check(rule.operand, target, creds, active);
      case 'and':
        return rule.operands.every((r) => this.check(r, target, creds, active));
      case 'or':
        return rule.operands.some((r) => this.check(r, target, creds, active));
      case 'role': {
        const wanted = substitute(rule.match, target)?.toLowerCase();
        if (wanted === undefined || !Array.isArray(creds.roles)) return false;
        return creds.roles.some((role) => typeof role === 'string' && role.toLowerCase() === wanted);
      }
      case 'generic': {
        const wanted = substitute(rule.match, target);
        if (wanted === undefined) return false; // a missing target value never matches
        if (rule.literal !== undefined) return rule.literal === wanted;
        return resolve(creds, rule.path, true).some((value) => pythonStr(value) === wanted);
      }
    }
  }
}

function parseRules(rules: Record<string, unknown>, source: string): Map<string, Rule> {
  // Parse everything first so a bad entry leaves the engine unchanged.
  const parsed = new Map<string, Rule>();
  for (const [name, text] of Object.entries(rules)) {
    if (typeof text !== 'string') {
      throw new Error(`Invalid policy rule "${name}" in ${source}: expected a rule string, got ${JSON.stringify(text)}`);
    }
    try {
      parsed.set(name, parseRule(text));
    } catch (err) {
      throw new Error(`Invalid policy rule "${name}" in ${source}: ${(err as Error).message} in ${JSON.stringify(text)}`);
    }
  }
  return parsed;
}

type Token = { type: '(' | ')' | 'and' | 'or' | 'not' } | { type: 'check'; text: string };

// Tokenizes as oslo does: words split on whitespace, and only leading '(' / trailing ')' are
// grouping, so the parentheses inside `%(target.id)s` stay part of the check.
function tokenize(text: string): Token[] {
  const tokens: Token[] = [];
  for (let word of text.split(/\s+/)) {
    while (word.startsWith('(')) {
      tokens.push({ type: '(' });
      word = word.slice(1);
    }
    let closing = 0;
    while (word.endsWith(')')) {
      closing++;
      word = word.slice(0, -1);
    }
    const keyword = word.toLowerCase();
    if (keyword === 'and' || keyword === 'or' || keyword === 'not') tokens.push({ type: keyword });
    else if (word) tokens.push({ type: 'check', text: word });
    for (let i = 0; i < closing; i++) tokens.push({ type: ')' });
  }
  return tokens;
}

function parseRule(text: string): Rule {
  const tokens = tokenize(text);
  if (tokens.length === 0) return { kind: 'always' }; // an empty rule allows everyone
  let pos = 0;
  const describe = (t: Token | undefined) => (t === undefined ? 'end of rule' : t.type === 'check' ? `"${t.text}"` : `"${t.type}"`);

  // Recursive descent over: or := and ('or' and)* ; and := not ('and' not)* ; not := 'not' not | primary
  function or(): Rule {
    const operands = [and()];
    while (tokens[pos]?.type === 'or') {
      pos++;
      operands.push(and());
    }
    return operands.length === 1 ? operands[0] : { kind: 'or', operands };
  }
  function and(): Rule {
    const operands = [not()];
    while (tokens[pos]?.type === 'and') {
      pos++;
      operands.push(not());
    }
    return operands.length === 1 ? operands[0] : { kind: 'and', operands };
  }
  function not(): Rule {
    if (tokens[pos]?.type !== 'not') return primary();
    pos++;
    return { kind: 'not', operand: not() };
  }
  function primary(): Rule {
    const token = tokens[pos++];
    if (token?.type === 'check') return parseCheck(token.text);
    if (token?.type !== '(') throw new Error(`unexpected ${describe(token)}`);
    const inner = or();
    if (tokens[pos]?.type !== ')') throw new Error(`expected ")" but found ${describe(tokens[pos])}`);
    pos++;
    return inner;
  }

  const rule = or();
  if (pos < tokens.length) throw new Error(`unexpected ${describe(tokens[pos])}`);
  return rule;
}

function parseCheck(text: string): Rule {
  if (text === '@') return { kind: 'always' };
  if (text === '!') return { kind: 'never' };
  const colon = text.indexOf(':'); // the first colon splits: role:compute:admin is the role "compute:admin"
  if (colon <= 0 || colon === text.length - 1) throw new Error(`"${text}" is not a check (expected kind:match, @ or !)`);
  const kind = text.slice(0, colon);
  const match = text.slice(colon + 1);
  if (kind === 'rule') return { kind: 'rule', name: match };
  if (kind === 'role') return { kind: 'role', match: parseTemplate(match) };
  if (kind === 'http' || kind === 'https') throw new Error(`remote checks ("${text}") are not supported`);
  // A quoted right side is a literal too; strip the quotes so 'member' compares as member.
  const unquoted = /^(['"])(.*)\1$/.exec(match)?.[2] ?? match;
  return { kind: 'generic', literal: parseLiteral(kind), path: kind.split('.'), match: parseTemplate(unquoted) };
}

/** oslo treats a left side that is a Python literal ('x', "x", True, False, None, a number) as a value, not a path. */
function parseLiteral(kind: string): string | undefined {
  const quoted = /^(['"])(.*)\1$/.exec(kind);
  if (quoted) return quoted[2];
  if (kind === 'True' || kind === 'False' || kind === 'None' || /^-?\d+(\.\d+)?$/.test(kind)) return kind;
  return undefined;
}

// Python %-formatting as oslo uses it: %(key)s substitutes, %% is a percent sign, any other % is an error.
function parseTemplate(text: string): Template {
  const pieces = text.split(/(%%|%\([^)]+\)s)/);
  return pieces.map((piece, i) => {
    if (i % 2 === 1) return piece === '%%' ? '%' : { path: piece.slice(2, -2).split('.') };
    if (piece.includes('%')) throw new Error(`bad substitution in "${text}" (expected %(name)s)`);
    return piece;
  });
}

/** The template with target values filled in, or undefined when a value is missing (the check is then false). */
function substitute(template: Template, target: Record<string, unknown>): string | undefined {
  let out = '';
  for (const piece of template) {
    if (typeof piece === 'string') {
      out += piece;
      continue;
    }
    const value = resolve(target, piece.path, false).map(pythonStr).find((s) => s !== undefined);
    if (value === undefined) return undefined;
    out += value;
  }
  return out;
}

/**
 * Every value at a dotted path. A step may match a flat key containing dots ('target.project.id',
 * as Keystone flattens targets) or nested objects, or a mix; longest key first. With `spreadArrays`
 * (credentials, as oslo's GenericCheck) a list matches when any element does.
 */
function resolve(value: unknown, path: string[], spreadArrays: boolean): unknown[] {
  if (spreadArrays && Array.isArray(value)) return value.flatMap((v) => resolve(v, path, true));
  if (path.length === 0) return [value];
  if (typeof value !== 'object' || value === null) return [];
  const found: unknown[] = [];
  for (let i = path.length; i >= 1; i--) {
    const key = path.slice(0, i).join('.');
    // Own keys only, so a path like "constructor" cannot reach the prototype.
    if (Object.hasOwn(value, key)) found.push(...resolve((value as Record<string, unknown>)[key], path.slice(i), spreadArrays));
  }
  return found;
}

/** A scalar as Python's str() prints it (oslo compares strings); anything else cannot match. */
function pythonStr(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (typeof value === 'boolean') return value ? 'True' : 'False';
  if (typeof value === 'number' || typeof value === 'bigint') return String(value);
  return undefined;
}
