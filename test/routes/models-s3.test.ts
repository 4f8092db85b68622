/** The HTTP suite on MinIO, plus what a storage outage looks like to clients. */
import t from 'tap';
import { model } from '../helpers/archives.js';
import { isError, sha256 } from '../helpers/assert.js';
import { minioEnv } from '../helpers/cloud.js';
import { startMinio } from '../helpers/emulators.js';
import { httpSuite } from '../helpers/http-suite.js';
import { bytes, put, start } from '../helpers/server.js';

const minio = await startMinio();
t.teardown(() => minio.dispose());

httpSuite(t, { env: async () => minioEnv(minio) });

t.test(
  'MinIO stops: 503 with Retry-After within seconds, nothing partial; it recovers without a restart',
  async (t) => {
    const own = await startMinio();
    t.teardown(() => own.dispose());
    // Without write-through and before any read, nothing is cached: the outage is all clients see.
    const r = await start(t, { ...minioEnv(own), CACHE_WRITE_THROUGH: 'false' });
    const v1 = model('v1');
    t.equal((await put(`${r.url}/models/m`, v1)).status, 201);
    await own.stop(true);

    const began = Date.now();
    const get = await fetch(`${r.url}/models/m`);
    await isError(t, get, 503, 'STORAGE_UNAVAILABLE');
    t.ok(Number(get.headers.get('retry-after')) > 0, 'Retry-After');
    t.ok(Date.now() - began < 15_000, `answered in ${Date.now() - began} ms`);
    await isError(t, await put(`${r.url}/models/m`, model('v2')), 503, 'STORAGE_UNAVAILABLE');
    await isError(t, await fetch(`${r.url}/readyz`), 503, 'STORAGE_UNAVAILABLE');
    t.equal((await fetch(`${r.url}/healthz`)).status, 200, 'still alive');

    await own.restart();
    const back = await fetch(`${r.url}/models/m`);
    t.equal(back.status, 200);
    t.equal(sha256(await bytes(back)), sha256(v1), 'the old version, whole');
    t.equal(back.headers.get('x-model-version'), '1', 'the failed upload left no version');
    t.equal((await fetch(`${r.url}/readyz`)).status, 200);
    t.equal((await put(`${r.url}/models/m`, model('v2'))).status, 200, 'writes work again');
  },
);

t.test(
  'labels that S3 cannot carry (2 KB of metadata in all) are refused before the body is read: 413, nothing sent to storage',
  async (t) => {
    const r = await start(t, minioEnv(minio));
    const puts = async () => {
      const text = await (await fetch(`${r.url}/metrics`)).text();
      return [
        ...text.matchAll(/^model_registry_storage_requests_total\{operation="put",outcome="[a-z_]+"\} (\d+)/gm),
      ].reduce((n, m) => n + Number(m[1]), 0);
    };
    const before = await puts();
    const res = await put(`${r.url}/models/big-labels`, model('a'), { 'x-model-label-notes': 'x'.repeat(1900) });
    const body = await isError(t, res, 413, 'METADATA_TOO_LARGE');
    t.match(body.message, /larger than S3 allows \(2048 bytes in all/);
    t.equal(await puts(), before, 'no stage or commit was sent');
    await isError(t, await fetch(`${r.url}/models/big-labels`), 404, 'MODEL_NOT_FOUND');
    // Labels that fit, close to the bound, go through and come back whole.
    const fits = await put(`${r.url}/models/big-labels`, model('a'), { 'x-model-label-notes': 'x'.repeat(1750) });
    t.equal(fits.status, 201);
    t.equal(((await fits.json()) as { labels: { notes: string } }).labels.notes.length, 1750);
  },
);
