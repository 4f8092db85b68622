/** The registry's vocabulary: what the routes hand it and what it hands back. */
import type { Readable } from 'node:stream';
import type { ArchiveFormat } from './archive.js';
import type { Labels } from './names.js';
import type { Origin } from './records.js';

export interface ModelVersion {
  name: string;
  version: number;
  sha256: string;
  size: number;
  createdAt: string;
  labels: Labels;
  storageKey: string;
  /** The storage token of the object described; internal, never sent to clients. */
  token: string;
  /** Where the version came from, when the registry knows. */
  origin?: Origin;
}

/** A listed model: the fields the backend gives cheaply; version and digest when known. */
export interface ModelSummary {
  name: string;
  size: number;
  updatedAt: string;
  version?: number;
  sha256?: string;
  labels?: Labels;
  /** Alias → version, for every alias of the model. */
  aliases: Record<string, number>;
}

/** What GET /models asks: a page of models, filtered and sorted. */
export interface ListOptions {
  prefix?: string;
  limit: number;
  /** The nextCursor of the previous page (its form depends on `sort`). */
  cursor?: string;
  /** Only models whose current version has every one of these labels. */
  labels?: Labels;
  /** Only models that have this alias. */
  alias?: string;
  /** `name` (ascending, the default) or `updatedAt` (newest first, then by name). */
  sort?: 'name' | 'updatedAt';
}

/** What the client asked with If-Match / If-None-Match on a write. */
export type ClientCondition = { ifNoneMatch: true } | { ifMatch: string[] | '*' } | Record<string, never>;

/** Client's claimed digest of the body, from Content-Digest or X-Checksum-Sha256. */
export interface ExpectedDigest {
  header: string;
  sha256: string;
}

export interface UploadInput {
  body: Readable;
  format: ArchiveFormat;
  labels: Labels;
  expected?: ExpectedDigest;
  condition: ClientCondition;
  signal?: AbortSignal;
}

/** Where the bytes of a read come from: the cache (HIT), storage through the cache (MISS). */
export type CacheStatus = 'HIT' | 'MISS' | 'BYPASS';

/** A byte range, both ends included. */
export type ByteRange = { start: number; end: number };
