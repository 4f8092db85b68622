/**
 * A Storage decorator that counts and times every backend call into
 * model_registry_storage_requests_total{operation,outcome} and
 * model_registry_storage_request_duration_seconds{operation} (see src/metrics.ts).
 *
 * Storage method → `operation` label (the metric counts backend calls, not API requests, so one
 * model upload is two `put`s for its bytes: its stage and its commit — on S3, GCS and Azure one, its
 * stageInPlace — besides those of its record and the copy onto the current key):
 *
 *   ping        → head     (a reachability probe; /readyz)
 *   head        → head
 *   get         → get      counted once the stream is open (or opening failed); the duration is
 *                          time-to-open, not the body transfer, which the caller paces
 *   stage       → put      (writing the bytes)
 *   stageInPlace → put     (writing the bytes straight to their key: uploads on S3, GCS, Azure; no commit)
 *   commit      → put      (publishing them under the key; a commit or copy given `after` is
 *                          timed from the call, so the wait for it is included)
 *   setMetadata → put
 *   copy        → copy
 *   copyOut     → copy     (a hard link into the cache, or a download elsewhere)
 *   delete      → delete
 *   discard     → delete
 *   list        → list     one count per list() iteration that was started, recorded when it
 *                          ends (exhausted, failed, or stopped early by the consumer); the duration
 *                          is the time spent waiting on the backend across all its pages, not the
 *                          consumer's time between items
 *   signedUrl              not counted: signing is a local computation (see src/metrics.ts for
 *                          the count of redirects)
 *   init, sweep, close     not counted: lifecycle, not requests (sweep's own work is internal to
 *                          the backend); checkMetadata is a local computation
 *
 * `outcome`: ok; NotFoundError → not_found; PreconditionFailedError → precondition_failed;
 * anything else → error (including a stage() whose body the caller vetoed by destroying it).
 *
 * Everything passes through untouched: staged objects (backends check `instanceof` on their own
 * StagedObject class), ObjectInfo values, streams, errors; kind and capabilities are the
 * backend's. list() stays lazy: nothing is asked of the backend before iteration pulls.
 */
import type { Readable } from 'node:stream';
import type { Metrics, StorageOperation, StorageOutcome } from '../../metrics.js';
import { NotFoundError, PreconditionFailedError } from '../errors.js';
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

export function outcomeOf(err: unknown): StorageOutcome {
  if (err instanceof NotFoundError) return 'not_found';
  if (err instanceof PreconditionFailedError) return 'precondition_failed';
  return 'error';
}

const seconds = (start: bigint): number => Number(process.hrtime.bigint() - start) / 1e9;

class InstrumentedStorage implements Storage {
  constructor(
    /** The wrapped backend. */
    readonly inner: Storage,
    readonly metrics: Metrics,
  ) {}

  get kind(): string {
    return this.inner.kind;
  }

  get capabilities(): StorageCapabilities {
    return this.inner.capabilities;
  }

  /** The backend's, where it has one (capabilities.signedUrls); signing is local, not a storage call. */
  get signedUrl(): Storage['signedUrl'] {
    const inner = this.inner;
    return (
      inner.signedUrl &&
      ((key: string, ttlMs: number, response?: SignedResponse) => inner.signedUrl!(key, ttlMs, response))
    );
  }

  #record(operation: StorageOperation, outcome: StorageOutcome, duration: number): void {
    this.metrics.storageRequests.inc({ operation, outcome });
    this.metrics.storageDuration.observe({ operation }, duration);
  }

  async #timed<T>(operation: StorageOperation, call: () => Promise<T>): Promise<T> {
    const start = process.hrtime.bigint();
    try {
      const result = await call();
      this.#record(operation, 'ok', seconds(start));
      return result;
    } catch (err) {
      this.#record(operation, outcomeOf(err), seconds(start));
      throw err;
    }
  }

  init(options?: InitOptions): Promise<void> {
    return this.inner.init(options);
  }

  ping(): Promise<void> {
    return this.#timed('head', () => this.inner.ping());
  }

  head(key: string): Promise<ObjectInfo> {
    return this.#timed('head', () => this.inner.head(key));
  }

  get(key: string, options?: ReadOptions): Promise<{ info: ObjectInfo; body: Readable }> {
    return this.#timed('get', () => this.inner.get(key, options));
  }

  stage(key: string, body: Readable, options?: { signal?: AbortSignal }): Promise<StagedObject> {
    return this.#timed('put', () => this.inner.stage(key, body, options));
  }

  /** The backend's, where it has one (capabilities.stagesInPlace). */
  get stageInPlace(): Storage['stageInPlace'] {
    const inner = this.inner;
    return (
      inner.stageInPlace &&
      ((key: string, body: Readable, metadata: Metadata, options?: InPlaceOptions) =>
        this.#timed('put', () => inner.stageInPlace!(key, body, metadata, options)))
    );
  }

  commit(
    staged: StagedObject,
    metadata: Metadata,
    condition: WriteCondition,
    options?: CommitOptions,
  ): Promise<ObjectInfo> {
    return this.#timed('put', () => this.inner.commit(staged, metadata, condition, options));
  }

  discard(staged: StagedObject): Promise<void> {
    return this.#timed('delete', () => this.inner.discard(staged));
  }

  copy(
    from: string,
    to: string,
    options: { sourceToken: string; metadata: Metadata; condition?: WriteCondition } & PublishOptions,
  ): Promise<ObjectInfo> {
    return this.#timed('copy', () => this.inner.copy(from, to, options));
  }

  checkMetadata(metadata: Metadata): void {
    this.inner.checkMetadata(metadata);
  }

  copyOut(key: string, token: string, dest: string): Promise<void> {
    return this.#timed('copy', () => this.inner.copyOut(key, token, dest));
  }

  setMetadata(key: string, token: string, metadata: Metadata): Promise<ObjectInfo> {
    return this.#timed('put', () => this.inner.setMetadata(key, token, metadata));
  }

  delete(key: string): Promise<void> {
    return this.#timed('delete', () => this.inner.delete(key));
  }

  list(prefix: string, options?: { startAfter?: string }): AsyncIterable<ObjectInfo> {
    return this.#timedListing(() => this.inner.list(prefix, options));
  }

  listEntries(prefix: string, options?: ListEntriesOptions): AsyncIterable<ListEntry> {
    return this.#timedListing(() => this.inner.listEntries(prefix, options));
  }

  /** A listing timed as one 'list' operation: the time spent waiting for its items. */
  #timedListing<T>(open: () => AsyncIterable<T>): AsyncIterable<T> {
    const record = (outcome: StorageOutcome, duration: number) => this.#record('list', outcome, duration);
    // An async generator body runs only when the consumer first pulls, so this stays lazy, and
    // a consumer that stops early (break) resumes it at the yield, running `finally`.
    return (async function* instrumentedList(): AsyncGenerator<T, void, undefined> {
      const iterator = open()[Symbol.asyncIterator]();
      let waited = 0;
      let outcome: StorageOutcome = 'ok';
      let finished = false; // the backend's iterator is done (exhausted or failed)
      try {
        for (;;) {
          const start = process.hrtime.bigint();
          let next: IteratorResult<T>;
          try {
            next = await iterator.next();
          } catch (err) {
            finished = true;
            throw err;
          } finally {
            waited += seconds(start);
          }
          if (next.done) {
            finished = true;
            return;
          }
          yield next.value;
        }
      } catch (err) {
        outcome = outcomeOf(err);
        throw err;
      } finally {
        // Stopped early: let the backend release what it holds, as for-await would.
        const start = process.hrtime.bigint();
        try {
          if (!finished) await iterator.return?.();
        } catch (err) {
          outcome = outcomeOf(err);
          // biome-ignore lint/correctness/noUnsafeFinally: a failing release is this call's outcome
          throw err;
        } finally {
          if (!finished) waited += seconds(start);
          record(outcome, waited);
        }
      }
    })();
  }

  sweep(): Promise<number> {
    return this.inner.sweep();
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

/** Wraps `storage` so every call is counted and timed in `metrics`. */
export function instrument(storage: Storage, metrics: Metrics): Storage {
  return new InstrumentedStorage(storage, metrics);
}
