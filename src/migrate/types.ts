/** migrate: the options, results and plan entries its parts share. */

import type { Config } from '../config.js';
import type { Layout } from '../layouts/index.js';
import type { Metadata, ObjectInfo } from '../storage/types.js';
import type { Logger } from '../util/logger.js';

/** Where lines and the progress bar go: a stream, or anything with write(). */
export interface Output {
  write(text: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

export interface MigrateOptions {
  /** The .env file of the source backend. */
  from: string;
  /** The .env file of the destination backend. */
  to: string;
  /**
   * The layout of the source (default `registry`): `modelstore` or `rasa-nlu-mongodb` import
   * another tool's models (src/layouts/).
   */
  fromLayout?: Layout;
  /** Print the plan; change nothing. */
  dryRun?: boolean;
  /** Objects copied at the same time (default 4). */
  concurrency?: number;
  /** Aborting stops starting new objects and cancels those in flight; nothing partial is left. */
  signal?: AbortSignal;
  /** Per-object lines and the summary (default process.stdout). */
  stdout?: Output;
  /** The progress bar, drawn only when this is a TTY (default process.stderr). */
  stderr?: Output;
  /** Logger for the storage backends; by default their warnings are printed as lines. */
  logger?: Logger;
  /** Called as each object is settled (tests use it to interrupt a run). */
  onObject?: (result: ObjectResult) => void;
}

export type ObjectStatus = 'copied' | 'skipped' | 'failed' | 'would-copy' | 'not-copied';

export interface ObjectResult {
  key: string;
  name: string;
  version: number;
  /** True for the model's current object, false for a history entry or record. */
  current: boolean;
  /** True for a version's record (`.history/{name}/v{N}.json`), copied as it is. */
  record: boolean;
  /** True for the model's aliases document (`.aliases/{name}.json`), copied as it is (a record too). */
  aliases?: boolean;
  size: number;
  status: ObjectStatus;
  /** Bytes written to the destination (0 when only the metadata was updated). */
  bytes: number;
  /** Why it failed, or a note ('identical', 'metadata only'). */
  detail?: string;
}

export interface MigrationSummary {
  objects: ObjectResult[];
  total: number;
  copied: number;
  copiedBytes: number;
  skipped: number;
  failed: number;
  /** Not copied because the run was interrupted. */
  notCopied: number;
  /** In a dry run: objects that would be copied. */
  wouldCopy: number;
  dryRun: boolean;
  /** True when the run stopped (signal) before every object was settled. */
  interrupted: boolean;
  durationMs: number;
  /** The summary line printed at the end. */
  line: string;
  /** 0 when nothing failed and nothing was left out by an interruption; 1 otherwise. */
  exitCode: 0 | 1;
}

/** One backend as named by a .env file. */
export interface Endpoint {
  file: string;
  config: Config;
  /** Human description without secrets, e.g. `aws bucket models`. */
  label: string;
  /** Identity for the same-storage check (may contain secrets; never printed). */
  identity: string;
}

export type Action = 'copy' | 'skip' | 'metadata' | 'check' | 'compare' | 'conflict';

export interface Planned {
  key: string;
  name: string;
  current: boolean;
  /** A record: small JSON, copied byte for byte without metadata (records.ts). */
  record: boolean;
  /** The aliases document, a record of its own kind (aliases.ts). */
  aliases?: boolean;
  source: ObjectInfo;
  /** Version for a source object without version metadata (the one its record or digest gives). */
  inferredVersion: number;
  /**
   * The metadata the destination object gets once the digest of its bytes is known: the
   * source's own, or what the registry infers for an object without it (records.ts).
   */
  target: (sha256: string, source: ObjectInfo) => Metadata;
  destination: ObjectInfo | undefined;
  /**
   * The destination's object may be replaced: it is the current version, written by the
   * registry, older than the source's (a rerun after the source moved on). It is archived into
   * the destination's history first, so nothing is lost. Never otherwise.
   */
  replaceable: boolean;
  action: Action;
}
