/**
 * Long-poll watches (GET /models/:ref?wait=N): a waiter wakes when the ETag of what it watches
 * changes — a model's current version (`name`, `name@latest`) or the version an alias points to
 * (`name@production`: it moved, or went). Changes made through this process arrive at once (the
 * registry's `change` and `alias` events); changes made by other replicas sharing the storage are
 * found by polling, one poll per watched reference every WATCH_POLL_INTERVAL however many clients
 * wait on it. An alias watch is not woken by an upload that leaves the alias where it was: on a
 * change of its model it polls at once, and wakes only the waiters whose ETag is no longer it.
 */
import type { Logger } from '../util/logger.js';
import { parseRef } from './names.js';
import { isNotFound } from './not-found.js';
import { etagOf, type ModelRegistry } from './service.js';

interface Watch {
  name: string;
  /** Watches an alias (not a model's current version). */
  alias: boolean;
  waiters: Set<() => void>;
  timer: NodeJS.Timeout;
  polling: boolean;
  /** A change arrived while a poll was running: poll again after it. */
  again: boolean;
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
    registry.changes.on('change', (name: string) => this.#wake(name, false));
    registry.changes.on('alias', (name: string) => this.#wake(name, true));
  }

  /**
   * Resolves true once `ref` (a name, or `name@alias`) no longer has `etag` (replaced, moved or
   * deleted), false after `timeoutMs`.
   */
  waitForChange(ref: string, etag: string, timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    return new Promise((resolve) => {
      // A client gone before its wait began (e.g. while the model was described) waits for nothing.
      if (signal?.aborted) return resolve(false);
      let watch = this.#watches.get(ref);
      if (!watch) {
        const parsed = parseRef(ref);
        const created: Watch = {
          name: parsed.name,
          alias: parsed.alias !== undefined,
          waiters: new Set(),
          polling: false,
          again: false,
          timer: setInterval(() => void this.#poll(ref, created), this.#pollMs),
        };
        watch = created;
        this.#watches.set(ref, watch);
      }
      const current = watch;
      const done = (changed: boolean) => {
        clearTimeout(timeout);
        signal?.removeEventListener('abort', onAbort);
        current.waiters.delete(waiter);
        if (current.waiters.size === 0 && this.#watches.get(ref) === current) {
          clearInterval(current.timer);
          this.#watches.delete(ref);
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

  /** A change of model `name` made here: a model watch wakes; an alias watch looks at once. */
  #wake(name: string, aliasChange: boolean): void {
    for (const [ref, watch] of this.#watches) {
      if (watch.name !== name) continue;
      if (watch.alias) void this.#poll(ref, watch, true);
      else if (!aliasChange) for (const waiter of [...watch.waiters]) waiter();
    }
  }

  async #poll(ref: string, watch: Watch, urgent = false): Promise<void> {
    if (watch.polling) {
      if (urgent) watch.again = true;
      return;
    }
    watch.polling = true;
    try {
      const etag = await this.#registry.resolve(ref).then(
        (m) => etagOf(m.sha256),
        (err: unknown) => {
          if (isNotFound(err)) return undefined; // deleted model, removed alias, pruned version
          throw err;
        },
      );
      for (const waiter of [...watch.waiters]) {
        if ((waiter as { etag?: string }).etag !== etag) waiter();
      }
    } catch (err) {
      this.#log.debug({ err, model: ref }, 'watch poll failed; will retry');
    } finally {
      watch.polling = false;
      if (watch.again) {
        watch.again = false;
        void this.#poll(ref, watch, true);
      }
    }
  }
}
