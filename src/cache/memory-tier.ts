/**
 * Small archives (up to 1/8 of CACHE_MEMORY_BYTES each) held in memory once read, so the hot
 * small model an inference fleet polls is answered with one socket write — no open, read, close
 * or buffer churn per request. The disk tier stays the truth: evicting an entry drops its copy.
 */
import { LRUCache } from 'lru-cache';
import { SingleFlight } from '../util/single-flight.js';
import type { CacheObserver } from './types.js';

export class MemoryTier {
  readonly #budget: number;
  readonly #observer: CacheObserver | undefined;
  /** Verified copies, weighed by their bytes (none without a budget). */
  readonly #copies: LRUCache<string, Buffer> | undefined;
  readonly #loading = new SingleFlight<string, Buffer | undefined>();

  constructor(budget: number, observer?: CacheObserver) {
    this.#budget = budget;
    this.#observer = observer;
    if (budget > 0) {
      this.#copies = new LRUCache<string, Buffer>({
        maxSize: budget,
        sizeCalculation: (bytes) => Math.max(1, bytes.length),
        dispose: () => this.#observer?.memoryBytes?.(this.#copies!.calculatedSize),
      });
    }
  }

  /** Whether an archive of `size` bytes is held here once read. */
  fits(size: number): boolean {
    return this.#copies !== undefined && size <= this.#budget / 8;
  }

  /** The copy of `digest`, now the most recently used one. */
  get(digest: string): Buffer | undefined {
    return this.#copies?.get(digest);
  }

  drop(digest: string): void {
    this.#copies?.delete(digest);
  }

  /**
   * Loads the copy of `digest` with `read` (which checks the bytes; undefined when they are not
   * the archive): concurrent loads share one read. The copy is kept only if `keep()` still says
   * so once read (the entry may have been evicted meanwhile: then it is served, and not kept).
   */
  load(digest: string, read: () => Promise<Buffer | undefined>, keep: () => boolean): Promise<Buffer | undefined> {
    return this.#loading.run(digest, async () => {
      const bytes = await read();
      if (!bytes || !keep() || !this.#copies) return bytes;
      // The least recently used copies make room; the new one is at most 1/8 of the budget.
      this.#copies.set(digest, bytes);
      this.#observer?.memoryBytes?.(this.#copies.calculatedSize);
      return bytes;
    });
  }
}
