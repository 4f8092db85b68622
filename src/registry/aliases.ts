/**
 * Aliases: movable names for one version of a model (`intent@production`), as MLflow's model
 * aliases and OCI tags. One small JSON document per model, the registry's own object:
 *
 *   .aliases/{name}.json   {"aliases": {"production": {"version": 3, "sha256": "…", "updatedAt": "…"}}}
 *
 * Why a document in the storage and not object metadata: it must travel with plain copies
 * (`cp -a`, `aws s3 sync`: keys and bytes only), like the version records (records.ts).
 * Why one document per model, under one prefix: every change is a read-modify-write committed on
 * the condition that the document is still the one read (if-match on its token, or
 * if-none-match when there was none) — the storage's own conditional write decides between two
 * replicas, so no update is lost; and a search learns which models have aliases from one listing
 * of `.aliases/`, reading only documents this process has not seen in that state (cached by token).
 * A document never goes away while its model exists (an empty one stays): deletes are not
 * conditional, and a delete racing a set would lose the set. Deleting the model deletes it.
 */
import { Readable } from 'node:stream';
import { LRUCache } from 'lru-cache';
import { errors, NotFoundError, PreconditionFailedError } from '../errors.js';
import type { ObjectInfo, Storage } from '../storage/types.js';
import { ALIASES_PREFIX, isValidAlias, keys } from './names.js';
import { walkTree } from './tree.js';

export interface AliasTarget {
  version: number;
  /** The digest of that version: an alias's ETag is its version's, `"sha256:<hex>"`. */
  sha256: string;
  updatedAt: string;
}

export type Aliases = Map<string, AliasTarget>;

/** The aliases of a model, and the token of the document they were read from (none: no document). */
export interface AliasState {
  aliases: Aliases;
  token?: string;
}

/** Most aliases one model may have (a document stays a few KiB). */
export const MAX_ALIASES = 64;
const MAX_DOCUMENT_BYTES = 64 * 1024;
const ATTEMPTS = 50;
const CACHED_DOCUMENTS = 4096;

export class AliasStore {
  readonly #storage: Storage;
  /** Parsed documents by key + token + size: a search reads a document once per change. */
  readonly #parsed = new LRUCache<string, Aliases>({ max: CACHED_DOCUMENTS });

  constructor(storage: Storage) {
    this.#storage = storage;
  }

  /** The aliases of `name` (empty when it has none). */
  async read(name: string): Promise<AliasState> {
    let opened: { info: ObjectInfo; body: Readable };
    try {
      opened = await this.#storage.get(keys.aliases(name));
    } catch (err) {
      if (err instanceof NotFoundError) return { aliases: new Map() };
      throw err;
    }
    return { aliases: await this.#parse(opened.info, opened.body), token: opened.info.token };
  }

  /**
   * The aliases of every model whose name starts with `prefix` and has any, at every depth: one
   * walk of `.aliases/` (tree.ts), and a read of each document not already seen in its listed state.
   */
  async all(prefix = '', concurrency = 16): Promise<Map<string, Aliases>> {
    const listed: { name: string; info: ObjectInfo }[] = [];
    for await (const info of walkTree(this.#storage, ALIASES_PREFIX, prefix)) {
      const name = keys.aliasesNameOf(info.key);
      if (name !== undefined) listed.push({ name, info });
    }
    const out = new Map<string, Aliases>();
    let next = 0;
    const worker = async () => {
      while (next < listed.length) {
        const { name, info } = listed[next++]!;
        const cached = this.#parsed.peek(cacheKey(info));
        const aliases = cached ?? (await this.read(name)).aliases;
        if (aliases.size > 0) out.set(name, aliases);
      }
    };
    await Promise.all(Array.from({ length: Math.min(concurrency, listed.length) }, worker));
    return out;
  }

  /**
   * Changes the aliases of `name` with `change` (given a copy it may modify; returning false
   * means nothing to write), committed only if the document is still the one read; on a lost race
   * it runs again on the new state. Resolves to the state written (or left).
   */
  async update(name: string, change: (aliases: Aliases) => boolean | Promise<boolean>): Promise<Aliases> {
    for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
      const backoff = Math.random() * Math.min(5 * (attempt + 1), 100);
      if (attempt > 0) await new Promise((resolve) => setTimeout(resolve, backoff));
      const state = await this.read(name);
      const aliases: Aliases = new Map(state.aliases);
      if (!(await change(aliases))) return aliases;
      if (aliases.size > MAX_ALIASES) throw errors.tooManyAliases(name, MAX_ALIASES);
      const body = Buffer.from(encodeAliases(aliases));
      const staged = await this.#storage.stage(keys.aliases(name), Readable.from([body]));
      try {
        const unchanged = state.token === undefined ? { ifNoneMatch: true as const } : { ifMatch: state.token };
        await this.#storage.commit(staged, {}, unchanged);
        return aliases;
      } catch (err) {
        if (!(err instanceof PreconditionFailedError)) throw err;
      } finally {
        await this.#storage.discard(staged).catch(() => {});
      }
    }
    throw errors.conflict(name);
  }

  /** Removes the document (the model is being deleted). */
  async remove(name: string): Promise<void> {
    await this.#storage.delete(keys.aliases(name));
  }

  async #parse(info: ObjectInfo, body: Readable): Promise<Aliases> {
    const id = cacheKey(info);
    const cached = this.#parsed.peek(id);
    if (cached || info.size > MAX_DOCUMENT_BYTES) {
      body.destroy();
      return new Map(cached);
    }
    const chunks: Buffer[] = [];
    for await (const chunk of body) chunks.push(chunk as Buffer);
    const aliases = decode(Buffer.concat(chunks).toString('utf8'));
    this.#parsed.set(id, aliases);
    return new Map(aliases);
  }
}

/** Alias name → version, sorted by alias: what clients see. */
export function aliasVersions(aliases: Aliases): Record<string, number> {
  return Object.fromEntries([...aliases].sort(([a], [b]) => (a < b ? -1 : 1)).map(([alias, t]) => [alias, t.version]));
}

/** The aliases that point to `version`, sorted. */
export function aliasesOf(aliases: Aliases, version: number): string[] {
  return [...aliases]
    .filter(([, t]) => t.version === version)
    .map(([alias]) => alias)
    .sort();
}

function cacheKey(info: ObjectInfo): string {
  return `${info.key}\n${info.token}\n${info.size}`;
}

/** The document as stored (importers write it the same way, so reruns compare equal). */
export function encodeAliases(aliases: Aliases): string {
  const sorted = [...aliases].sort(([a], [b]) => (a < b ? -1 : 1));
  return `${JSON.stringify({ aliases: Object.fromEntries(sorted) }, null, 1)}\n`;
}

/** A document as stored; entries that are not whole are left out (written by hand, say). */
function decode(text: string): Aliases {
  const out: Aliases = new Map();
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return out;
  }
  const entries = (raw as { aliases?: unknown } | null)?.aliases;
  if (!entries || typeof entries !== 'object' || Array.isArray(entries)) return out;
  for (const [alias, value] of Object.entries(entries)) {
    const t = value as Partial<AliasTarget> | null;
    if (!isValidAlias(alias) || !t || typeof t !== 'object') continue;
    if (!Number.isSafeInteger(t.version) || t.version! < 1) continue;
    if (typeof t.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(t.sha256)) continue;
    const updatedAt = typeof t.updatedAt === 'string' ? t.updatedAt : '';
    out.set(alias, { version: t.version!, sha256: t.sha256, updatedAt });
  }
  return out;
}
