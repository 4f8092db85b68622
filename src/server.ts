/**
 * The process: read config, open storage, sweep crash leftovers, serve, close gracefully on
 * SIGTERM / SIGINT. A bad setting exits 1 with one line naming it.
 */
import { pathToFileURL } from 'node:url';
import { buildApp } from './app.js';
import { loadConfig } from './config.js';
import { ConfigError } from './errors.js';

export async function serve(env: NodeJS.ProcessEnv = process.env): Promise<void> {
  let app;
  try {
    const config = loadConfig(env);
    app = await buildApp({ config });
    const swept = await app.registry.sweep();
    if (swept > 0) app.log.info({ swept }, 'removed leftovers of interrupted uploads');
    await app.listen({ host: config.HOST, port: config.PORT });
    app.log.info({ storage: config.REMOTE_STORAGE }, 'model registry ready');
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(`model-registry: ${err.message}`);
      process.exit(1);
    }
    if ((err as NodeJS.ErrnoException).code === 'EADDRINUSE') {
      console.error(`model-registry: PORT is already in use: ${(err as Error).message}; stop the other process or set PORT to a free port.`);
      process.exit(1);
    }
    throw err;
  }
  const stop = async (signal: string) => {
    app.log.info({ signal }, 'shutting down');
    await app.close();
    process.exit(0);
  };
  process.once('SIGTERM', () => void stop('SIGTERM'));
  process.once('SIGINT', () => void stop('SIGINT'));
}

// Run when executed directly (npm start, node dist/server.js); the CLI imports serve().
if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) await serve();
