/**
 * The model registry: models, versions and history on top of any Storage. Routes call this;
 * this calls the storage and the cache. A thin facade over the modules that own each part:
 *
 *   publish.ts   version numbering and the compare-and-swap publish loop, history retention
 *   upload.ts    validating an upload as it streams to storage, cache write-through
 *   identify.ts  what version an object without the registry's metadata is
 *   streams.ts   storage reads pinned to a version, and verified on the way to a client
 *   delete.ts    deleting a model, or one version
 *   listing.ts   GET /models
 *   records.ts   version records and the metadata published objects carry
 *   aliases.ts   the aliases documents
 *   immutable.ts the key of a version's bytes that never change (redirect downloads)
 *
 * Layout: `{name}.tar.gz` is the current version, where Rasa and other tools read it — and where
 * they may write. So every version the registry publishes is first stored where no other tool
 * writes, `.history/{name}/v{N}.tar.gz` (immutable), with its record `v{N}.json` (records.ts);
 * the root object is a copy. A replace never has to archive the version it replaces, and no
 * external overwrite can destroy a published version.
 *
 * Reads never write to an object the registry did not write (identify.ts).
 */
import { EventEmitter } from 'node:events';
import type { Readable } from 'node:stream';
import { CacheDiskError, type Fetch, type ManifestEntry, type ModelCache, type Tree } from '../cache/index.js';
import { errors, NotFoundError, StorageAccessDeniedError } from '../errors.js';
import type { ObjectInfo, Storage } from '../storage/types.js';
import type { Logger } from '../util/logger.js';
import { type Aliases, AliasStore } from './aliases.js';
import type { ArchiveLimits } from './archive.js';
import { checkAliasCondition, checkClientCondition } from './conditions.js';
import { type DeleteContext, deleteModel, deleteVersion } from './delete.js';
import { Identifier } from './identify.js';
import { type ImmutableCopy, immutableCopy } from './immutable.js';
import { describedObjects, listModels } from './listing.js';
import { assertAlias, assertName, keys, parseRef } from './names.js';
import { isNotFound } from './not-found.js';
import { Publisher } from './publish.js';
import { isTombstoneSize, VersionRecords } from './records.js';
import { openPinned, openVerified } from './streams.js';
import type {
  ByteRange,
  CacheStatus,
  ClientCondition,
  ListOptions,
  ModelSummary,
  ModelVersion,
  UploadInput,
} from './types.js';
import { type UploadContext, upload } from './upload.js';

export { etagOf } from './conditions.js';
export { parseUpdatedAtCursor } from './listing.js';
export type * from './types.js';

export interface RegistryOptions {
  storage: Storage;
  limits: ArchiveLimits;
  history: number;
  logger: Logger;
  /** The local cache in front of storage; without it every read goes to storage. */
  cache?: ModelCache;
  /** Put each accepted upload into the cache too. */
  writeThrough?: boolean;
  /** How old the bytes of a number that never became current get before a publish deletes them. */
  abandonedAfterMs?: number;
}

export class ModelRegistry {
  readonly storage: Storage;
  readonly #log: Logger;
  readonly #records: VersionRecords;
  /** What HEADs told of listed objects, so that a listing of unchanged models needs none. */
  readonly #described = describedObjects();
  readonly #aliases: AliasStore;
  readonly #cache: ModelCache | undefined;
  readonly #identifier: Identifier;
  readonly #publisher: Publisher;
  readonly #upload: UploadContext;
  readonly #delete: DeleteContext;
  /** Digest last remembered per name, so the cache's name → version record is written on change only. */
  readonly #remembered = new Map<string, string>();
  /**
   * Emits `change` with a model name whenever this process changes that model (upload, rollback,
   * delete), and `alias` with the name when it sets or removes one of its aliases.
   */
  readonly changes = new EventEmitter().setMaxListeners(0);

  constructor(options: RegistryOptions) {
    const storage = (this.storage = options.storage);
    this.#cache = options.cache;
    this.#log = options.logger;
    const records = (this.#records = new VersionRecords(storage));
    const aliases = (this.#aliases = new AliasStore(storage));
    this.#identifier = new Identifier(storage, records, this.#cache, this.#log);
    this.#publisher = new Publisher({
      storage,
      records,
      aliases,
      identifier: this.#identifier,
      history: options.history,
      abandonedAfterMs: options.abandonedAfterMs,
      logger: this.#log,
      published: (model) => {
        this.#remember(model);
        this.changes.emit('change', model.name);
      },
    });
    const writeThrough = this.#cache && options.writeThrough ? this.#cache : undefined;
    this.#upload = { storage, limits: options.limits, publisher: this.#publisher, logger: this.#log, writeThrough };
    this.#delete = { storage, records, aliases, changes: this.changes };
  }

  /**
   * Validates and stores an upload as the new current version. Returns it and whether the name
   * was new. Nothing is visible unless every check passes.
   */
  async put(name: string, input: UploadInput): Promise<{ model: ModelVersion; created: boolean }> {
    return upload(this.#upload, name, input);
  }

  /** Makes a retained version current again, as a new version number. */
  async rollback(name: string, version: number, clientCondition: ClientCondition): Promise<ModelVersion> {
    assertName(name);
    const { model } = await this.#publisher.publish(
      name,
      clientCondition,
      async (current) => {
        if (!current) throw errors.modelNotFound(name);
        if (version === current.version) throw errors.alreadyCurrent(name, version);
        if (version > current.version) throw errors.versionNotFound(name, version);
        const target = await this.#identifier.describeKey(name, keys.history(name, version), version).catch((err) => {
          if (err instanceof NotFoundError) throw errors.versionNotFound(name, version);
          throw err;
        });
        const source = { sourceToken: target.token, condition: { ifNoneMatch: true } as const };
        return {
          record: { sha256: target.sha256, size: target.size, labels: target.labels, origin: 'rollback' },
          write: (dest, metadata) => this.storage.copy(target.storageKey, dest, { ...source, metadata }),
        };
      },
      { mustExist: true },
    );
    return model;
  }

  /** The current version, or `version` from history. Throws 404 errors. */
  async describe(name: string, version?: number): Promise<ModelVersion> {
    assertName(name);
    const current = await this.#identifier.describeKey(name, keys.current(name)).catch((err) => {
      if (err instanceof NotFoundError) throw errors.modelNotFound(name);
      throw err;
    });
    this.#remember(current);
    if (version === undefined || version === current.version) return current;
    if (version > current.version) throw errors.versionNotFound(name, version);
    return this.#identifier.describeKey(name, keys.history(name, version), version).catch((err) => {
      if (err instanceof NotFoundError) throw errors.versionNotFound(name, version);
      throw err;
    });
  }

  /**
   * The version a reference names: `name` (or `name@latest`: the current version, or `version`
   * from history), or `name@alias`: the version the alias points to. Throws 404 errors.
   */
  async resolve(ref: string, version?: number): Promise<ModelVersion> {
    const { name, alias } = parseRef(ref);
    if (alias === undefined) return this.describe(name, version);
    if (version !== undefined) throw errors.aliasWithVersion(ref);
    const target = (await this.#aliases.read(name)).aliases.get(alias);
    if (!target) {
      await this.describe(name); // a missing model is MODEL_NOT_FOUND, not a missing alias
      throw errors.aliasNotFound(name, alias);
    }
    return this.describe(name, target.version).catch((err: unknown) => {
      if (isNotFound(err, 'VERSION_NOT_FOUND')) throw errors.aliasTargetGone(name, alias, target.version);
      throw err;
    });
  }

  /** The aliases of a model (none when it has none; the model's existence is not checked). */
  async aliases(name: string): Promise<Aliases> {
    assertName(name);
    return (await this.#aliases.read(name)).aliases;
  }

  /**
   * Points `alias` at `version` (which must be stored). `condition` is the client's If-Match /
   * If-None-Match on the alias: its ETag is the ETag of the version it points to.
   */
  async setAlias(
    name: string,
    alias: string,
    version: number,
    condition: ClientCondition,
  ): Promise<{ model: ModelVersion; created: boolean }> {
    assertName(name);
    assertAlias(alias);
    const model = await this.describe(name, version);
    let created = false;
    await this.#aliases.update(name, (aliases) => {
      const now = aliases.get(alias);
      checkAliasCondition(name, alias, now, condition);
      created = now === undefined;
      if (now?.version === version && now.sha256 === model.sha256) return false;
      aliases.set(alias, { version, sha256: model.sha256, updatedAt: new Date().toISOString() });
      return true;
    });
    // Retention or a DELETE ?version=N may have removed the version after it was described: they
    // read the aliases before deleting, so one of the two sees the other. If the version is gone
    // now, the alias is taken back (only if it still points there) and the client told.
    try {
      await this.describe(name, version);
    } catch (err) {
      if (isNotFound(err)) {
        await this.#aliases.update(name, (aliases) => aliases.get(alias)?.version === version && aliases.delete(alias));
      }
      throw err;
    }
    this.changes.emit('alias', name);
    return { model, created };
  }

  /** Removes an alias; `condition` as for setAlias. Throws ALIAS_NOT_FOUND. */
  async removeAlias(name: string, alias: string, condition: ClientCondition): Promise<void> {
    assertName(name);
    assertAlias(alias);
    let missing = false;
    await this.#aliases.update(name, (aliases) => {
      const now = aliases.get(alias);
      missing = now === undefined && !('ifMatch' in condition);
      if (missing) return false;
      checkAliasCondition(name, alias, now, condition);
      return aliases.delete(alias);
    });
    if (missing) {
      await this.describe(name);
      throw errors.aliasNotFound(name, alias);
    }
    this.changes.emit('alias', name);
  }

  /**
   * Opens the bytes of a described version: from the cache, or from storage while filling the
   * cache. Throws PreconditionFailedError if the object changed since it was described (the
   * caller describes again).
   */
  async read(
    model: ModelVersion,
    range?: ByteRange,
    signal?: AbortSignal,
  ): Promise<{ body: Readable | Buffer; cache: CacheStatus }> {
    if (!this.#cache) return { body: await openVerified(this.storage, model, range, signal), cache: 'BYPASS' };
    try {
      const { body, hit } = await this.#cache.open(model, this.#fetch(model), range, signal);
      return { body, cache: hit ? 'HIT' : 'MISS' };
    } catch (err) {
      // Nothing in the cache is needed for correctness: a broken cache disk costs speed only.
      if (!(err instanceof CacheDiskError)) throw err;
      this.#log.warn({ err, model: model.name }, 'cache unusable; serving from storage');
      return { body: await openVerified(this.storage, model, range, signal), cache: 'BYPASS' };
    }
  }

  /** Where `model`'s bytes are that never change, if it has such a copy (immutable.ts). */
  async immutableCopy(model: ModelVersion): Promise<ImmutableCopy | undefined> {
    return immutableCopy(this.storage, this.#records, model);
  }

  /** True when the archive of `model` is in the local cache. */
  cached(model: ModelVersion): boolean {
    return this.#cache?.has(model.sha256) ?? false;
  }

  /**
   * The last version of `name` this replica saw, if its archive is cached: what can still be
   * served while storage is unreachable (stale-if-error). Only for the current version.
   */
  async stale(name: string, version?: number): Promise<ModelVersion | undefined> {
    const model = await this.#cache?.recall<ModelVersion>(name);
    return model && (version === undefined || version === model.version) ? model : undefined;
  }

  /**
   * Runs `fn` on the extracted tree of a version (files and manifest), extracting it into the
   * cache once. The archive and its tree stay in the cache until `fn` settles: open the files
   * `fn` needs in it (an open file outlives a later eviction).
   */
  async withTree<T>(model: ModelVersion, fn: (tree: Tree) => Promise<T>): Promise<T> {
    if (!this.#cache) throw new Error('file access needs the cache');
    return this.#cache.withTree(model, this.#fetch(model), fn);
  }

  /**
   * One file of a version's tree, opened: the caller closes `fd` (or a stream over it does).
   * Undefined when the tree has no such regular file.
   */
  async openFile(model: ModelVersion, requested: string): Promise<{ fd: number; entry: ManifestEntry } | undefined> {
    if (!this.#cache) throw new Error('file access needs the cache');
    return this.#cache.openFile(model, this.#fetch(model), requested);
  }

  /** How the cache reads `model` from storage on a miss. */
  #fetch(model: ModelVersion): Fetch {
    return (signal, range) => openPinned(this.storage, model, range, signal);
  }

  /** The current version first, then retained history, newest first. */
  async versions(name: string): Promise<ModelVersion[]> {
    const current = await this.describe(name);
    const result = [current];
    const listed: ObjectInfo[] = [];
    const tombstones = new Set<number>();
    for await (const info of this.storage.list(keys.historyPrefix(name))) {
      const recorded = keys.recordVersionOf(info.key);
      if (recorded !== undefined && isTombstoneSize(info.size)) tombstones.add(recorded);
      listed.push(info);
    }
    for (const info of listed) {
      const version = keys.versionOf(info.key);
      // A number given back never was a version, whatever bytes its writer left.
      if (version === undefined || version >= current.version || tombstones.has(version)) continue;
      const described = await this.#identifier.describeKey(name, info.key, version, info).catch((err) => {
        if (err instanceof NotFoundError) return undefined; // pruned meanwhile
        throw err;
      });
      if (described) result.push(described);
    }
    // Object metadata does not say where a version came from (it reads as an upload): the
    // version's record does, when it has one (a rollback, a foreign object).
    await Promise.all(
      result.map(async (v) => {
        const record = await this.#records.read(name, v.version).catch(() => undefined);
        if (record && record.sha256 === v.sha256) v.origin = record.origin;
      }),
    );
    return result.sort((a, b) => b.version - a.version);
  }

  /**
   * Deletes a model and its history, or one history entry; with a client condition (If-Match),
   * only while the model (or that version) still is what the client saw.
   */
  async delete(
    name: string,
    version?: number,
    clientCondition: ClientCondition = {},
    options: { force?: boolean } = {},
  ): Promise<void> {
    assertName(name);
    let checked: ModelVersion | undefined;
    if (Object.keys(clientCondition).length > 0) {
      checked = await this.describe(name, version).catch((err) => {
        if (isNotFound(err)) return undefined;
        throw err;
      });
      checkClientCondition(name, checked, clientCondition);
    }
    if (version !== undefined) {
      const current = await this.describe(name).catch((err) => {
        if (isNotFound(err, 'MODEL_NOT_FOUND')) return undefined;
        throw err;
      });
      return deleteVersion(this.#delete, name, version, current, options.force ?? false);
    }
    await deleteModel(this.#delete, name, checked);
    this.#remembered.delete(name);
    await this.#cache?.forget(name);
    this.changes.emit('change', name);
  }

  /** A page of models, filtered by labels and alias, sorted by name or updatedAt (listing.ts). */
  async list(options: ListOptions): Promise<{ models: ModelSummary[]; nextCursor: string | null }> {
    return listModels(this.storage, this.#aliases, options, this.#described);
  }

  /** Sweeps leftovers of crashed uploads. */
  async sweep(): Promise<number> {
    return this.storage.sweep().catch((err: unknown) => {
      // Read-only credentials: nothing of ours can be left over to remove, and reads still work.
      if (!(err instanceof StorageAccessDeniedError)) throw err;
      this.#log.warn({ err: err.message }, 'the storage may not be written with these credentials: serving reads only');
      return 0;
    });
  }

  #remember(model: ModelVersion): void {
    if (!this.#cache || this.#remembered.get(model.name) === model.sha256) return;
    this.#remembered.set(model.name, model.sha256);
    void this.#cache.remember(model).catch((err) => {
      this.#log.warn({ err }, 'could not record the version in the cache');
    });
  }
}
