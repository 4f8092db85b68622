/**
 * GET /metrics (Prometheus text format) and the app-wide HTTP instrumentation that feeds it:
 *  - http_request_duration_seconds{method,route,status_code}: every response, `route` being the
 *    route template (`/models/:name`) or 'unmatched' (404s, never the raw URL);
 *  - model_registry_http_bytes_total{direction}: `in` = the request's declared Content-Length,
 *    `out` = the response's Content-Length, each when present. Chunked bodies without a length
 *    are not counted; responses that carry no body (HEAD, 204, 304) count no `out` bytes even
 *    though HEAD reports the length of the body it would send;
 *  - model_registry_http_requests_aborted_total{method,route}: responses that never completed
 *    (those are in neither of the two above).
 *
 * Wrapped with fastify-plugin so the onResponse hook applies to every route of the app, not
 * only to the routes of this plugin's encapsulation context.
 */
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import type { Metrics } from '../metrics.js';
import { contentLength as length } from '../util/content-length.js';

export interface MetricsRoutesOptions {
  metrics: Metrics;
}

async function metricsRoutesPlugin(app: FastifyInstance, { metrics }: MetricsRoutesOptions): Promise<void> {
  // onResponse does not run for a response that never completed: counted on its own.
  app.addHook('onRequest', async (request, reply) => {
    reply.raw.once('close', () => {
      if (reply.raw.writableFinished) return;
      metrics.httpAborted.inc({ method: request.method, route: request.routeOptions.url ?? 'unmatched' });
    });
  });
  app.addHook('onResponse', async (request, reply) => {
    const statusCode = reply.statusCode;
    metrics.httpDuration.observe(
      { method: request.method, route: request.routeOptions.url ?? 'unmatched', status_code: String(statusCode) },
      reply.elapsedTime / 1000,
    );
    const bytesIn = length(request.headers['content-length']);
    if (bytesIn) metrics.httpBytes.inc({ direction: 'in' }, bytesIn);
    const hasBody = request.method !== 'HEAD' && statusCode !== 204 && statusCode !== 304 && statusCode >= 200;
    const bytesOut = hasBody ? length(reply.getHeader('content-length')) : undefined;
    if (bytesOut) metrics.httpBytes.inc({ direction: 'out' }, bytesOut);
  });

  app.get('/metrics', { config: { statuses: [200] } }, async (_request, reply) => {
    const text = await metrics.registry.metrics();
    return reply.header('cache-control', 'no-store').type(metrics.registry.contentType).send(text);
  });
}

export const metricsRoutes = fp(metricsRoutesPlugin, { name: 'metrics-routes', fastify: '5.x' });
export default metricsRoutes;
