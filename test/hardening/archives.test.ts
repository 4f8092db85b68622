/**
 * SPEC §1 under attack: every hostile archive from the generator (test/helpers/hostile.ts) is
 * refused with a 4xx JSON error, on the local backend and on MinIO — on upload, and again on
 * extraction when another tool put it straight into storage. Nothing is stored, the previous
 * version stays intact, and nothing is written outside the storage and cache roots.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import t, { type Test } from 'tap';
import { model } from '../helpers/archives.js';
import { isError, sha256, unchanged } from '../helpers/assert.js';
import { minioEnv } from '../helpers/cloud.js';
import { startMinio } from '../helpers/emulators.js';
import {
  escapes,
  filesUnder,
  gigabyteBomb,
  HOSTILE_LIMITS,
  hostileCatalogue,
  MARKER,
  rawTgz,
} from '../helpers/hostile.js';
import { put, type Running, start, tempDir } from '../helpers/server.js';

const minio = await startMinio();
t.teardown(() => minio.dispose());

const catalogue = hostileCatalogue();
const backends: Record<string, () => Record<string, string>> = {
  local: () => ({}),
  minio: () => minioEnv(minio),
};

/** A sandbox directory holding the storage root (local) and the cache root, and a server on them. */
async function sandboxed(
  t: Test,
  env: Record<string, string>,
): Promise<{ r: Running; sandbox: string; storageDir: string; cacheDir: string }> {
  const sandbox = await tempDir(t, 'mr-hard-');
  const storageDir = path.join(sandbox, 'storage');
  const cacheDir = path.join(sandbox, 'cache');
  await fs.mkdir(storageDir);
  await fs.mkdir(cacheDir);
  const r = await start(t, { ...HOSTILE_LIMITS, LOCAL_STORAGE_DIR: storageDir, CACHE_DIR: cacheDir, ...env });
  return { r, sandbox, storageDir, cacheDir };
}

async function storageKeys(r: Running): Promise<string[]> {
  const out: string[] = [];
  for (const prefix of ['', '.history/', '.uploads/'])
    for await (const info of r.app.registry.storage.list(prefix)) out.push(info.key);
  return out.sort();
}

/** Nothing escaped, the sandbox holds only the two roots, and the cache holds no partial work. */
async function clean(t: Test, sandbox: string, cacheDir: string): Promise<void> {
  t.same(await escapes(sandbox), [], `no file named ${MARKER} anywhere outside the roots (or inside them)`);
  t.same(
    (await fs.readdir(sandbox)).sort(),
    ['cache', 'storage'],
    'nothing created beside the storage and cache roots',
  );
  t.same(await fs.readdir(path.join(cacheDir, 'tmp')), [], 'no partial file left in CACHE_DIR/tmp');
  const trees = await fs.readdir(path.join(cacheDir, 'trees')).catch(() => [] as string[]);
  t.same(
    trees.filter((n) => n.startsWith('tmp-')),
    [],
    'no interrupted extraction left in CACHE_DIR/trees',
  );
}

for (const [backend, env] of Object.entries(backends)) {
  t.test(`${backend}: every hostile upload is refused, nothing stored, nothing escapes`, async (t) => {
    const { r, sandbox, cacheDir } = await sandboxed(t, env());
    const good = model('good', 1000);
    // One model per case, so a case that slips through cannot mask the next one.
    for (const i of catalogue.keys()) t.equal((await put(`${r.url}/models/h${i}`, good)).status, 201);
    t.equal((await put(`${r.url}/models/h`, good)).status, 201);
    const keysBefore = await storageKeys(r);
    for (const [i, c] of catalogue.entries()) {
      await t.test(c.name, async (t) => {
        const res = await put(`${r.url}/models/h${i}`, c.body, { 'content-type': c.contentType ?? 'application/gzip' });
        if (c.bug) {
          // A reported bug: the same checks, run and shown, but as todo until the fix lands.
          t.equal(res.status, c.status, `refused with ${c.status}`, { todo: c.bug });
          await res.arrayBuffer();
          const now = await fetch(`${r.url}/models/h${i}`);
          await now.arrayBuffer();
          t.equal(now.headers.get('x-model-version'), '1', 'the previous version is still current', { todo: c.bug });
          return;
        }
        await isError(t, res, c.status, c.code);
        await unchanged(t, r, `h${i}`, good, 1);
      });
    }
    await t.test('a first upload that is hostile creates no model', async (t) => {
      await isError(t, await put(`${r.url}/models/fresh`, catalogue[0]!.body), 422, 'UNSAFE_ARCHIVE');
      await unchanged(t, r, 'fresh', undefined);
    });
    await t.test('a NUL in a PAX path ends the path: refused, or stored under the harmless prefix only', async (t) => {
      const body = rawTgz([{ path: `ok\0../../${MARKER}`, ustarPath: 'ok', body: 'x', pax: true }]);
      const res = await put(`${r.url}/models/nul`, body);
      if (res.status === 422) {
        await isError(t, res, 422, /^(UNSAFE|INVALID)_ARCHIVE$/);
        return;
      }
      t.equal(res.status, 201);
      await res.arrayBuffer();
      const manifest = (await (await fetch(`${r.url}/models/nul/files`)).json()) as { files: { path: string }[] };
      t.same(
        manifest.files.map((f) => f.path),
        ['ok'],
        'the part after the NUL is never a path',
      );
    });
    await t.test('multipart upload of a hostile archive', async (t) => {
      const form = new FormData();
      form.append('label.team', 'x');
      form.append('file', new Blob([new Uint8Array(catalogue[1]!.body)]), 'model.tar.gz');
      await isError(t, await fetch(`${r.url}/models/h`, { method: 'PUT', body: form }), 422, 'UNSAFE_ARCHIVE');
      await unchanged(t, r, 'h', good, 1);
    });
    // Models of known-bug cases (todo) and the NUL probe may have changed; everything else may not.
    const bugged = new Set(catalogue.flatMap((c, i) => (c.bug ? [`h${i}`] : [])).concat('nul'));
    const owner = (key: string) => /^(?:\.history\/)?([^/]+?)(?:\.tar\.gz|\/.*)$/.exec(key)?.[1] ?? key;
    const untouched = (keys: string[]) => keys.filter((k) => !bugged.has(owner(k)));
    t.same(
      untouched(await storageKeys(r)),
      untouched(keysBefore),
      'the storage holds exactly what it held before the attack',
    );
    await clean(t, sandbox, cacheDir);
  });

  t.test(`${backend}: a 1 GiB gzip bomb (~1 MiB compressed) is stopped at MAX_EXTRACTED_BYTES`, async (t) => {
    const bomb = await gigabyteBomb();
    t.ok(bomb.length < 2 * 2 ** 20, `the bomb is ${bomb.length} bytes compressed for 1 GiB extracted`);
    const { r, sandbox, cacheDir } = await sandboxed(t, { ...env(), MAX_MODEL_BYTES: '4MiB' });
    const good = model('good', 1000);
    await put(`${r.url}/models/b`, good);
    const rss = process.memoryUsage().rss;
    const began = Date.now();
    const res = await put(`${r.url}/models/b`, bomb);
    const elapsed = Date.now() - began;
    await isError(t, res, 422, 'ARCHIVE_LIMIT_EXCEEDED');
    // Inflating the whole gigabyte takes seconds on this machine; stopping at 16 MiB takes ms.
    t.ok(elapsed < 20_000, `refused in ${elapsed} ms`);
    const grown = (process.memoryUsage().rss - rss) / 2 ** 20;
    t.ok(grown < 256, `memory grew by ${grown.toFixed(0)} MiB, not by the extracted size`);
    await unchanged(t, r, 'b', good, 1);
    await clean(t, sandbox, cacheDir);
  });

  t.test(`${backend}: hostile archives placed in storage by another tool are refused on extraction`, async (t) => {
    const { r, sandbox, storageDir, cacheDir } = await sandboxed(t, env());
    const storage = r.app.registry.storage;
    // What the other tool stored is served as a .tar.gz: a plain tar is then simply not gzip.
    const placed = catalogue
      .filter((c) => c.status === 422)
      .map((c) => (c.contentType === 'application/x-tar' ? { ...c, code: /^INVALID_ARCHIVE$/ } : c));
    const bomb = await gigabyteBomb();
    const all = [...placed, { name: '1 GiB gzip bomb', body: bomb, status: 422, code: /^ARCHIVE_LIMIT_EXCEEDED$/ }];
    for (const [i, c] of all.entries()) {
      const key = `foreign${i}.tar.gz`;
      if (backend === 'local') await fs.writeFile(path.join(storageDir, key), c.body);
      else await storage.commit(await storage.stage(key, Readable.from([c.body])), {}, {});
    }
    // A good foreign archive next to them still extracts: the refusals are about the archives.
    const fine = model('fine', 1000);
    if (backend === 'local') await fs.writeFile(path.join(storageDir, 'fine.tar.gz'), fine);
    else await storage.commit(await storage.stage('fine.tar.gz', Readable.from([fine])), {}, {});

    for (const [i, c] of all.entries()) {
      await t.test(c.name, async (t) => {
        const res = await fetch(`${r.url}/models/foreign${i}/files`);
        if ('bug' in c && c.bug) {
          t.equal(res.status, 422, 'the manifest is refused', { todo: c.bug });
          await res.arrayBuffer();
          return;
        }
        t.ok(res.status >= 400 && res.status < 500, `manifest refused with ${res.status}`);
        await isError(t, res, 422, c.code);
        const file = await fetch(`${r.url}/models/foreign${i}/files/${encodeURIComponent(MARKER)}`);
        await isError(t, file, 422, c.code);
        // The archive itself is still the model the other tool stored (SPEC §2: it downloads).
        const raw = await fetch(`${r.url}/models/foreign${i}`);
        t.equal(raw.status, 200, 'the archive itself still downloads as stored');
        t.equal(sha256(Buffer.from(await raw.arrayBuffer())), sha256(c.body));
      });
    }
    const manifest = await fetch(`${r.url}/models/fine/files`);
    t.equal(manifest.status, 200, 'a good foreign archive extracts');
    t.match(await manifest.json(), {
      files: [
        { path: 'model' },
        { path: 'model/config.json' },
        { path: 'model/latest' },
        { path: 'model/weights.bin' },
      ],
    });
    const trees = (await fs.readdir(path.join(cacheDir, 'trees'))).filter((n) => /^[0-9a-f]{64}$/.test(n));
    const bugged = new Set(all.filter((c) => 'bug' in c && c.bug).map((c) => sha256(c.body)));
    t.same(
      trees.filter((d) => !bugged.has(d)),
      [sha256(fine)],
      'the only extracted tree is the good one (known-bug cases aside)',
    );
    const extracted = await filesUnder(path.join(cacheDir, 'trees'));
    t.notOk(
      extracted.some((f) => f.includes(MARKER) && ![...bugged].some((d) => f.includes(d))),
      'no hostile entry was extracted',
    );
    await clean(t, sandbox, cacheDir);
  });
}
