/**
 * The local cache in front of storage: archives by digest (blob-store.ts), their extracted trees
 * (trees.ts), and for each model name the last version seen (refs/), which lets cached versions
 * be served while storage is unreachable (stale-if-error).
 * Nothing here is needed for correctness: it is keyed by content digest, so replicas can share
 * storage freely and a wiped cache only costs refetches.
 *
 * This is the cache's one door: open an archive (or a range of it), use one file of its tree,
 * admit a file written elsewhere. Nothing outside src/cache reaches past it, and the cache knows
 * nothing of the registry (its archive rules are handed in: ArchiveRules).
 */
import { randomUUID } from 'node:crypto';
import { open as openCallback } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { promisify } from 'node:util';
import type { Logger } from '../util/logger.js';
import { Pending } from '../util/pending.js';
import { BlobStore } from './blob-store.js';
import { type ArchiveRules, type ManifestEntry, resolveFile, type Tree, TreeStore } from './trees.js';
import type { CacheObserver, Fetch, Range } from './types.js';

export { CacheDiskError } from './errors.js';
export type { ArchiveRules, ManifestEntry, Tree } from './trees.js';
export type { CacheObserver, Fetch, Range } from './types.js';

export interface ModelCacheOptions {
  dir: string;
  maxBytes: number;
  ttlMs: number;
  /** The rules an archive must pass before its tree is extracted. */
  rules: ArchiveRules;
  logger: Logger;
  observer?: CacheObserver;
  /** Bound of the in-memory copies of small archives (CACHE_MEMORY_BYTES); 0 or absent = none. */
  memoryBytes?: number;
}

/** An archive as the cache knows it: by the digest and size of its bytes. */
export interface ArchiveRef {
  sha256: string;
  size: number;
}

/** What the cache remembers per name (the registry's version, kept as given). */
export interface Remembered {
  name: string;
  sha256: string;
}

const openFd = promisify(openCallback);

export class ModelCache {
  readonly #blobs: BlobStore;
  readonly #trees: TreeStore;
  readonly #refs: string;
  readonly #ttlMs: number;
  #sweeper: NodeJS.Timeout | undefined;
  /** Records being written (callers need not wait for them); close() does. */
  readonly #writes = new Pending();

  constructor(options: ModelCacheOptions) {
    this.#trees = new TreeStore(options.dir, options.rules);
    this.#blobs = new BlobStore({ ...options, onEvict: (digest) => this.#trees.remove(digest) });
    this.#refs = path.resolve(options.dir, 'refs');
    this.#ttlMs = options.ttlMs;
  }

  async init(): Promise<void> {
    await fs.mkdir(this.#refs, { recursive: true });
    // Records a crash interrupted between write and rename.
    for (const name of await fs.readdir(this.#refs)) {
      if (name.endsWith('.tmp')) await fs.rm(path.join(this.#refs, name), { force: true });
    }
    const trees = await this.#trees.init();
    await this.#blobs.init();
    for (const [digest, bytes] of trees) {
      if (this.#blobs.has(digest)) this.#blobs.addExtra(digest, bytes);
      else await this.#trees.remove(digest);
    }
    await this.#blobs.evict();
    // Age-based eviction also runs on a timer, so idle entries expire without traffic.
    const every = Math.min(Math.max(this.#ttlMs / 10, 1000), 3_600_000);
    this.#sweeper = setInterval(() => void this.#blobs.evict().catch(() => {}), every);
    this.#sweeper.unref();
  }

  /** Shutdown: stops the sweeps and resolves once nothing writes to the cache directory. */
  async close(): Promise<void> {
    clearInterval(this.#sweeper);
    await Promise.all([this.#blobs.close(), this.#writes.settled()]);
  }

  /**
   * The archive (or `range` of it): from the cache (a small one as a Buffer from memory, else a
   * file stream), or from `fetch` on a miss while filling the cache; `hit` says which. Throws
   * CacheDiskError when the cache disk cannot take it (the caller serves from storage).
   */
  open(
    archive: ArchiveRef,
    fetch: Fetch,
    range?: Range,
    signal?: AbortSignal,
  ): Promise<{ body: Readable | Buffer; hit: boolean }> {
    return this.#blobs.open(archive.sha256, archive.size, fetch, range, signal);
  }

  /** True when the archive with this digest is in the cache. */
  has(sha256: string): boolean {
    return this.#blobs.has(sha256);
  }

  /** A temp file path inside the cache, for a writer that admit()s it once written. */
  tempPath(): string {
    return this.#blobs.tempPath();
  }

  /** Admits a file written elsewhere (an accepted upload) whose digest is already known. */
  admit(sha256: string, file: string): Promise<void> {
    return this.#blobs.admit(sha256, file);
  }

  /**
   * Runs `fn` on the extracted tree of the archive (files and manifest), extracting it once. The
   * archive and its tree stay in the cache until `fn` settles: open the files `fn` needs in it
   * (an open file outlives a later eviction).
   */
  withTree<T>(archive: ArchiveRef, fetch: Fetch, fn: (tree: Tree) => Promise<T>): Promise<T> {
    const { sha256, size } = archive;
    return this.#blobs.withBlob(sha256, size, fetch, async (blob) => {
      const tree = await this.#trees.get(sha256, blob);
      if (tree.created) {
        this.#blobs.addExtra(sha256, tree.bytes);
        await this.#blobs.evict(); // the tree counts against the bound; this entry is held
      }
      return fn(tree);
    });
  }

  /**
   * One regular file of the archive's tree, opened (the caller closes `fd`, or a stream over it
   * does): opened while the tree is held, so an eviction cannot take it from under the reader.
   * Undefined when the tree has no such file (symlinks are followed, never out of the tree).
   */
  openFile(
    archive: ArchiveRef,
    fetch: Fetch,
    requested: string,
  ): Promise<{ fd: number; entry: ManifestEntry } | undefined> {
    return this.withTree(archive, fetch, async (tree) => {
      const found = await resolveFile(tree, requested);
      return found && { entry: found.entry, fd: await openFd(found.file, 'r') };
    });
  }

  /** Remembers the current version of a model, for stale-if-error. */
  async remember(version: Remembered): Promise<void> {
    const file = path.join(this.#refs, `${encodeURIComponent(version.name)}.json`);
    const tmp = `${file}.${randomUUID()}.tmp`;
    await this.#writes.track(fs.writeFile(tmp, JSON.stringify(version)).then(() => fs.rename(tmp, file)));
  }

  async forget(name: string): Promise<void> {
    await fs.rm(path.join(this.#refs, `${encodeURIComponent(name)}.json`), { force: true });
  }

  /** The last version of `name` remembered (as it was given), if its archive is still cached. */
  async recall<T extends Remembered>(name: string): Promise<T | undefined> {
    try {
      const version = JSON.parse(
        await fs.readFile(path.join(this.#refs, `${encodeURIComponent(name)}.json`), 'utf8'),
      ) as T;
      return this.#blobs.has(version.sha256) ? version : undefined;
    } catch {
      return undefined;
    }
  }
}
