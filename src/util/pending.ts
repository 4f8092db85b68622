/** Work started without being awaited (cache fills, version records) that a shutdown still waits for. */
export class Pending {
  readonly #running = new Set<Promise<unknown>>();

  /** Tracks `work` until it settles; returns it. */
  track<T>(work: Promise<T>): Promise<T> {
    this.#running.add(work);
    const done = () => this.#running.delete(work);
    work.then(done, done);
    return work;
  }

  /** Resolves once everything tracked so far has settled; never rejects. */
  async settled(): Promise<void> {
    await Promise.allSettled(this.#running);
  }
}
