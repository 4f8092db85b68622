import fs from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { model, tgz } from '../helpers/archives.js';
import { isError, sha256 } from '../helpers/assert.js';
import { httpSuite } from '../helpers/http-suite.js';
import { bytes, put, start, tempDir } from '../helpers/server.js';

httpSuite(t, { env: async (t) => ({ LOCAL_STORAGE_DIR: await tempDir(t) }) });

t.test('local: hostile archives write nothing outside the storage root', async (t) => {
  const parent = await tempDir(t);
  const dir = path.join(parent, 'models');
  const { url } = await start(t, { LOCAL_STORAGE_DIR: dir });
  for (const entry of [
    { path: '../evil', body: 'x' },
    { path: '/tmp/evil-abs', body: 'x' },
    { path: 'l', type: 'SymbolicLink' as const, linkpath: '../../evil' },
  ]) {
    t.equal((await put(`${url}/models/h`, tgz([entry]))).status, 422);
  }
  t.same(await fs.readdir(parent), ['models'], 'nothing beside the root');
  t.same(
    (await fs.readdir(dir)).filter((n) => !n.startsWith('.')),
    [],
    'nothing stored',
  );
  await t.rejects(fs.access('/tmp/evil-abs'));
});

t.test('local: the folder has the bucket layout', async (t) => {
  const { url, dir } = await start(t);
  await put(`${url}/models/m`, model('a'));
  await put(`${url}/models/m`, model('b'));
  t.ok((await fs.stat(path.join(dir, 'm.tar.gz'))).isFile());
  t.ok((await fs.stat(path.join(dir, '.history', 'm', 'v1.tar.gz'))).isFile());
});

t.test(
  'a method a path does not serve: 405 with Allow (as S3 and registries answer); an unknown path: 404',
  async (t) => {
    const { url, dir } = await start(t);
    const patch = await fetch(`${url}/models/m`, { method: 'PATCH', body: new Uint8Array(model('x')) });
    const body = await isError(t, patch, 405, 'METHOD_NOT_ALLOWED');
    t.equal(patch.headers.get('allow'), 'DELETE, GET, HEAD, POST, PUT');
    t.match(body.message, /PATCH is not allowed on \/models\/m: use DELETE, GET, HEAD, POST, PUT/);
    t.same(
      (await fs.readdir(dir)).filter((n) => !n.startsWith('.')),
      [],
      'nothing stored',
    );
    const files = await fetch(`${url}/models/m/files/a/b.txt`, { method: 'DELETE' });
    await isError(t, files, 405, 'METHOD_NOT_ALLOWED');
    t.equal(files.headers.get('allow'), 'GET, HEAD');
    const rollback = await fetch(`${url}/models/m/rollback?x=1`, { method: 'GET' });
    await isError(t, rollback, 405, 'METHOD_NOT_ALLOWED');
    t.equal(rollback.headers.get('allow'), 'POST');
    t.equal((await fetch(`${url}/healthz`, { method: 'PUT' })).headers.get('allow'), 'GET, HEAD');
    await isError(t, await fetch(`${url}/nope`), 404, 'NOT_FOUND');
    await isError(t, await fetch(`${url}/models/m/meta/nope`, { method: 'PUT' }), 404, 'NOT_FOUND'); // (/models/m/nope is the model m/nope)
    t.equal((await fetch(`${url}/models/m`)).status, 404, 'the model was not created');
  },
);

t.test(
  'keys that are not addressable models (x.tar.gz.tar.gz, placed by another tool) are not listed, so every cursor is one the server accepts',
  async (t) => {
    const { url, dir } = await start(t);
    await fs.writeFile(path.join(dir, 'm1.tar.gz.tar.gz'), model('odd'));
    for (const name of ['m0', 'm2']) t.equal((await put(`${url}/models/${name}`, model(name))).status, 201);
    const first = (await (await fetch(`${url}/models?limit=1`)).json()) as {
      models: { name: string }[];
      nextCursor: string;
    };
    t.same(
      first.models.map((m) => m.name),
      ['m0'],
    );
    const second = await fetch(`${url}/models?limit=1&cursor=${first.nextCursor}`);
    t.equal(second.status, 200);
    const page = (await second.json()) as { models: { name: string }[]; nextCursor: string | null };
    t.same(
      page.models.map((m) => m.name),
      ['m2'],
      'm1.tar.gz is not a model',
    );
    t.equal(page.nextCursor, null);
  },
);

t.test('a model deleted while a replace publishes it: 409, nothing left of either, numbers still rise', async (t) => {
  const { app, url, dir } = await start(t);
  t.equal((await put(`${url}/models/m`, model('v1'))).status, 201);
  const storage = app.registry.storage;
  const copy = storage.copy.bind(storage);
  let deleted = false;
  storage.copy = async (from, to, options) => {
    if (!deleted && to === 'm.tar.gz') {
      deleted = true; // v2 is stored in history; the DELETE lands before it becomes current
      t.equal((await fetch(`${url}/models/m`, { method: 'DELETE' })).status, 204, 'a DELETE lands first');
    }
    return copy(from, to, options);
  };
  const res = await put(`${url}/models/m`, model('v2'));
  t.ok(deleted);
  await isError(t, res, 409, 'CONCURRENT_UPDATE');
  await isError(t, await fetch(`${url}/models/m`), 404, 'MODEL_NOT_FOUND');
  t.same(
    (await fs.readdir(path.join(dir, '.history', 'm'))).filter((n) => n.endsWith('.tar.gz')),
    [],
    'no archive left',
  );
  const v3 = model('v3');
  const again = await put(`${url}/models/m`, v3);
  t.equal(again.status, 201, 'created again');
  t.equal(((await again.json()) as { version: number }).version, 3, 'after every number taken before');
  t.equal(sha256(await bytes(await fetch(`${url}/models/m`))), sha256(v3));
});

t.test(
  'a long poll whose client leaves while the model is still being described ends at once, not after ?wait',
  async (t) => {
    const { app, url } = await start(t);
    const res = await put(`${url}/models/w`, model('w1'));
    const etag = res.headers.get('etag')!;
    const storage = app.registry.storage;
    const head = storage.head.bind(storage);
    storage.head = async (key) => {
      await new Promise((r) => setTimeout(r, 400)); // a slow storage
      return head(key);
    };
    const client = new AbortController();
    const polling = fetch(`${url}/models/w?wait=30`, {
      headers: { 'if-none-match': etag },
      signal: client.signal,
    }).catch(() => 'aborted');
    await new Promise((r) => setTimeout(r, 100));
    client.abort();
    t.equal(await polling, 'aborted');
    const started = Date.now();
    while (app.inflight.size > 0 && Date.now() - started < 5000) await new Promise((r) => setTimeout(r, 50));
    t.equal(app.inflight.size, 0, `the request ended ${Date.now() - started} ms after the client left (wait was 30 s)`);
  },
);

t.test(
  'DELETE with If-Match: a version uploaded after the condition was checked stops the delete before any history goes',
  async (t) => {
    const { app, url } = await start(t);
    for (const v of ['d1', 'd2']) await put(`${url}/models/d`, model(v));
    const etag2 = (await fetch(`${url}/models/d`, { method: 'HEAD' })).headers.get('etag')!;
    const storage = app.registry.storage;
    const head = storage.head.bind(storage);
    let armed = true;
    storage.head = async (key) => {
      const info = await head(key);
      if (armed && key === 'd.tar.gz') {
        armed = false; // the condition was just checked against v2; v3 lands now
        t.equal((await put(`${url}/models/d`, model('d3'))).status, 200);
      }
      return info;
    };
    await isError(
      t,
      await fetch(`${url}/models/d`, { method: 'DELETE', headers: { 'if-match': etag2 } }),
      412,
      'PRECONDITION_FAILED',
    );
    const versions = (await (await fetch(`${url}/models/d/versions`)).json()) as { versions: { version: number }[] };
    t.same(
      versions.versions.map((v) => v.version),
      [3, 2, 1],
      'nothing deleted: not the history either',
    );
  },
);

t.test(
  'aliases across replicas: a long poll on another replica wakes within WATCH_POLL_INTERVAL; racing If-Match moves: exactly one wins',
  async (t) => {
    const dir = await tempDir(t);
    const one = await start(t, { LOCAL_STORAGE_DIR: dir, WATCH_POLL_INTERVAL: '200ms' });
    const two = await start(t, { LOCAL_STORAGE_DIR: dir, WATCH_POLL_INTERVAL: '200ms' });
    const [a, b, c] = [model('a'), model('b'), model('c')];
    for (const m of [a, b, c]) await put(`${one.url}/models/x`, m);
    const setAlias = (url: string, version: number, headers: Record<string, string> = {}) =>
      fetch(`${url}/models/x/aliases/prod`, {
        method: 'PUT',
        headers: { 'content-type': 'application/json', ...headers },
        body: JSON.stringify({ version }),
      });
    t.equal((await setAlias(one.url, 1)).status, 201);
    const etagA = `"sha256:${sha256(a)}"`;
    const started = Date.now();
    const waiting = fetch(`${two.url}/models/x@prod?wait=30`, { headers: { 'if-none-match': etagA } });
    await new Promise((resolve) => setTimeout(resolve, 300));
    t.equal((await setAlias(one.url, 2)).status, 200, 'moved through the other replica');
    const res = await waiting;
    t.equal(res.status, 200);
    t.equal(res.headers.get('x-model-version'), '2');
    t.ok((await bytes(res)).equals(b));
    t.ok(Date.now() - started < 3000, `woken ${Date.now() - started} ms after it began (poll every 200 ms)`);

    // Both replicas saw prod → v2 and move it on that condition, 10 times over: one wins each round.
    for (let round = 0; round < 10; round++) {
      const seen = (await (await fetch(`${one.url}/models/x/aliases/prod`)).json()) as {
        etag: string;
        version: number;
      };
      const targets = seen.version === 3 ? [1, 2] : [3, seen.version === 1 ? 2 : 1];
      const results = await Promise.all([
        setAlias(one.url, targets[0]!, { 'if-match': seen.etag }),
        setAlias(two.url, targets[1]!, { 'if-match': seen.etag }),
      ]);
      const statuses = results.map((r) => r.status).sort();
      t.same(statuses, [200, 412], `round ${round}: one wins, one is told the alias moved`);
      const winner = results.findIndex((r) => r.status === 200);
      const now = (await (await fetch(`${two.url}/models/x/aliases/prod`)).json()) as { version: number };
      t.equal(now.version, targets[winner], 'the alias points where the winner put it');
      await Promise.all(results.map((r) => r.arrayBuffer()));
    }
  },
);

t.test('an alias set while its version is being deleted does not point to nothing', async (t) => {
  const { app, url } = await start(t);
  for (const v of ['a', 'b']) await put(`${url}/models/r`, model(v));
  const storage = app.registry.storage;
  const del = storage.delete.bind(storage);
  let armed = true;
  // The version goes after the alias write (and after the delete read the aliases): setAlias's re-check sees it gone.
  storage.commit = (
    (commit) =>
    async (...args: Parameters<typeof commit>) => {
      const info = await commit(...args);
      if (armed && args[0].key === '.aliases/r.json') {
        armed = false;
        await del('.history/r/v1.tar.gz');
      }
      return info;
    }
  )(storage.commit.bind(storage));
  await isError(
    t,
    await fetch(`${url}/models/r/aliases/prod`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: '{"version":1}',
    }),
    404,
    'VERSION_NOT_FOUND',
  );
  const aliases = (await (await fetch(`${url}/models/r/aliases`)).json()) as { aliases: unknown[] };
  t.same(aliases.aliases, [], 'the alias was taken back');
});

t.test('aliases survive a plain copy of the directory (cp -a: keys and bytes only, no .meta/)', async (t) => {
  const one = await start(t);
  const [a, b] = [model('a'), model('b')];
  await put(`${one.url}/models/p`, a);
  await put(`${one.url}/models/p`, b);
  await fetch(`${one.url}/models/p/aliases/prod`, {
    method: 'PUT',
    headers: { 'content-type': 'application/json' },
    body: '{"version":1}',
  });
  const copy = path.join(await tempDir(t), 'copy');
  await fs.cp(one.dir, copy, {
    recursive: true,
    preserveTimestamps: true,
    filter: (src) => !src.includes(`${path.sep}.meta`),
  });
  const two = await start(t, { LOCAL_STORAGE_DIR: copy });
  const res = await fetch(`${two.url}/models/p@prod`);
  t.equal(res.headers.get('x-model-version'), '1');
  t.ok((await bytes(res)).equals(a));
  t.match(await (await fetch(`${two.url}/models?alias=prod`)).json(), {
    models: [{ name: 'p', aliases: { prod: 1 } }],
  });
});
