/**
 * Local-disk backend. The root directory has the layout of a bucket (README "Storage layout"),
 * so copying it into one (`aws s3 sync`, `mc mirror`) gives a working bucket:
 *
 *   {key}                          objects, e.g. name.tar.gz, .history/name/v3.tar.gz
 *   .uploads/{pid}-{uuid}-{host}.part   staged uploads, invisible until renamed into place
 *   .uploads/locks/                 one lock directory per key while it is being changed
 *   .meta/{key}.{token}.json        metadata of the object whose token is {token}
 *
 * Atomicity: an upload is written and fsynced under .uploads/, then renamed over its key while
 * holding the key's lock (proper-lockfile: an mkdir lock, safe across processes sharing the
 * directory). rename(2) is atomic, so readers see the old file or the new one. The condition is
 * checked under the same lock, which makes commit a compare-and-swap for every process using
 * the lock. Metadata sidecars (sidecars.ts) are named by the token (inode + mtime + size) of the
 * file they describe and written before the rename; those of replaced files are deleted after it.
 */
import { type BigIntStats, createReadStream, createWriteStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import lockfile from 'proper-lockfile';
import { ConfigError } from '../../util/config-error.js';
import type { CommonSettings } from '../driver.js';
import { NotFoundError, PreconditionFailedError } from '../errors.js';
import { objectsOf } from '../shared/entries.js';
import { isAbandoned, newStagedName } from '../shared/staging.js';
import type {
  CommitOptions,
  InitOptions,
  ListEntry,
  Metadata,
  ObjectInfo,
  PublishOptions,
  ReadOptions,
  StagedObject,
  Storage,
  WriteCondition,
} from '../types.js';
import { translate } from './errors.js';
import { checkCondition, LOCK_STALE_MS, sweepLocks, syncDir, syncFile, toInfo, tokenOf } from './files.js';
import type { LocalSettings } from './settings.js';
import { META, Sidecars } from './sidecars.js';

/** This backend's settings and the common ones it uses. */
type Settings = LocalSettings & CommonSettings;

const UPLOADS = '.uploads';

class LocalStaged implements StagedObject {
  constructor(
    readonly key: string,
    readonly size: number,
    readonly file: string,
  ) {}
}

export function create(config: Settings): LocalStorage {
  return new LocalStorage({ root: config.LOCAL_STORAGE_DIR });
}

export interface LocalStorageOptions {
  root: string;
}

export class LocalStorage implements Storage {
  readonly kind = 'local';
  readonly capabilities = {
    listIncludesMetadata: true,
    uniqueTokens: true,
    localFiles: true,
    signedUrls: false,
    stagesInPlace: false,
  };
  readonly root: string;
  /** Staged files this process is writing or holding, which sweep() must leave alone. */
  readonly #active = new Set<string>();
  readonly #sidecars: Sidecars;

  constructor(options: LocalStorageOptions) {
    this.root = path.resolve(options.root);
    this.#sidecars = new Sidecars(this.root);
  }

  async init(options: InitOptions = {}): Promise<void> {
    if (options.readOnly) {
      try {
        if (!(await fs.stat(this.root)).isDirectory()) throw new Error('not a directory');
        await fs.access(this.root, fs.constants.R_OK | fs.constants.X_OK);
      } catch (err) {
        throw new ConfigError(
          `LOCAL_STORAGE_DIR=${this.root} cannot be read (${(err as Error).message}): point it at the directory the registry stores its models in.`,
          { cause: err },
        );
      }
      return;
    }
    try {
      await fs.mkdir(path.join(this.root, UPLOADS, 'locks'), { recursive: true });
      await fs.mkdir(path.join(this.root, META), { recursive: true });
      await fs.access(this.root, fs.constants.R_OK | fs.constants.W_OK);
    } catch (err) {
      throw new ConfigError(
        `LOCAL_STORAGE_DIR=${this.root} cannot be used (${(err as Error).message}): point it at a directory this user can create and write.`,
        { cause: err },
      );
    }
  }

  async ping(): Promise<void> {
    await this.#io(() => fs.access(path.join(this.root, UPLOADS), fs.constants.W_OK));
  }

  async head(key: string): Promise<ObjectInfo> {
    for (let attempt = 0; ; attempt++) {
      const stats = await this.#stat(key);
      const info = await this.#info(key, stats);
      // A missing sidecar may mean the file was replaced between stat and read: look again.
      if (Object.keys(info.metadata).length > 0 || attempt === 2) return info;
      const again = await this.#stat(key);
      if (tokenOf(again) === info.token) return info;
    }
  }

  async get(key: string, options: ReadOptions = {}): Promise<{ info: ObjectInfo; body: Readable }> {
    for (let attempt = 0; ; attempt++) {
      const handle = await this.#io(() => fs.open(this.#path(key), 'r'), key);
      try {
        const stats = await handle.stat({ bigint: true });
        if (!stats.isFile()) throw new NotFoundError(key);
        const info = await this.#info(key, stats);
        if (Object.keys(info.metadata).length === 0 && attempt < 2) {
          const current = await this.#stat(key).catch(() => undefined);
          if (current && tokenOf(current) !== info.token) {
            await handle.close();
            continue; // replaced while opening: its sidecar may be gone; read the new file
          }
        }
        const body = createReadStream('', {
          fd: handle,
          start: options.range?.start,
          end: options.range?.end,
          highWaterMark: 256 * 1024,
          signal: options.signal,
        });
        return { info, body };
      } catch (err) {
        await handle.close().catch(() => {});
        throw err;
      }
    }
  }

  async stage(key: string, body: Readable, options: { signal?: AbortSignal } = {}): Promise<StagedObject> {
    this.#path(key); // validates the key before any byte is written
    const file = this.#newUploadPath();
    this.#active.add(file);
    try {
      // Open before streaming: a write stream opens lazily, so a body that fails at once could
      // otherwise create the file after the cleanup below has run.
      const handle = await this.#io(() => fs.open(file, 'wx'));
      const sink = createWriteStream('', { fd: handle, flush: true, highWaterMark: 4 * 1024 * 1024 });
      // The body is the end of the caller's pipeline, which reports the error the body is
      // destroyed with: it must be the translated one (StorageFullError for a full disk), which this
      // listener, added before pipeline's own, gives it before pipeline passes on the raw errno.
      sink.once('error', (err) => body.destroy(translate(err) as Error));
      await this.#io(() => pipeline(body, sink, { signal: options.signal }));
      return new LocalStaged(key, sink.bytesWritten, file);
    } catch (err) {
      this.#active.delete(file);
      await fs.rm(file, { force: true });
      throw err;
    }
  }

  async commit(
    staged: StagedObject,
    metadata: Metadata,
    condition: WriteCondition,
    options: CommitOptions = {},
  ): Promise<ObjectInfo> {
    const { file } = this.#own(staged);
    const key = options.key ?? staged.key;
    const target = this.#path(key);
    await options.after;
    return this.#locked(key, async () => {
      const current = await this.#statOrUndefined(key);
      checkCondition(key, current, condition);
      const stats = await this.#io(() => fs.stat(file, { bigint: true }));
      const token = tokenOf(stats);
      // No sidecar for an object without metadata (the registry's records): nothing to pair.
      if (Object.keys(metadata).length > 0) await this.#sidecars.write(key, token, metadata);
      await this.#io(() => fs.mkdir(path.dirname(target), { recursive: true }));
      await this.#io(() => fs.rename(file, target));
      // rename(2) does nothing when both names are links to one inode (a history copy linked
      // again after a crash left the same link in place): remove the staged name ourselves.
      await fs.rm(file, { force: true });
      this.#active.delete(file);
      await syncDir(path.dirname(target));
      if (current && tokenOf(current) !== token) await this.#sidecars.remove(key, tokenOf(current));
      return toInfo(key, stats, metadata);
    });
  }

  async discard(staged: StagedObject): Promise<void> {
    const { file } = this.#own(staged);
    this.#active.delete(file);
    await fs.rm(file, { force: true });
  }

  async copy(
    from: string,
    to: string,
    options: { sourceToken: string; metadata: Metadata; condition?: WriteCondition } & PublishOptions,
  ): Promise<ObjectInfo> {
    this.#path(to);
    const file = this.#newUploadPath();
    this.#active.add(file);
    try {
      // A token must never repeat under one key, or a compare-and-swap against a stale read could
      // succeed (ABA): a root key (a model's current version) may get back an inode it had before
      // (rollback), so copies to root keys get a fresh inode. And a root file is one other tools
      // write too, some in place (`cp`, a truncating open): kept history must never share its
      // inode. Copies between history keys (files only the registry writes) may share one.
      const stats = await this.#linkOrCopy(from, options.sourceToken, file, inHistory(to) && inHistory(from));
      // A copy (not a link to bytes already on disk) is made durable before it is published,
      // as an upload is: a rollback must not come back empty after a power cut.
      if (stats.nlink === 1n) await this.#io(() => syncFile(file), to);
      return await this.commit(
        new LocalStaged(to, Number(stats.size), file),
        options.metadata,
        options.condition ?? {},
        { after: options.after },
      );
    } catch (err) {
      this.#active.delete(file);
      await fs.rm(file, { force: true });
      throw err;
    }
  }

  async copyOut(key: string, token: string, dest: string): Promise<void> {
    try {
      await this.#linkOrCopy(key, token, dest, true);
    } catch (err) {
      await fs.rm(dest, { force: true });
      throw err;
    }
  }

  /**
   * Makes `dest` a file with the bytes of `from` at `token`; returns its stats. A hard link (when
   * `link` and the filesystem allow) shares the inode, so its token equals the source's: proof
   * that the bytes are the version pinned, at no cost in time or space — files are never changed
   * in place, so sharing an inode is safe. Otherwise a copy (reflink when the filesystem can),
   * with the source token compared before and after. Throws PreconditionFailedError when `from`
   * has another token, NotFoundError when it is gone; `dest` is the caller's to clean up.
   */
  async #linkOrCopy(from: string, token: string, dest: string, link: boolean): Promise<BigIntStats> {
    const source = this.#path(from);
    let linked = false;
    if (link) {
      linked = await fs.link(source, dest).then(
        () => true,
        (err: NodeJS.ErrnoException) => {
          if (err.code === 'ENOENT') throw new NotFoundError(from, { cause: err });
          return false;
        },
      );
    }
    if (!linked) {
      if (tokenOf(await this.#stat(from)) !== token) throw new PreconditionFailedError(from);
      await this.#io(() => fs.copyFile(source, dest, fs.constants.COPYFILE_FICLONE), from);
    }
    const stats = await fs.stat(dest, { bigint: true });
    const sourceNow = linked ? tokenOf(stats) : tokenOf(await this.#stat(from));
    if (sourceNow !== token) throw new PreconditionFailedError(from);
    return stats;
  }

  async setMetadata(key: string, token: string, metadata: Metadata): Promise<ObjectInfo> {
    return this.#locked(key, async () => {
      const stats = await this.#stat(key);
      if (tokenOf(stats) !== token) throw new PreconditionFailedError(key);
      await this.#sidecars.write(key, token, metadata);
      return toInfo(key, stats, metadata);
    });
  }

  async delete(key: string): Promise<void> {
    await this.#locked(key, async () => {
      const current = await this.#statOrUndefined(key);
      if (!current) return;
      await this.#io(() => fs.rm(this.#path(key), { force: true }));
      await this.#sidecars.remove(key, tokenOf(current));
      // Drop the now-empty folder of a model's history (best effort).
      if (key.includes('/')) await fs.rmdir(path.dirname(this.#path(key))).catch(() => {});
    });
  }

  list(prefix: string, options: { startAfter?: string } = {}): AsyncIterable<ObjectInfo> {
    return objectsOf(this.listEntries(prefix, options));
  }

  async *listEntries(prefix: string, options: { startAfter?: string } = {}): AsyncIterable<ListEntry> {
    const slash = prefix.lastIndexOf('/');
    const dirKey = prefix.slice(0, slash + 1);
    const namePrefix = prefix.slice(slash + 1);
    let entries: string[];
    try {
      const dir = dirKey ? this.#path(dirKey.slice(0, -1)) : this.root;
      entries = await fs.readdir(dir);
    } catch (err) {
      if (err instanceof TypeError) return; // a prefix no key can start with (`/`, `a//`)
      if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ENOTDIR') return;
      throw translate(err);
    }
    const after = (k: string) => options.startAfter === undefined || k > options.startAfter;
    // The backend's own folders at the root; a dot-file there is no key either.
    const bookkeeping = (n: string) => dirKey === '' && (n === UPLOADS || n === META);
    const keys = entries
      .filter((n) => n.startsWith(namePrefix) && !bookkeeping(n))
      .map((n) => dirKey + n)
      .filter((k) => after(`${k}/`)) // a folder sorts as `${k}/`, after the key `k`
      .sort();
    const level: { key: string; stats: BigIntStats }[] = [];
    for (const key of keys) {
      const stats = await fs.stat(this.#path(key), { bigint: true }).catch((err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT') return undefined; // deleted since the directory was read
        throw translate(err);
      });
      if (stats?.isFile() && after(key) && !(dirKey === '' && key.startsWith('.'))) level.push({ key, stats });
      else if (stats?.isDirectory()) level.push({ key: `${key}/`, stats });
    }
    level.sort((a, b) => (a.key < b.key ? -1 : 1));
    for (const { key, stats } of level) {
      yield key.endsWith('/') ? { folder: key } : { object: await this.#info(key, stats) };
    }
  }

  async sweep(): Promise<number> {
    const dir = path.join(this.root, UPLOADS);
    let removed = 0;
    const active = new Set([...this.#active].map((f) => path.basename(f)));
    for (const name of await fs.readdir(dir).catch(() => [] as string[])) {
      const file = path.join(dir, name);
      const stats = await fs.stat(file).catch(() => undefined);
      if (stats && isAbandoned(name, stats.mtime, active)) {
        await fs.rm(file, { force: true });
        removed++;
      }
    }
    removed += await sweepLocks(path.join(dir, 'locks'));
    removed += await this.#sidecars.sweep(async (key) => {
      const stats = await this.#statOrUndefined(key);
      return stats && tokenOf(stats);
    });
    return removed;
  }

  /** A sidecar file has no bound. */
  checkMetadata(): void {}

  async close(): Promise<void> {}

  // ---- internals ----

  #newUploadPath(): string {
    return path.join(this.root, UPLOADS, newStagedName());
  }

  #own(staged: StagedObject): LocalStaged {
    if (!(staged instanceof LocalStaged)) throw new TypeError('staged object does not belong to this backend');
    return staged;
  }

  /** Maps a key to a path under the root, refusing anything that could leave it. */
  #path(key: string): string {
    const parts = key.split('/');
    if (!key || key.startsWith('/') || parts.some((p) => p === '' || p === '.' || p === '..') || key.includes('\0')) {
      throw new TypeError(`invalid storage key: ${JSON.stringify(key)}`);
    }
    return path.join(this.root, ...parts);
  }

  async #info(key: string, stats: BigIntStats): Promise<ObjectInfo> {
    return toInfo(key, stats, await this.#sidecars.read(key, tokenOf(stats)));
  }

  async #stat(key: string): Promise<BigIntStats> {
    const stats = await this.#io(() => fs.stat(this.#path(key), { bigint: true }), key);
    if (!stats.isFile()) throw new NotFoundError(key);
    return stats;
  }

  async #statOrUndefined(key: string): Promise<BigIntStats | undefined> {
    try {
      return await this.#stat(key);
    } catch (err) {
      if (err instanceof NotFoundError) return undefined;
      throw err;
    }
  }

  async #locked<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const lockPath = path.join(this.root, UPLOADS, 'locks', `${encodeURIComponent(key)}.lock`);
    const release = await this.#io(() =>
      lockfile.lock(lockPath, {
        realpath: false,
        lockfilePath: lockPath,
        stale: LOCK_STALE_MS,
        retries: { retries: 200, factor: 1.2, minTimeout: 2, maxTimeout: 100 },
      }),
    );
    try {
      return await fn();
    } finally {
      await release().catch(() => {});
    }
  }

  /** Runs a filesystem call, turning errno errors into storage errors. */
  async #io<T>(fn: () => Promise<T>, key?: string): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw translate(err, key);
    }
  }
}
/** A key under a `.history/` folder (`.history/m/v3.tar.gz`, `registry/.history/nlp/m/v1.tar.gz`), not a current key. */
const inHistory = (key: string) => /(^|\/)\.history\//.test(key);
