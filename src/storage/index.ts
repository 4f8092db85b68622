/**
 * Backend registry: REMOTE_STORAGE → a lazily imported module, so a deployment loads only the
 * SDK it uses.
 */
import type { Logger } from '../util/logger.js';
import type { Backend, Config } from '../config.js';
import type { Storage } from './types.js';

type Factory = (config: Config, logger: Logger) => Promise<Storage>;

const drivers: Record<Backend, Factory> = {
  local: async (config) => {
    const { LocalStorage } = await import('./local.js');
    return new LocalStorage({ root: config.LOCAL_STORAGE_DIR });
  },
};

/** Creates and initialises the configured backend (throws ConfigError on a bad setup). */
export async function createStorage(config: Config, logger: Logger): Promise<Storage> {
  const storage = await drivers[config.REMOTE_STORAGE](config, logger.child({ storage: config.REMOTE_STORAGE }));
  await storage.init();
  return storage;
}

export type { Storage } from './types.js';
