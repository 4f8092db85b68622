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
import { StorageUnavailableError } from '../errors.js';
import { sendError, toHttpError } from '../http/errors.js';

export const OPENAPI_PATH = new URL('../../openapi.yaml', import.meta.url);

export interface SystemOptions {
  /** How long /readyz waits for storage before answering 503. */
  readyTimeoutMs: number;
}

/**
 * The CSP of /docs: its page loads only its own scripts, styles and images (no inline script,
 * no eval), fetches only /docs/json, and cannot be framed. Inline styles are allowed: the UI
 * sets style attributes as it renders (styles run no code). No upgrade-insecure-requests (the
 * plugin's default has it), which would break the page on a plain-HTTP registry.
 */
export const DOCS_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "script-src-attr 'none'",
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' data:",
  "font-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
  "object-src 'none'",
].join('; ');

export default async function systemRoutes(app: FastifyInstance, options: SystemOptions) {
  const openapiText = await readFile(OPENAPI_PATH, 'utf8');
  const openapi = parse(openapiText) as Record<string, unknown>;
  const openapiJson = JSON.stringify(openapi);

  app.get('/healthz', { config: { statuses: [200] } }, async () => ({ status: 'ok' }));

  // One storage check at a time, shared by every probe, each of which waits for it at most
  // readyTimeoutMs: a stalled storage (whose SDK retries for minutes) answers 503 in seconds, and a
  // probe the load balancer gave up on does not hold shutdown.
  let pinging: Promise<void> | undefined;
  let pingStarted = 0;
  app.get('/readyz', { config: { statuses: [200, 503] } }, async (request, reply) => {
    const kind = app.registry.storage.kind;
    let timer: NodeJS.Timeout | undefined;
    try {
      // (A check still hanging long after its deadline is not waited for again: a new one starts.)
      if (!pinging || Date.now() - pingStarted > 4 * options.readyTimeoutMs) {
        const check: Promise<void> = app.registry.storage.ping().finally(() => {
          if (pinging === check) pinging = undefined;
        });
        check.catch(() => {}); // a check every probe stopped waiting for fails unobserved
        pinging = check;
        pingStarted = Date.now();
      }
      const deadline = new Promise<never>((_, reject) => {
        const late = () => reject(new StorageUnavailableError(kind, `no answer within ${options.readyTimeoutMs} ms`));
        timer = setTimeout(late, options.readyTimeoutMs);
      });
      await Promise.race([pinging, deadline]);
      return { status: 'ready', storage: kind };
    } catch (err) {
      request.log.warn({ err }, 'storage not ready');
      const unavailable =
        err instanceof StorageUnavailableError
          ? err
          : new StorageUnavailableError(kind, 'health check failed', { cause: err });
      return sendError(reply, toHttpError(unavailable)!);
    } finally {
      clearTimeout(timer);
    }
  });

  const documents = { config: { statuses: [200] } };
  app.get('/openapi.yaml', documents, async (_request, reply) =>
    reply.type('application/yaml; charset=utf-8').send(openapiText),
  );
  app.get('/openapi.json', documents, async (_request, reply) =>
    reply.type('application/json; charset=utf-8').send(openapiJson),
  );

  // Static mode: the document is openapi.yaml as written, never generated from route schemas.
  await app.register(swagger, { mode: 'static', specification: { document: openapi as never } });
  // In a context of its own: swagger-ui sets its CSP in an onSend hook of the context it is
  // registered in (it is a fastify-plugin), which must not reach the other routes.
  await app.register(async (docs) => {
    await docs.register(swaggerUi, {
      routePrefix: '/docs',
      uiConfig: { deepLinking: true, tryItOutEnabled: false, validatorUrl: null },
      staticCSP: DOCS_CSP,
    });
  });
}
