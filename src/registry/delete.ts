/** Deleting a model with its history, or one history entry, and the aliases that point there. */
import type { EventEmitter } from 'node:events';
import { errors, NotFoundError } from '../errors.js';
import type { Storage } from '../storage/types.js';
import { type AliasStore, aliasesOf } from './aliases.js';
import { etagOf } from './conditions.js';
import { keys } from './names.js';
import { metadataSha256, type VersionRecords } from './records.js';
import type { ModelVersion } from './types.js';

export interface DeleteContext {
  storage: Storage;
  records: VersionRecords;
  aliases: AliasStore;
  /** The registry's `changes`: `alias` is emitted when aliases go with a version. */
  changes: EventEmitter;
}

/**
 * Deletes history entry `version` (never the current version). A version an alias points to
 * stays, unless `force`: then the aliases go first, so no alias ever points to a deleted version.
 */
export async function deleteVersion(
  ctx: DeleteContext,
  name: string,
  version: number,
  current: ModelVersion | undefined,
  force: boolean,
): Promise<void> {
  if (current?.version === version) throw errors.versionIsCurrent(name, version);
  const key = keys.history(name, version);
  await ctx.storage.head(key).catch((err) => {
    if (err instanceof NotFoundError) throw errors.versionNotFound(name, version);
    throw err;
  });
  const pointing = aliasesOf((await ctx.aliases.read(name)).aliases, version);
  if (pointing.length > 0) {
    if (!force) throw errors.aliasInUse(name, version, pointing);
    await ctx.aliases.update(name, (aliases) => {
      const before = aliases.size;
      for (const [alias, target] of [...aliases]) if (target.version === version) aliases.delete(alias);
      return aliases.size !== before;
    });
    ctx.changes.emit('alias', name);
  }
  await ctx.storage.delete(key);
  // Its record goes too, unless it holds the highest number (the next version follows it).
  const scan = await ctx.records.scan(name);
  if (scan.records.has(version) && version < scan.max) await ctx.records.remove(name, version);
}

/**
 * Deletes a model, its history and aliases; with `checked` (the version a client's If-Match
 * held for), only while it is still current. Throws MODEL_NOT_FOUND when nothing was there.
 */
export async function deleteModel(ctx: DeleteContext, name: string, checked: ModelVersion | undefined): Promise<void> {
  const { storage, records } = ctx;
  let found = false;
  try {
    await storage.head(keys.current(name));
    found = true;
  } catch (err) {
    if (!(err instanceof NotFoundError)) throw err;
  }
  // Checked again just before anything goes (and once more before the current version): a
  // version uploaded since the first check is not deleted on the old condition. (Storage
  // deletes are not conditional: a write landing between the last check and the delete remains
  // a race.)
  await stillChecked(storage, name, checked);
  // History first: a crash midway then leaves the model whole, not history without a model.
  // The highest record stays, as a tombstone holding only its number (records.ts).
  const scan = await records.scan(name);
  for (const version of scan.bytes.keys()) {
    await storage.delete(keys.history(name, version));
    found = true;
  }
  for (const version of scan.records) {
    if (version !== scan.max) await records.remove(name, version);
  }
  await ctx.aliases.remove(name);
  await stillChecked(storage, name, checked);
  await storage.delete(keys.current(name));
  if (scan.max > 0) {
    if (!found && (await records.read(name, scan.max))) found = true; // a delete a crash interrupted
    await records.tombstone(name, scan.max);
  }
  await sweepRacingWrites(ctx, name, scan.max);
  if (!found) throw errors.modelNotFound(name);
}

/**
 * A PUT that ran beside this DELETE may have stored a version after the history was looked at
 * (and kept the old current in history again), then published it before the current object
 * went. A 204 means every byte of the name is gone, so what it left goes too, until nothing is
 * left, unless a PUT made the model current again since: then it lives on, as a PUT after the
 * DELETE. A publish whose bytes go this way fails with 409 CONCURRENT_UPDATE.
 */
async function sweepRacingWrites(ctx: DeleteContext, name: string, tombstoned: number): Promise<void> {
  const { storage, records } = ctx;
  for (let pass = 0; pass < 5; pass++) {
    const left = await records.scan(name);
    if (left.bytes.size === 0 && left.max <= tombstoned) return;
    if (await exists(storage, keys.current(name))) return;
    for (const version of left.bytes.keys()) await storage.delete(keys.history(name, version));
    for (const version of left.records) if (version !== left.max) await records.remove(name, version);
    if (left.max > tombstoned) await records.tombstone(name, left.max);
    tombstoned = Math.max(tombstoned, left.max);
  }
}

async function exists(storage: Storage, key: string): Promise<boolean> {
  return storage.head(key).then(
    () => true,
    (err: unknown) => {
      if (err instanceof NotFoundError) return false;
      throw err;
    },
  );
}

/** Throws 412 when the current version is no longer `checked` (the one a condition held for). */
async function stillChecked(storage: Storage, name: string, checked: ModelVersion | undefined): Promise<void> {
  if (!checked) return;
  const now = await storage.head(keys.current(name)).catch((err) => {
    if (err instanceof NotFoundError) return undefined;
    throw err;
  });
  const sha256 = now && metadataSha256(now.metadata);
  if (sha256 !== checked.sha256) throw errors.etagMismatch(name, sha256 && etagOf(sha256));
}
