/**
 * One error handler and one not-found handler: every error leaves as
 * {"error": CODE, "message": "..."} with the status src/http/errors.ts gives it; 5xx details stay
 * in the log, never in the response.
 */
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import type { Scope } from '../config.js';
import { errors } from '../errors.js';
import { fromRegistryError, internalError, sendError, toHttpError } from '../http/errors.js';
import { isNoToken, tokenChecker, unauthorized } from './auth.js';

/** Headers that still hold for an error answered in place of a failed body. */
const KEEP_ON_ERROR = new Set(['x-request-id', 'connection']);

export default fp(async function errorHandling(app: FastifyInstance) {
  app.setErrorHandler((err, request, reply) => {
    const known = toHttpError(err);
    if (known && known.status < 500) {
      request.log.info({ code: known.code, status: known.status }, known.message);
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
    const answer = known ?? internalError(request.id);
    if (answer.status === 413 || (answer.status >= 400 && !request.raw.readableEnded && request.method === 'PUT')) {
      // The client may still be sending a large body we will not read.
      reply.header('connection', 'close');
    }
    void sendError(reply, answer);
  });
  // A path that exists under other methods answers 405 with Allow, as S3 and registries do.
  let routes: { pattern: RegExp; methods: Set<string> }[] | undefined;
  // Unmatched, a /models path runs none of the model routes' hooks: it checks the token here, so
  // that a request without one learns it needs one (401) before anything about the API (405).
  const tokens = (app as { config?: { AUTH_TOKENS: { scope: Scope; token: string }[] } }).config?.AUTH_TOKENS;
  const authenticated = tokenChecker(tokens ?? []);
  app.setNotFoundHandler((request, reply) => {
    const url = request.url.split('?')[0]!;
    const granted = authenticated && /^\/models(\/|$)/.test(url) ? authenticated(request) : undefined;
    if (granted && isNoToken(granted)) {
      return void sendError(reply, fromRegistryError(unauthorized(reply, granted)));
    }
    routes ??= compileRoutes(app.routeList);
    const allowed = [...new Set(routes.filter((r) => r.pattern.test(url)).flatMap((r) => [...r.methods]))].sort();
    // (A path some route serves under this very method did not match it after all: 404.)
    if (allowed.includes(request.method)) allowed.length = 0;
    const err =
      allowed.length > 0 ? errors.methodNotAllowed(request.method, url, allowed) : errors.notFound(request.method, url);
    if (allowed.length > 0) void reply.header('allow', allowed.join(', '));
    void sendError(reply, fromRegistryError(err));
  });
});

const escapeRegExp = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** Each route URL (`/models/:name/files/*`) as a pattern that matches the paths it serves. */
function compileRoutes(list: { method: string; url: string }[]): { pattern: RegExp; methods: Set<string> }[] {
  const byUrl = new Map<string, Set<string>>();
  for (const { method, url } of list) byUrl.set(url, (byUrl.get(url) ?? new Set()).add(method));
  return [...byUrl].map(([url, methods]) => {
    const source = url
      .split('/')
      .map((part) => (part === '*' ? '.*' : part.startsWith(':') ? '[^/]+' : escapeRegExp(part)))
      .join('/');
    return { pattern: new RegExp(`^${source}$`), methods };
  });
}
