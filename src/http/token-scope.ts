/**
 * Tokens limited to a namespace (issue 17): the AUTH_TOKENS entry `write:nlp/*:<token>` grants
 * write, but only on models whose name starts with `nlp/` (`nlp/intent`, `nlp/de/intent`; not
 * `nlp` itself nor `nlp2/x`). One secret may appear in several entries (`read:*` everywhere and
 * `write:nlp/*`, or two namespaces): a request is allowed when one entry that covers its model
 * has the scope it needs.
 *
 * Listing (`GET /models`) with a namespaced token: `?prefix=` must lie inside one of its
 * namespaces, and without a prefix the listing is that of its (first) namespace — such a token
 * sees only the models it may use. A token without a namespace lists as before.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import type { Scope } from '../config.js';
import { errors } from '../errors.js';
import { isValidName } from '../registry/names.js';

export interface TokenEntry {
  scope: Scope;
  token: string;
  /** `nlp/`: the entry covers only names starting with it; absent: every name. */
  namespace?: string;
}

const RANK: Record<Scope, number> = { read: 1, write: 2, admin: 3 };
const digest = (text: string) => createHash('sha256').update(text).digest();

/**
 * Splits what follows `scope:` in an AUTH_TOKENS entry: `nlp/*:<token>` → namespace `nlp/`,
 * or a bare `<token>`. `namespace` is null for a namespace that no model name could have.
 */
export function parseTokenTail(tail: string): { token: string; namespace?: string | null } {
  const m = /^([^:]*)\/\*:(.*)$/s.exec(tail);
  if (!m) return { token: tail };
  const namespace = `${m[1]}/`;
  // A namespace is valid when a model could be named inside it.
  return { token: m[2]!, namespace: isValidName(`${namespace}x`) ? namespace : null };
}

export const TOKEN_SYNTAX =
  'read:<token>, write:<token> or admin:<token>, or <scope>:<namespace>/*:<token> for a token limited to a namespace (e.g. write:nlp/*:<token>)';

/**
 * The namespace check of the /models routes, or undefined when no entry has a namespace (then
 * plugins/auth.ts's plain scope check is all there is). Throws the 403 of a request outside what
 * the token covers; the token itself is known (auth.ts answered 401 otherwise).
 */
export function namespaceChecker(
  entries: TokenEntry[],
): ((request: FastifyRequest, needed: Scope) => void) | undefined {
  if (!entries.some((e) => e.namespace !== undefined)) return undefined;
  const known = entries.map((e) => ({ ...e, digest: digest(e.token) }));
  return (request, needed) => {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(request.headers.authorization ?? '');
    const presented = digest(m?.[1] ?? '');
    // Every entry compared, in constant time.
    const mine = known.filter((e) => timingSafeEqual(e.digest, presented));
    const ref = (request.params as { name?: string } | undefined)?.name;
    if (ref === undefined) {
      if (request.routeOptions.url === '/models' && mine.every((e) => e.namespace !== undefined))
        scopeListing(
          request,
          mine.map((e) => e.namespace!),
        );
      if (!mine.some((e) => RANK[e.scope] >= RANK[needed])) throw errors.forbidden(needed);
      return;
    }
    const name = ref.split('@')[0]!;
    const covering = mine.filter((e) => e.namespace === undefined || name.startsWith(e.namespace));
    if (covering.length === 0) throw errors.outsideNamespace(name, namespacesOf(mine));
    if (!covering.some((e) => RANK[e.scope] >= RANK[needed])) throw errors.forbidden(needed);
  };
}

const namespacesOf = (entries: TokenEntry[]) => [...new Set(entries.map((e) => e.namespace!))];

/** A namespaced token's listing: its namespace by default; any other prefix is 403. */
function scopeListing(request: FastifyRequest, namespaces: string[]): void {
  const query = request.query as { prefix?: string };
  if (query.prefix === undefined || query.prefix === '') {
    query.prefix = namespaces[0];
    return;
  }
  const prefix = String(query.prefix);
  if (!namespaces.some((ns) => prefix.startsWith(ns)))
    throw errors.outsideNamespace(`${prefix}…`, [...new Set(namespaces)]);
}
