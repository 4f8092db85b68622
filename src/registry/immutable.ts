/**
 * Where the bytes of a version live that never change: what a redirect download may send a
 * client to, so that a replace while it downloads can never give it a mix of two versions.
 *
 * That is the version's copy in history, `.history/{name}/v{N}.tar.gz`: publishing writes it
 * once, with if-none-match, before the version becomes current, and nothing writes it again
 * (README "Storage layout"); it is deleted only by DELETE ?version=N, the model's deletion, or
 * retention (MODEL_HISTORY) — then a URL to it answers 404, never other bytes. `{name}.tar.gz`
 * is not such a key: every replace, and any other tool, writes over it.
 *
 * A version with no such copy — an object another tool wrote, identified by its digest but not
 * yet archived; the current version of a store written by a release before records — has none:
 * undefined, and the caller serves the bytes itself.
 */
import { NotFoundError } from '../errors.js';
import type { Storage } from '../storage/types.js';
import { keys } from './names.js';
import { hasRegistryMetadata, metadataSha256, type VersionRecords } from './records.js';
import type { ModelVersion } from './types.js';

/** The key, and the store's own ETag of it (what a client that followed a URL to it saw). */
export interface ImmutableCopy {
  key: string;
  httpEtag?: string;
}

export async function immutableCopy(
  storage: Storage,
  records: VersionRecords,
  model: ModelVersion,
): Promise<ImmutableCopy | undefined> {
  const key = keys.history(model.name, model.version);
  const info = await storage.head(key).catch((err: unknown) => {
    if (err instanceof NotFoundError) return undefined;
    throw err;
  });
  if (!info || info.size !== model.size) return undefined;
  const copy = { key, ...(info.httpEtag ? { httpEtag: info.httpEtag } : {}) };
  if (model.storageKey === key && model.token === info.token) return copy; // described from there
  if (hasRegistryMetadata(info.metadata)) return metadataSha256(info.metadata) === model.sha256 ? copy : undefined;
  // A copy that dropped the object metadata (aws s3 sync from a directory): its record says.
  const record = await records.read(model.name, model.version);
  return record?.sha256 === model.sha256 && record.size === info.size ? copy : undefined;
}
