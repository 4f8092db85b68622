/**
 * MongoDB backend: bytes in GridFS, and which bytes a key holds in a per-key version log.
 *
 *   {collection}.files / .chunks   GridFS bucket `{collection}`; every file's _id is its staged
 *                                  name ({pid}-{uuid}-{host}.part, see shared/staging.ts), so even
 *                                  chunks orphaned by a crash say which writer left them
 *   {collection}.versions          { key, seq, fileId, token, size, createdAt, metadata }; the
 *                                  version with the highest seq is the key's current object
 *                                  (fileId null = deleted). Unique index { key, seq }.
 *
 * Files are immutable. A file's `metadata` mirrors { key, staged, attributes } for people looking
 * at the bucket with mongofiles; the version log is what counts.
 *
 * Atomicity: publishing (commit, copy, setMetadata, delete) reads the key's head version n, checks
 * the condition against it, and inserts version n+1. Versions are never modified, so "the head is
 * n" stays true exactly until someone inserts n+1, and the unique index lets only one writer do
 * that: a lost insert (duplicate key 11000) means the head moved, so an If-Match fails and the
 * others look again. Readers see the old head or the new one, each pointing at a complete file.
 * The only atomic primitive this needs is a unique index, deliberately: FerretDB, for one, runs a
 * conditional update as find-then-replace, so `updateOne({_id, token})` lets several writers win.
 *
 * Superseded versions are pruned, and files nobody references deleted, once their successor is
 * GRACE_MS old: a reader that opened a version keeps its bytes meanwhile, and no publish still
 * holds a head it read that long ago (each one is a read plus an insert, bounded by the
 * timeouts; #publish re-reads if it somehow took GRACE_MS/2), so a pruned seq is never reused.
 * The deleted marker stays as head, so a stale If-Match can never resurrect a deleted key.
 * Copies share the source's immutable file instead of copying bytes (a server-side copy at any
 * size); a file is deleted only when no version references it.
 */
import { addAbortSignal, Readable } from 'node:stream';
import { type Db, type Filter, MongoClient, MongoServerError, type ObjectId } from 'mongodb';
import { ConfigError } from '../../util/config-error.js';
import type { Logger } from '../../util/logger.js';
import { Pending } from '../../util/pending.js';
import type { CommonSettings } from '../driver.js';
import { NotFoundError, PreconditionFailedError, StorageUnavailableError } from '../errors.js';
import { copyOutByStream } from '../shared/copy-out.js';
import { isAbandoned, newStagedName, UPLOADS_PREFIX } from '../shared/staging.js';
import type {
  CommitOptions,
  InitOptions,
  ListEntry,
  Metadata,
  ObjectInfo,
  PublishOptions,
  ReadOptions,
  StagedObject,
  Storage,
  WriteCondition,
} from '../types.js';
import {
  CHUNK_BYTES,
  type Collections,
  collections,
  escapeRegex,
  newToken,
  toInfo,
  type VersionDoc,
  writeChunks,
} from './documents.js';
import { initError, redact, translate, translated } from './errors.js';
import type { MongoSettings } from './settings.js';

/** This backend's settings and the common ones it uses. */
type Settings = MongoSettings & CommonSettings;

export const GRACE_MS = 10 * 60 * 1000;

export interface MongoOptions {
  /** How often a running process prunes and sweeps (GRACE_MS); tests shorten it. */
  maintenanceEveryMs?: number;
}

class MongoStaged implements StagedObject {
  committed = false;
  constructor(
    readonly key: string,
    readonly size: number,
    readonly name: string,
  ) {}
}

export function create(config: Settings, logger: Logger, options: MongoOptions = {}): MongoStorage {
  return new MongoStorage(config, logger, options);
}

export class MongoStorage implements Storage {
  readonly kind = 'mongodb';
  readonly capabilities = {
    listIncludesMetadata: true,
    uniqueTokens: true,
    localFiles: false,
    signedUrls: false,
    stagesInPlace: false,
  };
  readonly #config: Settings;
  readonly #logger: Logger;
  /** Staged files this process is writing or holding, which sweep() must leave alone. */
  readonly #active = new Set<string>();
  /** Background work (pruning, sweeps, clean-ups) close() waits for. */
  readonly #background = new Pending();
  readonly #maintenanceEveryMs: number;
  #maintenance?: NodeJS.Timeout;
  #client?: MongoClient;
  #db?: Db;
  #collections?: Collections;

  constructor(config: Settings, logger: Logger, options: MongoOptions = {}) {
    this.#config = config;
    this.#logger = logger;
    this.#maintenanceEveryMs = options.maintenanceEveryMs ?? GRACE_MS;
  }

  async init(options: InitOptions = {}): Promise<void> {
    const c = this.#config;
    try {
      this.#client = new MongoClient(c.MONGODB_URI, {
        serverSelectionTimeoutMS: Math.min(5000, c.STORAGE_TIMEOUT),
        connectTimeoutMS: Math.min(5000, c.STORAGE_TIMEOUT),
        socketTimeoutMS: c.STORAGE_TIMEOUT,
        // A retried read waits the socket timeout a second time: a stalled server answered
        // after twice STORAGE_TIMEOUT (a minute by default). Writes stay retryable: on a replica
        // set the server applies a retried write once.
        retryReads: false,
        // An acknowledged upload must survive a failover, and a read must not serve a version a
        // failover can take back (w:1 is the default on some replica sets, e.g. with an arbiter).
        writeConcern: { w: 'majority', journal: true },
        readConcern: { level: 'majority' },
        appName: 'model-registry',
      });
    } catch (err) {
      // MongoParseError comes from mongodb-connection-string-url too, a class of its own.
      const detail =
        err instanceof Error && err.name.startsWith('Mongo') ? redact(err.message, c.MONGODB_URI) : 'unparsable';
      throw new ConfigError(
        `MONGODB_URI=(hidden) is not a valid connection string (${detail}): use mongodb://user:password@host:27017 with special characters in the password percent-encoded.`,
        { cause: err },
      );
    }
    this.#db = this.#client.db(c.MONGODB_DATABASE);
    try {
      await this.#client.connect();
      await this.#db.command({ ping: 1 });
      if (!options.readOnly) {
        await this.#c.versions.createIndex({ key: 1, seq: -1 }, { unique: true });
        await this.#c.versions.createIndex({ fileId: 1 });
        await this.#c.files.createIndex({ filename: 1, uploadDate: 1 });
        await this.#c.chunks.createIndex({ files_id: 1, n: 1 }, { unique: true });
      }
      await this.#c.versions.findOne({}, { projection: { _id: 1 } });
    } catch (err) {
      throw initError(err, this.#config, this.#client?.options);
    }
    // Superseded versions, deleted keys and the leftovers of failed uploads are removed by the
    // running process too, not only at start: history keys and deleted keys are never written
    // again, so nothing else would prune them.
    if (!options.readOnly) {
      this.#maintenance = setInterval(
        () =>
          void this.#background.track(
            this.sweep().catch((err: unknown) =>
              this.#logger.warn({ err }, 'pruning and sweeping failed; next try later'),
            ),
          ),
        this.#maintenanceEveryMs,
      );
      this.#maintenance.unref();
    }
  }

  async ping(): Promise<void> {
    await this.#call(() => this.#c.db.command({ ping: 1 }));
  }

  async head(key: string): Promise<ObjectInfo> {
    return toInfo(await this.#live(key));
  }

  async get(key: string, options: ReadOptions = {}): Promise<{ info: ObjectInfo; body: Readable }> {
    const version = await this.#live(key);
    const { range, signal } = options;
    // The stream opens lazily: its file is looked up first, so a failure here rejects get().
    if (!(await this.#call(() => this.#c.files.findOne({ _id: version.fileId }, { projection: { _id: 1 } }), key))) {
      throw new StorageUnavailableError('mongodb', `the GridFS file of ${key} is missing`);
    }
    // The driver types GridFS ids as ObjectId, but any BSON value is a valid id.
    const download = this.#c.bucket.openDownloadStream(
      version.fileId as unknown as ObjectId,
      range && { start: range.start, end: range.end + 1 },
    );
    // Its errors are the driver's: translated like every other call's (a 503, not a 500). Read
    // only when the body is (a body never read opens no cursor).
    const expected = range ? Math.max(0, Math.min(range.end + 1, version.size) - range.start) : version.size;
    const body = Readable.from(translated(download, key, expected), { objectMode: false });
    if (signal) addAbortSignal(signal, body);
    return { info: toInfo(version), body };
  }

  async stage(key: string, body: Readable, options: { signal?: AbortSignal } = {}): Promise<StagedObject> {
    const name = newStagedName();
    this.#active.add(name);
    try {
      const size = await writeChunks(this.#c.chunks, name, body, options.signal);
      await this.#c.files.insertOne({
        _id: name,
        length: size,
        chunkSize: CHUNK_BYTES,
        uploadDate: new Date(),
        filename: UPLOADS_PREFIX + name,
        metadata: { key, staged: true },
      });
      return new MongoStaged(key, size, name);
    } catch (err) {
      this.#active.delete(name);
      const translated = translate(err);
      // With the server gone the cleanup would only add a timeout: it runs in the background,
      // and the periodic sweep removes what it could not.
      const cleanup = this.#deleteFile(name).catch(() => {});
      if (translated instanceof StorageUnavailableError) void this.#background.track(cleanup);
      else await cleanup;
      throw translated;
    }
  }

  async commit(
    staged: StagedObject,
    metadata: Metadata,
    condition: WriteCondition,
    options: CommitOptions = {},
  ): Promise<ObjectInfo> {
    const s = this.#own(staged);
    await options.after;
    const info = await this.#publish(options.key ?? s.key, s.name, s.size, metadata, condition);
    s.committed = true;
    this.#active.delete(s.name);
    return info;
  }

  async discard(staged: StagedObject): Promise<void> {
    const s = this.#own(staged);
    if (s.committed) return;
    this.#active.delete(s.name);
    await this.#call(async () => {
      // A commit whose reply was lost may have inserted its version after all: then the file is
      // that version's content, not a leftover.
      if (await this.#c.versions.findOne({ fileId: s.name }, { projection: { _id: 1 } })) return;
      await this.#deleteFile(s.name);
    });
  }

  async copy(
    from: string,
    to: string,
    options: { sourceToken: string; metadata: Metadata; condition?: WriteCondition } & PublishOptions,
  ): Promise<ObjectInfo> {
    const source = await this.#live(from);
    if (source.token !== options.sourceToken) throw new PreconditionFailedError(from);
    await options.after;
    return this.#publish(to, source.fileId, source.size, options.metadata, options.condition ?? {});
  }

  async setMetadata(key: string, token: string, metadata: Metadata): Promise<ObjectInfo> {
    const current = await this.#live(key);
    return this.#publish(key, current.fileId, current.size, metadata, { ifMatch: token });
  }

  async delete(key: string): Promise<void> {
    for (;;) {
      const head = await this.#head(key);
      if (!head || head.fileId === null) return;
      const marker: VersionDoc = {
        key,
        seq: head.seq + 1,
        fileId: null,
        token: newToken(),
        size: 0,
        createdAt: new Date(),
        metadata: {},
      };
      if (await this.#insertVersion(marker)) return this.#pruneLater(key);
    }
  }

  async *list(prefix: string, options: { startAfter?: string } = {}): AsyncIterable<ObjectInfo> {
    const key: Filter<VersionDoc>['key'] = { $regex: `^${escapeRegex(prefix)}[^/]*$` };
    if (options.startAfter !== undefined) key.$gt = options.startAfter;
    const cursor = this.#c.versions.find({ key }).sort({ key: 1, seq: -1 }).batchSize(500);
    let last: string | undefined;
    try {
      for (;;) {
        const version = await this.#call(() => cursor.next());
        if (!version) return;
        if (version.key === last) continue; // an older version of the key just listed
        last = version.key;
        if (version.fileId !== null) yield toInfo(version as VersionDoc & { fileId: string });
      }
    } finally {
      await cursor.close().catch(() => {});
    }
  }

  /**
   * A delimiter listing by skip-scan: the keys in order until one lies in a folder, which is
   * listed once; the scan then resumes past every key the folder can hold (its '/' replaced by
   * '0', the next character), so a folder costs one query, not a read of each key in it.
   */
  async *listEntries(prefix: string, options: { startAfter?: string } = {}): AsyncIterable<ListEntry> {
    const { startAfter } = options;
    let from: { $gt: string } | { $gte: string } | undefined =
      startAfter === undefined ? undefined : { $gt: startAfter };
    for (;;) {
      const key: Filter<VersionDoc>['key'] = { $regex: `^${escapeRegex(prefix)}`, ...from };
      const cursor = this.#c.versions.find({ key }).sort({ key: 1, seq: -1 }).batchSize(500);
      let last: string | undefined;
      let folder: string | undefined;
      try {
        for (;;) {
          const version: VersionDoc | null = await this.#call(() => cursor.next());
          if (!version) break;
          if (version.key === last) continue; // an older version of the key just listed
          last = version.key;
          if (version.fileId === null) continue; // deleted
          const slash = version.key.indexOf('/', prefix.length);
          if (slash === -1) yield { object: toInfo(version as VersionDoc & { fileId: string }) };
          else {
            folder = version.key.slice(0, slash + 1);
            break;
          }
        }
      } finally {
        await cursor.close().catch(() => {});
      }
      if (folder === undefined) return;
      if (startAfter === undefined || folder > startAfter) yield { folder };
      from = { $gte: `${folder.slice(0, -1)}0` };
    }
  }

  async sweep(): Promise<number> {
    return this.#call(async () => {
      let removed = await this.#prune({});
      for await (const file of this.#c.files.find(
        { 'metadata.staged': true },
        { projection: { _id: 1, uploadDate: 1 } },
      )) {
        if (typeof file._id !== 'string' || !isAbandoned(file._id, file.uploadDate, this.#active)) continue;
        if (await this.#c.versions.findOne({ fileId: file._id }, { projection: { _id: 1 } })) continue; // committed
        await this.#deleteFile(file._id);
        removed++;
      }
      // Chunks of uploads that died before their files document was written.
      for (const id of await this.#c.chunks.distinct('files_id')) {
        if (typeof id !== 'string' || (await this.#c.files.findOne({ _id: id }, { projection: { _id: 1 } }))) continue;
        const newest = await this.#c.chunks.findOne({ files_id: id }, { sort: { n: -1 }, projection: { _id: 1 } });
        if (!newest || !isAbandoned(id, newest._id.getTimestamp(), this.#active)) continue;
        await this.#c.chunks.deleteMany({ files_id: id });
        removed++;
      }
      return removed;
    });
  }

  /** A version document holds far more than the registry ever writes. */
  checkMetadata(): void {}

  copyOut(key: string, token: string, dest: string): Promise<void> {
    return copyOutByStream(this, key, token, dest);
  }

  async close(): Promise<void> {
    clearInterval(this.#maintenance);
    await this.#background.settled();
    await this.#client?.close();
  }

  // ---- internals ----

  /** The collections, once init() has connected. */
  get #c(): Collections {
    if (this.#collections) return this.#collections;
    if (!this.#db) throw new Error('mongodb storage used before init()');
    return (this.#collections = collections(this.#db, this.#config.MONGODB_COLLECTION));
  }

  #own(staged: StagedObject): MongoStaged {
    if (!(staged instanceof MongoStaged)) throw new TypeError('staged object does not belong to this backend');
    return staged;
  }

  async #head(key: string): Promise<VersionDoc | null> {
    return this.#call(() => this.#c.versions.findOne({ key }, { sort: { seq: -1 } }));
  }

  async #live(key: string): Promise<VersionDoc & { fileId: string }> {
    const head = await this.#head(key);
    if (!head || head.fileId === null) throw new NotFoundError(key);
    return head as VersionDoc & { fileId: string };
  }

  /** Makes `fileId` the object under `key` if `condition` holds for the head (see header). */
  async #publish(
    key: string,
    fileId: string,
    size: number,
    metadata: Metadata,
    condition: WriteCondition,
  ): Promise<ObjectInfo> {
    for (;;) {
      const started = Date.now();
      const head = await this.#head(key);
      const live = head?.fileId != null ? head : undefined;
      if ('ifNoneMatch' in condition && live) throw new PreconditionFailedError(key);
      if ('ifMatch' in condition && live?.token !== condition.ifMatch) throw new PreconditionFailedError(key);
      if (Date.now() - started > GRACE_MS / 2) continue;
      const version: VersionDoc = {
        key,
        seq: (head?.seq ?? 0) + 1,
        fileId,
        token: newToken(),
        size,
        createdAt: new Date(),
        metadata,
      };
      // Never publish a version of bytes that are gone (a sweep that took a live upload for a
      // dead one): the write fails and can be retried instead.
      if (!(await this.#call(() => this.#c.files.findOne({ _id: fileId }, { projection: { _id: 1 } }), key))) {
        throw new StorageUnavailableError(
          'mongodb',
          `the staged upload of ${key} was removed before it could be committed; send it again`,
        );
      }
      if (!(await this.#insertVersion(version))) {
        if ('ifMatch' in condition) throw new PreconditionFailedError(key);
        continue; // someone else moved the head: check the condition again
      }
      this.#pruneLater(key);
      await this.#c.files
        .updateOne({ _id: fileId }, { $set: { filename: key, metadata: { key, staged: false, attributes: metadata } } })
        .catch((err: unknown) => this.#logger.debug({ err, key }, 'could not mirror metadata into the GridFS file'));
      return toInfo(version as VersionDoc & { fileId: string });
    }
  }

  /** Inserts a version; false when that seq of the key exists already. */
  async #insertVersion(version: VersionDoc): Promise<boolean> {
    try {
      await this.#c.versions.insertOne(version);
      return true;
    } catch (err) {
      if (err instanceof MongoServerError && err.code === 11000) return false;
      throw translate(err, version.key);
    }
  }

  /** Prunes a key's superseded versions in the background after a write. */
  #pruneLater(key: string): void {
    void this.#background.track(
      this.#prune({ key }).catch((err: unknown) => this.#logger.debug({ err, key }, 'pruning old versions failed')),
    );
  }

  /**
   * Deletes versions whose successor is older than GRACE_MS, and their files when no other
   * version references them; returns how many files went. Sorted by key then newest first, so
   * each version's successor is the one seen just before it.
   */
  async #prune(filter: Filter<VersionDoc>): Promise<number> {
    const cutoff = Date.now() - GRACE_MS;
    let removed = 0;
    let newer: VersionDoc | undefined;
    for await (const version of this.#c.versions.find(filter).sort({ key: 1, seq: -1 })) {
      const successor = newer?.key === version.key ? newer : undefined;
      newer = version;
      if (!successor || successor.createdAt.getTime() > cutoff) continue;
      const { fileId } = version;
      if (
        fileId !== null &&
        !(await this.#c.versions.findOne({ fileId, _id: { $ne: version._id! } }, { projection: { _id: 1 } }))
      ) {
        await this.#deleteFile(fileId);
        removed++;
      }
      await this.#c.versions.deleteOne({ _id: version._id! });
    }
    return removed;
  }

  async #deleteFile(id: string): Promise<void> {
    await this.#c.files.deleteOne({ _id: id });
    await this.#c.chunks.deleteMany({ files_id: id });
  }

  async #call<T>(fn: () => Promise<T>, key?: string): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw translate(err, key);
    }
  }
}
