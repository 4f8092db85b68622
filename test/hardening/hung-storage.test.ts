/**
 * Issue 21 §2: a storage that hangs (kill -STOP: connections are accepted, nothing is ever
 * answered) costs one STORAGE_TIMEOUT, not one per SDK retry nor one per request. For MinIO,
 * Azurite and fake-gcs-server, behind a real registry process with STORAGE_TIMEOUT=2s:
 *  - the first cached GET is served stale within the timeout (plus a margin for a busy machine),
 *    the following ones (download, /meta, /files, /files/*) at once, with X-Cache: STALE;
 *  - an uncached model, a PUT and /readyz get their 503 at once, as JSON naming the outage;
 *  - a PUT to a storage not yet known to be down gets its 503 within the timeout, not 3×;
 *  - after kill -CONT the registry sees the storage again within seconds, unprompted.
 * And each backend's own calls (no registry in front) fail within the timeout, retries included.
 */
import { Readable } from 'node:stream';
import pino from 'pino';
import t, { type Test } from 'tap';
import { loadConfig } from '../../src/config.js';
import { StorageUnavailableError } from '../../src/errors.js';
import { createStorage } from '../../src/storage/index.js';
import { model, tgz } from '../helpers/archives.js';
import { isError } from '../helpers/assert.js';
import { azuriteEnv, fakeGcsEnv, minioEnv } from '../helpers/cloud.js';
import { type Emulator, startAzurite, startFakeGcs, startMinio } from '../helpers/emulators.js';
import { spawnServer, until } from '../helpers/process.js';
import { put } from '../helpers/server.js';

const TIMEOUT_MS = 2000;
/** What a busy test machine may add to one timeout; well below a second timeout. */
const MARGIN_MS = 1500;
/** "At once": no storage request waited for. */
const FAST_MS = 1000;

const BACKENDS: [string, () => Promise<Emulator>, (e: Emulator) => Record<string, string>][] = [
  ['MinIO (s3)', startMinio, minioEnv],
  ['Azurite (azure)', startAzurite, azuriteEnv],
  ['fake-gcs-server (gcs)', startFakeGcs, fakeGcsEnv],
];

/** kill -STOP, and a moment for every thread of it to stop. */
async function freeze(emulator: Emulator): Promise<void> {
  emulator.signal('SIGSTOP');
  await new Promise((r) => setTimeout(r, 200));
}

async function timed(request: Promise<Response>): Promise<{ res: Response; ms: number }> {
  const started = Date.now();
  const res = await request;
  await res.clone().arrayBuffer(); // the whole answer, not just its headers
  return { res, ms: Date.now() - started };
}

async function isStale(t: Test, url: string, what: string, limitMs: number): Promise<void> {
  const { res, ms } = await timed(fetch(url));
  t.equal(res.status, 200, `${what}: served from the cache`);
  t.equal(res.headers.get('x-cache'), 'STALE', `${what}: X-Cache: STALE`);
  t.match(res.headers.get('warning'), /^110 - "Response is Stale"$/, `${what}: with the Warning`);
  t.ok(ms < limitMs, `${what}: in ${ms} ms (< ${limitMs})`);
}

async function isQuick503(t: Test, request: Promise<Response>, what: string, limitMs: number): Promise<void> {
  const { res, ms } = await timed(request);
  const body = await isError(t, res, 503, 'STORAGE_UNAVAILABLE');
  t.match(body.message, /storage is unavailable/, `${what}: the message names the outage`);
  t.ok(ms < limitMs, `${what}: 503 in ${ms} ms (< ${limitMs})`);
}

for (const [label, startEmulator, envOf] of BACKENDS) {
  t.test(`${label} frozen: one timeout, then stale reads and 503s at once; recovery unprompted`, async (t) => {
    const emulator = await startEmulator();
    t.teardown(() => emulator.dispose());
    const env = { ...envOf(emulator), STORAGE_TIMEOUT: `${TIMEOUT_MS / 1000}s` };
    const server = await spawnServer(t, env);
    t.teardown(() => {
      if (!t.passing()) t.comment(server.output().slice(-4000));
    });
    const url = server.url;
    const archive = tgz([{ path: 'a.txt', body: 'a' }]);
    t.equal((await put(`${url}/models/m`, archive)).status, 201, 'uploaded (and cached)');
    for (const path of ['/models/m', '/models/m/meta', '/models/m/files', '/models/m/files/a.txt']) {
      const res = await fetch(`${url}${path}`);
      await res.arrayBuffer();
      t.not(res.headers.get('x-cache'), 'STALE', `${path}: fresh while the storage answers`);
    }

    await freeze(emulator);
    t.teardown(() => emulator.signal('SIGCONT'));
    await isStale(t, `${url}/models/m`, 'the first cached GET', TIMEOUT_MS + MARGIN_MS);
    for (let i = 0; i < 3; i++) await isStale(t, `${url}/models/m`, `cached GET ${i + 2}`, FAST_MS);
    await isStale(t, `${url}/models/m/meta`, '/meta', FAST_MS);
    const meta = (await (await fetch(`${url}/models/m/meta`)).json()) as Record<string, unknown>;
    t.match(meta, { name: 'm', version: 1 }, '/meta: the cached version');
    t.notOk('aliases' in meta, '/meta: no aliases (only the storage knows them)');
    await isStale(t, `${url}/models/m/files`, '/files', FAST_MS);
    await isStale(t, `${url}/models/m/files/a.txt`, '/files/a.txt', FAST_MS);
    await isQuick503(t, fetch(`${url}/models/uncached`), 'an uncached model', FAST_MS);
    await isQuick503(t, put(`${url}/models/m`, model('m2')), 'a PUT', FAST_MS);
    await isQuick503(t, fetch(`${url}/readyz`), '/readyz', FAST_MS);

    emulator.signal('SIGCONT');
    const thawed = Date.now();
    await until('fresh reads again', async () => {
      const res = await fetch(`${url}/models/m`);
      await res.arrayBuffer();
      return res.status === 200 && res.headers.get('x-cache') !== 'STALE';
    });
    const recoveryMs = Date.now() - thawed;
    t.ok(recoveryMs < TIMEOUT_MS + MARGIN_MS + 1000, `fresh again ${recoveryMs} ms after the thaw`);
    t.equal((await fetch(`${url}/readyz`)).status, 200, '/readyz is 200 again');
    t.equal((await put(`${url}/models/m`, model('m3'))).status, 200, 'uploads work again');

    // A PUT is the first request to meet the frozen storage: its 503 within one timeout.
    await freeze(emulator);
    await isQuick503(t, put(`${url}/models/m`, model('m4')), 'a PUT to a storage just frozen', TIMEOUT_MS + MARGIN_MS);
    emulator.signal('SIGCONT');
    await until('uploads again', async () => (await put(`${url}/models/m`, model('m5'))).status === 200);
    t.match(server.output(), /storage not answering/, 'the outage is logged');
    t.match(server.output(), /storage answering again/, 'and its end');
  });

  t.test(`${label} frozen: each backend call fails within the timeout, retries included`, async (t) => {
    const emulator = await startEmulator();
    t.teardown(() => emulator.dispose());
    const env = { ...envOf(emulator), STORAGE_TIMEOUT: `${TIMEOUT_MS / 1000}s` };
    const storage = await createStorage(loadConfig({ ...env, LOG_LEVEL: 'silent' }), pino({ level: 'silent' }));
    t.teardown(() => storage.close());
    const staged = await storage.stage('m.tar.gz', Readable.from([Buffer.from('x')]));
    // [call, limit]. A commit whose reply is lost reads the key back (write-nonce.ts: did it land?),
    // a second wait. On GCS retry-request retries a request without a response on its own (no
    // option turns that off without its hang, see src/storage/gcs/client.ts): there the registry's
    // outage guard (src/storage/shared/outage.ts) bounds head, and a commit can take longer.
    const one = TIMEOUT_MS + MARGIN_MS;
    const gcs = label.includes('gcs');
    const calls: [string, () => Promise<unknown>, number][] = [
      ['stage', () => storage.stage('n.tar.gz', Readable.from([Buffer.from('y')])), one],
      ['delete', () => storage.delete('m.tar.gz'), one],
      ...(gcs
        ? []
        : ([
            ['head', () => storage.head('m.tar.gz'), one],
            ['commit', () => storage.commit(staged, {}, {}), 2 * TIMEOUT_MS + MARGIN_MS],
          ] as [string, () => Promise<unknown>, number][])),
    ];
    await freeze(emulator);
    t.teardown(() => emulator.signal('SIGCONT'));
    for (const [name, call, limit] of calls) {
      const started = Date.now();
      const err = await call().then(
        () => undefined,
        (e: unknown) => e,
      );
      const ms = Date.now() - started;
      t.type(err, StorageUnavailableError, `${name}: StorageUnavailableError`);
      t.ok(ms < limit, `${name}: failed after ${ms} ms (< ${limit})`);
    }
  });
}
