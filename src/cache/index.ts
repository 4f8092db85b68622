/**
 * The local cache in front of storage (SPEC §6): archives by digest (blob-store.ts), their
 * extracted trees (trees.ts), and for each model name the last version seen (refs/), which lets
 * cached versions be served while storage is unreachable (stale-if-error).
 * Nothing here is needed for correctness: it is keyed by content digest, so replicas can share
 * storage freely and a wiped cache only costs refetches.
 */
import { randomUUID } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { ArchiveLimits } from '../registry/archive.js';
import type { ModelVersion } from '../registry/service.js';
import type { Logger } from '../util/logger.js';
import { Pending } from '../util/pending.js';
import { BlobStore, type CacheObserver } from './blob-store.js';
import { TreeStore } from './trees.js';

export interface ModelCacheOptions {
  dir: string;
  maxBytes: number;
  ttlMs: number;
  limits: ArchiveLimits;
  logger: Logger;
  observer?: CacheObserver;
  /** Bound of the in-memory copies of small archives (CACHE_MEMORY_BYTES); 0 or absent = none. */
  memoryBytes?: number;
}

export class ModelCache {
  readonly blobs: BlobStore;
  readonly trees: TreeStore;
  readonly #refs: string;
  #sweeper: NodeJS.Timeout | undefined;
  /** Records being written (callers need not wait for them); close() does. */
  readonly #writes = new Pending();

  constructor(options: ModelCacheOptions) {
    this.trees = new TreeStore(options.dir, options.limits);
    this.blobs = new BlobStore({ ...options, onEvict: (digest) => this.trees.remove(digest) });
    this.#refs = path.resolve(options.dir, 'refs');
    this.#ttlMs = options.ttlMs;
  }
  readonly #ttlMs: number;

  async init(): Promise<void> {
    await fs.mkdir(this.#refs, { recursive: true });
    // Records a crash interrupted between write and rename.
    for (const name of await fs.readdir(this.#refs)) {
      if (name.endsWith('.tmp')) await fs.rm(path.join(this.#refs, name), { force: true });
    }
    const trees = await this.trees.init();
    await this.blobs.init();
    for (const [digest, bytes] of trees) {
      if (this.blobs.has(digest)) this.blobs.addExtra(digest, bytes);
      else await this.trees.remove(digest);
    }
    await this.blobs.evict();
    // Age-based eviction also runs on a timer, so idle entries expire without traffic.
    this.#sweeper = setInterval(() => void this.blobs.evict().catch(() => {}), Math.min(Math.max(this.#ttlMs / 10, 1000), 3_600_000));
    this.#sweeper.unref();
  }

  /** Shutdown: stops the sweeps and resolves once nothing writes to the cache directory. */
  async close(): Promise<void> {
    clearInterval(this.#sweeper);
    await Promise.all([this.blobs.close(), this.#writes.settled()]);
  }

  /** Remembers the current version of a model, for stale-if-error. */
  async remember(model: ModelVersion): Promise<void> {
    const file = path.join(this.#refs, `${encodeURIComponent(model.name)}.json`);
    const tmp = `${file}.${randomUUID()}.tmp`;
    await this.#writes.track(fs.writeFile(tmp, JSON.stringify(model)).then(() => fs.rename(tmp, file)));
  }

  async forget(name: string): Promise<void> {
    await fs.rm(path.join(this.#refs, `${encodeURIComponent(name)}.json`), { force: true });
  }

  /** The last version of `name` seen, if its archive is still cached. */
  async recall(name: string): Promise<ModelVersion | undefined> {
    try {
      const model = JSON.parse(await fs.readFile(path.join(this.#refs, `${encodeURIComponent(name)}.json`), 'utf8')) as ModelVersion;
      return this.blobs.has(model.sha256) ? model : undefined;
    } catch {
      return undefined;
    }
  }
}
