/** GET /models: a page of models, filtered by labels and alias, sorted by name or updatedAt. */
import { LRUCache } from 'lru-cache';
import { NotFoundError } from '../errors.js';
import type { ObjectInfo, Storage } from '../storage/types.js';
import { type Aliases, type AliasStore, aliasVersions } from './aliases.js';
import { keys } from './names.js';
import { hasRegistryMetadata, recordOfMetadata } from './records.js';
import { walkTree } from './tree.js';
import type { ListOptions, ModelSummary } from './types.js';

/** HEADs in flight at once for one listing (backends whose listing carries no metadata). */
const SUMMARY_READS = 16;

/**
 * What HEADs told of the objects listed, by key, token and modification time: a listing that
 * meets an object unchanged since it was last described needs no HEAD (a catalog of 10,000
 * models is then one listing walk, not 10,000 requests). The token alone is not enough where it
 * is a content hash (S3's ETag): the same bytes published again keep it, with new metadata.
 */
export function describedObjects(max = 50_000): LRUCache<string, ObjectInfo> {
  return new LRUCache<string, ObjectInfo>({ max });
}

const describedKey = (info: ObjectInfo) => `${info.key}\0${info.token}\0${info.lastModified.getTime()}\0${info.size}`;

/**
 * A page of models at every depth (tree.ts), filtered by labels and alias, sorted by name (key
 * order, from `cursor` on) or by updatedAt. Costs one walk of the models' folders and one of
 * `.aliases/` (a listing per namespace), plus on a backend whose
 * listing has no metadata (S3) one HEAD per model looked at, and a read of each aliases
 * document this process has not seen in its current state. By name, models are looked at
 * only until the page is full (and one more match says whether there is a next page); by
 * updatedAt, every model under the prefix is (a listing has no other order).
 */
export async function listModels(
  storage: Storage,
  aliasStore: AliasStore,
  options: ListOptions,
  described: LRUCache<string, ObjectInfo> = describedObjects(),
): Promise<{ models: ModelSummary[]; nextCursor: string | null }> {
  const prefix = options.prefix ?? '';
  const index = await aliasStore.all(prefix);
  const wanted = (s: ModelSummary) =>
    (options.alias === undefined || s.aliases[options.alias] !== undefined) &&
    Object.entries(options.labels ?? {}).every(([k, v]) => s.labels?.[k] === v);
  // Without metadata in the listing, a model the alias filter keeps is HEADed: its version and labels.
  const summary = async (name: string, info: ObjectInfo): Promise<ModelSummary> => {
    if (storage.capabilities.listIncludesMetadata) return summarize(name, info, index.get(name));
    const seen = described.get(describedKey(info));
    if (seen) return summarize(name, seen, index.get(name));
    const head = await storage.head(info.key).catch((err: unknown) => {
      if (err instanceof NotFoundError) return undefined; // deleted since it was listed
      throw err;
    });
    if (head && head.token === info.token) described.set(describedKey(info), head);
    return summarize(name, head ?? info, index.get(name));
  };
  const candidates = async function* (
    startAfter?: string,
    expect?: number,
  ): AsyncGenerator<{ name: string; info: ObjectInfo }> {
    for await (const info of walkTree(storage, '', prefix, startAfter, expect)) {
      const name = keys.nameOf(info.key);
      if (name === undefined) continue;
      if (options.alias !== undefined && index.get(name)?.get(options.alias) === undefined) continue; // no read needed
      yield { name, info };
    }
  };

  if (options.sort === 'updatedAt') {
    const all: ModelSummary[] = [];
    for (const batch of await batches(candidates(), 256)) {
      all.push(...(await mapLimit(batch, SUMMARY_READS, (c) => summary(c.name, c.info))).filter(wanted));
    }
    all.sort(byUpdatedAt);
    const after = options.cursor === undefined ? undefined : parseUpdatedAtCursor(options.cursor);
    const rest = after ? all.filter((m) => byUpdatedAt(m, after) > 0) : all;
    const models = rest.slice(0, options.limit);
    return { models, nextCursor: rest.length > options.limit ? updatedAtCursor(models.at(-1)!) : null };
  }

  const models: ModelSummary[] = [];
  const startAfter = options.cursor === undefined ? undefined : keys.current(options.cursor);
  const filtered = options.labels !== undefined && Object.keys(options.labels).length > 0;
  // Unfiltered, exactly the page (and one more) is looked at; filtered, a batch at a time.
  const size = filtered ? Math.min(options.limit + 1, 64) : options.limit + 1;
  let batch: { name: string; info: ObjectInfo }[] = [];
  const drain = async (): Promise<boolean> => {
    for (const s of await mapLimit(batch, SUMMARY_READS, (c) => summary(c.name, c.info))) {
      if (!wanted(s)) continue;
      if (models.length === options.limit) return true;
      models.push(s);
    }
    batch = [];
    return false;
  };
  // Unfiltered, the listing need not fetch more than the page and the one after it.
  for await (const c of candidates(startAfter, filtered || options.alias !== undefined ? undefined : size)) {
    batch.push(c);
    if (batch.length >= size && (await drain())) return { models, nextCursor: models.at(-1)!.name };
  }
  if (await drain()) return { models, nextCursor: models.at(-1)!.name };
  return { models, nextCursor: null };
}

/** The position a ?sort=updatedAt cursor names, or undefined when it is not one. */
export function parseUpdatedAtCursor(cursor: string): { updatedAt: string; name: string } | undefined {
  const [updatedAt, name, ...rest] = cursor.split('\n');
  if (rest.length > 0 || !updatedAt || !name || Number.isNaN(Date.parse(updatedAt))) return undefined;
  return { updatedAt, name };
}

function summarize(name: string, info: ObjectInfo, aliases: Aliases | undefined): ModelSummary {
  const updatedAt = info.lastModified.toISOString();
  const base = { name, size: info.size, updatedAt, aliases: aliasVersions(aliases ?? new Map()) };
  if (!hasRegistryMetadata(info.metadata)) return { ...base, labels: {} };
  const { version, sha256, createdAt, labels } = recordOfMetadata(info);
  return { ...base, updatedAt: createdAt, version, sha256, labels };
}

/** Newest first, then by name: the order of ?sort=updatedAt. */
function byUpdatedAt(a: { updatedAt: string; name: string }, b: { updatedAt: string; name: string }): number {
  if (a.updatedAt !== b.updatedAt) return a.updatedAt > b.updatedAt ? -1 : 1;
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

function updatedAtCursor(m: ModelSummary): string {
  return `${m.updatedAt}\n${m.name}`;
}

async function batches<T>(source: AsyncIterable<T>, size: number): Promise<T[][]> {
  const out: T[][] = [[]];
  for await (const item of source) {
    if (out.at(-1)!.length === size) out.push([]);
    out.at(-1)!.push(item);
  }
  return out;
}

/** `fn` over `items` with at most `limit` running at once; results in order. */
async function mapLimit<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}
