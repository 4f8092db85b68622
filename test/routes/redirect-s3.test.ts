/**
 * Redirect downloads on MinIO: the shared suite, the public endpoint (a URL signed for the host
 * clients use), the URL's lifetime, a client with a bearer token, and Rasa's aiohttp pull.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { loadConfig } from '../../src/config.js';
import { model } from '../helpers/archives.js';
import { sha256 } from '../helpers/assert.js';
import { minioEnv } from '../helpers/cloud.js';
import { startMinio } from '../helpers/emulators.js';
import { redirectCount, redirected, redirectSuite, startLogged } from '../helpers/redirect-suite.js';
import { bytes, put, start } from '../helpers/server.js';
import { python } from '../helpers/tools.js';

const minio = await startMinio();
t.teardown(() => minio.dispose());
const env = () => ({ ...minioEnv(minio), DOWNLOAD_REDIRECT: 'true' });

redirectSuite(t, { env: async () => minioEnv(minio), signs: { cacheControl: true, contentDisposition: true } });

t.test('AWS_PUBLIC_ENDPOINT_URL: the URL is signed for the host clients reach', async (t) => {
  // The same MinIO under another name: a URL signed for 127.0.0.1 would fail its signature there.
  const publicUrl = `http://localhost:${minio.port}`;
  const r = await start(t, { ...env(), AWS_PUBLIC_ENDPOINT_URL: publicUrl });
  const v1 = model('public');
  await put(`${r.url}/models/m`, v1);
  const res = await redirected(`${r.url}/models/m`);
  t.equal(res.status, 307);
  const location = res.headers.get('location')!;
  t.ok(location.startsWith(`${publicUrl}/`), location);
  t.notMatch(location, /x-amz-checksum/, 'none of the SDK’s checksum parameters');
  const target = await fetch(location);
  t.equal(target.status, 200, 'the signature holds for the public host');
  t.ok((await bytes(target)).equals(v1));
  // The same query on the internal name is refused: the host is part of what was signed.
  const internal = await fetch(location.replace(publicUrl, minio.url));
  t.equal(internal.status, 403);
});

t.test('DOWNLOAD_REDIRECT_TTL: the URL stops working after it', async (t) => {
  const r = await start(t, { ...env(), DOWNLOAD_REDIRECT_TTL: '1s' });
  await put(`${r.url}/models/m`, model('short-lived'));
  const location = (await redirected(`${r.url}/models/m`)).headers.get('location')!;
  t.match(location, /X-Amz-Expires=1(&|$)/);
  await new Promise((resolve) => setTimeout(resolve, 2500));
  const expired = await fetch(location);
  t.equal(expired.status, 403, 'expired');
  t.match(await expired.text(), /expired/i);
  const fresh = await fetch(`${r.url}/models/m`);
  t.equal(fresh.status, 200, 'a new request gets a new URL');

  const byDefault = await start(t, env());
  await put(`${byDefault.url}/models/m`, model('default'));
  t.match((await redirected(`${byDefault.url}/models/m`)).headers.get('location'), /X-Amz-Expires=300(&|$)/, '5m');
});

t.test('with AUTH_TOKENS: the token opens the redirect, and is not sent on to the store', async (t) => {
  const READ = 'read-token-0123456789';
  const WRITE = 'write-token-0123456789';
  const r = await start(t, { ...env(), AUTH_TOKENS: `read:${READ},write:${WRITE}` });
  const v1 = model('private');
  await put(`${r.url}/models/m`, v1, { authorization: `Bearer ${WRITE}` });
  t.equal((await redirected(`${r.url}/models/m`)).status, 401, 'no token, no URL');
  const res = await redirected(`${r.url}/models/m`, { authorization: `Bearer ${READ}` });
  t.equal(res.status, 307);
  const target = await fetch(res.headers.get('location')!);
  t.equal(target.headers.get('cache-control'), 'private, max-age=31536000, immutable');
  // fetch drops Authorization on a cross-origin redirect (S3 would refuse a second credential).
  const followed = await fetch(`${r.url}/models/m`, { headers: { authorization: `Bearer ${READ}` } });
  t.equal(followed.status, 200);
  t.ok((await bytes(followed)).equals(v1));
});

t.test('Rasa’s pull (aiohttp, which follows redirects) through a redirect, then 304', async (t) => {
  const READ = 'read-token-0123456789';
  const WRITE = 'write-token-0123456789';
  const r = await start(t, { ...env(), AUTH_TOKENS: `read:${READ},write:${WRITE}` });
  const v1 = model('rasa model', 256 * 1024);
  await put(`${r.url}/models/intent`, v1, { authorization: `Bearer ${WRITE}` });
  const out = await mkdtemp(path.join(tmpdir(), 'mr-pull-'));
  t.teardown(() => rm(out, { recursive: true, force: true }));
  const pull = async (fingerprint: string) => {
    const run = await python([
      path.join(import.meta.dirname, '../rasa/pull.py'),
      `${r.url}/models/intent`,
      out,
      fingerprint,
      `Bearer ${READ}`,
    ]);
    t.equal(run.code, 0, run.stderr);
    return JSON.parse(run.stdout) as { status: number; etag: string | null; file: string | null; body?: string };
  };
  const first = await pull('');
  t.equal(first.status, 200, first.body ?? '');
  t.equal(sha256(await readFile(first.file!)), sha256(v1), 'the archive, byte-exact');
  t.equal(await redirectCount(r), 1, 'it came through the redirect');
  // The ETag aiohttp returns (Rasa's next fingerprint) is that of the last answer: the store's.
  t.notMatch(first.etag, /sha256/, `the store's ETag: ${first.etag}`);
  const again = await pull(first.etag!);
  t.equal(again.status, 304, 'an unchanged model: 304 from the registry');
  t.equal(await redirectCount(r), 1, 'no redirect for it');
  const v2 = model('retrained', 256 * 1024);
  await put(`${r.url}/models/intent`, v2, { authorization: `Bearer ${WRITE}` });
  const changed = await pull(first.etag!);
  t.equal(changed.status, 200, 'a new version: pulled through a redirect');
  t.equal(sha256(await readFile(changed.file!)), sha256(v2));
  t.equal((await pull(changed.etag!)).status, 304, 'and kept from then on');
  t.equal(await redirectCount(r), 2);
});

t.test('local storage: DOWNLOAD_REDIRECT=true is ignored (served directly), said at start', async (t) => {
  const r = await startLogged(t, { DOWNLOAD_REDIRECT: 'true' });
  await put(`${r.url}/models/m`, model('local'));
  t.equal((await redirected(`${r.url}/models/m`)).status, 200);
  t.equal(await redirectCount(r), 0);
  t.match(
    r.log().find((l) => /DOWNLOAD_REDIRECT/.test(l.msg)),
    {
      level: 40,
      msg: /DOWNLOAD_REDIRECT=true is ignored: the local storage cannot sign URLs/,
    },
  );
});

t.test('DOWNLOAD_REDIRECT_TTL out of range: one line naming the setting and the range', async (t) => {
  t.throws(() => loadConfig({ DOWNLOAD_REDIRECT_TTL: '8d' }), {
    message: /^DOWNLOAD_REDIRECT_TTL="8d" must be from 1s to 7d/,
  });
  t.throws(() => loadConfig({ DOWNLOAD_REDIRECT: 'sometimes' }), {
    message: /^DOWNLOAD_REDIRECT="sometimes" must be true or false/,
  });
});

t.test('a URL that cannot be signed at request time: served directly, with a warning', async (t) => {
  const r = await startLogged(t, env());
  const v1 = model('sign fails');
  await put(`${r.url}/models/m`, v1);
  // The backend under the wrappers (outage guard, metrics) stops signing after start (expired
  // credentials, say).
  type Layer = { inner?: Layer; signedUrl?: unknown };
  let backend = r.app.registry.storage as unknown as Layer;
  while (backend.inner) backend = backend.inner;
  backend.signedUrl = async () => {
    throw new Error('credentials expired');
  };
  const res = await redirected(`${r.url}/models/m`);
  t.equal(res.status, 200);
  t.ok((await bytes(res)).equals(v1));
  t.match(
    r.log().find((l) => /could not sign/.test(l.msg)),
    { level: 40, model: 'm' },
  );
  t.equal(await redirectCount(r), 0);
});
