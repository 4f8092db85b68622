/**
 * A Storage decorator that keeps a hung storage (one that accepts connections and stays silent)
 * from costing every request STORAGE_TIMEOUT, or a multiple of it:
 *
 *  - Quick calls (ping, head, get until its body opens, delete, discard, each page of list)
 *    answer within the timeout whatever the SDK's retries do; a late answer is dropped (a late
 *    body destroyed). Long calls (stage, stageInPlace, commit, copy, copyOut, setMetadata) move bytes for as
 *    long as they take; the backends' own idle timeouts bound their silence.
 *  - A call that timed out marks the storage down. From then on every call fails at once with
 *    StorageUnavailableError — so a read of a cached model is served stale at once, an uncached
 *    one and a write get their 503 at once, and /readyz says 503 at once — while one probe at a
 *    time pings the storage in the background. The first answer (a probe's, or of a call that
 *    was in flight) marks it up again.
 *
 * Errors that come quickly (a refused connection, a 500) mark nothing: the next call tries again.
 */
import type { Readable } from 'node:stream';
import type { Logger } from '../../util/logger.js';
import { StorageUnavailableError } from '../errors.js';
import type {
  CommitOptions,
  InitOptions,
  InPlaceOptions,
  ListEntriesOptions,
  ListEntry,
  Metadata,
  ObjectInfo,
  PublishOptions,
  ReadOptions,
  SignedResponse,
  StagedObject,
  Storage,
  StorageCapabilities,
  WriteCondition,
} from '../types.js';
import { isTimeout } from './network.js';

export interface OutageOptions {
  /** STORAGE_TIMEOUT: how long a quick call may wait for an answer. */
  timeoutMs: number;
  /** How often a storage that is down is probed (after the previous probe ended). */
  probeIntervalMs?: number;
  logger?: Pick<Logger, 'warn' | 'info'>;
}

/** `promise`, or a StorageUnavailableError after `ms`; a value that comes later goes to `drop`. */
function deadline<T>(kind: string, promise: Promise<T>, ms: number, drop?: (late: T) => void): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  let late = false;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      late = true;
      const cause = Object.assign(new Error(`no answer within ${ms} ms`), { code: 'ETIMEDOUT' });
      reject(new StorageUnavailableError(kind, `no answer within ${ms} ms`, { cause }));
    }, ms);
  });
  promise.then(
    (value) => {
      if (late) drop?.(value);
    },
    () => {}, // a failure after the deadline has nobody to tell
  );
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
}

export class OutageGuard implements Storage {
  readonly #timeout: number;
  readonly #interval: number;
  readonly #log: OutageOptions['logger'];
  #down: { since: Date; reason: string } | undefined;
  #probe: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(
    readonly inner: Storage,
    options: OutageOptions,
  ) {
    this.#timeout = options.timeoutMs;
    this.#interval = options.probeIntervalMs ?? Math.min(1000, options.timeoutMs);
    this.#log = options.logger;
  }

  get kind(): string {
    return this.inner.kind;
  }

  get capabilities(): StorageCapabilities {
    return this.inner.capabilities;
  }

  /** Since when the storage is known to be down (a call timed out, nothing answered since). */
  get downSince(): Date | undefined {
    return this.#down?.since;
  }

  #refuse(): void {
    if (!this.#down) return;
    const { since, reason } = this.#down;
    const detail = `${reason}; not answering since ${since.toISOString()}, rechecked in the background`;
    throw new StorageUnavailableError(this.kind, detail);
  }

  #markDown(err: unknown): void {
    if (this.#down || this.#closed) return;
    const reason = err instanceof StorageUnavailableError ? err.detail : 'a request timed out';
    this.#down = { since: new Date(), reason };
    this.#log?.warn(
      { err, storage: this.kind },
      'storage not answering: cached models are served stale, other requests fail at once until it answers',
    );
    this.#scheduleProbe();
  }

  #markUp(): void {
    if (!this.#down) return;
    const downMs = Date.now() - this.#down.since.getTime();
    this.#down = undefined;
    clearTimeout(this.#probe);
    this.#probe = undefined;
    this.#log?.info({ storage: this.kind, downMs }, 'storage answering again');
  }

  #scheduleProbe(): void {
    if (this.#probe || this.#closed) return;
    this.#probe = setTimeout(() => {
      deadline(this.kind, this.inner.ping(), this.#timeout).then(
        () => this.#markUp(),
        () => {
          this.#probe = undefined;
          if (this.#down) this.#scheduleProbe();
        },
      );
    }, this.#interval);
    this.#probe.unref();
  }

  /** Runs a call unless the storage is down; a timeout marks it down, an answer up. */
  async #call<T>(run: () => Promise<T>, quick?: { drop?: (late: T) => void }): Promise<T> {
    this.#refuse();
    try {
      const result = await (quick ? deadline(this.kind, run(), this.#timeout, quick.drop) : run());
      this.#markUp();
      return result;
    } catch (err) {
      if (isTimeout(err)) this.#markDown(err);
      throw err;
    }
  }

  init(options?: InitOptions): Promise<void> {
    return this.inner.init(options);
  }

  ping(): Promise<void> {
    return this.#call(() => this.inner.ping(), {});
  }

  head(key: string): Promise<ObjectInfo> {
    return this.#call(() => this.inner.head(key), {});
  }

  get(key: string, options?: ReadOptions): Promise<{ info: ObjectInfo; body: Readable }> {
    return this.#call(() => this.inner.get(key, options), { drop: (late) => late.body.destroy() });
  }

  stage(key: string, body: Readable, options?: { signal?: AbortSignal }): Promise<StagedObject> {
    try {
      this.#refuse();
    } catch (err) {
      // As a backend whose write failed: the body goes too, or its writer would wait on it forever.
      body.destroy(err as Error);
      return Promise.reject(err);
    }
    return this.#call(() => this.inner.stage(key, body, options));
  }

  /** The backend's, where it has one (capabilities.stagesInPlace): a long call, as stage(). */
  get stageInPlace(): Storage['stageInPlace'] {
    const inner = this.inner;
    if (!inner.stageInPlace) return undefined;
    return (key: string, body: Readable, metadata: Metadata, options?: InPlaceOptions) => {
      try {
        this.#refuse();
      } catch (err) {
        body.destroy(err as Error); // as in stage()
        return Promise.reject(err);
      }
      return this.#call(() => inner.stageInPlace!(key, body, metadata, options));
    };
  }

  commit(
    staged: StagedObject,
    metadata: Metadata,
    condition: WriteCondition,
    options?: CommitOptions,
  ): Promise<ObjectInfo> {
    return this.#call(() => this.inner.commit(staged, metadata, condition, options));
  }

  discard(staged: StagedObject): Promise<void> {
    return this.#call(() => this.inner.discard(staged), {});
  }

  copy(
    from: string,
    to: string,
    options: { sourceToken: string; metadata: Metadata; condition?: WriteCondition } & PublishOptions,
  ): Promise<ObjectInfo> {
    return this.#call(() => this.inner.copy(from, to, options));
  }

  checkMetadata(metadata: Metadata): void {
    this.inner.checkMetadata(metadata);
  }

  copyOut(key: string, token: string, dest: string): Promise<void> {
    return this.#call(() => this.inner.copyOut(key, token, dest));
  }

  setMetadata(key: string, token: string, metadata: Metadata): Promise<ObjectInfo> {
    return this.#call(() => this.inner.setMetadata(key, token, metadata));
  }

  delete(key: string): Promise<void> {
    return this.#call(() => this.inner.delete(key), {});
  }

  list(prefix: string, options?: { startAfter?: string }): AsyncIterable<ObjectInfo> {
    return this.#guardedListing(() => this.inner.list(prefix, options));
  }

  listEntries(prefix: string, options?: ListEntriesOptions): AsyncIterable<ListEntry> {
    return this.#guardedListing(() => this.inner.listEntries(prefix, options));
  }

  /** The backend's, where it has one: signing is local, not a storage call (and a stale read never redirects). */
  get signedUrl(): Storage['signedUrl'] {
    const inner = this.inner;
    return (
      inner.signedUrl &&
      ((key: string, ttlMs: number, response?: SignedResponse) => inner.signedUrl!(key, ttlMs, response))
    );
  }

  /** A listing whose every page is one quick call: a page that hangs marks the storage down. */
  #guardedListing<T>(open: () => AsyncIterable<T>): AsyncIterable<T> {
    const call = <R>(run: () => Promise<R>) => this.#call(run, {});
    return (async function* guardedListing(): AsyncGenerator<T, void, undefined> {
      const iterator = open()[Symbol.asyncIterator]();
      let pending = false; // a page still on its way after its deadline: return() would wait for it
      let finished = false;
      try {
        for (;;) {
          const item = await call(() => {
            const next = iterator.next();
            pending = true;
            const settled = () => {
              pending = false;
            };
            next.then(settled, settled);
            return next;
          });
          if (item.done) {
            finished = true;
            return;
          }
          yield item.value;
        }
      } catch (err) {
        finished = !pending;
        throw err;
      } finally {
        if (!finished) {
          if (pending) void Promise.resolve(iterator.return?.()).catch(() => {});
          else await iterator.return?.();
        }
      }
    })();
  }

  sweep(): Promise<number> {
    return this.#call(() => this.inner.sweep());
  }

  /** Stops probing (the app's shutdown, also when it did not create the storage). */
  stop(): void {
    this.#closed = true;
    clearTimeout(this.#probe);
  }

  close(): Promise<void> {
    this.stop();
    return this.inner.close();
  }
}

/** Wraps `storage` so that a storage that stops answering costs one timeout, not one per request. */
export function guardOutages(storage: Storage, options: OutageOptions): OutageGuard {
  return new OutageGuard(storage, options);
}
