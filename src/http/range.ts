/** Byte ranges of downloads (RFC 9110 §14). */
import type { IncomingHttpHeaders } from 'node:http';
import { one } from './headers.js';

export type RangeResult = { start: number; end: number } | 'unsatisfiable' | undefined;

/**
 * A single byte range (RFC 9110 §14.2). Multiple ranges and unparsable headers are ignored
 * (the full body is sent), as the RFC allows. If-Range (§13.1.5) must name the current ETag;
 * a date never matches: Last-Modified has one-second resolution and two versions can share a
 * second, so it is not a strong validator and could splice the bytes of two versions.
 */
export function byteRange(headers: IncomingHttpHeaders, size: number, etag: string): RangeResult {
  const header = one(headers.range);
  if (header === undefined) return undefined;
  const ifRange = one(headers['if-range']);
  if (ifRange !== undefined && ifRange.trim() !== etag) return undefined;
  const m = /^bytes=(\d*)-(\d*)$/i.exec(header.trim());
  if (!m || (m[1] === '' && m[2] === '')) return undefined;
  if (size === 0) return 'unsatisfiable'; // no byte of an empty file can be asked for
  if (m[1] === '') {
    const suffix = Number(m[2]);
    if (suffix === 0) return 'unsatisfiable';
    return { start: Math.max(size - suffix, 0), end: size - 1 };
  }
  const start = Number(m[1]);
  const end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  if (m[2] !== '' && Number(m[2]) < start) return undefined; // invalid range: ignore
  if (start >= size) return 'unsatisfiable';
  return { start, end };
}
