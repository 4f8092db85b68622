/**
 * Metadata sidecars of the local backend: `.meta/{key}.{token}.json` holds the metadata of the
 * file whose token is {token}. A sidecar is named by the token of the file it describes and
 * written before that file is renamed into place, so a reader that opened a file always finds
 * the metadata of exactly that file. Because a sidecar belongs to one token, the sidecars this
 * process has read are remembered by key + token (a bounded memo): describing an unchanged model
 * costs one stat, not a file read.
 */
import { randomUUID } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Metadata } from '../types.js';
import { translate } from './errors.js';

export const META = '.meta';
/** Sidecars remembered by key + token (their contents never change for a token, see read). */
const MEMO_ENTRIES = 4096;
/** A sidecar write takes milliseconds: temp files and orphans older than this are leftovers. */
const LEFTOVER_AFTER_MS = 60_000;

export class Sidecars {
  /** key → the sidecar last read or written for it, with the token it belongs to. */
  readonly #memo = new Map<string, { token: string; metadata: Metadata }>();
  readonly #dir: string;

  constructor(root: string) {
    this.#dir = path.join(root, META);
  }

  async write(key: string, token: string, metadata: Metadata): Promise<void> {
    const file = this.#path(key, token);
    const tmp = `${file}.${randomUUID()}.tmp`;
    try {
      await fs.mkdir(path.dirname(file), { recursive: true });
      await fs.writeFile(tmp, JSON.stringify(metadata), { flush: true });
      await fs.rename(tmp, file);
    } catch (err) {
      throw translate(err);
    }
    this.#remember(key, token, metadata);
  }

  async remove(key: string, token: string): Promise<void> {
    if (this.#memo.get(key)?.token === token) this.#memo.delete(key);
    await fs.rm(this.#path(key, token), { force: true });
  }

  /**
   * The sidecar of `key` at `token`. A sidecar is written once, before its file becomes visible
   * under the key, and only setMetadata rewrites it — for objects that had none (written by
   * another tool). So a non-empty sidecar read once is still right for as long as the token is
   * the key's token; empty results are not remembered.
   */
  async read(key: string, token: string): Promise<Metadata> {
    const memo = this.#memo.get(key);
    if (memo?.token === token) return memo.metadata;
    try {
      const metadata = JSON.parse(await fs.readFile(this.#path(key, token), 'utf8')) as Metadata;
      this.#remember(key, token, metadata);
      return metadata;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT' || err instanceof SyntaxError) return {};
      throw translate(err);
    }
  }

  /**
   * Removes sidecars whose file is gone or was replaced more than a minute ago (`tokenOf` gives
   * a key's current token, undefined when it has none), and sidecar temp files
   * (`….json.<uuid>.tmp`) a crash left behind, also after a minute.
   */
  async sweep(tokenOf: (key: string) => Promise<string | undefined>, dir = this.#dir): Promise<number> {
    let removed = 0;
    const entries = await fs.readdir(dir, { withFileTypes: true }).catch(() => []);
    for (const entry of entries) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) {
        removed += await this.sweep(tokenOf, full);
        continue;
      }
      const age = async () => Date.now() - ((await fs.stat(full).catch(() => undefined))?.mtimeMs ?? Date.now());
      if (entry.name.endsWith('.tmp')) {
        if ((await age()) > LEFTOVER_AFTER_MS) {
          await fs.rm(full, { force: true });
          removed++;
        }
        continue;
      }
      const m = /^(.*)\.(\d+-\d+-\d+)\.json$/.exec(entry.name);
      if (!m) continue;
      const key = path.relative(this.#dir, path.join(dir, m[1]!)).split(path.sep).join('/');
      const token = await tokenOf(key).catch(() => undefined);
      if (token !== m[2] && (await age()) > LEFTOVER_AFTER_MS) {
        await fs.rm(full, { force: true });
        removed++;
      }
    }
    return removed;
  }

  #path(key: string, token: string): string {
    return `${path.join(this.#dir, ...key.split('/'))}.${token}.json`;
  }

  #remember(key: string, token: string, metadata: Metadata): void {
    this.#memo.delete(key);
    if (Object.keys(metadata).length === 0) return;
    this.#memo.set(key, { token, metadata: Object.freeze(metadata) });
    if (this.#memo.size > MEMO_ENTRIES) this.#memo.delete(this.#memo.keys().next().value!);
  }
}
