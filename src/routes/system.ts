/** Liveness, readiness and the API description. */
import { readFile } from 'node:fs/promises';
import type { FastifyInstance } from 'fastify';
import { parse } from 'yaml';
import { StorageUnavailableError } from '../errors.js';

export const OPENAPI_PATH = new URL('../../openapi.yaml', import.meta.url);

export default async function systemRoutes(app: FastifyInstance) {
  const openapiText = await readFile(OPENAPI_PATH, 'utf8');
  const openapiJson = JSON.stringify(parse(openapiText));

  app.get('/healthz', async () => ({ status: 'ok' }));

  app.get('/readyz', async (request, reply) => {
    try {
      await app.registry.storage.ping();
      return { status: 'ready', storage: app.registry.storage.kind };
    } catch (err) {
      request.log.warn({ err }, 'storage not ready');
      const unavailable = err instanceof StorageUnavailableError ? err : new StorageUnavailableError(app.registry.storage.kind, 'health check failed', { cause: err });
      return reply.code(503).headers(unavailable.headers).send({ error: unavailable.code, message: unavailable.message });
    }
  });

  app.get('/openapi.yaml', async (_request, reply) => reply.type('application/yaml; charset=utf-8').send(openapiText));
  app.get('/openapi.json', async (_request, reply) => reply.type('application/json; charset=utf-8').send(openapiJson));
}
