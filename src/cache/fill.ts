/**
 * One download into the cache, which readers follow as it arrives (see the Fill class below).
 */
import { createHash, randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import fs from 'node:fs/promises';
import path from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { CacheDiskError, isDiskError } from './errors.js';
import type { Entry, Fetch, Range } from './types.js';

/** Bytes of a fill kept in memory for the readers following it. */
const RECENT_BYTES = 4 * 1024 * 1024;

/**
 * One download into the cache. Bytes are hashed and written to a temp file. Readers follow the
 * download: the most recent bytes (`#recent`: every chunk not yet on disk, and at least the last
 * RECENT_BYTES) are taken from memory, so a reader that keeps up with the download never waits
 * for the disk nor reads the file back; a reader further behind reads the file ("tail -f").
 * A reader that ends at the archive's last byte holds that byte back until the download matched
 * its digest: if it does not, the reader fails instead, so a client never receives a whole
 * response whose bytes differ from the ETag and Content-Digest it was sent.
 */
export class Fill extends EventEmitter {
  readonly file: string;
  /** Bytes on disk (written to the temp file). */
  written = 0;
  /** Bytes received from storage (hashed; on disk or about to be). */
  received = 0;
  /** The latest received chunks, in order, with their offsets; `#recentBytes` in all. */
  #recent: { offset: number; chunk: Buffer }[] = [];
  #recentBytes = 0;
  /** All bytes received and their SHA-256 matched (the file may not be synced yet). */
  verified = false;
  done = false;
  error: Error | undefined;
  readonly started: Promise<void>;
  /** Settles when the archive is in the cache (or the fill failed). */
  readonly completed: Promise<void>;
  #markStarted!: () => void;
  #failStart!: (err: Error) => void;
  #complete!: (err?: Error) => void;
  readonly #abort = new AbortController();
  /** Readers following this fill; once it is an entry, they count as the entry's readers. */
  #readers = 0;
  #entry: Entry | undefined;

  constructor(
    dir: string,
    readonly digest: string,
    readonly size: number,
    /** Called when a reader of the fill's entry (after finish()) is done. */
    readonly onRelease: (entry: Entry) => void,
  ) {
    super();
    this.setMaxListeners(0);
    this.file = path.join(dir, 'tmp', `${digest}.${randomUUID()}.part`);
    this.started = new Promise((resolve, reject) => {
      this.#markStarted = resolve;
      this.#failStart = reject;
    });
    this.started.catch(() => {});
    this.completed = new Promise((resolve, reject) => {
      this.#complete = (err) => (err ? reject(err) : resolve());
    });
    this.completed.catch(() => {});
  }

  async run(fetch: Fetch): Promise<void> {
    const handle = await fs.open(this.file, 'wx').catch((err: unknown) => {
      throw new CacheDiskError(err);
    });
    try {
      const source = await fetch(this.#abort.signal);
      this.#markStarted();
      const hash = createHash('sha256');
      const sink = new Writable({
        // Chunks queue here while a write is on the thread pool, then go to disk in one writev.
        // (Larger buffers here and in RECENT_BYTES measured slower: chunks held longer are
        // promoted to V8's old space, and the garbage collector then costs more than the copy.)
        highWaterMark: 1024 * 1024,
        writev: (entries: { chunk: Buffer }[], cb) => {
          const chunks = entries.map((e) => e.chunk);
          for (const chunk of chunks) {
            hash.update(chunk);
            this.#recent.push({ offset: this.received, chunk });
            this.#recentBytes += chunk.length;
            this.received += chunk.length;
          }
          if (this.received > this.size) return cb(new Error(`fetched archive is larger than its ${this.size} bytes`));
          this.emit('progress');
          writeAll(handle, chunks).then(
            (bytes) => {
              this.written += bytes;
              this.#trimRecent();
              this.emit('progress');
              cb();
            },
            (err: Error) => cb(isDiskError(err) ? new CacheDiskError(err) : err),
          );
        },
      });
      await pipeline(source, sink, { signal: this.#abort.signal });
      const actual = hash.digest('hex');
      if (actual !== this.digest || this.written !== this.size) {
        const got = `got ${actual}, ${this.written} of ${this.size} bytes`;
        throw new Error(`fetched archive does not match its digest (expected ${this.digest}, ${got})`);
      }
      this.verified = true;
      this.emit('progress');
      await handle.sync().catch((err: unknown) => {
        throw isDiskError(err) ? new CacheDiskError(err) : err;
      });
    } finally {
      await handle.close();
    }
  }

  /** Counts a reader of this fill, then of its entry (eviction leaves it alone); returns its release. */
  hold(): () => void {
    // After finish() the readers are the entry's (finish moved the count over).
    if (this.#entry) this.#entry.readers++;
    else this.#readers++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      if (this.#entry) this.onRelease(this.#entry);
      else this.#readers--;
    };
  }

  /** Stops the download (the fill then fails); a fill whose bytes all arrived completes. */
  abort(reason: Error): void {
    this.#abort.abort(reason);
  }

  finish(entry: Entry): void {
    this.done = true;
    this.#recent = []; // everything is in the final file now
    this.#recentBytes = 0;
    this.#entry = entry;
    entry.readers += this.#readers;
    this.#complete();
    this.emit('progress');
  }

  fail(err: Error): void {
    this.error = err;
    this.#recent = [];
    this.#recentBytes = 0;
    this.#failStart(err);
    this.#complete(err);
    this.emit('progress');
  }

  /** Drops the oldest chunks that are on disk, keeping at least RECENT_BYTES. */
  #trimRecent(): void {
    let drop = 0;
    for (const { offset, chunk } of this.#recent) {
      if (offset + chunk.length > this.written || this.#recentBytes - chunk.length < RECENT_BYTES) break;
      this.#recentBytes -= chunk.length;
      drop++;
    }
    if (drop > 0) this.#recent = this.#recent.slice(drop);
  }

  /** Bytes at `offset` (at most `max`) while they are still in memory. */
  fromMemory(offset: number, max: number): Buffer | undefined {
    const first = this.#recent[0];
    if (!first || offset < first.offset || offset >= this.received) return undefined;
    // Binary search: the chunk holding `offset`.
    let lo = 0;
    let hi = this.#recent.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.#recent[mid]!.offset <= offset) lo = mid;
      else hi = mid - 1;
    }
    const { offset: at, chunk } = this.#recent[lo]!;
    return chunk.subarray(offset - at, Math.min(chunk.length, offset - at + max));
  }

  /** A stream of bytes [start, end] that follows the fill. */
  reader(range?: Range): Readable {
    const start = range?.start ?? 0;
    const end = range?.end ?? this.size - 1;
    let offset = start;
    let handle: fs.FileHandle | undefined;
    let reading = false;
    const fill = this;
    const release = this.hold();
    const finalPath = path.join(path.dirname(path.dirname(this.file)), 'blobs', `${this.digest}.tar.gz`);
    const stream = new Readable({
      highWaterMark: 256 * 1024,
      async read() {
        if (reading) return;
        reading = true;
        try {
          // Open lazily; once the fill has been renamed into place, read the final file.
          if (!handle) {
            const opened = await fs.open(fill.file, 'r').catch(() => fs.open(finalPath, 'r'));
            // Destroyed while opening (the client left): destroy() found no handle to close.
            if (this.destroyed) return void (await opened.close());
            handle = opened;
          }
          for (;;) {
            if (offset > end) return void this.push(null);
            if (fill.error) throw fill.error;
            // The archive's last byte only once the whole download matched its digest.
            const limit = end === fill.size - 1 && !fill.verified ? end : end + 1;
            const bytes = offset < limit ? fill.fromMemory(offset, limit - offset) : undefined;
            if (bytes) {
              offset += bytes.length;
              if (!this.push(bytes)) return;
              continue;
            }
            const available = Math.min(fill.done ? fill.size : fill.written, limit);
            if (offset < available) {
              const length = Math.min(available - offset, 256 * 1024);
              const buffer = Buffer.allocUnsafe(length);
              const { bytesRead } = await handle.read(buffer, 0, length, offset);
              // The fill said these bytes were written: a short file was changed under us.
              if (bytesRead === 0) throw new Error(`cache file ended at ${offset} of ${available} bytes`);
              offset += bytesRead;
              if (!this.push(buffer.subarray(0, bytesRead))) return;
              continue;
            }
            await new Promise<void>((resolve) => fill.once('progress', resolve));
          }
        } catch (err) {
          this.destroy(err as Error);
        } finally {
          reading = false;
        }
      },
      destroy(err, cb) {
        release();
        void (handle?.close() ?? Promise.resolve()).finally(() => cb(err));
      },
    });
    return stream;
  }
}

/** Writes `chunks` at the file position, all of them (writev may write less); returns the bytes. */
async function writeAll(handle: fs.FileHandle, chunks: Buffer[]): Promise<number> {
  let left = chunks;
  let done = 0;
  while (left.length > 0) {
    // At most IOV_MAX (1024) buffers per call.
    const { bytesWritten } = await handle.writev(left.slice(0, 1024));
    if (bytesWritten === 0) throw new Error('the disk took no bytes');
    done += bytesWritten;
    let skip = bytesWritten;
    const rest: Buffer[] = [];
    for (const c of left) {
      if (skip >= c.length) skip -= c.length;
      else {
        rest.push(skip > 0 ? c.subarray(skip) : c);
        skip = 0;
      }
    }
    left = rest;
  }
  return done;
}
