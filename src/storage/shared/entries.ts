/**
 * listEntries() helpers shared by the backends (types.ts): one page of a delimiter listing —
 * objects and folders in two arrays, as S3, GCS and Azure return them — merged into the one key
 * order the contract promises, and list() as the objects of listEntries().
 */
import type { ListEntry, ObjectInfo } from '../types.js';
import { UPLOADS_PREFIX } from './staging.js';

/**
 * The objects and folders of one listing page, merged in key order: within a page both arrays
 * are ascending, and a folder sorts as its string. Drops what is not greater than `startAfter`
 * (a listing that starts after a key inside a folder still returns that folder) and the staging
 * folder at the root.
 */
export function mergeEntries(objects: ObjectInfo[], folders: string[], startAfter?: string): ListEntry[] {
  const after = (key: string) => startAfter === undefined || key > startAfter;
  const o = objects.filter((info) => after(info.key));
  const f = folders.filter((folder) => after(folder) && folder !== UPLOADS_PREFIX);
  const out: ListEntry[] = [];
  let i = 0;
  let j = 0;
  while (i < o.length || j < f.length) {
    if (j === f.length || (i < o.length && o[i]!.key < f[j]!)) out.push({ object: o[i++]! });
    else out.push({ folder: f[j++]! });
  }
  return out;
}

/** The objects of a listing by level: list() in terms of listEntries(). */
export async function* objectsOf(entries: AsyncIterable<ListEntry>): AsyncGenerator<ObjectInfo> {
  for await (const entry of entries) if (entry.object) yield entry.object;
}

/**
 * One level of a key set held in memory, as listEntries() lists it: the keys under `prefix` with
 * no further '/', and each folder once (a string ending in '/'), ascending, after `startAfter`.
 */
export function levelOf(keys: Iterable<string>, prefix: string, startAfter?: string): string[] {
  const level = new Set<string>();
  for (const key of keys) {
    if (!key.startsWith(prefix)) continue;
    const slash = key.indexOf('/', prefix.length);
    level.add(slash === -1 ? key : key.slice(0, slash + 1));
  }
  return [...level].filter((k) => startAfter === undefined || k > startAfter).sort();
}
