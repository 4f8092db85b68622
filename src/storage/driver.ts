/**
 * What a backend tells the rest of the service about itself: its REMOTE_STORAGE name, its own
 * settings as a zod schema (which src/config.ts composes into the configuration), how to name
 * it in lines for people, and how to open it. A driver module imports zod and nothing heavy;
 * `open` imports the backend's SDK only when that backend is used (unstorage's drivers do the
 * same: https://unstorage.unjs.io/drivers).
 */
import type { z } from 'zod';
import type { Logger } from '../util/logger.js';
import type { Storage } from './types.js';

/** Settings of the common configuration every backend gets beside its own. */
export interface CommonSettings {
  /** Longest a single storage request may stay silent before it fails (ms). */
  STORAGE_TIMEOUT: number;
  /** The folder of a shared bucket or directory the whole layout lives under ('' = its root). */
  STORAGE_PREFIX?: string;
}

export interface StorageDriver<S extends z.ZodObject = z.ZodObject> {
  /** The REMOTE_STORAGE value that selects it. */
  readonly name: string;
  /** Other REMOTE_STORAGE spellings for it ('s3', 'minio' for aws). */
  readonly aliases?: readonly string[];
  /** Its settings, `REMOTE_STORAGE: z.literal(name)` among them. Defaults apply here. */
  readonly schema: S;
  /** Settings whose values are secrets: never echoed in errors or logs. */
  readonly secrets?: readonly string[];
  /** For a required setting that is missing: how to set it ("set it to … e.g. …"). */
  readonly requiredHints?: Readonly<Record<string, string>>;
  /** Settings that are paths on this machine (migrate resolves them relative to its .env file). */
  readonly paths?: readonly string[];
  /** What tells a misspelt setting of this backend from another program's variable. */
  readonly lookAlikes?: {
    /** How only this backend's settings start ('MONGODB_'). */
    readonly prefixes?: readonly string[];
    /** Words only the registry's settings use ('BUCKET'). */
    readonly words?: readonly string[];
    /** Variables the backend's SDK reads itself: never taken for a misspelt setting. */
    readonly sdkVariables?: readonly string[];
  };
  /** `label` names the storage in lines for people; equal `identity`s mean the same storage. */
  describe(settings: z.output<S>): { label: string; identity: string };
  /** Creates the backend (not yet initialised); imports its SDK. */
  open(settings: z.output<S> & CommonSettings, logger: Logger): Promise<Storage>;
}

/** Declares a driver, checking it against its own schema's types. */
export function defineDriver<S extends z.ZodObject>(driver: StorageDriver<S>): StorageDriver<S> {
  return driver;
}
