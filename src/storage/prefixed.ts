/**
 * STORAGE_PREFIX (issue 17): the whole registry under one prefix of a shared bucket, container,
 * database or directory (`registry/` → `registry/m.tar.gz`, `registry/.history/m/v1.tar.gz`).
 * A Storage decorator: every key is prefixed on the way in and stripped on the way out (listed
 * and returned ObjectInfo, the keys of NotFound / PreconditionFailed errors), so the registry
 * above it sees the layout of SPEC §4 unchanged. A plain copy of the prefix (`aws s3 sync
 * s3://b/registry/ ...`) is a registry as before.
 *
 * Staged objects pass through untouched: the backend checks `instanceof` on its own class, and
 * each was staged under its prefixed key. The backends' own bookkeeping (`.uploads/`, local
 * `.meta/`) stays where the backend keeps it, outside the prefix; sweep() is the backend's.
 */
import type { Readable } from 'node:stream';
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
} from './types.js';

class PrefixedStorage implements Storage {
  constructor(
    readonly inner: Storage,
    readonly prefix: string,
  ) {}

  get kind(): string {
    return this.inner.kind;
  }

  get capabilities(): StorageCapabilities {
    return this.inner.capabilities;
  }

  #in = (key: string) => this.prefix + key;
  #out = (key: string) => (key.startsWith(this.prefix) ? key.slice(this.prefix.length) : key);
  #info = (info: ObjectInfo): ObjectInfo => ({ ...info, key: this.#out(info.key) });

  async #call<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof NotFoundError) throw new NotFoundError(this.#out(err.key), { cause: err });
      if (err instanceof PreconditionFailedError) throw new PreconditionFailedError(this.#out(err.key), { cause: err });
      throw err;
    }
  }

  init(options?: InitOptions): Promise<void> {
    return this.inner.init(options);
  }

  ping(): Promise<void> {
    return this.inner.ping();
  }

  head(key: string): Promise<ObjectInfo> {
    return this.#call(async () => this.#info(await this.inner.head(this.#in(key))));
  }

  get(key: string, options?: ReadOptions): Promise<{ info: ObjectInfo; body: Readable }> {
    return this.#call(async () => {
      const { info, body } = await this.inner.get(this.#in(key), options);
      return { info: this.#info(info), body };
    });
  }

  stage(key: string, body: Readable, options?: { signal?: AbortSignal }): Promise<StagedObject> {
    return this.#call(() => this.inner.stage(this.#in(key), body, options));
  }

  /** The backend's, under the prefixed key. */
  get stageInPlace(): Storage['stageInPlace'] {
    const inner = this.inner;
    return (
      inner.stageInPlace &&
      ((key: string, body: Readable, metadata: Metadata, options?: InPlaceOptions) =>
        this.#call(async () => this.#info(await inner.stageInPlace!(this.#in(key), body, metadata, options))))
    );
  }

  commit(
    staged: StagedObject,
    metadata: Metadata,
    condition: WriteCondition,
    options: CommitOptions = {},
  ): Promise<ObjectInfo> {
    const o = options.key === undefined ? options : { ...options, key: this.#in(options.key) };
    return this.#call(async () => this.#info(await this.inner.commit(staged, metadata, condition, o)));
  }

  discard(staged: StagedObject): Promise<void> {
    return this.inner.discard(staged);
  }

  copy(
    from: string,
    to: string,
    options: { sourceToken: string; metadata: Metadata; condition?: WriteCondition } & PublishOptions,
  ): Promise<ObjectInfo> {
    return this.#call(async () => this.#info(await this.inner.copy(this.#in(from), this.#in(to), options)));
  }

  setMetadata(key: string, token: string, metadata: Metadata): Promise<ObjectInfo> {
    return this.#call(async () => this.#info(await this.inner.setMetadata(this.#in(key), token, metadata)));
  }

  delete(key: string): Promise<void> {
    return this.#call(() => this.inner.delete(this.#in(key)));
  }

  get checkMetadata(): Storage['checkMetadata'] {
    return this.inner.checkMetadata?.bind(this.inner);
  }

  /** The backend's, under the prefixed key (a URL of the prefixed object). */
  get signedUrl(): Storage['signedUrl'] {
    const inner = this.inner;
    return (
      inner.signedUrl &&
      ((key: string, ttlMs: number, response?: SignedResponse) => inner.signedUrl!(this.#in(key), ttlMs, response))
    );
  }

  get copyOut(): Storage['copyOut'] {
    const inner = this.inner;
    return inner.copyOut && ((key, token, dest) => this.#call(() => inner.copyOut!(this.#in(key), token, dest)));
  }

  list(prefix: string, options: { startAfter?: string } = {}): AsyncIterable<ObjectInfo> {
    const inner = this.inner.list(
      this.#in(prefix),
      options.startAfter === undefined ? {} : { startAfter: this.#in(options.startAfter) },
    );
    const info = this.#info;
    return (async function* prefixedList() {
      for await (const item of inner) yield info(item);
    })();
  }

  listEntries(prefix: string, options: ListEntriesOptions = {}): AsyncIterable<ListEntry> {
    const startAfter = options.startAfter === undefined ? undefined : this.#in(options.startAfter);
    const inner = this.inner.listEntries(this.#in(prefix), { startAfter, expect: options.expect });
    const info = this.#info;
    const out = this.#out;
    return (async function* prefixedEntries() {
      for await (const e of inner) yield e.object ? { object: info(e.object) } : { folder: out(e.folder!) };
    })();
  }

  sweep(): Promise<number> {
    return this.inner.sweep();
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

/** `storage` with every key under `prefix` (which ends in '/'); `storage` itself for ''. */
export function withPrefix(storage: Storage, prefix: string): Storage {
  return prefix === '' ? storage : new PrefixedStorage(storage, prefix);
}
