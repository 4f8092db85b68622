/**
 * Bearer-token authorisation (SPEC §5). Registered inside the /models scope: read tokens may
 * GET/HEAD, write tokens also PUT and POST, admin tokens also DELETE. Tokens are compared in
 * constant time (digests of equal length, every token checked) and never logged.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import type { Scope } from '../config.js';
import { errors, type RegistryError } from '../errors.js';

const RANK: Record<Scope, number> = { read: 1, write: 2, admin: 3 };

export function scopeFor(method: string): Scope {
  if (method === 'GET' || method === 'HEAD') return 'read';
  if (method === 'DELETE') return 'admin';
  return 'write';
}

const digest = (text: string) => createHash('sha256').update(text).digest();

/**
 * The scope a request's bearer token grants (undefined for none or an unknown one), or
 * undefined itself when there are no tokens (every request is anonymous).
 */
export function tokenChecker(tokens: { scope: Scope; token: string }[]): ((request: FastifyRequest) => Scope | undefined) | undefined {
  if (tokens.length === 0) return undefined;
  const known = tokens.map(({ scope, token }) => ({ scope, digest: digest(token) }));
  return (request) => {
    const header = request.headers.authorization;
    const m = header ? /^Bearer\s+(\S+)\s*$/i.exec(header) : null;
    if (!m) return undefined;
    const presented = digest(m[1]!);
    let granted: Scope | undefined;
    for (const entry of known) {
      if (timingSafeEqual(entry.digest, presented) && (!granted || RANK[entry.scope] > RANK[granted])) granted = entry.scope;
    }
    return granted;
  };
}

/** The 401 of a request without a valid token, with its challenge. */
export function unauthorized(reply: FastifyReply): RegistryError {
  reply.header('www-authenticate', 'Bearer realm="model-registry"');
  return errors.unauthorized();
}

export default fp(async function auth(app: FastifyInstance, options: { tokens: { scope: Scope; token: string }[] }) {
  const grantedScope = tokenChecker(options.tokens);
  if (!grantedScope) return;

  app.addHook('onRequest', async (request, reply) => {
    const granted = grantedScope(request);
    if (!granted) throw unauthorized(reply);
    const needed = scopeFor(request.method);
    if (RANK[granted] < RANK[needed]) throw errors.forbidden(needed);
  });
});
