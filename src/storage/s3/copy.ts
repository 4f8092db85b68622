/**
 * The S3 multipart copy that every publish, copy and metadata rewrite goes through (storage.ts
 * says why a multipart copy and not CopyObject): CreateMultipartUpload with the metadata,
 * UploadPartCopy pinned to the source ETag, CompleteMultipartUpload carrying the condition, and
 * a write nonce that tells a retried Complete whose first reply was lost from a lost race.
 */
import { randomUUID } from 'node:crypto';
import {
  type CompletedPart,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  HeadObjectCommand,
  type S3Client,
  UploadPartCopyCommand,
} from '@aws-sdk/client-s3';
import type { Logger } from '../../util/logger.js';
import { NotFoundError, PreconditionFailedError, StorageUnavailableError } from '../errors.js';
import { WRITE_NONCE } from '../shared/write-nonce.js';
import type { Metadata, ObjectInfo, PublishOptions, WriteCondition } from '../types.js';
import { copyPartSize } from './client.js';
import { type Access, describe, errorCode, isNoSuchUpload } from './errors.js';
import {
  encodeMetadata,
  headInfo,
  MAX_METADATA_BYTES,
  metadataBytes,
  NONCE_BYTES,
  quote,
  unquote,
} from './metadata.js';

/** Parts copied at once. */
const COPY_QUEUE = 4;

/** What a copy needs of the backend. */
export interface Copier {
  client: S3Client;
  bucket: string;
  logger: Logger;
  /** Bytes per copied part. */
  partSize: number;
  /** Runs an SDK call, its errors translated for `key`. */
  call<T>(key: string, fn: () => Promise<T>, access?: Access): Promise<T>;
  /** Aborts a multipart upload (already gone is fine). */
  abort(key: string, uploadId: string): Promise<void>;
}

/**
 * Publishes `to` as a copy of the object `from` (whose ETag must still be `sourceToken`) with
 * `metadata`, if `condition` holds when S3 completes the upload. See the header for why.
 * The parts are copied while `after` runs; the upload completes only once it resolved.
 */
export async function multipartCopy(
  c: Copier,
  { from, sourceToken, size }: { from: string; sourceToken: string; size: number },
  to: string,
  { metadata, condition, after }: { metadata: Metadata; condition: WriteCondition } & PublishOptions,
): Promise<ObjectInfo> {
  // Names this write: a CompleteMultipartUpload retried by the SDK after its reply was lost
  // fails against the object its first attempt wrote; the nonce tells that apart (landed).
  const { headers, nonce } = withNonce(metadata);
  const created = await c.call(
    to,
    () =>
      c.client.send(
        new CreateMultipartUploadCommand({
          Bucket: c.bucket,
          Key: to,
          Metadata: headers,
        }),
      ),
    'write',
  );
  const uploadId = created.UploadId!;
  try {
    const part = copyPartSize(size, c.partSize);
    const ranges =
      size <= part
        ? [undefined]
        : Array.from(
            { length: Math.ceil(size / part) },
            (_, i) => `bytes=${i * part}-${Math.min(size, (i + 1) * part) - 1}`,
          );
    const parts: CompletedPart[] = new Array(ranges.length);
    let next = 0;
    const worker = async () => {
      for (let i = next++; i < ranges.length; i = next++) {
        const r = await c
          .call(from, () =>
            c.client.send(
              new UploadPartCopyCommand({
                Bucket: c.bucket,
                Key: to,
                UploadId: uploadId,
                PartNumber: i + 1,
                CopySource: `${c.bucket}/${from.split('/').map(encodeURIComponent).join('/')}`,
                CopySourceIfMatch: quote(sourceToken),
                CopySourceRange: ranges[i],
              }),
            ),
          )
          .catch((err: unknown) => {
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
    const done = await c
      .call(to, () =>
        c.client.send(
          new CompleteMultipartUploadCommand({
            Bucket: c.bucket,
            Key: to,
            UploadId: uploadId,
            MultipartUpload: { Parts: parts },
            IfMatch: 'ifMatch' in condition ? quote(condition.ifMatch) : undefined,
            IfNoneMatch: 'ifNoneMatch' in condition ? '*' : undefined,
          }),
        ),
      )
      .then(
        (done) => ({ key: to, size, lastModified: new Date(), token: unquote(done.ETag), metadata }),
        async (err: unknown) => {
          // Failed, or did an earlier attempt of this very request succeed and lose its reply?
          // (Its retry then meets our own object: 412 / 409, or NoSuchUpload once it completed.)
          if (nonce && (err instanceof PreconditionFailedError || isNoSuchUpload(err))) {
            // Not knowing is not failing: the caller would retry and commit a second time.
            const ours = await landed(c, to, nonce).catch((headErr: unknown) => {
              throw new StorageUnavailableError(
                's3',
                `the commit to ${to} may have completed (its reply was lost, and checking failed: ${describe(headErr)})`,
                { cause: err },
              );
            });
            if (ours) return { ...ours, metadata };
          }
          // If-Match on a missing key answers 404 NoSuchKey: the condition failed.
          throw err instanceof NotFoundError && errorCode(err.cause) === 'NoSuchKey'
            ? new PreconditionFailedError(to, { cause: err.cause })
            : err;
        },
      );
    return done;
  } catch (err) {
    await c
      .abort(to, uploadId)
      .catch((abortErr: unknown) =>
        c.logger.warn({ err: abortErr, key: to }, 'could not abort a multipart copy; sweep will retry'),
      );
    throw err;
  }
}

/**
 * The S3 metadata headers for `metadata` with a fresh write nonce, which names one write so that
 * `landed` can tell it apart. Left out where it would not fit: objects written before it existed
 * may fill the 2 KB.
 */
export function withNonce(metadata: Metadata): { headers: Record<string, string>; nonce?: string } {
  const encoded = encodeMetadata(metadata);
  if (metadataBytes(encoded) + NONCE_BYTES > MAX_METADATA_BYTES) return { headers: encoded };
  const nonce = randomUUID();
  return { headers: { ...encoded, [WRITE_NONCE]: nonce }, nonce };
}

/** `key` as written by the write that chose `nonce`; undefined when it holds something else or nothing. */
export async function landed(c: Copier, key: string, nonce: string): Promise<ObjectInfo | undefined> {
  // Gone by now: what failed the condition was another writer's object, removed since (a
  // number given back and pruned). Ours, had it landed, is no longer there to be the answer.
  const r = await c
    .call(key, () => c.client.send(new HeadObjectCommand({ Bucket: c.bucket, Key: key })))
    .catch((err: unknown) => {
      if (err instanceof NotFoundError) return undefined;
      throw err;
    });
  if (!r) return undefined;
  if (r.Metadata?.[WRITE_NONCE] !== nonce) return undefined;
  c.logger.info({ key }, 'a commit whose reply was lost had succeeded');
  return headInfo(key, r);
}
