/**
 * A second, strict reading of the tar headers, beside node-tar's: what other tar readers (GNU
 * tar, Python's tarfile, libarchive) would see in the same bytes. node-tar is lenient where they
 * are not, and an archive it reads as harmless could extract out of its directory elsewhere:
 * a pax record it drops (a value with a newline) or does not know (GNU.sparse.name), a global pax
 * header setting a path, a link entry carrying data that others read as further entries, data
 * after the end-of-archive blocks. Such archives are refused; for every other archive this
 * reading names the same entries as node-tar's, which the validator checks entry by entry.
 *
 * Only headers are looked at; entry data is skipped by arithmetic, so the cost is per entry.
 */
import { errors, type RegistryError } from '../errors.js';

const BLOCK = 512;
/** Pax and GNU long-name data held for parsing; node-tar's own bound is 1 MiB. */
const MAX_META_BYTES = 1024 * 1024;
/** Types that carry no data: a size on them makes readers disagree on where the next header is. */
const NO_DATA = new Set(['1', '2', '3', '4', '5', '6']);
/** Pax keys that change which file an entry is, or where the next header starts. */
const ENTRY_KEYS = new Set(['path', 'linkpath', 'size']);

export interface HeaderEntry {
  path: string;
  linkpath: string;
}

type State =
  | { kind: 'header' }
  | { kind: 'skip'; left: number }
  | { kind: 'meta'; type: string; size: number; padded: number; parts: Buffer[]; got: number }
  | { kind: 'ended' };

export class TarHeaders {
  /** Entries read, not yet matched with node-tar's. */
  readonly entries: HeaderEntry[] = [];
  #state: State = { kind: 'header' };
  /** A header block split across chunks. */
  #partial: Buffer[] = [];
  #partialBytes = 0;
  /** What the pax / GNU long-name headers set for the next entry. */
  #next: { path?: string; linkpath?: string; size?: number } = {};

  /** Reads `chunk` (the tar stream, in order); returns the first problem found, if any. */
  write(chunk: Buffer): RegistryError | undefined {
    let at = 0;
    while (at < chunk.length) {
      const state = this.#state;
      if (state.kind === 'ended') {
        // Past the first zero block GNU tar and tarfile stop, node-tar reads on (and tar -i, or
        // tools that append, would too): only zeros may follow.
        if (nonZeroFrom(chunk, at) !== -1) {
          return errors.invalidArchive('there is data after the end of the tar archive; create the archive in one go, without appending to it');
        }
        return undefined;
      }
      if (state.kind === 'skip') {
        const n = Math.min(state.left, chunk.length - at);
        state.left -= n;
        at += n;
        if (state.left === 0) this.#state = { kind: 'header' };
        continue;
      }
      if (state.kind === 'meta') {
        const n = Math.min(state.padded - state.got, chunk.length - at);
        if (state.got < state.size) state.parts.push(chunk.subarray(at, at + Math.min(n, state.size - state.got)));
        state.got += n;
        at += n;
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
    // A corrupt header is node-tar's to report (it checks the checksum); stop reading here.
    const size = readNumber(block.subarray(124, 136));
    if (size === undefined) return errors.invalidArchive('a tar header has an unreadable size field');
    const type = String.fromCharCode(block[156]!);
    if (type === 'x' || type === 'X' || type === 'g' || type === 'L' || type === 'K' || type === 'N') {
      if (size > MAX_META_BYTES) return errors.invalidArchive(`a tar metadata header holds ${size} bytes, more than ${MAX_META_BYTES}`);
      this.#state = { kind: 'meta', type, size, padded: padded(size), parts: [], got: 0 };
      if (size === 0) {
        this.#state = { kind: 'header' };
        return this.#meta(type, Buffer.alloc(0));
      }
      return undefined;
    }
    const name = cString(block.subarray(0, 100));
    // The prefix field only in POSIX ustar headers (GNU headers keep times there).
    const ustar = block.subarray(257, 265).toString('latin1') === 'ustar\u000000';
    const prefix = ustar ? cString(block.subarray(345, 500)) : '';
    const next = this.#next;
    this.#next = {};
    const path = next.path ?? (prefix ? `${prefix}/${name}` : name);
    const linkpath = next.linkpath ?? cString(block.subarray(157, 257));
    const dataSize = next.size ?? size;
    // (A plain file whose name ends in '/' is an old-style directory to some readers.)
    if ((NO_DATA.has(type) || ((type === '0' || type === '\0') && path.endsWith('/'))) && dataSize > 0) {
      return errors.unsafeArchive(`the entry ${JSON.stringify(path)} is a link, device or directory that carries ${dataSize} bytes of data, which tar readers disagree on`);
    }
    this.entries.push({ path, linkpath });
    if (dataSize > 0) this.#state = { kind: 'skip', left: padded(dataSize) };
    return undefined;
  }

  #meta(type: string, data: Buffer): RegistryError | undefined {
    if (type === 'L' || type === 'N') {
      this.#next.path = cString(data);
      return undefined;
    }
    if (type === 'K') {
      this.#next.linkpath = cString(data);
      return undefined;
    }
    const records = parsePax(data);
    if (typeof records === 'string') return errors.unsafeArchive(`a pax header is malformed (${records}), and tar readers would disagree on it`);
    for (const [key, value] of records) {
      if (key.startsWith('GNU.sparse.')) return errors.unsafeArchive(`a pax header has the GNU sparse key ${key}; sparse files are not accepted`);
      if (type === 'g') {
        if (ENTRY_KEYS.has(key)) return errors.unsafeArchive(`a global pax header sets ${key} for every entry, which tar readers disagree on`);
        continue;
      }
      if (key === 'path') this.#next.path = value;
      else if (key === 'linkpath') this.#next.linkpath = value;
      else if (key === 'size') {
        if (!/^\d+$/.test(value)) return errors.unsafeArchive(`a pax header has the size ${JSON.stringify(value)}`);
        this.#next.size = Number(value);
      }
    }
    return undefined;
  }
}

/**
 * Pax records (`<length> <key>=<value>\n`, the length counting the whole record), strictly:
 * a description of the first problem instead when any record is malformed, or a value of an
 * entry key holds a newline or NUL (node-tar drops such records; other readers keep them).
 */
function parsePax(data: Buffer): [string, string][] | string {
  const out: [string, string][] = [];
  let at = 0;
  while (at < data.length) {
    if (data[at] === 0) {
      // Some writers pad with NULs; nothing but NULs may follow.
      return nonZeroFrom(data, at) === -1 ? out : 'data after a NUL';
    }
    const space = data.indexOf(0x20, at);
    if (space === -1 || space - at > 10) return 'a record without a length';
    const lengthText = data.subarray(at, space).toString('latin1');
    if (!/^[1-9]\d*$/.test(lengthText)) return `a record length ${JSON.stringify(lengthText)}`;
    const length = Number(lengthText);
    const end = at + length;
    if (end > data.length || data[end - 1] !== 0x0a) return 'a record whose length does not end at a newline';
    const record = data.subarray(space + 1, end - 1).toString('utf8');
    const eq = record.indexOf('=');
    if (eq <= 0) return 'a record without a key';
    const key = record.slice(0, eq);
    const value = record.slice(eq + 1);
    if (ENTRY_KEYS.has(key) && /[\n\0]/.test(value)) return `the ${key} value holds a newline or NUL`;
    out.push([key, value]);
    at = end;
  }
  return out;
}

/** A header number: octal text, or GNU base-256 (first byte 0x80) for large values. */
function readNumber(field: Buffer): number | undefined {
  if (field[0] === 0x80) {
    let n = 0;
    for (let i = 1; i < field.length; i++) n = n * 256 + field[i]!;
    return Number.isSafeInteger(n) ? n : undefined;
  }
  if (field[0]! & 0x80) return undefined; // negative base-256
  const text = field.toString('latin1').replace(/[\0 ]+$/, '').replace(/^ +/, '');
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
