/**
 * The whole catalog (issue 17): names have up to MAX_SEGMENTS segments, stored as
 * `seg/…/name.tar.gz` (and `.aliases/seg/…/name.json`), so every model is a walk of the folders a
 * name can be in — one delimiter listing per namespace (Storage.listEntries), as OCI's
 * `/v2/_catalog` lists `namespace/repo` — rather than one level of keys.
 *
 * The walk enters only folders that can be a namespace segment (namespaces.ts: a valid segment,
 * not a resource word, not ending in `.json`), at most MAX_SEGMENTS - 1 deep. So the registry's
 * and the backends' own folders (`.history/`, `.aliases/`, `.uploads/`, `.meta/`: no segment
 * starts with '.') and folders of other data in a shared bucket that no name can be in are never
 * walked; the listings even start past every entry that starts with '.' (see `from`). Within a
 * level, folders are met where they sort, so the keys come out in key order and a cursor (the
 * last key of a page) resumes the walk at its own folder.
 */
import type { ObjectInfo, Storage } from '../storage/types.js';
import { isValidSegment } from './names.js';
import { MAX_SEGMENTS, RESOURCE_WORDS } from './namespaces.js';

/** Whether a folder met at `depth` (folders below the base) can hold names: walked, or not. */
function isNamespaceFolder(segment: string, depth: number): boolean {
  return depth < MAX_SEGMENTS && isValidSegment(segment) && !RESOURCE_WORDS.has(segment) && !segment.endsWith('.json');
}

/**
 * The objects whose keys start with `base + prefix`, at every depth a name reaches below `base`
 * ('' for models, `.aliases/` for their documents), in key order, after the key `startAfter`.
 * The caller keeps the keys that are a name's (keys.nameOf): a folder can hold other objects.
 */
export function walkTree(
  storage: Storage,
  base: string,
  prefix = '',
  startAfter?: string,
  expect?: number,
): AsyncGenerator<ObjectInfo> {
  return walkLevel(storage, base, base + prefix, startAfter, expect);
}

async function* walkLevel(
  storage: Storage,
  base: string,
  prefix: string,
  startAfter: string | undefined,
  expect: number | undefined, // how many keys the caller expects to take (Storage.listEntries)
): AsyncGenerator<ObjectInfo> {
  const dir = prefix.slice(0, prefix.lastIndexOf('/') + 1); // the folder this level lists
  const depth = dir.slice(base.length).split('/').length - 1;
  // `dir + '/'` sorts after every entry of dir starting with '.' or '-' and before every one
  // starting with a letter or digit, as every name does: a listing from there skips .history/.
  let from = `${dir}/`;
  if (startAfter !== undefined) {
    const slash = startAfter.startsWith(dir) ? startAfter.indexOf('/', dir.length) : -1;
    if (slash !== -1) {
      // Resuming inside a folder of this level: the rest of that folder, then what follows it.
      const folder = startAfter.slice(0, slash + 1);
      if (folder.startsWith(prefix) && isNamespaceFolder(folder.slice(dir.length, -1), depth + 1)) {
        yield* walkLevel(storage, base, folder, startAfter, expect);
      }
      if (folder > from) from = folder;
    } else if (startAfter > from) from = startAfter;
  }
  for await (const entry of storage.listEntries(prefix, { startAfter: from, expect })) {
    if (entry.object) yield entry.object;
    else if (isNamespaceFolder(entry.folder.slice(dir.length, -1), depth + 1)) {
      yield* walkLevel(storage, base, entry.folder, undefined, expect);
    }
  }
}
