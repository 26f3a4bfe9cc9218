import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { Config } from './config.js';

describe('Config', () => {
  it('reads sections of an INI file, with options before any section in DEFAULT', () => {
    const dir = mkdtempSync(join(tmpdir(), 'nubo-config-'));
    try {
      const file = join(dir, 'nubo.conf');
      writeFileSync(file, 'log_level = debug\n[database]\nconnection = postgres://u@h/db\n[token]\nexpiration = 600\n[filter_scheduler]\nenabled_filters = ComputeFilter, RamFilter\n');
      const config = Config.load(file, {});
      assert.equal(config.get('DEFAULT', 'log_level', 'info'), 'debug');
      assert.equal(config.get('database', 'connection', 'x'), 'postgres://u@h/db');
      assert.equal(config.getInt('token', 'expiration', 3600), 600);
      assert.deepEqual(config.getList('filter_scheduler', 'enabled_filters', []), ['ComputeFilter', 'RamFilter']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('lets NUBO_<SECTION>__<OPTION> override the file, and falls back to defaults', () => {
    const config = new Config({ token: { expiration: '600' } }, { NUBO_TOKEN__EXPIRATION: '60', NUBO_IDENTITY__FLAG: 'yes' });
    assert.equal(config.getInt('token', 'expiration', 3600), 60);
    assert.equal(config.getBool('identity', 'flag', false), true);
    assert.equal(config.get('database', 'connection', 'sqlite://x'), 'sqlite://x');
    assert.equal(Config.load('/nonexistent/nubo.conf', {}).getInt('token', 'expiration', 3600), 3600);
  });

  it('refuses a number option that is not a number, naming it', () => {
    const config = new Config({ token: { expiration: 'soon' } }, {});
    assert.throws(() => config.getInt('token', 'expiration', 3600), /\[token\] expiration must be a number/);
  });

  it('with() overrides single options and keeps the rest', () => {
    const config = new Config({ a: { x: '1', y: '2' } }, {}).with({ a: { y: '3' } });
    assert.equal(config.get('a', 'x', ''), '1');
    assert.equal(config.get('a', 'y', ''), '3');
  });
});
