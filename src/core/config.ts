// nubo.conf: one INI file with oslo.config-like sections. Every option can be overridden
// by an environment variable NUBO_<SECTION>__<OPTION> (upper case), e.g.
// NUBO_DATABASE__CONNECTION=postgres://... ; defaults live where the option is read.
import { readFileSync, existsSync } from 'node:fs';
import { parse } from 'ini';
import { BadRequest } from './errors.js';

export type ConfigValues = Record<string, Record<string, string>>;

export class Config {
  private readonly values: ConfigValues;
  private readonly env: NodeJS.ProcessEnv;

  constructor(values: ConfigValues = {}, env: NodeJS.ProcessEnv = process.env) {
    this.values = values;
    this.env = env;
  }

  static load(file?: string, env: NodeJS.ProcessEnv = process.env): Config {
    if (!file || !existsSync(file)) return new Config({}, env);
    const parsed = parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
    const values: ConfigValues = {};
    for (const [section, options] of Object.entries(parsed)) {
      if (options && typeof options === 'object') {
        values[section] = Object.fromEntries(Object.entries(options).map(([k, v]) => [k, String(v)]));
      } else {
        // Options before any section header belong to [DEFAULT].
        (values.DEFAULT ??= {})[section] = String(options);
      }
    }
    return new Config(values, env);
  }

  /** A copy with some options replaced (used by `nubo up` flags and tests). */
  with(overrides: ConfigValues): Config {
    const merged: ConfigValues = {};
    for (const [s, o] of Object.entries(this.values)) merged[s] = { ...o };
    for (const [s, o] of Object.entries(overrides)) merged[s] = { ...(merged[s] ?? {}), ...o };
    return new Config(merged, this.env);
  }

  private raw(section: string, option: string): string | undefined {
    const fromEnv = this.env[`NUBO_${section}__${option}`.toUpperCase()];
    if (fromEnv !== undefined) return fromEnv;
    return this.values[section]?.[option];
  }

  get(section: string, option: string, fallback: string): string {
    return this.raw(section, option) ?? fallback;
  }

  getOptional(section: string, option: string): string | undefined {
    return this.raw(section, option);
  }

  getInt(section: string, option: string, fallback: number): number {
    const value = this.raw(section, option);
    if (value === undefined || value === '') return fallback;
    const parsed = Number(value);
    if (!Number.isFinite(parsed)) throw new BadRequest(`[${section}] ${option} must be a number, got "${value}"`);
    return parsed;
  }

  getBool(section: string, option: string, fallback: boolean): boolean {
    const value = this.raw(section, option);
    if (value === undefined || value === '') return fallback;
    return ['1', 'true', 'yes', 'on'].includes(value.toLowerCase());
  }

  getList(section: string, option: string, fallback: string[]): string[] {
    const value = this.raw(section, option);
    if (value === undefined) return fallback;
    return value.split(',').map((s) => s.trim()).filter(Boolean);
  }
}
