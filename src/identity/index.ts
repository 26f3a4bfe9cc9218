// Wires the identity service: database migrations, Fernet keys, policy, token service, API.
import { join } from 'node:path';
import type { Config } from '../core/config.js';
import type { Database } from '../db/index.js';
import { migrateService } from '../db/index.js';
import type { Bus } from '../bus/types.js';
import type { PolicyEngine } from '../http/policy.js';
import { identityMigrations } from './db/migrations.js';
import { Fernet, FernetKeyRepository } from './fernet.js';
import { identityPolicyDefaults } from './policy.js';
import { IdentityService } from './service.js';
import { TokenService } from './tokens.js';
import { identityApi } from './api/index.js';

export interface Identity {
  identity: IdentityService;
  tokens: TokenService;
  keys: FernetKeyRepository;
  api: ReturnType<typeof identityApi>;
}

/** The Fernet key repository: [fernet_tokens] key_repository, by default DATA_DIR/fernet-keys. */
export function fernetKeyRepository(config: Config, dataDir: string): FernetKeyRepository {
  return new FernetKeyRepository(
    config.get('fernet_tokens', 'key_repository', join(dataDir, 'fernet-keys')),
    config.getInt('fernet_tokens', 'max_active_keys', 3),
  );
}

export async function createIdentity(options: { config: Config; database: Database; bus?: Bus; policy: PolicyEngine; dataDir: string }): Promise<Identity> {
  const { config, database } = options;
  await migrateService(database, 'identity', identityMigrations);
  const keys = fernetKeyRepository(config, options.dataDir);
  keys.setup();
  options.policy.register(identityPolicyDefaults);
  const identity = new IdentityService({ database, bus: options.bus, passwordHashRounds: config.getInt('identity', 'password_hash_rounds', 12) });
  const tokens = new TokenService({
    identity, database, fernet: new Fernet(keys),
    expirationSeconds: config.getInt('token', 'expiration', 3600),
    allowRescopeScopedToken: config.getBool('token', 'allow_rescope_scoped_token', true),
    cacheMs: config.getInt('token', 'cache_time', 5) * 1000,
  });
  return { identity, tokens, keys, api: identityApi({ identity, tokens, policy: options.policy }) };
}
