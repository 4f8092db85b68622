/**
 * The byte streams of the registry: storage reads pinned to the version described, reads checked
 * against the version's digest on the way to a client, and the counter an upload's stored bytes
 * pass through.
 */
import { createHash, type Hash } from 'node:crypto';
import { type FileHandle, open } from 'node:fs/promises';
import { pipeline as pipe, type Readable, Transform } from 'node:stream';
import { PreconditionFailedError } from '../errors.js';
import type { Storage } from '../storage/types.js';
import type { ByteRange, ModelVersion } from './types.js';

/** Opens the bytes of `model`; PreconditionFailedError if the object is no longer that version. */
export async function openPinned(
  storage: Storage,
  model: ModelVersion,
  range?: ByteRange,
  signal?: AbortSignal,
): Promise<Readable> {
  const { info, body } = await storage.get(model.storageKey, { range, signal });
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
export async function openVerified(
  storage: Storage,
  model: ModelVersion,
  range?: ByteRange,
  signal?: AbortSignal,
): Promise<Readable> {
  const body = await openPinned(storage, model, range, signal);
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
      if (actual !== model.sha256) {
        const what = `${model.name} v${model.version}`;
        const detail = `sha256 ${actual}, expected ${model.sha256}`;
        return callback(new Error(`storage sent bytes that do not match ${what} (${detail})`));
      }
      callback(null, held);
    },
  });
  pipe(body, verified, () => {}); // an error on either side destroys both; the reader sees it
  return verified;
}

/**
 * Counts and hashes the bytes that go to storage (they differ from the request's for plain
 * tar), and optionally writes a copy of them to `copyTo` (cache write-through).
 */
export class DigestCounter extends Transform {
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
    this.#copy
      .then((h) => h.write(chunk))
      .then(
        () => cb(null, chunk),
        () => {
          this.#copyFailed = true; // the write-through finds the copy short and leaves it out
          cb(null, chunk);
        },
      );
  }
  override _flush(cb: (err?: Error | null) => void): void {
    if (!this.#copy) return cb();
    this.#copy
      .then((h) => h.sync().finally(() => h.close()))
      .then(
        () => cb(),
        () => cb(), // as above: the upload stands without its cache copy
      );
  }
  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    if (!this.#copy) return cb(err);
    this.#copy
      .then((h) => h.close())
      .catch(() => {})
      .finally(() => cb(err));
  }
}
