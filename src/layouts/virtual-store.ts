/**
 * A read-only Storage that shows models read from another tool's layout as if a registry had
 * published them (SPEC §4, README "Storage layout"): for each version N of a model,
 * `.history/{name}/v{N}.json` (its record) and `.history/{name}/v{N}.tar.gz` (its bytes), and the
 * newest version again as `{name}.tar.gz`, every object with the registry's metadata.
 *
 * `migrate` copies from it unchanged, so an import keeps everything migrate promises — the plan
 * and dry run, the progress bar, verification of every byte against the sha256 (the bytes are read
 * again while copying), idempotent reruns (same records and metadata → skipped), conflicts left
 * alone. Writing methods throw: an importer's source is only ever read.
 */
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { NotFoundError } from '../errors.js';
import { type Aliases, encodeAliases } from '../registry/aliases.js';
import { isValidAlias, keys, type Labels } from '../registry/names.js';
import { encodeMetadata, encodeRecord } from '../registry/records.js';
import { copyOutByStream } from '../storage/shared/copy-out.js';
import { levelOf, objectsOf } from '../storage/shared/entries.js';
import type { ListEntry, ObjectInfo, ReadOptions, Storage, StorageCapabilities } from '../storage/types.js';
import type { AliasToSet } from './index.js';

/** One version as the importer found it. */
export interface ImportedVersion {
  version: number;
  sha256: string;
  size: number;
  createdAt: string;
  labels: Labels;
  /** Where it was read from (for lines and errors), e.g. `operatorai-model-store/intent/…`. */
  origin: string;
  /** Opens exactly the bytes that were hashed (the verifier fails a copy if they changed). */
  open(options?: ReadOptions): Promise<Readable>;
}

export interface ImportedModel {
  name: string;
  /** Ascending version numbers (gaps allowed: a number kept for a model the source deleted). */
  versions: ImportedVersion[];
}

interface Entry {
  info: ObjectInfo;
  open: (options?: ReadOptions) => Promise<Readable>;
}

export class VirtualStore implements Storage {
  readonly kind: string;
  readonly capabilities: StorageCapabilities = {
    listIncludesMetadata: true,
    uniqueTokens: false,
    localFiles: false,
    signedUrls: false,
    stagesInPlace: false,
  };
  readonly #entries = new Map<string, Entry>();
  readonly #close: () => Promise<void>;

  /**
   * `lastModified` of every object: the import's creation time (no source object stands for a
   * record). `close` releases what the importer opened.
   */
  constructor(kind: string, models: ImportedModel[], close: () => Promise<void>, aliases: AliasToSet[] = []) {
    this.kind = kind;
    this.#close = close;
    this.#addAliases(models, aliases);
    for (const model of models) {
      for (const v of model.versions) {
        const metadata = encodeMetadata({
          version: v.version,
          sha256: v.sha256,
          createdAt: v.createdAt,
          labels: v.labels,
        });
        const info = (key: string, size: number, token: string): ObjectInfo => ({
          key,
          size,
          token,
          lastModified: new Date(v.createdAt),
          metadata,
        });
        // The record, byte for byte what the registry writes: the same version read twice is the
        // same record, so a rerun compares equal.
        const record = encodeRecord({
          version: v.version,
          sha256: v.sha256,
          size: v.size,
          createdAt: v.createdAt,
          labels: v.labels,
          origin: 'upload',
        });
        this.#setBytes(
          keys.record(model.name, v.version),
          Buffer.from(record),
          `record-${v.sha256}`,
          new Date(v.createdAt),
        );
        this.#entries.set(keys.history(model.name, v.version), {
          info: info(keys.history(model.name, v.version), v.size, v.sha256),
          open: v.open,
        });
      }
      const newest = model.versions.at(-1);
      if (newest) {
        const entry = this.#entries.get(keys.history(model.name, newest.version))!;
        this.#entries.set(keys.current(model.name), {
          info: { ...entry.info, key: keys.current(model.name) },
          open: entry.open,
        });
      }
    }
  }

  /**
   * The aliases document of each model the source tags (modelstore's states), as the registry
   * writes it; updatedAt is the tagged version's creation time, so a rerun is identical.
   */
  #addAliases(models: ImportedModel[], aliases: AliasToSet[]): void {
    const byModel = new Map<string, Aliases>();
    for (const a of aliases) {
      const v = models.find((m) => m.name === a.name)?.versions.find((x) => x.version === a.version);
      if (!v || !isValidAlias(a.alias)) continue;
      const doc = byModel.get(a.name) ?? new Map();
      doc.set(a.alias, { version: v.version, sha256: v.sha256, updatedAt: v.createdAt });
      byModel.set(a.name, doc);
    }
    for (const [name, doc] of byModel) {
      const body = Buffer.from(encodeAliases(doc));
      this.#setBytes(
        keys.aliases(name),
        body,
        `aliases-${createHash('sha256').update(body).digest('hex')}`,
        new Date(0),
      );
    }
  }

  /** A small object of the registry's own (a record, an aliases document), held in memory. */
  #setBytes(key: string, body: Buffer, token: string, lastModified: Date): void {
    this.#entries.set(key, {
      info: { key, size: body.length, token, lastModified, metadata: {} },
      open: async (o) => Readable.from([o?.range ? body.subarray(o.range.start, o.range.end + 1) : body]),
    });
  }

  async init(): Promise<void> {}

  async ping(): Promise<void> {}

  async head(key: string): Promise<ObjectInfo> {
    return this.#entry(key).info;
  }

  async get(key: string, options?: ReadOptions): Promise<{ info: ObjectInfo; body: Readable }> {
    const entry = this.#entry(key);
    return { info: entry.info, body: await entry.open(options) };
  }

  list(prefix: string, options: { startAfter?: string } = {}): AsyncIterable<ObjectInfo> {
    return objectsOf(this.listEntries(prefix, options));
  }

  async *listEntries(prefix: string, options: { startAfter?: string } = {}): AsyncIterable<ListEntry> {
    for (const key of levelOf(this.#entries.keys(), prefix, options.startAfter)) {
      yield key.endsWith('/') ? { folder: key } : { object: this.#entries.get(key)!.info };
    }
  }

  async sweep(): Promise<number> {
    return 0;
  }

  async close(): Promise<void> {
    await this.#close();
  }

  copyOut(key: string, token: string, dest: string): Promise<void> {
    return copyOutByStream(this, key, token, dest);
  }

  checkMetadata(): never {
    return readOnly();
  }

  stage(): never {
    return readOnly();
  }

  commit(): never {
    return readOnly();
  }

  discard(): never {
    return readOnly();
  }

  copy(): never {
    return readOnly();
  }

  setMetadata(): never {
    return readOnly();
  }

  delete(): never {
    return readOnly();
  }

  #entry(key: string): Entry {
    const entry = this.#entries.get(key);
    if (!entry) throw new NotFoundError(key);
    return entry;
  }
}

function readOnly(): never {
  throw new Error('an importer reads its source only');
}
