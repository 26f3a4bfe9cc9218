// `nubo compute --host NAME [--driver fake] [--config FILE] [--data-dir DIR]`: one compute agent
// (Nova's nova-compute) for this hypervisor host. It talks to the controllers only over
// [messaging] transport_url (RabbitMQ in a multi-host cloud) and never opens the database.
import { hostname } from 'node:os';
import type { Config } from '../core/config.js';
import { setLogLevel, type Logger } from '../core/log.js';
import { createBus } from '../bus/index.js';
import { startComputeAgent } from '../compute/agent/agent.js';
import { startNoopNetworkAgent } from '../network/agent/noop.js';

export interface ComputeCommandOptions {
  config: Config;
  dataDir: string;
  logger: Logger;
  /** --host: the compute host name; [DEFAULT] host, else the machine name. */
  host?: string;
  /** --driver: overrides [compute] driver. */
  driver?: string;
}

/** Starts the agent and returns once it serves its topic; it registers with a conductor in the background. */
export async function runComputeAgent(options: ComputeCommandOptions): Promise<{ host: string; driver: string; stop(): Promise<void> }> {
  const config = options.driver ? options.config.with({ compute: { driver: options.driver } }) : options.config;
  setLogLevel(config.get('DEFAULT', 'log_level', process.env.NUBO_LOG_LEVEL ?? 'info'));
  const host = options.host ?? config.get('DEFAULT', 'host', hostname());
  const transportUrl = config.get('messaging', 'transport_url', 'memory://');
  if (/^\s*(memory:\/\/\/?)?\s*$/.test(transportUrl)) {
    options.logger.warn('[messaging] transport_url is the in-process bus: no controller in another process can reach this agent; set it to rabbit://...');
  }
  const bus = createBus(transportUrl);
  let agent;
  try {
    agent = await startComputeAgent({ config, bus, host, logger: options.logger.child(`compute.${host}`), dataDir: options.dataDir });
  } catch (err) {
    await bus.close().catch(() => undefined);
    throw err;
  }
  const running = agent;
  void running.registered.then(() => undefined, () => undefined);
  // The host's network agent (no-op until the data plane agent lands) registers in the background too.
  const networkAgent = await startNoopNetworkAgent({ config, bus, host, logger: options.logger.child(`network-agent.${host}`) });
  return {
    host,
    driver: running.driver.name,
    stop: async () => {
      await networkAgent.close();
      await running.close();
      await bus.close();
    },
  };
}
