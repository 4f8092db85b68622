/**
 * Extracted trees of cached archives (SPEC §6, /models/:name/files): CACHE_DIR/trees/{hex}/ and
 * its manifest trees/{hex}.json. An archive is validated with the upload rules before it is
 * extracted (archives put in storage by other tools were never validated), then extracted into
 * a temp directory by `tar` with its own path protections, and renamed into place.
 */
import { randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { x as extract } from 'tar';
import { ArchiveValidator, type ArchiveLimits } from '../registry/archive.js';

export interface ManifestEntry {
  path: string;
  size: number;
  type: 'file' | 'directory' | 'symlink';
  /** Target of a symlink, as stored. */
  target?: string;
}

export interface Tree {
  root: string;
  files: ManifestEntry[];
  bytes: number;
}

export class TreeStore {
  readonly #dir: string;
  readonly #limits: ArchiveLimits;
  readonly #pending = new Map<string, Promise<Tree>>();

  constructor(dir: string, limits: ArchiveLimits) {
    this.#dir = path.resolve(dir, 'trees');
    this.#limits = limits;
  }

  /**
   * Clears interrupted extractions and returns the bytes of each complete tree, so the cache
   * can count them against its bound (and drop trees whose archive is gone).
   */
  async init(): Promise<Map<string, number>> {
    await fs.mkdir(this.#dir, { recursive: true });
    const trees = new Map<string, number>();
    for (const name of await fs.readdir(this.#dir)) {
      if (name.startsWith('tmp-')) await fs.rm(path.join(this.#dir, name), { recursive: true, force: true });
      const m = /^([0-9a-f]{64})\.json$/.exec(name);
      const tree = m ? await this.#read(m[1]!) : undefined;
      if (m && tree) trees.set(m[1]!, tree.bytes);
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
    let pending = this.#pending.get(digest);
    let created = false;
    if (!pending) {
      created = true;
      pending = this.#extract(digest, blob).finally(() => this.#pending.delete(digest));
      this.#pending.set(digest, pending);
    }
    return { ...(await pending), created };
  }

  async remove(digest: string): Promise<void> {
    await fs.rm(path.join(this.#dir, `${digest}.json`), { force: true });
    await fs.rm(path.join(this.#dir, digest), { recursive: true, force: true });
  }

  async #read(digest: string): Promise<Tree | undefined> {
    try {
      const manifest = JSON.parse(await fs.readFile(path.join(this.#dir, `${digest}.json`), 'utf8')) as { files: ManifestEntry[]; bytes: number };
      return { root: path.join(this.#dir, digest), ...manifest };
    } catch {
      return undefined;
    }
  }

  async #extract(digest: string, blob: string): Promise<Tree> {
    // The upload rules first: reject the whole archive rather than extract part of it.
    await pipeline(createReadStream(blob), new ArchiveValidator('gzip', this.#limits), new Writable({ write: (_c, _e, cb) => cb() }));
    const tmp = path.join(this.#dir, `tmp-${randomUUID()}`);
    await fs.mkdir(tmp);
    try {
      await extract({ file: blob, cwd: tmp, strict: true, preservePaths: false, noChmod: true, preserveOwner: false });
      const files: ManifestEntry[] = [];
      let bytes = 0;
      const walk = async (dir: string): Promise<void> => {
        for (const entry of await fs.readdir(dir, { withFileTypes: true })) {
          const full = path.join(dir, entry.name);
          const rel = path.relative(tmp, full).split(path.sep).join('/');
          if (entry.isDirectory()) {
            files.push({ path: rel, size: 0, type: 'directory' });
            await walk(full);
          } else if (entry.isSymbolicLink()) {
            files.push({ path: rel, size: 0, type: 'symlink', target: await fs.readlink(full) });
          } else if (entry.isFile()) {
            const { size } = await fs.stat(full);
            bytes += size;
            files.push({ path: rel, size, type: 'file' });
          }
        }
      };
      await walk(tmp);
      files.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
      const root = path.join(this.#dir, digest);
      await fs.rm(root, { recursive: true, force: true });
      await fs.rename(tmp, root);
      await fs.writeFile(path.join(this.#dir, `${digest}.json`), JSON.stringify({ files, bytes }));
      return { root, files, bytes };
    } catch (err) {
      await fs.rm(tmp, { recursive: true, force: true });
      throw err;
    }
  }
}

/**
 * The absolute path of `requested` inside `tree`, following symlinks but never out of the tree.
 * Undefined when there is no such regular file.
 */
export async function resolveFile(tree: Tree, requested: string): Promise<{ file: string; entry: ManifestEntry } | undefined> {
  const parts = requested.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.length === 0 || parts.includes('..') || requested.includes('\0')) return undefined;
  const normalized = parts.join('/');
  const entry = tree.files.find((f) => f.path === normalized);
  if (!entry || entry.type === 'directory') return undefined;
  const real = await fs.realpath(path.join(tree.root, ...parts)).catch(() => undefined);
  // Compared with the real root: CACHE_DIR itself may lie behind a symlink.
  const root = await fs.realpath(tree.root).catch(() => undefined);
  if (!real || !root || !(real === root || real.startsWith(root + path.sep))) return undefined;
  const stats = await fs.stat(real);
  if (!stats.isFile()) return undefined;
  return { file: real, entry: entry.type === 'symlink' ? { ...entry, size: stats.size } : entry };
}
