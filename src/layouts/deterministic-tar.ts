/**
 * Packs a set of files into a .tar.gz whose bytes depend only on the files: entries sorted by
 * name, every parent directory as its own entry, one fixed mtime, uid/gid 0 with no owner names,
 * mode 0644 for files and 0755 for directories, and a gzip header without a time or file name.
 * So packing the same files again gives the same sha256, which is what makes an importer's rerun
 * a skip instead of a new version.
 *
 * The format is POSIX ustar; a path that does not fit ustar's 100 + 155 bytes gets a PAX `path`
 * record, as GNU tar and Python's tarfile write it.
 */
import { gzipSync } from 'node:zlib';

export interface TarFile {
  /** POSIX relative path: no leading '/', no '.' or '..' segments, no empty segments. */
  path: string;
  content: Buffer;
}

const BLOCK = 512;

/** Why `path` cannot be an archive member, or undefined when it can. */
export function badMemberPath(path: string): string | undefined {
  if (path === '') return 'an empty path';
  if (path.startsWith('/')) return 'an absolute path';
  if (path.includes('\\')) return 'a backslash (paths are POSIX)';
  if (path.includes('\0')) return 'a NUL character';
  const segments = path.replace(/\/$/, '').split('/');
  if (segments.some((s) => s === '' || s === '.' || s === '..')) return "an empty, '.' or '..' segment";
  return undefined;
}

/** The .tar.gz of `files` (their paths must pass badMemberPath and be distinct). */
export function packDeterministic(files: TarFile[], mtimeSeconds: number): Buffer {
  const entries = new Map<string, Buffer | undefined>(); // undefined = directory
  for (const file of files) {
    const why = badMemberPath(file.path);
    if (why) throw new Error(`${JSON.stringify(file.path)} has ${why}`);
    const segments = file.path.split('/');
    for (let i = 1; i < segments.length; i++) {
      const dir = `${segments.slice(0, i).join('/')}/`;
      if (entries.has(dir.slice(0, -1)))
        throw new Error(`${JSON.stringify(dir.slice(0, -1))} is both a file and a directory`);
      entries.set(dir, undefined);
    }
    if (entries.has(file.path) || entries.has(`${file.path}/`))
      throw new Error(`${JSON.stringify(file.path)} is given twice, or as a file and a directory`);
    entries.set(file.path, file.content);
  }
  const mtime = Math.max(0, Math.floor(mtimeSeconds));
  const blocks: Buffer[] = [];
  // Sorted by bytes, not locale: the same order on every machine.
  for (const name of [...entries.keys()].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)))) {
    const content = entries.get(name);
    blocks.push(...header(name, content === undefined ? 'dir' : 'file', content?.length ?? 0, mtime));
    if (content) blocks.push(content, Buffer.alloc((BLOCK - (content.length % BLOCK)) % BLOCK));
  }
  blocks.push(Buffer.alloc(2 * BLOCK));
  // zlib writes no mtime and no name into the gzip header, and OS = 3 (unix) on every platform
  // Node runs on; level 9 so the bytes do not depend on a default that could change.
  return gzipSync(Buffer.concat(blocks), { level: 9 });
}

function header(name: string, type: 'file' | 'dir' | 'pax', size: number, mtime: number): Buffer[] {
  const out: Buffer[] = [];
  const split = splitUstar(name);
  if (!split && type !== 'pax') {
    const record = paxRecord('path', name);
    out.push(
      ...header('././@PaxHeader', 'pax', record.length, mtime),
      record,
      Buffer.alloc((BLOCK - (record.length % BLOCK)) % BLOCK),
    );
  }
  const [prefix, base] = split ?? ['', Buffer.from(name).subarray(0, 100).toString('latin1')];
  const h = Buffer.alloc(BLOCK);
  h.write(base, 0, 100, split ? 'utf8' : 'latin1');
  h.write(octal(type === 'dir' ? 0o755 : 0o644, 8), 100, 'ascii');
  h.write(octal(0, 8), 108, 'ascii'); // uid
  h.write(octal(0, 8), 116, 'ascii'); // gid
  h.write(octal(size, 12), 124, 'ascii');
  h.write(octal(mtime, 12), 136, 'ascii');
  h.fill(' ', 148, 156); // checksum placeholder
  h.write(type === 'dir' ? '5' : type === 'pax' ? 'x' : '0', 156, 'ascii');
  h.write('ustar\u000000', 257, 'ascii');
  h.write(prefix, 345, 155, 'utf8');
  let sum = 0;
  for (const byte of h) sum += byte;
  h.write(`${sum.toString(8).padStart(6, '0')}\u0000 `, 148, 'ascii');
  out.push(h);
  return out;
}

/** [prefix, name] when `path` fits ustar's fields, else undefined. */
function splitUstar(path: string): [string, string] | undefined {
  const bytes = Buffer.byteLength(path);
  if (bytes <= 100) return ['', path];
  // Split at a '/' so that the prefix fits 155 bytes and the rest 100.
  for (let i = path.indexOf('/'); i !== -1; i = path.indexOf('/', i + 1)) {
    const prefix = path.slice(0, i);
    const rest = path.slice(i + 1);
    if (Buffer.byteLength(prefix) <= 155 && Buffer.byteLength(rest) <= 100 && rest !== '') return [prefix, rest];
  }
  return undefined;
}

function paxRecord(key: string, value: string): Buffer {
  // "<length> key=value\n", where the length counts its own digits.
  const body = ` ${key}=${value}\n`;
  let length = Buffer.byteLength(body) + 1;
  while (String(length).length + Buffer.byteLength(body) !== length) length++;
  return Buffer.from(`${length}${body}`);
}

function octal(n: number, width: number): string {
  return `${n.toString(8).padStart(width - 1, '0')}\u0000`;
}
