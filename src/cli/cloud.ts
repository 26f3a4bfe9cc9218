// The all-in-one cloud: one process serving every API on one port, on one database and
// one bus. `nubo up` runs it; integration tests start it in-process on a random port.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { Config } from '../core/config.js';
import { createLogger, setLogLevel, type Logger } from '../core/log.js';
import { defaultConnection, openDatabase, type Database } from '../db/index.js';
import { createBus, type Bus } from '../bus/index.js';
import { createHttpApp } from '../http/app.js';
import { PolicyEngine } from '../http/policy.js';
import { createIdentity, type Identity } from '../identity/index.js';
import { bootstrapIdentity, type CatalogService } from '../identity/bootstrap.js';
import { createImageService, type Image } from '../image/index.js';

export interface CloudOptions {
  dataDir: string;
  host: string;
  port: number;
  config?: Config;
  logger?: Logger;
  /** Password for the bootstrap admin (default: NUBO_ADMIN_PASSWORD, else generated once). */
  adminPassword?: string;
  demoPassword?: string;
}

export interface Cloud {
  url: string;
  app: FastifyInstance;
  database: Database;
  bus: Bus;
  identity: Identity;
  image: Image;
  config: Config;
  close(): Promise<void>;
}

/** The APIs this process serves: type, code name and where under the root they live. */
const SERVICES = [
  { type: 'identity', name: 'keystone', path: '/identity', description: 'Identity Service' },
  { type: 'image', name: 'glance', path: '/image', description: 'Image Service' },
];

export async function startCloud(options: CloudOptions): Promise<Cloud> {
  mkdirSync(options.dataDir, { recursive: true, mode: 0o700 });
  const configFile = join(options.dataDir, 'nubo.conf');
  const config = options.config ?? Config.load(process.env.NUBO_CONFIG ?? configFile);
  setLogLevel(config.get('DEFAULT', 'log_level', process.env.NUBO_LOG_LEVEL ?? 'info'));
  const logger = options.logger ?? createLogger('nubo');

  const database = await openDatabase(config.get('database', 'connection', defaultConnection(options.dataDir)));
  const bus = createBus(config.get('messaging', 'transport_url', 'memory://'));
  const policy = new PolicyEngine();
  const identity = await createIdentity({ config, database, bus, policy, dataDir: options.dataDir });
  const image = await createImageService({ config, database, policy, tokens: identity.tokens, dataDir: options.dataDir, logger: logger.child('image') });
  const policyFile = config.getOptional('oslo_policy', 'policy_file');
  if (policyFile) policy.loadOverrides(policyFile);

  const app = createHttpApp({ logger: logger.child('http') });
  app.register(identity.api, { prefix: '/identity' });
  app.register(image.api, { prefix: '/image' });
  const serviceUrls = (base: string): CatalogService[] => SERVICES.map((s) => ({ type: s.type, name: s.name, description: s.description, url: `${base}${s.path}` }));
  app.get('/', async (request) => {
    const base = `${request.protocol}://${request.headers.host}`;
    return { services: serviceUrls(base).map((s) => ({ type: s.type, name: s.name, url: s.url })) };
  });

  await app.listen({ host: options.host, port: options.port });
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : options.port;
  const publicBase = config.get('DEFAULT', 'public_endpoint', `http://${options.host.includes(':') ? `[${options.host}]` : options.host}:${port}`).replace(/\/$/, '');

  const region = config.get('identity', 'region', 'RegionOne');
  const { passwords } = await bootstrapIdentity(identity.identity, {
    region,
    adminPassword: options.adminPassword ?? process.env.NUBO_ADMIN_PASSWORD,
    demoPassword: options.demoPassword ?? process.env.NUBO_DEMO_PASSWORD,
    services: serviceUrls(publicBase),
  });
  writeOpenrc(options.dataDir, publicBase, region, passwords);

  return {
    url: publicBase, app, database, bus, identity, image, config,
    close: async () => {
      await app.close();
      await image.images.settle();
      await bus.close();
      await database.close();
    },
  };
}

/**
 * DIR/admin-openrc.sh and DIR/demo-openrc.sh for the `openstack` CLI. A file is rewritten
 * when the password is known (just set) or the endpoint moved; otherwise its password is kept.
 */
function writeOpenrc(dataDir: string, publicBase: string, region: string, passwords: { admin?: string; demo?: string }): void {
  for (const persona of ['admin', 'demo'] as const) {
    const file = join(dataDir, `${persona}-openrc.sh`);
    const previous = existsSync(file) ? readFileSync(file, 'utf8').match(/^export OS_PASSWORD=(.*)$/m)?.[1] : undefined;
    const password = passwords[persona] !== undefined ? shellQuote(passwords[persona]!) : previous;
    if (password === undefined) continue;
    const lines = [
      `export OS_AUTH_URL=${publicBase}/identity/v3`,
      'export OS_IDENTITY_API_VERSION=3',
      `export OS_USERNAME=${persona}`,
      `export OS_PASSWORD=${password}`,
      `export OS_PROJECT_NAME=${persona}`,
      'export OS_USER_DOMAIN_NAME=Default',
      'export OS_PROJECT_DOMAIN_NAME=Default',
      `export OS_REGION_NAME=${region}`,
      'export OS_INTERFACE=public',
    ];
    writeFileSync(file, lines.join('\n') + '\n', { mode: 0o600 });
  }
}

function shellQuote(value: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(value) ? value : `'${value.replace(/'/g, `'\\''`)}'`;
}
