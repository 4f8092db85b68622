/** GET /models/:name/meta: the metadata of a version, with the aliases that point to it. */
import type { FastifyInstance } from 'fastify';
import { jsonValidators } from '../../http/caching.js';
import { declared, fields, type ZodTypeProvider } from '../../http/zod.js';
import { aliasesOf } from '../../registry/aliases.js';
import { describeOrStale, refOf, refParam, versionQuery, view } from './shared.js';

export default async function metaRoutes(app: FastifyInstance) {
  const { registry } = app;
  app.withTypeProvider<ZodTypeProvider>().get(
    '/models/:name/meta',
    {
      schema: {
        params: fields({ name: refParam }),
        querystring: fields({ version: versionQuery }),
        headers: fields({ 'if-none-match': declared }),
      },
      config: { statuses: [200, 304, 400, 401, 403, 404, 503] },
      // Not immutable even with ?version=N: the body lists the aliases pointing to the version,
      // which move. no-cache and an ETag of the body.
      onSend: jsonValidators(app.config.AUTH_TOKENS.length > 0),
    },
    async (request, reply) => {
      const { ref, name } = refOf(request.params.name);
      const { model, stale } = await describeOrStale(app, ref, request.query.version);
      if (!stale) return { ...view(model), aliases: aliasesOf(await registry.aliases(name), model.version) };
      // Stale-if-error, as the download: which aliases point here only the storage knows.
      reply.headers({ warning: '110 - "Response is Stale"', 'x-cache': 'STALE' });
      return view(model);
    },
  );
}
