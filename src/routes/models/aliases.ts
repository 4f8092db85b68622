/**
 * Aliases, movable names for one version of a model (as MLflow's model aliases or OCI tags):
 * GET /models/:name/aliases, and GET / PUT / DELETE /models/:name/aliases/:alias.
 */
import type { FastifyInstance } from 'fastify';
import { errors } from '../../errors.js';
import { jsonValidators, revalidate } from '../../http/caching.js';
import { writeCondition } from '../../http/conditional.js';
import { declared, fields, parsed, type ZodTypeProvider } from '../../http/zod.js';
import type { Aliases } from '../../registry/aliases.js';
import { parseRef } from '../../registry/names.js';
import { etagOf } from '../../registry/service.js';
import { parseVersion } from './params.js';
import { aliasView, nameParam } from './shared.js';

/**
 * `:alias`, checked where it is used: its message names the model (GET), or it comes after
 * the headers' and the body's (PUT, DELETE: the registry service checks it).
 */
const aliasParam = parsed((raw) => raw as string);
const aliasParams = fields({ name: nameParam, alias: aliasParam });
const writeHeaders = fields({ 'if-match': declared, 'if-none-match': declared });

export default async function aliasRoutes(app: FastifyInstance) {
  const { registry } = app;
  const routes = app.withTypeProvider<ZodTypeProvider>();
  const sortedAliases = (name: string, aliases: Aliases) =>
    [...aliases].sort(([a], [b]) => (a < b ? -1 : 1)).map(([alias, target]) => aliasView(name, alias, target));

  const auth = app.config.AUTH_TOKENS.length > 0;
  routes.get(
    '/models/:name/aliases',
    {
      schema: { params: fields({ name: nameParam }), headers: fields({ 'if-none-match': declared }) },
      config: { statuses: [200, 304, 400, 401, 403, 404, 503] },
      onSend: jsonValidators(auth),
    },
    async (request) => {
      const { name } = request.params;
      const [aliases] = await Promise.all([registry.aliases(name), registry.describe(name)]);
      return { name, aliases: sortedAliases(name, aliases) };
    },
  );

  routes.get(
    '/models/:name/aliases/:alias',
    {
      schema: { params: aliasParams },
      config: { statuses: [200, 400, 401, 403, 404, 503] },
    },
    async (request, reply) => {
      const { name, alias } = request.params;
      // Its ETag stays its version's (what If-Match on PUT compares), so no 304 here: revalidated
      // by a plain GET.
      reply.header('cache-control', revalidate(auth));
      if (alias === 'latest') {
        const current = await registry.describe(name); // reserved: always the current version
        return reply.header('etag', etagOf(current.sha256)).send(aliasView(name, alias, current));
      }
      parseRef(`${name}@${alias}`); // an invalid alias is 400, not 404
      const target = (await registry.aliases(name)).get(alias);
      if (!target) {
        await registry.describe(name);
        throw errors.aliasNotFound(name, alias);
      }
      return reply.header('etag', etagOf(target.sha256)).send(aliasView(name, alias, target));
    },
  );

  routes.put(
    '/models/:name/aliases/:alias',
    {
      // The body is checked by hand: its message names the alias (and comes after the headers').
      schema: { params: aliasParams, headers: writeHeaders },
      config: { statuses: [200, 201, 400, 401, 403, 404, 409, 412, 503, 507] },
    },
    async (request, reply) => {
      const { name, alias } = request.params;
      const condition = writeCondition(request.headers);
      const body = request.body as { version?: unknown } | undefined;
      if (!body || typeof body !== 'object' || Array.isArray(body) || body.version === undefined) {
        const form = `send JSON {"version": N} with the version alias ${JSON.stringify(alias)} should point to`;
        throw errors.invalidBody(form);
      }
      if (typeof body.version !== 'number') throw errors.invalidVersion(JSON.stringify(body.version));
      const version = parseVersion(body.version)!;
      const { model, created } = await registry.setAlias(name, alias, version, condition);
      request.log.info({ model: name, alias, version }, created ? 'alias created' : 'alias moved');
      return reply
        .code(created ? 201 : 200)
        .header('etag', etagOf(model.sha256))
        .send(aliasView(name, alias, model));
    },
  );

  routes.delete(
    '/models/:name/aliases/:alias',
    {
      schema: { params: aliasParams, headers: writeHeaders },
      config: { statuses: [204, 400, 401, 403, 404, 409, 412, 503, 507] },
    },
    async (request, reply) => {
      const { name, alias } = request.params;
      await registry.removeAlias(name, alias, writeCondition(request.headers));
      request.log.info({ model: name, alias }, 'alias removed');
      return reply.code(204).send();
    },
  );
}
