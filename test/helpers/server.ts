/**
 * Starts the app on 127.0.0.1 with a random port and a temporary storage directory.
 * Everything is torn down with the test.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { Test } from 'tap';
import { buildApp } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';
import type { Storage } from '../../src/storage/types.js';

export interface Running {
  app: FastifyInstance;
  url: string;
  /** The storage directory when the backend is local, '' otherwise. */
  dir: string;
}

export async function tempDir(t: Test, prefix = 'mr-test-'): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), prefix));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/**
 * Starts the app; without REMOTE_STORAGE in `env`, on the local backend in a temporary directory.
 * `storage`: a backend (already initialised) to use instead of the configured one.
 */
export async function start(t: Test, env: Record<string, string> = {}, storage?: Storage): Promise<Running> {
  const dir = env.LOCAL_STORAGE_DIR ?? (env.REMOTE_STORAGE ? '' : await tempDir(t));
  const config = loadConfig({
    LOCAL_STORAGE_DIR: dir,
    CACHE_DIR: env.CACHE_DIR ?? (await tempDir(t, 'mr-cache-')),
    PORT: '0',
    LOG_LEVEL: 'silent',
    ...env,
  });
  const app = await buildApp({ config, logger: false, storage });
  return { app, url: await listening(t, app), dir };
}

/** Listens on 127.0.0.1 with a random port, closed with the test; returns the base URL. */
export async function listening(t: Test, app: FastifyInstance): Promise<string> {
  await app.listen({ host: '127.0.0.1', port: 0 });
  t.teardown(() => {
    // A test may leave a response body unread; do not wait for it.
    app.server.closeAllConnections();
    return app.close();
  });
  const address = app.server.address();
  if (!address || typeof address === 'string') throw new Error('no address');
  return `http://127.0.0.1:${address.port}`;
}

export async function put(url: string, body: Buffer, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(url, {
    method: 'PUT',
    body: new Uint8Array(body),
    headers: { 'content-type': 'application/gzip', ...headers },
  });
}

export async function bytes(res: Response): Promise<Buffer> {
  return Buffer.from(await res.arrayBuffer());
}
