/**
 * The cache's blob store and tree lookup on their own: the bookkeeping races that HTTP tests
 * cannot time (eviction while an entry is being read, one digest admitted twice at once),
 * recency that must survive a restart, and a cache directory reached through a symlink.
 */
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import t, { type Test } from 'tap';
import { BlobStore, type BlobStoreOptions } from '../src/cache/blob-store.js';
import { ModelCache } from '../src/cache/index.js';
import { resolveFile, type Tree, TreeStore } from '../src/cache/trees.js';
import { archiveRules } from '../src/registry/archive.js';
import type { ModelVersion } from '../src/registry/service.js';
import type { Logger } from '../src/util/logger.js';
import { tgz } from './helpers/archives.js';
import { tempDir } from './helpers/server.js';

const quiet: Logger = { debug() {}, info() {}, warn() {}, error() {}, child: () => quiet };

async function store(t: Test, options: Partial<BlobStoreOptions> = {}, dir?: string): Promise<BlobStore> {
  const s = new BlobStore({
    dir: dir ?? (await tempDir(t, 'mr-blobs-')),
    maxBytes: 1e9,
    ttlMs: 1e9,
    logger: quiet,
    ...options,
  });
  await s.init();
  return s;
}

/** Admits `bytes` as a written-through upload; returns its digest. */
async function admit(s: BlobStore, bytes: Buffer): Promise<string> {
  const digest = createHash('sha256').update(bytes).digest('hex');
  const file = s.tempPath();
  await fs.writeFile(file, bytes);
  await s.admit(digest, file);
  return digest;
}

const noFetch = async (): Promise<never> => {
  throw new Error('no storage read expected');
};

t.test('eviction leaves alone an entry that is opened or held while earlier removals run', async (t) => {
  let removing: () => void = () => {};
  const removalStarted = new Promise<void>((resolve) => (removing = resolve));
  const s = await store(t, {
    maxBytes: 2500,
    // Removing an entry's extracted tree takes a while (a recursive delete).
    onEvict: async () => {
      removing();
      await new Promise((r) => setTimeout(r, 150));
    },
  });
  const a = await admit(s, randomBytes(1000));
  await new Promise((r) => setTimeout(r, 5));
  const b = await admit(s, randomBytes(1000));
  // Over the bound: eviction starts with the least recently used (a), then would take b.
  const c = admit(s, randomBytes(2000));
  await removalStarted;
  const { body, hit } = await s.open(b, 1000, noFetch);
  t.ok(hit, 'b is opened while a is being removed');
  const held = s.withBlob(b, 1000, noFetch, () => new Promise((r) => setTimeout(r, 300)));
  await c;
  t.notOk(s.has(a), 'a was evicted');
  t.ok(s.has(b), 'b, read and held meanwhile, was not');
  t.ok(
    await fs.stat(s.blobPath(b)).then(
      () => true,
      () => false,
    ),
    'and its file is still there',
  );
  for await (const chunk of body as AsyncIterable<Buffer>) void chunk;
  await held;
});

t.test('one digest admitted twice at once is counted once', async (t) => {
  const s = await store(t, { ttlMs: 60_000 });
  const bytes = randomBytes(1000);
  await Promise.all([admit(s, bytes), admit(s, bytes)]);
  t.equal(s.totalBytes, 1000);
});

t.test('a model read every 30 s keeps its recency across a restart', async (t) => {
  const dir = await tempDir(t, 'mr-blobs-');
  const realNow = Date.now;
  let skew = 0;
  Date.now = () => realNow() + skew;
  t.teardown(() => {
    Date.now = realNow;
  });
  const s = await store(t, { ttlMs: 10 * 60_000 }, dir);
  const digest = await admit(s, randomBytes(1000));
  for (let i = 0; i < 40; i++) {
    skew += 30_000; // 20 minutes of reads, one every 30 s
    const { body, hit } = await s.open(digest, 1000, noFetch);
    t.ok(hit);
    if (!Buffer.isBuffer(body)) body.destroy();
  }
  await new Promise((r) => setTimeout(r, 50)); // the stamp is touched in the background
  const restarted = await store(t, { ttlMs: 10 * 60_000 }, dir);
  t.ok(restarted.has(digest), 'still cached after a restart with a 10-minute TTL');
});

const RULES = archiveRules({ maxModelBytes: 2 ** 30, maxExtractedBytes: 2 ** 30, maxEntries: 1000 });

/** The tree of `archive`, extracted by a TreeStore in `dir`. */
async function extracted(dir: string, archive: Buffer): Promise<Tree> {
  const blob = path.join(dir, 'archive.tar.gz');
  await fs.writeFile(blob, archive);
  const trees = new TreeStore(dir, RULES);
  await trees.init();
  return trees.get(createHash('sha256').update(archive).digest('hex'), blob);
}

t.test('files resolve when the cache directory is reached through a symlink', async (t) => {
  const real = await tempDir(t, 'mr-trees-');
  const link = `${real}-link`;
  await fs.symlink(real, link);
  t.teardown(() => fs.rm(link, { force: true }));
  const tree = await extracted(link, tgz([{ path: 'f.txt', body: 'abc' }]));
  const found = await resolveFile(tree, 'f.txt');
  t.equal(found?.file, path.join(await fs.realpath(real), 'trees', path.basename(tree.root), 'f.txt'));
});

t.test(
  'files are found through links to files and to directories, never out of the tree; modes are normalised',
  async (t) => {
    const dir = await tempDir(t, 'mr-trees-');
    const tree = await extracted(
      dir,
      tgz([
        { path: 'sub/', type: 'Directory', mode: 0o300 },
        { path: 'sub/w.bin', body: 'weights', mode: 0o000 },
        { path: 'dirlink', type: 'SymbolicLink', linkpath: 'sub' },
        { path: 'filelink', type: 'SymbolicLink', linkpath: 'sub/w.bin' },
      ]),
    );
    t.match(await resolveFile(tree, 'sub/w.bin'), { entry: { path: 'sub/w.bin', size: 7, type: 'file' } });
    t.match(await resolveFile(tree, 'filelink'), { entry: { path: 'filelink', size: 7, type: 'symlink' } });
    t.match(
      await resolveFile(tree, 'dirlink/w.bin'),
      { file: path.join(tree.root, 'sub', 'w.bin'), entry: { path: 'sub/w.bin', size: 7 } },
      'through a directory link',
    );
    t.equal(await resolveFile(tree, 'dirlink'), undefined, 'a link to a directory is not a file');
    t.equal(await resolveFile(tree, 'sub'), undefined);
    t.equal(await resolveFile(tree, 'dirlink/../../x'), undefined);
    // Outside the tree: a link planted after extraction (archives with such links are refused).
    await fs.symlink('/etc', path.join(tree.root, 'planted'));
    t.equal(await resolveFile(tree, 'planted/hostname'), undefined, 'never out of the tree');
    // A server that does not run as root can read what the archive locked.
    t.equal((await fs.stat(path.join(tree.root, 'sub'))).mode & 0o777, 0o755);
    t.equal((await fs.stat(path.join(tree.root, 'sub', 'w.bin'))).mode & 0o777, 0o644);
  },
);

t.test(
  'close() waits for a fill that has just sent its last byte: the entry is in place when it resolves',
  async (t) => {
    const dir = await tempDir(t, 'mr-blobs-');
    const s = await store(t, {}, dir);
    const bytes = randomBytes(3 * 2 ** 20);
    const digest = createHash('sha256').update(bytes).digest('hex');
    const { body, hit } = await s.open(digest, bytes.length, async () => Readable.from([bytes]));
    t.notOk(hit);
    let got = 0;
    for await (const chunk of body as AsyncIterable<Buffer>) got += chunk.length;
    t.equal(got, bytes.length, 'the reader got every byte');
    // The fill still syncs, renames and stamps its file: a shutdown now must not leave it half done.
    await s.close();
    t.same(
      (await fs.readdir(path.join(dir, 'blobs'))).sort(),
      [`${digest}.ok`, `${digest}.tar.gz`],
      'archive and stamp in place',
    );
    t.same(await fs.readdir(path.join(dir, 'tmp')), [], 'no temp file left');
    const restarted = await store(t, {}, dir);
    t.ok((await restarted.open(digest, bytes.length, noFetch)).hit, 'a restart finds it verified');
  },
);

t.test(
  'close() stops a fill still downloading: the storage read is aborted, its temp file removed, nothing admitted',
  async (t) => {
    const dir = await tempDir(t, 'mr-blobs-');
    const s = await store(t, {}, dir);
    const bytes = randomBytes(2 ** 20);
    const digest = createHash('sha256').update(bytes).digest('hex');
    const source = new PassThrough();
    let signal: AbortSignal | undefined;
    const { body } = await s.open(digest, bytes.length, async (sig) => {
      signal = sig;
      return source;
    });
    source.write(bytes.subarray(0, 1000)); // the rest never comes
    const reading = (async () => {
      for await (const chunk of body as AsyncIterable<Buffer>) void chunk;
      return 'ended';
    })().catch((err: Error) => err.message);
    await new Promise((r) => setTimeout(r, 50));
    await s.close();
    t.ok(signal?.aborted, 'the storage read was told to stop');
    t.not(await reading, 'ended', 'the reader fails instead of hanging or ending short as if whole');
    t.same(await fs.readdir(path.join(dir, 'tmp')), [], 'the temp file is removed');
    t.notOk(s.has(digest), 'nothing was admitted');
    t.same(await fs.readdir(path.join(dir, 'blobs')), []);
  },
);

t.test(
  'version records: a crash between write and rename leaves debris that the next start removes; close() waits for writes',
  async (t) => {
    const dir = await tempDir(t, 'mr-cache-');
    const options = {
      dir,
      maxBytes: 1e9,
      ttlMs: 1e9,
      logger: quiet,
      rules: archiveRules({ maxModelBytes: 1e9, maxExtractedBytes: 1e9, maxEntries: 1000 }),
    };
    const cache = new ModelCache(options);
    await cache.init();
    const model = {
      name: 'm',
      version: 1,
      sha256: 'a'.repeat(64),
      size: 1,
      createdAt: new Date().toISOString(),
    } as unknown as ModelVersion;
    void cache.remember(model); // as the registry calls it: without waiting
    await cache.close();
    t.same(await fs.readdir(path.join(dir, 'refs')), ['m.json'], 'the record was written before close() resolved');
    await fs.writeFile(path.join(dir, 'refs', 'm.json.0d1f.tmp'), '{');
    const restarted = new ModelCache(options);
    await restarted.init();
    t.teardown(() => restarted.close());
    t.same(await fs.readdir(path.join(dir, 'refs')), ['m.json'], 'the interrupted write is gone');
  },
);

t.test(
  'a reader destroyed while it opens the fill file does not leak the file (it is closed once opened)',
  async (t) => {
    const s = await store(t);
    const bytes = randomBytes(64 * 1024);
    const digest = createHash('sha256').update(bytes).digest('hex');
    const source = new PassThrough();
    const { body } = await s.open(digest, bytes.length, async () => source);
    const reader = body as Readable;
    reader.on('error', () => {});
    reader.read(0); // starts the read: the fill file is being opened
    reader.destroy();
    await new Promise((r) => setTimeout(r, 100));
    const { readdirSync, readlinkSync } = await import('node:fs');
    const open = readdirSync('/proc/self/fd').map((fd) => {
      try {
        return readlinkSync(`/proc/self/fd/${fd}`);
      } catch {
        return '';
      }
    });
    t.equal(
      open.filter((f) => f.includes(digest)).length,
      1,
      "the fill's own descriptor only, none left by the reader",
    );
    await s.close(); // stops the fill before the directory is removed
  },
);

t.test(
  'a fill needs room on the cache disk: idle entries make it, else the caller is told to serve from storage',
  async (t) => {
    const dir = await tempDir(t, 'mr-blobs-');
    // A disk with room for nothing but what evicting `old` frees (the bound is far larger).
    let old = '';
    const freeBytes = async () => (old && s.has(old) ? 1024 : 1e12);
    const s = await store(t, { freeBytes, maxBytes: 1e12 }, dir);
    old = await admit(s, randomBytes(1000));
    const fresh = randomBytes(5000);
    const digest = createHash('sha256').update(fresh).digest('hex');
    const fetched: string[] = [];
    const fetch = async () => {
      fetched.push(digest);
      return Readable.from([fresh]);
    };
    const opened = await s.open(digest, fresh.length, fetch);
    t.equal(opened.hit, false);
    t.ok(Buffer.concat(await (opened.body as Readable).toArray()).equals(fresh), 'filled and served');
    t.notOk(s.has(old), 'the idle entry was evicted to make room');

    // No room at all, nothing idle to evict: no fill starts (no storage read, no ENOSPC half way).
    const full = await store(t, { freeBytes: async () => 0 });
    const held = await admit(full, randomBytes(100));
    const busy = full.withBlob(held, 100, noFetch, () => new Promise((r) => setTimeout(r, 100)));
    await t.rejects(
      full.open(digest, fresh.length, noFetch),
      { name: 'CacheDiskError' },
      'open: serve from storage instead',
    );
    await t.rejects(
      full.withBlob(digest, fresh.length, noFetch, async () => 'x'),
      { name: 'CacheDiskError' },
      'files: 503 (CACHE_UNAVAILABLE)',
    );
    await busy;
    t.ok(full.has(held), 'an entry being read is never evicted for room');
    t.equal(fetched.length, 1);
  },
);

t.test('concurrent misses of one archive on a tight disk share one fill: room is made once', async (t) => {
  const fresh = randomBytes(5000);
  const digest = createHash('sha256').update(fresh).digest('hex');
  // Room for this archive (and the 16 MiB kept free), not for two copies of it. The disk answers
  // the first question at once and later ones more slowly (the first fill is registered by then).
  let asked = 0;
  const freeBytes = async () => {
    if (asked++ > 0) await new Promise((r) => setTimeout(r, 20));
    return fresh.length + 16 * 2 ** 20 + 1000;
  };
  const s = await store(t, { freeBytes, maxBytes: 1e12 });
  const idle = await admit(s, randomBytes(100));
  let fetches = 0;
  const fetch = async () => {
    fetches++;
    await new Promise((r) => setTimeout(r, 50));
    return Readable.from([fresh]);
  };
  const opened = await Promise.all(Array.from({ length: 5 }, () => s.open(digest, fresh.length, fetch)));
  t.equal(fetches, 1, 'one storage read');
  for (const o of opened) t.ok(Buffer.concat(await (o.body as Readable).toArray()).equals(fresh));
  t.ok(s.has(idle), 'nothing evicted: there was room for the one copy');
});

t.test(
  'trees: a manifest read while its tree is removed is not kept; trees of an older format are extracted again',
  async (t) => {
    const dir = await tempDir(t, 'mr-trees-');
    const archive = tgz([{ path: 'w.bin', body: 'weights', mode: 0o000 }]);
    const digest = createHash('sha256').update(archive).digest('hex');
    const first = await extracted(dir, archive);
    const blob = path.join(dir, 'archive.tar.gz');
    for (let i = 0; i < 20; i++) {
      const trees = new TreeStore(dir, RULES);
      await trees.init();
      await Promise.all([trees.remove(digest), trees.get(digest, blob).catch(() => undefined)]);
      const again = await trees.get(digest, blob);
      if (!(await resolveFile(again, 'w.bin')))
        return t.fail(
          `round ${i}: the removed tree was served from memory (${again.created ? 'extracted' : 'remembered'})`,
        );
    }
    t.pass('never a removed tree');
    // A tree as an earlier release left it: no format in its manifest, the archive's modes kept.
    const manifest = path.join(dir, 'trees', `${digest}.json`);
    const { format: _format, ...old } = JSON.parse(await fs.readFile(manifest, 'utf8')) as Record<string, unknown>;
    await fs.writeFile(manifest, JSON.stringify(old));
    await fs.chmod(path.join(first.root, 'w.bin'), 0o000);
    const trees = new TreeStore(dir, RULES);
    await trees.init();
    const tree = await trees.get(digest, blob);
    t.ok(tree.created, 'extracted again');
    t.equal((await fs.stat(path.join(tree.root, 'w.bin'))).mode & 0o777, 0o644);
  },
);

t.test(
  "a range far past a cold fill is read from storage with the reader's signal, and not at all once it left",
  async (t) => {
    const s = await store(t, { freeBytes: async () => 1e12 });
    t.teardown(() => s.close());
    const size = 200 * 2 ** 20;
    const digest = 'a'.repeat(64);
    const reads: { range?: { start: number; end: number }; signal?: AbortSignal }[] = [];
    const fetch = async (signal: AbortSignal | undefined, range?: { start: number; end: number }) => {
      reads.push({ range, signal });
      return range ? Readable.from([Buffer.alloc(range.end - range.start + 1, 1)]) : new Readable({ read() {} }); // the fill gets nowhere
    };
    const range = { start: size - 1000, end: size - 1 };
    const left = new AbortController();
    left.abort(new Error('client disconnected'));
    await t.rejects(s.open(digest, size, fetch, range, left.signal), /client disconnected/);
    t.same(
      reads.map((r) => r.range),
      [undefined],
      'only the fill read: nothing for a reader already gone',
    );
    const reader = new AbortController();
    const { body, hit } = await s.open(digest, size, fetch, range, reader.signal);
    t.equal(hit, false);
    t.equal(Buffer.concat(await (body as Readable).toArray()).length, 1000);
    t.equal(reads.at(-1)?.signal, reader.signal, "the ranged read gets the reader's signal");
    t.same(reads.at(-1)?.range, range);
  },
);

t.test(
  'an entry that cannot be removed to make room is a disk error (served from storage), not a failure',
  async (t) => {
    const s = await store(t, {
      freeBytes: async () => 0,
      onEvict: async () => {
        throw Object.assign(new Error('read-only file system'), { code: 'EROFS' });
      },
    });
    await admit(s, randomBytes(100));
    await t.rejects(s.open('b'.repeat(64), 5000, noFetch), { name: 'CacheDiskError' });
  },
);
