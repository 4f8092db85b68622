/**
 * Concurrent callers asking for the same work share one run of it: the first starts it, later
 * ones get its promise until it settles (then the next call starts afresh). The keyed map of
 * promises in flight that the cache's fills, verifications and extractions and the registry's
 * digest reads each need.
 */
export class SingleFlight<K, V> {
  readonly #running = new Map<K, Promise<V>>();

  /** The run of `key` in flight, or a new one of `work`. */
  run(key: K, work: () => Promise<V>): Promise<V> {
    let pending = this.#running.get(key);
    if (!pending) {
      pending = work().finally(() => this.#running.delete(key));
      this.#running.set(key, pending);
    }
    return pending;
  }
}
