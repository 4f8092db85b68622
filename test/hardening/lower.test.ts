/**
 * Issue 21 §6, the lower items about requests: a `__proto__` label is refused (it used to vanish
 * silently); a /models request without a token is 401 before any 405 or 404; a body longer than
 * its Content-Length gets the archive's 422, not a 400 for the bytes left over; the /files
 * listing says STALE during a storage outage, as the files do.
 */
import { connect } from 'node:net';
import t from 'tap';
import { model, tgz } from '../helpers/archives.js';
import { isError } from '../helpers/assert.js';
import { minioEnv } from '../helpers/cloud.js';
import { startMinio } from '../helpers/emulators.js';
import { put, start } from '../helpers/server.js';

t.test('a __proto__ label is refused with 400, as a header and as a form field', async (t) => {
  const r = await start(t);
  const res = await put(`${r.url}/models/m`, model('m'), { 'x-model-label-__proto__': 'polluted' });
  const body = await isError(t, res, 400, 'INVALID_LABEL');
  t.match(body.message, /"__proto__"/, 'the message names the key');
  const form = new FormData();
  form.append('label.__proto__', 'polluted');
  form.append('file', new Blob([new Uint8Array(model('m'))]), 'model.tar.gz');
  const posted = await fetch(`${r.url}/models/m`, { method: 'POST', body: form });
  t.equal(posted.status, 400, 'a form field too');
  t.equal((await fetch(`${r.url}/models/m`)).status, 404, 'nothing stored');
  const fine = await put(`${r.url}/models/m`, model('m'), {
    'x-model-label-proto': 'ok',
    'x-model-label-constructor': 'ok',
  });
  t.equal(fine.status, 201, 'other keys, constructor included, still work');
  t.same(((await fine.json()) as { labels: object }).labels, { proto: 'ok', constructor: 'ok' });
});

t.test('without a token, a /models request is 401 before 405 or 404', async (t) => {
  const r = await start(t, { AUTH_TOKENS: 'read:read-token-1234' });
  for (const [method, path] of [
    ['PATCH', '/models/m'],
    ['PUT', '/models'],
    ['DELETE', '/models'],
    ['PATCH', '/models/m/files/x'],
    ['GET', '/models/m/nowhere'],
  ]) {
    const res = await fetch(`${r.url}${path}`, { method: method! });
    await isError(t, res, 401, 'UNAUTHORIZED');
    t.equal(res.headers.get('www-authenticate'), 'Bearer realm="model-registry"', `${method} ${path}: challenge`);
    t.equal(res.headers.get('allow'), null, `${method} ${path}: nothing about the API`);
    const wrong = await fetch(`${r.url}${path}`, {
      method: method!,
      headers: { authorization: 'Bearer wrong-token-1234' },
    });
    t.equal(wrong.status, 401, `${method} ${path}: an unknown token too`);
  }
  const known = await fetch(`${r.url}/models/m`, {
    method: 'PATCH',
    headers: { authorization: 'Bearer read-token-1234' },
  });
  t.equal(known.status, 405, 'with a token, the 405 and its Allow');
  t.ok(known.headers.get('allow'));
  t.equal(
    (await fetch(`${r.url}/nowhere`, { method: 'PATCH' })).status,
    404,
    'outside /models, no token needed to learn of a 404',
  );
});

/** Sends a PUT whose Content-Length is `cut` bytes short of its body; returns the raw answer. */
function shortPut(url: string, body: Buffer, cut: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect(Number(new URL(url).port), '127.0.0.1', () => {
      socket.write(
        `PUT /models/m HTTP/1.1\r\nHost: x\r\nContent-Type: application/gzip\r\nContent-Length: ${body.length - cut}\r\n\r\n`,
      );
      socket.write(body);
    });
    let out = '';
    socket.on('data', (d) => (out += d));
    socket.on('close', () => resolve(out));
    socket.on('error', () => {});
    setTimeout(() => socket.destroy(), 5000);
  });
}

t.test("a short Content-Length: the archive's 422 is answered, then the connection closes", async (t) => {
  const r = await start(t);
  const body = model('m', 300_000);
  for (const cut of [1, 100, 50_000]) {
    const raw = await shortPut(r.url, body, cut);
    t.match(raw, /^HTTP\/1\.1 422 /, `${cut} bytes short: 422, the first and only answer`);
    t.match(raw, /"error":"INVALID_ARCHIVE"/);
    t.match(raw, /\r\nConnection: close\r\n/i, 'and the connection closes');
    t.equal(raw.match(/HTTP\/1\.1 /g)?.length, 1, 'no 400 for the bytes left over');
  }
  t.equal((await fetch(`${r.url}/models/m`)).status, 404, 'nothing stored');
});

t.test('the /files listing says STALE during a storage outage, as the files do', async (t) => {
  const minio = await startMinio();
  t.teardown(() => minio.dispose());
  const r = await start(t, minioEnv(minio));
  t.equal((await put(`${r.url}/models/m`, tgz([{ path: 'a.txt', body: 'a' }]))).status, 201);
  const fresh = await fetch(`${r.url}/models/m/files`);
  t.equal(fresh.status, 200);
  t.equal(fresh.headers.get('x-cache'), null, 'not stale while storage answers');
  t.equal(fresh.headers.get('warning'), null);
  await minio.stop(true);
  const listing = await fetch(`${r.url}/models/m/files`);
  t.equal(listing.status, 200, 'listed from the cache');
  t.equal(listing.headers.get('x-cache'), 'STALE');
  t.match(listing.headers.get('warning'), /^110 - "Response is Stale"$/);
  t.match(await listing.json(), { files: [{ path: 'a.txt' }] });
  const file = await fetch(`${r.url}/models/m/files/a.txt`);
  t.equal(file.headers.get('x-cache'), 'STALE', 'as the file says');
  await minio.restart();
});
