/**
 * Long-poll watches (GET /models/:name?wait=N): a waiter wakes when the model's ETag changes.
 * Changes made through this process arrive at once (the registry's `change` events); changes made
 * by other replicas sharing the storage are found by polling, one poll per watched name every
 * WATCH_POLL_INTERVAL however many clients wait on it.
 */
import type { Logger } from '../util/logger.js';
import { etagOf, type ModelRegistry } from './service.js';

interface Watch {
  waiters: Set<() => void>;
  timer: NodeJS.Timeout;
  polling: boolean;
}

export class Watcher {
  readonly #watches = new Map<string, Watch>();
  readonly #registry: ModelRegistry;
  readonly #pollMs: number;
  readonly #log: Logger;

  constructor(registry: ModelRegistry, pollMs: number, logger: Logger) {
    this.#registry = registry;
    this.#pollMs = pollMs;
    this.#log = logger;
    registry.changes.on('change', (name: string) => this.#wake(name));
  }

  /** Resolves true once `name` no longer has `etag` (replaced or deleted), false after `timeoutMs`. */
  waitForChange(name: string, etag: string, timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    return new Promise((resolve) => {
      // A client gone before its wait began (e.g. while the model was described) waits for nothing.
      if (signal?.aborted) return resolve(false);
      let watch = this.#watches.get(name);
      if (!watch) {
        const created: Watch = { waiters: new Set(), polling: false, timer: setInterval(() => void this.#poll(name, created), this.#pollMs) };
        watch = created;
        this.#watches.set(name, watch);
      }
      const current = watch;
      const done = (changed: boolean) => {
        clearTimeout(timeout);
        signal?.removeEventListener('abort', onAbort);
        current.waiters.delete(waiter);
        if (current.waiters.size === 0 && this.#watches.get(name) === current) {
          clearInterval(current.timer);
          this.#watches.delete(name);
        }
        resolve(changed);
      };
      const waiter = () => done(true);
      const onAbort = () => done(false);
      const timeout = setTimeout(() => done(false), timeoutMs);
      signal?.addEventListener('abort', onAbort, { once: true });
      current.waiters.add(waiter);
      // The etag a waiter compares against is checked by the first poll too (it may be stale).
      (waiter as { etag?: string }).etag = etag;
    });
  }

  close(): void {
    for (const [name, watch] of this.#watches) {
      clearInterval(watch.timer);
      for (const waiter of [...watch.waiters]) waiter();
      this.#watches.delete(name);
    }
  }

  #wake(name: string): void {
    const watch = this.#watches.get(name);
    if (watch) for (const waiter of [...watch.waiters]) waiter();
  }

  async #poll(name: string, watch: Watch): Promise<void> {
    if (watch.polling) return;
    watch.polling = true;
    try {
      const etag = await this.#registry.describe(name).then(
        (m) => etagOf(m.sha256),
        (err: { code?: string }) => {
          if (err.code === 'MODEL_NOT_FOUND') return undefined;
          throw err;
        },
      );
      for (const waiter of [...watch.waiters]) {
        if ((waiter as { etag?: string }).etag !== etag) waiter();
      }
    } catch (err) {
      this.#log.debug({ err, model: name }, 'watch poll failed; will retry');
    } finally {
      watch.polling = false;
    }
  }
}
