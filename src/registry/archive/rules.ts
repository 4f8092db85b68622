/**
 * The rules an archive entry's path and links are checked by, and node-tar's parser errors as a
 * client reads them. Shared by the validator and (through ArchiveRules) the cache's extraction.
 */
import { errors, type RegistryError } from '../../errors.js';

/**
 * Names of the archive root itself, as producers write it: GNU tar and shutil `./`, Python's
 * tarfile `/` for `arcname=""` (Rasa 3). Only these exact names: `/x` stays an absolute path.
 */
export const ROOT_NAMES: ReadonlySet<string> = new Set(['', '.', './', '/']);

/**
 * Longest entry path (and symlink target), and longest path component, in UTF-8 bytes. A
 * component is a file name, which Linux file systems hold up to 255 bytes. A tree is extracted
 * under CACHE_DIR/trees/tmp-<uuid>/, and the whole path must stay under Linux's PATH_MAX (4096):
 * 3 KiB for the entry leaves 1 KiB for CACHE_DIR. Longer ones are refused at upload, so an
 * archive accepted is one its files can be listed and served from, on every backend.
 */
export const MAX_PATH_BYTES = 3072;
export const MAX_COMPONENT_BYTES = 255;

/** What a path holds at a point of the archive, for hard links: the latest entry there wins. */
export type Kind = 'file' | 'directory' | 'symlink';

/**
 * The first symlink that leaves the root when resolved through the archive's other symlinks
 * (`d/up -> ..` and `d/out -> up/../x`: each stays inside on its own, together they escape), or
 * undefined.
 */
export function escapingLink(links: ReadonlyMap<string, string>): string | undefined {
  for (const [link, target] of links) {
    if (!resolveInside(link.split('/').slice(0, -1), target, links)) return link;
  }
  return undefined;
}

/**
 * `target` resolved from directory `dir` (path components), following `links`; undefined when it
 * leaves the root. Loops and chains of more than 40 links count as leaving.
 */
export function resolveInside(
  dir: string[],
  target: string,
  links: ReadonlyMap<string, string>,
  hops = 0,
): string[] | undefined {
  let stack = [...dir];
  for (const part of target.split(/[\\/]/)) {
    if (part === '' || part === '.') continue;
    if (part === '..') {
      if (stack.length === 0) return undefined;
      stack.pop();
      continue;
    }
    stack.push(part);
    const next = links.get(stack.join('/'));
    if (next !== undefined) {
      if (hops >= 40) return undefined;
      const resolved = resolveInside(stack.slice(0, -1), next, links, hops + 1);
      if (!resolved) return undefined;
      stack = resolved;
    }
  }
  return stack;
}

export const NO_LINKS: ReadonlyMap<string, string> = new Map();

/** Why `normalized` is too long to extract, or undefined. */
export function pathTooLong(normalized: string): string | undefined {
  const bytes = Buffer.byteLength(normalized);
  if (bytes > MAX_PATH_BYTES) return `is ${bytes} bytes long, over the limit of ${MAX_PATH_BYTES} bytes`;
  for (const part of normalized.split('/')) {
    const n = Buffer.byteLength(part);
    if (n > MAX_COMPONENT_BYTES) {
      const limit = `the limit of ${MAX_COMPONENT_BYTES} bytes for one file or directory name`;
      return `has a component ${brief(part)} of ${n} bytes, over ${limit}`;
    }
  }
  return undefined;
}

/** A path for a message: JSON-quoted, cut after 80 characters. */
export function brief(p: string): string {
  if (p.length <= 80) return JSON.stringify(p);
  return `${JSON.stringify(p.slice(0, 80)).slice(0, -1)}…" (${p.length} characters)`;
}

/** `raw` without '.' and empty components, split on '/' only. */
export function posixKey(raw: string): string {
  return raw
    .split('/')
    .filter((p) => p !== '' && p !== '.')
    .join('/');
}

/** node-tar's warning for a header with an empty name (parse.js), which it skips. */
export function isEmptyRootWarning(code: string, message: string | Error): boolean {
  const text = typeof message === 'string' ? message : message.message;
  return code === 'TAR_ENTRY_INVALID' && text === 'path is required';
}

/** Whether every byte is zero; stops at the first that is not (a tar's first header at once). */
export function allZero(chunk: Buffer): boolean {
  for (let i = 0; i < chunk.length; i++) if (chunk[i] !== 0) return false;
  return true;
}

export function parserError(code: string, message: string | Error): RegistryError {
  const text = typeof message === 'string' ? message : message.message;
  if (/truncat/i.test(text) || code === 'Z_BUF_ERROR') {
    return errors.invalidArchive('the archive is truncated; upload the complete file');
  }
  if (code === 'TAR_BAD_ARCHIVE' && /unrecognized/i.test(text)) {
    return errors.invalidArchive('the data is not a tar archive');
  }
  return errors.invalidArchive(`the tar data is corrupt (${text.replace(/^TAR_[A-Z_]+: /, '')})`);
}

/**
 * A hard link (GNU tar, tarfile and node-tar write one for each further name of a file with
 * several) is extracted as another name of a file extracted before it, so it is safe only when
 * its target is a path of this archive that holds a regular file when the link comes: not a
 * later or missing entry (extractors would link whatever the disk has there), not a directory
 * or a symlink (a link to a symlink is a copy of it, resolved from another directory).
 */
export function hardLinkProblem(
  shown: string,
  key: string,
  target: string,
  kinds: ReadonlyMap<string, Kind>,
  symlinks: ReadonlyMap<string, string>,
): RegistryError | undefined {
  const refuse = (why: string) =>
    errors.unsafeArchive(
      `the hard link ${shown} points to ${JSON.stringify(target)}, ${why}; ` +
        'a hard link may only point to a regular file stored earlier in the archive',
    );
  if (!target) return refuse('an empty target');
  if (target.includes('\0')) return refuse('a target holding a NUL byte');
  if (/^([\\/]|[a-zA-Z]:)/.test(target)) return refuse('an absolute path');
  // Windows extractors read a backslash as a separator, POSIX ones as part of a name.
  if (target.includes('\\')) return refuse('a path with a backslash, which tar readers resolve differently');
  const parts = target.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) return refuse("a path with a '..' component");
  const targetKey = parts.join('/');
  if (targetKey === '') return refuse('the archive root');
  if (targetKey === key) return refuse('itself');
  for (let i = 1; i < parts.length; i++) {
    const dir = parts.slice(0, i).join('/');
    const kind = kinds.get(dir);
    if (symlinks.has(dir) || (kind !== undefined && kind !== 'directory')) {
      return refuse(`a path through ${JSON.stringify(dir)}, which is not a directory`);
    }
  }
  const kind = kinds.get(targetKey);
  if (kind === undefined) return refuse('which is not an earlier entry of the archive');
  if (kind !== 'file') return refuse(`which is a ${kind}`);
  return undefined;
}
