/**
 * Liveness, readiness and the API description: openapi.yaml as YAML and JSON, and Swagger UI
 * over the same document at /docs (its own pages and assets are registered with schema.hide and
 * are not API routes; /docs/json and /docs/yaml serve the document to the UI).
 */
import { readFile } from 'node:fs/promises';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { FastifyInstance } from 'fastify';
import { parse } from 'yaml';
import { errorBody, StorageUnavailableError } from '../errors.js';

export const OPENAPI_PATH = new URL('../../openapi.yaml', import.meta.url);

export default async function systemRoutes(app: FastifyInstance) {
  const openapiText = await readFile(OPENAPI_PATH, 'utf8');
  const openapi = parse(openapiText) as Record<string, unknown>;
  const openapiJson = JSON.stringify(openapi);

  app.get('/healthz', async () => ({ status: 'ok' }));

  app.get('/readyz', async (request, reply) => {
    try {
      await app.registry.storage.ping();
      return { status: 'ready', storage: app.registry.storage.kind };
    } catch (err) {
      request.log.warn({ err }, 'storage not ready');
      const unavailable = err instanceof StorageUnavailableError ? err : new StorageUnavailableError(app.registry.storage.kind, 'health check failed', { cause: err });
      return reply.code(503).headers(unavailable.headers).send(errorBody(unavailable));
    }
  });

  app.get('/openapi.yaml', async (_request, reply) => reply.type('application/yaml; charset=utf-8').send(openapiText));
  app.get('/openapi.json', async (_request, reply) => reply.type('application/json; charset=utf-8').send(openapiJson));

  // Static mode: the document is openapi.yaml as written, never generated from route schemas.
  await app.register(swagger, { mode: 'static', specification: { document: openapi as never } });
  await app.register(swaggerUi, { routePrefix: '/docs', uiConfig: { deepLinking: true, tryItOutEnabled: false } });
}
