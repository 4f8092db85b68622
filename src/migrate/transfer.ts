/** migrate: copying one object, its bytes checked against its sha256 on the way. */

import { createHash } from 'node:crypto';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { NotFoundError, PreconditionFailedError } from '../errors.js';
import { keys } from '../registry/names.js';
import { metadataSha256, metadataVersion } from '../registry/records.js';
import type { ObjectInfo, Storage, WriteCondition } from '../storage/types.js';
import { conflict, decide, ownMetadata } from './plan.js';
import type { ObjectStatus, Planned } from './types.js';

export interface TransferOptions {
  dryRun: boolean;
  signal: AbortSignal | undefined;
  onBytes: (n: number) => void;
}

export async function transfer(
  source: Storage,
  destination: Storage,
  p: Planned,
  o: TransferOptions,
): Promise<{ status: ObjectStatus; bytes: number; detail?: string }> {
  let action = p.action;
  let computed: string | undefined;
  if (action === 'check') {
    // A foreign source object and a destination object of the same size: compare digests first.
    computed = await digestOf(source, p.source, o);
    action = decide(p, computed);
  }
  if (action === 'compare') {
    // A record: the same bytes, or another record of the number.
    const [a, b] = await Promise.all([
      digestOf(source, p.source, o),
      digestOf(destination, p.destination!, { ...o, onBytes: () => {} }),
    ]);
    action = a === b ? 'skip' : 'conflict';
  }
  if (action === 'conflict') throw conflict(p);
  if (action === 'skip') return { status: 'skipped', bytes: 0, detail: 'identical' };
  if (o.dryRun) return { status: 'would-copy', bytes: 0, detail: action === 'metadata' ? 'metadata only' : undefined };
  if (p.replaceable && p.destination) await keepDestinationVersion(destination, p);
  if (action === 'metadata') {
    const metadata = p.target((metadataSha256(p.source.metadata) ?? computed)!, p.source);
    await destination.setMetadata(p.key, p.destination!.token, metadata).catch(changedAtDestination);
    return { status: 'copied', bytes: 0, detail: 'metadata only' };
  }
  return copyObject(source, destination, p, o);
}

export async function copyObject(
  source: Storage,
  destination: Storage,
  p: Planned,
  o: TransferOptions,
): Promise<{ status: ObjectStatus; bytes: number; detail?: string }> {
  const { info, body } = await source.get(p.key, { signal: o.signal });
  // The bytes we read are described by `info` (the object may have changed since planning).
  const verifier = new Verifier(metadataSha256(info.metadata), info.size, o.onBytes);
  const piping = pipeline(body, verifier, { signal: o.signal });
  const staging = destination.stage(p.key, verifier, { signal: o.signal });
  const [piped, staged] = await Promise.allSettled([piping, staging]);
  if (piped.status === 'rejected' || staged.status === 'rejected') {
    if (staged.status === 'fulfilled') await destination.discard(staged.value).catch(() => {});
    throw piped.status === 'rejected' ? piped.reason : (staged as PromiseRejectedResult).reason;
  }
  try {
    if (staged.value.size !== info.size)
      throw new Error(`the destination stored ${staged.value.size} of ${info.size} bytes`);
    const metadata = ownMetadata(info)?.(verifier.sha256, info) ?? p.target(verifier.sha256, info);
    if (!p.record && metadataSha256(metadata) !== verifier.sha256) {
      const claimed = `v${metadataVersion(metadata)} says sha256 ${metadataSha256(metadata)}`;
      const actual = `its bytes hash to ${verifier.sha256}`;
      throw new Error(`digest mismatch: the source's record of ${claimed}, ${actual}; nothing was written`);
    }
    const condition: WriteCondition = p.destination ? { ifMatch: p.destination.token } : { ifNoneMatch: true };
    const committed = await destination.commit(staged.value, metadata, condition).catch(changedAtDestination);
    if (committed.size !== info.size)
      throw new Error(`the destination reports ${committed.size} bytes after the commit, the source has ${info.size}`);
    const replaced = p.destination
      ? `replaced v${metadataVersion(p.destination.metadata)}, an older version (kept in history)`
      : undefined;
    return { status: 'copied', bytes: info.size, detail: replaced };
  } finally {
    await destination.discard(staged.value).catch(() => {});
  }
}

/**
 * Archives the destination's current version (older than the source's) into the destination's
 * history before it is replaced. An entry already there must be that very version — the
 * source's history may have brought it — or the object is a conflict, left alone.
 */
export async function keepDestinationVersion(destination: Storage, p: Planned): Promise<void> {
  const d = p.destination!;
  const version = Number(metadataVersion(d.metadata));
  const key = keys.history(p.name, version);
  try {
    await destination.copy(p.key, key, {
      sourceToken: d.token,
      metadata: d.metadata,
      condition: { ifNoneMatch: true },
    });
  } catch (err) {
    if (!(err instanceof PreconditionFailedError)) throw err;
    const existing = await headOrUndefined(destination, key);
    if (!existing) changedAtDestination(err); // the current version changed since planning
    const kept = metadataSha256(existing.metadata);
    if (kept !== metadataSha256(d.metadata)) {
      throw new Error(
        `the destination's current v${version} differs from the v${version} in its history ` +
          `(sha256 ${kept?.slice(0, 12) ?? 'unknown'}…): ` +
          'two different versions with one number, so neither is replaced; move one of them away and rerun',
      );
    }
  }
}

export async function digestOf(
  storage: Storage,
  seen: ObjectInfo,
  o: Pick<TransferOptions, 'signal' | 'onBytes'>,
): Promise<string> {
  const { info, body } = await storage.get(seen.key, { signal: o.signal });
  if (info.token !== seen.token) {
    body.destroy();
    throw new Error(`${seen.key} changed while migrating: rerun`);
  }
  const verifier = new Verifier(undefined, info.size, o.onBytes);
  await pipeline(
    body,
    verifier,
    // biome-ignore lint/correctness/useYield: the end of the pipeline, a sink that only drains
    async function* (chunks: AsyncIterable<Buffer>) {
      for await (const _ of chunks); // drain
    },
    { signal: o.signal },
  );
  return verifier.sha256;
}

export function changedAtDestination(err: unknown): never {
  if (err instanceof PreconditionFailedError || err instanceof NotFoundError) {
    throw new Error('the destination object changed during the migration (is a registry writing to it?): rerun', {
      cause: err,
    });
  }
  throw err;
}

/** Passes bytes through, hashing and counting them; fails the stream at the end on a digest or size mismatch. */
export class Verifier extends Transform {
  readonly #hash = createHash('sha256');
  #size = 0;
  #sha256: string | undefined;
  constructor(
    readonly expected: string | undefined,
    readonly expectedSize: number,
    readonly onBytes: (n: number) => void,
  ) {
    super();
  }
  get sha256(): string {
    if (this.#sha256 === undefined) throw new Error('digest read before the end of the stream');
    return this.#sha256;
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null, data?: Buffer) => void): void {
    this.#hash.update(chunk);
    this.#size += chunk.length;
    this.onBytes(chunk.length);
    cb(null, chunk);
  }
  override _flush(cb: (err?: Error | null) => void): void {
    this.#sha256 = this.#hash.digest('hex');
    if (this.#size !== this.expectedSize)
      return cb(new Error(`read ${this.#size} bytes, the source object has ${this.expectedSize}`));
    if (this.expected !== undefined && this.expected !== this.#sha256) {
      return cb(
        new Error(
          `digest mismatch: the source's metadata says sha256 ${this.expected}, its bytes hash to ${this.#sha256}; nothing was written`,
        ),
      );
    }
    cb();
  }
}

export async function headOrUndefined(storage: Storage, key: string): Promise<ObjectInfo | undefined> {
  try {
    return await storage.head(key);
  } catch (err) {
    if (err instanceof NotFoundError) return undefined;
    throw err;
  }
}

export function reason(err: unknown): string {
  const e = err as Error;
  return (e?.message ?? String(err)).replace(/\s*\n\s*/g, ' ');
}

export type Limiter = <T>(fn: () => Promise<T>) => Promise<T>;

/** Runs at most `n` functions at once, in call order. */
export function limiter(n: number): Limiter {
  let active = 0;
  const waiting: (() => void)[] = [];
  return async (fn) => {
    if (active < n) active++;
    else await new Promise<void>((resolve) => waiting.push(resolve)); // the slot is handed over
    try {
      return await fn();
    } finally {
      const next = waiting.shift();
      if (next) next();
      else active--;
    }
  };
}
