/**
 * Literal slashes in model names (issue 17): users write `/models/nlp/intent/meta`, as with OCI
 * and Hugging Face; Fastify's `:name` parameter cannot hold a `/`, but the router decodes `%2F`
 * inside one. So before routing, the name's slashes become `%2F`:
 *
 *   /models/nlp/intent             → /models/nlp%2Fintent
 *   /models/nlp/intent/meta?x=1    → /models/nlp%2Fintent/meta?x=1
 *   /models/a/b/files/dir/f.txt    → /models/a%2Fb/files/dir/f.txt
 *   /models/meta/meta              → unchanged: the metadata of the model `meta`
 *
 * The name ends before the first resource word (meta, versions, aliases, files, rollback) at
 * segment 1 or later, which is why a name of several segments may contain none of them (see
 * registry/namespaces.ts). Empty segments and names of too many segments are passed on as they
 * are, joined, and the routes answer them with 400 INVALID_NAME. A `%2F` the client typed stays
 * as it is and works the same.
 */
import type { IncomingMessage } from 'node:http';
import { RESOURCE_WORDS } from '../registry/namespaces.js';

const MODELS = '/models/';

/** The URL to route for `url`: a model name's literal slashes encoded as %2F. */
export function encodeModelPath(url: string): string {
  if (!url.startsWith(MODELS)) return url;
  const q = url.indexOf('?');
  const path = q === -1 ? url : url.slice(0, q);
  const segments = path.slice(MODELS.length).split('/');
  if (segments.length < 2) return url;
  let end = segments.findIndex((s, i) => i >= 1 && RESOURCE_WORDS.has(s));
  if (end === -1) end = segments.length;
  if (end === 1) return url;
  const name = segments.slice(0, end).join('%2F');
  const rest = segments.slice(end);
  return `${MODELS}${[name, ...rest].join('/')}${q === -1 ? '' : url.slice(q)}`;
}

/** Fastify's `rewriteUrl` option. */
export function rewriteModelUrl(request: IncomingMessage): string {
  return encodeModelPath(request.url ?? '/');
}
