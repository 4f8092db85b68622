/**
 * Google Cloud Storage backend (@google-cloud/storage). Owns one bucket with the layout of SPEC §4:
 * `{key}` objects carry user metadata as GCS custom metadata (Unicode strings, stored as-is), and
 * uploads are staged as `.uploads/{pid}-{uuid}-{host}.part` objects, invisible to list() because
 * list is one level deep with '/' as delimiter.
 *
 * Token = the object's generation: GCS assigns a new, never reused generation to every write of a
 * name, so tokens never repeat under a key (uniqueTokens).
 *
 * Atomicity: commit and copy publish through #publish(): an objects.rewrite from
 * a source pinned with ifSourceGenerationMatch to a destination with ifGenerationMatch (0 = must
 * not exist, N = must be exactly generation N). GCS evaluates the precondition and makes the new
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
import { readFile } from 'node:fs/promises';
import { addAbortSignal, pipeline as pipe, Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Storage as GcsClient, type Bucket, type FileMetadata } from '@google-cloud/storage';
import { copyOutByStream } from '../shared/copy-out.js';
import type { CommonSettings } from '../driver.js';
import type { GcsSettings } from './settings.js';
import { ConfigError } from '../../util/config-error.js';
import { NotFoundError, PreconditionFailedError, StorageUnavailableError } from '../errors.js';
import type { Logger } from '../../util/logger.js';
import { splitNonce, WRITE_NONCE, writeOnce } from '../shared/write-nonce.js';
import { isAbandoned, newStagedName, UPLOADS_PREFIX } from '../shared/staging.js';
import type { InitOptions, CommitOptions, Metadata, ObjectInfo, PublishOptions, ReadOptions, StagedObject, Storage, WriteCondition } from '../types.js';

/** This backend's settings and the common ones it uses. */
type Settings = GcsSettings & CommonSettings;

const CHUNK_SIZE = 8 * 1024 * 1024;
const LIST_PAGE = 1000;
const NETWORK_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'EPIPE', 'ECONNABORTED', 'ERR_STREAM_PREMATURE_CLOSE', 'UND_ERR_SOCKET']);

class GcsStaged implements StagedObject {
  constructor(readonly key: string, readonly size: number, readonly name: string, readonly generation: string) {}
}

export function create(config: Settings, logger: Logger): GcsStorage {
  return new GcsStorage(config, logger);
}

export class GcsStorage implements Storage {
  readonly kind = 'gcs';
  readonly capabilities = { listIncludesMetadata: true, uniqueTokens: true, localFiles: false };
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
    const timeout = config.STORAGE_TIMEOUT;
    const maxRetries = 2;
    const maxRetryDelay = 2; // seconds
    const retryOptions = {
      autoRetry: true,
      maxRetries,
      retryDelayMultiplier: 2,
      maxRetryDelay,
      // Longer than every attempt timing out in turn: retry-request, past this deadline, drops a
      // due retry without ever calling back (a request to a server that accepts connections and
      // then stays silent hung for good).
      totalTimeout: Math.ceil(((maxRetries + 1) * timeout) / 1000) + maxRetries * maxRetryDelay + 5, // seconds
    };
    let apiEndpoint: string | undefined;
    if (config.STORAGE_EMULATOR_HOST !== undefined) {
      apiEndpoint = emulatorEndpoint(config.STORAGE_EMULATOR_HOST);
    }
    this.#client = new GcsClient({
      apiEndpoint,
      projectId: config.GOOGLE_CLOUD_PROJECT ?? (apiEndpoint ? 'local-emulator' : undefined),
      keyFilename: config.GOOGLE_APPLICATION_CREDENTIALS,
      timeout,
      retryOptions,
    });
    if (apiEndpoint) {
      // With STORAGE_EMULATOR_HOST in the environment the SDK uses it verbatim as the JSON API
      // base (no /storage/v1), which fake-gcs-server and the other SDKs' convention do not match.
      this.#client.baseUrl = `${apiEndpoint}/storage/v1`;
    }
    // Resumable uploads go through gaxios, which has no timeout unless asked for one.
    this.#client.interceptors.push({ request: (reqOpts) => ({ ...reqOpts, timeout }) as ReturnType<Interceptor['request']> });
    this.#bucket = this.#client.bucket(config.BUCKET_NAME);
  }

  async init(options: InitOptions = {}): Promise<void> {
    await this.#checkKeyFile();
    if (this.#config.STORAGE_EMULATOR_HOST === undefined) {
      // Without credentials the SDK falls back to anonymous requests, which fail later with a
      // vague 401: ask for a token first, so a missing or broken key gets its own line.
      try {
        await withTimeout(this.#client.authClient.getAccessToken(), this.#config.STORAGE_TIMEOUT);
      } catch (err) {
        throw this.#setupError(err, 'read');
      }
    }
    const bucket = `BUCKET_NAME=${this.#config.BUCKET_NAME}`;
    try {
      await this.#bucket.getFiles({ maxResults: 1, autoPaginate: false, prefix: UPLOADS_PREFIX });
    } catch (err) {
      if (statusOf(err) !== 404) throw this.#setupError(err, 'read');
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
      throw e instanceof StorageUnavailableError ? e : new StorageUnavailableError('gcs', shortDetail(err), { cause: err });
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
      // A resumable upload creates no object until its last chunk; one that got that far goes.
      await file.delete({ ignoreNotFound: true }).catch(() => {});
      throw err;
    }
  }

  async commit(staged: StagedObject, metadata: Metadata, condition: WriteCondition, options: CommitOptions = {}): Promise<ObjectInfo> {
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
      () => file.setMetadata({ metadata: patch }, { ifGenerationMatch: token, ifMetagenerationMatch: String(current.metageneration) }),
      key,
    );
    return toInfo(key, resource);
  }

  async delete(key: string): Promise<void> {
    await this.#call(() => this.#bucket.file(key).delete({ ignoreNotFound: true }));
  }

  async *list(prefix: string, options: { startAfter?: string } = {}): AsyncIterable<ObjectInfo> {
    const { startAfter } = options;
    let pageToken: string | undefined;
    do {
      const [files, next] = await this.#call(() =>
        this.#bucket.getFiles({
          prefix,
          delimiter: '/',
          autoPaginate: false,
          maxResults: LIST_PAGE,
          pageToken,
          // startOffset is inclusive: the key equal to startAfter is skipped below.
          startOffset: startAfter !== undefined && startAfter > prefix ? startAfter : undefined,
        }),
      );
      for (const file of files) {
        if (startAfter !== undefined && file.name <= startAfter) continue;
        yield toInfo(file.name, file.metadata);
      }
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

  async close(): Promise<void> {
    this.#closing.abort(new Error('storage closed'));
  }

  // ---- internals ----

  /**
   * Publishes `source` at generation `sourceGeneration` under `key` with `metadata`, if
   * `condition` holds for `key` at that instant (see the header for why this is atomic).
   */
  async #publish(source: string, sourceGeneration: string, key: string, metadata: Metadata, condition: WriteCondition): Promise<ObjectInfo> {
    // Generations are decimal; anything else cannot match any object.
    if (!isGeneration(sourceGeneration)) throw new PreconditionFailedError(source);
    let ifGenerationMatch: string | undefined;
    if ('ifNoneMatch' in condition) ifGenerationMatch = '0';
    if ('ifMatch' in condition) {
      if (!isGeneration(condition.ifMatch)) throw new PreconditionFailedError(key);
      ifGenerationMatch = condition.ifMatch;
    }
    // The SDK resends a request whose reply was lost: see write-nonce.ts.
    return writeOnce('gcs', key, async (nonce) => {
      const stored = { ...metadata, [WRITE_NONCE]: nonce };
      try {
        const resource = this.#serverSideConditions
          ? await this.#rewrite(source, sourceGeneration, key, stored, ifGenerationMatch)
          : await this.#reupload(source, sourceGeneration, key, stored, ifGenerationMatch);
        return toInfo(key, resource);
      } catch (err) {
        if (statusOf(err) === 404 && !this.#serverSideConditions) {
          // A pinned generation that is gone means the source changed, unless the key is gone too.
          const current = await this.head(source).catch((e: unknown) => (e instanceof NotFoundError ? undefined : Promise.reject(e)));
          throw current ? new PreconditionFailedError(source, { cause: err }) : new NotFoundError(source, { cause: err });
        }
        throw translate(err, source, key);
      }
    }, () => this.#readBack(key), this.#logger);
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

  /** objects.rewrite, continued with the same preconditions until GCS reports it done. */
  async #rewrite(source: string, sourceGeneration: string, key: string, metadata: Metadata, ifGenerationMatch: string | undefined): Promise<FileMetadata> {
    const qs: Record<string, string> = { ifSourceGenerationMatch: sourceGeneration };
    if (ifGenerationMatch !== undefined) qs.ifGenerationMatch = ifGenerationMatch;
    const file = this.#bucket.file(source);
    const uri = `/rewriteTo/b/${encodeURIComponent(this.#bucket.name)}/o/${encodeURIComponent(key)}`;
    for (;;) {
      const response = await new Promise<RewriteResponse>((resolve, reject) =>
        file.request(
          { method: 'POST', uri, qs, json: { contentType: contentTypeOf(key), metadata } },
          (err, body) => (err ? reject(err) : resolve(body as RewriteResponse)),
        ),
      );
      if (response.done && response.resource) return response.resource;
      if (!response.rewriteToken) throw new Error('objects.rewrite returned neither a resource nor a rewriteToken');
      qs.rewriteToken = response.rewriteToken;
    }
  }

  /** For servers that ignore rewrite preconditions: a conditional upload of the pinned bytes. */
  async #reupload(source: string, sourceGeneration: string, key: string, metadata: Metadata, ifGenerationMatch: string | undefined): Promise<FileMetadata> {
    const target = this.#bucket.file(key);
    const reader = this.#bucket.file(source, { generation: Number(sourceGeneration) }).createReadStream({ decompress: false });
    const writer = target.createWriteStream({
      resumable: true,
      chunkSize: CHUNK_SIZE,
      contentType: contentTypeOf(key),
      metadata: { metadata },
      preconditionOpts: ifGenerationMatch === undefined ? undefined : { ifGenerationMatch: Number(ifGenerationMatch) },
    });
    await pipeline(reader, writer, { signal: this.#closing.signal });
    return target.metadata.generation ? target.metadata : (await target.getMetadata())[0];
  }

  async #checkKeyFile(): Promise<void> {
    const keyFile = this.#config.GOOGLE_APPLICATION_CREDENTIALS;
    if (keyFile === undefined) return;
    let text: string;
    try {
      text = await readFile(keyFile, 'utf8');
    } catch (err) {
      throw new ConfigError(
        `GOOGLE_APPLICATION_CREDENTIALS=${keyFile} cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}): point it at a service-account key file (JSON) readable by this user, or unset it to use the default credentials (workload identity, gcloud auth application-default login).`,
        { cause: err },
      );
    }
    let type: unknown;
    try {
      type = (JSON.parse(text) as { type?: unknown }).type;
    } catch (err) {
      throw new ConfigError(`GOOGLE_APPLICATION_CREDENTIALS=${keyFile} is not a JSON credentials file: download a key for the service account (gcloud iam service-accounts keys create) and point the variable at it.`, { cause: err });
    }
    if (typeof type !== 'string') {
      throw new ConfigError(`GOOGLE_APPLICATION_CREDENTIALS=${keyFile} is JSON but not a Google credentials file (no "type" field): use a service-account key or an application-default credentials file.`);
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
          throw this.#setupError(again, 'read');
        }
      }
      if (/project id/i.test((err as Error).message ?? '')) {
        throw new ConfigError(
          `BUCKET_NAME=${this.#config.BUCKET_NAME} does not exist and GOOGLE_CLOUD_PROJECT is not set, so it cannot be created: set GOOGLE_CLOUD_PROJECT to the project that should own it, or create the bucket yourself.`,
          { cause: err },
        );
      }
      throw this.#setupError(err, 'create');
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
        await this.#rewrite(probe.name, generation, target.name, {}, '1');
        this.#serverSideConditions = false;
        this.#logger.warn('this GCS server ignores preconditions on rewrite (fake-gcs-server?): commits and copies stream the bytes through this process');
      } catch (err) {
        if (statusOf(err) !== 412) throw err;
        this.#serverSideConditions = true;
      }
    } catch (err) {
      throw this.#setupError(err, 'write');
    } finally {
      await Promise.all([probe, target].map((f) => f.delete({ ignoreNotFound: true }).catch(() => {})));
    }
  }

  /** One line for a setup problem found by init(). */
  #setupError(err: unknown, action: 'read' | 'write' | 'create'): ConfigError {
    const bucket = `BUCKET_NAME=${this.#config.BUCKET_NAME}`;
    const message = (err as Error)?.message ?? String(err);
    const code = networkCode(err);
    if (code) {
      return new ConfigError(
        this.#config.STORAGE_EMULATOR_HOST !== undefined
          ? `STORAGE_EMULATOR_HOST=${this.#config.STORAGE_EMULATOR_HOST} is unreachable (${code}): check the URL and that the server is running.`
          : `Google Cloud Storage (storage.googleapis.com, oauth2.googleapis.com) is unreachable (${code}): check this host's network, DNS and proxy settings (HTTPS_PROXY).`,
        { cause: err },
      );
    }
    if (/could not load the default credentials/i.test(message)) {
      return new ConfigError(
        'GOOGLE_APPLICATION_CREDENTIALS is not set and no default Google credentials were found: set it to a service-account key file, run with a service account (workload identity, GCE metadata server), or run gcloud auth application-default login.',
        { cause: err },
      );
    }
    if (this.#config.GOOGLE_APPLICATION_CREDENTIALS && /DECODER routines|PEM|private key|asn1|secretOrPrivateKey/i.test(message)) {
      return new ConfigError(`GOOGLE_APPLICATION_CREDENTIALS=${this.#config.GOOGLE_APPLICATION_CREDENTIALS} holds a private key that cannot be used (${oneLine(message)}): the file is damaged; download a new key for the service account.`, { cause: err });
    }
    if (/invalid_grant|invalid_client|unauthorized_client|account not found|invalid jwt/i.test(message) || statusOf(err) === 401) {
      const setting = this.#config.GOOGLE_APPLICATION_CREDENTIALS ? `GOOGLE_APPLICATION_CREDENTIALS=${this.#config.GOOGLE_APPLICATION_CREDENTIALS}` : 'The default Google credentials';
      return new ConfigError(`${setting} were rejected by Google (${oneLine(message)}): the key may be deleted or revoked; create a new key for the service account or fix the default credentials.`, { cause: err });
    }
    if (statusOf(err) === 403) {
      const grant = action === 'create' ? 'grant storage.buckets.create in the project, or create the bucket yourself' : 'grant roles/storage.objectAdmin on it to this service account, or use another bucket';
      return new ConfigError(`${bucket} cannot be ${action === 'create' ? 'created' : action === 'write' ? 'written' : 'read'} with these credentials (403 ${oneLine(message)}): ${grant}.`, { cause: err });
    }
    return new ConfigError(`${bucket} cannot be used (${shortDetail(err)}): check the bucket and the GCS settings.`, { cause: err });
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

type Interceptor = GcsClient['interceptors'][number];

interface RewriteResponse {
  done?: boolean;
  rewriteToken?: string;
  resource?: FileMetadata;
}

/** The HTTP status of an SDK error (ApiError.code, GaxiosError.status), if any. */
function statusOf(err: unknown): number | undefined {
  const e = err as { code?: unknown; status?: unknown; response?: { status?: unknown } } | undefined;
  for (const v of [e?.code, e?.status, e?.response?.status]) if (typeof v === 'number') return v;
  return undefined;
}

function networkCode(err: unknown): string | undefined {
  for (let e = err as { code?: unknown; type?: unknown; cause?: unknown } | undefined, depth = 0; e && depth < 4; e = e.cause as typeof e, depth++) {
    if (typeof e.code === 'string' && NETWORK_CODES.has(e.code)) return e.code;
    if (e.type === 'request-timeout' || (e as Error).name === 'TimeoutError') return 'timeout';
  }
  if (/network timeout|socket hang up|timeout of \d+ms exceeded/i.test((err as Error)?.message ?? '')) return 'timeout';
  return undefined;
}

/** Maps SDK errors to the storage errors of types.ts, keeping the original as cause. */
function translate(err: unknown, key?: string, destination?: string): unknown {
  if (err instanceof NotFoundError || err instanceof PreconditionFailedError || err instanceof StorageUnavailableError) return err;
  if ((err as Error)?.name === 'AbortError') return err; // the caller's own abort
  const status = statusOf(err);
  if (status === 404 && key !== undefined) return new NotFoundError(key, { cause: err });
  if (status === 412) return new PreconditionFailedError(destination ?? key ?? '', { cause: err });
  if (networkCode(err) || status === 404 || status === 408 || status === 429 || status === 401 || status === 403 || (status !== undefined && status >= 500)) {
    return new StorageUnavailableError('gcs', shortDetail(err), { cause: err });
  }
  return err;
}

function shortDetail(err: unknown): string {
  const status = statusOf(err);
  const code = networkCode(err);
  return oneLine([status, code, code ? undefined : (err as Error)?.message].filter(Boolean).join(' ')).slice(0, 160);
}

function oneLine(text: string): string {
  return text.replace(/\s+/g, ' ').trim();
}

function isGeneration(token: string): boolean {
  return /^\d{1,19}$/.test(token);
}

function contentTypeOf(key: string): string {
  return key.endsWith('.tar.gz') ? 'application/gzip' : 'application/octet-stream';
}

/** STORAGE_EMULATOR_HOST as host:port or URL, with or without /storage/v1, as an http(s) origin. */
function emulatorEndpoint(raw: string): string {
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(raw) ? raw : `http://${raw}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch (err) {
    throw new ConfigError(`STORAGE_EMULATOR_HOST=${raw} is not a host:port or URL: use e.g. STORAGE_EMULATOR_HOST=http://127.0.0.1:4443.`, { cause: err });
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new ConfigError(`STORAGE_EMULATOR_HOST=${raw} must be an http(s) URL: use e.g. STORAGE_EMULATOR_HOST=http://127.0.0.1:4443.`);
  }
  return `${url.origin}${url.pathname.replace(/\/+$/, '').replace(/\/storage\/v1$/, '')}`;
}

function toInfo(key: string, resource: FileMetadata): ObjectInfo {
  const raw: Metadata = {};
  for (const [k, v] of Object.entries(resource.metadata ?? {})) if (typeof v === 'string') raw[k] = v;
  const { metadata } = splitNonce(raw);
  return {
    key,
    size: Number(resource.size ?? 0),
    lastModified: new Date(resource.updated ?? resource.timeCreated ?? 0),
    token: String(resource.generation),
    metadata,
  };
}

/**
 * `body` behind a stream that fails with ETIMEDOUT when the server sends nothing for `ms`
 * (STORAGE_TIMEOUT): the SDK's timeout covers only the wait for the response headers, so a
 * download that stalled half way hung for good. A reader that is behind (its buffer full) is
 * what holds the bytes back then, not the server, and does not count.
 */
function stallGuard(body: Readable, ms: number, key: string): Readable {
  let timer: NodeJS.Timeout | undefined;
  const guard = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      arm();
      callback(null, chunk);
    },
  });
  const arm = () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      if (guard.destroyed) return;
      if (guard.readableLength >= guard.readableHighWaterMark) return arm();
      body.destroy(Object.assign(new Error(`storage sent no bytes of ${key} for ${ms} ms`), { code: 'ETIMEDOUT' }));
    }, ms);
  };
  arm();
  pipe(body, guard, () => clearTimeout(timer)); // an error on either side destroys both
  return guard;
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(Object.assign(new Error(`no answer within ${ms} ms`), { code: 'ETIMEDOUT' })), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Resolves once a read stream has its HTTP response (so the read is bound to it). */
function responseStarted(body: Readable): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => reject(err);
    body.once('error', onError);
    body.once('response', (res: { statusCode?: number }) => {
      if ((res.statusCode ?? 200) < 300) {
        body.off('error', onError);
        resolve();
      }
      // on an error status the SDK destroys the stream with an ApiError: onError rejects.
    });
    body.read(0); // the SDK sends the request on the first read
  });
}
