/** HTTP header parsing for the model routes: conditions, digests, ranges, labels. */
import type { IncomingHttpHeaders } from 'node:http';
import { errors } from '../../errors.js';
import type { ClientCondition, ExpectedDigest } from '../../registry/service.js';
import type { Labels } from '../../registry/names.js';

const ETAG = /^(W\/)?"[\x21\x23-\x7e]*"$/;

/** Splits an If-Match / If-None-Match list into entity tags; `*` stays '*'. */
function entityTags(header: string, name: string): string[] | '*' {
  if (header.trim() === '*') return '*';
  const tags = header.split(',').map((t) => t.trim()).filter(Boolean);
  if (tags.length === 0 || !tags.every((t) => ETAG.test(t))) {
    throw errors.invalidHeader(name, 'send a quoted ETag as returned by the server, e.g. "sha256:<hex>", or *');
  }
  return tags;
}

const one = (v: string | string[] | undefined): string | undefined => (Array.isArray(v) ? v.join(', ') : v);

/** The client's precondition on a write (PUT, rollback). */
export function writeCondition(headers: IncomingHttpHeaders): ClientCondition {
  const ifMatch = one(headers['if-match']);
  const ifNoneMatch = one(headers['if-none-match']);
  if (ifMatch !== undefined && ifNoneMatch !== undefined) {
    throw errors.invalidHeader('If-Match', 'send If-Match or If-None-Match, not both');
  }
  if (ifNoneMatch !== undefined) {
    if (ifNoneMatch.trim() !== '*') throw errors.invalidHeader('If-None-Match', 'on a write only If-None-Match: * (create only) is supported');
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

/** The client's claimed SHA-256 of the body, from Content-Digest (RFC 9530) or X-Checksum-Sha256. */
export function expectedDigest(headers: IncomingHttpHeaders): ExpectedDigest | undefined {
  const contentDigest = one(headers['content-digest']);
  const checksum = one(headers['x-checksum-sha256']);
  let fromContentDigest: string | undefined;
  if (contentDigest !== undefined) {
    for (const member of contentDigest.split(',')) {
      const m = /^\s*([A-Za-z0-9_-]+)\s*=\s*:([A-Za-z0-9+/]*={0,2}):\s*$/.exec(member);
      if (!m) throw errors.invalidHeader('Content-Digest', 'use the RFC 9530 form sha-256=:<base64 of the 32-byte digest>:');
      if (m[1]!.toLowerCase() !== 'sha-256') continue; // other algorithms may be ignored (RFC 9530 §2)
      const bytes = Buffer.from(m[2]!, 'base64');
      if (bytes.length !== 32) throw errors.invalidHeader('Content-Digest', 'the sha-256 value must be the base64 of 32 bytes');
      fromContentDigest = bytes.toString('hex');
    }
  }
  if (checksum !== undefined && !/^[0-9a-fA-F]{64}$/.test(checksum.trim())) {
    throw errors.invalidHeader('X-Checksum-Sha256', 'send the SHA-256 of the body as 64 hex digits');
  }
  const fromChecksum = checksum?.trim().toLowerCase();
  if (fromContentDigest && fromChecksum && fromContentDigest !== fromChecksum) {
    throw errors.invalidHeader('Content-Digest', 'it disagrees with X-Checksum-Sha256; send one of them');
  }
  if (fromContentDigest) return { header: 'Content-Digest', sha256: fromContentDigest };
  if (fromChecksum) return { header: 'X-Checksum-Sha256', sha256: fromChecksum };
  return undefined;
}

export function contentDigest(sha256: string): string {
  return `sha-256=:${Buffer.from(sha256, 'hex').toString('base64')}:`;
}

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

const LABEL_HEADER = 'x-model-label-';

/**
 * Labels from X-Model-Label-<key> headers. Node reads header bytes as Latin-1; values whose
 * bytes are UTF-8 (what curl and every client send for non-ASCII text) are decoded as such.
 */
export function labelsFromHeaders(headers: IncomingHttpHeaders): Labels {
  // No prototype: `labels['__proto__'] = v` on a plain object sets nothing (the label vanished
  // silently); here it is an own key like any other, which assertLabels refuses with 400.
  const labels: Labels = Object.create(null) as Labels;
  for (const [name, value] of Object.entries(headers)) {
    if (!name.startsWith(LABEL_HEADER) || value === undefined) continue;
    labels[name.slice(LABEL_HEADER.length)] = fromHeaderBytes(one(value)!);
  }
  return labels;
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

function fromHeaderBytes(value: string): string {
  if (/^[\x00-\x7f]*$/.test(value)) return value;
  try {
    return strictUtf8.decode(Buffer.from(value, 'latin1'));
  } catch {
    return value; // not UTF-8: Latin-1, as received
  }
}

/** A positive integer from ?version=, or undefined when absent. */
export function parseVersion(raw: unknown, where: 'query' | 'body' = 'query'): number | undefined {
  if (raw === undefined) return undefined;
  const text = String(raw);
  if (!/^[1-9]\d{0,15}$/.test(text) || !Number.isSafeInteger(Number(text))) throw errors.invalidVersion(text, where);
  return Number(text);
}

/** Seconds from ?wait= (0-300), or undefined when absent. */
export function parseWait(raw: unknown): number | undefined {
  if (raw === undefined) return undefined;
  const text = String(raw);
  if (!/^\d{1,3}$/.test(text) || Number(text) > 300) throw errors.invalidQuery('wait must be a whole number of seconds from 0 to 300');
  return Number(text);
}

const CONTENT_TYPES: Record<string, string> = {
  json: 'application/json', txt: 'text/plain; charset=utf-8', md: 'text/markdown; charset=utf-8',
  yaml: 'application/yaml', yml: 'application/yaml', csv: 'text/csv', html: 'text/html; charset=utf-8',
  xml: 'application/xml', py: 'text/x-python', gz: 'application/gzip', zip: 'application/zip', tar: 'application/x-tar',
  png: 'image/png', jpg: 'image/jpeg', jpeg: 'image/jpeg', svg: 'image/svg+xml', onnx: 'application/octet-stream',
  bin: 'application/octet-stream', pt: 'application/octet-stream', safetensors: 'application/octet-stream',
};

/** Content type by file extension; application/octet-stream when unknown. */
export function contentTypeOf(file: string): string {
  const ext = /\.([A-Za-z0-9]+)$/.exec(file)?.[1]?.toLowerCase();
  return (ext && CONTENT_TYPES[ext]) || 'application/octet-stream';
}
