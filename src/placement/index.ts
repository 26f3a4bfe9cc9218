// Wires the placement service: migrations, default policy, API.
import type { Config } from '../core/config.js';
import type { Logger } from '../core/log.js';
import { migrateService, type Database } from '../db/index.js';
import type { TokenValidator } from '../http/auth.js';
import type { PolicyEngine } from '../http/policy.js';
import { placementApi } from './api/index.js';
import { placementMigrations } from './db/migrations.js';
import { placementPolicyRules } from './policy.js';
import { PlacementService } from './service.js';

export interface Placement {
  placement: PlacementService;
  api: ReturnType<typeof placementApi>;
}

export async function createPlacement(options: { config: Config; database: Database; policy: PolicyEngine; tokens: TokenValidator; logger: Logger }): Promise<Placement> {
  await migrateService(options.database, 'placement', placementMigrations);
  options.policy.register(placementPolicyRules);
  const placement = new PlacementService({ database: options.database, logger: options.logger });
  const api = placementApi({ placement, tokens: options.tokens, policy: options.policy });
  return { placement, api };
}
