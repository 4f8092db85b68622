/**
 * The memory backend's storage. Every publish checks its condition and replaces the entry in one
 * synchronous step (no await in between), which is what makes it a compare-and-swap in one
 * process; tokens come from a counter, so they never repeat under a key.
 */
import { addAbortSignal, Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { NotFoundError, PreconditionFailedError } from '../../../src/storage/errors.js';
import { copyOutByStream } from '../../../src/storage/shared/copy-out.js';
import { levelOf, objectsOf } from '../../../src/storage/shared/entries.js';
import type {
  CommitOptions,
  ListEntry,
  Metadata,
  ObjectInfo,
  PublishOptions,
  ReadOptions,
  StagedObject,
  Storage,
  WriteCondition,
} from '../../../src/storage/types.js';

interface Entry {
  bytes: Buffer;
  info: ObjectInfo;
}

/** Stores by name, shared by every backend opened on one. */
const stores = new Map<string, Map<string, Entry>>();
let tokens = 0;

class MemoryStaged implements StagedObject {
  constructor(
    readonly key: string,
    readonly size: number,
    readonly bytes: Buffer,
  ) {}
}

export function create(name: string): MemoryStorage {
  if (!stores.has(name)) stores.set(name, new Map());
  return new MemoryStorage(stores.get(name)!);
}

export class MemoryStorage implements Storage {
  readonly kind = 'memory';
  readonly capabilities = {
    listIncludesMetadata: true,
    uniqueTokens: true,
    localFiles: false,
    signedUrls: false,
    stagesInPlace: false,
  };
  /** Staged objects not yet committed or discarded. */
  readonly staged = new Set<MemoryStaged>();

  constructor(readonly objects: Map<string, Entry>) {}

  async init(): Promise<void> {}

  async ping(): Promise<void> {}

  async head(key: string): Promise<ObjectInfo> {
    return copyOf(this.#entry(key).info);
  }

  async get(key: string, options: ReadOptions = {}): Promise<{ info: ObjectInfo; body: Readable }> {
    const { bytes, info } = this.#entry(key);
    const { range, signal } = options;
    const body = Readable.from([range ? bytes.subarray(range.start, range.end + 1) : bytes], { objectMode: false });
    if (signal) addAbortSignal(signal, body);
    return { info: copyOf(info), body };
  }

  async stage(key: string, body: Readable, options: { signal?: AbortSignal } = {}): Promise<StagedObject> {
    const parts: Buffer[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        parts.push(chunk);
        callback();
      },
    });
    await pipeline(body, sink, { signal: options.signal });
    const staged = new MemoryStaged(
      key,
      parts.reduce((n, p) => n + p.length, 0),
      Buffer.concat(parts),
    );
    this.staged.add(staged);
    return staged;
  }

  async commit(
    staged: StagedObject,
    metadata: Metadata,
    condition: WriteCondition,
    options: CommitOptions = {},
  ): Promise<ObjectInfo> {
    const own = this.#own(staged);
    await options.after;
    const info = this.#publish(options.key ?? own.key, own.bytes, metadata, condition);
    this.staged.delete(own);
    return info;
  }

  async discard(staged: StagedObject): Promise<void> {
    this.staged.delete(this.#own(staged));
  }

  async copy(
    from: string,
    to: string,
    options: { sourceToken: string; metadata: Metadata; condition?: WriteCondition } & PublishOptions,
  ): Promise<ObjectInfo> {
    this.#pinned(from, options.sourceToken);
    await options.after;
    const { bytes } = this.#pinned(from, options.sourceToken);
    return this.#publish(to, bytes, options.metadata, options.condition ?? {});
  }

  async setMetadata(key: string, token: string, metadata: Metadata): Promise<ObjectInfo> {
    const entry = this.#pinned(key, token);
    entry.info = { ...entry.info, metadata: { ...metadata } };
    return copyOf(entry.info);
  }

  async delete(key: string): Promise<void> {
    this.objects.delete(key);
  }

  list(prefix: string, options: { startAfter?: string } = {}): AsyncIterable<ObjectInfo> {
    return objectsOf(this.listEntries(prefix, options));
  }

  async *listEntries(prefix: string, options: { startAfter?: string } = {}): AsyncIterable<ListEntry> {
    for (const key of levelOf(this.objects.keys(), prefix, options.startAfter)) {
      if (key.endsWith('/')) yield { folder: key };
      else {
        const entry = this.objects.get(key);
        if (entry) yield { object: copyOf(entry.info) };
      }
    }
  }

  /** Staged objects die with the process that holds them: nothing is ever left behind. */
  async sweep(): Promise<number> {
    return 0;
  }

  /** No bound on metadata. */
  checkMetadata(): void {}

  copyOut(key: string, token: string, dest: string): Promise<void> {
    return copyOutByStream(this, key, token, dest);
  }

  async close(): Promise<void> {}

  #publish(key: string, bytes: Buffer, metadata: Metadata, condition: WriteCondition): ObjectInfo {
    const current = this.objects.get(key);
    if ('ifNoneMatch' in condition && current) throw new PreconditionFailedError(key);
    if ('ifMatch' in condition && current?.info.token !== condition.ifMatch) throw new PreconditionFailedError(key);
    const info = {
      key,
      size: bytes.length,
      lastModified: new Date(),
      token: String(++tokens),
      metadata: { ...metadata },
    };
    this.objects.set(key, { bytes, info });
    return copyOf(info);
  }

  #entry(key: string): Entry {
    const entry = this.objects.get(key);
    if (!entry) throw new NotFoundError(key);
    return entry;
  }

  #pinned(key: string, token: string): Entry {
    const entry = this.#entry(key);
    if (entry.info.token !== token) throw new PreconditionFailedError(key);
    return entry;
  }

  #own(staged: StagedObject): MemoryStaged {
    if (!(staged instanceof MemoryStaged)) throw new TypeError('staged object does not belong to this backend');
    return staged;
  }
}

function copyOf(info: ObjectInfo): ObjectInfo {
  return { ...info, metadata: { ...info.metadata } };
}
