/**
 * The documents of the MongoDB backend: a GridFS bucket (files and chunks) for the bytes, and
 * a per-key version log that says which file a key holds (see storage.ts for why).
 */
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Binary, type Collection, type Db, GridFSBucket, ObjectId } from 'mongodb';
import type { Metadata, ObjectInfo } from '../types.js';

export const CHUNK_BYTES = 255 * 1024; // the GridFS default

export interface VersionDoc {
  _id?: ObjectId;
  key: string;
  seq: number;
  fileId: string | null;
  token: string;
  size: number;
  createdAt: Date;
  metadata: Metadata;
}
export interface FileDoc {
  _id: string;
  length: number;
  chunkSize: number;
  uploadDate: Date;
  filename: string;
  metadata: { key: string; staged: boolean; attributes?: Metadata };
}
export interface ChunkDoc {
  _id: ObjectId;
  files_id: string;
  n: number;
  data: Binary;
}

export interface Collections {
  db: Db;
  versions: Collection<VersionDoc>;
  files: Collection<FileDoc>;
  chunks: Collection<ChunkDoc>;
  bucket: GridFSBucket;
}

/** The collections of the bucket named `name` in `db`. */
export function collections(db: Db, name: string): Collections {
  return {
    db,
    versions: db.collection<VersionDoc>(`${name}.versions`),
    files: db.collection<FileDoc>(`${name}.files`),
    chunks: db.collection<ChunkDoc>(`${name}.chunks`),
    bucket: new GridFSBucket(db, { bucketName: name, chunkSizeBytes: CHUNK_BYTES }),
  };
}

export function toInfo(version: VersionDoc & { fileId: string }): ObjectInfo {
  const { key, size, createdAt, token, metadata } = version;
  return { key, size, lastModified: createdAt, token, metadata: { ...metadata } };
}

export const newToken = () => new ObjectId().toHexString();

export function escapeRegex(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * Writes `body` as the GridFS chunks of file `fileId`; resolves to its size. GridFS by hand
 * rather than openUploadStream: a destroyed upload stream may still have chunk inserts in flight,
 * landing after abort() deleted the chunks. Here at most one insert is in flight, and it has
 * settled before this rejects, so the caller's clean-up comes last.
 */
export async function writeChunks(
  chunks: Collection<ChunkDoc>,
  fileId: string,
  body: Readable,
  signal?: AbortSignal,
): Promise<number> {
  let size = 0;
  let failed = false;
  let inflight: Promise<unknown> = Promise.resolve();
  const write = async (data: Buffer, n: number) => {
    await inflight;
    if (failed) throw new Error('upload failed');
    inflight = chunks.insertOne({ _id: new ObjectId(), files_id: fileId, n, data: new Binary(data) });
    inflight.catch(() => {}); // awaited by the next write or on failure
  };
  try {
    await pipeline(
      body,
      async (source: AsyncIterable<Buffer | string>) => {
        let buf = Buffer.allocUnsafe(CHUNK_BYTES);
        let pos = 0;
        let n = 0;
        for await (const piece of source) {
          const bytes = typeof piece === 'string' ? Buffer.from(piece) : piece;
          for (let off = 0; off < bytes.length; ) {
            const take = Math.min(CHUNK_BYTES - pos, bytes.length - off);
            bytes.copy(buf, pos, off, off + take);
            pos += take;
            off += take;
            size += take;
            if (pos === CHUNK_BYTES) {
              await write(buf, n++);
              buf = Buffer.allocUnsafe(CHUNK_BYTES);
              pos = 0;
            }
          }
        }
        if (pos > 0) await write(buf.subarray(0, pos), n);
        await inflight;
      },
      { signal },
    );
    return size;
  } catch (err) {
    failed = true;
    await inflight.catch(() => {});
    throw err;
  }
}
