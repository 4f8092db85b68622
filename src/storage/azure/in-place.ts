/**
 * Uploads straight to their key on Azure (stageInPlace, storage.ts). A body of one block (8 MiB,
 * blocks.ts) goes in one Put Blob carrying the metadata and the condition, which the service
 * applies atomically. A longer one is staged in blocks of the key itself and becomes the blob only
 * with Put Block List, which carries the condition: until then readers see the old blob or none.
 * Block ids are random per upload, so the blocks of two uploads to one key never mix (the
 * registry makes none: a history key's number belongs to its writer).
 *
 * A writer that dies mid-body leaves uncommitted blocks on the key, which Azure keeps for a week.
 * So before its second block the writer stores a marker, an empty blob
 * `.uploads/{pid}-{uuid}-{host}.part` that names the key in its metadata; sweep() judges it like
 * a staged upload and, for a dead writer's, drops the key's uncommitted blocks before deleting it.
 */
import { randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { BlobRequestConditions, BlockBlobClient, ContainerClient } from '@azure/storage-blob';
import { newStagedName, UPLOADS_PREFIX } from '../shared/staging.js';
import { blocksOf, putBlocks } from './blocks.js';

/** The marker's metadata name for the key it stands for (percent-encoded). */
const MARKED_KEY = 'registry_in_place';

export function contentHeaders(key: string) {
  return { blobContentType: key.endsWith('.gz') ? 'application/gzip' : 'application/octet-stream' };
}

export interface InPlaceWrite {
  metadata: Record<string, string>;
  conditions: BlobRequestConditions;
  signal?: AbortSignal;
  /** Runs before a second block is staged (the marker). */
  beforeBlocks: () => Promise<void>;
}

/** Writes `body` to `blob` itself (see the header). */
export async function uploadInPlace(
  blob: BlockBlobClient,
  body: Readable,
  w: InPlaceWrite,
): Promise<{ etag: string; lastModified: Date; size: number }> {
  const tag = randomBytes(4).toString('hex');
  const idOf = (i: number) => Buffer.from(`${tag}-${String(i).padStart(6, '0')}`).toString('base64');
  const blocks: string[] = [];
  const options = { metadata: w.metadata, conditions: w.conditions, blobHTTPHeaders: contentHeaders(blob.name) };
  let writing: Promise<{ etag?: string; lastModified?: Date; size: number }> | undefined;
  try {
    await pipeline(
      body,
      (source: AsyncIterable<Buffer>) =>
        (writing = (async () => {
          const parts = blocksOf(source)[Symbol.asyncIterator]();
          const first = await parts.next();
          const second = first.done ? first : await parts.next();
          if (second.done) {
            // The body has ended: one block at most, one request.
            const data = first.done ? Buffer.alloc(0) : first.value;
            const res = await blob.upload(data, data.length, { ...options, abortSignal: w.signal });
            return { ...res, size: data.length };
          }
          await w.beforeBlocks();
          const all = async function* () {
            yield first.value;
            yield second.value;
            for (let next = await parts.next(); !next.done; next = await parts.next()) yield next.value;
          };
          const size = await putBlocks(blob, all(), blocks, idOf);
          // The body ended without error: only now does the blob appear.
          const res = await blob.commitBlockList(blocks, { ...options, abortSignal: w.signal });
          return { ...res, size };
        })()),
      { signal: w.signal },
    );
    const done = await writing!;
    return { etag: done.etag!, lastModified: done.lastModified!, size: done.size };
  } catch (err) {
    await writing?.catch(() => {}); // no block may land after the clean-up below
    if (blocks.length > 0) await dropUncommitted(blob);
    throw err;
  }
}

/**
 * Drops the uncommitted blocks of a key that holds no blob: committing an empty list (only where
 * there is no blob) discards them; the empty blob it makes goes at once. Where a blob exists, its
 * next commit discards them (or Azure, after a week).
 */
export async function dropUncommitted(blob: BlockBlobClient): Promise<void> {
  try {
    const empty = await blob.commitBlockList([], { conditions: { ifNoneMatch: '*' } });
    await blob.delete({ conditions: { ifMatch: empty.etag } });
  } catch {
    // a blob is there (or the storage is away): left as described above
  }
}

/** Stores the marker of an upload in place to `key`; returns its staged name. */
export async function mark(container: ContainerClient, key: string): Promise<string> {
  const name = newStagedName();
  await container
    .getBlockBlobClient(UPLOADS_PREFIX + name)
    .upload('', 0, { metadata: { [MARKED_KEY]: encodeURIComponent(key) } });
  return name;
}

/** The key a marker names (from a listing's metadata); undefined for a staged upload. */
export function markedKey(metadata: Record<string, string> | undefined): string | undefined {
  const raw = metadata?.[MARKED_KEY];
  return raw === undefined ? undefined : decodeURIComponent(raw);
}
