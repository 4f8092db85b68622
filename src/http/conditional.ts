/**
 * Conditional requests (RFC 9110 §13): the write preconditions of PUT, rollback and the alias
 * routes, and the read preconditions and 304 of downloads. An ETag here is "sha256:<hex>".
 */
import type { IncomingHttpHeaders } from 'node:http';
import { errors } from '../errors.js';
import type { ClientCondition } from '../registry/service.js';
import { one } from './headers.js';

const ETAG = /^(W\/)?"[\x21\x23-\x7e]*"$/;

/** Splits an If-Match / If-None-Match list into entity tags; `*` stays '*'. */
function entityTags(header: string, name: string): string[] | '*' {
  if (header.trim() === '*') return '*';
  const tags = header
    .split(',')
    .map((t) => t.trim())
    .filter(Boolean);
  if (tags.length === 0 || !tags.every((t) => ETAG.test(t))) {
    throw errors.invalidHeader(name, 'send a quoted ETag as returned by the server, e.g. "sha256:<hex>", or *');
  }
  return tags;
}

/** The client's precondition on a write (PUT, rollback). */
export function writeCondition(headers: IncomingHttpHeaders): ClientCondition {
  const ifMatch = one(headers['if-match']);
  const ifNoneMatch = one(headers['if-none-match']);
  if (ifMatch !== undefined && ifNoneMatch !== undefined) {
    throw errors.invalidHeader('If-Match', 'send If-Match or If-None-Match, not both');
  }
  if (ifNoneMatch !== undefined) {
    if (ifNoneMatch.trim() !== '*') {
      throw errors.invalidHeader('If-None-Match', 'on a write only If-None-Match: * (create only) is supported');
    }
    return { ifNoneMatch: true };
  }
  if (ifMatch !== undefined) {
    const tags = entityTags(ifMatch, 'If-Match');
    // Strong comparison (RFC 9110 §13.1.1): weak tags never match.
    return { ifMatch: tags === '*' ? '*' : tags.filter((t) => !t.startsWith('W/')) };
  }
  return {};
}

/**
 * False when a GET/HEAD must answer 412 (RFC 9110 §13.1.1, §13.1.4, evaluated before If-None-Match):
 * If-Match with none of the current ETag (strong comparison), or, without If-Match, a
 * representation modified after If-Unmodified-Since. What a client sends to pin the version
 * it is reading, e.g. across the ranged parts of one download.
 */
export function readPreconditionHolds(headers: IncomingHttpHeaders, etag: string, lastModified: Date): boolean {
  const ifMatch = one(headers['if-match']);
  if (ifMatch !== undefined) {
    const tags = entityTags(ifMatch, 'If-Match');
    return tags === '*' || tags.includes(etag);
  }
  const since = one(headers['if-unmodified-since']);
  if (since !== undefined) {
    const date = Date.parse(since);
    if (!Number.isNaN(date)) return Math.floor(lastModified.getTime() / 1000) <= Math.floor(date / 1000);
  }
  return true;
}

/** True when If-None-Match lists `etag` (weak comparison); `*` does not count here. */
export function noneMatchLists(headers: IncomingHttpHeaders, etag: string): boolean {
  const ifNoneMatch = one(headers['if-none-match']);
  if (ifNoneMatch === undefined) return false;
  const tags = entityTags(ifNoneMatch, 'If-None-Match');
  const bare = etag.replace(/^W\//, '');
  return tags !== '*' && tags.some((t) => t.replace(/^W\//, '') === bare);
}

/** True when a GET/HEAD may answer 304 (RFC 9110 §13.1.2, §13.1.3). */
export function notModified(headers: IncomingHttpHeaders, etag: string, lastModified: Date): boolean {
  const ifNoneMatch = one(headers['if-none-match']);
  if (ifNoneMatch !== undefined) {
    const tags = entityTags(ifNoneMatch, 'If-None-Match');
    // Weak comparison: W/"x" matches "x".
    return tags === '*' || tags.some((t) => t.replace(/^W\//, '') === etag);
  }
  const since = one(headers['if-modified-since']);
  if (since !== undefined) {
    const date = Date.parse(since);
    if (!Number.isNaN(date)) return Math.floor(lastModified.getTime() / 1000) <= Math.floor(date / 1000);
  }
  return false;
}
