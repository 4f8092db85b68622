/**
 * The content-addressed half of the local cache: archives stored under their SHA-256 in
 * CACHE_DIR/blobs (disk-index.ts), filled from storage at most once per digest at a time.
 *
 *   tmp/                    fills in progress (written, fsynced, hashed, then renamed in)
 *
 * A fill (fill.ts) streams to every waiting reader as bytes reach the disk, so the first client
 * of a cold model does not wait for the whole download, and fifty concurrent clients cost one
 * storage read. A file is renamed into blobs/ only after its digest matched, so a crash mid-fill
 * leaves nothing that is ever served. Eviction is least-recently-used by bytes plus an age
 * limit, and skips entries being read. Small archives are also answered from memory
 * (memory-tier.ts), hashed again as they are loaded.
 */
import { createHash, randomUUID } from 'node:crypto';
import { closeSync, createReadStream, fstat, open as openCallback } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { promisify } from 'node:util';
import type { Logger } from '../util/logger.js';
import { Pending } from '../util/pending.js';
import { SingleFlight } from '../util/single-flight.js';
import { DiskIndex, stampOf } from './disk-index.js';
import { CacheDiskError } from './errors.js';
import { Fill } from './fill.js';
import { MemoryTier } from './memory-tier.js';
import type { CacheObserver, Entry, Fetch, Range } from './types.js';

export interface BlobStoreOptions {
  dir: string;
  maxBytes: number;
  ttlMs: number;
  logger: Logger;
  observer?: CacheObserver;
  /** Extra bytes an entry holds beside its blob (its extracted tree), removed with it. */
  onEvict?: (digest: string) => Promise<void>;
  /** Bound of the in-memory copies of small archives; 0 = none. */
  memoryBytes?: number;
  /** Bytes free for the cache on its disk (tests); statfs of the directory by default. */
  freeBytes?: () => Promise<number>;
}

/** Room left free on the cache disk beside a new fill. */
const DISK_SLACK_BYTES = 16 * 1024 * 1024;

/** Read size when serving a cached file from disk (memory per download in flight). */
const FILE_READ_BYTES = 2 * 1024 * 1024;
/**
 * A range starting further than this past what a fill has written is read from storage at once
 * rather than after the fill got there (resuming a large download on a replica without it: at
 * 200 MB/s, 15 GB in is over a minute without a byte, past many clients' and proxies' timeouts).
 */
const FOLLOW_AHEAD_BYTES = 64 * 1024 * 1024;
const openFd = promisify(openCallback);
const fstatFd = promisify(fstat);
const HEX = /^[0-9a-f]{64}$/;

export class BlobStore {
  readonly #dir: string;
  readonly #opts: BlobStoreOptions;
  readonly #index: DiskIndex;
  readonly #memory: MemoryTier;
  readonly #fills = new Map<string, Fill>();
  /** Fills about to start (making room on the disk), by digest. */
  readonly #starting = new SingleFlight<string, Fill>();
  /** Fills running to their end (download, rename, stamp, eviction); close() waits for them. */
  readonly #running = new Pending();
  #closed = false;

  constructor(options: BlobStoreOptions) {
    this.#opts = options;
    this.#dir = path.resolve(options.dir);
    this.#index = new DiskIndex(this.#dir, options.logger, options.observer);
    this.#memory = new MemoryTier(options.memoryBytes ?? 0, options.observer);
  }

  get totalBytes(): number {
    return this.#index.total;
  }

  blobPath(digest: string): string {
    return this.#index.blobPath(digest);
  }

  /** Rebuilds the index from disk (a readdir and a stat per entry) and clears old temp files. */
  async init(): Promise<void> {
    await fs.rm(path.join(this.#dir, 'tmp'), { recursive: true, force: true });
    await fs.mkdir(path.join(this.#dir, 'tmp'), { recursive: true });
    await this.#index.load();
    await this.evict();
  }

  has(digest: string): boolean {
    return this.#index.has(digest);
  }

  /** Adds bytes of derived data (an extracted tree) to an entry's weight. */
  addExtra(digest: string, bytes: number): void {
    this.#index.addExtra(digest, bytes);
  }

  /**
   * The archive `digest` (`size` bytes), from the cache (a small one as a Buffer from memory,
   * else a file stream), or from `fetch` on a miss while filling the cache. Concurrent misses
   * share one fetch. `hit` says which. `signal`: the reader's (it left), for a read of its own.
   */
  async open(
    digest: string,
    size: number,
    fetch: Fetch,
    range?: Range,
    signal?: AbortSignal,
  ): Promise<{ body: Readable | Buffer; hit: boolean }> {
    if (!HEX.test(digest)) throw new TypeError(`not a digest: ${digest}`);
    // Twice at most: a file found changed since it was verified is hashed again first.
    for (let attempt = 0; attempt < 2 && (await this.#verified(digest)); attempt++) {
      const bytes = this.#memory.get(digest) ?? (await this.#loadIntoMemory(digest));
      if (bytes) {
        this.#opts.observer?.hit();
        this.#index.use(digest);
        return { body: range ? bytes.subarray(range.start, range.end + 1) : bytes, hit: true };
      }
      const body = this.#index.has(digest) ? await this.#readEntry(digest, range) : undefined;
      if (body) {
        this.#opts.observer?.hit();
        return { body, hit: true };
      }
    }
    this.#opts.observer?.miss();
    const fill = await this.#fillFor(digest, size, fetch);
    await fill.started;
    if (range && range.start > fill.written + FOLLOW_AHEAD_BYTES) {
      // Served as fetched, like any range read from storage: its bytes cannot be checked
      // against the archive's digest before they are sent (the fill still checks its own).
      signal?.throwIfAborted();
      return { body: await fetch(signal, range), hit: false };
    }
    return { body: fill.reader(range), hit: false };
  }

  /**
   * Runs `fn` with the archive `digest` in the cache (fetched first if needed) and held, so
   * eviction leaves it alone until `fn` settles — even an archive larger than the whole cache.
   */
  async withBlob<T>(digest: string, size: number, fetch: Fetch, fn: (file: string) => Promise<T>): Promise<T> {
    let release: (() => void) | undefined;
    // Twice at most, as open(): a file changed since it was verified is hashed again first (and
    // fetched again if it is damaged), never handed to `fn` as it is.
    for (let attempt = 0; attempt < 2 && !release && (await this.#verified(digest)); attempt++) {
      const entry = this.#index.get(digest);
      if (!entry) break;
      entry.readers++;
      const unchanged = await fs.stat(this.blobPath(digest)).then(
        (stats) => stampOf(stats) === entry.stamp,
        () => false,
      );
      if (unchanged) {
        release = () => this.#unhold(entry);
      } else {
        entry.verified = false;
        this.#unhold(entry);
      }
    }
    if (!release) {
      const fill = await this.#fillFor(digest, size, fetch);
      // Held from before the fill completes: the new entry is not evicted under us.
      release = fill.hold();
      await fill.completed.catch((err: unknown) => {
        release!();
        throw err;
      });
    }
    try {
      this.#index.use(digest);
      return await fn(this.blobPath(digest));
    } finally {
      release();
    }
  }

  /**
   * The fill in progress for `digest`, or a new one: concurrent misses share it. A new one needs
   * room for its `size` bytes on the cache disk — which can be smaller than CACHE_MAX_BYTES —
   * and makes it by evicting idle entries; without it, CacheDiskError (the caller serves from
   * storage) rather than a fill failing half way with ENOSPC under its readers.
   */
  async #fillFor(digest: string, size: number, fetch: Fetch): Promise<Fill> {
    const running = this.#fills.get(digest);
    if (running) return running;
    // Concurrent misses wait for the one making room: each making room on its own would count
    // the others' fill as a second copy to fit (and serve from storage, or evict, for nothing).
    return this.#starting.run(digest, () =>
      this.#makeRoom(size).then(() => {
        const fill = new Fill(this.#dir, digest, size, (entry) => this.#unhold(entry));
        this.#fills.set(digest, fill);
        void this.#running.track(this.#runFill(fill, fetch));
        return fill;
      }),
    );
  }

  async #makeRoom(size: number): Promise<void> {
    const free = async () => {
      const statfs = () => fs.statfs(this.#dir).then((s) => s.bavail * s.bsize);
      const disk = await (this.#opts.freeBytes?.() ?? statfs()).catch(() => Infinity);
      let promised = 0; // what fills in progress are still to write
      for (const fill of this.#fills.values()) promised += Math.max(0, fill.size - fill.written);
      return disk - promised;
    };
    const needed = size + DISK_SLACK_BYTES;
    let available = await free();
    if (available >= needed) return;
    const removed = await this.#removeIdle(async () => (available = await free()) < needed).catch((err: unknown) => {
      // An entry that cannot be removed is a disk that cannot take the fill either.
      throw err instanceof CacheDiskError ? err : new CacheDiskError(err);
    });
    if (removed > 0) available = await free(); // after the last removal too
    if (available < needed) {
      const free = `the disk has ${Math.max(0, available)} bytes free for the cache`;
      throw new CacheDiskError(new Error(`${free}, a ${size}-byte archive needs ${needed}`));
    }
  }

  /**
   * For shutdown, once no request reads any more: downloads still filling the cache are stopped
   * (their temp files removed), and the ones that just finished are renamed into place. Resolves
   * when nothing writes to the cache directory.
   */
  async close(): Promise<void> {
    this.#closed = true;
    for (const fill of this.#fills.values()) fill.abort(new Error('the cache is closing'));
    await this.#running.settled();
  }

  /** Admits a file written elsewhere (an accepted upload) whose digest is already known. */
  async admit(digest: string, file: string): Promise<void> {
    if (this.#index.has(digest)) return void (await fs.rm(file, { force: true }));
    await fs.rename(file, this.blobPath(digest));
    await this.#index.addVerified(digest);
    await this.evict();
  }

  /** A temp file path inside the cache, for writers that admit() later. */
  tempPath(): string {
    return path.join(this.#dir, 'tmp', `${randomUUID()}.part`);
  }

  /**
   * One reader of `entry` is done. An entry kept over the bound only because it was being read
   * (one larger than the whole cache, say) goes once its last reader is.
   */
  #unhold(entry: Entry): void {
    entry.readers--;
    if (entry.readers === 0 && this.#index.total > this.#opts.maxBytes && !this.#closed) {
      void this.evict().catch((err: unknown) => this.#opts.logger.warn({ err }, 'cache eviction failed'));
    }
  }

  /** Removes expired entries, then least-recently-used ones until the total fits the bound. */
  async evict(): Promise<number> {
    const now = Date.now();
    const { ttlMs, maxBytes } = this.#opts;
    const removed = await this.#removeIdle((entry) => now - entry.lastUsed > ttlMs || this.#index.total > maxBytes);
    if (removed > 0) this.#opts.logger.debug({ removed, bytes: this.#index.total }, 'cache eviction');
    return removed;
  }

  // ---- internals ----

  /**
   * Removes entries nobody reads or fills, least recently used first, for as long as `wanted`
   * says the next one should go; returns how many went.
   */
  async #removeIdle(wanted: (entry: Entry) => boolean | Promise<boolean>): Promise<number> {
    let removed = 0;
    const idle = [...this.#index.entries()]
      .filter(([d, e]) => e.readers === 0 && !this.#fills.has(d))
      .sort((a, b) => a[1].lastUsed - b[1].lastUsed);
    try {
      for (const [digest, entry] of idle) {
        // Removals await the disk: an entry may have been read, held or replaced meanwhile.
        if (this.#index.get(digest) !== entry || entry.readers > 0 || this.#fills.has(digest)) continue;
        if (!(await wanted(entry))) break; // the rest are used more recently
        await this.#remove(digest);
        removed++;
      }
    } finally {
      if (removed > 0) this.#opts.observer?.evicted(removed);
    }
    return removed;
  }

  /**
   * Reads a small verified entry into memory, checking its digest again (the file could have
   * been damaged since it was verified); a damaged entry is removed. Undefined when the entry is
   * too large for the memory tier, or was removed.
   */
  async #loadIntoMemory(digest: string): Promise<Buffer | undefined> {
    const entry = this.#index.get(digest);
    if (!entry || !this.#memory.fits(entry.size)) return undefined;
    const read = async () => {
      entry.readers++;
      let bytes: Buffer;
      try {
        bytes = await fs.readFile(this.blobPath(digest));
      } catch {
        return undefined;
      } finally {
        entry.readers--;
      }
      if (createHash('sha256').update(bytes).digest('hex') !== digest) {
        this.#opts.logger.warn({ digest }, 'cached archive is corrupt; fetching it again');
        await this.#remove(digest);
        return undefined;
      }
      return bytes;
    };
    return this.#memory.load(digest, read, () => this.#index.has(digest));
  }

  /** Runs `fill` to its end; never rejects (it is started without being awaited). */
  async #runFill(fill: Fill, fetch: Fetch): Promise<void> {
    try {
      await fill.run(fetch);
      await fs.rename(fill.file, this.blobPath(fill.digest));
      // Clients still reading from the fill now read the entry: eviction must leave it alone.
      const entry = await this.#index.addVerified(fill.digest);
      this.#fills.delete(fill.digest);
      fill.finish(entry);
    } catch (err) {
      this.#fills.delete(fill.digest); // the next request fetches again instead of joining this one
      fill.fail(err as Error);
      this.#opts.logger.warn({ err, digest: fill.digest }, 'cache fill failed');
      await fs.rm(fill.file, { force: true }).catch((rmErr: unknown) => {
        const message = 'could not remove a failed cache fill; the next start clears it';
        this.#opts.logger.warn({ err: rmErr, file: fill.file }, message);
      });
      return;
    }
    // The archive is in the cache whatever eviction does: its errors are not the fill's.
    await this.evict().catch((err: unknown) => this.#opts.logger.warn({ err }, 'cache eviction failed'));
  }

  /** A stream of a verified entry; undefined when its file changed since it was verified. */
  async #readEntry(digest: string, range?: Range): Promise<Readable | undefined> {
    const entry = this.#index.use(digest)!;
    entry.readers++;
    let fd: number | undefined;
    try {
      fd = await openFd(this.blobPath(digest), 'r');
      if (stampOf(await fstatFd(fd)) !== entry.stamp) throw new Error('changed since it was verified');
    } catch {
      // Changed or gone: hashed again (and dropped if wrong) before anything is served from it.
      entry.verified = false;
      if (fd !== undefined) closeSync(fd);
      entry.readers--;
      return undefined;
    }
    // A plain fd, not a FileHandle (a stream over a FileHandle reads through promises: slower),
    // read 2 MiB at a time: 256 KiB reads served a cached 1 GiB archive at 0.35–0.5× nginx's
    // sendfile, 1–2 MiB reads at 0.75–1× (BENCHMARKS.md). Small archives, where such a buffer per
    // response would be waste, are answered from memory instead.
    const body = createReadStream('', { fd, start: range?.start, end: range?.end, highWaterMark: FILE_READ_BYTES });
    body.once('close', () => this.#unhold(entry));
    return body;
  }

  /** True when `digest` is cached and holds its digest (hashed again first if its file changed). */
  async #verified(digest: string): Promise<boolean> {
    return this.#index.has(digest) && (await this.#index.verify(digest, (d) => this.#remove(d)));
  }

  async #remove(digest: string): Promise<void> {
    if (!this.#index.has(digest)) return;
    this.#memory.drop(digest);
    await this.#index.remove(digest);
    await this.#opts.onEvict?.(digest);
  }
}
