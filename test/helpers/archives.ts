/**
 * Builds tar / tar.gz archives in memory for tests, including hostile ones no well-behaved tar
 * tool would write (absolute paths, '..', devices, escaping links). Uses tar's own Header and
 * Pax encoders so the bytes are real tar.
 */
import { randomBytes } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { Header, Pax } from 'tar';

/** tar's entry type names (tar does not export the type from its index). */
type TarType =
  NonNullable<ConstructorParameters<typeof Header>[0]> extends infer D
    ? D extends { type?: infer T }
      ? NonNullable<T>
      : never
    : never;

export interface Entry {
  path: string;
  /** Any tar type name, including exotic ones: 'SparseFile', 'NextFileHasLongPath', ... */
  type?: TarType;
  body?: Buffer | string;
  linkpath?: string;
  /** Declared size when it should differ from the body. */
  size?: number;
  /** Put path / linkpath in a PAX header; `ustarPath` is then what the plain header says. */
  pax?: boolean;
  ustarPath?: string;
  /** With `pax`: what the plain header's link field says (real writers put the name cut short). */
  ustarLinkpath?: string;
  /** Break the header checksum. */
  badChecksum?: boolean;
  /** Permission bits; 0o755 for directories and 0o644 otherwise by default. */
  mode?: number;
}

const block = (n: number) => Math.ceil(n / 512) * 512;

/**
 * Tar bytes for `entries`: any entry type, PAX overrides, declared sizes that differ from the body
 * and broken checksums included.
 */
export function tar(entries: Entry[], options: { endBlocks?: boolean } = {}): Buffer {
  const chunks: Buffer[] = [];
  for (const e of entries) {
    const type = e.type ?? 'File';
    const body = e.body === undefined ? Buffer.alloc(0) : Buffer.from(e.body);
    const hasBody =
      type === 'File' || type === 'NextFileHasLongPath' || type === 'NextFileHasLongLinkpath' || type === 'SparseFile';
    const size = hasBody ? (e.size ?? body.length) : 0;
    if (e.pax) chunks.push(new Pax({ path: e.path, linkpath: e.linkpath }).encode());
    const header = new Header({
      path: e.pax ? (e.ustarPath ?? 'PaxHeaderPlaceholder') : e.path,
      type,
      size,
      mode: e.mode ?? (type === 'Directory' ? 0o755 : 0o644),
      mtime: new Date('2024-01-01T00:00:00Z'),
      linkpath: e.pax ? e.ustarLinkpath : e.linkpath,
      uid: 1000,
      gid: 1000,
    });
    const buf = Buffer.alloc(512);
    header.encode(buf, 0);
    if (e.badChecksum) buf.write('0000000\0', 148, 'latin1');
    chunks.push(buf);
    if (hasBody) {
      const padded = Buffer.alloc(block(Math.min(size, body.length)));
      body.copy(padded);
      chunks.push(padded);
    }
  }
  if (options.endBlocks !== false) chunks.push(Buffer.alloc(1024));
  return Buffer.concat(chunks);
}

/**
 * A pax extended header (local, or global with `global`) holding exactly `records`, as raw
 * bytes: for archives that other tar readers read differently from node-tar.
 */
export function paxBlock(records: [string, string][], global = false): Buffer {
  const data = Buffer.concat(
    records.map(([k, v]) => {
      const text = ` ${k}=${v}\n`;
      let length = Buffer.byteLength(text);
      length += String(length + String(length).length).length;
      return Buffer.from(`${length}${text}`);
    }),
  );
  const header = Buffer.alloc(512);
  new Header({
    path: 'PaxHeader',
    type: global ? 'GlobalExtendedHeader' : 'ExtendedHeader',
    size: data.length,
    mode: 0o644,
    mtime: new Date('2024-01-01T00:00:00Z'),
  }).encode(header, 0);
  const padded = Buffer.alloc(block(data.length));
  data.copy(padded);
  return Buffer.concat([header, padded]);
}

/** A header block for `entry` with its size field set to `size`, whatever its type. */
export function headerWithSize(entry: Entry, size: number): Buffer {
  const buf = Buffer.alloc(512);
  new Header({
    path: entry.path,
    type: entry.type ?? 'File',
    size: 0,
    mode: 0o644,
    mtime: new Date('2024-01-01T00:00:00Z'),
    linkpath: entry.linkpath,
  }).encode(buf, 0);
  buf.write(`${size.toString(8).padStart(11, '0')}\0`, 124, 'latin1');
  let sum = 0;
  buf.fill(0x20, 148, 156);
  for (const b of buf) sum += b;
  buf.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  return buf;
}

/** `block` (a 512-byte header) with `edits` (offset → bytes) applied and its checksum redone. */
export function retouch(block: Buffer, edits: Record<number, Buffer | string>): Buffer {
  const buf = Buffer.from(block);
  for (const [at, bytes] of Object.entries(edits)) Buffer.from(bytes as string, 'latin1').copy(buf, Number(at));
  buf.fill(0x20, 148, 156);
  let sum = 0;
  for (const b of buf) sum += b;
  buf.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  return buf;
}

export function tgz(entries: Entry[]): Buffer {
  return gzipSync(tar(entries));
}

/** A small valid model archive with distinct content per `seed`. */
export function model(seed: string, bytes = 64 * 1024): Buffer {
  return tgz([
    { path: 'model/', type: 'Directory' },
    { path: 'model/config.json', body: JSON.stringify({ seed }) },
    { path: 'model/weights.bin', body: Buffer.concat([Buffer.from(seed), randomBytes(bytes)]) },
    { path: 'model/latest', type: 'SymbolicLink', linkpath: 'weights.bin' },
  ]);
}
