/**
 * The application as a Fastify instance: storage → registry service → routes.
 * server.ts runs it as a process; tests build it with their own config and storage.
 */

import { type ServerResponse, STATUS_CODES } from 'node:http';
import Fastify, {
  type FastifyInstance,
  type FastifyLoggerOptions,
  type FastifyReply,
  type FastifyServerOptions,
  LogController,
} from 'fastify';
import { type LoggerOptions, pino } from 'pino';
import { ModelCache } from './cache/index.js';
import type { Config } from './config.js';
import { ConfigError, errors } from './errors.js';
import { capConnections } from './http/connections.js';
import { errorBody, fromRegistryError, sendError } from './http/errors.js';
import { rewriteModelUrl } from './http/model-path.js';
import { declaredKeys, validatorCompiler } from './http/zod.js';
import { createMetrics, type Metrics } from './metrics.js';
import errorHandling from './plugins/errors.js';
import requests, { requestId } from './plugins/requests.js';
import { archiveRules } from './registry/archive.js';
import { ModelRegistry } from './registry/service.js';
import { Watcher } from './registry/watch.js';
import { metricsRoutes } from './routes/metrics.js';
import modelRoutes from './routes/models/index.js';
import systemRoutes from './routes/system.js';
import uiRoutes from './routes/ui.js';
import { createStorage, type Storage } from './storage/index.js';
import { instrument } from './storage/shared/instrumented.js';
import { guardOutages } from './storage/shared/outage.js';
import { CENSOR, mergeSecrets, REDACT_PATHS, scrubValue, secretValues } from './util/redact.js';

declare module 'fastify' {
  interface FastifyContextConfig {
    /**
     * Every status the route answers with (test/openapi.test.ts holds openapi.yaml to it), besides
     * those of every route: 500, and 503 SHUTTING_DOWN once a shutdown began.
     */
    statuses?: number[];
  }
  interface FastifyInstance {
    config: Config;
    registry: ModelRegistry;
    /** This app's Prometheus registry and series (GET /metrics). */
    metrics: Metrics;
    watcher: Watcher;
    /**
     * Every route as registered, for the 405 handler and the OpenAPI check. `hidden`: the route
     * has `schema.hide` (the Swagger UI's own pages and assets under /docs, not API). `params`,
     * `query`, `headers`: the names its schema declares; `statuses`: what its config says it
     * answers with.
     */
    routeList: RouteEntry[];
  }
}

export interface RouteEntry {
  method: string;
  url: string;
  hidden: boolean;
  params: string[];
  query: string[];
  headers: string[];
  statuses?: number[];
}

export interface BuildOptions {
  config: Config;
  /** Use this storage instead of creating the configured one (tests). Not closed by the app. */
  storage?: Storage;
  logger?: FastifyServerOptions['logger'];
}

export interface LogSettings {
  /** More secret values to keep out of the log (server.ts passes those of the whole environment). */
  secrets?: string[];
  /** Where to write (tests); stdout by default. */
  stream?: FastifyLoggerOptions['stream'];
}

/**
 * The pino options of the service: JSON lines at LOG_LEVEL with secrets redacted both by key
 * (Authorization, AUTH_TOKENS, AWS_SECRET_ACCESS_KEY, ..., *.password, *.secret) and by value
 * (the configured secrets and secret-shaped strings in messages, errors and fields); see
 * util/redact.ts.
 */
type SerializedError = ReturnType<typeof pino.stdSerializers.err>;

export function loggerOptions(config: Config, settings: LogSettings = {}): FastifyLoggerOptions & LoggerOptions {
  const secrets = mergeSecrets(secretValues(config), settings.secrets ?? []);
  return {
    level: config.LOG_LEVEL,
    redact: { paths: REDACT_PATHS, censor: CENSOR },
    serializers: {
      // Not every `err` is an Error (a string spread into an object is one field per character).
      err: (err: unknown) =>
        scrubValue(err instanceof Error ? { ...pino.stdSerializers.err(err) } : err, secrets) as SerializedError,
    },
    hooks: {
      logMethod(args, method) {
        // log.error(err) takes its message from err.message: pass it scrubbed.
        const [first, ...rest] = args as unknown[];
        const normalized =
          first instanceof Error
            ? [{ err: first }, typeof rest[0] === 'string' ? rest.shift() : first.message, ...rest]
            : args;
        method.apply(this, normalized.map((arg) => scrubValue(arg, secrets)) as Parameters<typeof method>);
      },
    },
    ...(settings.stream ? { stream: settings.stream } : {}),
  };
}

/**
 * Fastify's internal log lines minus its two per-request lines ('incoming request', 'request
 * completed'): plugins/requests.ts writes one line per request instead. Stream errors, 404s of
 * its own and the other internal lines stay (what `disableRequestLogging: true` would also drop).
 */
class ServiceLogController extends LogController {
  override incomingRequest(): void {}
  override requestCompleted(): void {}
}

export async function buildApp(options: BuildOptions): Promise<FastifyInstance> {
  const { config } = options;
  const app = Fastify({
    logger: options.logger ?? loggerOptions(config),
    logController: new ServiceLogController(),
    genReqId: requestId,
    // Uploads are streamed by the model routes; this limit only applies to JSON bodies.
    bodyLimit: 64 * 1024,
    routerOptions: { maxParamLength: 512 },
    rewriteUrl: rewriteModelUrl, // `/models/nlp/intent/meta`: the name's slashes as %2F (http/model-path.ts)
    // On close: new requests get 503 (the onRequest hook below, in our error shape), idle
    // keep-alive connections are closed at once; the graceful shutdown in server.ts waits for the
    // rest (SHUTDOWN_GRACE), then closes them all.
    return503OnClosing: false,
    forceCloseConnections: 'idle',
    // Slow clients: headers must arrive within HEADERS_TIMEOUT (Node checks pending requests every
    // connectionsCheckingInterval), idle keep-alive sockets close after KEEP_ALIVE_TIMEOUT. No total
    // request timeout: a 20 GiB upload may take hours; a stalled upload body is cut by
    // BODY_IDLE_TIMEOUT in the model routes, and long polls (?wait=) stay.
    http: {
      headersTimeout: config.HEADERS_TIMEOUT,
      connectionsCheckingInterval: Math.max(100, Math.min(1000, Math.floor(config.HEADERS_TIMEOUT / 2))),
    },
    keepAliveTimeout: config.KEEP_ALIVE_TIMEOUT,
    maxRequestsPerSocket: config.MAX_REQUESTS_PER_SOCKET,
    // Errors the router and the HTTP parser raise before any route runs, in our JSON shape too.
    frameworkErrors: (err, _request, reply) => {
      const e = err.code === 'FST_ERR_MAX_PARAM_LENGTH' ? errors.nameTooLong() : errors.badUrl();
      const fastifyReply = reply as unknown as FastifyReply;
      void sendError(fastifyReply.header('x-content-type-options', 'nosniff'), fromRegistryError(e));
    },
    clientErrorHandler: (err: NodeJS.ErrnoException, socket) => {
      if (err.code === 'ECONNRESET' || socket.destroyed) return;
      // Bytes after a whole request that do not parse as the next one — the rest of a body whose
      // Content-Length was short — while that request is still being answered: its answer (the
      // 422 of the archive cut short) is the one that explains the problem. It goes out first,
      // with Connection: close, and the connection closes after it.
      const pending = (socket as unknown as { _httpMessage?: ServerResponse })._httpMessage;
      // (Only once its body is complete: an error inside the body, a bad chunk, ends the request.)
      if (pending && !pending.writableEnded && pending.req.complete && err.code?.startsWith('HPE_')) {
        if (!pending.headersSent) pending.shouldKeepAlive = false;
        pending.once('close', () => socket.destroy());
        return;
      }
      const e = fromRegistryError(
        err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
          ? errors.headersTimeout()
          : err.code === 'HPE_HEADER_OVERFLOW'
            ? errors.headersTooLarge()
            : errors.badRequestFraming(),
      );
      const body = JSON.stringify(errorBody(e));
      if (socket.writable) {
        const head = [
          `HTTP/1.1 ${e.status} ${STATUS_CODES[e.status]}`,
          'Content-Type: application/json; charset=utf-8',
          'X-Content-Type-Options: nosniff',
          `Content-Length: ${Buffer.byteLength(body)}`,
          'Connection: close',
        ];
        socket.write(`${head.join('\r\n')}\r\n\r\n${body}`);
      }
      socket.destroy(err);
    },
  });
  // At the cap, the connection idle longest makes room (see http/connections.ts).
  capConnections(app.server, config.MAX_CONNECTIONS, () =>
    app.log.debug('MAX_CONNECTIONS reached: closed the connection idle longest'),
  );
  // A request arriving on an open connection once shutdown began: 503, and the connection
  // closes (Fastify adds Connection: close), so the client retries on another replica.
  let closing = false;
  app.addHook('preClose', async () => {
    closing = true;
  });
  app.addHook('onRequest', async (_request, reply) => {
    // No response is ever sniffed into something it does not say it is (a file of a model
    // served as text/plain must not run as HTML on this origin).
    reply.header('x-content-type-options', 'nosniff');
    if (!closing) return;
    return sendError(reply, fromRegistryError(errors.shuttingDown()));
  });
  const routeList: FastifyInstance['routeList'] = [];
  app.decorate('routeList', routeList);
  app.addHook('onRoute', (route) => {
    type Schema = { hide?: boolean; params?: unknown; querystring?: unknown; headers?: unknown };
    const schema = route.schema as Schema | undefined;
    const declared = {
      hidden: schema?.hide === true,
      params: declaredKeys(schema?.params),
      query: declaredKeys(schema?.querystring),
      headers: declaredKeys(schema?.headers),
      statuses: route.config?.statuses,
    };
    for (const method of [route.method].flat()) routeList.push({ method, url: route.url, ...declared });
  });
  // Route schemas are zod (src/http/zod.ts); the Swagger UI's routes have none to compile.
  app.setValidatorCompiler(validatorCompiler);
  await app.register(requests);
  const metrics = createMetrics();
  const backend = options.storage ?? (await createStorage(config, app.log));
  // Outermost: a call refused because the storage is down never reaches it, nor its metrics.
  const storage = guardOutages(instrument(backend, metrics), {
    timeoutMs: config.STORAGE_TIMEOUT,
    logger: app.log.child({ component: 'storage' }),
  });

  const limits = {
    maxModelBytes: config.MAX_MODEL_BYTES,
    maxExtractedBytes: config.MAX_EXTRACTED_BYTES,
    maxEntries: config.MAX_ARCHIVE_ENTRIES,
  };
  const cache = new ModelCache({
    dir: config.CACHE_DIR,
    maxBytes: config.CACHE_MAX_BYTES,
    ttlMs: config.CACHE_TTL,
    memoryBytes: config.CACHE_MEMORY_BYTES,
    rules: archiveRules(limits),
    logger: app.log.child({ component: 'cache' }),
    observer: {
      hit: () => metrics.cacheHits.inc(),
      miss: () => metrics.cacheMisses.inc(),
      evicted: (n) => metrics.cacheEvictions.inc(n),
      bytes: (total) => metrics.cacheBytes.set(total),
      memoryBytes: (total) => metrics.cacheMemoryBytes.set(total),
    },
  });
  await cache.init().catch((err: NodeJS.ErrnoException) => {
    const fix = 'point it at a directory this user can create and write';
    throw new ConfigError(`CACHE_DIR=${config.CACHE_DIR} cannot be used (${err.message}): ${fix}.`, { cause: err });
  });
  const registry = new ModelRegistry({
    storage,
    limits,
    history: config.MODEL_HISTORY,
    logger: app.log.child({ component: 'registry' }),
    cache,
    writeThrough: config.CACHE_WRITE_THROUGH,
  });
  const watcher = new Watcher(registry, config.WATCH_POLL_INTERVAL, app.log.child({ component: 'watch' }));
  // Long polls (?wait=) end at the start of a shutdown (answering 304 or the new version), so they
  // do not hold it up; everything else closes after the in-flight requests are done.
  app.addHook('preClose', async () => watcher.close());
  // The cache first: a fill still downloading is stopped, one that just finished is renamed
  // into place, before the storage client it reads from closes.
  // Crash leftovers (staged uploads of dead processes, stale locks) are swept at start by
  // server.ts and then every SWEEP_INTERVAL: a predecessor still alive at start (a zombie reaped
  // late, a replica that died since) leaves nothing for long.
  let sweeping: Promise<unknown> = Promise.resolve();
  const sweeper =
    config.SWEEP_INTERVAL > 0
      ? setInterval(() => {
          sweeping = registry.sweep().then(
            (swept) => {
              if (swept > 0) app.log.info({ swept }, 'removed leftovers of interrupted uploads');
            },
            (err: unknown) => app.log.warn({ err }, 'sweeping leftovers failed; next try in SWEEP_INTERVAL'),
          );
        }, config.SWEEP_INTERVAL).unref()
      : undefined;
  app.addHook('onClose', async () => {
    clearInterval(sweeper);
    await sweeping.catch(() => {});
    watcher.close();
    storage.stop();
    await cache.close();
    if (!options.storage) await backend.close();
  });
  app.decorate<Config>('config', config);
  app.decorate('registry', registry);
  app.decorate('metrics', metrics);
  app.decorate('watcher', watcher);

  await app.register(metricsRoutes, { metrics });
  await app.register(errorHandling);
  await app.register(systemRoutes, { readyTimeoutMs: Math.min(config.STORAGE_TIMEOUT, 5000) });
  await app.register(modelRoutes);
  await app.register(uiRoutes);
  return app;
}
