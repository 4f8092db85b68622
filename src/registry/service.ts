/**
 * The model registry: models, versions and history on top of any Storage (SPEC §1–§4).
 * Routes call this; this calls the storage. It owns the layout, the metadata format,
 * version numbering, history retention and the compare-and-swap loops.
 *
 * Replace, step by step (every step safe to crash after):
 *   1. stage the validated upload (invisible);
 *   2. copy the current object to .history/{name}/v{N} (pinned to the token just read);
 *   3. commit the staged object as v{N+1} on the condition that the current token is unchanged —
 *      started together with 2, but published only once 2 has finished (storage's `after`);
 *   4. prune history beyond MODEL_HISTORY.
 * A crash after 2 leaves a history copy of the still-current version, which listings hide and
 * the next replace overwrites with the same bytes. If 3 loses a race, 2–3 are retried against
 * the new current version; a client's own If-Match is re-checked each time.
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
import { errors, NotFoundError, PreconditionFailedError, RegistryError } from '../errors.js';
import type { Metadata, ObjectInfo, StagedObject, Storage, WriteCondition } from '../storage/types.js';
import { createGzip } from 'node:zlib';
import { ArchiveValidator, type ArchiveFormat, type ArchiveLimits } from './archive.js';
import { assertLabels, assertName, keys, type Labels } from './names.js';

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
}

/** A listed model: the fields the backend gives cheaply; version and digest when known. */
export interface ModelSummary {
  name: string;
  size: number;
  updatedAt: string;
  version?: number;
  sha256?: string;
  labels?: Labels;
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
const META = { version: 'version', sha256: 'sha256', createdAt: 'created-at', labels: 'labels' } as const;

export class ModelRegistry {
  readonly storage: Storage;
  readonly #limits: ArchiveLimits;
  readonly #history: number;
  readonly #log: Logger;
  /** In-flight digest computations of objects without metadata, by key + token. */
  readonly #digesting = new Map<string, Promise<string>>();
  readonly #cache: ModelCache | undefined;
  readonly #writeThrough: boolean;
  /** Digest last remembered per name, so the cache's name → version record is written on change only. */
  readonly #remembered = new Map<string, string>();
  /** Emits `change` with a model name whenever this process changes that model. */
  readonly changes = new EventEmitter().setMaxListeners(0);

  constructor(options: RegistryOptions) {
    this.storage = options.storage;
    this.#limits = options.limits;
    this.#history = options.history;
    this.#cache = options.cache;
    this.#writeThrough = options.writeThrough ?? false;
    this.#log = options.logger;
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
    this.storage.checkMetadata?.(encodeMetadata({ version: Number.MAX_SAFE_INTEGER, sha256: '0'.repeat(64), createdAt: new Date().toISOString(), labels: input.labels }));
    const key = keys.current(name);
    const validator = new ArchiveValidator(input.format, this.#limits);
    // Write-through: a local backend links its committed file into the cache (no second write);
    // others get a copy of the bytes as they stream to storage.
    const writeThrough = this.#cache && this.#writeThrough ? this.#cache : undefined;
    const copyTo = writeThrough && !this.storage.copyOut ? writeThrough.blobs.tempPath() : undefined;
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
    let published: { model: ModelVersion; created: boolean } | undefined;
    try {
      const summary = validator.summary;
      if (input.expected && input.expected.sha256 !== summary.receivedSha256) {
        throw errors.digestMismatch(input.expected.header, input.expected.sha256, summary.receivedSha256);
      }
      const sha256 = stored.sha256 ?? summary.receivedSha256;
      const metadata = {
        sha256,
        createdAt: new Date().toISOString(),
        labels: input.labels,
      };
      published = await this.#publish(name, input.condition, (current, version, archive) =>
        this.storage.commit(staged.value, encodeMetadata({ ...metadata, version }), condition(current), { after: archive() }),
      );
      if (writeThrough) await this.#admit(writeThrough, published.model, copyTo);
      return published;
    } finally {
      await this.storage.discard(staged.value).catch(() => {});
      if (copyTo && !published) await rm(copyTo, { force: true });
    }
  }

  /** Write-through: the accepted bytes become a cache entry under their digest. */
  async #admit(cache: ModelCache, model: ModelVersion, copied: string | undefined): Promise<void> {
    const file = copied ?? cache.blobs.tempPath();
    try {
      if (!copied) await this.storage.copyOut!(model.storageKey, model.token, file);
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
    const { model } = await this.#publish(name, clientCondition, async (current, next, archive) => {
      if (!current) throw errors.modelNotFound(name);
      if (version === current.version) throw errors.alreadyCurrent(name, version);
      const target = await this.#describeKey(name, keys.history(name, version), version).catch((err) => {
        if (err instanceof NotFoundError) throw errors.versionNotFound(name, version);
        throw err;
      });
      if (target.version >= next) throw errors.versionNotFound(name, version);
      return this.storage.copy(target.storageKey, keys.current(name), {
        sourceToken: target.token,
        metadata: encodeMetadata({
          version: next,
          sha256: target.sha256,
          createdAt: new Date().toISOString(),
          labels: target.labels,
        }),
        condition: condition(current),
        after: archive(), // only now: a rollback to a missing version archives nothing
      });
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
    return result.sort((a, b) => b.version - a.version);
  }

  /**
   * Deletes a model and its history, or one history entry; with a client condition (If-Match),
   * only while the model (or that version) still is what the client saw.
   */
  async delete(name: string, version?: number, clientCondition: ClientCondition = {}): Promise<void> {
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
      await this.storage.delete(key);
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
    for await (const info of this.storage.list(keys.historyPrefix(name))) {
      await this.storage.delete(info.key);
      found = true;
    }
    await this.#stillChecked(name, checked);
    await this.storage.delete(keys.current(name));
    if (!found) throw errors.modelNotFound(name);
    this.#remembered.delete(name);
    await this.#cache?.forget(name);
    this.changes.emit('change', name);
  }

  /** Throws 412 when the current version is no longer `checked` (the one a condition held for). */
  async #stillChecked(name: string, checked: ModelVersion | undefined): Promise<void> {
    if (!checked) return;
    const now = await this.storage.head(keys.current(name)).catch((err) => {
      if (err instanceof NotFoundError) return undefined;
      throw err;
    });
    const sha256 = now?.metadata[META.sha256];
    if (sha256 !== checked.sha256) throw errors.etagMismatch(name, sha256 && etagOf(sha256));
  }

  /** Models in name order, `limit` at a time, starting after `cursor`. */
  async list(options: { prefix?: string; limit: number; cursor?: string }): Promise<{ models: ModelSummary[]; nextCursor: string | null }> {
    const models: ModelSummary[] = [];
    const startAfter = options.cursor === undefined ? undefined : keys.current(options.cursor);
    for await (const info of this.storage.list(options.prefix ?? '', { startAfter })) {
      const name = keys.nameOf(info.key);
      if (name === undefined) continue;
      if (models.length === options.limit) return { models, nextCursor: models.at(-1)!.name };
      models.push(summarize(name, info));
    }
    return { models, nextCursor: null };
  }

  /** Sweeps leftovers of crashed uploads. */
  async sweep(): Promise<number> {
    return this.storage.sweep();
  }

  // ---- internals ----

  /**
   * The compare-and-swap loop shared by upload and rollback: read the current version, check
   * the client's condition, archive the current version, write (via `write`) on the condition
   * that the current version is unchanged, retrying when another writer got there first.
   * `write` starts the archive copy by calling `archive` once it knows it will write, and passes
   * the copy to storage as `after`, so the new version becomes visible only once the old one is
   * archived (S3 copies both at once).
   */
  async #publish(
    name: string,
    clientCondition: ClientCondition,
    write: (current: ModelVersion | undefined, version: number, archive: () => Promise<unknown> | undefined) => Promise<ObjectInfo>,
    options: { mustExist?: boolean } = {},
  ): Promise<{ model: ModelVersion; created: boolean }> {
    for (let attempt = 0; attempt < MAX_COMMIT_ATTEMPTS; attempt++) {
      const current = await this.#describeKey(name, keys.current(name)).catch((err) => {
        if (err instanceof NotFoundError) return undefined;
        throw err;
      });
      if (!current && options.mustExist) throw errors.modelNotFound(name);
      checkClientCondition(name, current, clientCondition);
      const version = current ? current.version + 1 : 1;
      let archived: Promise<unknown> | undefined;
      const archive = () => {
        if (!archived && current && this.#history > 0) {
          archived = this.storage
            .copy(current.storageKey, keys.history(name, current.version), { sourceToken: current.token, metadata: encodeMetadata(current) })
            .catch((err: unknown) => {
              // The version to archive was deleted meanwhile: a lost race like any other (retry).
              throw err instanceof NotFoundError ? new PreconditionFailedError(current.storageKey, { cause: err }) : err;
            });
          archived.catch(() => {}); // handled below, whenever `write` gets to it or fails first
        }
        return archived;
      };
      try {
        const info = await write(current, version, archive);
        await archived; // settled already: storage published only after it resolved
        const model = toModel(name, info, version);
        this.#remember(model);
        this.changes.emit('change', name);
        await this.#prune(name, version).catch((err) => this.#log.warn({ err, model: name }, 'pruning history failed'));
        return { model, created: !current };
      } catch (err) {
        // Never leave the archive copy running behind an error or into the next attempt.
        await archived?.catch(() => {});
        if (!(err instanceof PreconditionFailedError)) throw err;
        this.#log.debug({ model: name, attempt }, 'concurrent write; retrying');
        await sleep(Math.random() * Math.min(5 * (attempt + 1), 100));
      }
    }
    throw errors.conflict(name);
  }

  #remember(model: ModelVersion): void {
    if (!this.#cache || this.#remembered.get(model.name) === model.sha256) return;
    this.#remembered.set(model.name, model.sha256);
    void this.#cache.remember(model).catch((err) => this.#log.warn({ err }, 'could not record the version in the cache'));
  }

  /** Deletes history beyond the newest MODEL_HISTORY versions older than `current`. */
  async #prune(name: string, current: number): Promise<void> {
    const old: { key: string; version: number }[] = [];
    for await (const info of this.storage.list(keys.historyPrefix(name))) {
      const version = keys.versionOf(info.key);
      // Never touch versions >= current: a concurrent writer may just have archived them.
      if (version !== undefined && version < current) old.push({ key: info.key, version });
    }
    old.sort((a, b) => b.version - a.version);
    for (const { key } of old.slice(this.#history)) await this.storage.delete(key);
  }

  /**
   * Describes one stored object as a model version. Objects written by other tools have no
   * metadata: their digest is computed once from the bytes and remembered in their metadata.
   */
  async #describeKey(name: string, key: string, version?: number, known?: ObjectInfo): Promise<ModelVersion> {
    const info = known && known.metadata[META.sha256] ? known : await this.storage.head(key);
    if (info.metadata[META.sha256] && info.metadata[META.version]) return toModel(name, info, version);
    const sha256 = await this.#digest(info);
    const inferred = version ?? (await this.#newestHistoryVersion(name)) + 1;
    const metadata = encodeMetadata({
      version: Number(info.metadata[META.version] ?? inferred),
      sha256,
      createdAt: info.metadata[META.createdAt] ?? info.lastModified.toISOString(),
      labels: decodeLabels(info.metadata[META.labels]),
    });
    try {
      return toModel(name, await this.storage.setMetadata(key, info.token, metadata), version);
    } catch (err) {
      if (err instanceof PreconditionFailedError) return this.#describeKey(name, key, version);
      throw err;
    }
  }

  async #newestHistoryVersion(name: string): Promise<number> {
    let newest = 0;
    for await (const info of this.storage.list(keys.historyPrefix(name))) {
      newest = Math.max(newest, keys.versionOf(info.key) ?? 0);
    }
    return newest;
  }

  /** SHA-256 of an object's bytes; concurrent requests for one object share the read. */
  #digest(info: ObjectInfo): Promise<string> {
    const id = `${info.key}\n${info.token}`;
    let pending = this.#digesting.get(id);
    if (!pending) {
      pending = (async () => {
        this.#log.info({ key: info.key, bytes: info.size }, 'computing digest of an object without metadata');
        const { info: opened, body } = await this.storage.get(info.key);
        if (opened.token !== info.token) {
          body.destroy();
          throw new PreconditionFailedError(info.key);
        }
        const hash = createHash('sha256');
        await pipeline(body, hash);
        return hash.digest('hex');
      })().finally(() => this.#digesting.delete(id));
      this.#digesting.set(id, pending);
    }
    return pending;
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

function encodeMetadata(m: { version: number; sha256: string; createdAt: string; labels: Labels }): Metadata {
  return {
    [META.version]: String(m.version),
    [META.sha256]: m.sha256,
    [META.createdAt]: m.createdAt,
    [META.labels]: JSON.stringify(m.labels),
  };
}

function decodeLabels(raw: string | undefined): Labels {
  if (!raw) return {};
  try {
    const parsed = JSON.parse(raw) as unknown;
    if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) {
      return Object.fromEntries(Object.entries(parsed).filter(([, v]) => typeof v === 'string')) as Labels;
    }
  } catch {
    // metadata written by hand; ignore labels we cannot read
  }
  return {};
}

function toModel(name: string, info: ObjectInfo, version?: number): ModelVersion {
  return {
    name,
    version: version ?? Number(info.metadata[META.version]),
    sha256: info.metadata[META.sha256]!,
    size: info.size,
    createdAt: info.metadata[META.createdAt] ?? info.lastModified.toISOString(),
    labels: decodeLabels(info.metadata[META.labels]),
    storageKey: info.key,
    token: info.token,
  };
}

function summarize(name: string, info: ObjectInfo): ModelSummary {
  const version = Number(info.metadata[META.version]);
  const sha256 = info.metadata[META.sha256];
  return {
    name,
    size: info.size,
    updatedAt: info.metadata[META.createdAt] ?? info.lastModified.toISOString(),
    ...(Number.isInteger(version) && version > 0 ? { version } : {}),
    ...(sha256 ? { sha256, labels: decodeLabels(info.metadata[META.labels]) } : {}),
  };
}
