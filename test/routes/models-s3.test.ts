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

t.test('MinIO stops: 503 with Retry-After within seconds, nothing partial; it recovers without a restart', async (t) => {
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
});
