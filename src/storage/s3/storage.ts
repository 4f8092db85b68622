/**
 * S3 backend (AWS S3 and S3-compatible servers such as MinIO). Owns the S3 client, the bucket
 * check at start, and the mapping of the storage contract onto S3 requests:
 *
 *   stageInPlace   lib-storage Upload (8 MiB parts, 4 in flight) straight to the key, with the
 *            metadata and the condition (If-None-Match: *) on PutObject / CompleteMultipartUpload.
 *            An upload's body goes so to its history key `.history/{name}/v{N}.tar.gz` under a
 *            number reserved first (registry/publish.ts), and the one server-side copy left is
 *            the compare-and-swap onto `{name}.tar.gz`. The upload completes only after the body
 *            ended without error (a body that errors aborts it), so a refused upload never shows;
 *            records are written the same way (one PutObject with the condition)
 *   stage    the same Upload to `.uploads/{pid}-{uuid}-{host}.part` (aliases and migrate still
 *            stage and commit)
 *   commit   multipart copy of the staged object onto its key: CreateMultipartUpload (with the
 *            metadata) + UploadPartCopy (pinned with CopySourceIfMatch) + CompleteMultipartUpload
 *            carrying the condition as If-Match / If-None-Match
 *   copy, setMetadata   the same multipart copy, from another key or from the key itself;
 *            given `after` (the history copy of a replace), the parts are copied meanwhile and
 *            only CompleteMultipartUpload waits for it
 *   token    the ETag without quotes: a hash of the parts' hashes. Copies draw random part
 *            boundaries (copyPartSize), so an object over 5 MiB written again with the same bytes
 *            (a rollback) gets a new token; one of up to 5 MiB gets its old one (uniqueTokens=false)
 *
 * Atomicity: S3 makes an object visible only when the request that creates it completes, and a
 * completed multipart upload replaces the key in one step, so readers see the old object or the
 * new one, whole. The condition is evaluated by S3 itself when it completes the upload (S3
 * conditional writes), so two writers cannot both pass it: whoever completes second compares
 * against the ETag the first one wrote and gets 412. There is no read-then-write anywhere.
 * CopyObject would be one request, but MinIO silently ignores destination If-Match /
 * If-None-Match on CopyObject (checked against MinIO; only the CopySource* conditions hold),
 * and CopyObject stops at 5 GiB; the multipart copy handles both.
 *
 * client.ts says how uploaded bytes are checked; metadata.ts how metadata travels; copy.ts is the
 * multipart copy.
 */

import { type Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  AbortMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  type S3Client,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { ConfigError } from '../../util/config-error.js';
import type { Logger } from '../../util/logger.js';
import type { CommonSettings } from '../driver.js';
import { NotFoundError, PreconditionFailedError, StorageUnavailableError } from '../errors.js';
import { copyOutByStream } from '../shared/copy-out.js';
import { mergeEntries, objectsOf } from '../shared/entries.js';
import { newStagedName, UPLOADS_PREFIX } from '../shared/staging.js';
import type {
  CommitOptions,
  InPlaceOptions,
  ListEntriesOptions,
  ListEntry,
  Metadata,
  ObjectInfo,
  PublishOptions,
  ReadOptions,
  StagedObject,
  Storage,
  WriteCondition,
} from '../types.js';
import { createBucket, createClient, quietOldNodeWarning } from './client.js';
import { type Copier, landed, multipartCopy, withNonce } from './copy.js';
import { type Access, describe, errorCode, isNoSuchUpload, setupErrorLine, translate } from './errors.js';
import { abortMarked, mark } from './in-place.js';
import { checkMetadataFits, decodeMetadata, headInfo, quote, unquote } from './metadata.js';
import type { S3Settings } from './settings.js';
import { createSigner, type Signer } from './signed-url.js';
import { sweepMultipart, sweepStaged } from './sweep.js';

/** This backend's settings and the common ones it uses. */
type Settings = S3Settings & CommonSettings;

const MiB = 1024 * 1024;
const UPLOAD_PART_SIZE = 8 * MiB;
const UPLOAD_QUEUE = 4;
/** Parts of a server-side copy: each is one request that may stay silent while S3 copies. */
const COPY_PART_SIZE = 512 * MiB; // ≤ 5 GiB each; 10,000 parts reach S3's 5 TiB object limit
/** Most keys one ListObjectsV2 request returns (S3's MaxKeys limit and default). */
const LIST_PAGE = 1000;

class S3Staged implements StagedObject {
  constructor(
    readonly key: string,
    readonly size: number,
    readonly name: string,
    readonly etag: string,
  ) {}
}

export function create(config: Settings, logger: Logger): S3Storage {
  quietOldNodeWarning(logger);
  return new S3Storage(config, logger);
}

export class S3Storage implements Storage {
  readonly kind = 's3';
  readonly capabilities = {
    listIncludesMetadata: false,
    uniqueTokens: false,
    localFiles: false,
    signedUrls: true,
    stagesInPlace: true,
  };
  readonly bucket: string;
  readonly client: S3Client;
  readonly #config: Settings;
  readonly #logger: Logger;
  /** Staged names this process is writing or holding, and keys it stages in place: sweep() leaves them alone. */
  readonly #active = new Set<string>();
  /** The multipart copy's view of this backend (copy.ts). */
  readonly #copier: Copier;
  /** Presigned GETs (signed-url.ts). */
  readonly signedUrl: Signer;

  /** `copyPartSize` exists for tests of the ranged copy (S3's minimum part size is 5 MiB). */
  constructor(config: Settings, logger: Logger, options: { copyPartSize?: number } = {}) {
    this.#config = config;
    this.#logger = logger;
    this.bucket = config.BUCKET_NAME;
    this.client = createClient(config);
    this.#copier = {
      client: this.client,
      bucket: this.bucket,
      logger,
      partSize: options.copyPartSize ?? COPY_PART_SIZE,
      call: (key, fn, access) => this.#call(key, fn, access),
      abort: (key, uploadId) => this.#abortUpload(key, uploadId),
    };
    this.signedUrl = createSigner(config);
  }

  async init(): Promise<void> {
    try {
      try {
        await this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, MaxKeys: 1 }));
      } catch (err) {
        if (errorCode(err) !== 'NoSuchBucket' || !this.#config.AUTO_CREATE_BUCKET) throw err;
        await createBucket(this.client, this.bucket, this.#logger);
      }
    } catch (err) {
      throw await this.#setupError(err);
    }
  }

  async ping(): Promise<void> {
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: this.bucket }));
    } catch (err) {
      throw new StorageUnavailableError('s3', describe(err), { cause: err });
    }
  }

  async head(key: string): Promise<ObjectInfo> {
    const r = await this.#call(key, () => this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key })));
    return headInfo(key, r);
  }

  async get(key: string, options: ReadOptions = {}): Promise<{ info: ObjectInfo; body: Readable }> {
    const { range, signal } = options;
    const r = await this.#call(key, () =>
      this.client.send(
        new GetObjectCommand({
          Bucket: this.bucket,
          Key: key,
          Range: range ? `bytes=${range.start}-${range.end}` : undefined,
        }),
        { abortSignal: signal },
      ),
    );
    // Info comes from the same response as the bytes, so it describes exactly them.
    const total = /\/(\d+)$/.exec(r.ContentRange ?? '')?.[1];
    const info = {
      key,
      size: total !== undefined ? Number(total) : (r.ContentLength ?? 0),
      lastModified: r.LastModified ?? new Date(),
      token: unquote(r.ETag),
      metadata: decodeMetadata(r.Metadata),
    };
    return { info, body: r.Body as Readable };
  }

  async stage(key: string, body: Readable, options: { signal?: AbortSignal } = {}): Promise<StagedObject> {
    const name = newStagedName();
    this.#active.add(name);
    try {
      const { size, etag } = await this.#upload(UPLOADS_PREFIX + name, body, {}, options.signal, key);
      return new S3Staged(key, size, name, etag);
    } catch (err) {
      this.#active.delete(name);
      throw err;
    }
  }

  /**
   * The body's multipart upload (or PutObject, up to one part) completes onto `key` itself with
   * the metadata and the condition (If-None-Match: * by default; lib-storage sends its params with PutObject, with
   * CreateMultipartUpload and with CompleteMultipartUpload). It completes only after the body
   * ended: a body that errors first aborts it, and S3 never shows an uncompleted upload.
   */
  async stageInPlace(
    key: string,
    body: Readable,
    metadata: Metadata,
    options: InPlaceOptions = {},
  ): Promise<ObjectInfo> {
    const condition = options.condition ?? { ifNoneMatch: true };
    // The nonce tells our own write apart when the SDK retried its last request (copy.ts).
    const { headers, nonce } = withNonce(metadata);
    const params = {
      Metadata: headers,
      IfMatch: 'ifMatch' in condition ? quote(condition.ifMatch) : undefined,
      IfNoneMatch: 'ifNoneMatch' in condition ? '*' : undefined,
    };
    this.#active.add(key); // sweep() leaves a multipart upload to this key alone
    // Past one part, the upload is a multipart upload that names no writer: a marker names it,
    // for a sweep after a crash (in-place.ts).
    let marking: Promise<string> | undefined;
    const beforeMultipart = async () => {
      marking = mark(this.client, this.bucket, key, (fn) => this.#call(UPLOADS_PREFIX, fn, 'write'));
      this.#active.add(await marking);
    };
    try {
      const { size, etag } = await this.#upload(key, body, params, options.signal, key, beforeMultipart);
      return { key, size, lastModified: new Date(), token: etag, metadata };
    } catch (err) {
      if (nonce && (err instanceof PreconditionFailedError || isNoSuchUpload(err))) {
        const ours = await landed(this.#copier, key, nonce).catch(() => undefined);
        if (ours) return { ...ours, metadata };
      }
      throw err;
    } finally {
      this.#active.delete(key);
      // Awaited: an upload aborted while its marker was being stored must still delete it.
      const marker = await marking?.catch(() => undefined);
      if (marker) {
        this.#active.delete(marker);
        await this.#deleteQuietly(UPLOADS_PREFIX + marker);
      }
    }
  }

  /**
   * Streams `body` to `target` with lib-storage; `key` names the write in errors.
   * `beforeMultipart` runs before the body outgrows one part (so before lib-storage can start a
   * multipart upload), holding the body until it is done.
   */
  async #upload(
    target: string,
    body: Readable,
    params: { Metadata?: Record<string, string>; IfMatch?: string; IfNoneMatch?: string },
    signal: AbortSignal | undefined,
    key: string,
    beforeMultipart?: () => Promise<void>,
  ): Promise<{ size: number; etag: string }> {
    let size = 0;
    let single = beforeMultipart !== undefined;
    let bodyError: unknown;
    let uploadFailed = false;
    // A body error after the upload failed is only pipeline() tearing the body down.
    body.once('error', (err) => {
      if (!uploadFailed) bodyError ??= err;
    });
    const counter = new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        size += chunk.length;
        if (!single || size <= UPLOAD_PART_SIZE || !beforeMultipart) return callback(null, chunk);
        single = false;
        beforeMultipart().then(() => callback(null, chunk), callback);
      },
    });
    // The signal aborts the pipeline, which destroys `counter`; Upload then fails through its
    // own error path, which aborts the multipart upload BEFORE done() rejects. (Upload's
    // abortController would reject done() at once and clean up later, in the background.)
    const piped = pipeline(body, counter, { signal });
    const upload = new Upload({
      client: this.client,
      params: { Bucket: this.bucket, Key: target, Body: counter, ...params },
      partSize: UPLOAD_PART_SIZE,
      queueSize: UPLOAD_QUEUE,
      leavePartsOnError: false,
    });
    const uploaded = upload.done().catch((err: unknown) => {
      uploadFailed = true;
      counter.destroy(); // stop reading the body: nobody consumes it any more
      throw err;
    });
    const [pipeResult, uploadResult] = await Promise.allSettled([piped, uploaded]);
    if (pipeResult.status === 'fulfilled' && uploadResult.status === 'fulfilled') {
      return { size, etag: unquote(uploadResult.value.ETag) };
    }
    if (uploadResult.status === 'fulfilled') await this.#deleteQuietly(target);
    if (signal?.aborted) throw signal.reason ?? new Error('aborted');
    if (bodyError !== undefined) throw bodyError;
    if (uploadResult.status === 'rejected') throw translate(uploadResult.reason, key, 'write');
    throw (pipeResult as PromiseRejectedResult).reason;
  }

  async commit(
    staged: StagedObject,
    metadata: Metadata,
    condition: WriteCondition,
    options: CommitOptions = {},
  ): Promise<ObjectInfo> {
    const s = this.#own(staged);
    const from = { from: UPLOADS_PREFIX + s.name, sourceToken: s.etag, size: s.size };
    const info = await multipartCopy(this.#copier, from, options.key ?? s.key, {
      metadata,
      condition,
      after: options.after,
    });
    this.#active.delete(s.name);
    await this.#deleteQuietly(UPLOADS_PREFIX + s.name);
    return info;
  }

  async discard(staged: StagedObject): Promise<void> {
    const s = this.#own(staged);
    const stagingKey = UPLOADS_PREFIX + s.name;
    await this.#call(stagingKey, () =>
      this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: stagingKey })),
    );
    this.#active.delete(s.name);
  }

  async copy(
    from: string,
    to: string,
    options: { sourceToken: string; metadata: Metadata; condition?: WriteCondition } & PublishOptions,
  ): Promise<ObjectInfo> {
    const size = await this.#sizeOf(from, options.sourceToken);
    return multipartCopy(this.#copier, { from, sourceToken: options.sourceToken, size }, to, {
      metadata: options.metadata,
      condition: options.condition ?? {},
      after: options.after,
    });
  }

  async setMetadata(key: string, token: string, metadata: Metadata): Promise<ObjectInfo> {
    const size = await this.#sizeOf(key, token);
    return multipartCopy(this.#copier, { from: key, sourceToken: token, size }, key, {
      metadata,
      condition: { ifMatch: token },
    });
  }

  async delete(key: string): Promise<void> {
    await this.#call(key, () => this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key })), 'delete');
  }

  list(prefix: string, options: { startAfter?: string } = {}): AsyncIterable<ObjectInfo> {
    return objectsOf(this.listEntries(prefix, options));
  }

  async *listEntries(prefix: string, options: ListEntriesOptions = {}): AsyncIterable<ListEntry> {
    let continuation: string | undefined;
    // Entries still expected (options.expect): each request asks for no more, past them 1,000.
    let expected = options.expect ?? 0;
    do {
      const maxKeys = expected > 0 ? Math.min(expected, LIST_PAGE) : undefined;
      const page = await this.#call(prefix, () =>
        this.client.send(
          new ListObjectsV2Command({
            Bucket: this.bucket,
            Prefix: prefix,
            Delimiter: '/',
            StartAfter: options.startAfter,
            ContinuationToken: continuation,
            MaxKeys: maxKeys,
          }),
        ),
      );
      const objects: ObjectInfo[] = [];
      for (const o of page.Contents ?? []) {
        if (!o.Key || o.Key.endsWith('/')) continue; // folder markers made by consoles
        const token = unquote(o.ETag);
        objects.push({
          key: o.Key,
          size: o.Size ?? 0,
          lastModified: o.LastModified ?? new Date(),
          token,
          metadata: {},
        });
      }
      const folders = (page.CommonPrefixes ?? []).flatMap((p) => (p.Prefix ? [p.Prefix] : []));
      expected -= (page.Contents?.length ?? 0) + folders.length;
      yield* mergeEntries(objects, folders, options.startAfter);
      continuation = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (continuation);
  }

  /** Removes what crashed writers left (sweep.ts). */
  async sweep(): Promise<number> {
    const active = new Set(this.#active);
    const call = <T>(fn: () => Promise<T>) => this.#call(UPLOADS_PREFIX, fn);
    const abort = (key: string, id: string) => this.#abortUpload(key, id);
    const staged = await sweepStaged(this.client, this.bucket, active, call, async (key) => {
      await abortMarked(this.client, this.bucket, key, call, abort); // a marker: its upload first
      await this.delete(key);
    });
    return staged + (await sweepMultipart(this.client, this.bucket, active, call, abort));
  }

  /** S3 bounds user metadata to 2 KB: the UTF-8 bytes of every key and value, as sent. */
  checkMetadata(metadata: Metadata): void {
    checkMetadataFits(metadata);
  }

  copyOut(key: string, token: string, dest: string): Promise<void> {
    return copyOutByStream(this, key, token, dest);
  }

  async close(): Promise<void> {
    this.client.destroy();
  }

  // ---- internals ----

  /** Size of `key` if its ETag is still `token` (NotFoundError / PreconditionFailedError). */
  async #sizeOf(key: string, token: string): Promise<number> {
    const r = await this.#call(key, () =>
      this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key, IfMatch: quote(token) })),
    );
    return r.ContentLength ?? 0;
  }

  async #abortUpload(key: string, uploadId: string): Promise<void> {
    await this.#call(key, () =>
      this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: key, UploadId: uploadId })),
    ).catch((err: unknown) => {
      if (!isNoSuchUpload(err) && !(err instanceof NotFoundError)) throw err; // already gone
    });
  }

  async #deleteQuietly(key: string): Promise<void> {
    await this.delete(key).catch((err: unknown) =>
      this.#logger.warn({ err, key }, 'could not delete a staged upload; sweep will retry'),
    );
  }

  async #setupError(err: unknown): Promise<ConfigError> {
    const region = await this.client.config.region().catch(() => undefined);
    return new ConfigError(setupErrorLine(err, this.#config, region), { cause: err });
  }

  async #call<T>(key: string, fn: () => Promise<T>, access: Access = 'read'): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw translate(err, key, access);
    }
  }

  #own(staged: StagedObject): S3Staged {
    if (!(staged instanceof S3Staged)) throw new TypeError('staged object does not belong to this backend');
    return staged;
  }
}
