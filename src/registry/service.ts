/**
 * The model registry: models, versions and history on top of any Storage (SPEC §1–§4).
 * Routes call this; this calls the storage. It owns the layout, the metadata format,
 * version numbering, history retention and the compare-and-swap loops.
 *
 * Layout: `{name}.tar.gz` is the current version, where Rasa and other tools read it — and where
 * they may write. So every version the registry publishes is first stored where no other tool
 * writes, `.history/{name}/v{N}.tar.gz` (immutable), with its record `v{N}.json` (records.ts);
 * the root object is a copy. A replace never has to archive the version it replaces, and no
 * external overwrite can destroy a published version.
 *
 * Publish (upload or rollback), step by step (every step safe to crash after):
 *   1. claim number N = highest number taken + 1 by creating record v{N} (if-none-match);
 *   2. if the current object is one another tool wrote, keep a copy of it as its own version;
 *   3. write the new bytes to .history/{name}/v{N}.tar.gz (if-none-match);
 *   4. copy them to {name}.tar.gz on the condition that it is unchanged (the compare-and-swap);
 *   5. prune history beyond MODEL_HISTORY.
 * A crash or a lost race after 1 leaves a number that never became current: it is skipped, never
 * reused (numbers only ever rise). A lost race undoes 1 and retries from the new current version
 * with the bytes already stored; a client's own If-Match is re-checked each time.
 *
 * Reads never write to an object the registry did not write. An object without the registry's
 * metadata (another tool's, or one whose metadata a copy dropped) is identified by its digest,
 * computed in the same storage read that fills the cache: the digest of the newest record means
 * that version; any other digest is a new version, numbered after the highest record and
 * recorded (our own file) when the storage lets us write.
 */
import { createHash, type Hash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { open, rm, stat, type FileHandle } from 'node:fs/promises';
import { pipeline as pipe, Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Logger } from '../util/logger.js';
import type { ModelCache } from '../cache/index.js';
import { CacheDiskError } from '../cache/blob-store.js';
import type { Tree } from '../cache/trees.js';
import { errors, NotFoundError, PreconditionFailedError, RegistryError, StorageAccessDeniedError } from '../errors.js';
import type { Metadata, ObjectInfo, Storage, WriteCondition } from '../storage/types.js';
import { createGzip } from 'node:zlib';
import { ArchiveValidator, type ArchiveFormat, type ArchiveLimits } from './archive.js';
import { AliasStore, aliasVersions, aliasesOf, type Aliases, type AliasTarget } from './aliases.js';
import { assertAlias, assertLabels, assertName, keys, parseRef, type Labels } from './names.js';
import {
  encodeMetadata,
  hasRegistryMetadata,
  metadataSha256,
  recordOfMetadata,
  VersionRecords,
  type HistoryScan,
  type VersionRecord,
} from './records.js';

export interface ModelVersion {
  name: string;
  version: number;
  sha256: string;
  size: number;
  createdAt: string;
  labels: Labels;
  storageKey: string;
  /** The storage token of the object described; internal, never sent to clients. */
  token: string;
  /** Where the version came from, when the registry knows. */
  origin?: VersionRecord['origin'];
}

/** A listed model: the fields the backend gives cheaply; version and digest when known. */
export interface ModelSummary {
  name: string;
  size: number;
  updatedAt: string;
  version?: number;
  sha256?: string;
  labels?: Labels;
  /** Alias → version, for every alias of the model. */
  aliases: Record<string, number>;
}

/** What GET /models asks: a page of models, filtered and sorted. */
export interface ListOptions {
  prefix?: string;
  limit: number;
  /** The nextCursor of the previous page (its form depends on `sort`). */
  cursor?: string;
  /** Only models whose current version has every one of these labels. */
  labels?: Labels;
  /** Only models that have this alias. */
  alias?: string;
  /** `name` (ascending, the default) or `updatedAt` (newest first, then by name). */
  sort?: 'name' | 'updatedAt';
}

/** What the client asked with If-Match / If-None-Match on a write. */
export type ClientCondition = { ifNoneMatch: true } | { ifMatch: string[] | '*' } | Record<string, never>;

/** Client's claimed digest of the body, from Content-Digest or X-Checksum-Sha256. */
export interface ExpectedDigest {
  header: string;
  sha256: string;
}

export interface UploadInput {
  body: Readable;
  format: ArchiveFormat;
  labels: Labels;
  expected?: ExpectedDigest;
  condition: ClientCondition;
  signal?: AbortSignal;
}

export interface RegistryOptions {
  storage: Storage;
  limits: ArchiveLimits;
  history: number;
  logger: Logger;
  /** The local cache in front of storage; without it every read goes to storage. */
  cache?: ModelCache;
  /** Put each accepted upload into the cache too. */
  writeThrough?: boolean;
}

/** Where the bytes of a read come from: the cache (HIT), storage through the cache (MISS). */
export type CacheStatus = 'HIT' | 'MISS' | 'BYPASS';

/** Commit attempts under contention before giving up with 409; losers back off with jitter. */
const MAX_COMMIT_ATTEMPTS = 50;
/** Identified objects without metadata remembered, by key + token. */
const IDENTIFIED_ENTRIES = 4096;

/** A version about to be published: its record (less the number) and how to write its bytes. */
interface Candidate {
  record: Omit<VersionRecord, 'version' | 'createdAt'>;
  /** Writes the bytes to `key` (if-none-match) with `metadata`. Called once. */
  write(key: string, metadata: Metadata): Promise<ObjectInfo>;
}

export class ModelRegistry {
  readonly storage: Storage;
  readonly #limits: ArchiveLimits;
  readonly #history: number;
  readonly #log: Logger;
  /** In-flight digest computations of objects without metadata, by key + token. */
  readonly #digesting = new Map<string, Promise<string>>();
  /** Objects without metadata already identified as a version, by key + token (bounded). */
  readonly #identified = new Map<string, ModelVersion>();
  /** Identifications in flight, by key + token: concurrent first reads share one. */
  readonly #identifying = new Map<string, Promise<ModelVersion>>();
  readonly #records: VersionRecords;
  readonly #aliases: AliasStore;
  readonly #cache: ModelCache | undefined;
  readonly #writeThrough: boolean;
  /** Digest last remembered per name, so the cache's name → version record is written on change only. */
  readonly #remembered = new Map<string, string>();
  /**
   * Emits `change` with a model name whenever this process changes that model (upload, rollback,
   * delete), and `alias` with the name when it sets or removes one of its aliases.
   */
  readonly changes = new EventEmitter().setMaxListeners(0);

  constructor(options: RegistryOptions) {
    this.storage = options.storage;
    this.#limits = options.limits;
    this.#history = options.history;
    this.#cache = options.cache;
    this.#writeThrough = options.writeThrough ?? false;
    this.#log = options.logger;
    this.#records = new VersionRecords(this.storage);
    this.#aliases = new AliasStore(this.storage);
  }

  /**
   * Validates and stores an upload as the new current version. Returns it and whether the name
   * was new. Nothing is visible unless every check passes.
   */
  async put(name: string, input: UploadInput): Promise<{ model: ModelVersion; created: boolean }> {
    assertName(name);
    assertLabels(input.labels);
    // Refused now, not after the whole body went to storage: the largest metadata this upload
    // could get (the longest version number, a digest, a date, its labels).
    this.storage.checkMetadata(encodeMetadata({ version: Number.MAX_SAFE_INTEGER, sha256: '0'.repeat(64), createdAt: new Date().toISOString(), labels: input.labels }));
    const key = keys.current(name);
    const validator = new ArchiveValidator(input.format, this.#limits);
    // Write-through: a local backend links its committed file into the cache (no second write);
    // others get a copy of the bytes as they stream to storage.
    const writeThrough = this.#cache && this.#writeThrough ? this.#cache : undefined;
    const copyTo = writeThrough && !this.storage.capabilities.localFiles ? writeThrough.blobs.tempPath() : undefined;
    // A .tar.gz is stored as received: the validator's digest of the body is the stored digest.
    const stored = new DigestCounter({ copyTo, hash: input.format === 'tar' });
    const streams = input.format === 'tar' ? [input.body, validator, createGzip(), stored] : [input.body, validator, stored];
    // If the pipeline fails before it touches `stored` (e.g. a bad argument), fail the staging
    // too: otherwise stage() waits forever for a body that never ends.
    const piping = pipeline(streams, { signal: input.signal }).catch((err: unknown) => {
      stored.destroy(err as Error);
      throw err;
    });
    const staging = this.storage.stage(key, stored, { signal: input.signal });
    const [piped, staged] = await Promise.allSettled([piping, staging]);
    if (piped.status === 'rejected' || staged.status === 'rejected') {
      if (staged.status === 'fulfilled') await this.storage.discard(staged.value);
      if (copyTo) await rm(copyTo, { force: true });
      throw piped.status === 'rejected' ? piped.reason : (staged as PromiseRejectedResult).reason;
    }
    let published: { model: ModelVersion; created: boolean; stored: ObjectInfo } | undefined;
    try {
      const summary = validator.summary;
      if (input.expected && input.expected.sha256 !== summary.receivedSha256) {
        throw errors.digestMismatch(input.expected.header, input.expected.sha256, summary.receivedSha256);
      }
      const sha256 = stored.sha256 ?? summary.receivedSha256;
      const record = { sha256, size: staged.value.size, labels: input.labels, origin: 'upload' as const };
      published = await this.#publish(name, input.condition, async () => ({
        record,
        write: (dest, metadata) => this.storage.commit(staged.value, metadata, { ifNoneMatch: true }, { key: dest }),
      }));
      if (writeThrough) await this.#admit(writeThrough, published.model, published.stored, copyTo);
      return { model: published.model, created: published.created };
    } finally {
      await this.storage.discard(staged.value).catch(() => {});
      if (copyTo && !published) await rm(copyTo, { force: true });
    }
  }

  /** Write-through: the accepted bytes become a cache entry under their digest. */
  async #admit(cache: ModelCache, model: ModelVersion, stored: ObjectInfo, copied: string | undefined): Promise<void> {
    const file = copied ?? cache.blobs.tempPath();
    try {
      // Linked from the immutable history object, never from the root file other tools write.
      if (!copied) await this.storage.copyOut(stored.key, stored.token, file);
      // A copy the cache disk cut short (or never finished) is not the archive: leave it out.
      const { size } = await stat(file);
      if (size !== model.size) throw new Error(`the cache copy has ${size} of ${model.size} bytes`);
      await cache.blobs.admit(model.sha256, file);
    } catch (err) {
      // The upload stands; the first download fills the cache instead.
      await rm(file, { force: true });
      this.#log.warn({ err, model: model.name }, 'cache write-through failed');
    }
  }

  /** Makes a retained version current again, as a new version number. */
  async rollback(name: string, version: number, clientCondition: ClientCondition): Promise<ModelVersion> {
    assertName(name);
    const { model } = await this.#publish(name, clientCondition, async (current) => {
      if (!current) throw errors.modelNotFound(name);
      if (version === current.version) throw errors.alreadyCurrent(name, version);
      if (version > current.version) throw errors.versionNotFound(name, version);
      const target = await this.#describeKey(name, keys.history(name, version), version).catch((err) => {
        if (err instanceof NotFoundError) throw errors.versionNotFound(name, version);
        throw err;
      });
      return {
        record: { sha256: target.sha256, size: target.size, labels: target.labels, origin: 'rollback' },
        write: (dest, metadata) =>
          this.storage.copy(target.storageKey, dest, { sourceToken: target.token, metadata, condition: { ifNoneMatch: true } }),
      };
    }, { mustExist: true });
    return model;
  }

  /** The current version, or `version` from history. Throws 404 errors. */
  async describe(name: string, version?: number): Promise<ModelVersion> {
    assertName(name);
    const current = await this.#describeKey(name, keys.current(name)).catch((err) => {
      if (err instanceof NotFoundError) throw errors.modelNotFound(name);
      throw err;
    });
    this.#remember(current);
    if (version === undefined || version === current.version) return current;
    if (version > current.version) throw errors.versionNotFound(name, version);
    return this.#describeKey(name, keys.history(name, version), version).catch((err) => {
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
      if (err instanceof RegistryError && err.code === 'VERSION_NOT_FOUND') throw errors.aliasTargetGone(name, alias, target.version);
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
  async setAlias(name: string, alias: string, version: number, condition: ClientCondition): Promise<{ model: ModelVersion; created: boolean }> {
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
      if (err instanceof RegistryError && err.statusCode === 404) {
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
  async read(model: ModelVersion, range?: { start: number; end: number }, signal?: AbortSignal): Promise<{ body: Readable | Buffer; cache: CacheStatus }> {
    if (!this.#cache) return { body: await this.#openVerified(model, range, signal), cache: 'BYPASS' };
    try {
      const { body, hit } = await this.#cache.blobs.open(model.sha256, model.size, (s, r) => this.#openPinned(model, r, s), range, signal);
      return { body, cache: hit ? 'HIT' : 'MISS' };
    } catch (err) {
      // Nothing in the cache is needed for correctness: a broken cache disk costs speed only.
      if (!(err instanceof CacheDiskError)) throw err;
      this.#log.warn({ err, model: model.name }, 'cache unusable; serving from storage');
      return { body: await this.#openVerified(model, range, signal), cache: 'BYPASS' };
    }
  }

  /** True when the archive of `model` is in the local cache. */
  cached(model: ModelVersion): boolean {
    return this.#cache?.blobs.has(model.sha256) ?? false;
  }

  /**
   * The last version of `name` this replica saw, if its archive is cached: what can still be
   * served while storage is unreachable (stale-if-error). Only for the current version.
   */
  async stale(name: string, version?: number): Promise<ModelVersion | undefined> {
    const model = await this.#cache?.recall(name);
    return model && (version === undefined || version === model.version) ? model : undefined;
  }

  /**
   * Runs `fn` on the extracted tree of a version (files and manifest), extracting it into the
   * cache once. The archive and its tree stay in the cache until `fn` settles: open the files
   * `fn` needs in it (an open file outlives a later eviction).
   */
  async withTree<T>(model: ModelVersion, fn: (tree: Tree) => Promise<T>): Promise<T> {
    const cache = this.#cache;
    if (!cache) throw new Error('file access needs the cache');
    return cache.blobs.withBlob(model.sha256, model.size, (s, r) => this.#openPinned(model, r, s), async (blob) => {
      const tree = await cache.trees.get(model.sha256, blob);
      if (tree.created) {
        cache.blobs.addExtra(model.sha256, tree.bytes);
        await cache.blobs.evict(); // the tree counts against the bound; this entry is held
      }
      return fn(tree);
    });
  }

  async #openPinned(model: ModelVersion, range?: { start: number; end: number }, signal?: AbortSignal): Promise<Readable> {
    const { info, body } = await this.storage.get(model.storageKey, { range, signal });
    if (info.token !== model.token) {
      body.destroy();
      throw new PreconditionFailedError(model.storageKey);
    }
    return body;
  }

  /**
   * Storage bytes of `model` straight to a client (no cache): a whole archive is hashed on the
   * way and its last chunk sent only once the digest matched — as a cache fill does — so wrong
   * bytes end in a broken transfer, never in a complete response. A range cannot be checked.
   */
  async #openVerified(model: ModelVersion, range?: { start: number; end: number }, signal?: AbortSignal): Promise<Readable> {
    const body = await this.#openPinned(model, range, signal);
    if (range) return body;
    const hash = createHash('sha256');
    let held: Buffer | undefined;
    const verified = new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        hash.update(chunk);
        const previous = held;
        held = chunk;
        callback(null, previous);
      },
      flush(callback) {
        const actual = hash.digest('hex');
        if (actual !== model.sha256) return callback(new Error(`storage sent bytes that do not match ${model.name} v${model.version} (sha256 ${actual}, expected ${model.sha256})`));
        callback(null, held);
      },
    });
    pipe(body, verified, () => {}); // an error on either side destroys both; the reader sees it
    return verified;
  }

  /** The current version first, then retained history, newest first. */
  async versions(name: string): Promise<ModelVersion[]> {
    const current = await this.describe(name);
    const result = [current];
    for await (const info of this.storage.list(keys.historyPrefix(name))) {
      const version = keys.versionOf(info.key);
      if (version === undefined || version >= current.version) continue;
      const described = await this.#describeKey(name, info.key, version, info).catch((err) => {
        if (err instanceof NotFoundError) return undefined; // pruned meanwhile
        throw err;
      });
      if (described) result.push(described);
    }
    // Object metadata does not say where a version came from (it reads as an upload): the
    // version's record does, when it has one (a rollback, a foreign object).
    await Promise.all(result.map(async (v) => {
      const record = await this.#records.read(name, v.version).catch(() => undefined);
      if (record && record.sha256 === v.sha256) v.origin = record.origin;
    }));
    return result.sort((a, b) => b.version - a.version);
  }

  /**
   * Deletes a model and its history, or one history entry; with a client condition (If-Match),
   * only while the model (or that version) still is what the client saw.
   */
  async delete(name: string, version?: number, clientCondition: ClientCondition = {}, options: { force?: boolean } = {}): Promise<void> {
    assertName(name);
    let checked: ModelVersion | undefined;
    if (Object.keys(clientCondition).length > 0) {
      checked = await this.describe(name, version).catch((err) => {
        if (err instanceof RegistryError && err.statusCode === 404) return undefined;
        throw err;
      });
      checkClientCondition(name, checked, clientCondition);
    }
    if (version !== undefined) {
      const current = await this.describe(name).catch((err) => {
        if ((err as { code?: string }).code === 'MODEL_NOT_FOUND') return undefined;
        throw err;
      });
      if (current?.version === version) throw errors.versionIsCurrent(name, version);
      const key = keys.history(name, version);
      await this.storage.head(key).catch((err) => {
        if (err instanceof NotFoundError) throw errors.versionNotFound(name, version);
        throw err;
      });
      // A version an alias points to stays, unless the client says otherwise (?force=true): then
      // the aliases go first, so no alias ever points to a deleted version.
      const pointing = aliasesOf((await this.#aliases.read(name)).aliases, version);
      if (pointing.length > 0) {
        if (!options.force) throw errors.aliasInUse(name, version, pointing);
        await this.#aliases.update(name, (aliases) => {
          const before = aliases.size;
          for (const [alias, target] of [...aliases]) if (target.version === version) aliases.delete(alias);
          return aliases.size !== before;
        });
        this.changes.emit('alias', name);
      }
      await this.storage.delete(key);
      // Its record goes too, unless it holds the highest number (the next version follows it).
      const scan = await this.#records.scan(name);
      if (scan.records.has(version) && version < scan.max) await this.#records.remove(name, version);
      return;
    }
    let found = false;
    try {
      await this.storage.head(keys.current(name));
      found = true;
    } catch (err) {
      if (!(err instanceof NotFoundError)) throw err;
    }
    // Checked again just before anything goes (and once more before the current version): a
    // version uploaded since the first check is not deleted on the old condition. (Storage
    // deletes are not conditional: a write landing between the last check and the delete remains
    // a race.)
    await this.#stillChecked(name, checked);
    // History first: a crash midway then leaves the model whole, not history without a model.
    // The highest record stays, as a tombstone holding only its number (records.ts).
    const scan = await this.#records.scan(name);
    for (const version of scan.bytes.keys()) {
      await this.storage.delete(keys.history(name, version));
      found = true;
    }
    for (const version of scan.records) {
      if (version !== scan.max) await this.#records.remove(name, version);
    }
    await this.#aliases.remove(name);
    await this.#stillChecked(name, checked);
    await this.storage.delete(keys.current(name));
    if (scan.max > 0) {
      if (!found && (await this.#records.read(name, scan.max))) found = true; // a delete a crash interrupted
      await this.#records.tombstone(name, scan.max);
    }
    await this.#sweepRacingWrites(name, scan.max);
    if (!found) throw errors.modelNotFound(name);
    this.#remembered.delete(name);
    await this.#cache?.forget(name);
    this.changes.emit('change', name);
  }

  /**
   * A PUT that ran beside this DELETE may have stored a version after the history was looked at
   * (and kept the old current in history again), then published it before the current object
   * went. A 204 means every byte of the name is gone, so what it left goes too, until nothing is
   * left, unless a PUT made the model current again since: then it lives on, as a PUT after the
   * DELETE. A publish whose bytes go this way fails with 409 CONCURRENT_UPDATE.
   */
  async #sweepRacingWrites(name: string, tombstoned: number): Promise<void> {
    for (let pass = 0; pass < 5; pass++) {
      const left = await this.#records.scan(name);
      if (left.bytes.size === 0 && left.max <= tombstoned) return;
      if (await this.#current(name)) return;
      for (const version of left.bytes.keys()) await this.storage.delete(keys.history(name, version));
      for (const version of left.records) if (version !== left.max) await this.#records.remove(name, version);
      if (left.max > tombstoned) await this.#records.tombstone(name, left.max);
      tombstoned = Math.max(tombstoned, left.max);
    }
  }

  /** Throws 412 when the current version is no longer `checked` (the one a condition held for). */
  async #stillChecked(name: string, checked: ModelVersion | undefined): Promise<void> {
    if (!checked) return;
    const now = await this.storage.head(keys.current(name)).catch((err) => {
      if (err instanceof NotFoundError) return undefined;
      throw err;
    });
    const sha256 = now && metadataSha256(now.metadata);
    if (sha256 !== checked.sha256) throw errors.etagMismatch(name, sha256 && etagOf(sha256));
  }

  /**
   * A page of models, filtered by labels and alias, sorted by name (from `cursor` on) or by
   * updatedAt. Costs one listing of the models and one of `.aliases/`, plus on a backend whose
   * listing has no metadata (S3) one HEAD per model looked at, and a read of each aliases
   * document this process has not seen in its current state. By name, models are looked at
   * only until the page is full (and one more match says whether there is a next page); by
   * updatedAt, every model under the prefix is (a listing has no other order).
   */
  async list(options: ListOptions): Promise<{ models: ModelSummary[]; nextCursor: string | null }> {
    const prefix = options.prefix ?? '';
    const index = await this.#aliases.all(prefix);
    const wanted = (s: ModelSummary) =>
      (options.alias === undefined || s.aliases[options.alias] !== undefined) &&
      Object.entries(options.labels ?? {}).every(([k, v]) => s.labels?.[k] === v);
    // Without metadata in the listing, a model the alias filter keeps is HEADed: its version and labels.
    const summary = async (name: string, info: ObjectInfo): Promise<ModelSummary> => {
      const described = this.storage.capabilities.listIncludesMetadata ? info : await this.storage.head(info.key).catch((err: unknown) => {
        if (err instanceof NotFoundError) return undefined; // deleted since it was listed
        throw err;
      });
      return summarize(name, described ?? info, index.get(name));
    };
    const candidates = async function* (this: ModelRegistry, startAfter?: string): AsyncGenerator<{ name: string; info: ObjectInfo }> {
      for await (const info of this.storage.list(prefix, { startAfter })) {
        const name = keys.nameOf(info.key);
        if (name === undefined) continue;
        if (options.alias !== undefined && index.get(name)?.get(options.alias) === undefined) continue; // no read needed
        yield { name, info };
      }
    }.bind(this);

    if (options.sort === 'updatedAt') {
      const all: ModelSummary[] = [];
      for (const batch of await batches(candidates(), 256)) all.push(...(await mapLimit(batch, SUMMARY_READS, (c) => summary(c.name, c.info))).filter(wanted));
      all.sort(byUpdatedAt);
      const after = options.cursor === undefined ? undefined : parseUpdatedAtCursor(options.cursor);
      const rest = after ? all.filter((m) => byUpdatedAt(m, after) > 0) : all;
      const models = rest.slice(0, options.limit);
      return { models, nextCursor: rest.length > options.limit ? updatedAtCursor(models.at(-1)!) : null };
    }

    const models: ModelSummary[] = [];
    const startAfter = options.cursor === undefined ? undefined : keys.current(options.cursor);
    const filtered = options.labels !== undefined && Object.keys(options.labels).length > 0;
    // Unfiltered, exactly the page (and one more) is looked at; filtered, a batch at a time.
    const size = filtered ? Math.min(options.limit + 1, 64) : options.limit + 1;
    let batch: { name: string; info: ObjectInfo }[] = [];
    const drain = async (): Promise<boolean> => {
      for (const s of await mapLimit(batch, SUMMARY_READS, (c) => summary(c.name, c.info))) {
        if (!wanted(s)) continue;
        if (models.length === options.limit) return true;
        models.push(s);
      }
      batch = [];
      return false;
    };
    for await (const c of candidates(startAfter)) {
      batch.push(c);
      if (batch.length >= size && (await drain())) return { models, nextCursor: models.at(-1)!.name };
    }
    if (await drain()) return { models, nextCursor: models.at(-1)!.name };
    return { models, nextCursor: null };
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

  // ---- internals ----

  /**
   * The compare-and-swap loop shared by upload and rollback (steps 1-5 at the top of this file).
   * `candidate` sees the current version and says what to publish; it is asked again on a retry.
   */
  async #publish(
    name: string,
    clientCondition: ClientCondition,
    candidate: (current: ModelVersion | undefined) => Promise<Candidate>,
    options: { mustExist?: boolean } = {},
  ): Promise<{ model: ModelVersion; created: boolean; stored: ObjectInfo }> {
    // The number this writer holds, and the bytes it stored under it. A lost race keeps both while
    // the number is still above the winner's: only a writer overtaken gives its number back.
    let claimed: VersionRecord | undefined;
    let stored: ObjectInfo | undefined;
    try {
      for (let attempt = 0; attempt < MAX_COMMIT_ATTEMPTS; attempt++) {
        if (attempt > 0) {
          this.#log.debug({ model: name, attempt }, 'concurrent write; retrying');
          await sleep(Math.random() * Math.min(5 * (attempt + 1), 100));
        }
        const current = await this.#current(name);
        if (!current && options.mustExist) throw errors.modelNotFound(name);
        checkClientCondition(name, current, clientCondition);
        const next = await candidate(current);
        if (claimed && current && current.version >= claimed.version) {
          await this.#giveBack(name, claimed.version);
          claimed = undefined;
        }
        const scan = await this.#records.scan(name);
        if (!claimed) {
          const version = Math.max(scan.max, current?.version ?? 0) + 1;
          const record: VersionRecord = { ...next.record, version, createdAt: new Date().toISOString() };
          if (!(await this.#claim(name, record))) continue; // another writer took N
          claimed = record;
        }
        try {
          if (current) await this.#keep(name, current, scan);
          const dest = keys.history(name, claimed.version);
          const metadata = encodeMetadata(claimed);
          if (stored?.key !== dest) {
            const previous = stored;
            stored = previous
              ? await this.storage.copy(previous.key, dest, { sourceToken: previous.token, metadata, condition: { ifNoneMatch: true } })
              : await next.write(dest, metadata);
            if (previous) await this.storage.delete(previous.key);
          }
          const info = await this.storage.copy(dest, keys.current(name), { sourceToken: stored.token, metadata, condition: condition(current) });
          const model = fromRecord(name, claimed, info);
          const published = { model, created: !current, stored };
          claimed = stored = undefined; // published: no longer ours to undo
          this.#remember(model);
          this.changes.emit('change', name);
          await this.#prune(name, model.version).catch((err) => this.#log.warn({ err, model: name }, 'pruning history failed'));
          return published;
        } catch (err) {
          // The bytes stored for it went with a DELETE of the model that landed meanwhile.
          if (err instanceof NotFoundError && stored && err.key === stored.key) {
            stored = undefined;
            throw errors.deletedWhilePublishing(name);
          }
          if (!(err instanceof PreconditionFailedError)) throw err;
        }
      }
      throw errors.conflict(name);
    } finally {
      if (claimed) await this.#giveBack(name, claimed.version);
      if (stored) await this.storage.delete(stored.key).catch(() => {});
    }
  }

  /** Step 1: true when this writer now holds the number. */
  async #claim(name: string, record: VersionRecord): Promise<boolean> {
    return this.#records.create({ ...record, name }).then(
      () => true,
      (err: unknown) => {
        if (err instanceof PreconditionFailedError) return false;
        throw err;
      },
    );
  }

  /** A number that never became current stays taken (numbers never go back), as a tombstone. */
  async #giveBack(name: string, version: number): Promise<void> {
    await this.#records.tombstone(name, version).catch((err: unknown) => this.#log.warn({ err, model: name, version }, 'could not mark an unused number'));
  }

  /** The current version, or undefined when the name has none. */
  async #current(name: string): Promise<ModelVersion | undefined> {
    return this.#describeKey(name, keys.current(name)).catch((err) => {
      if (err instanceof NotFoundError) return undefined;
      throw err;
    });
  }

  /**
   * Step 2 of publishing: the version about to be replaced keeps its bytes and record in history.
   * A version the registry published has both already; an object another tool wrote (or one a
   * store of an earlier release holds) gets a copy — the only copy of its bytes the registry makes.
   * Failures are left to the compare-and-swap: a current object that changed meanwhile fails it.
   */
  async #keep(name: string, current: ModelVersion, scan: HistoryScan): Promise<void> {
    if (!scan.records.has(current.version)) {
      await this.#records.create({ ...recordOf(current), name }).catch((err: unknown) => {
        if (!(err instanceof PreconditionFailedError)) throw err;
      });
    }
    if (scan.bytes.has(current.version)) return;
    // MODEL_HISTORY=0 keeps no older bytes, except those of a version an alias points to.
    if (this.#history === 0 && !(await this.#aliasedVersions(name)).has(current.version)) return;
    await this.storage
      .copy(current.storageKey, keys.history(name, current.version), {
        sourceToken: current.token,
        metadata: encodeMetadata(current),
        condition: { ifNoneMatch: true },
      })
      .catch((err: unknown) => {
        if (err instanceof NotFoundError) throw new PreconditionFailedError(current.storageKey, { cause: err });
        if (!(err instanceof PreconditionFailedError)) throw err; // kept by another writer, or changed
      });
  }

  #remember(model: ModelVersion): void {
    if (!this.#cache || this.#remembered.get(model.name) === model.sha256) return;
    this.#remembered.set(model.name, model.sha256);
    void this.#cache.remember(model).catch((err) => this.#log.warn({ err }, 'could not record the version in the cache'));
  }

  /**
   * Deletes history beyond the newest MODEL_HISTORY versions older than `current`, bytes and
   * records. The current version's own history copy stays (it is what protects it from an
   * external overwrite), and so does the highest record (the number the next version follows).
   * History that a store of an earlier release kept without records gets them here.
   */
  async #prune(name: string, current: number): Promise<void> {
    const scan = await this.#records.scan(name);
    // Never touch versions >= current: a concurrent writer may just have claimed them.
    const older = [...new Set([...scan.bytes.keys(), ...scan.records])].filter((v) => v < current).sort((a, b) => b - a);
    const kept = new Set(older.filter((v) => scan.bytes.has(v)).slice(0, this.#history));
    // Read just before deleting (an alias set meanwhile re-checks its version: setAlias), and
    // only when something would be deleted: most publishes prune nothing and read nothing more.
    const deleting = older.some((v) => !kept.has(v) && (scan.bytes.has(v) || (scan.records.has(v) && v !== scan.max)));
    const aliased = deleting ? await this.#aliasedVersions(name) : new Set<number>();
    for (const version of older) {
      if (kept.has(version) || aliased.has(version)) {
        if (!scan.records.has(version)) await this.#recordFromMetadata(name, scan.bytes.get(version)!, version);
        continue;
      }
      if (scan.bytes.has(version)) await this.storage.delete(keys.history(name, version));
      if (scan.records.has(version) && version !== scan.max) await this.#records.remove(name, version);
    }
  }

  async #aliasedVersions(name: string): Promise<Set<number>> {
    return new Set([...(await this.#aliases.read(name)).aliases.values()].map((t) => t.version));
  }

  async #recordFromMetadata(name: string, listed: ObjectInfo, version: number): Promise<void> {
    const info = hasRegistryMetadata(listed.metadata) ? listed : await this.storage.head(listed.key);
    if (!hasRegistryMetadata(info.metadata)) return;
    await this.#records.create({ ...recordOfMetadata(info, version), name }).catch((err: unknown) => {
      if (!(err instanceof PreconditionFailedError)) throw err;
    });
  }

  /**
   * Describes one stored object as a model version: from the metadata the registry published it
   * with; else (another tool's object, or a copy that dropped the metadata) from its record, for
   * history, or by identifying its bytes, for the current object. Never writes to the object.
   */
  async #describeKey(name: string, key: string, version?: number, known?: ObjectInfo): Promise<ModelVersion> {
    const info = known && hasRegistryMetadata(known.metadata) ? known : await this.storage.head(key);
    if (hasRegistryMetadata(info.metadata)) return toModel(name, info, version);
    if (version === undefined) return this.#identify(name, info);
    const record = await this.#records.read(name, version);
    if (record && record.size === info.size) return fromRecord(name, record, info);
    // History without a record (kept by hand, or by a release before records): its own bytes.
    const sha256 = await this.#digest(info);
    return fromRecord(name, { version, sha256, size: info.size, createdAt: info.lastModified.toISOString(), labels: {}, origin: 'external' }, info);
  }

  /**
   * Which version the current object without metadata is. The digest of the newest record means
   * that version (a copy of the store); any other is a new version, numbered after the highest
   * record, and recorded so the number holds for every replica and restart — unless the storage
   * refuses the write (read-only credentials): then the number is this process's alone.
   */
  async #identify(name: string, info: ObjectInfo): Promise<ModelVersion> {
    const id = `${info.key}\n${info.token}`;
    const known = this.#identified.get(id);
    if (known) return known;
    // One identification per object at a time: a request arriving after the shared digest read
    // finished but before the number was recorded would otherwise read the object again, and
    // every concurrent request would race for the record (and read it back) on its own.
    let pending = this.#identifying.get(id);
    if (!pending) {
      pending = this.#identifyOnce(name, info, id).finally(() => this.#identifying.delete(id));
      this.#identifying.set(id, pending);
    }
    return pending;
  }

  async #identifyOnce(name: string, info: ObjectInfo, id: string): Promise<ModelVersion> {
    const known = await this.#recalled(name, info);
    if (known) return known;
    const sha256 = await this.#digest(info);
    let model: ModelVersion | undefined;
    for (let attempt = 0; !model; attempt++) {
      const scan = await this.#records.scan(name);
      const newest = await this.#records.newest(name, scan);
      if (newest && newest.sha256 === sha256 && newest.size === info.size) {
        model = fromRecord(name, newest, info);
        break;
      }
      const record: VersionRecord = {
        version: scan.max + 1,
        sha256,
        size: info.size,
        createdAt: info.lastModified.toISOString(),
        labels: {},
        origin: 'external',
      };
      const recorded = await this.#records.create({ ...record, name }).then(
        () => true,
        (err: unknown) => {
          if (err instanceof PreconditionFailedError && attempt < 5) return false; // recorded meanwhile: look again
          this.#log.info({ err, model: name }, 'could not record the version of an object another tool wrote');
          return true;
        },
      );
      if (recorded) model = fromRecord(name, record, info);
    }
    this.#identified.delete(id);
    this.#identified.set(id, model);
    if (this.#identified.size > IDENTIFIED_ENTRIES) this.#identified.delete(this.#identified.keys().next().value!);
    return model;
  }

  /** The version this replica's cache last recorded for exactly this object, if any. */
  async #recalled(name: string, info: ObjectInfo): Promise<ModelVersion | undefined> {
    const model = await this.#cache?.recall(name);
    return model && model.storageKey === info.key && model.token === info.token && model.size === info.size ? model : undefined;
  }

  /**
   * SHA-256 of an object's bytes; concurrent requests for one object share the read. With a
   * cache, that read is also the cache fill: the bytes are kept under the digest they turn out to
   * have, so the first download of another tool's object costs one storage read in all.
   */
  #digest(info: ObjectInfo): Promise<string> {
    const id = `${info.key}\n${info.token}`;
    let pending = this.#digesting.get(id);
    if (!pending) {
      pending = this.#hashObject(info).finally(() => this.#digesting.delete(id));
      this.#digesting.set(id, pending);
    }
    return pending;
  }

  async #hashObject(info: ObjectInfo): Promise<string> {
    this.#log.info({ key: info.key, bytes: info.size }, 'computing the digest of an object without metadata');
    const { info: opened, body } = await this.storage.get(info.key);
    if (opened.token !== info.token) {
      body.destroy();
      throw new PreconditionFailedError(info.key);
    }
    const cache = this.#cache;
    const copyTo = cache?.blobs.tempPath();
    const counter = new DigestCounter({ copyTo, hash: true });
    try {
      await pipeline(body, counter, async (source: AsyncIterable<Buffer>) => {
        for await (const chunk of source) void chunk; // DigestCounter does the work
      });
      const sha256 = counter.sha256!;
      if (counter.size !== info.size) throw new PreconditionFailedError(info.key); // changed while read
      if (cache && copyTo && counter.copied) {
        await cache.blobs.admit(sha256, copyTo).catch((err: unknown) => this.#log.warn({ err }, 'could not keep the object in the cache'));
      }
      return sha256;
    } finally {
      if (copyTo) await rm(copyTo, { force: true });
    }
  }
}

/**
 * Counts and hashes the bytes that go to storage (they differ from the request's for plain
 * tar), and optionally writes a copy of them to `copyTo` (cache write-through).
 */
class DigestCounter extends Transform {
  readonly #hash: Hash | undefined;
  readonly #copyTo: string | undefined;
  #copy: Promise<FileHandle> | undefined;
  /** The cache copy failed (full or broken cache disk): the upload goes on without it. */
  #copyFailed = false;
  size = 0;
  #sha256: string | undefined;
  constructor(options: { copyTo?: string; hash: boolean }) {
    super();
    this.#copyTo = options.copyTo;
    this.#hash = options.hash ? createHash('sha256') : undefined;
  }
  /** After the stream ended: whether the copy to `copyTo` holds every byte (it is flushed). */
  get copied(): boolean {
    return this.#copy !== undefined && !this.#copyFailed;
  }
  /** The SHA-256 of the bytes that went through, when asked to hash them. */
  get sha256(): string | undefined {
    this.#sha256 ??= this.#hash?.digest('hex');
    return this.#sha256;
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null, data?: Buffer) => void): void {
    this.size += chunk.length;
    this.#hash?.update(chunk);
    if (!this.#copyTo || this.#copyFailed) return cb(null, chunk);
    this.#copy ??= open(this.#copyTo, 'w');
    this.#copy.then((h) => h.write(chunk)).then(
      () => cb(null, chunk),
      () => {
        this.#copyFailed = true; // #admit finds the copy short and leaves it out
        cb(null, chunk);
      },
    );
  }
  override _flush(cb: (err?: Error | null) => void): void {
    if (!this.#copy) return cb();
    this.#copy.then((h) => h.sync().finally(() => h.close())).then(
      () => cb(),
      () => cb(), // as above: the upload stands without its cache copy
    );
  }
  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    if (!this.#copy) return cb(err);
    this.#copy.then((h) => h.close()).catch(() => {}).finally(() => cb(err));
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function condition(current: ModelVersion | undefined): WriteCondition {
  return current ? { ifMatch: current.token } : { ifNoneMatch: true };
}

export function etagOf(sha256: string): string {
  return `"sha256:${sha256}"`;
}

function checkClientCondition(name: string, current: ModelVersion | undefined, c: ClientCondition): void {
  if ('ifNoneMatch' in c && current) throw errors.alreadyExists(name);
  if ('ifMatch' in c) {
    if (!current) throw errors.etagMismatch(name, undefined);
    if (c.ifMatch !== '*' && !c.ifMatch.includes(etagOf(current.sha256))) {
      throw errors.etagMismatch(name, etagOf(current.sha256));
    }
  }
}

/** A version as described by its record; `info` is the object holding its bytes. */
function fromRecord(name: string, record: VersionRecord, info: ObjectInfo): ModelVersion {
  return {
    name,
    version: record.version,
    sha256: record.sha256,
    size: info.size,
    createdAt: record.createdAt,
    labels: record.labels,
    storageKey: info.key,
    token: info.token,
    origin: record.origin,
  };
}

function recordOf(model: ModelVersion): VersionRecord {
  const { version, sha256, size, createdAt, labels } = model;
  return { version, sha256, size, createdAt, labels, origin: model.origin ?? 'upload' };
}

/** A version as described by the metadata a registry published its object with. */
function toModel(name: string, info: ObjectInfo, version?: number): ModelVersion {
  return fromRecord(name, recordOfMetadata(info, version), info);
}

function summarize(name: string, info: ObjectInfo, aliases: Aliases | undefined): ModelSummary {
  const base = { name, size: info.size, updatedAt: info.lastModified.toISOString(), aliases: aliasVersions(aliases ?? new Map()) };
  if (!hasRegistryMetadata(info.metadata)) return { ...base, labels: {} };
  const { version, sha256, createdAt, labels } = recordOfMetadata(info);
  return { ...base, updatedAt: createdAt, version, sha256, labels };
}

function checkAliasCondition(name: string, alias: string, now: AliasTarget | undefined, c: ClientCondition): void {
  if ('ifNoneMatch' in c && now) throw errors.aliasExists(name, alias, etagOf(now.sha256));
  if ('ifMatch' in c) {
    if (!now) throw errors.aliasEtagMismatch(name, alias, undefined);
    if (c.ifMatch !== '*' && !c.ifMatch.includes(etagOf(now.sha256))) throw errors.aliasEtagMismatch(name, alias, etagOf(now.sha256));
  }
}

/** HEADs in flight at once for one listing (backends whose listing carries no metadata). */
const SUMMARY_READS = 16;

/** Newest first, then by name: the order of ?sort=updatedAt. */
function byUpdatedAt(a: { updatedAt: string; name: string }, b: { updatedAt: string; name: string }): number {
  if (a.updatedAt !== b.updatedAt) return a.updatedAt > b.updatedAt ? -1 : 1;
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

function updatedAtCursor(m: ModelSummary): string {
  return `${m.updatedAt}\n${m.name}`;
}

/** The position a ?sort=updatedAt cursor names, or undefined when it is not one. */
export function parseUpdatedAtCursor(cursor: string): { updatedAt: string; name: string } | undefined {
  const [updatedAt, name, ...rest] = cursor.split('\n');
  if (rest.length > 0 || !updatedAt || !name || Number.isNaN(Date.parse(updatedAt))) return undefined;
  return { updatedAt, name };
}

async function batches<T>(source: AsyncIterable<T>, size: number): Promise<T[][]> {
  const out: T[][] = [[]];
  for await (const item of source) {
    if (out.at(-1)!.length === size) out.push([]);
    out.at(-1)!.push(item);
  }
  return out;
}

/** `fn` over `items` with at most `limit` running at once; results in order. */
async function mapLimit<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}
