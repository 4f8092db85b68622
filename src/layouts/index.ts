/**
 * Source layouts `migrate --from-layout` reads (issue 22): the registry's own (the default), a
 * modelstore store, Rasa NLU's MongoDB documents. An importer reads the foreign layout and hands
 * migrate a VirtualStore that shows it in the registry's layout, so the copy itself — plan, dry
 * run, progress, verification, idempotent reruns — is migrate's own, unchanged.
 * Importers are imported lazily: a plain migration loads neither.
 */
import type { Config } from '../config.js';
import { ConfigError } from '../errors.js';
import type { Storage } from '../storage/types.js';
import { VirtualStore } from './virtual-store.js';

export const LAYOUTS = ['registry', 'modelstore', 'rasa-nlu-mongodb'] as const;
export type Layout = (typeof LAYOUTS)[number];

export function isLayout(value: string): value is Layout {
  return (LAYOUTS as readonly string[]).includes(value);
}

/** A version the importer found but cannot copy: settled as FAILED with this reason. */
export interface Failure {
  name: string;
  /** 0 when the whole model is refused. */
  version: number;
  detail: string;
}

/**
 * An alias the source's layout gives a version (a modelstore state). Issue 17 (aliases) sets
 * these at the destination once the model is copied; until then migrate reports them.
 */
export interface AliasToSet {
  name: string;
  alias: string;
  version: number;
  /** Where it comes from, for the line that reports it. */
  origin: string;
}

export interface LayoutSource {
  store: Storage;
  failures: Failure[];
  aliases: AliasToSet[];
}

/**
 * Reads a foreign layout. `open` opens the .env file's backend read-only (for layouts that live on
 * one of the registry's backends); `where` names the .env file in messages. ConfigError when the
 * source is not in the layout it claims, or the layout does not fit its backend.
 */
export async function openLayout(
  layout: Exclude<Layout, 'registry'>,
  config: Config,
  where: string,
  open: () => Promise<Storage>,
  limit: <T>(fn: () => Promise<T>) => Promise<T>,
): Promise<LayoutSource> {
  if (layout === 'rasa-nlu-mongodb') {
    if (config.REMOTE_STORAGE !== 'mongodb') {
      throw new ConfigError(
        `${where}: --from-layout rasa-nlu-mongodb reads a MongoDB collection, but REMOTE_STORAGE=${config.REMOTE_STORAGE}: set REMOTE_STORAGE=mongodb, MONGODB_URI, MONGODB_DATABASE and MONGODB_COLLECTION (the collection Rasa NLU wrote its documents to).`,
      );
    }
    const { importRasaNluMongodb } = await import('./rasa-nlu-mongodb.js');
    const found = await importRasaNluMongodb(config, where);
    return {
      store: new VirtualStore('rasa-nlu-mongodb', found.models, found.close),
      failures: found.failures,
      aliases: [],
    };
  }
  if (config.REMOTE_STORAGE === 'mongodb') {
    throw new ConfigError(
      `${where}: --from-layout modelstore reads a modelstore store on local files, S3, GCS or Azure; modelstore has no MongoDB storage. Set REMOTE_STORAGE to the backend modelstore wrote to.`,
    );
  }
  const storage = await open();
  try {
    const { importModelstore } = await import('./modelstore.js');
    const found = await importModelstore(storage, where, limit);
    return {
      store: new VirtualStore('modelstore', found.models, () => storage.close(), found.aliases),
      failures: found.failures,
      aliases: found.aliases,
    };
  } catch (err) {
    await storage.close().catch(() => {});
    throw err;
  }
}
