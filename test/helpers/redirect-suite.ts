/**
 * Redirect downloads (DOWNLOAD_REDIRECT=true) against one real object store: the same checks on
 * MinIO, fake-gcs-server and Azurite (test/routes/redirect-*.test.ts). What each store can sign
 * into the URL differs (`signs`).
 */
import { createHash } from 'node:crypto';
import { Writable } from 'node:stream';
import type { Test } from 'tap';
import { buildApp, loggerOptions } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';
import { model } from './archives.js';
import { bytes, listening, put, type Running, start, tempDir } from './server.js';

export interface RedirectSuiteOptions {
  /** Storage settings of a fresh bucket / container (no DOWNLOAD_REDIRECT). */
  env: () => Promise<Record<string, string>>;
  /** The response headers the store answers the signed URL with (signed into it). */
  signs: { cacheControl: boolean; contentDisposition: boolean };
  /** The ETag the real store answers the URL with (default: what the emulator sent). */
  storeEtag?: (target: Response, body: Buffer) => string;
}

const b64 = (data: Buffer) => createHash('sha256').update(data).digest('base64');
const hex = (data: Buffer) => createHash('sha256').update(data).digest('hex');

export async function redirected(url: string, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(url, { redirect: 'manual', headers });
}

/** model_registry_download_redirects_total of the app. */
export async function redirectCount(r: Running): Promise<number> {
  const text = await (await fetch(`${r.url}/metrics`)).text();
  return Number(/^model_registry_download_redirects_total (\d+)/m.exec(text)?.[1] ?? Number.NaN);
}

/** Starts the app as start() does, with its log lines (JSON) kept for the test. */
export async function startLogged(
  t: Test,
  env: Record<string, string>,
): Promise<Running & { log: () => { level: number; msg: string }[] }> {
  let text = '';
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      text += chunk.toString();
      done();
    },
  });
  const dir = env.REMOTE_STORAGE ? '' : await tempDir(t);
  const config = loadConfig({ LOCAL_STORAGE_DIR: dir, CACHE_DIR: await tempDir(t, 'mr-cache-'), ...env });
  const app = await buildApp({ config, logger: loggerOptions(config, { stream }) });
  const log = () =>
    text
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { level: number; msg: string });
  return { app, url: await listening(t, app), dir, log };
}

export function redirectSuite(t: Test, o: RedirectSuiteOptions): void {
  const boot = async (t: Test, extra: Record<string, string> = {}) =>
    start(t, { ...(await o.env()), DOWNLOAD_REDIRECT: 'true', ...extra });

  t.test('GET answers 307 to a signed URL of the version; followed, it gives the bytes whole', async (t) => {
    const r = await boot(t);
    const v1 = model('v1 bytes');
    t.equal((await put(`${r.url}/models/m`, v1)).status, 201);
    const res = await redirected(`${r.url}/models/m`);
    t.equal(res.status, 307);
    const location = res.headers.get('location')!;
    t.match(location, /^http:\/\/127\.0\.0\.1:\d+\//, 'to the store');
    t.match(location, /\.history(\/|%2F)m(\/|%2F)v1\.tar\.gz/, 'the immutable history key');
    t.equal(res.headers.get('etag'), `"sha256:${hex(v1)}"`);
    t.equal(res.headers.get('repr-digest'), `sha-256=:${b64(v1)}:`);
    t.equal(res.headers.get('content-digest'), null, 'no Content-Digest: the 307 has no content');
    t.equal(res.headers.get('x-model-version'), '1');
    t.ok(res.headers.get('last-modified'));
    t.equal(res.headers.get('cache-control'), 'no-store', 'never outlives the signature');
    t.equal(res.headers.get('accept-ranges'), null);
    t.equal((await res.arrayBuffer()).byteLength, 0);

    const target = await fetch(location);
    t.equal(target.status, 200);
    const body = await bytes(target);
    t.ok(body.equals(v1), 'byte-exact');
    t.equal(`sha-256=:${b64(body)}:`, res.headers.get('repr-digest'), 'the digest the 307 promised');
    if (o.signs.contentDisposition) {
      t.equal(target.headers.get('content-disposition'), 'attachment; filename="m.tar.gz"');
      t.equal(target.headers.get('content-type'), 'application/gzip');
    }
    if (o.signs.cacheControl) t.equal(target.headers.get('cache-control'), 'public, max-age=31536000, immutable');

    // A client that follows redirects (fetch, aiohttp, curl -L) just gets the archive.
    const followed = await fetch(`${r.url}/models/m`);
    t.equal(followed.status, 200);
    t.ok((await bytes(followed)).equals(v1));
    t.equal(await redirectCount(r), 2, 'model_registry_download_redirects_total');
  });

  t.test('a replace after the 307 and before it is followed: the old version, whole', async (t) => {
    const r = await boot(t);
    const v1 = model('first', 64 * 1024);
    t.equal((await put(`${r.url}/models/m`, v1)).status, 201);
    const res = await redirected(`${r.url}/models/m`);
    t.equal(res.status, 307);
    t.equal((await put(`${r.url}/models/m`, model('second', 64 * 1024))).status, 200);
    const target = await fetch(res.headers.get('location')!);
    t.equal(target.status, 200);
    t.ok((await bytes(target)).equals(v1), 'v1, byte-exact, though v2 is current');
    const now = await redirected(`${r.url}/models/m`);
    t.match(now.headers.get('location'), /v2\.tar\.gz/, 'the moving name now points at v2');
  });

  t.test('the registry answers without a redirect: 304, Range, HEAD, ?redirect=false', async (t) => {
    const r = await boot(t);
    const v1 = model('direct', 32 * 1024);
    await put(`${r.url}/models/m`, v1);
    const etag = `"sha256:${hex(v1)}"`;

    const nm = await redirected(`${r.url}/models/m`, { 'if-none-match': etag });
    t.equal(nm.status, 304, 'If-None-Match: 304, as Rasa pulls');
    t.equal(nm.headers.get('location'), null);
    t.equal(nm.headers.get('etag'), etag);

    const ranged = await redirected(`${r.url}/models/m`, { range: 'bytes=10-19' });
    t.equal(ranged.status, 206, 'Range: served directly');
    t.ok((await bytes(ranged)).equals(v1.subarray(10, 20)));

    const head = await fetch(`${r.url}/models/m`, { method: 'HEAD', redirect: 'manual' });
    t.equal(head.status, 200, 'HEAD: direct');
    t.equal(head.headers.get('content-length'), String(v1.length));

    const direct = await redirected(`${r.url}/models/m?redirect=false`);
    t.equal(direct.status, 200, '?redirect=false');
    t.ok((await bytes(direct)).equals(v1));
    t.equal(direct.headers.get('content-digest'), `sha-256=:${b64(v1)}:`);

    const bad = await redirected(`${r.url}/models/m?redirect=maybe`);
    t.equal(bad.status, 400);
    t.match(((await bad.json()) as { message: string }).message, /redirect must be true or false/);

    const wrong = await redirected(`${r.url}/models/m`, { 'if-match': '"sha256:00"' });
    t.equal(wrong.status, 412, 'a failed If-Match is the registry’s 412, not a redirect');
    t.equal(await redirectCount(r), 0, 'none of these was a redirect');
  });

  t.test('If-None-Match with the store’s ETag (a client that followed a redirect keeps it): 304', async (t) => {
    const r = await boot(t);
    const v1 = model('fingerprint');
    await put(`${r.url}/models/m`, v1);
    const target = await fetch((await redirected(`${r.url}/models/m`)).headers.get('location')!);
    const body = await bytes(target);
    const storeEtag = o.storeEtag ? o.storeEtag(target, body) : target.headers.get('etag')!;
    t.ok(storeEtag, `the store's ETag: ${storeEtag}`);
    const same = await redirected(`${r.url}/models/m`, { 'if-none-match': storeEtag });
    t.equal(same.status, 304, 'those bytes are still current');
    t.equal(same.headers.get('etag'), `"sha256:${hex(v1)}"`, 'the version’s own ETag');
    t.equal(same.headers.get('location'), null);
    await put(`${r.url}/models/m`, model('replaced'));
    const moved = await redirected(`${r.url}/models/m`, { 'if-none-match': storeEtag });
    t.equal(moved.status, 307, 'replaced: a redirect to the new version');
    t.match(moved.headers.get('location'), /v2\.tar\.gz/);
    t.equal(await redirectCount(r), 2, 'the 304 was no redirect');
    // A long poll with it waits while those bytes are current, then wakes with the next version.
    const began = Date.now();
    const current = (await redirected(`${r.url}/models/m`)).headers.get('location')!;
    const v2 = await fetch(current);
    const v2Etag = o.storeEtag ? o.storeEtag(v2, await bytes(v2)) : v2.headers.get('etag')!;
    const held = await redirected(`${r.url}/models/m?wait=1`, { 'if-none-match': v2Etag });
    t.equal(held.status, 304);
    t.ok(Date.now() - began >= 900, 'held for ?wait=1');
    const waking = redirected(`${r.url}/models/m?wait=30`, { 'if-none-match': v2Etag });
    await new Promise((resolve) => setTimeout(resolve, 300));
    await put(`${r.url}/models/m`, model('third'));
    const woke = await waking;
    t.equal(woke.status, 307, 'woken by the replace');
    t.match(woke.headers.get('location'), /v3\.tar\.gz/);
  });

  t.test('?version=N and name@alias redirect to that version’s bytes', async (t) => {
    const r = await boot(t);
    const v1 = model('one');
    const v2 = model('two');
    await put(`${r.url}/models/m`, v1);
    await put(`${r.url}/models/m`, v2);
    const alias = await fetch(`${r.url}/models/m/aliases/production`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ version: 1 }),
    });
    t.equal(alias.status, 201);

    for (const [path, expected, version] of [
      ['m?version=1', v1, '1'],
      ['m@production', v1, '1'],
      ['m@latest', v2, '2'],
    ] as const) {
      const res = await redirected(`${r.url}/models/${path}`);
      t.equal(res.status, 307, path);
      t.equal(res.headers.get('x-model-version'), version, `${path}: its version`);
      t.equal(res.headers.get('etag'), `"sha256:${hex(expected)}"`);
      t.equal(res.headers.get('cache-control'), 'no-store');
      const target = await fetch(res.headers.get('location')!);
      t.ok((await bytes(target)).equals(expected), `${path}: its bytes`);
    }
    // Rasa follows the alias with its fingerprint: 304, no redirect.
    const same = await redirected(`${r.url}/models/m@production`, { 'if-none-match': `"sha256:${hex(v1)}"` });
    t.equal(same.status, 304);
  });

  t.test('an object another tool wrote has no immutable copy: served directly', async (t) => {
    const r = await boot(t);
    const storage = r.app.registry.storage;
    const foreign = model('written by another tool');
    const { Readable } = await import('node:stream');
    const staged = await storage.stage('other.tar.gz', Readable.from([foreign]));
    await storage.commit(staged, {}, {});
    const res = await redirected(`${r.url}/models/other`);
    t.equal(res.status, 200, 'no 307');
    t.ok((await bytes(res)).equals(foreign));
    // Once the registry publishes over it, the new version has its copy in history.
    await put(`${r.url}/models/other`, model('ours'));
    t.equal((await redirected(`${r.url}/models/other`)).status, 307);
  });

  t.test('STORAGE_PREFIX: the URL names the prefixed key', async (t) => {
    const r = await boot(t, { STORAGE_PREFIX: 'team/registry/' });
    const v1 = model('prefixed');
    await put(`${r.url}/models/nlp/intent`, v1);
    const res = await redirected(`${r.url}/models/nlp/intent`);
    t.equal(res.status, 307);
    t.match(res.headers.get('location'), /team(\/|%2F)registry(\/|%2F)\.history/);
    t.ok((await bytes(await fetch(res.headers.get('location')!))).equals(v1));
  });

  t.test('MODEL_HISTORY=0: no redirects (a replace would delete what a URL points to), said at start', async (t) => {
    const r = await startLogged(t, { ...(await o.env()), DOWNLOAD_REDIRECT: 'true', MODEL_HISTORY: '0' });
    await put(`${r.url}/models/m`, model('x'));
    t.equal((await redirected(`${r.url}/models/m`)).status, 200);
    const line = r.log().find((l) => /DOWNLOAD_REDIRECT/.test(l.msg));
    t.match(line, { level: 40, msg: /DOWNLOAD_REDIRECT=true is ignored: with MODEL_HISTORY=0 .*MODEL_HISTORY=1/ });
  });

  t.test('redirects on: said at start', async (t) => {
    const r = await startLogged(t, { ...(await o.env()), DOWNLOAD_REDIRECT: 'true' });
    t.match(
      r.log().find((l) => /redirect downloads/.test(l.msg)),
      { level: 30, ttlMs: 300_000 },
    );
  });
}
