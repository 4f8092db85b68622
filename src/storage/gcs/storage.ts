/**
 * Google Cloud Storage backend (@google-cloud/storage). Owns one bucket with the layout of README
 * "Storage layout": `{key}` objects carry user metadata as GCS custom metadata (Unicode strings,
 * stored as-is), and uploads are staged as `.uploads/{pid}-{uuid}-{host}.part` objects, invisible
 * to list() because list is one level deep with '/' as delimiter (and listEntries() skips the folder).
 *
 * Token = the object's generation: GCS assigns a new, never reused generation to every write of a
 * name, so tokens never repeat under a key (uniqueTokens).
 *
 * Atomicity: commit and copy publish through #publish(): an objects.rewrite from a source pinned
 * with ifSourceGenerationMatch to a destination with ifGenerationMatch (0 = must not exist, N =
 * must be exactly generation N). GCS evaluates the precondition and makes the new
 * generation live in one step on its side, so readers see the old generation or the new one,
 * whole, and two writers holding the same generation cannot both win: no read-then-write here.
 * A rewrite inside one bucket, location and storage class copies no bytes and finishes in one call;
 * larger ones (other storage class, KMS) return a rewriteToken and are continued with the same
 * preconditions until done, so objects of any size work. setMetadata is a patch conditional on
 * both generation and metageneration, so it too is a compare-and-swap, and keeps the token.
 *
 * Emulators: fake-gcs-server (v1.56) ignores preconditions on rewrite, compose and metadata
 * patches, but checks ifGenerationMatch on uploads, atomically. init() probes whether the server
 * enforces rewrite preconditions; where it does not, commit, copy and setMetadata stream the
 * pinned source through this process into a resumable upload carrying the precondition — the
 * same guarantee, paid for with a download and an upload of the bytes (fine for an emulator,
 * never chosen against real GCS).
 */
import { addAbortSignal, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Bucket, Storage as GcsClient } from '@google-cloud/storage';
import { ConfigError } from '../../util/config-error.js';
import type { Logger } from '../../util/logger.js';
import type { CommonSettings } from '../driver.js';
import { NotFoundError, PreconditionFailedError, StorageUnavailableError } from '../errors.js';
import { copyOutByStream } from '../shared/copy-out.js';
import { mergeEntries, objectsOf } from '../shared/entries.js';
import { stallGuard, withTimeout } from '../shared/idle-timeout.js';
import { isTimeout } from '../shared/network.js';
import { isAbandoned, newStagedName, UPLOADS_PREFIX } from '../shared/staging.js';
import { WRITE_NONCE, writeOnce } from '../shared/write-nonce.js';
import type {
  CommitOptions,
  InitOptions,
  InPlaceOptions,
  ListEntry,
  Metadata,
  ObjectInfo,
  PublishOptions,
  ReadOptions,
  SignedResponse,
  StagedObject,
  Storage,
  WriteCondition,
} from '../types.js';
import { createClient } from './client.js';
import { checkKeyFile, setupError, shortDetail, statusOf, translate } from './errors.js';
import { contentTypeOf, isGeneration, responseStarted, toInfo } from './objects.js';
import { CHUNK_SIZE, reupload, rewrite, uploadInPlace } from './publish.js';
import type { GcsSettings } from './settings.js';
import { signedReadUrl } from './signed-url.js';

/** This backend's settings and the common ones it uses. */
type Settings = GcsSettings & CommonSettings;

const LIST_PAGE = 1000;

class GcsStaged implements StagedObject {
  constructor(
    readonly key: string,
    readonly size: number,
    readonly name: string,
    readonly generation: string,
  ) {}
}

export function create(config: Settings, logger: Logger): GcsStorage {
  return new GcsStorage(config, logger);
}

export class GcsStorage implements Storage {
  readonly kind = 'gcs';
  readonly capabilities = {
    listIncludesMetadata: true,
    uniqueTokens: true,
    localFiles: false,
    signedUrls: true,
    stagesInPlace: true,
  };
  readonly #config: Settings;
  readonly #logger: Logger;
  readonly #client: GcsClient;
  readonly #bucket: Bucket;
  /** Staged names this process is writing or holding, which sweep() must leave alone. */
  readonly #active = new Set<string>();
  /** Aborts in-flight uploads and reads on close(). */
  readonly #closing = new AbortController();
  /** False when the server ignores rewrite preconditions (fake-gcs-server): see the header. */
  #serverSideConditions = true;

  constructor(config: Settings, logger: Logger) {
    this.#config = config;
    this.#logger = logger;
    this.#client = createClient(config);
    this.#bucket = this.#client.bucket(config.BUCKET_NAME);
  }

  async init(options: InitOptions = {}): Promise<void> {
    await checkKeyFile(this.#config.GOOGLE_APPLICATION_CREDENTIALS);
    if (this.#config.STORAGE_EMULATOR_HOST === undefined) {
      // Without credentials the SDK falls back to anonymous requests, which fail later with a
      // vague 401: ask for a token first, so a missing or broken key gets its own line.
      try {
        await withTimeout(this.#client.authClient.getAccessToken(), this.#config.STORAGE_TIMEOUT);
      } catch (err) {
        throw setupError(this.#config, err, 'read');
      }
    }
    const bucket = `BUCKET_NAME=${this.#config.BUCKET_NAME}`;
    try {
      await this.#bucket.getFiles({ maxResults: 1, autoPaginate: false, prefix: UPLOADS_PREFIX });
    } catch (err) {
      if (statusOf(err) !== 404) throw setupError(this.#config, err, 'read');
      if (!this.#config.AUTO_CREATE_BUCKET) {
        throw new ConfigError(
          `${bucket} does not exist (404 Not Found): create it (gcloud storage buckets create gs://${this.#config.BUCKET_NAME}) or set AUTO_CREATE_BUCKET=true.`,
          { cause: err },
        );
      }
      await this.#createBucket();
    }
    if (!options.readOnly) await this.#probeWrites();
  }

  async ping(): Promise<void> {
    try {
      await this.#bucket.getFiles({ maxResults: 1, autoPaginate: false, prefix: UPLOADS_PREFIX });
    } catch (err) {
      const e = translate(err);
      throw e instanceof StorageUnavailableError
        ? e
        : new StorageUnavailableError('gcs', shortDetail(err), { cause: err });
    }
  }

  async head(key: string): Promise<ObjectInfo> {
    const [resource] = await this.#call(() => this.#bucket.file(key).getMetadata(), key);
    return toInfo(key, resource);
  }

  async get(key: string, options: ReadOptions = {}): Promise<{ info: ObjectInfo; body: Readable }> {
    for (let attempt = 0; ; attempt++) {
      const info = await this.head(key);
      // Reading exactly that generation makes info and bytes agree even if the key is replaced.
      const file = this.#bucket.file(key, { generation: Number(info.token) });
      const body = file.createReadStream({
        start: options.range?.start,
        end: options.range?.end,
        decompress: false, // serve stored bytes, also for objects uploaded with Content-Encoding: gzip
      });
      if (options.signal) addAbortSignal(options.signal, body);
      try {
        await responseStarted(body);
        return { info, body: stallGuard(body, this.#config.STORAGE_TIMEOUT, key) };
      } catch (err) {
        body.destroy();
        // 404 for a generation head() just saw: the key was replaced in between; look again.
        if (statusOf(err) === 404 && attempt < 2) continue;
        throw translate(err, key);
      }
    }
  }

  async stage(key: string, body: Readable, options: { signal?: AbortSignal } = {}): Promise<StagedObject> {
    const name = newStagedName();
    const file = this.#bucket.file(UPLOADS_PREFIX + name);
    this.#active.add(name);
    try {
      const upload = file.createWriteStream({
        resumable: true,
        chunkSize: CHUNK_SIZE, // bounds memory per upload and lets a failed chunk be retried
        contentType: contentTypeOf(key),
        preconditionOpts: { ifGenerationMatch: 0 }, // makes the upload idempotent, so retried
      });
      const signal = options.signal ? AbortSignal.any([options.signal, this.#closing.signal]) : this.#closing.signal;
      await this.#call(() => pipeline(body, upload, { signal }));
      const resource = file.metadata.generation ? file.metadata : (await file.getMetadata())[0];
      return new GcsStaged(key, Number(resource.size), file.name, String(resource.generation));
    } catch (err) {
      this.#active.delete(name);
      // A resumable upload creates no object until its last chunk; one that got that far goes
      // (after a timeout behind the answer: the storage is silent).
      const removal = file.delete({ ignoreNotFound: true }).catch(() => {});
      if (!isTimeout(err)) await removal;
      throw err;
    }
  }

  /** A resumable upload to `key` itself with the metadata and the precondition (publish.ts). */
  async stageInPlace(
    key: string,
    body: Readable,
    metadata: Metadata,
    options: InPlaceOptions = {},
  ): Promise<ObjectInfo> {
    const ifGenerationMatch = generationCondition(key, options.condition ?? { ifNoneMatch: true });
    const signal = options.signal ? AbortSignal.any([options.signal, this.#closing.signal]) : this.#closing.signal;
    // A last chunk whose reply was lost is resent and fails its own precondition: see writeOnce.
    return writeOnce(
      'gcs',
      key,
      async (nonce) => {
        const to = { key, metadata: { ...metadata, [WRITE_NONCE]: nonce }, ifGenerationMatch };
        return toInfo(key, await this.#call(() => uploadInPlace(this.#bucket, body, to, signal), key));
      },
      () => this.#readBack(key),
      this.#logger,
    );
  }

  async commit(
    staged: StagedObject,
    metadata: Metadata,
    condition: WriteCondition,
    options: CommitOptions = {},
  ): Promise<ObjectInfo> {
    const own = this.#own(staged);
    await options.after;
    const info = await this.#publish(own.name, own.generation, options.key ?? own.key, metadata, condition);
    await this.discard(own).catch((err: unknown) =>
      this.#logger.warn({ err, staged: own.name }, 'could not delete a committed staged object; sweep() will'),
    );
    return info;
  }

  async discard(staged: StagedObject): Promise<void> {
    const own = this.#own(staged);
    this.#active.delete(own.name.slice(UPLOADS_PREFIX.length));
    await this.#call(() => this.#bucket.file(own.name).delete({ ignoreNotFound: true }));
  }

  async copy(
    from: string,
    to: string,
    options: { sourceToken: string; metadata: Metadata; condition?: WriteCondition } & PublishOptions,
  ): Promise<ObjectInfo> {
    await options.after;
    return this.#publish(from, options.sourceToken, to, options.metadata, options.condition ?? {});
  }

  async setMetadata(key: string, token: string, metadata: Metadata): Promise<ObjectInfo> {
    if (!this.#serverSideConditions) return this.#publish(key, token, key, metadata, { ifMatch: token });
    if (!isGeneration(token)) throw new PreconditionFailedError(key);
    const file = this.#bucket.file(key);
    const [current] = await this.#call(() => file.getMetadata(), key);
    if (String(current.generation) !== token) throw new PreconditionFailedError(key);
    // A patch merges custom metadata, so keys to drop are sent as null. Conditional on the
    // generation and on the metageneration read just now, it is a compare-and-swap; the
    // generation, and so the token, stays.
    const patch: Record<string, string | null> = {};
    for (const k of Object.keys(current.metadata ?? {})) patch[k] = null;
    Object.assign(patch, metadata);
    const [resource] = await this.#call(
      () =>
        file.setMetadata(
          { metadata: patch },
          { ifGenerationMatch: token, ifMetagenerationMatch: String(current.metageneration) },
        ),
      key,
    );
    return toInfo(key, resource);
  }

  async delete(key: string): Promise<void> {
    await this.#call(() => this.#bucket.file(key).delete({ ignoreNotFound: true }));
  }

  list(prefix: string, options: { startAfter?: string } = {}): AsyncIterable<ObjectInfo> {
    return objectsOf(this.listEntries(prefix, options));
  }

  async *listEntries(prefix: string, options: { startAfter?: string } = {}): AsyncIterable<ListEntry> {
    const { startAfter } = options;
    let pageToken: string | undefined;
    do {
      const [files, next, response] = await this.#call(() =>
        this.#bucket.getFiles({
          prefix,
          delimiter: '/',
          autoPaginate: false,
          maxResults: LIST_PAGE,
          pageToken,
          // startOffset is inclusive: mergeEntries drops the key equal to startAfter.
          startOffset: startAfter !== undefined && startAfter > prefix ? startAfter : undefined,
        }),
      );
      const folders = (response as { prefixes?: string[] } | undefined)?.prefixes ?? [];
      const objects = files.map((file) => toInfo(file.name, file.metadata));
      yield* mergeEntries(objects, [...folders].sort(), startAfter);
      pageToken = (next as { pageToken?: string } | null)?.pageToken;
    } while (pageToken);
  }

  async sweep(): Promise<number> {
    // Incomplete resumable sessions hold no object and cannot be listed; GCS drops them after a
    // week. What a crashed writer can leave is a finished staged object.
    const [files] = await this.#call(() => this.#bucket.getFiles({ prefix: UPLOADS_PREFIX, autoPaginate: true }));
    let removed = 0;
    for (const file of files) {
      const name = file.name.slice(UPLOADS_PREFIX.length);
      const updated = new Date(file.metadata.updated ?? file.metadata.timeCreated ?? Date.now());
      if (!isAbandoned(name, updated, this.#active)) continue;
      await this.#call(() => file.delete({ ignoreNotFound: true }));
      removed++;
    }
    return removed;
  }

  /** GCS takes 8 KiB of custom metadata, more than the registry's fields and 2 KiB of labels. */
  checkMetadata(): void {}

  copyOut(key: string, token: string, dest: string): Promise<void> {
    return copyOutByStream(this, key, token, dest);
  }

  /** A V4 signed GET (signed-url.ts). */
  signedUrl(key: string, ttlMs: number, response?: SignedResponse): Promise<string> {
    return signedReadUrl(this.#bucket, key, ttlMs, response);
  }

  async close(): Promise<void> {
    this.#closing.abort(new Error('storage closed'));
  }

  // ---- internals ----

  /**
   * Publishes `source` at generation `sourceGeneration` under `key` with `metadata`, if
   * `condition` holds for `key` at that instant (see the header for why this is atomic).
   */
  async #publish(
    source: string,
    sourceGeneration: string,
    key: string,
    metadata: Metadata,
    condition: WriteCondition,
  ): Promise<ObjectInfo> {
    // Generations are decimal; anything else cannot match any object.
    if (!isGeneration(sourceGeneration)) throw new PreconditionFailedError(source);
    const ifGenerationMatch = generationCondition(key, condition);
    // The SDK resends a request whose reply was lost: see shared/write-nonce.ts.
    return writeOnce(
      'gcs',
      key,
      async (nonce) => {
        const stored = { ...metadata, [WRITE_NONCE]: nonce };
        try {
          const resource = this.#serverSideConditions
            ? await rewrite(this.#bucket, source, sourceGeneration, { key, metadata: stored, ifGenerationMatch })
            : await reupload(
                this.#bucket,
                source,
                sourceGeneration,
                { key, metadata: stored, ifGenerationMatch },
                this.#closing.signal,
              );
          return toInfo(key, resource);
        } catch (err) {
          if (statusOf(err) === 404 && !this.#serverSideConditions) {
            // A pinned generation that is gone means the source changed, unless the key is gone too.
            const current = await this.head(source).catch((e: unknown) =>
              e instanceof NotFoundError ? undefined : Promise.reject(e),
            );
            throw current
              ? new PreconditionFailedError(source, { cause: err })
              : new NotFoundError(source, { cause: err });
          }
          throw translate(err, source, key);
        }
      },
      () => this.#readBack(key),
      this.#logger,
    );
  }

  /** `key`'s info and the nonce of the write that stored it; undefined when there is none. */
  async #readBack(key: string): Promise<{ info: ObjectInfo; nonce?: string } | undefined> {
    try {
      const [resource] = await this.#call(() => this.#bucket.file(key).getMetadata(), key);
      const nonce = resource.metadata?.[WRITE_NONCE];
      return { info: toInfo(key, resource), nonce: typeof nonce === 'string' ? nonce : undefined };
    } catch (err) {
      if (err instanceof NotFoundError) return undefined;
      throw err;
    }
  }

  async #createBucket(): Promise<void> {
    try {
      await this.#client.createBucket(this.#config.BUCKET_NAME);
      this.#logger.info({ bucket: this.#config.BUCKET_NAME }, 'created GCS bucket');
    } catch (err) {
      if (statusOf(err) === 409) {
        // Created meanwhile by another replica, or the name belongs to someone else: check again.
        try {
          await this.#bucket.getFiles({ maxResults: 1, autoPaginate: false, prefix: UPLOADS_PREFIX });
          return;
        } catch (again) {
          throw setupError(this.#config, again, 'read');
        }
      }
      if (/project id/i.test((err as Error).message ?? '')) {
        throw new ConfigError(
          `BUCKET_NAME=${this.#config.BUCKET_NAME} does not exist and GOOGLE_CLOUD_PROJECT is not set, so it cannot be created: set GOOGLE_CLOUD_PROJECT to the project that should own it, or create the bucket yourself.`,
          { cause: err },
        );
      }
      throw setupError(this.#config, err, 'create');
    }
  }

  /**
   * Checks that objects can be written, and whether the server enforces rewrite preconditions:
   * a rewrite onto a missing name with ifGenerationMatch=1 must fail with 412.
   */
  async #probeWrites(): Promise<void> {
    const probe = this.#bucket.file(UPLOADS_PREFIX + newStagedName());
    const target = this.#bucket.file(UPLOADS_PREFIX + newStagedName());
    try {
      await probe.save('', { resumable: false, preconditionOpts: { ifGenerationMatch: 0 } });
      const generation = String(probe.metadata.generation ?? (await probe.getMetadata())[0].generation);
      try {
        await rewrite(this.#bucket, probe.name, generation, { key: target.name, metadata: {}, ifGenerationMatch: '1' });
        this.#serverSideConditions = false;
        this.#logger.warn(
          'this GCS server ignores preconditions on rewrite (fake-gcs-server?): commits and copies stream the bytes through this process',
        );
      } catch (err) {
        if (statusOf(err) !== 412) throw err;
        this.#serverSideConditions = true;
      }
    } catch (err) {
      throw setupError(this.#config, err, 'write');
    } finally {
      await Promise.all([probe, target].map((f) => f.delete({ ignoreNotFound: true }).catch(() => {})));
    }
  }

  #own(staged: StagedObject): GcsStaged {
    if (!(staged instanceof GcsStaged)) throw new TypeError('staged object does not belong to this backend');
    return staged;
  }

  async #call<T>(fn: () => Promise<T>, key?: string): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw translate(err, key);
    }
  }
}

/** GCS's ifGenerationMatch for a condition: 0 = must not exist, N = must be generation N. */
function generationCondition(key: string, condition: WriteCondition): string | undefined {
  if ('ifNoneMatch' in condition) return '0';
  if (!('ifMatch' in condition)) return undefined;
  // Generations are decimal; anything else cannot match any object.
  if (!isGeneration(condition.ifMatch)) throw new PreconditionFailedError(key);
  return condition.ifMatch;
}
