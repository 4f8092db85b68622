/**
 * The content-addressed half of the local cache (SPEC §6): archives stored under their SHA-256
 * in CACHE_DIR/blobs, filled from storage at most once per digest at a time.
 *
 *   blobs/{hex}.tar.gz      a verified archive
 *   blobs/{hex}.ok          inode-mtime-size of that file when it was verified
 *   tmp/                    fills in progress (written, fsynced, hashed, then renamed in)
 *
 * A fill streams to every waiting reader as bytes reach the disk, so the first client of a cold
 * model does not wait for the whole download, and fifty concurrent clients cost one storage read.
 * A file is renamed into blobs/ only after its digest matched, so a crash mid-fill leaves nothing
 * that is ever served. After a restart, an entry whose stamp no longer matches its file (changed,
 * truncated) is hashed again before it is served, and dropped if it is wrong.
 * Eviction is least-recently-used by bytes plus an age limit, and skips entries being read.
 *
 * Small archives (up to 1/8 of CACHE_MEMORY_BYTES each) are also held in memory once read, hashed
 * again as they are loaded, so the hot small model an inference fleet polls is answered with one
 * socket write — no open, read, close or buffer churn per request (the disk tier stays the truth:
 * evicting an entry drops its memory copy).
 */
import { createHash, randomUUID } from 'node:crypto';
import { closeSync, createReadStream, fstat, open as openCallback, type Stats } from 'node:fs';
import { promisify } from 'node:util';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { LRUCache } from 'lru-cache';
import type { Logger } from '../util/logger.js';
import { Pending } from '../util/pending.js';
import { SingleFlight } from '../util/single-flight.js';
import { CacheDiskError } from './errors.js';
import { Fill } from './fill.js';
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
/** Bytes of a fill kept in memory for the readers following it. */
const TOUCH_EVERY_MS = 60_000;

export class BlobStore {
  readonly #dir: string;
  readonly #opts: BlobStoreOptions;
  readonly #entries = new Map<string, Entry>();
  readonly #fills = new Map<string, Fill>();
  /** Fills about to start (making room on the disk), by digest. */
  readonly #starting = new SingleFlight<string, Fill>();
  /** Fills running to their end (download, rename, stamp, eviction); close() waits for them. */
  readonly #running = new Pending();
  #closed = false;
  readonly #verifying = new SingleFlight<string, boolean>();
  #total = 0;
  /** Verified copies of small archives, weighed by their bytes (none without a budget). */
  readonly #memory: LRUCache<string, Buffer> | undefined;
  readonly #loading = new SingleFlight<string, Buffer | undefined>();

  constructor(options: BlobStoreOptions) {
    this.#opts = options;
    this.#dir = path.resolve(options.dir);
    const budget = options.memoryBytes ?? 0;
    if (budget > 0) {
      this.#memory = new LRUCache<string, Buffer>({
        maxSize: budget,
        sizeCalculation: (bytes) => Math.max(1, bytes.length),
        dispose: () => this.#opts.observer?.memoryBytes?.(this.#memory!.calculatedSize),
      });
    }
  }

  get totalBytes(): number {
    return this.#total;
  }

  blobPath(digest: string): string {
    return path.join(this.#dir, 'blobs', `${digest}.tar.gz`);
  }

  /** Rebuilds the index from disk (a readdir and a stat per entry) and clears old temp files. */
  async init(): Promise<void> {
    await fs.mkdir(path.join(this.#dir, 'blobs'), { recursive: true });
    await fs.rm(path.join(this.#dir, 'tmp'), { recursive: true, force: true });
    await fs.mkdir(path.join(this.#dir, 'tmp'), { recursive: true });
    for (const name of await fs.readdir(path.join(this.#dir, 'blobs'))) {
      const m = /^([0-9a-f]{64})\.tar\.gz$/.exec(name);
      if (!m) continue;
      const digest = m[1]!;
      const stats = await fs.stat(this.blobPath(digest)).catch(() => undefined);
      if (!stats) continue;
      const stamp = await fs.readFile(this.#stampPath(digest), 'utf8').catch(() => '');
      const stampStats = await fs.stat(this.#stampPath(digest)).catch(() => undefined);
      const lastUsed = stampStats?.mtimeMs ?? stats.mtimeMs;
      this.#add(digest, {
        size: stats.size,
        extra: 0,
        lastUsed,
        touchedAt: lastUsed,
        readers: 0,
        verified: stamp === stampOf(stats),
        stamp: stampOf(stats),
      });
    }
    await this.evict();
  }

  has(digest: string): boolean {
    return this.#entries.has(digest);
  }

  /** Adds bytes of derived data (an extracted tree) to an entry's weight. */
  addExtra(digest: string, bytes: number): void {
    const entry = this.#entries.get(digest);
    if (!entry) return;
    entry.extra += bytes;
    this.#total += bytes;
    this.#opts.observer?.bytes(this.#total);
  }

  /**
   * The archive `digest` (`size` bytes), from the cache (a small one as a Buffer from memory,
   * else a file stream), or from `fetch` on a miss while filling the cache. Concurrent misses
   * share one fetch. `hit` says which. `signal`: the reader's (it left), for a read of its own.
   */
  async open(digest: string, size: number, fetch: Fetch, range?: Range, signal?: AbortSignal): Promise<{ body: Readable | Buffer; hit: boolean }> {
    if (!HEX.test(digest)) throw new TypeError(`not a digest: ${digest}`);
    // Twice at most: a file found changed since it was verified is hashed again first.
    for (let attempt = 0; attempt < 2 && this.#entries.has(digest) && (await this.#ensureVerified(digest)); attempt++) {
      const bytes = this.#fromMemory(digest) ?? (await this.#loadIntoMemory(digest));
      if (bytes) {
        this.#opts.observer?.hit();
        this.#use(digest);
        return { body: range ? bytes.subarray(range.start, range.end + 1) : bytes, hit: true };
      }
      const body = this.#entries.has(digest) ? await this.#readEntry(digest, range) : undefined;
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
    for (let attempt = 0; attempt < 2 && !release && this.#entries.has(digest) && (await this.#ensureVerified(digest)); attempt++) {
      const entry = this.#entries.get(digest);
      if (!entry) break;
      entry.readers++;
      const unchanged = await fs.stat(this.blobPath(digest)).then((stats) => stampOf(stats) === entry.stamp, () => false);
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
      this.#use(digest);
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
      }));
  }

  async #makeRoom(size: number): Promise<void> {
    const free = async () => {
      const disk = await (this.#opts.freeBytes?.() ?? fs.statfs(this.#dir).then((s) => s.bavail * s.bsize)).catch(() => Infinity);
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
      throw new CacheDiskError(new Error(`the disk has ${Math.max(0, available)} bytes free for the cache, a ${size}-byte archive needs ${needed}`));
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
    if (this.#entries.has(digest)) return void (await fs.rm(file, { force: true }));
    const target = this.blobPath(digest);
    await fs.rename(file, target);
    const stats = await fs.stat(target);
    await fs.writeFile(this.#stampPath(digest), stampOf(stats));
    const now = Date.now();
    this.#add(digest, { size: stats.size, extra: 0, lastUsed: now, touchedAt: now, readers: 0, verified: true, stamp: stampOf(stats) });
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
    if (entry.readers === 0 && this.#total > this.#opts.maxBytes && !this.#closed) {
      void this.evict().catch((err: unknown) => this.#opts.logger.warn({ err }, 'cache eviction failed'));
    }
  }

  /** Removes expired entries, then least-recently-used ones until the total fits the bound. */
  async evict(): Promise<number> {
    const now = Date.now();
    const removed = await this.#removeIdle((entry) => now - entry.lastUsed > this.#opts.ttlMs || this.#total > this.#opts.maxBytes);
    if (removed > 0) this.#opts.logger.debug({ removed, bytes: this.#total }, 'cache eviction');
    return removed;
  }

  // ---- internals ----

  /**
   * Removes entries nobody reads or fills, least recently used first, for as long as `wanted`
   * says the next one should go; returns how many went.
   */
  async #removeIdle(wanted: (entry: Entry) => boolean | Promise<boolean>): Promise<number> {
    let removed = 0;
    const idle = [...this.#entries].filter(([d, e]) => e.readers === 0 && !this.#fills.has(d)).sort((a, b) => a[1].lastUsed - b[1].lastUsed);
    try {
      for (const [digest, entry] of idle) {
        // Removals await the disk: an entry may have been read, held or replaced meanwhile.
        if (this.#entries.get(digest) !== entry || entry.readers > 0 || this.#fills.has(digest)) continue;
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
    const budget = this.#opts.memoryBytes ?? 0;
    const entry = this.#entries.get(digest);
    const memory = this.#memory;
    if (!entry || !memory || entry.size > budget / 8) return undefined;
    return this.#loading.run(digest, async () => {
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
      if (!this.#entries.has(digest)) return bytes; // evicted meanwhile: serve it, keep nothing
      // The least recently used copies make room; the new one is at most 1/8 of the budget.
      memory.set(digest, bytes);
      this.#opts.observer?.memoryBytes?.(memory.calculatedSize);
      return bytes;
    });
  }

  /** The memory copy of `digest`, now the most recently used one. */
  #fromMemory(digest: string): Buffer | undefined {
    return this.#memory?.get(digest);
  }

  #dropFromMemory(digest: string): void {
    this.#memory?.delete(digest);
  }

  /** Runs `fill` to its end; never rejects (it is started without being awaited). */
  async #runFill(fill: Fill, fetch: Fetch): Promise<void> {
    try {
      await fill.run(fetch);
      const target = this.blobPath(fill.digest);
      await fs.rename(fill.file, target);
      const stats = await fs.stat(target);
      await fs.writeFile(this.#stampPath(fill.digest), stampOf(stats));
      // Clients still reading from the fill now read the entry: eviction must leave it alone.
      const now = Date.now();
      const entry = this.#add(fill.digest, { size: stats.size, extra: 0, lastUsed: now, touchedAt: now, readers: 0, verified: true, stamp: stampOf(stats) });
      this.#fills.delete(fill.digest);
      fill.finish(entry);
    } catch (err) {
      this.#fills.delete(fill.digest); // the next request fetches again instead of joining this one
      fill.fail(err as Error);
      this.#opts.logger.warn({ err, digest: fill.digest }, 'cache fill failed');
      await fs.rm(fill.file, { force: true }).catch((rmErr: unknown) =>
        this.#opts.logger.warn({ err: rmErr, file: fill.file }, 'could not remove a failed cache fill; the next start clears it'));
      return;
    }
    // The archive is in the cache whatever eviction does: its errors are not the fill's.
    await this.evict().catch((err: unknown) => this.#opts.logger.warn({ err }, 'cache eviction failed'));
  }

  /** A stream of a verified entry; undefined when its file changed since it was verified. */
  async #readEntry(digest: string, range?: Range): Promise<Readable | undefined> {
    const entry = this.#use(digest)!;
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

  #use(digest: string): Entry | undefined {
    const entry = this.#entries.get(digest);
    if (!entry) return undefined;
    const now = Date.now();
    if (now - entry.touchedAt > TOUCH_EVERY_MS) {
      // Persist recency for the LRU order after a restart (cheaply: at most once a minute).
      entry.touchedAt = now;
      const t = new Date(now);
      void fs.utimes(this.#stampPath(digest), t, t).catch(() => {});
    }
    entry.lastUsed = now;
    return entry;
  }

  async #ensureVerified(digest: string): Promise<boolean> {
    const entry = this.#entries.get(digest);
    if (!entry) return false;
    if (entry.verified) return true;
    return this.#verifying.run(digest, async () => {
      const hash = createHash('sha256');
      await pipeline(createReadStream(this.blobPath(digest)), hash).catch(() => {});
      const ok = hash.digest('hex') === digest;
      if (ok) {
        entry.verified = true;
        entry.stamp = stampOf(await fs.stat(this.blobPath(digest)));
        await fs.writeFile(this.#stampPath(digest), entry.stamp);
      } else {
        this.#opts.logger.warn({ digest }, 'cached archive is corrupt; fetching it again');
        await this.#remove(digest);
      }
      return ok;
    });
  }

  /**
   * Indexes `entry`, or, when `digest` is indexed already (a fill and an upload of the same bytes
   * can finish together, each renaming an identical file into place), refreshes the entry that is
   * there, keeping its readers and extra bytes. Returns the indexed entry.
   */
  #add(digest: string, entry: Entry): Entry {
    const existing = this.#entries.get(digest);
    if (existing) {
      existing.stamp = entry.stamp;
      existing.verified = entry.verified;
      existing.lastUsed = Math.max(existing.lastUsed, entry.lastUsed);
      return existing;
    }
    this.#entries.set(digest, entry);
    this.#total += entry.size + entry.extra;
    this.#opts.observer?.bytes(this.#total);
    return entry;
  }

  async #remove(digest: string): Promise<void> {
    const entry = this.#entries.get(digest);
    if (!entry) return;
    this.#entries.delete(digest);
    this.#dropFromMemory(digest);
    this.#total -= entry.size + entry.extra;
    this.#opts.observer?.bytes(this.#total);
    await fs.rm(this.#stampPath(digest), { force: true });
    await fs.rm(this.blobPath(digest), { force: true });
    await this.#opts.onEvict?.(digest);
  }

  #stampPath(digest: string): string {
    return path.join(this.#dir, 'blobs', `${digest}.ok`);
  }
}

function stampOf(stats: Stats): string {
  return `${stats.ino}-${Math.trunc(stats.mtimeMs)}-${stats.size}`;
}

