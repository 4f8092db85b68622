/**
 * DELETE /models/:name: the model with its history and its aliases, or with `?version=N` one
 * history entry (`&force=true` also when aliases point to it, removing them).
 */
import type { FastifyInstance } from 'fastify';
import { writeCondition } from '../../http/conditional.js';
import { declared, fields, type ZodTypeProvider } from '../../http/zod.js';
import { flagQuery, nameParam, versionQuery } from './shared.js';

export default async function deleteRoutes(app: FastifyInstance) {
  const { registry } = app;
  app.withTypeProvider<ZodTypeProvider>().delete(
    '/models/:name',
    {
      schema: {
        params: fields({ name: nameParam }),
        querystring: fields({ version: versionQuery, force: flagQuery('force') }),
        headers: fields({ 'if-match': declared, 'if-none-match': declared }),
      },
      config: { statuses: [204, 400, 401, 403, 404, 409, 412, 503] },
    },
    async (request, reply) => {
      const { name } = request.params;
      const { version, force = false } = request.query;
      await registry.delete(name, version, writeCondition(request.headers), { force });
      request.log.info({ model: name, version }, 'model deleted');
      return reply.code(204).send();
    },
  );
}
