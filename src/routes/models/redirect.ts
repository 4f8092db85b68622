/**
 * Redirect downloads (DOWNLOAD_REDIRECT, README "Redirect downloads"): `GET /models/:name` answers
 * `307` to a short-lived signed URL of the version's immutable bytes in the bucket (S3 presigned
 * GET, GCS V4 signed URL, Azure SAS), so the archive's bytes do not pass through the registry.
 *
 * What stays with the registry, answered as without redirects: HEAD; 304 and 412 (a Rasa pull
 * with its fingerprint in If-None-Match costs no signing and no storage read; a fingerprint that
 * is the store's ETag of the version's copy, what a client that followed a redirect last saw,
 * costs one HEAD and is a 304 too); a request with
 * Range (a resumed download keeps its validators and 206 semantics); `?redirect=false`; a stale
 * answer (storage unreachable); a version with no immutable copy (registry/immutable.ts); a URL
 * that cannot be signed (a warning in the log, then served).
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { immutable, NO_STORE } from '../../http/caching.js';
import { noneMatchLists } from '../../http/conditional.js';
import { contentDigest } from '../../http/digest.js';
import type { ModelVersion } from '../../registry/service.js';
import type { Storage } from '../../storage/types.js';
import type { Logger } from '../../util/logger.js';

/** Why a backend that cannot sign URLs cannot, for the start-up line. */
const UNSIGNED: Record<string, string> = {
  local: 'files on this machine have no URL a client could be sent to',
  mongodb: 'GridFS has no URLs',
  azure: 'only an account key signs a SAS here (AZURE_ACCOUNT_KEY, or a connection string with AccountKey)',
};

/**
 * The lifetime of a redirect's URL when redirects are on for this storage, else undefined. Said
 * once at start: a setting that cannot apply is named with the reason, not refused, so one .env
 * file can serve several backends. One URL is signed to see that signing works (GCS without a
 * private key or signBlob permission cannot).
 */
export async function redirectTtl(
  config: { DOWNLOAD_REDIRECT: boolean; DOWNLOAD_REDIRECT_TTL: number; MODEL_HISTORY: number },
  storage: Storage,
  log: Logger,
): Promise<number | undefined> {
  if (!config.DOWNLOAD_REDIRECT) return undefined;
  const off = (why: string) => {
    log.warn(`DOWNLOAD_REDIRECT=true is ignored: ${why}; downloads are served by the registry`);
    return undefined;
  };
  if (!storage.capabilities.signedUrls || !storage.signedUrl) {
    return off(`the ${storage.kind} storage cannot sign URLs (${UNSIGNED[storage.kind] ?? 'no signer'})`);
  }
  if (config.MODEL_HISTORY === 0) {
    // The current version's history copy goes with the next replace: a redirect followed after it
    // would find nothing. Keep at least one previous version.
    return off('with MODEL_HISTORY=0 a replace deletes the bytes a redirect points to; set MODEL_HISTORY=1 or more');
  }
  const ttlMs = config.DOWNLOAD_REDIRECT_TTL;
  try {
    await storage.signedUrl('.history/signing-check.tar.gz', ttlMs);
  } catch (err) {
    return off(`the ${storage.kind} storage cannot sign a URL with these credentials (${(err as Error).message})`);
  }
  log.info({ ttlMs }, 'redirect downloads: GET /models/:name answers 307 to a signed storage URL');
  return ttlMs;
}

/**
 * True when redirects are on and the request's If-None-Match names the store's ETag of `model`'s
 * immutable copy: what a client that followed a redirect to it kept (the long poll waits on it).
 */
export async function namesStoreCopy(
  app: FastifyInstance,
  request: FastifyRequest,
  model: ModelVersion,
  ttlMs: number | undefined,
): Promise<boolean> {
  if (ttlMs === undefined || request.headers['if-none-match'] === undefined) return false;
  const copy = await app.registry.immutableCopy(model);
  return copy?.httpEtag !== undefined && noneMatchLists(request.headers, copy.httpEtag);
}

/** Headers the 307 must not carry: they describe a body, and the 307 has none. */
const BODY_HEADERS = ['content-type', 'content-length', 'accept-ranges', 'content-disposition', 'content-digest'];

/**
 * Answers 307 to a signed URL of `model`'s immutable bytes when this request may be redirected
 * (see the header), or 304 when its If-None-Match names the store's ETag of them; returns false
 * when the caller should serve the bytes itself. Call after the validators, 304 and 412
 * (prepareDownload), so only a request that wants the bytes gets here.
 */
export async function sendRedirect(
  app: FastifyInstance,
  request: FastifyRequest,
  reply: FastifyReply,
  o: { ttlMs: number | undefined; model: ModelVersion; stale: boolean; redirect: boolean | undefined },
): Promise<boolean> {
  const { model } = o;
  const storage = app.registry.storage;
  if (o.ttlMs === undefined || !storage.signedUrl || o.stale || o.redirect === false) return false;
  if (request.method !== 'GET' || request.headers.range !== undefined) return false;
  const copy = await app.registry.immutableCopy(model);
  if (copy === undefined) return false;
  if (copy.httpEtag !== undefined && noneMatchLists(request.headers, copy.httpEtag)) {
    // A client that followed an earlier redirect keeps the ETag of the last answer it got, the
    // store's (Rasa's pull does): these very bytes. 304 with the version's own ETag.
    for (const name of BODY_HEADERS) reply.removeHeader(name);
    reply.code(304).send();
    return true;
  }
  let location: string;
  try {
    location = await storage.signedUrl(copy.key, o.ttlMs, {
      // The URL names one version's bytes, which never change: a cache may keep them.
      cacheControl: immutable(app.config.AUTH_TOKENS.length > 0),
      contentDisposition: `attachment; filename="${model.name}.tar.gz"`,
      contentType: 'application/gzip',
    });
  } catch (err) {
    request.log.warn({ err, model: model.name }, 'could not sign a download URL; serving the download directly');
    return false;
  }
  for (const name of BODY_HEADERS) reply.removeHeader(name);
  app.metrics.downloadRedirects.inc();
  // ETag, Last-Modified and X-Model-Version stay (prepareDownload): they name the version the
  // URL reads. Repr-Digest is the archive's; Content-Digest would be that of this empty body.
  // no-store: the URL is a credential that expires, and a cached 307 of a moving name would
  // send a client to the old version after a replace.
  reply
    .code(307)
    .headers({ location, 'cache-control': NO_STORE, 'repr-digest': contentDigest(model.sha256) })
    .send();
  return true;
}
