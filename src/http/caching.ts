/**
 * What HTTP caches and CDNs in front of the registry may keep (RFC 9111): the Cache-Control of
 * every answer, and the body ETag and 304 of the JSON routes.
 *
 * - A numbered version (`?version=N` of a download, a file, a manifest) never changes: version
 *   numbers are never reused, so its bytes are immutable and may be kept for a year. Immutable
 *   means the bytes never change, not that they live forever: a cache may go on serving a version
 *   deleted later (as registries do with their immutable blob URLs).
 * - Everything else moves (the current version, an alias, the JSON views, which list aliases):
 *   `no-cache`, so every use is revalidated with its ETag (a 304 is cheap).
 * - With AUTH_TOKENS set, `private`: a shared cache must not hand one client's answer to another
 *   who might not hold a token.
 * - Errors: `no-store` (src/http/errors.ts).
 */
import { createHash } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { one } from './headers.js';

/** The Cache-Control of a numbered version's bytes. */
export function immutable(auth: boolean): string {
  return `${auth ? 'private' : 'public'}, max-age=31536000, immutable`;
}

/** The Cache-Control of what moves: stored, but revalidated on every use. */
export function revalidate(auth: boolean): string {
  return auth ? 'private, no-cache' : 'no-cache';
}

/** The Cache-Control of an error answer. */
export const NO_STORE = 'no-store';

/** A strong ETag of a JSON body: the same bytes, the same tag. */
export function bodyEtag(body: string | Buffer): string {
  return `"json-${createHash('sha256').update(body).digest('base64url').slice(0, 32)}"`;
}

/** True when If-None-Match names `etag` (weak comparison, RFC 9110 §13.1.2) or is `*`. */
function noneMatchHits(header: string | undefined, etag: string): boolean {
  if (header === undefined) return false;
  if (header.trim() === '*') return true;
  return header.split(',').some((t) => t.trim().replace(/^W\//, '') === etag);
}

/**
 * An onSend hook for the JSON routes: a 200 gets an ETag of its body and, unless the handler set
 * one, the `revalidate` Cache-Control; If-None-Match with that ETag turns it into a 304 (with the
 * same headers, no body). Other statuses pass untouched (errors carry `no-store`).
 */
export function jsonValidators(auth: boolean) {
  return async (request: FastifyRequest, reply: FastifyReply, payload: unknown) => {
    if (reply.statusCode !== 200 || (typeof payload !== 'string' && !Buffer.isBuffer(payload))) return payload;
    const etag = bodyEtag(payload);
    reply.header('etag', etag);
    if (!reply.hasHeader('cache-control')) reply.header('cache-control', revalidate(auth));
    if (!noneMatchHits(one(request.headers['if-none-match']), etag)) return payload;
    reply.code(304).removeHeader('content-type');
    reply.removeHeader('content-length');
    return '';
  };
}
