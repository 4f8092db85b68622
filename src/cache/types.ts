/** The vocabulary of the cache: what it is asked to fetch, and whom it tells what it holds. */
import type { Readable } from 'node:stream';

export interface CacheObserver {
  hit(): void;
  miss(): void;
  evicted(count: number): void;
  bytes(total: number): void;
  /** Bytes of archives held in memory. */
  memoryBytes?(total: number): void;
}

/** A byte range, both ends included. */
export type Range = { start: number; end: number };
/** Opens the archive in storage; rejects if it is no longer the version asked for. */
export type Fetch = (signal: AbortSignal | undefined, range?: Range) => Promise<Readable>;

/** One archive of the disk index. */
export interface Entry {
  size: number;
  /** Bytes of derived data (the extracted tree) counted against the bound. */
  extra: number;
  lastUsed: number;
  /** When the stamp file's mtime (recency that survives a restart) was last set. */
  touchedAt: number;
  readers: number;
  verified: boolean;
  /** inode-mtime-size of the file when it was verified: a file changed since is hashed again. */
  stamp: string;
}
