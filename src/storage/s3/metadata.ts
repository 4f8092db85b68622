/**
 * S3 user metadata: sent as HTTP headers (ASCII only, 2 KB in all). Values that are not plain
 * printable ASCII are stored as RFC 2047 encoded words (`=?UTF-8?B?<base64>?=`, what S3 itself
 * returns for non-ASCII metadata) and decoded on read.
 */

import type { HeadObjectCommandOutput } from '@aws-sdk/client-s3';
import { MetadataTooLargeError } from '../errors.js';
import { WRITE_NONCE } from '../shared/write-nonce.js';
import type { Metadata, ObjectInfo } from '../types.js';

/** S3's bound on an object's user metadata, keys and values together. */
export const MAX_METADATA_BYTES = 2048;
/** What the write nonce (shared/write-nonce.ts) adds to an object's metadata (its key and a UUID). */
export const NONCE_BYTES = WRITE_NONCE.length + 36;

/** Throws MetadataTooLargeError unless `metadata`, encoded and with a nonce, fits S3's bound. */
export function checkMetadataFits(metadata: Metadata): void {
  const bytes = metadataBytes(encodeMetadata(metadata)) + NONCE_BYTES;
  if (bytes > MAX_METADATA_BYTES) throw metadataTooLarge(bytes);
}

export function metadataTooLarge(bytes: number | undefined, cause?: unknown): MetadataTooLargeError {
  const bound = `${MAX_METADATA_BYTES} bytes in all, of which the registry's own fields take about 200`;
  return new MetadataTooLargeError('S3', bound, bytes, cause === undefined ? undefined : { cause });
}

/** What S3 counts against its metadata bound: the UTF-8 bytes of every key and value. */
export function metadataBytes(metadata: Record<string, string>): number {
  return Object.entries(metadata).reduce((n, [k, v]) => n + Buffer.byteLength(k) + Buffer.byteLength(v), 0);
}

export const quote = (token: string) => (token.startsWith('"') ? token : `"${token}"`);
export const unquote = (etag: string | undefined) => (etag ?? '').replace(/^(W\/)?"|"$/g, '');

const PLAIN = /^[\x21-\x7e]+( [\x21-\x7e]+)*$/;
const ENCODED = /^=\?UTF-8\?B\?([A-Za-z0-9+/]*={0,2})\?=$/i;

export function encodeMetadata(metadata: Metadata): Record<string, string> {
  return Object.fromEntries(
    Object.entries(metadata).map(([k, v]) => [
      k,
      PLAIN.test(v) && !v.startsWith('=?') ? v : `=?UTF-8?B?${Buffer.from(v, 'utf8').toString('base64')}?=`,
    ]),
  );
}

export function decodeMetadata(raw: Record<string, string> | undefined): Metadata {
  return Object.fromEntries(
    Object.entries(raw ?? {})
      .filter(([k]) => k.toLowerCase() !== WRITE_NONCE)
      .map(([k, v]) => {
        const m = ENCODED.exec(v);
        return [k.toLowerCase(), m ? Buffer.from(m[1]!, 'base64').toString('utf8') : v];
      }),
  );
}

/** The ObjectInfo of `key` from a HeadObject answer. */
export function headInfo(key: string, r: HeadObjectCommandOutput): ObjectInfo {
  return {
    key,
    size: r.ContentLength ?? 0,
    lastModified: r.LastModified ?? new Date(),
    token: unquote(r.ETag),
    metadata: decodeMetadata(r.Metadata),
    httpEtag: quote(unquote(r.ETag)),
  };
}
