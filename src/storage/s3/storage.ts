/**
 * S3 backend (AWS S3 and S3-compatible servers such as MinIO). Owns the S3 client, the bucket
 * check at start, and the mapping of the storage contract onto S3 requests:
 *
 *   stage    lib-storage Upload (8 MiB parts, 4 in flight) to `.uploads/{pid}-{uuid}-{host}.part`
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
 * Integrity of uploaded bytes: every part carries a CRC32 checksum (the SDK's default), which
 * S3 checks, and is sent as UNSIGNED-PAYLOAD instead of also being SHA-256-hashed for the
 * signature (what the SDK itself does for streamed bodies, and boto3 over HTTPS) — that hash cost
 * a second of CPU per GiB. End to end, the model's SHA-256 in its metadata (signed with the
 * request headers) is checked on every read from storage.
 *
 * Metadata is sent as HTTP headers (ASCII only, 2 KB in total): values that are not plain
 * printable ASCII are stored as RFC 2047 encoded words (`=?UTF-8?B?<base64>?=`, what S3 itself
 * returns for non-ASCII metadata) and decoded on read.
 */
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  S3Client,
  S3ServiceException,
  UploadPartCopyCommand,
  type BucketLocationConstraint,
  type CompletedPart,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { copyOutByStream } from '../shared/copy-out.js';
import type { FinalizeRequestMiddleware, MetadataBearer } from '@smithy/types';
import { randomUUID } from 'node:crypto';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { CommonSettings } from '../driver.js';
import type { S3Settings } from './settings.js';
import { ConfigError } from '../../util/config-error.js';
import { MetadataTooLargeError, NotFoundError, PreconditionFailedError, StorageAccessDeniedError, StorageError, StorageUnavailableError } from '../errors.js';
import type { Logger } from '../../util/logger.js';
import { isAbandoned, newStagedName, UPLOAD_STARTED_MAX_AGE_MS, UPLOADS_PREFIX } from '../shared/staging.js';
import { WRITE_NONCE } from '../shared/write-nonce.js';
import type { CommitOptions, Metadata, ObjectInfo, PublishOptions, ReadOptions, StagedObject, Storage, WriteCondition } from '../types.js';

/** This backend's settings and the common ones it uses. */
type Settings = S3Settings & CommonSettings;

const MiB = 1024 * 1024;
const UPLOAD_PART_SIZE = 8 * MiB;
const UPLOAD_QUEUE = 4;
/** Parts of a server-side copy: each is one request that may stay silent while S3 copies. */
const COPY_PART_SIZE = 512 * MiB; // ≤ 5 GiB each; 10,000 parts reach S3's 5 TiB object limit
const COPY_QUEUE = 4;
/** S3's bound on an object's user metadata, keys and values together. */
const MAX_METADATA_BYTES = 2048;
/** S3's smallest part (all but the last). */
const MIN_PART_SIZE = 5 * MiB;
/** What the write nonce (write-nonce.ts; see #copyInto) adds to an object's metadata (its key and a UUID). */
const NONCE_BYTES = WRITE_NONCE.length + 36;
const NETWORK_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ENOTFOUND', 'EAI_AGAIN', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'ECONNABORTED', 'EPROTO', 'ERR_SSL_WRONG_VERSION_NUMBER']);

class S3Staged implements StagedObject {
  constructor(readonly key: string, readonly size: number, readonly name: string, readonly etag: string) {}
}

export function create(config: Settings, logger: Logger): S3Storage {
  // The SDK prints a ten-line process warning on Node < 22, which would break the one-line
  // start-up errors; say it once in the log instead.
  if (Number(process.versions.node.split('.')[0]) < 22 && process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED === undefined) {
    process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';
    logger.info('AWS SDK releases after January 2027 need Node.js 22; this build pins its SDK version and runs on Node.js 20');
  }
  return new S3Storage(config, logger);
}

export class S3Storage implements Storage {
  readonly kind = 's3';
  readonly capabilities = { listIncludesMetadata: false, uniqueTokens: false, localFiles: false };
  readonly bucket: string;
  readonly client: S3Client;
  readonly #config: Settings;
  readonly #logger: Logger;
  /** Staged names this process is writing or holding, which sweep() must leave alone. */
  readonly #active = new Set<string>();
  readonly #copyPartSize: number;

  /** `copyPartSize` exists for tests of the ranged copy (S3's minimum part size is 5 MiB). */
  constructor(config: Settings, logger: Logger, options: { copyPartSize?: number } = {}) {
    this.#config = config;
    this.#copyPartSize = options.copyPartSize ?? COPY_PART_SIZE;
    this.#logger = logger;
    this.bucket = config.BUCKET_NAME;
    const region = config.AWS_DEFAULT_REGION ?? config.AWS_REGION ?? (config.AWS_ENDPOINT_URL ? 'us-east-1' : undefined);
    this.client = new S3Client({
      // Without region or keys the SDK's default chains (env, profile, web identity, IAM role) apply.
      ...(region ? { region } : {}),
      ...(config.AWS_ENDPOINT_URL ? { endpoint: config.AWS_ENDPOINT_URL, forcePathStyle: true } : {}),
      ...(config.AWS_ACCESS_KEY_ID && config.AWS_SECRET_ACCESS_KEY
        ? { credentials: { accessKeyId: config.AWS_ACCESS_KEY_ID, secretAccessKey: config.AWS_SECRET_ACCESS_KEY, sessionToken: config.AWS_SESSION_TOKEN } }
        : {}),
      maxAttempts: 3,
      // Options for the SDK's NodeHttpHandler. socketTimeout is the inactivity timeout (also
      // while a body streams), which is what STORAGE_TIMEOUT means; requestTimeout in this
      // handler version caps the whole request and would only log a warning.
      requestHandler: { connectionTimeout: 5000, socketTimeout: config.STORAGE_TIMEOUT },
    });
    this.client.middlewareStack.addRelativeTo(unsignedChecksummedPayload, {
      relation: 'before',
      toMiddleware: 'httpSigningMiddleware',
      name: 'unsignedChecksummedPayload',
    });
  }

  async init(): Promise<void> {
    try {
      try {
        await this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, MaxKeys: 1 }));
      } catch (err) {
        if (errorCode(err) !== 'NoSuchBucket' || !this.#config.AUTO_CREATE_BUCKET) throw err;
        await this.#createBucket();
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
    return { key, size: r.ContentLength ?? 0, lastModified: r.LastModified ?? new Date(), token: unquote(r.ETag), metadata: decodeMetadata(r.Metadata) };
  }

  async get(key: string, options: ReadOptions = {}): Promise<{ info: ObjectInfo; body: Readable }> {
    const { range, signal } = options;
    const r = await this.#call(key, () =>
      this.client.send(
        new GetObjectCommand({ Bucket: this.bucket, Key: key, Range: range ? `bytes=${range.start}-${range.end}` : undefined }),
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
    const stagingKey = UPLOADS_PREFIX + name;
    this.#active.add(name);
    let size = 0;
    let bodyError: unknown;
    let uploadFailed = false;
    // A body error after the upload failed is only pipeline() tearing the body down.
    body.once('error', (err) => {
      if (!uploadFailed) bodyError ??= err;
    });
    const counter = new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        size += chunk.length;
        callback(null, chunk);
      },
    });
    // The signal aborts the pipeline, which destroys `counter`; Upload then fails through its
    // own error path, which aborts the multipart upload BEFORE done() rejects. (Upload's
    // abortController would reject done() at once and clean up later, in the background.)
    const piped = pipeline(body, counter, { signal: options.signal });
    const upload = new Upload({
      client: this.client,
      params: { Bucket: this.bucket, Key: stagingKey, Body: counter },
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
      return new S3Staged(key, size, name, unquote(uploadResult.value.ETag));
    }
    this.#active.delete(name);
    if (uploadResult.status === 'fulfilled') await this.#deleteQuietly(stagingKey);
    if (options.signal?.aborted) throw options.signal.reason ?? new Error('aborted');
    if (bodyError !== undefined) throw bodyError;
    if (uploadResult.status === 'rejected') throw translate(uploadResult.reason, key, 'write');
    throw (pipeResult as PromiseRejectedResult).reason;
  }

  async commit(staged: StagedObject, metadata: Metadata, condition: WriteCondition, options: CommitOptions = {}): Promise<ObjectInfo> {
    const s = this.#own(staged);
    const from = { from: UPLOADS_PREFIX + s.name, sourceToken: s.etag, size: s.size };
    const info = await this.#copyInto(from, options.key ?? s.key, { metadata, condition, after: options.after });
    this.#active.delete(s.name);
    await this.#deleteQuietly(UPLOADS_PREFIX + s.name);
    return info;
  }

  async discard(staged: StagedObject): Promise<void> {
    const s = this.#own(staged);
    const stagingKey = UPLOADS_PREFIX + s.name;
    await this.#call(stagingKey, () => this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: stagingKey })));
    this.#active.delete(s.name);
  }

  async copy(
    from: string,
    to: string,
    options: { sourceToken: string; metadata: Metadata; condition?: WriteCondition } & PublishOptions,
  ): Promise<ObjectInfo> {
    const size = await this.#sizeOf(from, options.sourceToken);
    return this.#copyInto({ from, sourceToken: options.sourceToken, size }, to, { metadata: options.metadata, condition: options.condition ?? {}, after: options.after });
  }

  async setMetadata(key: string, token: string, metadata: Metadata): Promise<ObjectInfo> {
    const size = await this.#sizeOf(key, token);
    return this.#copyInto({ from: key, sourceToken: token, size }, key, { metadata, condition: { ifMatch: token } });
  }

  async delete(key: string): Promise<void> {
    await this.#call(key, () => this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key })), 'delete');
  }

  async *list(prefix: string, options: { startAfter?: string } = {}): AsyncIterable<ObjectInfo> {
    let continuation: string | undefined;
    do {
      const page = await this.#call(prefix, () =>
        this.client.send(
          new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, Delimiter: '/', StartAfter: options.startAfter, ContinuationToken: continuation }),
        ),
      );
      for (const o of page.Contents ?? []) {
        if (!o.Key || o.Key.endsWith('/')) continue; // folder markers made by consoles
        yield { key: o.Key, size: o.Size ?? 0, lastModified: o.LastModified ?? new Date(), token: unquote(o.ETag), metadata: {} };
      }
      continuation = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (continuation);
  }

  /**
   * Other hosts' uploads are judged by age from their start (S3 gives no later time: a multipart
   * upload's Initiated, and the LastModified of the object it completes to): a day, so that a
   * 20 GiB upload over a slow link is not taken for a leftover while it is still being written.
   */
  async sweep(): Promise<number> {
    const active = new Set(this.#active);
    let removed = 0;
    let continuation: string | undefined;
    do {
      const page = await this.#call(UPLOADS_PREFIX, () =>
        this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: UPLOADS_PREFIX, ContinuationToken: continuation })),
      );
      for (const o of page.Contents ?? []) {
        if (o.Key && o.LastModified && isAbandoned(o.Key.slice(UPLOADS_PREFIX.length), o.LastModified, active, UPLOAD_STARTED_MAX_AGE_MS)) {
          await this.delete(o.Key);
          removed++;
        }
      }
      continuation = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (continuation);

    // No Prefix: MinIO lists multipart uploads only for an exact key, so filter here instead.
    let keyMarker: string | undefined;
    let uploadIdMarker: string | undefined;
    do {
      const page = await this.#call(UPLOADS_PREFIX, () =>
        this.client.send(new ListMultipartUploadsCommand({ Bucket: this.bucket, KeyMarker: keyMarker, UploadIdMarker: uploadIdMarker })),
      );
      for (const u of page.Uploads ?? []) {
        if (!u.Key || !u.UploadId || !u.Initiated) continue;
        const abandoned = u.Key.startsWith(UPLOADS_PREFIX)
          ? isAbandoned(u.Key.slice(UPLOADS_PREFIX.length), u.Initiated, active, UPLOAD_STARTED_MAX_AGE_MS)
          : Date.now() - u.Initiated.getTime() > UPLOAD_STARTED_MAX_AGE_MS; // a commit that crashed mid-copy
        if (abandoned) {
          await this.#abortUpload(u.Key, u.UploadId);
          removed++;
        }
      }
      [keyMarker, uploadIdMarker] = page.IsTruncated ? [page.NextKeyMarker, page.NextUploadIdMarker] : [undefined, undefined];
    } while (keyMarker);
    return removed;
  }

  /** S3 bounds user metadata to 2 KB: the UTF-8 bytes of every key and value, as sent. */
  checkMetadata(metadata: Metadata): void {
    const bytes = metadataBytes(encodeMetadata(metadata)) + NONCE_BYTES;
    if (bytes > MAX_METADATA_BYTES) throw metadataTooLarge(bytes);
  }

  copyOut(key: string, token: string, dest: string): Promise<void> {
    return copyOutByStream(this, key, token, dest);
  }

  async close(): Promise<void> {
    this.client.destroy();
  }

  // ---- internals ----

  /**
   * Publishes `to` as a copy of the object `from` (whose ETag must still be `sourceToken`) with
   * `metadata`, if `condition` holds when S3 completes the upload. See the header for why.
   * The parts are copied while `after` runs; the upload completes only once it resolved.
   */
  async #copyInto(
    { from, sourceToken, size }: { from: string; sourceToken: string; size: number },
    to: string,
    { metadata, condition, after }: { metadata: Metadata; condition: WriteCondition } & PublishOptions,
  ): Promise<ObjectInfo> {
    // Names this write: a CompleteMultipartUpload retried by the SDK after its reply was lost
    // fails against the object its first attempt wrote; the nonce tells that apart (#landed).
    // (Left out where it would not fit: objects written before it existed may fill the 2 KB.)
    const encoded = encodeMetadata(metadata);
    const nonce = metadataBytes(encoded) + NONCE_BYTES <= MAX_METADATA_BYTES ? randomUUID() : undefined;
    const created = await this.#call(to, () =>
      this.client.send(new CreateMultipartUploadCommand({ Bucket: this.bucket, Key: to, Metadata: nonce ? { ...encoded, [WRITE_NONCE]: nonce } : encoded })),
      'write',
    );
    const uploadId = created.UploadId!;
    try {
      const part = copyPartSize(size, this.#copyPartSize);
      const ranges = size <= part ? [undefined] : Array.from({ length: Math.ceil(size / part) }, (_, i) =>
        `bytes=${i * part}-${Math.min(size, (i + 1) * part) - 1}`);
      const parts: CompletedPart[] = new Array(ranges.length);
      let next = 0;
      const worker = async () => {
        for (let i = next++; i < ranges.length; i = next++) {
          const r = await this.#call(from, () =>
            this.client.send(new UploadPartCopyCommand({
              Bucket: this.bucket, Key: to, UploadId: uploadId, PartNumber: i + 1,
              CopySource: `${this.bucket}/${from.split('/').map(encodeURIComponent).join('/')}`,
              CopySourceIfMatch: quote(sourceToken), CopySourceRange: ranges[i],
            })),
          ).catch((err: unknown) => {
            next = ranges.length; // the other workers stop after their current part
            throw err;
          });
          parts[i] = { PartNumber: i + 1, ETag: r.CopyPartResult?.ETag };
        }
      };
      const copied = Promise.all(Array.from({ length: Math.min(COPY_QUEUE, ranges.length) }, worker));
      const waited = after?.catch((err: unknown) => {
        next = ranges.length; // no point copying more parts
        throw err;
      });
      // Both settle before the upload is aborted below, so no part request outlives the abort.
      const [copy, wait] = await Promise.allSettled([copied, waited]);
      if (wait.status === 'rejected') throw wait.reason;
      if (copy.status === 'rejected') throw copy.reason;
      const done = await this.#call(to, () =>
        this.client.send(new CompleteMultipartUploadCommand({
          Bucket: this.bucket, Key: to, UploadId: uploadId, MultipartUpload: { Parts: parts },
          IfMatch: 'ifMatch' in condition ? quote(condition.ifMatch) : undefined,
          IfNoneMatch: 'ifNoneMatch' in condition ? '*' : undefined,
        })),
      ).then(
        (done) => ({ key: to, size, lastModified: new Date(), token: unquote(done.ETag), metadata }),
        async (err: unknown) => {
          // Failed, or did an earlier attempt of this very request succeed and lose its reply?
          // (Its retry then meets our own object: 412 / 409, or NoSuchUpload once it completed.)
          if (nonce && (err instanceof PreconditionFailedError || isNoSuchUpload(err))) {
            // Not knowing is not failing: the caller would retry and commit a second time.
            const landed = await this.#landed(to, nonce).catch((headErr: unknown) => {
              throw new StorageUnavailableError('s3', `the commit to ${to} may have completed (its reply was lost, and checking failed: ${describe(headErr)})`, { cause: err });
            });
            if (landed) return { ...landed, metadata };
          }
          // If-Match on a missing key answers 404 NoSuchKey: the condition failed.
          throw err instanceof NotFoundError && errorCode(err.cause) === 'NoSuchKey' ? new PreconditionFailedError(to, { cause: err.cause }) : err;
        },
      );
      return done;
    } catch (err) {
      await this.#abortUpload(to, uploadId).catch((abortErr: unknown) =>
        this.#logger.warn({ err: abortErr, key: to }, 'could not abort a multipart copy; sweep will retry'));
      throw err;
    }
  }

  /** `key` as written by the #copyInto that chose `nonce`; undefined when it holds something else. */
  async #landed(key: string, nonce: string): Promise<ObjectInfo | undefined> {
    const r = await this.#call(key, () => this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key })));
    if (r.Metadata?.[WRITE_NONCE] !== nonce) return undefined;
    this.#logger.info({ key }, 'a commit whose reply was lost had succeeded');
    return { key, size: r.ContentLength ?? 0, lastModified: r.LastModified ?? new Date(), token: unquote(r.ETag), metadata: decodeMetadata(r.Metadata) };
  }

  /** Size of `key` if its ETag is still `token` (NotFoundError / PreconditionFailedError). */
  async #sizeOf(key: string, token: string): Promise<number> {
    const r = await this.#call(key, () => this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key, IfMatch: quote(token) })));
    return r.ContentLength ?? 0;
  }

  async #abortUpload(key: string, uploadId: string): Promise<void> {
    await this.#call(key, () => this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: key, UploadId: uploadId }))).catch((err: unknown) => {
      if (!isNoSuchUpload(err) && !(err instanceof NotFoundError)) throw err; // already gone
    });
  }

  async #deleteQuietly(key: string): Promise<void> {
    await this.delete(key).catch((err: unknown) => this.#logger.warn({ err, key }, 'could not delete a staged upload; sweep will retry'));
  }

  async #createBucket(): Promise<void> {
    const region = await this.client.config.region();
    try {
      await this.client.send(new CreateBucketCommand({
        Bucket: this.bucket,
        // us-east-1 is the default location and must not be named.
        ...(region && region !== 'us-east-1' ? { CreateBucketConfiguration: { LocationConstraint: region as BucketLocationConstraint } } : {}),
      }));
      this.#logger.info({ bucket: this.bucket, region }, 'created the bucket (AUTO_CREATE_BUCKET=true)');
    } catch (err) {
      if (errorCode(err) !== 'BucketAlreadyOwnedByYou') throw err; // another replica was faster
    }
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

/** The one line a user gets for a setup that cannot work (`region` as the client resolved it). */
export function setupErrorLine(err: unknown, c: Settings, region: string | undefined): string {
  const code = errorCode(err);
  const bucket = `BUCKET_NAME=${c.BUCKET_NAME}`;
  const regionVar = c.AWS_DEFAULT_REGION === undefined && c.AWS_REGION !== undefined ? 'AWS_REGION' : 'AWS_DEFAULT_REGION';
  const regionSet = (c.AWS_DEFAULT_REGION ?? c.AWS_REGION) !== undefined ? `${regionVar}=${region}` : `The region ${region} of the AWS profile`;
  const keyId = c.AWS_ACCESS_KEY_ID ? `AWS_ACCESS_KEY_ID=${c.AWS_ACCESS_KEY_ID}` : 'AWS_ACCESS_KEY_ID is not set and the key found by the default credential chain (profile, IAM role)';
  const expected = /expecting '([^']+)'/.exec(String((err as Error)?.message))?.[1]
    ?? (err as { $response?: { headers?: Record<string, string> } })?.$response?.headers?.['x-amz-bucket-region'];
  let line: string;
  if (code === 'CredentialsProviderError') {
    line = 'AWS_ACCESS_KEY_ID is not set and no AWS credentials were found (no profile, web identity or instance role): set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or run with an IAM role.';
  } else if (/region is missing/i.test(String((err as Error)?.message))) {
    line = 'AWS_DEFAULT_REGION is not set and no AWS profile names a region: set AWS_DEFAULT_REGION to the bucket\'s region code, e.g. AWS_DEFAULT_REGION=eu-central-1.';
  } else if (code === 'InvalidAccessKeyId') {
    line = `${keyId} is not known to the server (InvalidAccessKeyId): check the access key, or unset both keys to use the default credential chain.`;
  } else if (code === 'SignatureDoesNotMatch') {
    line = `AWS_SECRET_ACCESS_KEY does not belong to ${c.AWS_ACCESS_KEY_ID ? `AWS_ACCESS_KEY_ID=${c.AWS_ACCESS_KEY_ID}` : 'the access key found by the default credential chain'} (SignatureDoesNotMatch): copy the secret key again, without spaces or quotes.`;
  } else if (code === 'ExpiredToken' || code === 'InvalidToken' || code === 'TokenRefreshRequired') {
    line = `AWS_SESSION_TOKEN is expired or invalid (${code}): get fresh temporary credentials, or use long-term keys or an IAM role.`;
  } else if (expected && (code === 'AuthorizationHeaderMalformed' || code === 'PermanentRedirect' || code === 'IllegalLocationConstraintException' || statusOf(err) === 301)) {
    line = `${regionSet} is not the region of ${bucket} (${code}): set ${regionVar}=${expected}.`;
  } else if (code === 'NoSuchBucket') {
    line = `${bucket} does not exist and AUTO_CREATE_BUCKET=false: create the bucket (aws s3 mb s3://${c.BUCKET_NAME}) or set AUTO_CREATE_BUCKET=true.`;
  } else if (code === 'BucketAlreadyExists') {
    line = `${bucket} is taken by another account (BucketAlreadyExists): bucket names are global, choose another one.`;
  } else if (code === 'AccessDenied' || code === 'AllAccessDisabled' || code === 'Forbidden' || statusOf(err) === 403) {
    line = `${bucket} cannot be read with these credentials (${code}): grant s3:GetObject, s3:PutObject, s3:ListBucket and s3:DeleteObject on it, or use another bucket.`;
  } else if (isNetworkError(err)) {
    line = c.AWS_ENDPOINT_URL
      ? `AWS_ENDPOINT_URL=${c.AWS_ENDPOINT_URL} is ${code === 'TimeoutError' ? 'not answering' : 'unreachable'} (${code}): check the URL and that the server is running.`
      : `${regionSet} leads to an unreachable endpoint https://s3.${region}.amazonaws.com (${code}): check the region code and the network (proxy, firewall).`;
  } else {
    line = `${bucket} could not be checked at ${c.AWS_ENDPOINT_URL ?? `region ${region}`} (${describe(err)}): check the S3 settings.`;
  }
  return line.replace(/\s*\n\s*/g, ' ');
}

/** What a call does, for the permission a refusal names. */
type Access = 'read' | 'write' | 'delete';
const PERMISSIONS: Record<Access, string> = {
  read: 's3:GetObject and s3:ListBucket',
  write: 's3:PutObject (writing objects)',
  delete: 's3:DeleteObject',
};

/** Maps an SDK error to the storage errors of ../errors.ts, keeping it as `cause`. */
export function translate(err: unknown, key: string, access: Access = 'read'): unknown {
  if (err instanceof StorageError) return err;
  if ((err as Error)?.name === 'AbortError') return err;
  const code = errorCode(err);
  const status = statusOf(err);
  // An upload gone under us (a sweep judged it abandoned, or a lifecycle rule): the object
  // asked for is not missing — the write failed, and may be retried.
  if (code === 'NoSuchUpload') return new StorageUnavailableError('s3', `the multipart upload to ${key} no longer exists (NoSuchUpload)`, { cause: err });
  if (code === 'NoSuchKey' || (code === 'NotFound' && status === 404)) return new NotFoundError(key, { cause: err });
  // 409 ConditionalRequestConflict: a concurrent conditional write to the same key won.
  if (status === 412 || code === 'PreconditionFailed' || code === 'ConditionalRequestConflict') return new PreconditionFailedError(key, { cause: err });
  if (code === 'MetadataTooLarge') return metadataTooLarge(undefined, err);
  if (code === 'AccessDenied' || code === 'AllAccessDisabled' || (status === 403 && code === 'Forbidden')) {
    return new StorageAccessDeniedError('s3', `${describe(err)} on ${key}`, PERMISSIONS[access], { cause: err });
  }
  if (err instanceof S3ServiceException || isNetworkError(err) || code === 'CredentialsProviderError') {
    return new StorageUnavailableError('s3', describe(err), { cause: err });
  }
  return err;
}

/**
 * The part size of one multipart copy of `size` bytes: up to `base`, drawn at random. A multipart
 * object's ETag is a hash of its parts' hashes, so the same bytes copied with the same parts get
 * the ETag they had — and a rollback would hand a replica's stale If-Match a token that matches
 * again (ABA), letting it overwrite a newer version. Random part boundaries make ETags unique per
 * write for objects well over 5 MiB (5 MiB + k bytes have k layouts; parts but the last are at
 * least 5 MiB); a small object's copy takes milliseconds, too short a window for a replace and a
 * rollback to fit in.
 */
export function copyPartSize(size: number, base: number): number {
  if (size <= MIN_PART_SIZE) return size;
  const high = Math.min(base, size - 1);
  const low = Math.max(MIN_PART_SIZE, high - Math.floor(base / 8));
  return low + Math.floor(Math.random() * (high - low + 1));
}

function metadataTooLarge(bytes: number | undefined, cause?: unknown): MetadataTooLargeError {
  const bound = `${MAX_METADATA_BYTES} bytes in all, of which the registry's own fields take about 200`;
  return new MetadataTooLargeError('S3', bound, bytes, cause === undefined ? undefined : { cause });
}

/** What S3 counts against its metadata bound: the UTF-8 bytes of every key and value. */
function metadataBytes(metadata: Record<string, string>): number {
  return Object.entries(metadata).reduce((n, [k, v]) => n + Buffer.byteLength(k) + Buffer.byteLength(v), 0);
}

/** A translated error whose cause is S3's NoSuchUpload. */
function isNoSuchUpload(err: unknown): boolean {
  return errorCode((err as Error | undefined)?.cause) === 'NoSuchUpload';
}

function errorCode(err: unknown): string {
  const e = err as { code?: string; Code?: string; name?: string; errors?: { code?: string }[] } | undefined;
  return e?.code ?? e?.errors?.[0]?.code ?? e?.Code ?? e?.name ?? 'Error';
}

function statusOf(err: unknown): number | undefined {
  return (err as { $metadata?: { httpStatusCode?: number } })?.$metadata?.httpStatusCode;
}

function isNetworkError(err: unknown): boolean {
  return NETWORK_CODES.has(errorCode(err)) || (err as Error)?.name === 'TimeoutError';
}

function describe(err: unknown): string {
  const status = statusOf(err);
  return status ? `${errorCode(err)} ${status}` : errorCode(err);
}

const quote = (token: string) => (token.startsWith('"') ? token : `"${token}"`);
const unquote = (etag: string | undefined) => (etag ?? '').replace(/^(W\/)?"|"$/g, '');

const PLAIN = /^[\x21-\x7e]+( [\x21-\x7e]+)*$/;
const ENCODED = /^=\?UTF-8\?B\?([A-Za-z0-9+/]*={0,2})\?=$/i;

function encodeMetadata(metadata: Metadata): Record<string, string> {
  return Object.fromEntries(
    Object.entries(metadata).map(([k, v]) => [k, PLAIN.test(v) && !v.startsWith('=?') ? v : `=?UTF-8?B?${Buffer.from(v, 'utf8').toString('base64')}?=`]),
  );
}

function decodeMetadata(raw: Record<string, string> | undefined): Metadata {
  return Object.fromEntries(
    Object.entries(raw ?? {}).filter(([k]) => k.toLowerCase() !== WRITE_NONCE).map(([k, v]) => {
      const m = ENCODED.exec(v);
      return [k.toLowerCase(), m ? Buffer.from(m[1]!, 'base64').toString('utf8') : v];
    }),
  );
}

/**
 * Sends a part or small object that carries a checksum header (the SDK's default CRC32, which S3
 * verifies) as UNSIGNED-PAYLOAD, so the signer does not hash the whole body with SHA-256 as well.
 */
const unsignedChecksummedPayload: FinalizeRequestMiddleware<object, MetadataBearer> = (next) => async (args) => {
  const request = args.request as { headers?: Record<string, string>; body?: unknown };
  const headers = request.headers;
  if (
    headers &&
    ArrayBuffer.isView(request.body) &&
    !Object.keys(headers).some((h) => h.toLowerCase() === 'x-amz-content-sha256') &&
    Object.keys(headers).some((h) => h.toLowerCase().startsWith('x-amz-checksum-'))
  ) {
    headers['x-amz-content-sha256'] = 'UNSIGNED-PAYLOAD';
  }
  return next(args);
};
