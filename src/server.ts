/**
 * The process: read config, open storage, sweep crash leftovers, serve, close gracefully on
 * SIGTERM / SIGINT. A bad setting exits 1 with one line naming it; no startup error line ever
 * shows a secret (util/redact.ts).
 *
 * Graceful shutdown (SIGTERM / SIGINT):
 *  1. stop accepting connections; idle keep-alive connections are closed, new requests on open
 *     ones get 503 (return503OnClosing) and responses say `Connection: close`; long polls
 *     (?wait=) answer at once;
 *  2. wait up to SHUTDOWN_GRACE for the uploads and downloads in flight to finish;
 *  3. then close every remaining connection: an upload cut off this way is discarded (its staged
 *     data is removed before its handler returns, which is awaited), nothing partial is ever
 *     visible; a download cut off this way ends short, and the client sees it;
 *  4. stop the cache fills still downloading (their temp files removed), close the storage
 *     clients, exit 0.
 * A second signal skips the rest of the grace — a SIGINT (Ctrl-C again), or a SIGTERM at least
 * ESCALATE_AFTER_MS after the first: one stop request often arrives twice within milliseconds
 * (`kill -TERM -- -<pgid>` on `npm start`, systemd's control-group kill: once directly, once
 * forwarded by npm), which must not abort the uploads the first one lets finish.
 */
import './node-version.js'; // first: stops on a Node.js older than 22.12 before anything else loads
import { realpathSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import type { FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { buildApp, loggerOptions } from './app.js';
import { type Config, dropEmptySdkVariables, loadConfig, lookAlikeSettings } from './config.js';
import { ConfigError } from './errors.js';
import { scrub, secretValues } from './util/redact.js';

/** After the grace, how long aborted requests get to clean up (discard staged uploads). */
const ABORT_CLEANUP_MS = 5000;
/** How long closing storage clients may take before the process gives up on them. */
const CLOSE_TIMEOUT_MS = 10_000;
/** A SIGTERM this long after the first is a second stop request, not the first one twice. */
export const ESCALATE_AFTER_MS = 1000;
/** How long the last log lines may take to reach stdout at exit. */
const LOG_FLUSH_MS = 1000;

/**
 * One line naming the setting for what the environment got wrong that only shows when the server
 * binds its address; undefined for anything else.
 */
function startupLine(err: NodeJS.ErrnoException, env: NodeJS.ProcessEnv): string | undefined {
  const why = err.message;
  if (err.syscall === 'listen' || err.syscall === 'getaddrinfo') {
    if (err.code === 'EADDRINUSE')
      return `PORT is already in use (${why}); stop the other process or set PORT to a free port.`;
    if (err.code === 'EACCES')
      return `PORT=${env.PORT ?? ''} cannot be bound by this user (${why}): use a port of 1024 or above (the image runs as a non-root user).`;
    if (['EADDRNOTAVAIL', 'ENOTFOUND', 'EAI_AGAIN', 'EAI_NONAME'].includes(err.code ?? '')) {
      return `HOST=${env.HOST ?? ''} is not an address of this machine (${why}): use 0.0.0.0 (every interface), 127.0.0.1, or one of this machine's addresses.`;
    }
  }
  return undefined;
}

/**
 * Names each variable that looks like a misspelt setting (config.ts lookAlikeSettings), before the
 * server listens: those that weaken security (AUTH_*, ALLOW_*) first and at error level, the rest
 * as warnings. The environment holds other programs' variables too, so this never stops the start.
 */
function warnLookAlikes(app: FastifyInstance, config: Config, env: NodeJS.ProcessEnv): void {
  for (const { name, settings, security } of lookAlikeSettings(env)) {
    const meant =
      settings.length === 0
        ? 'one of the settings in README.md'
        : settings.length === 1
          ? settings[0]
          : `one of ${settings.join(', ')}`;
    let msg = `${name} is not a setting of the registry and is ignored: is it ${meant} misspelt?`;
    if (settings.includes('AUTH_TOKENS') && config.AUTH_TOKENS.length === 0) {
      msg += ' Until it is fixed, AUTH_TOKENS is unset and the registry serves every request without a token.';
    }
    if (security) app.log.error({ variable: name, settings }, msg);
    else app.log.warn({ variable: name, settings }, msg);
  }
}

export async function serve(env: NodeJS.ProcessEnv = process.env): Promise<void> {
  // Every secret of the environment, whichever backend is chosen, stays out of every line.
  const secrets = secretValues(env);
  dropEmptySdkVariables(env);
  let app: FastifyInstance;
  try {
    const config = loadConfig(env);
    app = await buildApp({ config, logger: loggerOptions(config, { secrets }) });
    warnLookAlikes(app, config, env);
    const swept = await app.registry.sweep();
    if (swept > 0) app.log.info({ swept }, 'removed leftovers of interrupted uploads');
    await app.listen({ host: config.HOST, port: config.PORT });
    app.log.info({ storage: config.REMOTE_STORAGE, shutdownGraceMs: config.SHUTDOWN_GRACE }, 'model registry ready');
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(`model-registry: ${scrub(err.message, secrets)}`);
      process.exit(1);
    }
    const line = startupLine(err as NodeJS.ErrnoException, env);
    if (line) {
      console.error(`model-registry: ${scrub(line, secrets)}`);
      process.exit(1);
    }
    const detail = err instanceof Error ? (err.stack ?? err.message) : String(err);
    console.error(`model-registry: failed to start: ${scrub(detail, secrets)}`);
    process.exit(1);
  }

  let stoppingAt: number | undefined;
  const skipGrace = new AbortController();
  const stop = async (signal: NodeJS.Signals) => {
    if (stoppingAt !== undefined) {
      const after = Date.now() - stoppingAt;
      if (signal === 'SIGTERM' && after < ESCALATE_AFTER_MS) {
        app.log.info(
          { signal, afterMs: after },
          'the same stop request again (within 1 s): still letting the requests in flight finish',
        );
        return;
      }
      if (!skipGrace.signal.aborted)
        app.log.warn({ signal, inflight: app.inflight.size }, 'second signal: aborting the requests in flight now');
      skipGrace.abort();
      return;
    }
    stoppingAt = Date.now();
    let code = 0;
    try {
      await shutdown(app, app.config.SHUTDOWN_GRACE, signal, skipGrace.signal);
    } catch (err) {
      app.log.error({ err }, 'shutdown failed');
      code = 1;
    }
    await settleLog(app, LOG_FLUSH_MS);
    process.exit(code);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
}

/**
 * Gives the log's last lines up to `ms` to reach stdout, then lets go of what is left. pino
 * writes asynchronously and flushes what is pending at exit with a synchronous loop that retries
 * a failed write for ever: on a stdout nobody reads any more (`| head -2`: EPIPE) or nobody
 * empties (a full pipe: EAGAIN), the process would never exit, deaf to further signals.
 */
async function settleLog(app: FastifyInstance, ms: number): Promise<void> {
  const stream = (app.log as unknown as Record<symbol, unknown>)[pino.symbols.streamSym] as
    | { _writing?: boolean; _len?: number; flushSync?: () => void; once?: (event: string, fn: () => void) => void }
    | undefined;
  if (!stream || typeof stream.flushSync !== 'function' || stream._len === undefined) return;
  const deadline = Date.now() + ms;
  let failed = false;
  stream.once?.('error', () => (failed = true));
  while ((stream._writing || stream._len > 0) && !failed && Date.now() < deadline) await sleep(10);
  if (stream._writing || stream._len > 0) stream.flushSync = () => {};
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener(
      'abort',
      () => {
        clearTimeout(timer);
        resolve();
      },
      { once: true },
    );
  });

/** Steps 1-4 above; resolves once the app is closed. */
export async function shutdown(
  app: FastifyInstance,
  graceMs: number,
  signal: string,
  skipGrace?: AbortSignal,
): Promise<void> {
  const started = Date.now();
  app.log.info(
    { signal, inflight: app.inflight.size, graceMs },
    'shutting down: not accepting new connections, letting requests in flight finish',
  );
  const closed = app.close();
  const drained = await Promise.race([
    app.inflight.drained().then(() => true),
    sleep(graceMs, skipGrace).then(() => false),
  ]);
  if (!drained) {
    app.log.warn(
      { inflight: app.inflight.size, graceMs },
      'shutdown grace is over: aborting the requests still in flight',
    );
  }
  // Nothing left in flight (or no more time): whatever connections remain are idle keep-alive
  // ones, or carry requests that are now aborted.
  app.server.closeAllConnections();
  if (!drained) await Promise.race([app.inflight.drained(), sleep(ABORT_CLEANUP_MS)]);
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    closed,
    new Promise((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`closing the cache and the storage clients took longer than ${CLOSE_TIMEOUT_MS} ms`)),
        CLOSE_TIMEOUT_MS,
      );
    }),
  ]).finally(() => clearTimeout(timer));
  app.log.info({ ms: Date.now() - started, aborted: !drained }, 'stopped');
}

// Run when executed directly (npm start, node dist/server.js); the CLI imports serve().
// (Through the real path: a deploy layout such as current -> release-42 runs it via a symlink.)
if (process.argv[1] && import.meta.url === pathToFileURL(realpathSync(process.argv[1])).href) await serve();
