/** migrate: reading the two .env files into storage endpoints. */

import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { parseEnv } from 'node:util';
import { type Config, loadConfig, unknownSettings } from '../config.js';
import { ConfigError } from '../errors.js';
import { allDrivers, findDriver } from '../storage/drivers.js';
import { createStorage, type InitOptions } from '../storage/index.js';
import type { Storage } from '../storage/types.js';
import type { Logger } from '../util/logger.js';
import { scrub, secretValues } from '../util/redact.js';
import type { Endpoint } from './types.js';

/** Variables that look like settings of the registry (others in a .env file are ignored). */
export const SETTING_PREFIX = /^(REMOTE_|LOCAL_|BUCKET_|AWS_|GCS_|GOOGLE_|AZURE_|MONGODB_|CACHE_|MODEL_|MAX_|AUTO_)/;

/** Settings that are paths: relative values are relative to the .env file's directory. */
export const pathVariables = () => allDrivers().flatMap((d) => d.paths ?? []);
/** 'local, aws, gcs, azure or mongodb' */
export const backendNames = () =>
  allDrivers()
    .map((d) => d.name)
    .join(', ')
    .replace(/, ([^,]*)$/, ' or $1');

export async function readEndpoint(file: string, role: 'source' | 'destination'): Promise<Endpoint> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new ConfigError(
      `${file} cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}): pass the path of a .env file with the settings of the ${role} backend.`,
    );
  }
  const dir = path.dirname(path.resolve(file));
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(parseEnv(text))) if (v !== undefined) env[k] = v;
  // A misspelt setting must not send the models somewhere else (LOCAL_STORAGE_PATH would leave
  // the default directory in force): names that look like the registry's must be its own.
  for (const { name, kin } of unknownSettings(env, SETTING_PREFIX)) {
    throw new ConfigError(
      `${file}: ${name} is not a setting of the registry${kin.length ? ` (those of its kind: ${kin.join(', ')})` : ''}: fix its name or remove it.`,
    );
  }
  if (!env.REMOTE_STORAGE) {
    throw new ConfigError(
      `${file}: REMOTE_STORAGE is not set: name the ${role}'s backend explicitly (${backendNames()}), so that a missing line cannot mean local disk.`,
    );
  }
  // Serving settings do not matter here; a production .env (HOST=0.0.0.0) must still load.
  delete env.HOST;
  // A typo in the source's bucket must not create an empty bucket and "migrate" nothing.
  if (role === 'source') env.AUTO_CREATE_BUCKET = 'false';
  let config: Config;
  try {
    config = loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError)
      throw new ConfigError(`${file}: ${scrub(err.message, secretValues(env))}`, { cause: err });
    throw err;
  }
  const resolved: Record<string, unknown> = { ...config };
  for (const variable of pathVariables()) {
    const value = resolved[variable];
    if (typeof value === 'string') resolved[variable] = path.resolve(dir, value);
  }
  config = resolved as Config;
  if (role === 'source' && config.REMOTE_STORAGE === 'local') {
    const found = await stat(config.LOCAL_STORAGE_DIR).catch(() => undefined);
    if (!found?.isDirectory()) {
      throw new ConfigError(
        `${file}: LOCAL_STORAGE_DIR=${config.LOCAL_STORAGE_DIR} is not a directory: point it at the directory the registry stores its models in (relative paths are relative to ${file}).`,
      );
    }
  }
  return { file, config, ...describe(config) };
}

export function describe(c: Config): { label: string; identity: string } {
  return findDriver(c.REMOTE_STORAGE)!.describe(c as never);
}

export async function open(endpoint: Endpoint, logger: Logger, options: InitOptions = {}): Promise<Storage> {
  try {
    return await createStorage(endpoint.config, logger, options);
  } catch (err) {
    if (err instanceof ConfigError)
      throw new ConfigError(`${endpoint.file}: ${scrub(err.message, secretValues(endpoint.config))}`, { cause: err });
    throw err;
  }
}
