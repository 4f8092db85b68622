/**
 * The local cache (SPEC §6), witnessed by the storage-request counter of /metrics: single-flight
 * cold reads, restarts, corruption, bounds, write-through, files, stale-if-error and watches.
 */
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import t, { type Test } from 'tap';
import { LocalStorage } from '../src/storage/local/storage.js';
import type { ReadOptions } from '../src/storage/types.js';
import { model, tgz } from './helpers/archives.js';
import { isError, sha256 } from './helpers/assert.js';
import { minioEnv } from './helpers/cloud.js';
import { startMinio } from './helpers/emulators.js';
import { bytes, put, type Running, start, tempDir } from './helpers/server.js';

/** Storage requests of one operation so far, from /metrics. */
async function storageCount(r: Running, operation: string): Promise<number> {
  const text = await (await fetch(`${r.url}/metrics`)).text();
  let sum = 0;
  for (const m of text.matchAll(
    new RegExp(`^model_registry_storage_requests_total\\{operation="${operation}",outcome="[a-z_]+"\\} (\\d+)`, 'gm'),
  ))
    sum += Number(m[1]);
  return sum;
}
/** Polls until `check` holds (cache bookkeeping finishes just after the response). */
async function eventually(check: () => Promise<boolean>, ms = 3000): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await check()) return true;
    await new Promise((r) => setTimeout(r, 25));
  }
  return false;
}
/** True once a HEAD of the model says HIT: the fill that a GET started has become an entry. */
function cachedSoon(r: Running, name: string): Promise<boolean> {
  return eventually(
    async () => (await fetch(`${r.url}/models/${name}`, { method: 'HEAD' })).headers.get('x-cache') === 'HIT',
  );
}
async function metric(r: Running, name: string): Promise<number> {
  const text = await (await fetch(`${r.url}/metrics`)).text();
  return Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN);
}

/** Two app instances on one storage directory, each with its own cache unless given. */
async function local(t: Test, env: Record<string, string> = {}) {
  const storageDir = await tempDir(t);
  const cacheDir = await tempDir(t, 'mr-cache-');
  const open = (extra: Record<string, string> = {}) =>
    start(t, { LOCAL_STORAGE_DIR: storageDir, CACHE_DIR: cacheDir, CACHE_WRITE_THROUGH: 'false', ...env, ...extra });
  return { storageDir, cacheDir, open };
}

t.test('50 concurrent cold GETs cost one storage read, and all are byte-exact', async (t) => {
  const { open } = await local(t);
  const r = await open();
  const archive = model('cold', 3 * 1024 * 1024);
  await put(`${r.url}/models/m`, archive);
  const before = await storageCount(r, 'get');
  const responses = await Promise.all(Array.from({ length: 50 }, () => fetch(`${r.url}/models/m`)));
  const bodies = await Promise.all(responses.map(bytes));
  t.equal((await storageCount(r, 'get')) - before, 1, 'exactly one storage get');
  t.ok(
    bodies.every((b) => b.equals(archive)),
    'every body byte-exact',
  );
  t.ok(responses.some((res) => res.headers.get('x-cache') === 'MISS'));
  const again = await fetch(`${r.url}/models/m`);
  t.equal(again.headers.get('x-cache'), 'HIT');
  await bytes(again);
  t.equal(
    (await metric(r, 'model_registry_cache_misses_total')) + (await metric(r, 'model_registry_cache_hits_total')),
    51,
    'every read went through the cache',
  );
  t.equal(await metric(r, 'model_registry_cache_bytes'), archive.length);
});

t.test('a cold GET streams before the whole archive is fetched; ranges work on a cold model', async (t) => {
  const { open } = await local(t);
  const r = await open();
  const archive = model('range', 2 * 1024 * 1024);
  await put(`${r.url}/models/m`, archive);
  const res = await fetch(`${r.url}/models/m`, { headers: { range: 'bytes=1000-1999' } });
  t.equal(res.status, 206);
  t.equal(res.headers.get('x-cache'), 'MISS');
  t.ok((await bytes(res)).equals(archive.subarray(1000, 2000)));
  t.ok((await bytes(await fetch(`${r.url}/models/m`))).equals(archive));
});

t.test(
  'a range far past what a cold fill has fetched is read from storage at once (resuming a large download)',
  async (t) => {
    // Whole reads (the fill) hold after their first bytes until released; ranged reads do not.
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    class HeldFill extends LocalStorage {
      override async get(key: string, options?: ReadOptions) {
        const got = await super.get(key, options);
        if (options?.range) return got;
        const body = new PassThrough();
        body.on('close', () => got.body.destroy());
        void released.then(() => got.body.pipe(body));
        return { ...got, body };
      }
    }
    const storage = new HeldFill({ root: await tempDir(t) });
    await storage.init();
    t.teardown(() => storage.close());
    const r = await start(t, { CACHE_WRITE_THROUGH: 'false', MAX_MODEL_BYTES: '1GiB' }, storage);
    const archive = tgz([{ path: 'w.bin', body: randomBytes(96 * 2 ** 20) }]);
    t.equal((await put(`${r.url}/models/big`, archive)).status, 201);
    const start_ = archive.length - 1000;
    const res = await Promise.race([
      fetch(`${r.url}/models/big`, { headers: { range: `bytes=${start_}-` } }),
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error('the range waited for the fill')), 10_000)),
    ]);
    t.equal(res.status, 206);
    t.equal(res.headers.get('x-cache'), 'MISS');
    t.ok((await bytes(res)).equals(archive.subarray(start_)), 'the bytes of the range');
    const near = fetch(`${r.url}/models/big`, { headers: { range: 'bytes=0-999' } });
    await new Promise((resolve) => setTimeout(resolve, 100));
    release();
    t.ok((await bytes(await near)).equals(archive.subarray(0, 1000)), 'a range near the fill follows it');
    t.ok((await bytes(await fetch(`${r.url}/models/big`))).equals(archive), 'and the fill completes');
  },
);

t.test('after a restart a cached model costs no storage read; corrupt or partial entries are refetched', async (t) => {
  const { open, cacheDir } = await local(t);
  const first = await open();
  const a = model('a');
  const b = model('b');
  await put(`${first.url}/models/a`, a);
  await put(`${first.url}/models/b`, b);
  await bytes(await fetch(`${first.url}/models/a`));
  await bytes(await fetch(`${first.url}/models/b`));
  await first.app.close();

  // Corrupt b's entry in place (same size), and leave a fill that a crash interrupted.
  const blob = path.join(cacheDir, 'blobs', `${sha256(b)}.tar.gz`);
  const damaged = Buffer.from(b);
  damaged[100] = damaged[100]! ^ 0xff;
  await new Promise((r) => setTimeout(r, 20));
  await fs.writeFile(blob, damaged);
  await fs.writeFile(path.join(cacheDir, 'tmp', `${sha256(a)}.crashed.part`), a.subarray(0, 100));

  const second = await open();
  t.same(await fs.readdir(path.join(cacheDir, 'tmp')), [], 'interrupted fills are cleared at start');
  const hit = await fetch(`${second.url}/models/a`);
  t.equal(hit.headers.get('x-cache'), 'HIT');
  t.ok((await bytes(hit)).equals(a));
  t.equal(await storageCount(second, 'get'), 0, 'no storage get for a cached model after restart');
  const refetched = await fetch(`${second.url}/models/b`);
  t.equal(refetched.headers.get('x-cache'), 'MISS', 'the corrupt entry was detected');
  t.ok((await bytes(refetched)).equals(b), 'and the right bytes served');
  t.equal(await storageCount(second, 'get'), 1);
});

t.test(
  'the cache stays within CACHE_MAX_BYTES, evicting the least recently used, never what is being read',
  async (t) => {
    // Large enough that socket buffers cannot hold a whole response: the slow reader really is
    // still reading on the server side.
    const size = 8 * 1024 * 1024;
    // No memory tier: these entries must be read from their files.
    const { open, cacheDir } = await local(t, {
      CACHE_MAX_BYTES: String(size * 3 + size / 2),
      CACHE_MEMORY_BYTES: '0',
    });
    const r = await open();
    const archives = Array.from({ length: 6 }, (_, i) => model(`m${i}`, size - 2000));
    for (const [i, a] of archives.entries()) await put(`${r.url}/models/m${i}`, a);
    // A slow reader holds m0 open while the others go through the cache.
    const slow = await fetch(`${r.url}/models/m0`);
    const reader = slow.body!.getReader();
    await reader.read();
    for (let i = 1; i < archives.length; i++) {
      await bytes(await fetch(`${r.url}/models/m${i}`));
      const total = await metric(r, 'model_registry_cache_bytes');
      t.ok(total <= size * 3 + size / 2 + size, `cache bytes ${total} within the bound plus one entry`);
    }
    t.ok(
      await fs.stat(path.join(cacheDir, 'blobs', `${sha256(archives[0]!)}.tar.gz`)),
      'the entry being read was kept',
    );
    let rest = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      rest += value.length;
    }
    t.ok(rest > 0);
    t.ok((await metric(r, 'model_registry_cache_evictions_total')) >= 2, 'entries were evicted while serving');
    const blobs = (await fs.readdir(path.join(cacheDir, 'blobs'))).filter((f) => f.endsWith('.tar.gz'));
    t.notOk(blobs.includes(`${sha256(archives[1]!)}.tar.gz`), 'the least recently used entry went first');
    t.ok(blobs.includes(`${sha256(archives[5]!)}.tar.gz`), 'the newest stayed');
  },
);

t.test('small archives are answered from memory: verified on load, bounded by CACHE_MEMORY_BYTES', async (t) => {
  const budget = 1024 * 1024; // entries up to 128 KiB
  const { open, cacheDir } = await local(t, { CACHE_MEMORY_BYTES: String(budget) });
  const r = await open();
  const memory = () => metric(r, 'model_registry_cache_memory_bytes');
  /** A cold GET, then wait for the fill to become an entry (bookkeeping ends after the response). */
  const fill = async (name: string) => {
    const body = await bytes(await fetch(`${r.url}/models/${name}`));
    t.ok(await cachedSoon(r, name));
    return body;
  };
  const a = model('mem-a', 100 * 1024);
  await put(`${r.url}/models/a`, a);
  t.ok((await fill('a')).equals(a), 'cold GET (fills the disk cache)');
  t.equal(await memory(), 0, 'a fill does not load memory');
  t.ok((await bytes(await fetch(`${r.url}/models/a`))).equals(a), 'first cached GET');
  t.equal(await memory(), a.length, 'the first cached GET loads the archive into memory');

  // From now on the file is not read: damage it in place and the memory copy is still served.
  const blob = path.join(cacheDir, 'blobs', `${sha256(a)}.tar.gz`);
  const damaged = Buffer.from(a);
  damaged[50] = damaged[50]! ^ 0xff;
  await fs.writeFile(blob, damaged);
  const hit = await fetch(`${r.url}/models/a`);
  t.equal(hit.headers.get('x-cache'), 'HIT');
  t.equal(hit.headers.get('content-length'), String(a.length));
  t.ok((await bytes(hit)).equals(a), 'served from the verified memory copy');
  const ranged = await fetch(`${r.url}/models/a`, { headers: { range: 'bytes=10-19' } });
  t.equal(ranged.status, 206);
  t.equal(ranged.headers.get('content-range'), `bytes 10-19/${a.length}`);
  t.ok((await bytes(ranged)).equals(a.subarray(10, 20)), 'a range is a slice of the memory copy');

  // A file damaged before it is loaded is caught by the hash on load and fetched again.
  const b = model('mem-b', 100 * 1024);
  await put(`${r.url}/models/b`, b);
  await fill('b');
  const blobB = path.join(cacheDir, 'blobs', `${sha256(b)}.tar.gz`);
  const damagedB = Buffer.from(b);
  damagedB[70] = damagedB[70]! ^ 0xff;
  await fs.writeFile(blobB, damagedB);
  const gets = await storageCount(r, 'get');
  const refetched = await fetch(`${r.url}/models/b`);
  t.equal(refetched.headers.get('x-cache'), 'MISS', 'the damaged entry was dropped');
  t.ok((await bytes(refetched)).equals(b), 'and the right bytes served');
  t.equal((await storageCount(r, 'get')) - gets, 1, 'fetched again from storage');

  // Archives above 1/8 of the budget stay on disk.
  const big = model('mem-big', 300 * 1024);
  await put(`${r.url}/models/big`, big);
  await fill('big');
  const held = await memory();
  t.ok((await bytes(await fetch(`${r.url}/models/big`))).equals(big));
  t.equal(await memory(), held, 'a large archive is not held in memory');

  // The budget holds: the least recently used copies go first.
  for (let i = 0; i < 12; i++) {
    const m = model(`mem-${i}`, 100 * 1024);
    await put(`${r.url}/models/m${i}`, m);
    await fill(`m${i}`);
    t.ok((await bytes(await fetch(`${r.url}/models/m${i}`))).equals(m));
    t.ok((await memory()) <= budget, `memory ${await memory()} within ${budget}`);
  }
  t.ok((await memory()) > budget - 2 * 110 * 1024, 'the budget is used');
  await fs.writeFile(blob, damaged); // still damaged on disk; a's memory copy was dropped (least recent)
  const dropped = await fetch(`${r.url}/models/a`);
  t.ok(
    (await bytes(dropped)).equals(a),
    'after its memory copy was dropped, a is read again, found damaged, and refetched',
  );
  t.equal(dropped.headers.get('x-cache'), 'MISS');
  t.ok(await cachedSoon(r, 'a'), 'the refetch settles');
});

t.test('entries older than CACHE_TTL expire', async (t) => {
  const { open } = await local(t, { CACHE_TTL: '1s' });
  const r = await open();
  await put(`${r.url}/models/m`, model('ttl'));
  await bytes(await fetch(`${r.url}/models/m`));
  t.ok(await eventually(async () => (await metric(r, 'model_registry_cache_bytes')) > 0), 'cached');
  t.ok(
    await eventually(async () => (await metric(r, 'model_registry_cache_bytes')) === 0, 4000),
    'expired entries are removed without traffic',
  );
});

t.test('write-through: an accepted upload is served from the cache at once', async (t) => {
  const { open } = await local(t, { CACHE_WRITE_THROUGH: 'true' });
  const r = await open();
  const a = model('wt');
  await put(`${r.url}/models/m`, a);
  const res = await fetch(`${r.url}/models/m`);
  t.equal(res.headers.get('x-cache'), 'HIT');
  t.ok((await bytes(res)).equals(a));
  t.equal(await storageCount(r, 'get'), 0);
  await isError(t, await put(`${r.url}/models/m`, Buffer.from('not gzip')), 422);
  t.equal(await metric(r, 'model_registry_cache_bytes'), a.length, 'refused uploads leave nothing in the cache');
});

t.test('write-through on local storage links the stored file into the cache instead of writing it twice', async (t) => {
  const { open, storageDir, cacheDir } = await local(t, { CACHE_WRITE_THROUGH: 'true' });
  const r = await open();
  const a = model('link');
  await put(`${r.url}/models/m`, a);
  const stored = await fs.stat(path.join(storageDir, '.history', 'm', 'v1.tar.gz'));
  const cached = await fs.stat(path.join(cacheDir, 'blobs', `${sha256(a)}.tar.gz`));
  t.equal(cached.ino, stored.ino, 'one inode, two names');
  const root = await fs.stat(path.join(storageDir, 'm.tar.gz'));
  t.not(cached.ino, root.ino, 'never the root file, which other tools may write in place');
  const b = model('link-2');
  await put(`${r.url}/models/m`, b);
  const res = await fetch(`${r.url}/models/m?version=1`);
  t.equal(res.headers.get('x-cache'), 'HIT');
  t.ok((await bytes(res)).equals(a), 'the replaced version is still served whole from the cache');
  t.equal(await storageCount(r, 'get'), 0);
});

t.test('a cached file changed on disk while the server runs is hashed again before it is served', async (t) => {
  const { open, cacheDir } = await local(t, { CACHE_MEMORY_BYTES: '0' });
  const r = await open();
  const a = model('changed');
  await put(`${r.url}/models/m`, a);
  await bytes(await fetch(`${r.url}/models/m`));
  t.ok(await cachedSoon(r, 'm'));
  const hit = await fetch(`${r.url}/models/m`);
  t.equal(hit.headers.get('x-cache'), 'HIT');
  t.ok((await bytes(hit)).equals(a));
  const damaged = Buffer.from(a);
  damaged[200] = damaged[200]! ^ 0xff;
  await new Promise((resolve) => setTimeout(resolve, 20)); // a later mtime
  await fs.writeFile(path.join(cacheDir, 'blobs', `${sha256(a)}.tar.gz`), damaged);
  const gets = await storageCount(r, 'get');
  const res = await fetch(`${r.url}/models/m`);
  t.equal(res.headers.get('x-cache'), 'MISS', 'the changed entry was found wrong and dropped');
  t.ok((await bytes(res)).equals(a), 'the right bytes were served');
  t.equal((await storageCount(r, 'get')) - gets, 1);
  t.ok(await cachedSoon(r, 'm'), 'the refetch settles');
});

t.test(
  'files of an archive damaged or removed in the cache since it was verified are extracted from a fresh copy',
  async (t) => {
    const { open, cacheDir } = await local(t, { CACHE_MEMORY_BYTES: '0' });
    const r = await open();
    const weights = randomBytes(50_000);
    for (const [name, damage] of [
      ['truncated', (file: string) => fs.truncate(file, 1000)],
      ['removed', (file: string) => fs.rm(file)],
    ] as const) {
      const archive = tgz([
        { path: 'config.json', body: JSON.stringify({ name }) },
        { path: 'weights.bin', body: weights },
      ]);
      await put(`${r.url}/models/${name}`, archive);
      await bytes(await fetch(`${r.url}/models/${name}`));
      t.ok(await cachedSoon(r, name), `${name}: cached and verified (not extracted yet)`);
      const gets = await storageCount(r, 'get');
      await damage(path.join(cacheDir, 'blobs', `${sha256(archive)}.tar.gz`));
      const manifest = await fetch(`${r.url}/models/${name}/files`);
      t.equal(manifest.status, 200, `${name}: the manifest is served`);
      t.same(
        ((await manifest.json()) as { files: { path: string }[] }).files.map((f) => f.path),
        ['config.json', 'weights.bin'],
      );
      t.equal(await storageCount(r, 'get'), gets + 1, `${name}: fetched again from storage`);
      const file = await fetch(`${r.url}/models/${name}/files/weights.bin`);
      t.ok((await bytes(file)).equals(weights), `${name}: a file of it, whole`);
    }
  },
);

t.test('files: manifest and single files from the extracted archive', async (t) => {
  const { open } = await local(t);
  const r = await open();
  const weights = Buffer.alloc(10_000, 7);
  const archive = tgz([
    { path: 'model/', type: 'Directory' },
    { path: 'model/config.json', body: '{"labels":3}' },
    { path: 'model/weights.bin', body: weights },
    { path: 'model/latest', type: 'SymbolicLink', linkpath: 'weights.bin' },
    { path: 'model/empty.txt', body: '' },
  ]);
  await put(`${r.url}/models/f`, archive);
  await put(`${r.url}/models/f`, tgz([{ path: 'model/config.json', body: '{"labels":4}' }]));
  const manifest = (await (await fetch(`${r.url}/models/f/files?version=1`)).json()) as {
    version: number;
    files: unknown[];
  };
  t.equal(manifest.version, 1);
  t.same(manifest.files, [
    { path: 'model', size: 0, type: 'directory' },
    { path: 'model/config.json', size: 12, type: 'file', sha256: sha256(Buffer.from('{"labels":3}')) },
    { path: 'model/empty.txt', size: 0, type: 'file', sha256: sha256(Buffer.alloc(0)) },
    { path: 'model/latest', size: 0, type: 'symlink', target: 'weights.bin' },
    { path: 'model/weights.bin', size: 10_000, type: 'file', sha256: sha256(weights) },
  ]);
  const config = await fetch(`${r.url}/models/f/files/model/config.json`);
  t.equal(config.headers.get('content-type'), 'application/json');
  t.equal(await config.text(), '{"labels":4}', 'current version by default');
  const old = await fetch(`${r.url}/models/f/files/model/weights.bin?version=1`);
  t.equal(old.headers.get('content-length'), '10000');
  t.equal(old.headers.get('content-type'), 'application/octet-stream');
  t.ok((await bytes(old)).equals(weights));
  const etag = old.headers.get('etag')!;
  t.match(etag, /^"sha256:[0-9a-f]{64}:[0-9a-f]{16}"$/);
  t.equal(
    (await fetch(`${r.url}/models/f/files/model/weights.bin?version=1`, { headers: { 'if-none-match': etag } })).status,
    304,
  );
  const part = await fetch(`${r.url}/models/f/files/model/weights.bin?version=1`, { headers: { range: 'bytes=0-9' } });
  t.equal(part.status, 206);
  t.equal((await bytes(part)).length, 10);
  t.ok(
    (await bytes(await fetch(`${r.url}/models/f/files/model/latest?version=1`))).equals(weights),
    'symlinks inside the archive are followed',
  );
  const empty = await fetch(`${r.url}/models/f/files/model/empty.txt?version=1`);
  t.equal(empty.status, 200);
  t.equal((await bytes(empty)).length, 0);
  for (const range of ['bytes=-5', 'bytes=0-']) {
    const res = await fetch(`${r.url}/models/f/files/model/empty.txt?version=1`, { headers: { range } });
    t.equal(res.headers.get('content-range'), 'bytes */0', `${range} of an empty file`);
    await isError(t, res, 416, 'RANGE_NOT_SATISFIABLE');
  }
  await isError(t, await fetch(`${r.url}/models/f/files/model/nope.txt`), 404, 'FILE_NOT_FOUND');
  await isError(t, await fetch(`${r.url}/models/f/files/model?version=1`), 404, 'FILE_NOT_FOUND');
  await isError(t, await fetch(`${r.url}/models/f/files/model/%2E%2E/%2E%2E/etc/passwd?version=1`), 404);
  await isError(t, await fetch(`${r.url}/models/nope/files`), 404, 'MODEL_NOT_FOUND');
});

t.test('extracted files count against the bound, also after a restart', async (t) => {
  const { open } = await local(t);
  const first = await open();
  const archive = tgz([{ path: 'weights.bin', body: Buffer.alloc(50_000, 1) }]);
  await put(`${first.url}/models/f`, archive);
  await (await fetch(`${first.url}/models/f/files`)).json();
  const expected = archive.length + 50_000;
  t.ok(
    await eventually(async () => (await metric(first, 'model_registry_cache_bytes')) === expected),
    'archive + extracted bytes',
  );
  await first.app.close();
  const second = await open();
  t.equal(await metric(second, 'model_registry_cache_bytes'), expected, 'the same after a restart');
  t.equal((await fetch(`${second.url}/models/f/files/weights.bin`)).headers.get('content-length'), '50000');
  t.equal(await storageCount(second, 'get'), 0, 'served from the kept tree');
});

t.test(
  'files of a model larger than the whole cache are served; a file being sent survives the eviction of its tree',
  async (t) => {
    const { open } = await local(t, { CACHE_MAX_BYTES: '64KiB', CACHE_MEMORY_BYTES: '0' });
    const r = await open();
    const weights = randomBytes(3 * 2 ** 20);
    await put(
      `${r.url}/models/big`,
      tgz([
        { path: 'weights.bin', body: weights },
        { path: 'config.json', body: '{}' },
      ]),
    );
    const manifest = await fetch(`${r.url}/models/big/files`);
    t.equal(manifest.status, 200, 'the manifest of a model the cache cannot keep');
    t.equal(((await manifest.json()) as { files: unknown[] }).files.length, 2);
    const config = await fetch(`${r.url}/models/big/files/config.json`);
    t.equal(config.status, 200);
    t.equal(await config.text(), '{}');
    // A slow reader of the big file while another model's files push this tree out of the cache.
    const slow = await fetch(`${r.url}/models/big/files/weights.bin`);
    t.equal(slow.status, 200);
    const reader = slow.body!.getReader();
    const first = await reader.read();
    await put(`${r.url}/models/other`, tgz([{ path: 'x.bin', body: randomBytes(200_000) }]));
    t.equal((await fetch(`${r.url}/models/other/files/x.bin`)).status, 200);
    const chunks = [Buffer.from(first.value!)];
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(Buffer.from(value));
    }
    t.ok(Buffer.concat(chunks).equals(weights), 'the file arrives whole');
    t.ok(
      await eventually(async () => (await metric(r, 'model_registry_cache_bytes')) <= 64 * 1024),
      'and the cache is back within its bound',
    );
  },
);

t.test('files of an archive placed by another tool are checked with the upload rules before extraction', async (t) => {
  const { open, storageDir } = await local(t);
  const r = await open();
  await fs.writeFile(path.join(storageDir, 'evil.tar.gz'), tgz([{ path: '../escape', body: 'x' }]));
  await isError(t, await fetch(`${r.url}/models/evil/files`), 422, 'UNSAFE_ARCHIVE');
  await t.rejects(fs.access(path.join(storageDir, '..', 'escape')));
});

t.test('watch: ?wait with If-None-Match holds until the model changes', async (t) => {
  const { open } = await local(t);
  const r = await open();
  const a = model('a');
  await put(`${r.url}/models/w`, a);
  const etag = `"sha256:${sha256(a)}"`;

  const began = Date.now();
  const timeout = await fetch(`${r.url}/models/w?wait=1`, { headers: { 'if-none-match': etag } });
  t.equal(timeout.status, 304, '304 when nothing changed');
  t.ok(Date.now() - began >= 900, 'after the wait');

  const b = model('b');
  const watching = fetch(`${r.url}/models/w?wait=30`, { headers: { 'if-none-match': etag } });
  await new Promise((resolve) => setTimeout(resolve, 300));
  const putAt = Date.now();
  await put(`${r.url}/models/w`, b);
  const changed = await watching;
  t.ok(Date.now() - putAt < 1000, `woke ${Date.now() - putAt} ms after the PUT`);
  t.equal(changed.status, 200);
  t.equal(changed.headers.get('x-model-version'), '2');
  t.ok((await bytes(changed)).equals(b));
  t.equal(
    (await fetch(`${r.url}/models/w?wait=0`, { headers: { 'if-none-match': `"sha256:${sha256(b)}"` } })).status,
    304,
  );
  await isError(t, await fetch(`${r.url}/models/w?wait=301`), 400, 'INVALID_QUERY');
});

t.test('watch across two registry processes sharing MinIO; one poll per name however many watch', async (t) => {
  const minio = await startMinio();
  t.teardown(() => minio.dispose());
  const shared = { ...minioEnv(minio), WATCH_POLL_INTERVAL: '500ms' };
  const writer = await start(t, shared);
  const reader = await start(t, shared);
  const a = model('a');
  await put(`${writer.url}/models/w`, a);
  const etag = `"sha256:${sha256(a)}"`;
  const headsBefore = await storageCount(reader, 'head');
  const watchers = Array.from({ length: 20 }, () =>
    fetch(`${reader.url}/models/w?wait=30`, { headers: { 'if-none-match': etag } }),
  );
  await new Promise((resolve) => setTimeout(resolve, 2000));
  const heads = (await storageCount(reader, 'head')) - headsBefore;
  // 20 initial describes, then one poll per 500 ms for the name, not one per watcher.
  t.ok(heads <= 20 + 8, `${heads} storage heads in 2 s for 20 watchers: polls are shared`);
  const putAt = Date.now();
  await put(`${writer.url}/models/w`, model('b'));
  const results = await Promise.all(watchers);
  t.ok(Date.now() - putAt < 500 + 1000, `woke ${Date.now() - putAt} ms after a PUT on the other replica`);
  t.ok(results.every((res) => res.status === 200 && res.headers.get('x-model-version') === '2'));
  await Promise.all(results.map(bytes));
});

t.test('MinIO stops: cached versions are still served (stale-if-error), uncached ones get 503 fast', async (t) => {
  const minio = await startMinio();
  t.teardown(() => minio.dispose());
  const r = await start(t, { ...minioEnv(minio), CACHE_WRITE_THROUGH: 'false' });
  const cached = model('cached');
  await put(`${r.url}/models/cached`, cached);
  await put(`${r.url}/models/cold`, model('cold'));
  await bytes(await fetch(`${r.url}/models/cached`));
  await minio.stop(true);

  const stale = await fetch(`${r.url}/models/cached`);
  t.equal(stale.status, 200);
  t.equal(stale.headers.get('x-cache'), 'STALE');
  t.match(stale.headers.get('warning'), /^110 /);
  t.ok((await bytes(stale)).equals(cached), 'the cached bytes');
  const began = Date.now();
  const cold = await fetch(`${r.url}/models/cold`);
  await isError(t, cold, 503, 'STORAGE_UNAVAILABLE');
  t.ok(cold.headers.get('retry-after'));
  t.ok(Date.now() - began < 5000, `503 in ${Date.now() - began} ms`);

  await minio.restart();
  const fresh = await fetch(`${r.url}/models/cached`);
  t.equal(fresh.headers.get('x-cache'), 'HIT', 'back to normal when storage returns');
  t.ok((await bytes(await fetch(`${r.url}/models/cold`))).equals(await bytes(await fetch(`${r.url}/models/cold`))));
});

t.test('/metrics names the storage and cache series', async (t) => {
  const { open } = await local(t);
  const r = await open();
  await put(`${r.url}/models/m`, model('m'));
  await bytes(await fetch(`${r.url}/models/m`));
  const text = await (await fetch(`${r.url}/metrics`)).text();
  for (const name of [
    'model_registry_storage_requests_total{operation="get",outcome="ok"} 1',
    'model_registry_cache_hits_total',
    'model_registry_cache_misses_total 1',
    'model_registry_cache_evictions_total',
    'model_registry_cache_bytes',
    'http_request_duration_seconds_bucket',
  ]) {
    t.ok(text.includes(name), name);
  }
  t.notOk(createHash('sha256').update(text).digest('hex') === '', 'metrics text is not empty');
});
