/**
 * A second, strict reading of the tar headers, beside node-tar's: what other tar readers (GNU
 * tar, Python's tarfile, libarchive) would see in the same bytes. node-tar is lenient where they
 * are not, and an archive it reads as harmless could extract out of its directory elsewhere.
 * This reader refuses every construct on which the readers are known to differ:
 *
 *  - pax records read differently (node-tar splits on newlines; a value holding one can smuggle
 *    records only node-tar sees) or not at all (GNU.sparse.*), and global headers setting
 *    path / linkpath / size;
 *  - more than one pax, GNU long-name or long-link header before an entry, or a long name and a
 *    pax path together (node-tar lets the last win, the others the first, or pax);
 *  - entry types outside the plain set (old GNU long names `N`, volume headers, sparse files,
 *    Solaris `X` headers...: some readers skip them, others read them as files);
 *  - link, device and directory entries carrying data (readers disagree on where the next
 *    header is), a ustar prefix field filled in a non-POSIX header, data after the end blocks.
 *
 * For every other archive it names the same entries (path, link target, type, size) as node-tar,
 * which the validator checks entry by entry. Only headers are read; entry data is skipped by
 * arithmetic, so the cost is per entry, not per byte.
 */
import { errors, type RegistryError } from '../../errors.js';

const BLOCK = 512;
/** Pax and GNU long-name data held for parsing; node-tar's own bound is 1 MiB. */
const MAX_META_BYTES = 1024 * 1024;
/** Entry types every reader reads alike (regular files, links, devices, directories, FIFOs). */
const ENTRY_TYPES = new Set(['0', '1', '2', '3', '4', '5', '6', '7']);
/** Types that carry no data: a size on them makes readers disagree on where the next header is. */
const NO_DATA = new Set(['1', '2', '3', '4', '5', '6']);
/** Pax keys that change which file an entry is, or where the next header starts. */
const ENTRY_KEYS = ['path', 'linkpath', 'size'] as const;
const POSIX_MAGIC = 'ustar\u000000';

export interface HeaderEntry {
  path: string;
  linkpath: string;
  /** Typeflag, with '\0' read as '0' and an old-style directory ('0', name ending in '/') as '5'. */
  type: string;
  /** Bytes of data that follow the header. */
  size: number;
}

type PaxFields = Partial<Record<(typeof ENTRY_KEYS)[number], string>>;

type State =
  | { kind: 'header' }
  | { kind: 'skip'; left: number }
  | { kind: 'meta'; type: string; size: number; padded: number; parts: Buffer[]; got: number; bodyAt: number }
  | { kind: 'ended' };

export class TarHeaders {
  /** Entries read, not yet matched with node-tar's. */
  readonly entries: HeaderEntry[] = [];
  #state: State = { kind: 'header' };
  /** Bytes read so far. */
  #offset = 0;
  /** A header block split across chunks. */
  #partial: Buffer[] = [];
  #partialBytes = 0;
  /** What the pax / GNU long-name headers set for the next entry, and which headers did. */
  #next: { path?: string; linkpath?: string; size?: number; seen: Set<string> } = { seen: new Set() };
  /** Root directory entries with an empty name read, that node-tar has not yet reported skipping. */
  #emptyRoots = 0;

  /**
   * An empty name is the archive root to GNU tar and tarfile, and an invalid header to node-tar,
   * which skips it (with a warning): such a header is not in `entries`. Called on each warning
   * of that kind; true when it matches a root read here (false: the readers disagree).
   */
  takeEmptyRoot(): boolean {
    if (this.#emptyRoots === 0) return false;
    this.#emptyRoots--;
    return true;
  }

  /** Empty-named roots node-tar did not report skipping (0 once both read the whole archive). */
  get emptyRootsLeft(): number {
    return this.#emptyRoots;
  }

  /**
   * Where the data of a pax or long-name header that has not fully arrived starts (a stream
   * offset), if one is being read: node-tar decodes such data chunk by chunk, which garbles a
   * character split between two chunks, so the validator holds these bytes back until all came.
   */
  get metaDataStart(): number | undefined {
    return this.#state.kind === 'meta' ? this.#state.bodyAt : undefined;
  }

  /** Reads `chunk` (the tar stream, in order); returns the first problem found, if any. */
  write(chunk: Buffer): RegistryError | undefined {
    let at = 0;
    while (at < chunk.length) {
      const state = this.#state;
      if (state.kind === 'ended') {
        // Past the first zero block GNU tar and tarfile stop, node-tar reads on (and tar -i, or
        // tools that append, would too): only zeros may follow.
        if (nonZeroFrom(chunk, at) !== -1) {
          return errors.invalidArchive(
            'there is data after the end of the tar archive; create the archive in one go, without appending to it',
          );
        }
        this.#offset += chunk.length - at;
        return undefined;
      }
      if (state.kind === 'skip') {
        const n = Math.min(state.left, chunk.length - at);
        state.left -= n;
        at += n;
        this.#offset += n;
        if (state.left === 0) this.#state = { kind: 'header' };
        continue;
      }
      if (state.kind === 'meta') {
        const n = Math.min(state.padded - state.got, chunk.length - at);
        if (state.got < state.size) state.parts.push(chunk.subarray(at, at + Math.min(n, state.size - state.got)));
        state.got += n;
        at += n;
        this.#offset += n;
        if (state.got === state.padded) {
          this.#state = { kind: 'header' };
          const problem = this.#meta(state.type, Buffer.concat(state.parts).subarray(0, state.size));
          if (problem) return problem;
        }
        continue;
      }
      // A header block, possibly gathered from several chunks.
      const n = Math.min(BLOCK - this.#partialBytes, chunk.length - at);
      this.#partial.push(chunk.subarray(at, at + n));
      this.#partialBytes += n;
      at += n;
      this.#offset += n;
      if (this.#partialBytes < BLOCK) continue;
      const block = this.#partial.length === 1 ? this.#partial[0]! : Buffer.concat(this.#partial);
      this.#partial = [];
      this.#partialBytes = 0;
      const problem = this.#header(block);
      if (problem) return problem;
    }
    return undefined;
  }

  #header(block: Buffer): RegistryError | undefined {
    if (nonZeroFrom(block, 0) === -1) {
      this.#state = { kind: 'ended' };
      return undefined;
    }
    // A corrupt header is node-tar's to report (it checks the checksum).
    const size = readNumber(block.subarray(124, 136));
    if (size === undefined) return errors.invalidArchive('a tar header has an unreadable size field');
    const flag = block[156] === 0 ? '0' : String.fromCharCode(block[156]!);
    if (flag === 'x' || flag === 'g' || flag === 'L' || flag === 'K') {
      if (size > MAX_META_BYTES) {
        return errors.invalidArchive(`a tar metadata header holds ${size} bytes, more than ${MAX_META_BYTES}`);
      }
      if (flag !== 'g') {
        if (this.#next.seen.has(flag)) return disagree(`two ${describeMeta(flag)} headers before one entry`);
        this.#next.seen.add(flag);
      }
      if (size === 0) return this.#meta(flag, Buffer.alloc(0));
      this.#state = { kind: 'meta', type: flag, size, padded: padded(size), parts: [], got: 0, bodyAt: this.#offset };
      return undefined;
    }
    if (flag === 'S') return errors.unsafeArchive('the archive holds a sparse file; sparse files are not accepted');
    if (!ENTRY_TYPES.has(flag)) return disagree(`an entry of tar type ${JSON.stringify(flag)}`);
    const name = cString(block.subarray(0, 100));
    const posix = block.subarray(257, 265).toString('latin1') === POSIX_MAGIC;
    // Python's tarfile joins the prefix field to the name whatever the header's format.
    if (!posix && nonZeroFrom(block.subarray(345, 500), 0) !== -1) {
      return disagree('a non-POSIX header with data in its prefix field');
    }
    const prefix = posix ? cString(block.subarray(345, 500)) : '';
    const next = this.#next;
    this.#next = { seen: new Set() };
    const path = next.path ?? (prefix ? `${prefix}/${name}` : name);
    const linkpath = next.linkpath ?? cString(block.subarray(157, 257));
    const dataSize = next.size ?? size;
    const type = flag === '0' && path.endsWith('/') ? '5' : flag;
    if ((NO_DATA.has(type) || type !== flag) && dataSize > 0) {
      const what = `a link, device or directory that carries ${dataSize} bytes of data`;
      return errors.unsafeArchive(`the entry ${JSON.stringify(path)} is ${what}, which tar readers disagree on`);
    }
    if (path === '') {
      if (type !== '5') return errors.unsafeArchive('an entry with an empty name is not a directory; give it a name');
      // node-tar skips the header alone and keeps its pax fields for the next entry; others do not.
      if (next.seen.size > 0) return disagree('a pax or long-name header before an entry with an empty name');
      this.#emptyRoots++;
      return undefined;
    }
    this.entries.push({ path, linkpath, type, size: dataSize });
    if (dataSize > 0) this.#state = { kind: 'skip', left: padded(dataSize) };
    return undefined;
  }

  #meta(type: string, data: Buffer): RegistryError | undefined {
    if (type === 'L' || type === 'K') {
      const field = type === 'L' ? 'path' : 'linkpath';
      const long = field === 'path' ? 'name' : 'link';
      if (this.#next[field] !== undefined) return disagree(`a GNU long ${long} and a pax ${field} for one entry`);
      this.#next[field] = cString(data);
      return undefined;
    }
    const strict = parsePax(data);
    if (typeof strict === 'string') return disagree(`a malformed pax header (${strict})`);
    // node-tar's own reading of the same bytes must agree on everything that places an entry.
    const lenient = parsePaxLikeNodeTar(data);
    for (const key of ENTRY_KEYS) {
      if (strict.fields[key] !== lenient[key]) {
        return disagree(`a pax header whose ${key} tar readers read differently`);
      }
    }
    if (strict.sparse) {
      const key = `the GNU sparse key ${strict.sparse}`;
      return errors.unsafeArchive(`a pax header has ${key}; sparse files are not accepted`);
    }
    if (type === 'g') {
      const key = ENTRY_KEYS.find((k) => strict.fields[k] !== undefined);
      return key ? disagree(`a global pax header setting ${key} for every entry`) : undefined;
    }
    for (const key of ['path', 'linkpath'] as const) {
      const value = strict.fields[key];
      if (value === undefined) continue;
      const long = key === 'path' ? 'name' : 'link';
      if (this.#next[key] !== undefined) return disagree(`a GNU long ${long} and a pax ${key} for one entry`);
      this.#next[key] = value;
    }
    if (strict.fields.size !== undefined) {
      if (!/^\d+$/.test(strict.fields.size)) return disagree(`a pax size ${JSON.stringify(strict.fields.size)}`);
      this.#next.size = Number(strict.fields.size);
    }
    return undefined;
  }
}

function disagree(what: string): RegistryError {
  const fix = 'create the archive with a standard tar tool';
  return errors.unsafeArchive(`it has ${what}, which tar readers disagree on; ${fix}`);
}

function describeMeta(flag: string): string {
  return flag === 'x' ? 'pax' : flag === 'L' ? 'GNU long-name' : 'GNU long-link';
}

/**
 * Pax records (`<length> <key>=<value>\n`, the length counting the whole record), strictly: a
 * description of the first problem instead when any record is malformed. The entry keys' values,
 * and the first GNU.sparse.* key met.
 */
function parsePax(data: Buffer): { fields: PaxFields; sparse?: string } | string {
  const fields: PaxFields = {};
  let sparse: string | undefined;
  let at = 0;
  while (at < data.length) {
    if (data[at] === 0) {
      // Some writers pad with NULs; nothing but NULs may follow.
      return nonZeroFrom(data, at) === -1 ? { fields, sparse } : 'data after a NUL';
    }
    const space = data.indexOf(0x20, at);
    if (space === -1 || space - at > 10) return 'a record without a length';
    const lengthText = data.subarray(at, space).toString('latin1');
    if (!/^[1-9]\d*$/.test(lengthText)) return `a record length ${JSON.stringify(lengthText)}`;
    const end = at + Number(lengthText);
    if (end > data.length || data[end - 1] !== 0x0a) return 'a record whose length does not end at a newline';
    const record = data.subarray(space + 1, end - 1);
    const eq = record.indexOf(0x3d);
    if (eq <= 0) return 'a record without a key';
    const key = record.subarray(0, eq).toString('utf8');
    if (key.startsWith('GNU.sparse.')) sparse ??= key;
    if ((ENTRY_KEYS as readonly string[]).includes(key)) {
      const value = record.subarray(eq + 1).toString('utf8');
      if (/[\n\0]/.test(value)) return `the ${key} value holds a newline or NUL`;
      fields[key as keyof PaxFields] = value;
    }
    at = end;
  }
  return { fields, sparse };
}

/** The entry keys of a pax body as node-tar reads them: the text split on newlines (pax.js). */
function parsePaxLikeNodeTar(data: Buffer): PaxFields {
  const fields: PaxFields = {};
  for (const line of data.toString('utf8').replace(/\n$/, '').split('\n')) {
    const n = parseInt(line, 10);
    if (n !== Buffer.byteLength(line) + 1) continue;
    const kv = line.slice(`${n} `.length).split('=');
    const key = kv.shift();
    if (!key || !(ENTRY_KEYS as readonly string[]).includes(key)) continue;
    const value = kv.join('=').replace(/\0.*/, '');
    if (key === 'size' && !(Number(value) >= 0)) continue;
    fields[key as keyof PaxFields] = value;
  }
  return fields;
}

/** A header number: octal text, or GNU base-256 (first byte 0x80) for large values. */
function readNumber(field: Buffer): number | undefined {
  if (field[0] === 0x80) {
    let n = 0;
    for (let i = 1; i < field.length; i++) n = n * 256 + field[i]!;
    return Number.isSafeInteger(n) ? n : undefined;
  }
  if (field[0]! & 0x80) return undefined; // negative base-256
  const text = field
    .toString('latin1')
    .replace(/[\0 ]+$/, '')
    .replace(/^ +/, '');
  if (text === '') return 0;
  return /^[0-7]+$/.test(text) ? parseInt(text, 8) : undefined;
}

function cString(field: Buffer): string {
  const nul = field.indexOf(0);
  return field.subarray(0, nul === -1 ? field.length : nul).toString('utf8');
}

/** Index of the first non-zero byte at or after `from`, or -1. */
function nonZeroFrom(buf: Buffer, from: number): number {
  for (let i = from; i < buf.length; i++) if (buf[i] !== 0) return i;
  return -1;
}

const padded = (n: number) => Math.ceil(n / BLOCK) * BLOCK;
