/**
 * Model archives: what an upload may hold (the validator: archive/validator.ts, its path and
 * link rules: archive/rules.ts, the strict second reading of tar headers: archive/tar-headers.ts),
 * and those rules as the cache extracts by them.
 */
import { createReadStream } from 'node:fs';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ArchiveRules } from '../cache/index.js';
import { isEmptyRootWarning, ROOT_NAMES } from './archive/rules.js';
import { ArchiveValidator } from './archive/validator.js';

export { isEmptyRootWarning, MAX_COMPONENT_BYTES, MAX_PATH_BYTES, ROOT_NAMES } from './archive/rules.js';
export { ArchiveValidator } from './archive/validator.js';

export interface ArchiveLimits {
  maxModelBytes: number;
  maxExtractedBytes: number;
  maxEntries: number;
}

/** What the body is: a gzipped tar (stored as-is) or a plain tar (gzipped by the server). */
export type ArchiveFormat = 'gzip' | 'tar';

export interface ArchiveSummary {
  /** Bytes received and their SHA-256 (what a client's Content-Digest describes). */
  receivedBytes: number;
  receivedSha256: string;
  entries: number;
  extractedBytes: number;
  /**
   * Root directory entries with an empty name: not in `entries`, and the one warning node-tar
   * gives an extraction of this archive (it skips them), so an extractor can tell it from others.
   */
  emptyRoots: number;
}

/** The upload rules as the cache extracts by them (it validates every archive before extracting). */
export function archiveRules(limits: ArchiveLimits): ArchiveRules {
  return {
    async check(file) {
      const validator = new ArchiveValidator('gzip', limits);
      await pipeline(createReadStream(file), validator, new Writable({ write: (_c, _e, cb) => cb() }));
      return { emptyRoots: validator.summary.emptyRoots };
    },
    rootNames: ROOT_NAMES,
    isEmptyRootWarning,
  };
}
