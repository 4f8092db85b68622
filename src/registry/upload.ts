/**
 * An upload: validated as it streams to storage, then published (publish.ts) and, with
 * write-through, put into the cache. Nothing is visible unless every check passes.
 */
import { rm, stat } from 'node:fs/promises';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import type { ModelCache } from '../cache/index.js';
import { errors } from '../errors.js';
import type { ObjectInfo, Storage } from '../storage/types.js';
import type { Logger } from '../util/logger.js';
import { type ArchiveLimits, ArchiveValidator } from './archive.js';
import { assertLabels, assertName, keys } from './names.js';
import type { Publisher } from './publish.js';
import { encodeMetadata, reservedMetadata, type VersionRecord } from './records.js';
import { DigestCounter } from './streams.js';
import type { ModelVersion, UploadInput } from './types.js';

export interface UploadContext {
  storage: Storage;
  limits: ArchiveLimits;
  publisher: Publisher;
  logger: Logger;
  /** The cache uploads are written through to, if any. */
  writeThrough: ModelCache | undefined;
}

/** Validates and stores an upload as the new current version; says whether the name was new. */
export async function upload(
  ctx: UploadContext,
  name: string,
  input: UploadInput,
): Promise<{ model: ModelVersion; created: boolean }> {
  const { storage, writeThrough } = ctx;
  assertName(name);
  assertLabels(input.labels);
  // Refused now, not after the whole body went to storage: the largest metadata this upload
  // could get (the longest version number, a digest, a date, its labels).
  const createdAt = new Date().toISOString();
  const largest = { version: Number.MAX_SAFE_INTEGER, sha256: '0'.repeat(64), createdAt, labels: input.labels };
  storage.checkMetadata(encodeMetadata(largest));
  const key = keys.current(name);
  const validator = new ArchiveValidator(input.format, ctx.limits);
  // A digest the client announced is checked before the body's end reaches storage: a stage in
  // place (S3, GCS, Azure) completes as the body ends, so a refusal after that would come too late.
  const expected = input.expected;
  const digestCheck = new Transform({
    transform: (chunk, _encoding, callback) => callback(null, chunk),
    flush(callback) {
      const received = validator.summary.receivedSha256;
      if (!expected || expected.sha256 === received) return callback();
      callback(errors.digestMismatch(expected.header, expected.sha256, received));
    },
  });
  // Write-through: a local backend links its committed file into the cache (no second write);
  // others get a copy of the bytes as they stream to storage.
  const copyTo = writeThrough && !storage.capabilities.localFiles ? writeThrough.tempPath() : undefined;
  // A .tar.gz is stored as received: the validator's digest of the body is the stored digest.
  const stored = new DigestCounter({ copyTo, hash: input.format === 'tar' });
  const streams =
    input.format === 'tar'
      ? [input.body, validator, digestCheck, createGzip(), stored]
      : [input.body, validator, digestCheck, stored];
  // If the pipeline fails before it touches `stored` (e.g. a bad argument), fail the staging
  // too: otherwise stage() waits forever for a body that never ends.
  const piping = pipeline(streams, { signal: input.signal }).catch((err: unknown) => {
    stored.destroy(err as Error);
    throw err;
  });
  // Awaited below; it may fail first, while an upload staged in place still reserves its number.
  piping.catch(() => {});
  const recordOf = (size: number) => ({
    sha256: stored.sha256 ?? validator.summary.receivedSha256,
    size,
    labels: input.labels,
    origin: 'upload' as const,
  });
  let published: { model: ModelVersion; created: boolean; stored: ObjectInfo } | undefined;
  try {
    if (storage.stageInPlace) {
      // Its number first (none when the client's condition already fails: that one is staged).
      const reserved = await ctx.publisher.reserve(name, input.condition).catch((err: unknown) => {
        // Nobody will read it: the pipeline ends (premature close). Without an error: the pipeline
        // may be done already (a small body), and an error would find no listener.
        stored.destroy();
        throw err;
      });
      if (reserved) published = await uploadInPlace(ctx, name, input, stored, piping, recordOf, reserved);
    }
    if (!published) {
      const staging = storage.stage(key, stored, { signal: input.signal });
      const [piped, staged] = await Promise.allSettled([piping, staging]);
      if (piped.status === 'rejected' || staged.status === 'rejected') {
        if (staged.status === 'fulfilled') await storage.discard(staged.value);
        throw piped.status === 'rejected' ? piped.reason : (staged as PromiseRejectedResult).reason;
      }
      try {
        const record = recordOf(staged.value.size);
        published = await ctx.publisher.publish(name, input.condition, async () => ({
          record,
          write: (dest, metadata) => storage.commit(staged.value, metadata, { ifNoneMatch: true }, { key: dest }),
        }));
      } finally {
        await storage.discard(staged.value).catch(() => {});
      }
    }
    if (writeThrough) await admit(ctx, writeThrough, published.model, published.stored, copyTo);
    return { model: published.model, created: published.created };
  } finally {
    if (copyTo && !published) await rm(copyTo, { force: true });
  }
}

/**
 * An upload to a backend that stages in place (S3, GCS, Azure): its number is `reserved` first, and the body
 * streams straight to that number's history key, so publishing costs only the compare-and-swap
 * copy onto the current key. A refused or failed upload never completes there (the validator
 * errors the stream before its end) and leaves its number as a tombstone: skipped, never reused.
 */
async function uploadInPlace(
  ctx: UploadContext,
  name: string,
  input: UploadInput,
  body: DigestCounter,
  piping: Promise<void>,
  recordOf: (size: number) => Omit<VersionRecord, 'version' | 'createdAt'>,
  reserved: { version: number; createdAt: string; current: ModelVersion | undefined },
): Promise<{ model: ModelVersion; created: boolean; stored: ObjectInfo }> {
  const { current, ...number } = reserved;
  const dest = keys.history(name, number.version);
  // Called only where the storage stages in place (upload() checks).
  const staging = ctx.storage.stageInPlace!(dest, body, reservedMetadata({ ...number, labels: input.labels }), {
    signal: input.signal,
  });
  const [piped, staged] = await Promise.allSettled([piping, staging]);
  if (piped.status === 'rejected' || staged.status === 'rejected') {
    // Completed although the pipeline failed after the body's end (nothing checks after it):
    // the bytes go, the number stays a tombstone.
    if (staged.status === 'fulfilled') await ctx.storage.delete(dest).catch(() => {});
    throw piped.status === 'rejected' ? piped.reason : (staged as PromiseRejectedResult).reason;
  }
  const facts = recordOf(staged.value.size);
  const record: VersionRecord = { ...facts, ...number };
  return ctx.publisher.publish(
    name,
    input.condition,
    async () => ({
      record: facts,
      write: () => Promise.reject(new Error('an upload staged in place is never written again')),
    }),
    { reserved: { record, stored: staged.value, current } },
  );
}

/** Write-through: the accepted bytes become a cache entry under their digest. */
async function admit(
  ctx: UploadContext,
  cache: ModelCache,
  model: ModelVersion,
  stored: ObjectInfo,
  copied: string | undefined,
): Promise<void> {
  const file = copied ?? cache.tempPath();
  try {
    // Linked from the immutable history object, never from the root file other tools write.
    if (!copied) await ctx.storage.copyOut(stored.key, stored.token, file);
    // A copy the cache disk cut short (or never finished) is not the archive: leave it out.
    const { size } = await stat(file);
    if (size !== model.size) throw new Error(`the cache copy has ${size} of ${model.size} bytes`);
    await cache.admit(model.sha256, file);
  } catch (err) {
    // The upload stands; the first download fills the cache instead.
    await rm(file, { force: true });
    ctx.logger.warn({ err, model: model.name }, 'cache write-through failed');
  }
}
