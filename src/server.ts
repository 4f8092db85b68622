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
 * A second signal skips the rest of the grace.
 */
import './node-version.js'; // first: stops on a Node.js older than 22.12 before anything else loads
import { realpathSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import type { FastifyInstance } from 'fastify';
import { buildApp, loggerOptions } from './app.js';
import { dropEmptySdkVariables, loadConfig, lookAlikeSettings, type Config } from './config.js';
import { ConfigError } from './errors.js';
import { scrub, secretValues } from './util/redact.js';


/** After the grace, how long aborted requests get to clean up (discard staged uploads). */
const ABORT_CLEANUP_MS = 5000;
/** How long closing storage clients may take before the process gives up on them. */
const CLOSE_TIMEOUT_MS = 10_000;

/**
 * One line naming the setting for what the environment got wrong that only shows when the server
 * binds its address; undefined for anything else.
 */
function startupLine(err: NodeJS.ErrnoException, env: NodeJS.ProcessEnv): string | undefined {
  const why = err.message;
  if (err.syscall === 'listen' || err.syscall === 'getaddrinfo') {
    if (err.code === 'EADDRINUSE') return `PORT is already in use (${why}); stop the other process or set PORT to a free port.`;
    if (err.code === 'EACCES') return `PORT=${env.PORT ?? ''} cannot be bound by this user (${why}): use a port of 1024 or above (the image runs as a non-root user).`;
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
    const meant = settings.length === 0 ? 'one of the settings in README.md' : settings.length === 1 ? settings[0] : `one of ${settings.join(', ')}`;
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

  let stopping = false;
  const skipGrace = new AbortController();
  const stop = async (signal: NodeJS.Signals) => {
    if (stopping) {
      app.log.warn({ signal, inflight: app.inflight.size }, 'second signal: aborting the requests in flight now');
      skipGrace.abort();
      return;
    }
    stopping = true;
    try {
      await shutdown(app, app.config.SHUTDOWN_GRACE, signal, skipGrace.signal);
      process.exit(0);
    } catch (err) {
      app.log.error({ err }, 'shutdown failed');
      process.exit(1);
    }
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => {
      clearTimeout(timer);
      resolve();
    }, { once: true });
  });

/** Steps 1-4 above; resolves once the app is closed. */
export async function shutdown(app: FastifyInstance, graceMs: number, signal: string, skipGrace?: AbortSignal): Promise<void> {
  const started = Date.now();
  app.log.info({ signal, inflight: app.inflight.size, graceMs }, 'shutting down: not accepting new connections, letting requests in flight finish');
  const closed = app.close();
  const drained = await Promise.race([app.inflight.drained().then(() => true), sleep(graceMs, skipGrace).then(() => false)]);
  if (!drained) {
    app.log.warn({ inflight: app.inflight.size, graceMs }, 'shutdown grace is over: aborting the requests still in flight');
  }
  // Nothing left in flight (or no more time): whatever connections remain are idle keep-alive
  // ones, or carry requests that are now aborted.
  app.server.closeAllConnections();
  if (!drained) await Promise.race([app.inflight.drained(), sleep(ABORT_CLEANUP_MS)]);
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    closed,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`closing the cache and the storage clients took longer than ${CLOSE_TIMEOUT_MS} ms`)), CLOSE_TIMEOUT_MS);
    }),
  ]).finally(() => clearTimeout(timer));
  app.log.info({ ms: Date.now() - started, aborted: !drained }, 'stopped');
}

// Run when executed directly (npm start, node dist/server.js); the CLI imports serve().
// (Through the real path: a deploy layout such as current -> release-42 runs it via a symlink.)
if (process.argv[1] && import.meta.url === pathToFileURL(realpathSync(process.argv[1])).href) await serve();
