/**
 * Bearer-token authorisation (AUTH_TOKENS, see README). Registered inside the /models scope: read
 * tokens may GET/HEAD, write tokens also PUT and POST (and DELETE an alias), admin tokens also DELETE.
 * Tokens are compared in constant time (digests of equal length, every token checked) and never
 * logged.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import type { Scope } from '../config.js';
import { errors, type RegistryError } from '../errors.js';
import { namespaceChecker, type TokenEntry } from '../http/token-scope.js';

const RANK: Record<Scope, number> = { read: 1, write: 2, admin: 3 };

/**
 * The scope a request needs. Removing an alias deletes no model data (it is a move to nowhere,
 * as setting it is a move), so it needs write, like setting it; other DELETEs need admin.
 */
export function scopeFor(method: string, route?: string): Scope {
  if (method === 'GET' || method === 'HEAD') return 'read';
  if (method === 'DELETE') return route === '/models/:name/aliases/:alias' ? 'write' : 'admin';
  return 'write';
}

const digest = (text: string) => createHash('sha256').update(text).digest();

/** Why a request carries no usable token. */
export type NoToken = 'missing' | 'not-bearer' | 'unknown';

/**
 * The scope a request's bearer token grants, or why it grants none; undefined itself when there
 * are no tokens (every request is anonymous).
 */
export function tokenChecker(
  tokens: { scope: Scope; token: string }[],
): ((request: FastifyRequest) => Scope | NoToken) | undefined {
  if (tokens.length === 0) return undefined;
  const known = tokens.map(({ scope, token }) => ({ scope, digest: digest(token) }));
  return (request) => {
    const header = request.headers.authorization;
    if (header === undefined || header.trim() === '') return 'missing';
    const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (!m) return 'not-bearer';
    const presented = digest(m[1]!);
    let granted: Scope | undefined;
    for (const entry of known) {
      const stronger = !granted || RANK[entry.scope] > RANK[granted];
      if (timingSafeEqual(entry.digest, presented) && stronger) granted = entry.scope;
    }
    return granted ?? 'unknown';
  };
}

export function isNoToken(granted: Scope | NoToken): granted is NoToken {
  return granted === 'missing' || granted === 'not-bearer' || granted === 'unknown';
}

/** The 401 of a request without a valid token, with its challenge. */
export function unauthorized(reply: FastifyReply, why: NoToken): RegistryError {
  // RFC 6750 §3: a token that was sent and is not known is an invalid_token.
  const realm = 'Bearer realm="model-registry"';
  reply.header('www-authenticate', why === 'unknown' ? `${realm}, error="invalid_token"` : realm);
  return errors.unauthorized(why);
}

export default fp(async function auth(app: FastifyInstance, options: { tokens: TokenEntry[] }) {
  const grantedScope = tokenChecker(options.tokens);
  if (!grantedScope) return;
  const namespaced = namespaceChecker(options.tokens);

  app.addHook('onRequest', async (request, reply) => {
    const granted = grantedScope(request);
    if (isNoToken(granted)) throw unauthorized(reply, granted);
    const needed = scopeFor(request.method, request.routeOptions.url);
    if (namespaced) return namespaced(request, needed); // some tokens are limited to a namespace (http/token-scope.ts)
    if (RANK[granted] < RANK[needed]) throw errors.forbidden(needed);
  });
});
