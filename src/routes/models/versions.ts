/**
 * A model's history: GET /models/:name/versions (the current version and the retained ones,
 * newest first) and POST /models/:name/rollback (a retained version becomes current again).
 */
import type { FastifyInstance } from 'fastify';
import { errors } from '../../errors.js';
import { jsonValidators } from '../../http/caching.js';
import { writeCondition } from '../../http/conditional.js';
import { declared, fields, type ZodTypeProvider } from '../../http/zod.js';
import { aliasesOf } from '../../registry/aliases.js';
import { etagOf } from '../../registry/service.js';
import { parseVersion } from './params.js';
import { nameParam, view } from './shared.js';

export default async function versionRoutes(app: FastifyInstance) {
  const { registry } = app;
  const routes = app.withTypeProvider<ZodTypeProvider>();

  routes.get(
    '/models/:name/versions',
    {
      schema: { params: fields({ name: nameParam }), headers: fields({ 'if-none-match': declared }) },
      config: { statuses: [200, 304, 400, 401, 403, 404, 503] },
      onSend: jsonValidators(app.config.AUTH_TOKENS.length > 0),
    },
    async (request) => {
      const { name } = request.params;
      const [versions, aliases] = await Promise.all([registry.versions(name), registry.aliases(name)]);
      return {
        name,
        current: versions[0]!.version,
        versions: versions.map((v) => ({ ...view(v), aliases: aliasesOf(aliases, v.version) })),
      };
    },
  );

  routes.post(
    '/models/:name/rollback',
    {
      // The body is checked by hand: its messages name the body's form (and come after the name's).
      schema: {
        params: fields({ name: nameParam }),
        headers: fields({ 'if-match': declared, 'if-none-match': declared }),
      },
      config: { statuses: [200, 400, 401, 403, 404, 409, 412, 503, 507] },
    },
    async (request, reply) => {
      const { name } = request.params;
      const body = request.body as { version?: unknown } | undefined;
      if (!body || typeof body !== 'object' || body.version === undefined) {
        throw errors.invalidBody('send JSON {"version": N} with the version to make current');
      }
      // A JSON number, as documented: not "3" nor [3] (which String() would turn into 3).
      if (typeof body.version !== 'number') throw errors.invalidVersion(JSON.stringify(body.version), 'body');
      const version = parseVersion(body.version, 'body');
      const model = await registry.rollback(name, version!, writeCondition(request.headers));
      request.log.info({ model: name, from: version, version: model.version }, 'model rolled back');
      return reply.header('etag', etagOf(model.sha256)).send(view(model));
    },
  );
}
