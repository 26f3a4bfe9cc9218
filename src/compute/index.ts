// Wires the compute service: migrations, policy, the domain services, the conductor (with the
// scheduler) and the Nova API. Compute agents are separate (src/compute/agent) and reach
// the conductor over the bus only.
import type { Config } from '../core/config.js';
import type { Logger } from '../core/log.js';
import { migrateService, type Database } from '../db/index.js';
import type { Bus } from '../bus/types.js';
import type { PolicyEngine } from '../http/policy.js';
import type { TokenValidator } from '../http/auth.js';
import type { ImageService } from '../image/service.js';
import type { PlacementService } from '../placement/service.js';
import { computeMigrations } from './db/migrations.js';
import { computeBasePolicy } from './policy.js';
import { computeApi } from './api/index.js';

/** What every compute domain service is built from. */
export interface ComputeDeps {
  config: Config;
  database: Database;
  bus: Bus;
  logger: Logger;
  placement: PlacementService;
  images: ImageService;
}

/** The compute domain services, as the API and the conductor use them. */
export interface ComputeServices {
}

export interface Compute {
  services: ComputeServices;
  api: ReturnType<typeof computeApi>;
  /** Starts serving the conductor topic and resumes unfinished workflows. */
  start(): Promise<void>;
  close(): Promise<void>;
}

export async function createCompute(options: ComputeDeps & { policy: PolicyEngine; tokens: TokenValidator }): Promise<Compute> {
  await migrateService(options.database, 'compute', computeMigrations);
  options.policy.register(computeBasePolicy);
  const services: ComputeServices = {};
  const api = computeApi({ compute: services, policy: options.policy, tokens: options.tokens, maxLimit: options.config.getInt('api', 'max_limit', 1000) });
  return {
    services, api,
    start: async () => undefined,
    close: async () => undefined,
  };
}
