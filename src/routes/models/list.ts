/**
 * GET /models: list and search, by name (a page per listing page) or by updatedAt, filtered by
 * prefix, labels (ANDed) and alias; pages are chained by an opaque cursor.
 */
import type { FastifyInstance } from 'fastify';
import { errors } from '../../errors.js';
import { jsonValidators } from '../../http/caching.js';
import { declared, fields, parsedFields, type ZodTypeProvider } from '../../http/zod.js';
import { assertLabels, isValidAlias, isValidName, type Labels } from '../../registry/names.js';
import { parseUpdatedAtCursor } from '../../registry/service.js';

/** A listing prefix: up to three namespaces (`nlp/`), then the start of a name. */
const NAMESPACED_PREFIX = /^([A-Za-z0-9][A-Za-z0-9._-]{0,127}\/){0,3}[A-Za-z0-9._-]{0,128}$/;

type Query = Record<string, string | string[] | undefined>;

/**
 * The search a query asks for. Checked as a whole, in this order (which error a query with
 * several wrong parameters gets): a repeated parameter, sort, alias, labels, prefix, limit,
 * cursor (which must be one of this sort's).
 */
function parseListQuery(query: Query) {
  for (const [param, value] of Object.entries(query)) {
    if (Array.isArray(value)) {
      throw errors.invalidQuery(
        `${param} was given ${value.length} times; give it once (several labels are several` +
          ' label.<key> parameters)',
      );
    }
  }
  const once = query as Record<string, string | undefined>;
  const { prefix, limit: rawLimit, cursor: rawCursor, alias, sort = 'name' } = once;
  if (sort !== 'name' && sort !== 'updatedAt') {
    throw errors.invalidQuery(`sort must be name (the default) or updatedAt, not ${JSON.stringify(sort)}`);
  }
  if (alias !== undefined && !isValidAlias(alias)) {
    throw errors.invalidQuery(
      `alias ${JSON.stringify(alias)} is not an alias name (1-63 characters from A-Z a-z 0-9` +
        " _ -, starting with a letter or _; latest is every model's current version, so filter without it)",
    );
  }
  const labels: Labels = {};
  for (const [param, value] of Object.entries(query)) {
    if (param.startsWith('label.')) labels[param.slice('label.'.length)] = value as string;
  }
  assertLabels(labels);
  if (prefix !== undefined && (prefix.length > 255 || !NAMESPACED_PREFIX.test(prefix))) {
    throw errors.invalidQuery(
      'prefix may hold only the characters of model names (A-Z a-z 0-9 . _ -) and up to 3' +
        ' namespaces ending in / (e.g. nlp/), at most 128 per segment and 255 in all',
    );
  }
  const limit = rawLimit === undefined ? 100 : Number(rawLimit);
  if (!/^\d+$/.test(rawLimit ?? '100') || limit < 1 || limit > 1000) {
    throw errors.invalidQuery('limit must be a whole number from 1 to 1000');
  }
  let cursor: string | undefined;
  if (rawCursor !== undefined) {
    cursor = Buffer.from(rawCursor, 'base64url').toString('utf8');
    const valid = sort === 'name' ? isValidName(cursor) : isValidName(parseUpdatedAtCursor(cursor)?.name ?? '');
    if (!valid) {
      throw errors.invalidQuery(
        `cursor is not one this server returned for sort=${sort}; pass nextCursor from the` +
          ' previous page, with the same sort',
      );
    }
  }
  return { prefix, limit, cursor, labels, alias, sort } as const;
}

/** The parameters of a search, checked by parseListQuery. */
const LIST_QUERY = parsedFields(
  {
    prefix: declared,
    limit: declared,
    cursor: declared,
    alias: declared,
    sort: declared,
    'label.*': declared, // every label.<key>
  },
  (query) => parseListQuery(query as Query),
);

export default async function listRoutes(app: FastifyInstance) {
  const { registry } = app;
  app.withTypeProvider<ZodTypeProvider>().get(
    '/models',
    {
      schema: { querystring: LIST_QUERY, headers: fields({ 'if-none-match': declared }) },
      config: { statuses: [200, 304, 400, 401, 403, 503] },
      // The page moves with every upload: no-cache, and an ETag of the body for If-None-Match.
      onSend: jsonValidators(app.config.AUTH_TOKENS.length > 0),
    },
    async (request) => {
      const page = await registry.list(request.query);
      return {
        models: page.models,
        nextCursor: page.nextCursor === null ? null : Buffer.from(page.nextCursor).toString('base64url'),
      };
    },
  );
}
