/** GCS objects as the storage contract sees them: tokens (generations), info, content types. */
import type { Readable } from 'node:stream';
import type { FileMetadata } from '@google-cloud/storage';
import { splitNonce } from '../shared/write-nonce.js';
import type { Metadata, ObjectInfo } from '../types.js';

/** What objects.rewrite answers: the object when done, else a token to continue with. */
export interface RewriteResponse {
  done?: boolean;
  rewriteToken?: string;
  resource?: FileMetadata;
}

export function isGeneration(token: string): boolean {
  return /^\d{1,19}$/.test(token);
}

export function contentTypeOf(key: string): string {
  return key.endsWith('.tar.gz') ? 'application/gzip' : 'application/octet-stream';
}

export function toInfo(key: string, resource: FileMetadata): ObjectInfo {
  const raw: Metadata = {};
  for (const [k, v] of Object.entries(resource.metadata ?? {})) if (typeof v === 'string') raw[k] = v;
  const { metadata } = splitNonce(raw);
  return {
    key,
    size: Number(resource.size ?? 0),
    lastModified: new Date(resource.updated ?? resource.timeCreated ?? 0),
    token: String(resource.generation),
    metadata,
    // The XML API (where signed URLs point) sends the MD5 in hex as the ETag of an object that has one.
    ...(resource.md5Hash ? { httpEtag: `"${Buffer.from(resource.md5Hash, 'base64').toString('hex')}"` } : {}),
  };
}

/** Resolves once a read stream has its HTTP response (so the read is bound to it). */
export function responseStarted(body: Readable): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => reject(err);
    body.once('error', onError);
    body.once('response', (res: { statusCode?: number }) => {
      if ((res.statusCode ?? 200) < 300) {
        body.off('error', onError);
        resolve();
      }
      // on an error status the SDK destroys the stream with an ApiError: onError rejects.
    });
    body.read(0); // the SDK sends the request on the first read
  });
}
