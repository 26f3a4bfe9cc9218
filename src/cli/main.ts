// `nubo` command line: up, db migrate, keys rotate, bench.
import { parseArgs } from 'node:util';
import { join } from 'node:path';
import { homedir } from 'node:os';
import { Config } from '../core/config.js';
import { createLogger } from '../core/log.js';
import { defaultConnection, migrateService, openDatabase } from '../db/index.js';
import { identityMigrations } from '../identity/db/migrations.js';
import { imageMigrations } from '../image/db/migrations.js';
import { placementMigrations } from '../placement/db/migrations.js';
import { computeMigrations } from '../compute/db/migrations.js';
import { fernetKeyRepository } from '../identity/index.js';
import { startCloud } from './cloud.js';
import { runComputeAgent } from './compute.js';
import { registerTestGuest } from './test-guest.js';

const USAGE = `usage: nubo <command> [options]

  up          run the all-in-one cloud in the foreground
              --data-dir DIR (default ~/.nubo)  --host HOST (127.0.0.1)  --port PORT (5000)  --config FILE
              --driver fake|qemu ([compute] driver)  --hosts N (fake compute hosts, [compute] fake_hosts)
              registers the test guest (scripts/build-test-image) as public image nubo-test-guest
              unless [DEFAULT] register_test_guest = false
  controller  every API and the conductor, no compute agent (agents join with \`nubo compute\`); same options as up
  db migrate  apply every service's database migrations   --data-dir DIR  --config FILE
  keys rotate rotate the Fernet token keys                --data-dir DIR  --config FILE
  compute     run one compute agent (no database; reaches the controllers over [messaging] transport_url)
              --host NAME ([DEFAULT] host, else the machine name)  --driver fake|qemu ([compute] driver)  --config FILE  --data-dir DIR
  bench identity   measure token issue and validation     (see docs/BENCHMARKS.md)
  bench image      1 GiB image upload and download over HTTP beside cp
  bench vm         QEMU guests: create→ready beside the same QEMU by hand, live-migration downtime
`;

const commonOptions = {
  'data-dir': { type: 'string' },
  config: { type: 'string' },
  host: { type: 'string' },
  port: { type: 'string' },
  driver: { type: 'string' },
  hosts: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

function loadConfig(dataDir: string, file?: string): Config {
  return Config.load(file ?? process.env.NUBO_CONFIG ?? join(dataDir, 'nubo.conf'));
}

export async function main(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({ args: argv, options: commonOptions, allowPositionals: true, strict: false });
  const dataDir = (values['data-dir'] as string | undefined) ?? process.env.NUBO_DATA_DIR ?? join(homedir(), '.nubo');
  const command = positionals.join(' ');
  if (values.help || command === '' || command === 'help') {
    process.stdout.write(USAGE);
    return;
  }
  const logger = createLogger('nubo');

  if (command === 'up' || command === 'controller') {
    const host = (values.host as string | undefined) ?? '127.0.0.1';
    const port = Number(values.port ?? 5000);
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`--port must be a port number, got ${String(values.port)}`);
    const compute: Record<string, string> = {};
    if (values.driver !== undefined) compute.driver = String(values.driver);
    if (values.hosts !== undefined) {
      const hosts = Number(values.hosts);
      if (!Number.isInteger(hosts) || hosts < 0) throw new Error(`--hosts must be a whole number, got ${String(values.hosts)}`);
      compute.fake_hosts = String(hosts);
    }
    const config = loadConfig(dataDir, values.config as string | undefined).with({ compute });
    const cloud = await startCloud({ dataDir, host, port, config, logger, computeHosts: command === 'controller' ? 0 : undefined });
    // The demo image (scripts/build-test-image), before the ready line so `--image nubo-test-guest` works at once.
    if (config.getBool('DEFAULT', 'register_test_guest', true)) {
      await registerTestGuest({ images: cloud.image.images, identity: cloud.identity.identity, logger: logger.child('test-guest') });
    }
    let stopping = false;
    const stop = async (signal: string) => {
      if (stopping) return;
      stopping = true;
      logger.info(`${signal} received, stopping`);
      await cloud.close().catch((err) => logger.error('error while stopping', { error: String(err) }));
      process.exit(0);
    };
    process.on('SIGTERM', () => void stop('SIGTERM'));
    process.on('SIGINT', () => void stop('SIGINT'));
    const hosts = cloud.agents.length ? `${cloud.agents.length} compute host(s) with the ${config.get('compute', 'driver', 'fake')} driver` : 'no compute host (agents join with `nubo compute`)';
    process.stdout.write(`Nubo ready at ${cloud.url} (identity: ${cloud.url}/identity/v3; credentials in ${join(dataDir, 'admin-openrc.sh')}; ${hosts})\n`);
    return;
  }

  if (command === 'compute') {
    const agent = await runComputeAgent({
      config: loadConfig(dataDir, values.config as string | undefined), dataDir, logger,
      host: values.host as string | undefined, driver: values.driver as string | undefined,
    });
    let stopping = false;
    const stop = async (signal: string) => {
      if (stopping) return;
      stopping = true;
      logger.info(`${signal} received, stopping the compute agent`);
      await agent.stop().catch((err) => logger.error('error while stopping', { error: String(err) }));
      process.exit(0);
    };
    process.on('SIGTERM', () => void stop('SIGTERM'));
    process.on('SIGINT', () => void stop('SIGINT'));
    process.stdout.write(`Nubo compute agent ${agent.host} ready (driver ${agent.driver})\n`);
    return;
  }

  if (command === 'db migrate') {
    const config = loadConfig(dataDir, values.config as string | undefined);
    const database = await openDatabase(config.get('database', 'connection', defaultConnection(dataDir)));
    try {
      for (const [service, migrations] of [['identity', identityMigrations], ['image', imageMigrations], ['placement', placementMigrations], ['compute', computeMigrations]] as const) {
        const applied = await migrateService(database, service, migrations);
        process.stdout.write(`${service}: ${applied.length ? applied.join(', ') : 'up to date'}\n`);
      }
    } finally {
      await database.close();
    }
    return;
  }

  if (command === 'keys rotate') {
    const repository = fernetKeyRepository(loadConfig(dataDir, values.config as string | undefined), dataDir);
    repository.setup();
    repository.rotate();
    process.stdout.write(`rotated Fernet keys in ${repository.dir}\n`);
    return;
  }

  if (positionals[0] === 'bench') {
    const { runBench } = await import('./bench.js');
    await runBench(positionals.slice(1), argv);
    return;
  }

  process.stderr.write(`unknown command: ${command}\n${USAGE}`);
  process.exitCode = 2;
}
