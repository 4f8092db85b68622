/**
 * The index of the archives on the cache disk, and what proves each one is still the archive
 * it was verified as:
 *
 *   blobs/{hex}.tar.gz      a verified archive
 *   blobs/{hex}.ok          inode-mtime-size of that file when it was verified
 *
 * After a restart, an entry whose stamp no longer matches its file (changed, truncated) is hashed
 * again before it is served (verify()), and dropped if it is wrong. The stamp file's mtime is the
 * entry's recency, so the least-recently-used order survives a restart.
 */
import { createHash } from 'node:crypto';
import { createReadStream, type Stats } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Logger } from '../util/logger.js';
import { SingleFlight } from '../util/single-flight.js';
import type { CacheObserver, Entry } from './types.js';

const TOUCH_EVERY_MS = 60_000;

export class DiskIndex {
  readonly #blobs: string;
  readonly #observer: CacheObserver | undefined;
  readonly #logger: Logger;
  readonly #entries = new Map<string, Entry>();
  readonly #verifying = new SingleFlight<string, boolean>();
  #total = 0;

  constructor(dir: string, logger: Logger, observer?: CacheObserver) {
    this.#blobs = path.join(dir, 'blobs');
    this.#logger = logger;
    this.#observer = observer;
  }

  /** Bytes of every entry, with their derived data. */
  get total(): number {
    return this.#total;
  }

  blobPath(digest: string): string {
    return path.join(this.#blobs, `${digest}.tar.gz`);
  }

  /** Rebuilds the index from disk: a readdir, and a stat per entry. */
  async load(): Promise<void> {
    await fs.mkdir(this.#blobs, { recursive: true });
    for (const name of await fs.readdir(this.#blobs)) {
      const m = /^([0-9a-f]{64})\.tar\.gz$/.exec(name);
      if (!m) continue;
      const digest = m[1]!;
      const stats = await fs.stat(this.blobPath(digest)).catch(() => undefined);
      if (!stats) continue;
      const stamp = await fs.readFile(this.#stampPath(digest), 'utf8').catch(() => '');
      const stampStats = await fs.stat(this.#stampPath(digest)).catch(() => undefined);
      const lastUsed = stampStats?.mtimeMs ?? stats.mtimeMs;
      this.add(digest, {
        size: stats.size,
        extra: 0,
        lastUsed,
        touchedAt: lastUsed,
        readers: 0,
        verified: stamp === stampOf(stats),
        stamp: stampOf(stats),
      });
    }
  }

  has(digest: string): boolean {
    return this.#entries.has(digest);
  }

  get(digest: string): Entry | undefined {
    return this.#entries.get(digest);
  }

  entries(): IterableIterator<[string, Entry]> {
    return this.#entries.entries();
  }

  /** Indexes the verified archive just renamed to blobPath(digest), stamping it. */
  async addVerified(digest: string): Promise<Entry> {
    const stats = await fs.stat(this.blobPath(digest));
    await fs.writeFile(this.#stampPath(digest), stampOf(stats));
    const now = Date.now();
    const stamp = stampOf(stats);
    const { size } = stats;
    return this.add(digest, { size, extra: 0, lastUsed: now, touchedAt: now, readers: 0, verified: true, stamp });
  }

  /**
   * Indexes `entry`, or, when `digest` is indexed already (a fill and an upload of the same bytes
   * can finish together, each renaming an identical file into place), refreshes the entry that is
   * there, keeping its readers and extra bytes. Returns the indexed entry.
   */
  add(digest: string, entry: Entry): Entry {
    const existing = this.#entries.get(digest);
    if (existing) {
      existing.stamp = entry.stamp;
      existing.verified = entry.verified;
      existing.lastUsed = Math.max(existing.lastUsed, entry.lastUsed);
      return existing;
    }
    this.#entries.set(digest, entry);
    this.#total += entry.size + entry.extra;
    this.#observer?.bytes(this.#total);
    return entry;
  }

  /** Adds bytes of derived data (an extracted tree) to an entry's weight. */
  addExtra(digest: string, bytes: number): void {
    const entry = this.#entries.get(digest);
    if (!entry) return;
    entry.extra += bytes;
    this.#total += bytes;
    this.#observer?.bytes(this.#total);
  }

  /** Takes `digest` out of the index at once, then deletes its files. */
  async remove(digest: string): Promise<void> {
    const entry = this.#entries.get(digest);
    if (!entry) return;
    this.#entries.delete(digest);
    this.#total -= entry.size + entry.extra;
    this.#observer?.bytes(this.#total);
    await fs.rm(this.#stampPath(digest), { force: true });
    await fs.rm(this.blobPath(digest), { force: true });
  }

  /** The entry, now the most recently used. */
  use(digest: string): Entry | undefined {
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

  /**
   * True once the entry is known to hold its digest: hashed again if its file changed since it
   * was verified. A wrong one is handed to `corrupt` (which removes it) and false returned.
   */
  async verify(digest: string, corrupt: (digest: string) => Promise<void>): Promise<boolean> {
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
        this.#logger.warn({ digest }, 'cached archive is corrupt; fetching it again');
        await corrupt(digest);
      }
      return ok;
    });
  }

  #stampPath(digest: string): string {
    return path.join(this.#blobs, `${digest}.ok`);
  }
}

/** What identifies a file's content as long as nobody rewrites it in place. */
export function stampOf(stats: Stats): string {
  return `${stats.ino}-${Math.trunc(stats.mtimeMs)}-${stats.size}`;
}
