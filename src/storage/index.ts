/**
 * Opens the configured backend through its driver (drivers.ts), so a deployment loads only the
 * SDK it uses, and initialises it.
 */
import type { Config } from '../config.js';
import type { Logger } from '../util/logger.js';
import type { CommonSettings } from './driver.js';
import { findDriver } from './drivers.js';
import { withPrefix } from './prefixed.js';
import type { InitOptions, Storage } from './types.js';

/**
 * Creates and initialises the configured backend. Throws ConfigError with one line for a setup
 * the user must fix (bad credentials, bucket not readable, endpoint unreachable).
 */
export async function createStorage(
  config: Config | ({ REMOTE_STORAGE: string } & CommonSettings),
  logger: Logger,
  options: InitOptions = {},
): Promise<Storage> {
  const driver = findDriver(config.REMOTE_STORAGE);
  if (!driver) throw new TypeError(`no storage backend is named ${config.REMOTE_STORAGE}`);
  const storage = await driver.open(config as never, logger.child({ storage: config.REMOTE_STORAGE }));
  try {
    await storage.init(options);
  } catch (err) {
    await storage.close().catch(() => {});
    throw err;
  }
  return withPrefix(storage, config.STORAGE_PREFIX ?? ''); // the whole layout under STORAGE_PREFIX (prefixed.ts)
}

export type { InitOptions, Storage } from './types.js';
