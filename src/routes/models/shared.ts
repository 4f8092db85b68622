/**
 * What the /models routes share: the schemas of their path and query values, the JSON views of a
 * version and an alias, the abort signal of a request, and the serving of a version or a file of
 * it (validators, 304, 412, ranges; the stale-if-error fallback).
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { errors, PreconditionFailedError, StorageUnavailableError } from '../../errors.js';
import { immutable, revalidate } from '../../http/caching.js';
import { notModified, readPreconditionHolds } from '../../http/conditional.js';
import { byteRange } from '../../http/range.js';
import { parsed } from '../../http/zod.js';
import { assertName, parseRef } from '../../registry/names.js';
import { etagOf, type ModelVersion } from '../../registry/service.js';
import { parseVersion } from './params.js';

/** `:name` where a model is written or listed: a plain name. */
export const nameParam = parsed((raw) => {
  assertName(raw as string);
  return raw as string;
});

/** `:name` where a model is read: `name`, `name@alias` or `name@latest`. */
export const refParam = parsed((raw) => {
  parseRef(raw as string);
  return raw as string;
});

/** `?version=N`: a positive integer, or undefined when absent. */
export const versionQuery = parsed((raw) => parseVersion(raw));

/** A model as named where it is read, in its parts. */
export function refOf(ref: string): { ref: string; name: string; alias?: string } {
  return { ref, ...parseRef(ref) };
}

/** `true` / `false` from a boolean query parameter, or undefined when absent. */
export function flagQuery(param: string) {
  return parsed((raw) => {
    if (raw === undefined) return undefined;
    if (raw === 'true' || raw === '1') return true;
    if (raw === 'false' || raw === '0') return false;
    throw errors.invalidQuery(`${param} must be true or false`);
  });
}

/** The JSON a client sees for one version. */
export function view(model: ModelVersion) {
  return {
    name: model.name,
    version: model.version,
    sha256: model.sha256,
    size: model.size,
    createdAt: model.createdAt,
    labels: model.labels,
    storageKey: model.storageKey,
    etag: etagOf(model.sha256),
    // upload, rollback or external (an object another tool wrote), when the registry knows.
    ...(model.origin ? { origin: model.origin } : {}),
  };
}

/** The JSON a client sees for one alias. */
export function aliasView(
  name: string,
  alias: string,
  target: { version: number; sha256: string; updatedAt?: string },
) {
  return {
    name,
    alias,
    version: target.version,
    sha256: target.sha256,
    etag: etagOf(target.sha256),
    ...(target.updatedAt ? { updatedAt: target.updatedAt } : {}),
  };
}

/** Aborts when the client goes away before the response is complete. */
export function abortSignal(_request: FastifyRequest, reply: FastifyReply): AbortSignal {
  const controller = new AbortController();
  // Already gone (it left while the handler was awaiting something): 'close' will not come again.
  if (reply.raw.closed && !reply.raw.writableFinished) controller.abort(new Error('client disconnected'));
  reply.raw.once('close', () => {
    if (!reply.raw.writableFinished) controller.abort(new Error('client disconnected'));
  });
  return controller.signal;
}

/** Headers of a first attempt that must not describe a second one's bytes. */
const PER_ATTEMPT = [
  'content-range',
  'content-digest',
  'repr-digest',
  'content-length',
  'content-type',
  'content-disposition',
  'warning',
  'x-cache',
];

/**
 * The Cache-Control of a download (src/http/caching.ts): `?version=N` names bytes that never
 * change (numbers are never reused); the current version and an alias move.
 */
export function downloadCacheControl(app: FastifyInstance, version: number | undefined): string {
  const auth = app.config.AUTH_TOKENS.length > 0;
  return version === undefined ? revalidate(auth) : immutable(auth);
}

/**
 * The headers archive and file downloads share: validators, Cache-Control, 304, Range (206 /
 * 416), length. Returns 'not-modified' when the caller should answer 304, else the range to send.
 */
export function prepareDownload(
  request: FastifyRequest,
  reply: FastifyReply,
  o: { etag: string; model: ModelVersion; stale: boolean; size: number; contentType: string; cacheControl: string },
): 'not-modified' | { range?: { start: number; end: number } } {
  const lastModified = new Date(o.model.createdAt);
  if (reply.hasHeader('etag')) {
    // A second attempt (the model was replaced while the first was opening it) starts afresh.
    for (const name of PER_ATTEMPT) reply.removeHeader(name);
    reply.code(200);
  }
  reply.headers({
    etag: o.etag,
    'last-modified': lastModified.toUTCString(),
    'cache-control': o.cacheControl,
    'accept-ranges': 'bytes',
    'x-model-version': String(o.model.version),
  });
  if (o.stale) reply.headers({ warning: '110 - "Response is Stale"', 'x-cache': 'STALE' });
  if (!readPreconditionHolds(request.headers, o.etag, lastModified)) throw errors.readPreconditionFailed(o.etag);
  if (notModified(request.headers, o.etag, lastModified)) return 'not-modified';
  const range = byteRange(request.headers, o.size, o.etag);
  if (range === 'unsatisfiable') {
    reply.header('content-range', `bytes */${o.size}`);
    throw errors.rangeNotSatisfiable(o.size);
  }
  const length = range ? range.end - range.start + 1 : o.size;
  reply.headers({ 'content-type': o.contentType, 'content-length': String(length) });
  if (range) reply.code(206).header('content-range', `bytes ${range.start}-${range.end}/${o.size}`);
  return { range };
}

/**
 * The version to serve; when storage is unreachable, the one this replica last cached (for a
 * name, not for an alias: where an alias points is known only from the storage).
 */
export async function describeOrStale(
  app: FastifyInstance,
  ref: string,
  version?: number,
): Promise<{ model: ModelVersion; stale: boolean }> {
  try {
    return { model: await app.registry.resolve(ref, version), stale: false };
  } catch (err) {
    if (!(err instanceof StorageUnavailableError)) throw err;
    const { name, alias } = parseRef(ref);
    const model = alias === undefined ? await app.registry.stale(name, version) : undefined;
    if (!model) throw err;
    app.log.warn({ model: name, version: model.version }, 'storage unavailable; serving the cached version');
    return { model, stale: true };
  }
}

/**
 * Describes the version to serve and runs `fn` on it; when the model is replaced between the
 * two (PreconditionFailedError from the read), describes again.
 */
export async function onCurrent<T>(
  app: FastifyInstance,
  ref: string,
  version: number | undefined,
  fn: (model: ModelVersion, stale: boolean) => Promise<T>,
): Promise<{ model: ModelVersion; stale: boolean; result: T }> {
  for (let attempt = 0; ; attempt++) {
    const { model, stale } = await describeOrStale(app, ref, version);
    try {
      return { model, stale, result: await fn(model, stale) };
    } catch (err) {
      if (!(err instanceof PreconditionFailedError) || attempt === 3) throw err;
    }
  }
}
