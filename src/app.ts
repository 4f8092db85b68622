/**
 * The application as a Fastify instance: storage → registry service → routes.
 * server.ts runs it as a process; tests build it with their own config and storage.
 */
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify';
import type { Config } from './config.js';
import { createMetrics, type Metrics } from './metrics.js';
import errorHandling from './plugins/errors.js';
import { ModelCache } from './cache/index.js';
import { ModelRegistry } from './registry/service.js';
import { Watcher } from './registry/watch.js';
import { metricsRoutes } from './routes/metrics.js';
import modelRoutes from './routes/models/index.js';
import systemRoutes from './routes/system.js';
import { createStorage, type Storage } from './storage/index.js';
import { instrument } from './storage/instrumented.js';

declare module 'fastify' {
  interface FastifyInstance {
    config: Config;
    registry: ModelRegistry;
    /** This app's Prometheus registry and series (GET /metrics). */
    metrics: Metrics;
    watcher: Watcher;
    /** Every route as registered (method, url), for the OpenAPI consistency check. */
    routeList: { method: string; url: string }[];
  }
}

export interface BuildOptions {
  config: Config;
  /** Use this storage instead of creating the configured one (tests). Not closed by the app. */
  storage?: Storage;
  logger?: FastifyServerOptions['logger'];
}

export function loggerOptions(config: Config): FastifyServerOptions['logger'] {
  return {
    level: config.LOG_LEVEL,
    redact: {
      paths: ['req.headers.authorization', 'req.headers.cookie', 'headers.authorization', '*.token', '*.AUTH_TOKENS'],
      censor: '[redacted]',
    },
  };
}

export async function buildApp(options: BuildOptions): Promise<FastifyInstance> {
  const { config } = options;
  const app = Fastify({
    logger: options.logger ?? loggerOptions(config),
    // Uploads are streamed by the model routes; this limit only applies to JSON bodies.
    bodyLimit: 64 * 1024,
    routerOptions: { maxParamLength: 512 },
    return503OnClosing: true,
    forceCloseConnections: 'idle',
  });
  const routeList: { method: string; url: string }[] = [];
  app.decorate('routeList', routeList);
  app.addHook('onRoute', (route) => {
    for (const method of [route.method].flat()) routeList.push({ method, url: route.url });
  });
  const metrics = createMetrics();
  const backend = options.storage ?? (await createStorage(config, app.log));
  if (!options.storage) app.addHook('onClose', async () => backend.close());
  const storage = instrument(backend, metrics);

  const limits = {
    maxModelBytes: config.MAX_MODEL_BYTES,
    maxExtractedBytes: config.MAX_EXTRACTED_BYTES,
    maxEntries: config.MAX_ARCHIVE_ENTRIES,
  };
  const cache = new ModelCache({
    dir: config.CACHE_DIR,
    maxBytes: config.CACHE_MAX_BYTES,
    ttlMs: config.CACHE_TTL,
    limits,
    logger: app.log.child({ component: 'cache' }),
    observer: {
      hit: () => metrics.cacheHits.inc(),
      miss: () => metrics.cacheMisses.inc(),
      evicted: (n) => metrics.cacheEvictions.inc(n),
      bytes: (total) => metrics.cacheBytes.set(total),
    },
  });
  await cache.init();
  const registry = new ModelRegistry({
    storage,
    limits,
    history: config.MODEL_HISTORY,
    logger: app.log.child({ component: 'registry' }),
    cache,
    writeThrough: config.CACHE_WRITE_THROUGH,
  });
  const watcher = new Watcher(registry, config.WATCH_POLL_INTERVAL, app.log.child({ component: 'watch' }));
  app.addHook('onClose', async () => {
    watcher.close();
    cache.close();
  });
  app.decorate<Config>('config', config);
  app.decorate('registry', registry);
  app.decorate('metrics', metrics);
  app.decorate('watcher', watcher);

  await app.register(metricsRoutes, { metrics });
  await app.register(errorHandling);
  await app.register(systemRoutes);
  await app.register(modelRoutes);
  return app;
}
