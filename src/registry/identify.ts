/**
 * What version a stored object is. An object the registry published carries its metadata; one
 * without it (another tool's, or one whose metadata a copy dropped) is identified by its digest,
 * computed in the same storage read that fills the cache: the digest of the newest record means
 * that version; any other digest is a new version, numbered after the highest record and
 * recorded (our own file) when the storage lets us write. Never writes to the object itself.
 */
import { rm } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import { LRUCache } from 'lru-cache';
import type { ModelCache } from '../cache/index.js';
import { PreconditionFailedError } from '../errors.js';
import type { ObjectInfo, Storage } from '../storage/types.js';
import type { Logger } from '../util/logger.js';
import { SingleFlight } from '../util/single-flight.js';
import { fromRecord, hasRegistryMetadata, toModel, type VersionRecord, type VersionRecords } from './records.js';
import { DigestCounter } from './streams.js';
import type { ModelVersion } from './types.js';

/** Identified objects without metadata remembered, by key + token. */
const IDENTIFIED_ENTRIES = 4096;

export class Identifier {
  readonly #storage: Storage;
  readonly #records: VersionRecords;
  readonly #cache: ModelCache | undefined;
  readonly #log: Logger;
  /** In-flight digest computations of objects without metadata, by key + token. */
  readonly #digesting = new SingleFlight<string, string>();
  /** Objects without metadata already identified as a version, by key + token (bounded). */
  readonly #identified = new LRUCache<string, ModelVersion>({ max: IDENTIFIED_ENTRIES });
  /** Identifications in flight, by key + token: concurrent first reads share one. */
  readonly #identifying = new SingleFlight<string, ModelVersion>();

  constructor(storage: Storage, records: VersionRecords, cache: ModelCache | undefined, log: Logger) {
    this.#storage = storage;
    this.#records = records;
    this.#cache = cache;
    this.#log = log;
  }

  /**
   * Describes one stored object as a model version: from the metadata the registry published it
   * with; else (another tool's object, or a copy that dropped the metadata) from its record, for
   * history, or by identifying its bytes, for the current object. Never writes to the object.
   */
  async describeKey(name: string, key: string, version?: number, known?: ObjectInfo): Promise<ModelVersion> {
    const info = known && hasRegistryMetadata(known.metadata) ? known : await this.#storage.head(key);
    if (hasRegistryMetadata(info.metadata)) return toModel(name, info, version);
    if (version === undefined) return this.#identify(name, info);
    const record = await this.#records.read(name, version);
    if (record && record.size === info.size) return fromRecord(name, record, info);
    // History without a record (kept by hand, or by a release before records): its own bytes.
    const sha256 = await this.#digest(info);
    const createdAt = info.lastModified.toISOString();
    return fromRecord(name, { version, sha256, size: info.size, createdAt, labels: {}, origin: 'external' }, info);
  }

  /**
   * Which version the current object without metadata is. The digest of the newest record means
   * that version (a copy of the store); any other is a new version, numbered after the highest
   * record, and recorded so the number holds for every replica and restart — unless the storage
   * refuses the write (read-only credentials): then the number is this process's alone.
   */
  async #identify(name: string, info: ObjectInfo): Promise<ModelVersion> {
    const id = `${info.key}\n${info.token}`;
    // peek: found again is not used again (the oldest identification goes first).
    const known = this.#identified.peek(id);
    if (known) return known;
    // One identification per object at a time: a request arriving after the shared digest read
    // finished but before the number was recorded would otherwise read the object again, and
    // every concurrent request would race for the record (and read it back) on its own.
    return this.#identifying.run(id, () => this.#identifyOnce(name, info, id));
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
    this.#identified.set(id, model);
    return model;
  }

  /** The version this replica's cache last recorded for exactly this object, if any. */
  async #recalled(name: string, info: ObjectInfo): Promise<ModelVersion | undefined> {
    const model = await this.#cache?.recall<ModelVersion>(name);
    const same = model && model.storageKey === info.key && model.token === info.token && model.size === info.size;
    return same ? model : undefined;
  }

  /**
   * SHA-256 of an object's bytes; concurrent requests for one object share the read. With a
   * cache, that read is also the cache fill: the bytes are kept under the digest they turn out to
   * have, so the first download of another tool's object costs one storage read in all.
   */
  #digest(info: ObjectInfo): Promise<string> {
    const id = `${info.key}\n${info.token}`;
    return this.#digesting.run(id, () => this.#hashObject(info));
  }

  async #hashObject(info: ObjectInfo): Promise<string> {
    this.#log.info({ key: info.key, bytes: info.size }, 'computing the digest of an object without metadata');
    const { info: opened, body } = await this.#storage.get(info.key);
    if (opened.token !== info.token) {
      body.destroy();
      throw new PreconditionFailedError(info.key);
    }
    const cache = this.#cache;
    const copyTo = cache?.tempPath();
    const counter = new DigestCounter({ copyTo, hash: true });
    try {
      await pipeline(body, counter, async (source: AsyncIterable<Buffer>) => {
        for await (const chunk of source) void chunk; // DigestCounter does the work
      });
      const sha256 = counter.sha256!;
      if (counter.size !== info.size) throw new PreconditionFailedError(info.key); // changed while read
      if (cache && copyTo && counter.copied) {
        await cache.admit(sha256, copyTo).catch((err: unknown) => {
          this.#log.warn({ err }, 'could not keep the object in the cache');
        });
      }
      return sha256;
    } finally {
      if (copyTo) await rm(copyTo, { force: true });
    }
  }
}
