// The all-in-one cloud: one process serving every API on one port, on one database and
// one bus. `nubo up` runs it; integration tests start it in-process on a random port.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
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
import { createPlacement, type Placement } from '../placement/index.js';
import { createCompute, type Compute } from '../compute/index.js';
import { startComputeAgent, type ComputeAgent } from '../compute/agent/agent.js';
import { CONSOLE_PAGE_PATH, mountConsoleProxy } from '../compute/console-proxy.js';
import { createNetworking, type Networking } from '../network/index.js';
import { startNoopNetworkAgent, type NetworkAgentHandle } from '../network/agent/noop.js';
import { startMetadataService, type MetadataService } from '../metadata/index.js';

export interface CloudOptions {
  dataDir: string;
  host: string;
  port: number;
  config?: Config;
  logger?: Logger;
  /** Password for the bootstrap admin (default: NUBO_ADMIN_PASSWORD, else generated once). */
  adminPassword?: string;
  demoPassword?: string;
  /**
   * Compute agents this process runs: [compute] fake_hosts of them named fake-host-1..N with the fake driver,
   * one named [DEFAULT] host otherwise; 0 for a controller whose agents run elsewhere (`nubo controller`).
   */
  computeHosts?: number;
}

export interface Cloud {
  url: string;
  app: FastifyInstance;
  database: Database;
  bus: Bus;
  identity: Identity;
  image: Image;
  placement: Placement;
  compute: Compute;
  network: Networking;
  /** The metadata service this controller serves on the bus (guests reach it through their agent). */
  metadata: MetadataService;
  agents: ComputeAgent[];
  /** The network agent of each compute host this process runs (no-op until the data plane agent lands). */
  networkAgents: NetworkAgentHandle[];
  config: Config;
  close(): Promise<void>;
}

/** The APIs this process serves: type, code name and where under the root they live. */
const SERVICES = [
  { type: 'identity', name: 'keystone', path: '/identity', description: 'Identity Service' },
  { type: 'image', name: 'glance', path: '/image', description: 'Image Service' },
  { type: 'placement', name: 'placement', path: '/placement', description: 'Placement Service' },
  { type: 'compute', name: 'nova', path: '/compute/v2.1', description: 'Compute Service' },
  { type: 'network', name: 'neutron', path: '/networking', description: 'Networking Service' },
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
  const placement = await createPlacement({ config, database, policy, tokens: identity.tokens, logger: logger.child('placement') });
  const image = await createImageService({ config, database, policy, tokens: identity.tokens, dataDir: options.dataDir, logger: logger.child('image') });
  const network = await createNetworking({ config, database, bus, policy, tokens: identity.tokens, logger: logger.child('network') });
  const compute = await createCompute({ config, database, bus, policy, tokens: identity.tokens, logger: logger.child('compute'), placement: placement.placement, images: image.images, network: network.services });
  const policyFile = config.getOptional('oslo_policy', 'policy_file');
  if (policyFile) policy.loadOverrides(policyFile);

  const app = createHttpApp({ logger: logger.child('http') });
  app.register(identity.api, { prefix: '/identity' });
  app.register(image.api, { prefix: '/image' });
  app.register(placement.api, { prefix: '/placement' });
  app.register(compute.api, { prefix: '/compute' });
  app.register(network.api, { prefix: '/networking' });
  // The browser console (noVNC page and websocket proxy), Nova's nova-novncproxy.
  mountConsoleProxy({ app, consoles: compute.services.consoles, config, logger: logger.child('console-proxy') });
  const serviceUrls = (base: string): CatalogService[] => SERVICES.map((s) => ({ type: s.type, name: s.name, description: s.description, url: `${base}${s.path}` }));
  app.get('/', async (request) => {
    const base = `${request.protocol}://${request.headers.host}`;
    return { services: serviceUrls(base).map((s) => ({ type: s.type, name: s.name, url: s.url })) };
  });

  await app.listen({ host: options.host, port: options.port });
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : options.port;
  const publicBase = config.get('DEFAULT', 'public_endpoint', `http://${options.host.includes(':') ? `[${options.host}]` : options.host}:${port}`).replace(/\/$/, '');
  compute.services.consoles.useProxyAt(`${publicBase}${CONSOLE_PAGE_PATH}`);

  const region = config.get('identity', 'region', 'RegionOne');
  const { passwords } = await bootstrapIdentity(identity.identity, {
    region,
    adminPassword: options.adminPassword ?? process.env.NUBO_ADMIN_PASSWORD,
    demoPassword: options.demoPassword ?? process.env.NUBO_DEMO_PASSWORD,
    services: serviceUrls(publicBase),
  });
  writeOpenrc(options.dataDir, publicBase, region, passwords);
  await compute.services.flavors.ensureDefaultFlavors();
  await network.start();
  await compute.start();
  const metadata = await startMetadataService({ config, bus, compute: compute.services, logger: logger.child('metadata') });
  const agents = await startAgents(config, bus, logger, options.computeHosts, options.dataDir);
  const networkAgents = await Promise.all(agents.map((agent) => startNoopNetworkAgent({ config, bus, host: agent.host, logger: logger.child(`network-agent.${agent.host}`) })));
  await Promise.all(networkAgents.map((agent) => agent.registered));

  return {
    url: publicBase, app, database, bus, identity, image, placement, compute, network, metadata: metadata.service, agents, networkAgents, config,
    close: async () => {
      await app.close();
      await Promise.all(networkAgents.map((agent) => agent.close()));
      await Promise.all(agents.map((agent) => agent.close()));
      await metadata.close();
      await compute.close();
      await network.close();
      await image.images.settle();
      await bus.close();
      await database.close();
    },
  };
}

/** The in-process compute agents (see CloudOptions.computeHosts); each registers with the conductor over the bus. */
async function startAgents(config: Config, bus: Bus, logger: Logger, count?: number, dataDir?: string): Promise<ComputeAgent[]> {
  const driver = config.get('compute', 'driver', 'fake');
  const hosts = driver === 'fake'
    ? Array.from({ length: count ?? config.getInt('compute', 'fake_hosts', 1) }, (_, i) => `fake-host-${i + 1}`)
    : (count ?? 1) > 0 ? [config.get('DEFAULT', 'host', hostname())] : [];
  const agents = await Promise.all(hosts.map((host) => startComputeAgent({ config, bus, host, logger: logger.child(`compute.${host}`), dataDir })));
  await Promise.all(agents.map((agent) => agent.registered));
  return agents;
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
