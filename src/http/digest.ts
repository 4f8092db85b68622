/** Content digests (RFC 9530): the one a client claims for an upload, the one a download carries. */
import type { IncomingHttpHeaders } from 'node:http';
import { errors } from '../errors.js';
import type { ExpectedDigest } from '../registry/service.js';
import { one } from './headers.js';

/** The client's claimed SHA-256 of the body, from Content-Digest (RFC 9530) or X-Checksum-Sha256. */
export function expectedDigest(headers: IncomingHttpHeaders): ExpectedDigest | undefined {
  const contentDigest = one(headers['content-digest']);
  const checksum = one(headers['x-checksum-sha256']);
  let fromContentDigest: string | undefined;
  if (contentDigest !== undefined) {
    for (const member of contentDigest.split(',')) {
      const m = /^\s*([A-Za-z0-9_-]+)\s*=\s*:([A-Za-z0-9+/]*={0,2}):\s*$/.exec(member);
      if (!m) {
        throw errors.invalidHeader('Content-Digest', 'use the RFC 9530 form sha-256=:<base64 of the 32-byte digest>:');
      }
      if (m[1]!.toLowerCase() !== 'sha-256') continue; // other algorithms may be ignored (RFC 9530 §2)
      const bytes = Buffer.from(m[2]!, 'base64');
      if (bytes.length !== 32) {
        throw errors.invalidHeader('Content-Digest', 'the sha-256 value must be the base64 of 32 bytes');
      }
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
