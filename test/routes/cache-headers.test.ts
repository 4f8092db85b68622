/**
 * What HTTP caches may keep (src/http/caching.ts): Cache-Control on every /models answer, the
 * ETag and 304 of the JSON routes, no-store on errors, private when AUTH_TOKENS is set.
 */
import t, { type Test } from 'tap';
import { model } from '../helpers/archives.js';
import { put, start } from '../helpers/server.js';

const IMMUTABLE = 'public, max-age=31536000, immutable';

async function twoVersions(t: Test, env: Record<string, string> = {}, headers: Record<string, string> = {}) {
  const running = await start(t, env);
  t.equal((await put(`${running.url}/models/m`, model('a'), headers)).status, 201);
  t.equal((await put(`${running.url}/models/m`, model('b'), headers)).status, 200);
  return running;
}

t.test('?version=N (archive, manifest, file) is immutable; the moving URLs are no-cache with validators', async (t) => {
  const { url } = await twoVersions(t);
  for (const method of ['GET', 'HEAD']) {
    for (const path of ['/models/m?version=1', '/models/m/files/model/config.json?version=1']) {
      const res = await fetch(`${url}${path}`, { method });
      t.equal(res.status, 200, `${method} ${path}`);
      t.equal(res.headers.get('cache-control'), IMMUTABLE, `${method} ${path}`);
      t.ok(res.headers.get('etag') && res.headers.get('last-modified'), `${method} ${path}: validators`);
      await res.arrayBuffer();
    }
  }
  const manifest = await fetch(`${url}/models/m/files?version=1`);
  t.equal(manifest.headers.get('cache-control'), IMMUTABLE, 'the manifest of a numbered version');
  t.match(manifest.headers.get('etag'), /^"json-/);
  await manifest.arrayBuffer();
  t.equal(
    (
      await fetch(`${url}/models/m/aliases/prod`, {
        method: 'PUT',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ version: 2 }),
      })
    ).status,
    201,
  );
  for (const path of [
    '/models/m',
    '/models/m@prod',
    '/models/m@latest',
    '/models/m/files/model/config.json',
    '/models/m@prod/files/model/config.json',
  ]) {
    for (const method of ['GET', 'HEAD']) {
      const res = await fetch(`${url}${path}`, { method });
      t.equal(res.status, 200, `${method} ${path}`);
      t.equal(res.headers.get('cache-control'), 'no-cache', `${method} ${path}: moves`);
      t.match(res.headers.get('etag'), /^"sha256:[0-9a-f]{64}/, `${method} ${path}: ETag`);
      t.ok(res.headers.get('last-modified'), `${method} ${path}: Last-Modified`);
      await res.arrayBuffer();
    }
  }
  const alias = await fetch(`${url}/models/m/aliases/prod`);
  t.equal(alias.headers.get('cache-control'), 'no-cache', 'one alias: moves');
  t.match(alias.headers.get('etag'), /^"sha256:/, "one alias: its ETag stays its version's");
  await alias.arrayBuffer();
});

t.test('the Rasa-style pull is unchanged: If-None-Match with the ETag on /models/:name is 304', async (t) => {
  const { url } = await twoVersions(t);
  const first = await fetch(`${url}/models/m`);
  const etag = first.headers.get('etag')!;
  await first.arrayBuffer();
  const again = await fetch(`${url}/models/m`, { headers: { 'if-none-match': etag } });
  t.equal(again.status, 304);
  t.equal(again.headers.get('etag'), etag);
  t.equal(again.headers.get('cache-control'), 'no-cache');
  t.equal(await again.text(), '');
  const pinned = await fetch(`${url}/models/m?version=2`, { headers: { 'if-none-match': etag } });
  t.equal(pinned.status, 304, 'the same bytes under their number');
  t.equal(pinned.headers.get('cache-control'), IMMUTABLE);
  await put(`${url}/models/m`, model('c'));
  const changed = await fetch(`${url}/models/m`, { headers: { 'if-none-match': etag } });
  t.equal(changed.status, 200, 'a replace is a 200 with the new version');
  t.not(changed.headers.get('etag'), etag);
  await changed.arrayBuffer();
});

t.test('the JSON routes: no-cache, an ETag of the body, If-None-Match gives 304 until the body changes', async (t) => {
  const { url } = await twoVersions(t);
  const paths = [
    '/models',
    '/models?prefix=m&sort=updatedAt',
    '/models/m/meta',
    '/models/m/meta?version=1',
    '/models/m@latest/meta',
    '/models/m/versions',
    '/models/m/aliases',
    '/models/m/files',
  ];
  const tags = new Map<string, string>();
  for (const path of paths) {
    const res = await fetch(`${url}${path}`);
    t.equal(res.status, 200, path);
    t.equal(res.headers.get('cache-control'), 'no-cache', `${path}: Cache-Control`);
    const etag = res.headers.get('etag')!;
    t.match(etag, /^"json-[A-Za-z0-9_-]{32}"$/, `${path}: a strong ETag`);
    t.ok(await res.json());
    tags.set(path, etag);
    for (const sent of [etag, `W/${etag}`, `"other", ${etag}`, '*']) {
      const cond = await fetch(`${url}${path}`, { headers: { 'if-none-match': sent } });
      t.equal(cond.status, 304, `${path}: If-None-Match: ${sent}`);
      t.equal(cond.headers.get('etag'), etag, `${path}: the 304 carries the ETag`);
      t.equal(cond.headers.get('cache-control'), 'no-cache', `${path}: and the Cache-Control`);
      t.equal(await cond.text(), '', `${path}: no body`);
    }
    const head = await fetch(`${url}${path}`, { method: 'HEAD', headers: { 'if-none-match': etag } });
    t.equal(head.status, 304, `HEAD ${path}`);
    const other = await fetch(`${url}${path}`, { headers: { 'if-none-match': '"json-other"' } });
    t.equal(other.status, 200, `${path}: another tag`);
    t.equal(other.headers.get('etag'), etag, `${path}: the same body, the same ETag`);
    await other.arrayBuffer();
  }
  // An alias on version 1 changes every JSON view that shows it (the manifest does not list aliases).
  t.equal(
    (
      await fetch(`${url}/models/m/aliases/prod`, {
        method: 'PUT',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ version: 1 }),
      })
    ).status,
    201,
  );
  for (const path of ['/models', '/models/m/meta?version=1', '/models/m/versions', '/models/m/aliases']) {
    const res = await fetch(`${url}${path}`, { headers: { 'if-none-match': tags.get(path)! } });
    t.equal(res.status, 200, `${path}: changed by the alias`);
    t.not(res.headers.get('etag'), tags.get(path));
    await res.arrayBuffer();
  }
  const manifest = await fetch(`${url}/models/m/files`, { headers: { 'if-none-match': tags.get('/models/m/files')! } });
  t.equal(manifest.status, 304, 'the manifest of the current version did not change');
});

t.test('errors are no-store', async (t) => {
  const { url } = await twoVersions(t);
  const cases: [string, RequestInit, number][] = [
    ['/models/nope', {}, 404],
    ['/models/m?version=9', {}, 404],
    ['/models/m?version=1', { headers: { 'if-match': '"sha256:0"' } }, 412],
    ['/models/m?version=1', { headers: { range: 'bytes=999999999-' } }, 416],
    ['/models/m/meta?version=x', {}, 400],
    ['/models/nope/versions', {}, 404],
    ['/models/m/files/nope?version=1', {}, 404],
    ['/models?limit=0', {}, 400],
    ['/models/m/aliases/nope', {}, 404],
    ['/nowhere', {}, 404],
    ['/models/m', { method: 'PATCH' }, 405],
  ];
  for (const [path, init, status] of cases) {
    const res = await fetch(`${url}${path}`, init);
    t.equal(res.status, status, path);
    t.equal(res.headers.get('cache-control'), 'no-store', `${status} ${path}: no-store`);
    await res.arrayBuffer();
  }
});

t.test('with AUTH_TOKENS: private, so that no shared cache hands an answer to a client without a token', async (t) => {
  const auth = { authorization: 'Bearer w-token-1234' };
  const { url } = await twoVersions(t, { AUTH_TOKENS: 'write:w-token-1234' }, auth);
  const expect: [string, string][] = [
    ['/models/m?version=1', 'private, max-age=31536000, immutable'],
    ['/models/m/files/model/config.json?version=1', 'private, max-age=31536000, immutable'],
    ['/models/m/files?version=1', 'private, max-age=31536000, immutable'],
    ['/models/m', 'private, no-cache'],
    ['/models/m/files', 'private, no-cache'],
    ['/models', 'private, no-cache'],
    ['/models/m/meta', 'private, no-cache'],
    ['/models/m/versions', 'private, no-cache'],
    ['/models/m/aliases', 'private, no-cache'],
  ];
  for (const [path, cacheControl] of expect) {
    const res = await fetch(`${url}${path}`, { headers: auth });
    t.equal(res.status, 200, path);
    t.equal(res.headers.get('cache-control'), cacheControl, path);
    const cond = await fetch(`${url}${path}`, { headers: { ...auth, 'if-none-match': res.headers.get('etag')! } });
    t.equal(cond.status, 304, `${path}: 304`);
    t.equal(cond.headers.get('cache-control'), cacheControl, `${path}: 304`);
    await res.arrayBuffer();
  }
  const denied = await fetch(`${url}/models/m?version=1`);
  t.equal(denied.status, 401);
  t.equal(denied.headers.get('cache-control'), 'no-store');
});
