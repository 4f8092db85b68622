/**
 * Extracted trees of cached archives (for /models/:name/files): CACHE_DIR/trees/{hex}/ and
 * its manifest trees/{hex}.json. An archive is validated with the upload rules before it is
 * extracted (archives put in storage by other tools were never validated), then extracted into
 * a temp directory by `tar` with its own path protections, and renamed into place.
 * Extraction streams: zlib inflates on the thread pool, chunk by chunk, and tar's file writes
 * hold back the next chunk, so memory stays bounded and the event loop free whatever the
 * archive expands to (a gzip bomb inflated by node-tar's synchronous zlib took gigabytes).
 */
import { createHash, randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { LRUCache } from 'lru-cache';
import { Unpack } from 'tar';
import { errors } from '../errors.js';
import { SingleFlight } from '../util/single-flight.js';
import { CacheDiskError, isDiskError } from './errors.js';

/**
 * The archive rules trees are extracted by: the registry's upload rules (registry/archive.ts
 * makes them), given to the cache rather than imported, so the cache depends on no registry code.
 */
export interface ArchiveRules {
  /**
   * Reads the archive at `file` through the upload rules: rejects what they refuse, else
   * resolves with how many root entries named '' it holds (tar skips those with a warning).
   */
  check(file: string): Promise<{ emptyRoots: number }>;
  /** Entry names that are the archive's root itself (skipped on extraction). */
  rootNames: ReadonlySet<string>;
  /** tar's warning for a root entry named '' (one that check() counted). */
  isEmptyRootWarning(code: string, message: string): boolean;
}

export interface ManifestEntry {
  path: string;
  size: number;
  type: 'file' | 'directory' | 'symlink';
  /** Target of a symlink, as stored. */
  target?: string;
  /** SHA-256 (hex) of a regular file's content: what /ui's compare tells changed files by. */
  sha256?: string;
}

export interface Tree {
  /** The tree's directory, symlinks resolved (CACHE_DIR may be reached through one). */
  root: string;
  files: ManifestEntry[];
  /** `files` by path. */
  byPath: ReadonlyMap<string, ManifestEntry>;
  bytes: number;
}

/**
 * Manifests kept parsed, counted in entries: a model of 100,000 files has a 6 MB manifest, whose
 * parsing on every file request took 27 ms of the event loop.
 */
const PARSED_ENTRIES = 200_000;
/**
 * Written into each manifest; trees of another format are extracted again. 2: modes normalised
 * (a tree extracted before kept the archive's, which could lock a non-root server out). 3: each
 * regular file's sha256.
 */
const FORMAT = 3;

export class TreeStore {
  #dir: string;
  readonly #rules: ArchiveRules;
  readonly #pending = new SingleFlight<string, Tree>();
  /**
   * Parsed manifests, weighed by their entries. A tree of more than PARSED_ENTRIES counts as
   * PARSED_ENTRIES: kept alone rather than not at all.
   */
  readonly #parsed = new LRUCache<string, Tree>({
    maxSize: PARSED_ENTRIES,
    sizeCalculation: (tree) => Math.min(PARSED_ENTRIES, Math.max(1, tree.files.length)),
  });
  /** Removals started, and running: a manifest read while one ran is not kept (its tree may be gone). */
  #removalsStarted = 0;
  #removing = 0;

  constructor(dir: string, rules: ArchiveRules) {
    this.#dir = path.resolve(dir, 'trees');
    this.#rules = rules;
  }

  /**
   * Clears interrupted extractions and returns the bytes of each complete tree, so the cache
   * can count them against its bound (and drop trees whose archive is gone).
   */
  async init(): Promise<Map<string, number>> {
    await fs.mkdir(this.#dir, { recursive: true });
    this.#dir = await fs.realpath(this.#dir);
    const trees = new Map<string, number>();
    for (const name of await fs.readdir(this.#dir)) {
      if (name.startsWith('tmp-')) await fs.rm(path.join(this.#dir, name), { recursive: true, force: true });
      const m = /^([0-9a-f]{64})\.json$/.exec(name);
      if (!m) continue;
      const tree = await this.#read(m[1]!);
      if (tree) trees.set(m[1]!, tree.bytes);
      else await this.remove(m[1]!); // unreadable, or of an older format: extracted again when asked
    }
    return trees;
  }

  /**
   * The extracted tree of the archive at `blob` (digest `digest`), extracting it once.
   * `created` is true when this call extracted it (so the caller can account its bytes).
   */
  async get(digest: string, blob: string): Promise<Tree & { created: boolean }> {
    const existing = await this.#read(digest);
    if (existing) return { ...existing, created: false };
    let created = false;
    const pending = this.#pending.run(digest, () => {
      created = true;
      return this.#extract(digest, blob);
    });
    return { ...(await pending), created };
  }

  async remove(digest: string): Promise<void> {
    this.#removalsStarted++;
    this.#removing++;
    this.#parsed.delete(digest);
    try {
      await fs.rm(path.join(this.#dir, `${digest}.json`), { force: true });
      await fs.rm(path.join(this.#dir, digest), { recursive: true, force: true });
    } finally {
      this.#removing--;
    }
  }

  async #read(digest: string): Promise<Tree | undefined> {
    const parsed = this.#parsed.get(digest);
    if (parsed) return parsed;
    const removals = this.#removing === 0 ? this.#removalsStarted : -1;
    try {
      const text = await fs.readFile(path.join(this.#dir, `${digest}.json`), 'utf8');
      const manifest = JSON.parse(text) as { files: ManifestEntry[]; bytes: number; format?: number };
      if (manifest.format !== FORMAT) return undefined;
      const { files, bytes } = manifest;
      const tree = { root: path.join(this.#dir, digest), files, byPath: new Map(files.map((f) => [f.path, f])), bytes };
      // A removal began or ended while this read ran: do not keep what may be gone.
      return removals === this.#removalsStarted && this.#removing === 0 ? this.#keep(digest, tree) : tree;
    } catch {
      return undefined;
    }
  }

  #keep(digest: string, tree: Tree): Tree {
    this.#parsed.set(digest, tree);
    return tree;
  }

  async #extract(digest: string, blob: string): Promise<Tree> {
    // The upload rules first: reject the whole archive rather than extract part of it.
    const rules = this.#rules;
    const checked = await rules.check(blob);
    const tmp = path.join(this.#dir, `tmp-${randomUUID()}`);
    await fs.mkdir(tmp);
    try {
      // The root's own entry is skipped: tar in strict mode fails on `/` (Python's tarfile writes it
      // for arcname=""), as it would on any absolute path it has to strip.
      const filter = (p: string) => !rules.rootNames.has(p);
      // Every warning fails the extraction, as strict mode would, but once the archive has been
      // read to its end (strict mode rejects at once, while tar may still be writing into `tmp`);
      // except the one the validator counted: a root named '' (tar skips that header).
      let emptyRoots = checked.emptyRoots;
      let failure: Error | undefined;
      const onwarn = (code: string, message: string, data: unknown) => {
        if (rules.isEmptyRootWarning(code, message) && emptyRoots-- > 0) return;
        // A file system error (ENOSPC...) is the warning's data, with its code, as strict mode threw it.
        failure ??= data instanceof Error ? data : errors.invalidArchive(`tar cannot extract it (${code}: ${message})`);
      };
      const options = {
        cwd: tmp,
        strict: false,
        onwarn,
        filter,
        preservePaths: false,
        noChmod: true,
        preserveOwner: false,
      };
      await unpackInto(blob, options);
      if (failure) throw failure;
      const files: ManifestEntry[] = [];
      let bytes = 0;
      /** Names seen of each file with several (hard links): counted once, and all must be in the tree. */
      const linked = new Map<string, { names: number; nlink: number; path: string }>();
      // Modes as the archive had them could lock the server out of its own files (a file of
      // mode 000, a directory of 0o300, for a server that does not run as root): they mean nothing
      // for serving, so every file is made 0o644 and every directory 0o755.
      await fs.chmod(tmp, 0o755);
      const walk = async (dir: string): Promise<void> => {
        for (const entry of await fs.readdir(dir, { withFileTypes: true })) {
          const full = path.join(dir, entry.name);
          const rel = path.relative(tmp, full).split(path.sep).join('/');
          if (entry.isDirectory()) {
            await fs.chmod(full, 0o755);
            files.push({ path: rel, size: 0, type: 'directory' });
            await walk(full);
          } else if (entry.isSymbolicLink()) {
            files.push({ path: rel, size: 0, type: 'symlink', target: await fs.readlink(full) });
          } else if (entry.isFile()) {
            await fs.chmod(full, 0o644);
            const { size, nlink, dev, ino } = await fs.stat(full);
            files.push({ path: rel, size, type: 'file', sha256: await fileDigest(full) });
            if (nlink > 1) {
              const id = `${dev}:${ino}`;
              const seen = linked.get(id);
              if (seen) {
                seen.names++;
                continue;
              }
              linked.set(id, { names: 1, nlink, path: rel });
            }
            bytes += size;
          }
        }
      };
      await walk(tmp);
      // The validator lets a hard link name only a file extracted before it; a name of the same
      // file anywhere else (outside the tree) would mean the extraction linked to what it must not.
      for (const { names, nlink, path: rel } of linked.values()) {
        if (names !== nlink) {
          throw errors.unsafeArchive(`${JSON.stringify(rel)} was extracted as a hard link to a file outside the tree`);
        }
      }
      files.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
      const root = path.join(this.#dir, digest);
      await fs.rm(root, { recursive: true, force: true });
      await fs.rename(tmp, root);
      await fs.writeFile(path.join(this.#dir, `${digest}.json`), JSON.stringify({ format: FORMAT, files, bytes }));
      return this.#keep(digest, { root, files, byPath: new Map(files.map((f) => [f.path, f])), bytes });
    } catch (err) {
      await fs.rm(tmp, { recursive: true, force: true });
      throw isDiskError(err) ? new CacheDiskError(err) : err;
    }
  }
}

/** Bytes read from the archive, and inflated, at a time. */
const CHUNK = 1024 * 1024;

/**
 * Extracts the gzipped tar `blob` with node-tar's Unpack, inflating it here. Given the gzip
 * itself, node-tar inflates a whole read (16 MiB) synchronously, buffering all of its output
 * (2 GiB from a 2 MiB bomb) and blocking the event loop meanwhile; and it aborts past a ratio of
 * 1000, which the upload does not apply — the one limit of both is MAX_EXTRACTED_BYTES, which
 * the validator checked before. Node's Gunzip inflates CHUNK bytes at a time on the thread pool
 * and waits while Unpack, whose writes report the file writes' backpressure, is busy.
 */
async function unpackInto(blob: string, options: ConstructorParameters<typeof Unpack>[0]): Promise<void> {
  // Plain tar only: the gzip is undone above, and node-tar must not guess another compression.
  const unpack = new Unpack({ ...options, gzip: false, zstd: false, brotli: false, maxDecompressionRatio: Infinity });
  const closed = new Promise<void>((resolve, reject) => {
    unpack.on('close', resolve);
    unpack.on('error', reject);
  });
  closed.catch(() => {});
  const sink = new Writable({
    highWaterMark: CHUNK,
    write(chunk: Buffer, _encoding, callback) {
      if (unpack.write(chunk)) callback();
      else unpack.once('drain', () => callback());
    },
    final(callback) {
      unpack.end();
      closed.then(() => callback(), callback);
    },
  });
  // An error of Unpack's (an unrecoverable warning) must not leave a write waiting for 'drain'.
  unpack.on('error', (err: Error) => sink.destroy(err));
  await pipeline(createReadStream(blob, { highWaterMark: CHUNK }), createGunzip({ chunkSize: CHUNK }), sink);
}

/** SHA-256 (hex) of a file, read once after extraction. */
async function fileDigest(file: string): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(createReadStream(file), hash);
  return hash.digest('hex');
}

/**
 * The absolute path of `requested` inside `tree`, following symlinks (a file's, or a directory's
 * on the way: `dirlink/w.bin`) but never out of the tree. Undefined when there is no such regular
 * file. The entry is the requested path's, or for a path through a directory link, the file's.
 */
export async function resolveFile(
  tree: Tree,
  requested: string,
): Promise<{ file: string; entry: ManifestEntry } | undefined> {
  const parts = requested.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.length === 0 || parts.includes('..') || requested.includes('\0')) return undefined;
  const listed = tree.byPath.get(parts.join('/'));
  if (listed?.type === 'directory') return undefined;
  const real = await fs.realpath(path.join(tree.root, ...parts)).catch(() => undefined);
  if (!real?.startsWith(tree.root + path.sep)) return undefined;
  const entry = listed ?? tree.byPath.get(path.relative(tree.root, real).split(path.sep).join('/'));
  if (!entry) return undefined;
  const stats = await fs.stat(real);
  if (!stats.isFile()) return undefined;
  return { file: real, entry: entry.type === 'symlink' ? { ...entry, size: stats.size } : entry };
}
