/**
 * Backend registry: REMOTE_STORAGE → a lazily imported module, so a deployment loads only the
 * SDK it uses. Each backend module exports `create(config, logger)`.
 */
import type { Backend, BackendConfig, Config } from '../config.js';
import type { Logger } from '../util/logger.js';
import { withPrefix } from './prefixed.js';
import type { InitOptions, Storage } from './types.js';

type Drivers = { [B in Backend]: (config: BackendConfig<B>, logger: Logger) => Promise<Storage> };

const drivers: Drivers = {
  local: async (config) => (await import('./local.js')).create(config),
  aws: async (config, logger) => (await import('./s3.js')).create(config, logger),
  gcs: async (config, logger) => (await import('./gcs.js')).create(config, logger),
  azure: async (config, logger) => (await import('./azure.js')).create(config, logger),
  mongodb: async (config, logger) => (await import('./mongodb.js')).create(config, logger),
};

/**
 * Creates and initialises the configured backend. Throws ConfigError with one line for a setup
 * the user must fix (bad credentials, bucket not readable, endpoint unreachable).
 */
export async function createStorage(config: Config, logger: Logger, options: InitOptions = {}): Promise<Storage> {
  const driver = drivers[config.REMOTE_STORAGE] as (c: Config, l: Logger) => Promise<Storage>;
  const storage = await driver(config, logger.child({ storage: config.REMOTE_STORAGE }));
  try {
    await storage.init(options);
  } catch (err) {
    await storage.close().catch(() => {});
    throw err;
  }
  return withPrefix(storage, config.STORAGE_PREFIX); // the whole layout under STORAGE_PREFIX (prefixed.ts)
}

export type { InitOptions, Storage } from './types.js';
