/**
 * The HTTP behaviour of every model route (SPEC §1–§3), written once and run against each
 * backend: test/routes/models*.test.ts call httpSuite() with a harness that supplies the
 * storage settings of a real server (local disk, MinIO, Azurite, ...).
 */
import { Readable } from 'node:stream';
import { gunzipSync, gzipSync } from 'node:zlib';
import type { Test } from 'tap';
import { model, tar, tgz } from './archives.js';
import { isError, sha256, unchanged as unchangedAt } from './assert.js';
import { bytes, put, type Running, start as startWith } from './server.js';

export interface Harness {
  /** Storage settings for one test: a fresh directory / bucket / container. */
  env(t: Test): Promise<Record<string, string>>;
}

async function keys(r: Running, prefix: string): Promise<string[]> {
  const out: string[] = [];
  for await (const info of r.app.registry.storage.list(prefix)) out.push(info.key);
  return out;
}

export function httpSuite(t: Test, harness: Harness): void {
  const start = async (t: Test, env: Record<string, string> = {}) =>
    startWith(t, { ...(await harness.env(t)), ...env });
  const unchanged = (t: Test, r: Running, name: string, previous: Buffer | undefined, version?: number) =>
    unchangedAt(t, r, name, previous, version);

  t.test('upload, download, HEAD and meta', async (t) => {
    const r = await start(t);
    const { url } = r;
    const archive = model('v1');
    const res = await put(`${url}/models/demo`, archive, {
      'x-model-label-git_sha': '1a2b3c',
      'X-Model-Label-Dataset': 'faq-2024',
    });
    t.equal(res.status, 201);
    const created = (await res.json()) as Record<string, unknown>;
    t.match(created, {
      name: 'demo',
      version: 1,
      sha256: sha256(archive),
      size: archive.length,
      storageKey: 'demo.tar.gz',
      labels: { git_sha: '1a2b3c', dataset: 'faq-2024' },
    });
    t.equal(res.headers.get('etag'), `"sha256:${sha256(archive)}"`);

    const get = await fetch(`${url}/models/demo`);
    t.equal(get.status, 200);
    t.ok((await bytes(get)).equals(archive), 'byte-exact download');
    t.equal(get.headers.get('etag'), `"sha256:${sha256(archive)}"`);
    t.equal(get.headers.get('content-length'), String(archive.length));
    t.equal(get.headers.get('content-type'), 'application/gzip');
    t.equal(get.headers.get('content-digest'), `sha-256=:${Buffer.from(sha256(archive), 'hex').toString('base64')}:`);
    t.equal(get.headers.get('x-model-version'), '1');
    t.ok(Date.parse(get.headers.get('last-modified')!) > 0);

    const head = await fetch(`${url}/models/demo`, { method: 'HEAD' });
    t.equal(head.status, 200);
    t.equal(head.headers.get('content-length'), String(archive.length), 'HEAD reports the real length');
    t.equal(head.headers.get('etag'), get.headers.get('etag'));
    t.equal((await bytes(head)).length, 0);

    const meta = (await (await fetch(`${url}/models/demo/meta`)).json()) as Record<string, unknown>;
    t.same(meta, { ...created, aliases: [] }, "/meta: the upload's answer, and the aliases that point to it");
    await isError(t, await fetch(`${url}/models/nope`), 404, 'MODEL_NOT_FOUND');
    await isError(t, await fetch(`${url}/models/nope/meta`), 404, 'MODEL_NOT_FOUND');
    await isError(t, await fetch(`${url}/models/demo?version=7`), 404, 'VERSION_NOT_FOUND');
    await isError(t, await fetch(`${url}/models/demo?version=abc`), 400, 'INVALID_VERSION');
  });

  t.test('replace keeps history per MODEL_HISTORY, oldest dropped', async (t) => {
    const r = await start(t, { MODEL_HISTORY: '2' });
    const { url } = r;
    const archives = [1, 2, 3, 4, 5].map((i) => model(`v${i}`));
    for (const [i, a] of archives.entries()) {
      const res = await put(`${url}/models/m`, a);
      t.equal(res.status, i === 0 ? 201 : 200);
      t.equal(((await res.json()) as { version: number }).version, i + 1);
    }
    const versions = (await (await fetch(`${url}/models/m/versions`)).json()) as {
      current: number;
      versions: { version: number; sha256: string }[];
    };
    t.equal(versions.current, 5);
    t.same(
      versions.versions.map((v) => v.version),
      [5, 4, 3],
      'current + 2 retained, newest first',
    );
    t.same(
      versions.versions.map((v) => v.sha256),
      [4, 3, 2].map((i) => sha256(archives[i]!)),
    );
    // Each kept version has its bytes and its record; the current one too (no other tool writes there).
    t.same(
      await keys(r, '.history/m/'),
      [3, 4, 5].flatMap((v) => [`.history/m/v${v}.json`, `.history/m/v${v}.tar.gz`]),
    );
    t.ok((await bytes(await fetch(`${url}/models/m?version=3`))).equals(archives[2]!), 'older version downloads');
    t.equal((await fetch(`${url}/models/m?version=3`)).headers.get('x-model-version'), '3');
    await isError(t, await fetch(`${url}/models/m?version=2`), 404, 'VERSION_NOT_FOUND');
  });

  t.test("MODEL_HISTORY=0 keeps no older version, only the current one's own copy", async (t) => {
    const r = await start(t, { MODEL_HISTORY: '0' });
    const { url } = r;
    await put(`${url}/models/m`, model('a'));
    await put(`${url}/models/m`, model('b'));
    const versions = (await (await fetch(`${url}/models/m/versions`)).json()) as { versions: unknown[] };
    t.equal(versions.versions.length, 1);
    t.same(await keys(r, '.history/m/'), ['.history/m/v2.json', '.history/m/v2.tar.gz']);
    await isError(t, await fetch(`${url}/models/m?version=1`), 404, 'VERSION_NOT_FOUND');
  });

  t.test('conditional writes: If-None-Match and If-Match', async (t) => {
    const r = await start(t);
    const { url } = r;
    const a = model('a');
    t.equal((await put(`${url}/models/c`, a, { 'if-none-match': '*' })).status, 201);
    await isError(t, await put(`${url}/models/c`, model('b'), { 'if-none-match': '*' }), 412, 'PRECONDITION_FAILED');
    await unchanged(t, r, 'c', a, 1);
    await isError(t, await put(`${url}/models/c`, model('b'), { 'if-match': '"sha256:0000"' }), 412);
    await unchanged(t, r, 'c', a, 1);
    const b = model('b');
    const ok = await put(`${url}/models/c`, b, { 'if-match': `"sha256:${sha256(a)}"` });
    t.equal(ok.status, 200);
    await isError(t, await put(`${url}/models/c`, model('c'), { 'if-match': `"sha256:${sha256(a)}"` }), 412);
    await unchanged(t, r, 'c', b, 2);
    await isError(t, await put(`${url}/models/fresh`, model('c'), { 'if-match': '*' }), 412);
    await unchanged(t, r, 'fresh', undefined);
    await isError(
      t,
      await put(`${url}/models/c`, model('c'), { 'if-match': 'sha256:unquoted' }),
      400,
      'INVALID_HEADER',
    );
    await isError(
      t,
      await put(`${url}/models/c`, model('c'), { 'if-none-match': '"sha256:x"' }),
      400,
      'INVALID_HEADER',
    );
    await unchanged(t, r, 'c', b, 2);
  });

  t.test('conditional and range reads', async (t) => {
    const r = await start(t);
    const { url } = r;
    const a = model('r', 10_000);
    await put(`${url}/models/r`, a);
    const etag = `"sha256:${sha256(a)}"`;
    const notModified = await fetch(`${url}/models/r`, { headers: { 'if-none-match': etag } });
    t.equal(notModified.status, 304);
    t.equal(notModified.headers.get('etag'), etag);
    t.equal((await fetch(`${url}/models/r`, { headers: { 'if-none-match': '"sha256:other"' } })).status, 200);
    t.equal(
      (await fetch(`${url}/models/r`, { headers: { 'if-none-match': `W/${etag}` } })).status,
      304,
      'weak comparison',
    );
    const lm = notModified.headers.get('last-modified')!;
    t.equal((await fetch(`${url}/models/r`, { headers: { 'if-modified-since': lm } })).status, 304);

    const partial = await fetch(`${url}/models/r`, { headers: { range: 'bytes=10-19' } });
    t.equal(partial.status, 206);
    t.equal(partial.headers.get('content-range'), `bytes 10-19/${a.length}`);
    t.equal(partial.headers.get('content-length'), '10');
    t.ok((await bytes(partial)).equals(a.subarray(10, 20)));
    const suffix = await fetch(`${url}/models/r`, { headers: { range: 'bytes=-5' } });
    t.ok((await bytes(suffix)).equals(a.subarray(a.length - 5)));
    const open = await fetch(`${url}/models/r`, { headers: { range: `bytes=${a.length - 3}-` } });
    t.ok((await bytes(open)).equals(a.subarray(a.length - 3)));
    const beyond = await fetch(`${url}/models/r`, { headers: { range: `bytes=${a.length}-` } });
    t.equal(beyond.headers.get('content-range'), `bytes */${a.length}`);
    await isError(t, beyond, 416, 'RANGE_NOT_SATISFIABLE');
    const stale = await fetch(`${url}/models/r`, { headers: { range: 'bytes=0-9', 'if-range': '"sha256:old"' } });
    t.equal(stale.status, 200, 'If-Range mismatch sends the whole archive');
    t.equal((await bytes(stale)).length, a.length);
    const multi = await fetch(`${url}/models/r`, { headers: { range: 'bytes=0-1,5-6' } });
    t.equal(multi.status, 200, 'multiple ranges are ignored');
    await multi.arrayBuffer();
    const headRange = await fetch(`${url}/models/r`, { method: 'HEAD', headers: { range: 'bytes=0-99' } });
    t.equal(headRange.status, 206);
    t.equal(headRange.headers.get('content-length'), '100');
    await isError(
      t,
      await fetch(`${url}/models/r`, { headers: { 'if-none-match': 'garbage' } }),
      400,
      'INVALID_HEADER',
    );
    const digest = `sha-256=:${Buffer.from(sha256(a), 'hex').toString('base64')}:`;
    t.equal(partial.headers.get('repr-digest'), digest, 'a 206 names the whole archive in Repr-Digest');
    t.equal(partial.headers.get('content-digest'), null, 'and no Content-Digest, which would describe the bytes sent');
    t.equal((await fetch(`${url}/models/r`, { method: 'HEAD' })).headers.get('content-digest'), digest);
    const upper = await fetch(`${url}/models/r`, { headers: { range: 'BYTES=0-9' } });
    t.equal(upper.status, 206, 'the range unit is case-insensitive');
    await upper.arrayBuffer();

    // A client pinning the version it reads, e.g. across the ranged parts of one download.
    const pinned = await fetch(`${url}/models/r`, { headers: { range: 'bytes=0-9', 'if-match': etag } });
    t.equal(pinned.status, 206, 'If-Match with the current ETag: the range');
    await pinned.arrayBuffer();
    const lm0 = new Date(lm);
    const b = model('r2', 10_000);
    await put(`${url}/models/r`, b);
    const moved = await fetch(`${url}/models/r`, { headers: { range: 'bytes=10-19', 'if-match': etag } });
    const movedBody = await isError(t, moved, 412, 'PRECONDITION_FAILED');
    t.match(movedBody.message, `"sha256:${sha256(b)}"`, 'the error names the new ETag');
    t.equal(
      (await fetch(`${url}/models/r`, { method: 'HEAD', headers: { 'if-match': etag } })).status,
      412,
      'HEAD too',
    );
    const before = new Date(lm0.getTime() - 5000).toUTCString();
    await isError(
      t,
      await fetch(`${url}/models/r`, { headers: { 'if-unmodified-since': before } }),
      412,
      'PRECONDITION_FAILED',
    );
    const later = await fetch(`${url}/models/r`, { headers: { 'if-match': '*', 'if-unmodified-since': before } });
    t.equal(later.status, 200, 'If-Match: * holds, and If-Unmodified-Since is then not looked at');
    await later.arrayBuffer();
    // A date in If-Range is never a strong validator here (two versions can share a second).
    const byDate = await fetch(`${url}/models/r`, {
      headers: { range: 'bytes=0-9', 'if-range': new Date(Date.now() + 86_400_000).toUTCString() },
    });
    t.equal(byDate.status, 200, 'If-Range with a date sends the whole archive');
    t.ok((await bytes(byDate)).equals(b));
    await isError(t, await fetch(`${url}/models/r?version=9999999999999999`), 400, 'INVALID_VERSION');
  });

  t.test('rollback makes an old version current as a new version', async (t) => {
    const r = await start(t);
    const { url } = r;
    const [a, b] = [model('a'), model('b')];
    await put(`${url}/models/rb`, a);
    await put(`${url}/models/rb`, b);
    const post = (body: unknown, headers: Record<string, string> = {}) =>
      fetch(`${url}/models/rb/rollback`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...headers },
        body: JSON.stringify(body),
      });
    await isError(t, await post({ version: 1 }, { 'if-match': `"sha256:${sha256(a)}"` }), 412);
    const res = await post({ version: 1 });
    t.equal(res.status, 200);
    t.match(await res.json(), { version: 3, sha256: sha256(a) });
    t.ok((await bytes(await fetch(`${url}/models/rb`))).equals(a));
    const versions = (await (await fetch(`${url}/models/rb/versions`)).json()) as {
      versions: { version: number; sha256: string }[];
    };
    t.same(
      versions.versions.map((v) => [v.version, v.sha256]),
      [
        [3, sha256(a)],
        [2, sha256(b)],
        [1, sha256(a)],
      ],
      'history kept',
    );
    const history = await keys(r, '.history/rb/');
    await isError(t, await post({ version: 9 }), 404, 'VERSION_NOT_FOUND');
    await isError(t, await post({ version: 3 }), 409, 'VERSION_IS_CURRENT');
    const quoted = await isError(t, await post({ version: '1' }), 400, 'INVALID_VERSION');
    t.equal(
      quoted.message,
      'Version "\\"1\\"" is not valid: pass a positive integer, e.g. {"version": 3}.',
      'the hint is body syntax, not ?version=',
    );
    t.match(
      (await isError(t, await post({ version: 1.5 }), 400, 'INVALID_VERSION')).message,
      /e\.g\. \{"version": 3\}\.$/,
    );
    t.match(
      (await isError(t, await fetch(`${url}/models/rb?version=x`), 400, 'INVALID_VERSION')).message,
      /e\.g\. \?version=3\.$/,
      'in a query, the query syntax',
    );
    await isError(t, await post({ version: [1] }), 400, 'INVALID_VERSION');
    t.same(await keys(r, '.history/rb/'), history, 'a rollback to a missing version archives nothing');
    await isError(t, await post({ version: 'x' }), 400, 'INVALID_VERSION');
    await isError(t, await post({}), 400, 'INVALID_BODY');
    await isError(
      t,
      await fetch(`${url}/models/none/rollback`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{"version":1}',
      }),
      404,
      'MODEL_NOT_FOUND',
    );
    await unchanged(t, r, 'rb', a, 3);
  });

  t.test('delete one version or the whole model', async (t) => {
    const r = await start(t);
    const { url } = r;
    const [a, b, c] = [model('a'), model('b'), model('c')];
    for (const m of [a, b, c]) await put(`${url}/models/d`, m);
    await isError(t, await fetch(`${url}/models/d?version=3`, { method: 'DELETE' }), 409, 'VERSION_IS_CURRENT');
    // If-Match names what the client means to delete (RFC 9110 §13.1.1): anything else is 412.
    const etagOf = (b: Buffer) => `"sha256:${sha256(b)}"`;
    await isError(
      t,
      await fetch(`${url}/models/d?version=1`, { method: 'DELETE', headers: { 'if-match': etagOf(b) } }),
      412,
      'PRECONDITION_FAILED',
    );
    t.equal(
      (await fetch(`${url}/models/d?version=1`, { method: 'DELETE', headers: { 'if-match': etagOf(a) } })).status,
      204,
    );
    await isError(t, await fetch(`${url}/models/d?version=1`, { method: 'DELETE' }), 404, 'VERSION_NOT_FOUND');
    const versions = (await (await fetch(`${url}/models/d/versions`)).json()) as { versions: { version: number }[] };
    t.same(
      versions.versions.map((v) => v.version),
      [3, 2],
    );
    await isError(
      t,
      await fetch(`${url}/models/d`, { method: 'DELETE', headers: { 'if-match': etagOf(b) } }),
      412,
      'PRECONDITION_FAILED',
    );
    t.same(
      ((await (await fetch(`${url}/models/d/versions`)).json()) as { versions: { version: number }[] }).versions.map(
        (v) => v.version,
      ),
      [3, 2],
      'nothing deleted',
    );
    t.equal((await fetch(`${url}/models/d`, { method: 'DELETE', headers: { 'if-match': etagOf(c) } })).status, 204);
    await isError(t, await fetch(`${url}/models/d`), 404, 'MODEL_NOT_FOUND');
    await isError(
      t,
      await fetch(`${url}/models/d`, { method: 'DELETE', headers: { 'if-match': etagOf(c) } }),
      412,
      'PRECONDITION_FAILED',
    );
    await isError(t, await fetch(`${url}/models/d?version=2`), 404);
    await isError(t, await fetch(`${url}/models/d`, { method: 'DELETE' }), 404, 'MODEL_NOT_FOUND');
    t.notOk((await keys(r, '')).includes('d.tar.gz'));
    t.same(await keys(r, '.history/d/'), ['.history/d/v3.json'], 'history removed but the highest number');
    const { body } = await r.app.registry.storage.get('.history/d/v3.json');
    const chunks: Buffer[] = [];
    for await (const chunk of body) chunks.push(chunk as Buffer);
    t.same(
      JSON.parse(Buffer.concat(chunks).toString()),
      { version: 3, deleted: true },
      'a tombstone: no digest, no labels',
    );
    // A re-created model never gets a number an HTTP cache may still hold for the deleted one.
    t.equal(((await (await put(`${url}/models/d`, a)).json()) as { version: number }).version, 4);
  });

  t.test('list with prefix, limit and cursor', async (t) => {
    const r = await start(t);
    const { url } = r;
    const names = ['alpha', 'beta', 'bravo', 'charlie', 'delta'];
    for (const n of names) await put(`${url}/models/${n}`, model(n, 100));
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const res: Response = await fetch(`${url}/models?limit=2${cursor ? `&cursor=${cursor}` : ''}`);
      const page = (await res.json()) as {
        models: { name: string; version: number; sha256: string; size: number }[];
        nextCursor: string | null;
      };
      t.ok(page.models.length <= 2);
      seen.push(...page.models.map((m) => m.name));
      for (const m of page.models) {
        t.match(m, { size: Number, updatedAt: String });
        // Version and digest come with the listing where the backend lists metadata for free.
        if (r.app.registry.storage.capabilities.listIncludesMetadata)
          t.match(m, { version: 1, sha256: /^[0-9a-f]{64}$/ });
      }
      cursor = page.nextCursor;
      pages++;
    } while (cursor);
    t.same(seen, names, 'every model once, in name order');
    t.equal(pages, 3);
    const b = (await (await fetch(`${url}/models?prefix=b`)).json()) as {
      models: { name: string }[];
      nextCursor: null;
    };
    t.same(
      b.models.map((m) => m.name),
      ['beta', 'bravo'],
    );
    t.equal(b.nextCursor, null);
    await isError(t, await fetch(`${url}/models?limit=0`), 400, 'INVALID_QUERY');
    await isError(t, await fetch(`${url}/models?limit=1001`), 400, 'INVALID_QUERY');
    await isError(t, await fetch(`${url}/models?cursor=%2F%2F`), 400, 'INVALID_QUERY');
    await isError(t, await fetch(`${url}/models?prefix=a//b`), 400, 'INVALID_QUERY');
  });

  t.test('plain tar is gzipped by the server; multipart uploads with labels', async (t) => {
    const r = await start(t);
    const { url } = r;
    const plain = tar([{ path: 'w.bin', body: 'weights' }]);
    const res = await fetch(`${url}/models/plain`, {
      method: 'PUT',
      headers: { 'content-type': 'application/x-tar' },
      body: new Uint8Array(plain),
    });
    t.equal(res.status, 201);
    const stored = await bytes(await fetch(`${url}/models/plain`));
    t.ok(gunzipSync(stored).equals(plain), 'stored as the gzip of the tar');
    t.equal(((await res.json()) as { sha256: string }).sha256, sha256(stored), 'digest is of the stored .tar.gz');

    const archive = model('mp');
    const form = new FormData();
    form.append('label.team', 'nlp');
    form.append('file', new Blob([new Uint8Array(archive)], { type: 'application/gzip' }), 'model.tar.gz');
    const up = await fetch(`${url}/models/mp`, { method: 'PUT', body: form });
    t.equal(up.status, 201);
    t.match(await up.json(), { labels: { team: 'nlp' }, sha256: sha256(archive) });
    t.ok((await bytes(await fetch(`${url}/models/mp`))).equals(archive));

    const form2 = new FormData();
    form2.append('file', new Blob([new Uint8Array(model('post'))]), 'model.tar.gz');
    t.equal(
      (await fetch(`${url}/models/mp`, { method: 'POST', body: form2 })).status,
      200,
      'curl -F (POST) replaces too',
    );

    const empty = new FormData();
    empty.append('label.team', 'nlp');
    await isError(t, await fetch(`${url}/models/nofile`, { method: 'PUT', body: empty }), 400, 'MULTIPART_NO_FILE');
    await isError(
      t,
      await fetch(`${url}/models/json`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: '{}' }),
      415,
      'UNSUPPORTED_MEDIA_TYPE',
    );
    await isError(
      t,
      await fetch(`${url}/models/json`, { method: 'PUT', headers: { 'content-type': 'text/plain' }, body: 'hello' }),
      415,
    );
    await isError(t, await fetch(`${url}/models/json`), 404);
  });

  t.test('client digests are checked', async (t) => {
    const r = await start(t);
    const { url } = r;
    const a = model('a');
    const b64 = Buffer.from(sha256(a), 'hex').toString('base64');
    t.equal((await put(`${url}/models/dg`, a, { 'content-digest': `sha-512=:AAAA:, sha-256=:${b64}:` })).status, 201);
    const b = model('b');
    const body = await isError(
      t,
      await put(`${url}/models/dg`, b, { 'content-digest': `sha-256=:${b64}:` }),
      422,
      'DIGEST_MISMATCH',
    );
    t.match(body.message, /nothing was stored/);
    await unchanged(t, r, 'dg', a, 1);
    await isError(t, await put(`${url}/models/dg`, b, { 'x-checksum-sha256': sha256(a) }), 422, 'DIGEST_MISMATCH');
    await unchanged(t, r, 'dg', a, 1);
    // A backend that stages in place (S3) reserved a number for each refused upload: skipped.
    const skipped = r.app.registry.storage.capabilities.stagesInPlace ? 2 : 0;
    t.equal((await put(`${url}/models/dg`, b, { 'x-checksum-sha256': sha256(b).toUpperCase() })).status, 200);
    await isError(t, await put(`${url}/models/dg`, a, { 'x-checksum-sha256': 'abc' }), 400, 'INVALID_HEADER');
    await isError(t, await put(`${url}/models/dg`, a, { 'content-digest': 'sha-256=abc' }), 400, 'INVALID_HEADER');
    await isError(t, await put(`${url}/models/dg`, a, { 'content-digest': 'sha-256=:YWJj:' }), 400, 'INVALID_HEADER');
    await unchanged(t, r, 'dg', b, 2 + skipped);
  });

  t.test('labels are validated', async (t) => {
    const r = await start(t);
    const { url } = r;
    await isError(
      t,
      await put(`${url}/models/l`, model('a'), { 'x-model-label-big': 'x'.repeat(2100) }),
      400,
      'INVALID_LABEL',
    );
    await isError(t, await put(`${url}/models/l`, model('a'), { 'x-model-label-_bad': 'x' }), 400, 'INVALID_LABEL');
    const many: Record<string, string> = {};
    for (let i = 0; i < 30; i++) many[`x-model-label-k${i}`] = 'v'.repeat(70);
    await isError(t, await put(`${url}/models/l`, model('a'), many), 400, 'INVALID_LABEL');
    await unchanged(t, r, 'l', undefined);
    // UTF-8 in a header arrives as bytes (curl -H 'X-Model-Label-author: José'): kept as UTF-8.
    const utf8 = (text: string) => Buffer.from(text, 'utf8').toString('latin1');
    const res = await put(`${url}/models/u`, model('a'), {
      'x-model-label-author': utf8('José 模型'),
      'x-model-label-place': 'Z\u00fcrich',
    });
    t.equal(res.status, 201);
    const meta = (await (await fetch(`${url}/models/u/meta`)).json()) as { labels: Record<string, string> };
    t.same(
      meta.labels,
      { author: 'José 模型', place: 'Zürich' },
      'UTF-8 decoded; bytes that are not UTF-8 read as Latin-1',
    );
  });

  t.test('bad names are refused before anything is read', async (t) => {
    const r = await start(t);
    const { url } = r;
    for (const name of [
      'x.tar.gz',
      '.hidden',
      '-dash',
      'a%2F%2Fb',
      'a/b/c/d/e',
      '..x',
      'a b',
      'x'.repeat(129),
      '%00x',
      'caf%C3%A9',
    ]) {
      await isError(t, await put(`${url}/models/${name}`, model('a')), 400, 'INVALID_NAME');
      await isError(t, await fetch(`${url}/models/${name}`), 400, 'INVALID_NAME');
    }
    // fetch normalises '..' away, so send the raw path.
    const { request } = await import('node:http');
    const raw = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      // The path as given (a URL string would be normalised to `/`, which redirects to the page).
      const { hostname, port } = new URL(url);
      request({ hostname, port, path: '/models/..', method: 'GET' }, (res) => {
        let body = '';
        res.on('data', (c) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode!, body }));
      })
        .on('error', reject)
        .end();
    });
    t.ok(raw.status === 400 || raw.status === 404, 'a dot-dot segment never reaches a model');
    t.match(JSON.parse(raw.body), { error: /INVALID_NAME|NOT_FOUND/ });
    t.equal((await put(`${url}/models/${'x'.repeat(128)}`, model('a'))).status, 201, '128 characters is fine');
    t.equal((await put(`${url}/models/Model_v1.2-final`, model('a'))).status, 201);
    t.equal((await keys(r, '')).length, 2);
  });

  t.test('invalid and hostile archives are refused and nothing changes', async (t) => {
    const r = await start(t, { MAX_ARCHIVE_ENTRIES: '20', MAX_EXTRACTED_BYTES: '1MiB', MAX_MODEL_BYTES: '512KiB' });
    const { url } = r;
    const good = model('good', 1000);
    await put(`${url}/models/h`, good);
    const gz = (b: Buffer) => gzipSync(b);
    const cases: [string, Buffer, number, RegExp][] = [
      ['not gzip', Buffer.from('just some text, not an archive'), 422, /INVALID_ARCHIVE/],
      ['gzip of non-tar data', gz(Buffer.from('hello world '.repeat(100))), 422, /INVALID_ARCHIVE/],
      ['corrupt gzip', Buffer.concat([Buffer.from([0x1f, 0x8b, 8, 0]), Buffer.alloc(200, 7)]), 422, /INVALID_ARCHIVE/],
      ['truncated gzip', good.subarray(0, good.length - 100), 422, /INVALID_ARCHIVE/],
      [
        'truncated tar inside gzip',
        gz(tar([{ path: 'a', body: 'x'.repeat(5000) }]).subarray(0, 2048)),
        422,
        /INVALID_ARCHIVE/,
      ],
      ['empty body', Buffer.alloc(0), 422, /INVALID_ARCHIVE/],
      ['empty archive', gz(Buffer.alloc(1024)), 422, /INVALID_ARCHIVE/],
      ['zip instead of gzip', Buffer.from(`PK\x03\x04${'x'.repeat(100)}`), 422, /INVALID_ARCHIVE/],
      ['traversal', tgz([{ path: '../evil', body: 'x' }]), 422, /UNSAFE_ARCHIVE/],
      ['nested traversal', tgz([{ path: 'a/../../evil', body: 'x' }]), 422, /UNSAFE_ARCHIVE/],
      [
        'PAX long-name traversal',
        tgz([{ path: `${'d/'.repeat(80)}${'../'.repeat(90)}evil`, body: 'x', pax: true }]),
        422,
        /UNSAFE_ARCHIVE/,
      ],
      ['absolute path', tgz([{ path: '/etc/cron.d/evil', body: 'x' }]), 422, /UNSAFE_ARCHIVE/],
      [
        'symlink escape',
        tgz([{ path: 'link', type: 'SymbolicLink', linkpath: '../../etc/passwd' }]),
        422,
        /UNSAFE_ARCHIVE/,
      ],
      [
        'absolute symlink',
        tgz([{ path: 'link', type: 'SymbolicLink', linkpath: '/etc/passwd' }]),
        422,
        /UNSAFE_ARCHIVE/,
      ],
      [
        'write through symlink',
        tgz([
          { path: 'dir', type: 'SymbolicLink', linkpath: '.' },
          { path: 'dir/x', body: 'x' },
        ]),
        422,
        /UNSAFE_ARCHIVE/,
      ],
      [
        'hard link to a missing entry',
        tgz([
          { path: 'a', body: 'x' },
          { path: 'b', type: 'Link', linkpath: 'c' },
        ]),
        422,
        /UNSAFE_ARCHIVE/,
      ],
      ['character device', tgz([{ path: 'null', type: 'CharacterDevice' }]), 422, /UNSAFE_ARCHIVE/],
      ['block device', tgz([{ path: 'sda', type: 'BlockDevice' }]), 422, /UNSAFE_ARCHIVE/],
      ['FIFO', tgz([{ path: 'pipe', type: 'FIFO' }]), 422, /UNSAFE_ARCHIVE/],
      [
        'too many entries',
        tgz(Array.from({ length: 25 }, (_, i) => ({ path: `f${i}`, body: 'x' }))),
        422,
        /ARCHIVE_LIMIT_EXCEEDED/,
      ],
      ['gzip bomb', gz(tar([{ path: 'zeros', body: Buffer.alloc(2 * 1024 * 1024) }])), 422, /ARCHIVE_LIMIT_EXCEEDED/],
      [
        'declared size beyond the limit',
        gz(tar([{ path: 'big', body: Buffer.alloc(0), size: 5 * 1024 * 1024 }], { endBlocks: false })),
        422,
        /ARCHIVE_LIMIT_EXCEEDED/,
      ],
      ['double gzip', gz(good), 422, /INVALID_ARCHIVE/],
    ];
    for (const [what, body, status, code] of cases) {
      await t.test(what, async (t) => {
        const res = await put(`${url}/models/h`, body);
        await isError(t, res, status, code);
        await unchanged(t, r, 'h', good, 1);
      });
    }
    await t.test('too large (declared)', async (t) => {
      await isError(t, await put(`${url}/models/h`, Buffer.alloc(600 * 1024)), 413, 'MODEL_TOO_LARGE');
      await unchanged(t, r, 'h', good, 1);
    });
    await t.test('too large (streamed without a length)', async (t) => {
      const big = model('big', 700 * 1024);
      const chunks = Array.from(
        { length: Math.ceil(big.length / 65536) },
        (_, i) => new Uint8Array(big.subarray(i * 65536, (i + 1) * 65536)),
      );
      const stream = new ReadableStream({
        pull(c) {
          const next = chunks.shift();
          if (next) c.enqueue(next);
          else c.close();
        },
      });
      const res = await fetch(`${url}/models/h`, {
        method: 'PUT',
        body: stream,
        duplex: 'half',
        headers: { 'content-type': 'application/gzip' },
      } as RequestInit);
      await isError(t, res, 413, 'MODEL_TOO_LARGE');
      await unchanged(t, r, 'h', good, 1);
    });
    await t.test('x-tar body that is really gzip', async (t) => {
      await isError(
        t,
        await put(`${url}/models/h`, good, { 'content-type': 'application/x-tar' }),
        422,
        'INVALID_ARCHIVE',
      );
      await unchanged(t, r, 'h', good, 1);
    });
  });

  t.test('archives put there by another tool are listed and served', async (t) => {
    const r = await start(t);
    const { url } = r;
    const rasa = model('rasa');
    const storage = r.app.registry.storage;
    // Written without metadata, as `aws s3 cp` or Rasa itself would.
    const written = await storage.commit(
      await storage.stage('model_20161111-180000.tar.gz', Readable.from([rasa])),
      {},
      {},
    );
    await storage.commit(await storage.stage('notes.txt', Readable.from([Buffer.from('not a model')])), {}, {});
    const list = (await (await fetch(`${url}/models`)).json()) as { models: { name: string; size: number }[] };
    t.same(
      list.models.map((m) => m.name),
      ['model_20161111-180000'],
    );
    t.equal(list.models[0]!.size, rasa.length);
    const res = await fetch(`${url}/models/model_20161111-180000`);
    t.equal(res.status, 200);
    t.equal(res.headers.get('etag'), `"sha256:${sha256(rasa)}"`, 'digest computed on first read');
    t.ok((await bytes(res)).equals(rasa));
    t.match(await (await fetch(`${url}/models/model_20161111-180000/meta`)).json(), {
      version: 1,
      sha256: sha256(rasa),
    });
    // Read-only to the registry: no metadata added, the object (its token: ETag, generation...) as it was.
    const after = await storage.head('model_20161111-180000.tar.gz');
    t.same(after.metadata, {}, 'nothing written to the object');
    t.equal(after.token, written.token, 'the object is the one the other tool wrote');
    t.same(
      await keys(r, '.history/model_20161111-180000/'),
      ['.history/model_20161111-180000/v1.json'],
      'the registry records it in its own file',
    );
    // Replacing it through the API keeps the foreign version as history v1.
    t.equal((await put(`${url}/models/model_20161111-180000`, model('new'))).status, 200);
    t.ok((await bytes(await fetch(`${url}/models/model_20161111-180000?version=1`))).equals(rasa));
  });

  const json = (body: unknown, method = 'PUT', headers: Record<string, string> = {}): RequestInit => ({
    method,
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
  const etag = (b: Buffer) => `"sha256:${sha256(b)}"`;
  async function aliasesOf(url: string, name: string): Promise<{ alias: string; version: number; etag: string }[]> {
    return (
      (await (await fetch(`${url}/models/${name}/aliases`)).json()) as {
        aliases: { alias: string; version: number; etag: string }[];
      }
    ).aliases;
  }

  t.test('aliases: set, read through name@alias everywhere, move with If-Match, remove', async (t) => {
    const r = await start(t);
    const { url } = r;
    const [a, b] = [model('a'), model('b')];
    await put(`${url}/models/m`, a);
    await put(`${url}/models/m`, b);
    const set = await fetch(`${url}/models/m/aliases/production`, json({ version: 1 }));
    t.equal(set.status, 201, 'a new alias is 201');
    t.equal(set.headers.get('etag'), etag(a), 'the ETag of the version it points to');
    t.match(await set.json(), { name: 'm', alias: 'production', version: 1, sha256: sha256(a), etag: etag(a) });

    const get = await fetch(`${url}/models/m@production`);
    t.equal(get.status, 200);
    t.ok((await bytes(get)).equals(a), 'm@production downloads the aliased version');
    t.equal(get.headers.get('etag'), etag(a));
    t.equal(get.headers.get('x-model-version'), '1');
    t.match(get.headers.get('content-disposition'), /filename="m\.tar\.gz"/);
    const head = await fetch(`${url}/models/m@production`, { method: 'HEAD' });
    t.equal(head.headers.get('etag'), etag(a), 'HEAD too');
    t.equal(head.headers.get('content-length'), String(a.length));
    // The Rasa model server's pull: If-None-Match with what it has.
    t.equal((await fetch(`${url}/models/m@production`, { headers: { 'if-none-match': etag(a) } })).status, 304);
    t.equal(
      (await fetch(`${url}/models/m%40production`, { headers: { 'if-none-match': etag(a) } })).status,
      304,
      '%40 is @',
    );
    t.ok((await bytes(await fetch(`${url}/models/m@latest`))).equals(b), 'm@latest is the current version');
    t.match(await (await fetch(`${url}/models/m@production/meta`)).json(), {
      name: 'm',
      version: 1,
      sha256: sha256(a),
      aliases: ['production'],
    });
    t.match(await (await fetch(`${url}/models/m/meta`)).json(), { version: 2, aliases: [] });
    t.match(await (await fetch(`${url}/models/m@production/files`)).json(), {
      name: 'm',
      version: 1,
      sha256: sha256(a),
    });
    t.same(
      await (await fetch(`${url}/models/m@production/files/model/config.json`)).json(),
      { seed: 'a' },
      '/files/* of the aliased version',
    );
    t.same(await (await fetch(`${url}/models/m@latest/files/model/config.json`)).json(), { seed: 'b' });
    const versions = (await (await fetch(`${url}/models/m/versions`)).json()) as {
      versions: { version: number; aliases: string[] }[];
    };
    t.same(
      versions.versions.map((v) => [v.version, v.aliases]),
      [
        [2, []],
        [1, ['production']],
      ],
      "/versions names each version's aliases",
    );
    t.match(await aliasesOf(url, 'm'), [{ alias: 'production', version: 1, etag: etag(a) }]);
    t.match(await (await fetch(`${url}/models/m/aliases/production`)).json(), { alias: 'production', version: 1 });

    // Compare-and-swap: If-Match names the version the client saw the alias point to.
    await isError(
      t,
      await fetch(`${url}/models/m/aliases/production`, json({ version: 2 }, 'PUT', { 'if-match': etag(b) })),
      412,
      'PRECONDITION_FAILED',
    );
    await isError(
      t,
      await fetch(`${url}/models/m/aliases/production`, json({ version: 2 }, 'PUT', { 'if-none-match': '*' })),
      412,
      'PRECONDITION_FAILED',
    );
    await isError(
      t,
      await fetch(`${url}/models/m/aliases/staging`, json({ version: 2 }, 'PUT', { 'if-match': '*' })),
      412,
      'PRECONDITION_FAILED',
    );
    t.match(await aliasesOf(url, 'm'), [{ alias: 'production', version: 1 }], 'a failed condition changes nothing');
    const moved = await fetch(
      `${url}/models/m/aliases/production`,
      json({ version: 2 }, 'PUT', { 'if-match': etag(a) }),
    );
    t.equal(moved.status, 200, 'a moved alias is 200');
    t.ok((await bytes(await fetch(`${url}/models/m@production`))).equals(b));
    t.equal(
      (await fetch(`${url}/models/m/aliases/staging`, json({ version: 1 }, 'PUT', { 'if-none-match': '*' }))).status,
      201,
      'If-None-Match: * creates',
    );
    t.same(
      (await aliasesOf(url, 'm')).map((x) => [x.alias, x.version]),
      [
        ['production', 2],
        ['staging', 1],
      ],
    );

    const del = await fetch(`${url}/models/m/aliases/staging`, { method: 'DELETE' });
    t.equal(del.status, 204);
    await isError(t, await fetch(`${url}/models/m/aliases/staging`, { method: 'DELETE' }), 404, 'ALIAS_NOT_FOUND');
    await isError(t, await fetch(`${url}/models/m@staging`), 404, 'ALIAS_NOT_FOUND');
    await isError(
      t,
      await fetch(`${url}/models/m/aliases/production`, { method: 'DELETE', headers: { 'if-match': etag(a) } }),
      412,
      'PRECONDITION_FAILED',
    );
    t.same(
      (await aliasesOf(url, 'm')).map((x) => x.alias),
      ['production'],
    );
  });

  t.test('bad alias input is a 4xx naming the fix, and nothing changes', async (t) => {
    const r = await start(t);
    const { url } = r;
    await put(`${url}/models/m`, model('a'));
    await fetch(`${url}/models/m/aliases/prod`, json({ version: 1 }));
    const before = await aliasesOf(url, 'm');
    const reserved = await isError(
      t,
      await fetch(`${url}/models/m/aliases/latest`, json({ version: 1 })),
      400,
      'ALIAS_RESERVED',
    );
    t.match(reserved.message, /latest always means the current version/);
    await isError(t, await fetch(`${url}/models/m/aliases/latest`, { method: 'DELETE' }), 400, 'ALIAS_RESERVED');
    for (const alias of ['v3', 'V12', '1abc', '-x', 'a.b', 'x'.repeat(64), 'caf%C3%A9']) {
      const body = await isError(
        t,
        await fetch(`${url}/models/m/aliases/${alias}`, json({ version: 1 })),
        400,
        'INVALID_ALIAS',
      );
      t.match(body.message, /A-Z a-z 0-9 _ -/, 'the message gives the rule');
    }
    t.equal(
      (await fetch(`${url}/models/m/aliases/${'x'.repeat(63)}`, json({ version: 1 }))).status,
      201,
      '63 characters is fine',
    );
    await fetch(`${url}/models/m/aliases/${'x'.repeat(63)}`, { method: 'DELETE' });
    await isError(t, await fetch(`${url}/models/m/aliases/prod`, json({ version: '1' })), 400, 'INVALID_VERSION');
    await isError(t, await fetch(`${url}/models/m/aliases/prod`, json({ version: 0 })), 400, 'INVALID_VERSION');
    await isError(t, await fetch(`${url}/models/m/aliases/prod`, json({})), 400, 'INVALID_BODY');
    await isError(t, await fetch(`${url}/models/m/aliases/prod`, json([1])), 400, 'INVALID_BODY');
    await isError(t, await fetch(`${url}/models/m/aliases/prod`, json({ version: 9 })), 404, 'VERSION_NOT_FOUND');
    await isError(t, await fetch(`${url}/models/none/aliases/prod`, json({ version: 1 })), 404, 'MODEL_NOT_FOUND');
    await isError(
      t,
      await fetch(`${url}/models/m/aliases/prod`, json({ version: 1 }, 'PUT', { 'if-match': 'unquoted' })),
      400,
      'INVALID_HEADER',
    );
    t.same(await aliasesOf(url, 'm'), before, 'nothing changed');
    await isError(t, await fetch(`${url}/models/m@v1`), 400, 'INVALID_ALIAS');
    await isError(t, await fetch(`${url}/models/m@`), 400, 'INVALID_ALIAS');
    await isError(t, await fetch(`${url}/models/m@a@b`), 400, 'INVALID_ALIAS');
    await isError(t, await fetch(`${url}/models/m@prod?version=1`), 400, 'INVALID_QUERY');
    await isError(t, await fetch(`${url}/models/none@prod`), 404, 'MODEL_NOT_FOUND');
    await isError(t, await fetch(`${url}/models/none/aliases`), 404, 'MODEL_NOT_FOUND');
    await isError(
      t,
      await fetch(`${url}/models/m@prod`, {
        method: 'PUT',
        body: new Uint8Array(model('x')),
        headers: { 'content-type': 'application/gzip' },
      }),
      400,
      'INVALID_NAME',
    );
    t.equal((await fetch(`${url}/models/m/meta`)).status, 200);
  });

  t.test(
    'retention never prunes an aliased version; deleting it is 409 unless ?force=true; deleting the model deletes its aliases',
    async (t) => {
      const r = await start(t, { MODEL_HISTORY: '1' });
      const { url } = r;
      const archives = [1, 2, 3, 4].map((i) => model(`v${i}`));
      await put(`${url}/models/m`, archives[0]!);
      t.equal((await fetch(`${url}/models/m/aliases/prod`, json({ version: 1 }))).status, 201);
      for (const a of archives.slice(1)) await put(`${url}/models/m`, a);
      const versions = (await (await fetch(`${url}/models/m/versions`)).json()) as { versions: { version: number }[] };
      t.same(
        versions.versions.map((v) => v.version),
        [4, 3, 1],
        'v2 pruned, v1 kept for its alias',
      );
      t.ok((await bytes(await fetch(`${url}/models/m@prod`))).equals(archives[0]!));
      const refused = await isError(
        t,
        await fetch(`${url}/models/m?version=1`, { method: 'DELETE' }),
        409,
        'ALIAS_IN_USE',
      );
      t.match(refused.message, /"prod"/, 'the error names the alias');
      t.match(refused.message, /force=true/);
      t.ok((await bytes(await fetch(`${url}/models/m?version=1`))).equals(archives[0]!), 'still there');
      await isError(t, await fetch(`${url}/models/m?version=1&force=yes`, { method: 'DELETE' }), 400, 'INVALID_QUERY');
      t.equal((await fetch(`${url}/models/m?version=1&force=true`, { method: 'DELETE' })).status, 204);
      t.same(await aliasesOf(url, 'm'), [], 'the alias went with it');
      await isError(t, await fetch(`${url}/models/m@prod`), 404, 'ALIAS_NOT_FOUND');
      await isError(t, await fetch(`${url}/models/m?version=1`), 404, 'VERSION_NOT_FOUND');

      // The current version, aliased, stays when it is replaced, even with MODEL_HISTORY=0.
      const z = await start(t, { MODEL_HISTORY: '0' });
      await put(`${z.url}/models/z`, archives[0]!);
      await fetch(`${z.url}/models/z/aliases/champion`, json({ version: 1 }));
      await put(`${z.url}/models/z`, archives[1]!);
      await put(`${z.url}/models/z`, archives[2]!);
      t.same(
        (
          (await (await fetch(`${z.url}/models/z/versions`)).json()) as { versions: { version: number }[] }
        ).versions.map((v) => v.version),
        [3, 1],
      );
      t.ok((await bytes(await fetch(`${z.url}/models/z@champion`))).equals(archives[0]!));

      t.equal((await fetch(`${url}/models/m/aliases/prod`, json({ version: 4 }))).status, 201);
      t.equal((await fetch(`${url}/models/m`, { method: 'DELETE' })).status, 204);
      t.same(await keys(r, '.aliases/'), [], 'the aliases document is gone');
      await put(`${url}/models/m`, archives[0]!);
      t.same(await aliasesOf(url, 'm'), [], 'a model created again under the name has no aliases');
    },
  );

  t.test(
    'aliases live in the storage as .aliases/{name}.json: a second process on the same storage sees them',
    async (t) => {
      const env = await harness.env(t);
      const r = await startWith(t, env);
      await put(`${r.url}/models/m`, model('a'));
      await fetch(`${r.url}/models/m/aliases/prod`, json({ version: 1 }));
      t.same(await keys(r, '.aliases/'), ['.aliases/m.json']);
      const { body } = await r.app.registry.storage.get('.aliases/m.json');
      const chunks: Buffer[] = [];
      for await (const chunk of body) chunks.push(chunk as Buffer);
      t.match(
        JSON.parse(Buffer.concat(chunks).toString()),
        { aliases: { prod: { version: 1 } } },
        'plain JSON: travels with a copy of keys and bytes',
      );
      const other = await startWith(t, env); // its own cache: nothing but the storage is shared
      t.match(await aliasesOf(other.url, 'm'), [{ alias: 'prod', version: 1 }]);
    },
  );

  t.test('?wait= on name@alias wakes when the alias moves, not when a version is uploaded', async (t) => {
    const r = await start(t, { WATCH_POLL_INTERVAL: '60s' });
    const { url } = r;
    const [a, b] = [model('a'), model('b')];
    await put(`${url}/models/w`, a);
    await fetch(`${url}/models/w/aliases/prod`, json({ version: 1 }));
    const started = Date.now();
    let settled = false;
    const waiting = fetch(`${url}/models/w@prod?wait=30`, { headers: { 'if-none-match': etag(a) } }).finally(
      () => (settled = true),
    );
    await new Promise((resolve) => setTimeout(resolve, 300));
    await put(`${url}/models/w`, b);
    await new Promise((resolve) => setTimeout(resolve, 500));
    t.notOk(settled, 'an upload does not wake a watcher of the alias');
    t.equal((await fetch(`${url}/models/w/aliases/prod`, json({ version: 2 }))).status, 200);
    const res = await waiting;
    t.equal(res.status, 200, 'woken by the move');
    t.ok((await bytes(res)).equals(b), 'with the version the alias points to now');
    t.ok(Date.now() - started < 10_000, 'at once, not at the next poll (60 s)');
    // Removing the alias wakes too.
    const gone = fetch(`${url}/models/w@prod?wait=30`, { headers: { 'if-none-match': etag(b) } });
    await new Promise((resolve) => setTimeout(resolve, 300));
    await fetch(`${url}/models/w/aliases/prod`, { method: 'DELETE' });
    await isError(t, await gone, 404, 'ALIAS_NOT_FOUND');
  });

  t.test('search: GET /models filters by labels (ANDed) and alias, sorts by name or updatedAt', async (t) => {
    const r = await start(t);
    const { url } = r;
    const list = async (query: string) => {
      const res = await fetch(`${url}/models?${query}`);
      t.equal(res.status, 200, query);
      return (await res.json()) as {
        models: {
          name: string;
          version: number;
          size: number;
          updatedAt: string;
          labels: Record<string, string>;
          aliases: Record<string, number>;
        }[];
        nextCursor: string | null;
      };
    };
    const names = async (query: string) => (await list(query)).models.map((m) => m.name);
    const archives = { a: model('a'), b: model('b'), c: model('c') };
    await put(`${url}/models/a`, archives.a, { 'x-model-label-team': 'nlp' });
    await new Promise((resolve) => setTimeout(resolve, 10));
    await put(`${url}/models/b`, archives.b, { 'x-model-label-team': 'nlp', 'x-model-label-stage': 'beta' });
    await new Promise((resolve) => setTimeout(resolve, 10));
    await put(`${url}/models/c`, archives.c, { 'x-model-label-team': 'cv' });
    await fetch(`${url}/models/b/aliases/production`, json({ version: 1 }));
    await fetch(`${url}/models/c/aliases/production`, json({ version: 1 }));
    await fetch(`${url}/models/c/aliases/staging`, json({ version: 1 }));

    const all = await list('');
    t.same(
      all.models.map((m) => m.name),
      ['a', 'b', 'c'],
      'by name by default',
    );
    t.match(
      all.models[2],
      {
        name: 'c',
        version: 1,
        size: archives.c.length,
        labels: { team: 'cv' },
        aliases: { production: 1, staging: 1 },
      },
      'each entry: version, size, labels, aliases',
    );
    t.ok(Date.parse(all.models[2]!.updatedAt) > 0);
    t.same(all.models[0]!.aliases, {});
    t.same(await names('label.team=nlp'), ['a', 'b']);
    t.same(await names('label.team=nlp&label.stage=beta'), ['b'], 'labels are ANDed');
    t.same(await names('label.team=ml'), []);
    t.same(await names('alias=production'), ['b', 'c']);
    t.same(await names('alias=staging&label.team=cv'), ['c']);
    t.same(await names('alias=production&label.team=nlp'), ['b']);
    t.same(await names('alias=canary'), []);
    t.same(await names('sort=updatedAt'), ['c', 'b', 'a'], 'newest first');
    await put(`${url}/models/a`, model('a2'), { 'x-model-label-team': 'nlp' });
    t.same(await names('sort=updatedAt'), ['a', 'c', 'b'], 'a new version moves a model up');
    t.same(await names('sort=updatedAt&label.team=nlp'), ['a', 'b']);

    // Pages, with filters and with either sort.
    const first = await list('label.team=nlp&limit=1');
    t.same(
      first.models.map((m) => m.name),
      ['a'],
    );
    const second = await list(`label.team=nlp&limit=1&cursor=${first.nextCursor}`);
    t.same(
      second.models.map((m) => m.name),
      ['b'],
    );
    t.equal(second.nextCursor, null, 'no page after the last match');
    const byTime: string[] = [];
    let cursor: string | null = null;
    do {
      const page = await list(`sort=updatedAt&limit=2${cursor ? `&cursor=${cursor}` : ''}`);
      byTime.push(...page.models.map((m) => m.name));
      cursor = page.nextCursor;
    } while (cursor);
    t.same(byTime, ['a', 'c', 'b'], 'updatedAt pages');
    t.same(await names('prefix=b&alias=production'), ['b']);

    await isError(t, await fetch(`${url}/models?sort=size`), 400, 'INVALID_QUERY');
    await isError(t, await fetch(`${url}/models?alias=v1`), 400, 'INVALID_QUERY');
    await isError(t, await fetch(`${url}/models?alias=latest`), 400, 'INVALID_QUERY');
    await isError(t, await fetch(`${url}/models?label.Team=x`), 400, 'INVALID_LABEL');
    await isError(t, await fetch(`${url}/models?label.team=a&label.team=b`), 400, 'INVALID_QUERY');
    await isError(t, await fetch(`${url}/models?sort=updatedAt&cursor=${first.nextCursor}`), 400, 'INVALID_QUERY');
  });

  t.test('a client that disconnects mid-upload leaves nothing behind', async (t) => {
    const r = await start(t);
    const { url } = r;
    const good = model('good');
    await put(`${url}/models/dc`, good);
    const { request } = await import('node:http');
    const big = model('big', 2 * 1024 * 1024);
    await new Promise<void>((resolve) => {
      const req = request(`${url}/models/dc`, {
        method: 'PUT',
        headers: { 'content-type': 'application/gzip', 'content-length': big.length },
      });
      req.on('error', () => resolve());
      req.write(big.subarray(0, big.length / 2), () =>
        setTimeout(() => {
          req.destroy();
          resolve();
        }, 100),
      );
    });
    // Give the server a moment to notice and clean up.
    for (let i = 0; i < 100 && (await keys(r, '.uploads/')).some((k) => k.endsWith('.part')); i++) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    await unchanged(t, r, 'dc', good, 1);
  });
}
