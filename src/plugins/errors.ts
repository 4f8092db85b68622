/**
 * One error handler and one not-found handler: every error leaves as
 * {"error": CODE, "message": "..."}; 5xx details stay in the log, never in the response.
 */
import type { FastifyError, FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { errorBody, errors, NotFoundError, PreconditionFailedError, RegistryError } from '../errors.js';
import { CacheDiskError } from '../cache/index.js';
import type { Scope } from '../config.js';
import { isNoToken, tokenChecker, unauthorized } from './auth.js';

/** Fastify's own client errors, reworded with a fix. */
const FASTIFY_ERRORS: Record<string, (err: FastifyError) => RegistryError> = {
  FST_ERR_CTP_INVALID_MEDIA_TYPE: (err) => errors.unsupportedMediaType(/: (.*)$/.exec(err.message)?.[1] ?? ''),
  FST_ERR_CTP_EMPTY_JSON_BODY: () => errors.invalidBody('the JSON body is empty; send e.g. {"version": 2}'),
  FST_ERR_CTP_INVALID_JSON_BODY: () => errors.invalidBody('the body is not valid JSON'),
  FST_ERR_CTP_BODY_TOO_LARGE: () => errors.invalidBody('the JSON body is too large'),
  FST_INVALID_MULTIPART_CONTENT_TYPE: () => errors.invalidBody('the multipart body is malformed'),
  FST_PARTS_LIMIT: () => errors.invalidBody('the multipart body has too many parts'),
  FST_FIELDS_LIMIT: () => errors.invalidBody('the multipart body has too many fields'),
  FST_FILES_LIMIT: () => errors.multipartManyFiles(),
};

/** busboy (under @fastify/multipart) reports a malformed multipart body with plain Errors. */
const MULTIPART_ERROR = /^(Multipart: Boundary not found|Boundary required|Unexpected end of multipart data|\w+ terminated early due to unexpected end of multipart data|The needle cannot)/;

export function toRegistryError(err: unknown): RegistryError | undefined {
  if (err instanceof RegistryError) return err;
  if (err instanceof Error && !(err as FastifyError).statusCode && MULTIPART_ERROR.test(err.message)) {
    return errors.invalidBody('the multipart body is malformed (missing or bad boundary, or cut short); let the client build it, e.g. curl -F file=@model.tar.gz');
  }
  if (err instanceof NotFoundError) return new RegistryError('NOT_FOUND', 404, 'The object does not exist.');
  if (err instanceof CacheDiskError) {
    return new RegistryError('CACHE_UNAVAILABLE', 503, 'The cache disk cannot take this model now (full or failing): retry later; operators should free space in CACHE_DIR or set CACHE_MAX_BYTES below the free space of its disk.', { headers: { 'retry-after': '30' } });
  }
  if (err instanceof PreconditionFailedError) return new RegistryError('PRECONDITION_FAILED', 412, 'The object changed meanwhile: retry.');
  const fe = err as FastifyError;
  const known = fe?.code ? FASTIFY_ERRORS[fe.code] : undefined;
  if (known) return known(fe);
  // Only Fastify's own client errors keep their status: a storage SDK's error carries the
  // storage's status (a 401 of an expired storage credential is not the client's 401).
  if (typeof fe?.code === 'string' && fe.code.startsWith('FST_') && fe.statusCode && fe.statusCode >= 400 && fe.statusCode < 500) {
    return new RegistryError(fe.code ?? 'BAD_REQUEST', fe.statusCode, fe.message.endsWith('.') ? fe.message : `${fe.message}.`);
  }
  return undefined;
}

/** Headers that still hold for an error answered in place of a failed body. */
const KEEP_ON_ERROR = new Set(['x-request-id', 'connection']);

export default fp(async function errorHandling(app: FastifyInstance) {
  app.setErrorHandler((err, request, reply) => {
    const known = toRegistryError(err);
    if (known && known.statusCode < 500) {
      request.log.info({ code: known.code, status: known.statusCode }, known.message);
    } else if (known) {
      request.log.warn({ err }, known.message);
    } else if (request.raw.socket?.destroyed) {
      request.log.info({ reason: (err as Error).message }, 'client went away');
    } else {
      request.log.error({ err }, 'request failed');
    }
    if (reply.sent || reply.raw.headersSent) return;
    // A body stream that failed before its first byte: the headers set for it (content type,
    // length, ETag and digest of the archive) are on the raw response already, and describe
    // something this error is not (Fastify would refuse to send JSON under them).
    const pending = reply.raw.getHeaderNames().filter((name) => !KEEP_ON_ERROR.has(name));
    for (const name of pending) {
      reply.raw.removeHeader(name);
      reply.removeHeader(name);
    }
    const status = known?.statusCode ?? 500;
    if (status === 413 || (status >= 400 && !request.raw.readableEnded && request.method === 'PUT')) {
      // The client may still be sending a large body we will not read.
      reply.header('connection', 'close');
    }
    void reply
      .code(status)
      .headers(known?.headers ?? {})
      .send({
        error: known?.code ?? 'INTERNAL',
        message: known?.message ?? `Internal error; the server log has the details under request id ${request.id}.`,
      });
  });
  // A path that exists under other methods answers 405 with Allow, as S3 and registries do.
  let routes: { pattern: RegExp; methods: Set<string> }[] | undefined;
  // Unmatched, a /models path runs none of the model routes' hooks: it checks the token here, so
  // that a request without one learns it needs one (401) before anything about the API (405).
  const authenticated = tokenChecker((app as { config?: { AUTH_TOKENS: { scope: Scope; token: string }[] } }).config?.AUTH_TOKENS ?? []);
  app.setNotFoundHandler((request, reply) => {
    const url = request.url.split('?')[0]!;
    const granted = authenticated && /^\/models(\/|$)/.test(url) ? authenticated(request) : undefined;
    if (granted && isNoToken(granted)) {
      const err = unauthorized(reply, granted);
      return void reply.code(err.statusCode).send(errorBody(err));
    }
    routes ??= compileRoutes(app.routeList);
    const allowed = [...new Set(routes.filter((r) => r.pattern.test(url)).flatMap((r) => [...r.methods]))].sort();
    // (A path some route serves under this very method did not match it after all: 404.)
    if (allowed.includes(request.method)) allowed.length = 0;
    const err = allowed.length > 0 ? errors.methodNotAllowed(request.method, url, allowed) : errors.notFound(request.method, url);
    if (allowed.length > 0) void reply.header('allow', allowed.join(', '));
    void reply.code(err.statusCode).send(errorBody(err));
  });
});

/** Each route URL (`/models/:name/files/*`) as a pattern that matches the paths it serves. */
function compileRoutes(list: { method: string; url: string }[]): { pattern: RegExp; methods: Set<string> }[] {
  const byUrl = new Map<string, Set<string>>();
  for (const { method, url } of list) byUrl.set(url, (byUrl.get(url) ?? new Set()).add(method));
  return [...byUrl].map(([url, methods]) => {
    const source = url
      .split('/')
      .map((part) => (part === '*' ? '.*' : part.startsWith(':') ? '[^/]+' : part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')))
      .join('/');
    return { pattern: new RegExp(`^${source}$`), methods };
  });
}
