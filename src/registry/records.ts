/**
 * The registry's own records of the versions it numbered: `.history/{name}/v{N}.json`, one small
 * JSON file per version, beside the immutable bytes `.history/{name}/v{N}.tar.gz`.
 *
 * Why files and not object metadata: a record must travel with a plain copy of the storage
 * (`cp -a`, `rsync -a`, `aws s3 sync` from a directory to a bucket and back), and only the keys and
 * bytes of objects survive every one of those. Object metadata (S3 user metadata, GCS/Azure
 * metadata, the local backend's token-named sidecars) stays the fast path on the store that wrote
 * it; the records are what a copy falls back on.
 *
 * Why a record per version: creating `v{N}.json` with if-none-match is how a writer claims number
 * N — the storage's own conditional write decides between two writers, on every backend — and the
 * highest record is how numbers keep rising after history is pruned or deleted. A deleted model
 * leaves its highest record as a tombstone that holds only the number (no labels, no digest), so
 * a model created again under the name never gets a number an HTTP cache may still hold.
 */
import { Readable } from 'node:stream';
import { NotFoundError, PreconditionFailedError } from '../errors.js';
import type { Metadata, ObjectInfo, Storage, WriteCondition } from '../storage/types.js';
import { keys, type Labels } from './names.js';
import type { ModelVersion } from './types.js';

/** Where a version came from: an upload, a rollback, or an object another tool wrote. */
export type Origin = 'upload' | 'rollback' | 'external';

export interface VersionRecord {
  version: number;
  sha256: string;
  size: number;
  createdAt: string;
  labels: Labels;
  origin: Origin;
}

/** What a model's history folder holds, from one listing. */
export interface HistoryScan {
  /** Versions whose bytes are kept, with what the listing says of them. */
  bytes: Map<number, ObjectInfo>;
  /** Versions with a record (tombstones included). */
  records: Set<number>;
  /** Versions whose record is a tombstone (a number given back, or a deleted model's last). */
  tombstones: Set<number>;
  /** The highest number any writer took for this name (0 when none). */
  max: number;
}

/**
 * A tombstone (`{"version":N,"deleted":true}`) is told from a record by its size in a listing,
 * without reading it: a record holds a 64-digit digest, so it is never this small.
 */
export function isTombstoneSize(size: number): boolean {
  return size > 0 && size < 64;
}

/** A record is a few hundred bytes; anything far larger is not ours. */
const MAX_RECORD_BYTES = 64 * 1024;
const TOMBSTONE = 'deleted';
/** Records read back to find the newest live one: tombstones come one per lost race. */
const NEWEST_LOOKS = 8;

export class VersionRecords {
  readonly #storage: Storage;

  constructor(storage: Storage) {
    this.#storage = storage;
  }

  async scan(name: string): Promise<HistoryScan> {
    const scan: HistoryScan = { bytes: new Map(), records: new Set(), tombstones: new Set(), max: 0 };
    for await (const info of this.#storage.list(keys.historyPrefix(name))) {
      const archived = keys.versionOf(info.key);
      const recorded = keys.recordVersionOf(info.key);
      if (archived !== undefined) scan.bytes.set(archived, info);
      if (recorded !== undefined) scan.records.add(recorded);
      if (recorded !== undefined && isTombstoneSize(info.size)) scan.tombstones.add(recorded);
      scan.max = Math.max(scan.max, archived ?? 0, recorded ?? 0);
    }
    return scan;
  }

  /** The record of version N, or undefined when it has none (or only a tombstone). */
  async read(name: string, version: number): Promise<VersionRecord | undefined> {
    let opened: { info: ObjectInfo; body: Readable };
    try {
      opened = await this.#storage.get(keys.record(name, version));
    } catch (err) {
      if (err instanceof NotFoundError) return undefined;
      throw err;
    }
    if (opened.info.size > MAX_RECORD_BYTES) {
      opened.body.destroy();
      return undefined;
    }
    const chunks: Buffer[] = [];
    for await (const chunk of opened.body) chunks.push(chunk as Buffer);
    return decodeRecord(Buffer.concat(chunks).toString('utf8'), version);
  }

  /**
   * The newest record that describes a version (tombstones of numbers given back are passed
   * over), or undefined.
   */
  async newest(name: string, scan: HistoryScan): Promise<VersionRecord | undefined> {
    const versions = [...scan.records].sort((a, b) => b - a).slice(0, NEWEST_LOOKS);
    for (const version of versions) {
      const record = await this.read(name, version);
      if (record) return record;
    }
    return undefined;
  }

  /** Claims number N: throws PreconditionFailedError when another writer holds it. */
  async create(record: VersionRecord & { name: string }): Promise<void> {
    await this.#write(keys.record(record.name, record.version), encodeRecord(record), { ifNoneMatch: true });
  }

  /**
   * Takes number N ahead of its bytes, as a tombstone (an upload staged in place: publish.ts
   * reserve()); false when another writer holds N. publish() makes it a record.
   */
  async reserve(name: string, version: number): Promise<boolean> {
    const tombstone = JSON.stringify({ version, [TOMBSTONE]: true });
    return this.#write(keys.record(name, version), tombstone, { ifNoneMatch: true }).then(
      () => true,
      (err: unknown) => {
        if (err instanceof PreconditionFailedError) return false;
        throw err;
      },
    );
  }

  /** Writes the record of a number this writer holds (a reservation becoming a version). */
  async replace(record: VersionRecord & { name: string }): Promise<void> {
    await this.#write(keys.record(record.name, record.version), encodeRecord(record), {});
  }

  /** Keeps only the number: of a deleted model's highest version, or of a publish that lost. */
  async tombstone(name: string, version: number): Promise<void> {
    await this.#write(keys.record(name, version), JSON.stringify({ version, [TOMBSTONE]: true }), {});
  }

  async remove(name: string, version: number): Promise<void> {
    await this.#storage.delete(keys.record(name, version));
  }

  async #write(key: string, text: string, condition: WriteCondition): Promise<void> {
    if (this.#storage.stageInPlace) {
      // One conditional write (S3 PutObject, GCS upload, Azure Put Blob), not a stage and a copy.
      await this.#storage.stageInPlace(key, Readable.from([Buffer.from(text)]), {}, { condition });
      return;
    }
    const staged = await this.#storage.stage(key, Readable.from([Buffer.from(text)]));
    try {
      await this.#storage.commit(staged, {}, condition);
    } finally {
      await this.#storage.discard(staged).catch(() => {});
    }
  }
}

/** A record as stored (importers write theirs with it, so a rerun compares equal). */
export function encodeRecord(r: VersionRecord): string {
  const { version, sha256, size, createdAt, labels, origin } = r;
  return JSON.stringify({ version, sha256, size, createdAt, labels, origin });
}

/** A record as stored, or undefined for a tombstone or anything that is not a whole record. */
export function decodeRecord(text: string, version: number): VersionRecord | undefined {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (!raw || typeof raw !== 'object' || (raw as Record<string, unknown>)[TOMBSTONE]) return undefined;
  const r = raw as Record<string, unknown>;
  if (r.version !== version || typeof r.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(r.sha256)) return undefined;
  if (typeof r.size !== 'number' || !Number.isSafeInteger(r.size) || r.size < 0) return undefined;
  if (typeof r.createdAt !== 'string' || Number.isNaN(Date.parse(r.createdAt))) return undefined;
  return {
    version,
    sha256: r.sha256,
    size: r.size,
    createdAt: r.createdAt,
    labels: stringEntries(r.labels),
    origin: r.origin === 'rollback' || r.origin === 'external' ? r.origin : 'upload',
  };
}

function stringEntries(value: unknown): Labels {
  if (!value || typeof value !== 'object' || Array.isArray(value)) return {};
  return Object.fromEntries(Object.entries(value).filter(([, v]) => typeof v === 'string')) as Labels;
}

// ---- the metadata written with each object the registry publishes (the fast path) ----

const META = { version: 'version', sha256: 'sha256', createdAt: 'created-at', labels: 'labels' } as const;
/** The metadata fields of a published object (migrate compares exactly these). */
export const METADATA_KEYS = Object.values(META);

export function encodeMetadata(m: { version: number; sha256: string; createdAt: string; labels: Labels }): Metadata {
  return {
    [META.version]: String(m.version),
    [META.sha256]: m.sha256,
    [META.createdAt]: m.createdAt,
    [META.labels]: JSON.stringify(m.labels),
  };
}

/**
 * The metadata of an upload staged in place (S3, GCS, Azure), fixed before its body streams: its number,
 * creation time and labels, but no digest (not known yet). Without a digest it does not count as
 * registry metadata: readers take the facts from the version's record, which travels with a
 * plain copy of the store; the current object gets the full metadata with the compare-and-swap.
 */
export function reservedMetadata(m: { version: number; createdAt: string; labels: Labels }): Metadata {
  return {
    [META.version]: String(m.version),
    [META.createdAt]: m.createdAt,
    [META.labels]: JSON.stringify(m.labels),
  };
}

/** True when an object carries the registry's metadata (it was published by a registry). */
export function hasRegistryMetadata(metadata: Metadata): boolean {
  const version = Number(metadata[META.version]);
  return Number.isSafeInteger(version) && version > 0 && /^[0-9a-f]{64}$/.test(metadata[META.sha256] ?? '');
}

export function metadataSha256(metadata: Metadata): string | undefined {
  return metadata[META.sha256];
}

/** The version field as written (undefined when absent; not necessarily a number). */
export function metadataVersion(metadata: Metadata): string | undefined {
  return metadata[META.version];
}

/**
 * The metadata fields of a registry-published object, with the defaults a reader applies
 * (creation time = last modified, no labels); undefined for an object without them.
 */
export function publishedMetadata(info: ObjectInfo): Metadata | undefined {
  if (!hasRegistryMetadata(info.metadata)) return undefined;
  const m = info.metadata;
  return {
    [META.version]: m[META.version]!,
    [META.sha256]: m[META.sha256]!,
    [META.createdAt]: m[META.createdAt] ?? info.lastModified.toISOString(),
    [META.labels]: m[META.labels] ?? '{}',
  };
}

export function decodeLabels(raw: string | undefined): Labels {
  if (!raw) return {};
  try {
    return stringEntries(JSON.parse(raw));
  } catch {
    return {}; // metadata written by hand; labels we cannot read are none
  }
}

/** The record a registry-published object's metadata stands for. */
export function recordOfMetadata(info: ObjectInfo, version?: number): VersionRecord {
  return {
    version: version ?? Number(info.metadata[META.version]),
    sha256: info.metadata[META.sha256]!,
    size: info.size,
    createdAt: info.metadata[META.createdAt] ?? info.lastModified.toISOString(),
    labels: decodeLabels(info.metadata[META.labels]),
    origin: 'upload',
  };
}

// ---- records and the versions they describe ----

/** A version as described by its record; `info` is the object holding its bytes. */
export function fromRecord(name: string, record: VersionRecord, info: ObjectInfo): ModelVersion {
  return {
    name,
    version: record.version,
    sha256: record.sha256,
    size: info.size,
    createdAt: record.createdAt,
    labels: record.labels,
    storageKey: info.key,
    token: info.token,
    origin: record.origin,
  };
}

export function recordOf(model: ModelVersion): VersionRecord {
  const { version, sha256, size, createdAt, labels } = model;
  return { version, sha256, size, createdAt, labels, origin: model.origin ?? 'upload' };
}

/** A version as described by the metadata a registry published its object with. */
export function toModel(name: string, info: ObjectInfo, version?: number): ModelVersion {
  return fromRecord(name, recordOfMetadata(info, version), info);
}
