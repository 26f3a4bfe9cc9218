// Wires the image service: migrations, default policy, stores, quotas, API.
import { join } from 'node:path';
import type { Config } from '../core/config.js';
import type { Logger } from '../core/log.js';
import { BadRequest } from '../core/errors.js';
import { migrateService, type Database } from '../db/index.js';
import type { PolicyEngine } from '../http/policy.js';
import type { TokenValidator } from '../http/auth.js';
import { imageMigrations } from './db/migrations.js';
import { imagePolicyRules } from './policy.js';
import { DISK_FORMATS, ImageService } from './service.js';
import { FileStore } from './stores/file.js';
import type { ImageStore } from './stores/types.js';
import { imageApi } from './api/index.js';

export interface Image {
  images: ImageService;
  api: ReturnType<typeof imageApi>;
}

/** Store drivers by name ([glance_store] default_store); object-store and s3 join this map. */
const STORE_DRIVERS: Record<string, (config: Config, dataDir: string) => ImageStore> = {
  file: (config, dataDir) => new FileStore(config.get('glance_store', 'filesystem_store_datadir', join(dataDir, 'images'))),
};

export async function createImageService(options: { config: Config; database: Database; policy: PolicyEngine; tokens: TokenValidator; dataDir: string; logger: Logger }): Promise<Image> {
  const { config, database } = options;
  await migrateService(database, 'image', imageMigrations);
  options.policy.register(imagePolicyRules);
  const storeName = config.get('glance_store', 'default_store', 'file');
  const driver = STORE_DRIVERS[storeName];
  if (!driver) throw new BadRequest(`[glance_store] default_store: unknown store "${storeName}" (available: ${Object.keys(STORE_DRIVERS).join(', ')})`);
  const store = driver(config, options.dataDir);
  const staging = new FileStore(config.get('image', 'staging_dir', join(options.dataDir, 'image-staging')), { id: 'os_glance_staging_store', description: 'Staging area for interoperable import' });
  const conversionFormat = config.getOptional('image_conversion', 'output_format') || undefined;
  if (conversionFormat && !(DISK_FORMATS as readonly string[]).includes(conversionFormat)) {
    throw new BadRequest(`[image_conversion] output_format: unknown disk format "${conversionFormat}"`);
  }
  const sizeTotalMiB = config.getInt('image', 'image_size_total', -1);
  const images = new ImageService({
    database, store, staging, conversionFormat, logger: options.logger,
    quotas: {
      imageCountTotal: config.getInt('image', 'image_count_total', -1),
      imageSizeTotalBytes: sizeTotalMiB < 0 ? -1 : sizeTotalMiB * 1024 * 1024,
    },
  });
  const api = imageApi({
    images, tokens: options.tokens, policy: options.policy,
    limitDefault: config.getInt('api', 'limit_param_default', 25),
    limitMax: config.getInt('api', 'api_limit_max', 1000),
  });
  return { images, api };
}
