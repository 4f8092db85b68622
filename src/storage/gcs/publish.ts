/**
 * The two ways the gcs backend publishes a pinned source generation under a key, each carrying
 * the destination's precondition (ifGenerationMatch: '0' = must not exist, N = must be
 * generation N): objects.rewrite on the server, or — for servers that ignore rewrite
 * preconditions (fake-gcs-server) — a conditional resumable upload of the bytes streamed through
 * this process. See storage.ts for why either is atomic.
 */
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Bucket, FileMetadata } from '@google-cloud/storage';
import type { Metadata } from '../types.js';
import { contentTypeOf, type RewriteResponse } from './objects.js';

export const CHUNK_SIZE = 8 * 1024 * 1024;

export interface Destination {
  key: string;
  metadata: Metadata;
  ifGenerationMatch: string | undefined;
}

/** objects.rewrite, continued with the same preconditions until GCS reports it done. */
export async function rewrite(
  bucket: Bucket,
  source: string,
  generation: string,
  to: Destination,
): Promise<FileMetadata> {
  const qs: Record<string, string> = { ifSourceGenerationMatch: generation };
  if (to.ifGenerationMatch !== undefined) qs.ifGenerationMatch = to.ifGenerationMatch;
  const file = bucket.file(source);
  const uri = `/rewriteTo/b/${encodeURIComponent(bucket.name)}/o/${encodeURIComponent(to.key)}`;
  for (;;) {
    const response = await new Promise<RewriteResponse>((resolve, reject) =>
      file.request(
        { method: 'POST', uri, qs, json: { contentType: contentTypeOf(to.key), metadata: to.metadata } },
        (err, body) => (err ? reject(err) : resolve(body as RewriteResponse)),
      ),
    );
    if (response.done && response.resource) return response.resource;
    if (!response.rewriteToken) throw new Error('objects.rewrite returned neither a resource nor a rewriteToken');
    qs.rewriteToken = response.rewriteToken;
  }
}

/** For servers that ignore rewrite preconditions: a conditional upload of the pinned bytes. */
export async function reupload(
  bucket: Bucket,
  source: string,
  generation: string,
  to: Destination,
  signal: AbortSignal,
): Promise<FileMetadata> {
  const target = bucket.file(to.key);
  const reader = bucket.file(source, { generation: Number(generation) }).createReadStream({ decompress: false });
  const writer = target.createWriteStream({
    resumable: true,
    chunkSize: CHUNK_SIZE,
    contentType: contentTypeOf(to.key),
    metadata: { metadata: to.metadata },
    preconditionOpts:
      to.ifGenerationMatch === undefined ? undefined : { ifGenerationMatch: Number(to.ifGenerationMatch) },
  });
  await pipeline(reader, writer, { signal });
  return target.metadata.generation ? target.metadata : (await target.getMetadata())[0];
}

/**
 * An upload straight to its key (stageInPlace): a resumable upload with the metadata and the
 * precondition, which GCS checks when the session starts and again when its last chunk lands. The
 * object exists only once that last chunk is in, and that chunk is sent only when `body` ended:
 * a body that errors or an abort before then leaves no object (GCS drops the session in a week).
 */
export async function uploadInPlace(
  bucket: Bucket,
  body: Readable,
  to: Destination,
  signal: AbortSignal,
): Promise<FileMetadata> {
  const target = bucket.file(to.key);
  const writer = target.createWriteStream({
    resumable: true,
    chunkSize: CHUNK_SIZE, // bounds memory per upload and lets a failed chunk be retried
    contentType: contentTypeOf(to.key),
    metadata: { metadata: to.metadata },
    preconditionOpts:
      to.ifGenerationMatch === undefined ? undefined : { ifGenerationMatch: Number(to.ifGenerationMatch) },
  });
  await pipeline(body, writer, { signal });
  return target.metadata.generation ? target.metadata : (await target.getMetadata())[0];
}
