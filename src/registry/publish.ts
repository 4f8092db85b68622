/**
 * Publishing a version (upload or rollback): the compare-and-swap loop, step by step (every step
 * safe to crash after):
 *   1. claim number N = highest number taken + 1 by creating record v{N} (if-none-match);
 *   2. if the current object is one another tool wrote, keep a copy of it as its own version;
 *   3. write the new bytes to .history/{name}/v{N}.tar.gz (if-none-match);
 *   4. copy them to {name}.tar.gz on the condition that it is unchanged (the compare-and-swap);
 *   5. prune history beyond MODEL_HISTORY.
 * A crash or a lost race after 1 leaves a number that never became current: it is skipped, never
 * reused (numbers only ever rise). A lost race undoes 1 and retries from the new current version
 * with the bytes already stored; a client's own If-Match is re-checked each time.
 *
 * On a backend that stages in place (S3, GCS, Azure: capabilities.stagesInPlace), an upload takes its number
 * before its body streams (reserve(): record v{N} created as a tombstone, if-none-match), the body
 * streams straight to .history/{name}/v{N}.tar.gz (so step 3 is already done and costs no copy),
 * and publish() makes the tombstone the version's record before step 2. An upload refused or
 * failed meanwhile leaves its number a tombstone — skipped like a lost race's, never listed — and
 * no bytes (the store completes the write only when the body ended, and the validator errors the
 * body before its end). One whose client condition fails already at the start is staged as on
 * the other backends, and takes no number.
 */
import { errors, NotFoundError, PreconditionFailedError } from '../errors.js';
import type { Metadata, ObjectInfo, Storage } from '../storage/types.js';
import type { Logger } from '../util/logger.js';
import type { AliasStore } from './aliases.js';
import { checkClientCondition, writeCondition } from './conditions.js';
import type { Identifier } from './identify.js';
import { keys } from './names.js';
import {
  encodeMetadata,
  fromRecord,
  type HistoryScan,
  hasRegistryMetadata,
  recordOf,
  recordOfMetadata,
  type VersionRecord,
  type VersionRecords,
} from './records.js';
import type { ClientCondition, ModelVersion } from './types.js';

/** Bytes of a number that never became current are deleted once this old (see #prune): a
 * writer that lost the race copies its bytes to its next number within moments. */
const ABANDONED_AFTER_MS = 10 * 60_000;

/** Commit attempts under contention before giving up with 409; losers back off with jitter. */
const MAX_COMMIT_ATTEMPTS = 50;

/** A version about to be published: its record (less the number) and how to write its bytes. */
export interface Candidate {
  record: Omit<VersionRecord, 'version' | 'createdAt'>;
  /** Writes the bytes to `key` (if-none-match) with `metadata`. Called once. */
  write(key: string, metadata: Metadata): Promise<ObjectInfo>;
}

export interface PublisherOptions {
  storage: Storage;
  records: VersionRecords;
  aliases: AliasStore;
  identifier: Identifier;
  /** MODEL_HISTORY: older versions whose bytes are kept. */
  history: number;
  /** Bytes of a number that never became current are deleted once this old (default 10 min). */
  abandonedAfterMs?: number;
  logger: Logger;
  /** Called once a version became current, before history is pruned. */
  published(model: ModelVersion): void;
}

export class Publisher {
  readonly #o: PublisherOptions;

  constructor(options: PublisherOptions) {
    this.#o = options;
  }

  /**
   * The compare-and-swap loop shared by upload and rollback (steps 1-5 at the top of this file).
   * `candidate` sees the current version and says what to publish; it is asked again on a retry.
   */
  async publish(
    name: string,
    clientCondition: ClientCondition,
    candidate: (current: ModelVersion | undefined) => Promise<Candidate>,
    options: {
      mustExist?: boolean;
      reserved?: { record: VersionRecord; stored: ObjectInfo; current: ModelVersion | undefined };
    } = {},
  ): Promise<{ model: ModelVersion; created: boolean; stored: ObjectInfo }> {
    const { storage, records, logger: log } = this.#o;
    // The number this writer holds, and the bytes it stored under it. A lost race keeps both while
    // the number is still above the winner's: only a writer overtaken gives its number back.
    // `reserved`: an upload staged in place, its bytes already under its reserved number.
    let claimed: VersionRecord | undefined = options.reserved?.record;
    let stored: ObjectInfo | undefined = options.reserved?.stored;
    // The version whose record step 2 wrote again (the DELETE that removed it may be sweeping).
    let kept: number | undefined;
    try {
      if (claimed) await records.replace({ ...claimed, name }); // the reservation becomes a record
      for (let attempt = 0; attempt < MAX_COMMIT_ATTEMPTS; attempt++) {
        if (attempt > 0) {
          log.debug({ model: name, attempt }, 'concurrent write; retrying');
          await sleep(Math.random() * Math.min(5 * (attempt + 1), 100));
        }
        // The first try of a reserved upload goes by the current version reserve() saw: if it
        // changed since, the compare-and-swap fails and the next try reads it again.
        const current = attempt === 0 && options.reserved ? options.reserved.current : await this.current(name);
        if (!current && options.mustExist) throw errors.modelNotFound(name);
        checkClientCondition(name, current, clientCondition);
        const next = await candidate(current);
        if (claimed && current && current.version >= claimed.version) {
          await this.#giveBack(name, claimed.version);
          claimed = undefined;
        }
        const scan = await records.scan(name);
        if (!claimed) {
          const version = Math.max(scan.max, current?.version ?? 0) + 1;
          const record: VersionRecord = { ...next.record, version, createdAt: new Date().toISOString() };
          if (!(await this.#claim(name, record))) continue; // another writer took N
          claimed = record;
        }
        try {
          if (current) await this.#keep(name, current, scan, () => (kept = current.version));
          const dest = keys.history(name, claimed.version);
          const metadata = encodeMetadata(claimed);
          if (stored?.key !== dest) {
            const previous = stored;
            const fresh = { metadata, condition: { ifNoneMatch: true } as const };
            stored = previous
              ? await storage.copy(previous.key, dest, { sourceToken: previous.token, ...fresh })
              : await next.write(dest, metadata);
            if (previous) await storage.delete(previous.key);
          }
          const condition = writeCondition(current);
          const info = await storage.copy(dest, keys.current(name), { sourceToken: stored.token, metadata, condition });
          const model = fromRecord(name, claimed, info);
          const published = { model, created: !current, stored };
          claimed = stored = undefined; // published: no longer ours to undo
          this.#o.published(model);
          await this.#prune(name, model.version, current?.version ?? 0).catch((err) => {
            log.warn({ err, model: name }, 'pruning history failed');
          });
          return published;
        } catch (err) {
          // The bytes stored for it went with a DELETE of the model that landed meanwhile.
          if (err instanceof NotFoundError && stored && err.key === stored.key) {
            stored = undefined;
            if (kept !== undefined) await this.#forgetKept(name, kept);
            throw errors.deletedWhilePublishing(name);
          }
          if (!(err instanceof PreconditionFailedError)) throw err;
        }
      }
      throw errors.conflict(name);
    } finally {
      if (claimed) await this.#giveBack(name, claimed.version);
      if (stored) await storage.delete(stored.key).catch(() => {});
    }
  }

  /**
   * For an upload staged in place: takes the number it will be written under before its body
   * streams, as a tombstone (see the top of this file). Undefined when the client's condition
   * fails already: such an upload takes the staged way and its 412 comes from publish(), once
   * the body is in (as on every backend: a refusal before the body is read would break the
   * connection of a client still sending it), without a number skipped. Numbers never go back:
   * an upload that fails after this leaves its number skipped.
   */
  async reserve(
    name: string,
    clientCondition: ClientCondition,
  ): Promise<{ version: number; createdAt: string; current: ModelVersion | undefined } | undefined> {
    for (let attempt = 0; attempt < MAX_COMMIT_ATTEMPTS; attempt++) {
      if (attempt > 0) await sleep(Math.random() * Math.min(5 * (attempt + 1), 100));
      const current = await this.current(name);
      if (!holds(name, current, clientCondition)) return undefined;
      const scan = await this.#o.records.scan(name);
      const version = Math.max(scan.max, current?.version ?? 0) + 1;
      if (await this.#o.records.reserve(name, version)) {
        return { version, createdAt: new Date().toISOString(), current };
      }
    }
    throw errors.conflict(name);
  }

  /** The current version, or undefined when the name has none. */
  async current(name: string): Promise<ModelVersion | undefined> {
    return this.#o.identifier.describeKey(name, keys.current(name)).catch((err) => {
      if (err instanceof NotFoundError) return undefined;
      throw err;
    });
  }

  /** The versions aliases of `name` point to. */
  async aliasedVersions(name: string): Promise<Set<number>> {
    return new Set([...(await this.#o.aliases.read(name)).aliases.values()].map((t) => t.version));
  }

  /** Step 1: true when this writer now holds the number. */
  async #claim(name: string, record: VersionRecord): Promise<boolean> {
    return this.#o.records.create({ ...record, name }).then(
      () => true,
      (err: unknown) => {
        if (err instanceof PreconditionFailedError) return false;
        throw err;
      },
    );
  }

  /** A number that never became current stays taken (numbers never go back), as a tombstone. */
  async #giveBack(name: string, version: number): Promise<void> {
    await this.#o.records.tombstone(name, version).catch((err: unknown) => {
      this.#o.logger.warn({ err, model: name, version }, 'could not mark an unused number');
    });
  }

  /**
   * Step 2 of publishing: the version about to be replaced keeps its bytes and record in history.
   * A version the registry published has both already; an object another tool wrote (or one a
   * store of an earlier release holds) gets a copy — the only copy of its bytes the registry makes.
   * Failures are left to the compare-and-swap: a current object that changed meanwhile fails it.
   * `recorded` is called when this wrote the record (see #forgetKept).
   */
  async #keep(name: string, current: ModelVersion, scan: HistoryScan, recorded: () => void): Promise<void> {
    if (!scan.records.has(current.version)) {
      await this.#o.records.create({ ...recordOf(current), name }).then(recorded, (err: unknown) => {
        if (!(err instanceof PreconditionFailedError)) throw err;
      });
    }
    if (scan.bytes.has(current.version)) return;
    // MODEL_HISTORY=0 keeps no older bytes, except those of a version an alias points to.
    if (this.#o.history === 0 && !(await this.aliasedVersions(name)).has(current.version)) return;
    await this.#o.storage
      .copy(current.storageKey, keys.history(name, current.version), {
        sourceToken: current.token,
        metadata: encodeMetadata(current),
        condition: { ifNoneMatch: true },
      })
      .catch((err: unknown) => {
        if (err instanceof NotFoundError) throw new PreconditionFailedError(current.storageKey, { cause: err });
        if (!(err instanceof PreconditionFailedError)) throw err; // kept by another writer, or changed
      });
  }

  /**
   * A DELETE swept this publish's bytes: if the model is gone, the record (and bytes) step 2 wrote
   * again for the version it replaced go too — the DELETE had removed them already (it keeps only
   * the highest number), and a deleted model keeps no digest or labels. Step 2 writes them again
   * whenever a DELETE removed them while this publish was under way, which on a backend that
   * stages in place spans the whole upload.
   */
  async #forgetKept(name: string, version: number): Promise<void> {
    const { storage, records } = this.#o;
    const gone = await storage.head(keys.current(name)).then(
      () => false,
      (err: unknown) => err instanceof NotFoundError,
    );
    if (!gone) return;
    await storage.delete(keys.history(name, version)).catch(() => {});
    await records.remove(name, version).catch(() => {});
  }

  /**
   * Deletes history beyond the newest MODEL_HISTORY versions older than `current`, bytes and
   * records. The current version's own history copy stays (it is what protects it from an
   * external overwrite), and so does the highest record (the number the next version follows).
   * History that a store of an earlier release kept without records gets them here.
   */
  async #prune(name: string, current: number, replaced: number): Promise<void> {
    const { storage, records } = this.#o;
    const scan = await records.scan(name);
    // The numbers between the version this one replaced and this one never became current:
    // writers that lost the race to it (they give them back themselves) or that died after
    // storing their bytes (nobody else would). Each becomes a tombstone now, so that no listing
    // ever shows it as a version; its bytes go once they are older than a publish can take
    // (a live loser still copies them to its next number).
    for (const version of scan.records) {
      if (version > replaced && version < current && !scan.tombstones.has(version)) {
        await records.tombstone(name, version);
        scan.tombstones.add(version);
      }
    }
    const abandoned = (v: number) => scan.tombstones.has(v) && scan.bytes.has(v);
    const cutoff = Date.now() - (this.#o.abandonedAfterMs ?? ABANDONED_AFTER_MS);
    for (const version of [...scan.bytes.keys()].filter((v) => v < current && abandoned(v))) {
      if (scan.bytes.get(version)!.lastModified.getTime() <= cutoff) {
        await storage.delete(keys.history(name, version));
      }
    }
    // Never touch versions >= current: a concurrent writer may just have claimed them.
    const older = [...new Set([...scan.bytes.keys(), ...scan.records])]
      .filter((v) => v < current && !abandoned(v))
      .sort((a, b) => b - a);
    const kept = new Set(older.filter((v) => scan.bytes.has(v)).slice(0, this.#o.history));
    // Read just before deleting (an alias set meanwhile re-checks its version: setAlias), and
    // only when something would be deleted: most publishes prune nothing and read nothing more.
    const deleting = older.some((v) => !kept.has(v) && (scan.bytes.has(v) || (scan.records.has(v) && v !== scan.max)));
    const aliased = deleting ? await this.aliasedVersions(name) : new Set<number>();
    for (const version of older) {
      if (kept.has(version) || aliased.has(version)) {
        if (!scan.records.has(version)) await this.#recordFromMetadata(name, scan.bytes.get(version)!, version);
        continue;
      }
      if (scan.bytes.has(version)) await storage.delete(keys.history(name, version));
      if (scan.records.has(version) && version !== scan.max) await records.remove(name, version);
    }
  }

  async #recordFromMetadata(name: string, listed: ObjectInfo, version: number): Promise<void> {
    const info = hasRegistryMetadata(listed.metadata) ? listed : await this.#o.storage.head(listed.key);
    if (!hasRegistryMetadata(info.metadata)) return;
    await this.#o.records.create({ ...recordOfMetadata(info, version), name }).catch((err: unknown) => {
      if (!(err instanceof PreconditionFailedError)) throw err;
    });
  }
}

/** The client's condition holds against `current`. */
function holds(name: string, current: ModelVersion | undefined, condition: ClientCondition): boolean {
  try {
    checkClientCondition(name, current, condition);
    return true;
  } catch {
    return false;
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
