/**
 * Builds tar / tar.gz archives in memory for tests, including hostile ones no well-behaved tar
 * tool would write (absolute paths, '..', devices, escaping links). Uses tar's own Header and
 * Pax encoders so the bytes are real tar.
 */
import { randomBytes } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { Header, Pax } from 'tar';

export interface Entry {
  path: string;
  type?: 'File' | 'Directory' | 'SymbolicLink' | 'Link' | 'CharacterDevice' | 'BlockDevice' | 'FIFO';
  body?: Buffer | string;
  linkpath?: string;
  /** Declared size when it should differ from the body (e.g. a gzip bomb's claim). */
  size?: number;
  /** Encode the path in a PAX extended header (long names). */
  pax?: boolean;
}

const block = (n: number) => Math.ceil(n / 512) * 512;

export function tar(entries: Entry[], options: { endBlocks?: boolean } = {}): Buffer {
  const chunks: Buffer[] = [];
  for (const e of entries) {
    const type = e.type ?? 'File';
    const body = e.body === undefined ? Buffer.alloc(0) : Buffer.from(e.body);
    const size = type === 'File' ? (e.size ?? body.length) : 0;
    if (e.pax) {
      const pax = new Pax({ path: e.path, linkpath: e.linkpath }).encode();
      chunks.push(pax);
    }
    const header = new Header({
      path: e.pax ? 'PaxHeaderPlaceholder' : e.path,
      type,
      size,
      mode: type === 'Directory' ? 0o755 : 0o644,
      mtime: new Date('2024-01-01T00:00:00Z'),
      linkpath: e.linkpath,
      uid: 1000,
      gid: 1000,
      devmaj: 0,
      devmin: 0,
    });
    const buf = Buffer.alloc(512);
    header.encode(buf, 0);
    chunks.push(buf);
    if (type === 'File') {
      const padded = Buffer.alloc(block(size));
      body.copy(padded);
      chunks.push(padded);
    }
  }
  if (options.endBlocks !== false) chunks.push(Buffer.alloc(1024));
  return Buffer.concat(chunks);
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
