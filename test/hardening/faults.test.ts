/**
 * SPEC §3 under faults. SIGKILL at random points of uploads (24 kills, seeded), with replicas
 * sharing one storage directory; clients vanishing mid-upload and mid-download; MinIO dying
 * mid-upload and mid-download (made deterministic with a throttling proxy). After each fault:
 * the old version (or the new one, whole) is served, nothing partial is visible, leftovers are
 * swept, and the service recovers without a restart.
 */

import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import { request } from 'node:http';
import path from 'node:path';
import { ListMultipartUploadsCommand, S3Client } from '@aws-sdk/client-s3';
import t, { type Test } from 'tap';
import { StorageUnavailableError } from '../../src/errors.js';
import { model, tgz } from '../helpers/archives.js';
import { isError, sha256 } from '../helpers/assert.js';
import { azuriteEnv, minioEnv } from '../helpers/cloud.js';
import { type Emulator, MINIO_PASSWORD, MINIO_USER, startAzurite, startMinio } from '../helpers/emulators.js';
import { eventually, startProxy, type Proxy as TcpProxy } from '../helpers/hostile.js';
import { killHard, spawnServer } from '../helpers/process.js';
import { bytes, put, type Running, start, tempDir } from '../helpers/server.js';

const SEED = Number(process.env.HARDENING_SEED ?? 20241121);
/** mulberry32: a seeded PRNG, so a failing kill schedule can be replayed with HARDENING_SEED. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = Math.imul(a ^ (a >>> 15), 1 | a);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

const stagedFiles = async (dir: string) =>
  (await fs.readdir(path.join(dir, '.uploads')).catch(() => [] as string[])).filter((n) => n.endsWith('.part'));

/**
 * Starts an upload over a raw connection and returns once the server was killed by `kill`.
 * `sendBytes` of the body are written (all of it when it equals the length); the kill lands
 * `delayMs` later. Resolves with the status if the server answered before dying.
 */
function uploadThenKill(
  url: string,
  body: Buffer,
  sendBytes: number,
  delayMs: number,
  kill: () => Promise<void>,
): Promise<number | undefined> {
  return new Promise((resolve) => {
    let status: number | undefined;
    const req = request(
      `${url}/models/m`,
      { method: 'PUT', headers: { 'content-type': 'application/gzip', 'content-length': body.length } },
      (res) => {
        status = res.statusCode;
        res.resume();
      },
    );
    req.on('error', () => {});
    req.write(body.subarray(0, sendBytes), () => {
      setTimeout(() => {
        void kill().then(() => {
          req.destroy();
          resolve(status);
        });
      }, delayMs);
    });
  });
}

/** The model's current version and every retained one are whole uploads; returns the current digest. */
async function assertWhole(
  t: Test,
  url: string,
  known: Map<string, Buffer>,
): Promise<{ sha: string; version: number }> {
  const res = await fetch(`${url}/models/m`);
  t.equal(res.status, 200, 'the model is served');
  const body = await bytes(res);
  const sha = sha256(body);
  t.ok(known.has(sha), 'the current archive is one whole upload');
  t.equal(res.headers.get('etag'), `"sha256:${sha}"`, 'and its ETag says so');
  const versions = (await (await fetch(`${url}/models/m/versions`)).json()) as {
    versions: { version: number; sha256: string }[];
  };
  const numbers = versions.versions.map((v) => v.version);
  t.same(
    numbers,
    [...numbers].sort((a, b) => b - a),
    'versions newest first',
  );
  t.equal(new Set(numbers).size, numbers.length, 'no version number twice');
  for (const v of versions.versions.slice(1)) {
    const old = await bytes(await fetch(`${url}/models/m?version=${v.version}`));
    t.equal(sha256(old), v.sha256, `history v${v.version} is whole`);
  }
  return { sha, version: Number(res.headers.get('x-model-version')) };
}

/**
 * A GET over a raw request, which reports a transfer that breaks instead of throwing:
 * `onData(received)` runs after each chunk.
 */
function download(
  url: string,
  onData: (got: number) => void = () => {},
): Promise<{ status: number; length: number; got: number; error?: string }> {
  return new Promise((resolve) => {
    let got = 0;
    let status = 0;
    let length = 0;
    const req = request(url, (res) => {
      status = res.statusCode!;
      length = Number(res.headers['content-length']);
      res.on('data', (c: Buffer) => {
        got += c.length;
        onData(got);
      });
      res.on('end', () => resolve({ got, status, length }));
      res.on('error', (err) => resolve({ got, status, length, error: err.message }));
      res.on('aborted', () => resolve({ got, status, length, error: 'aborted' }));
    });
    req.on('error', (err) => resolve({ got, status, length, error: err.message }));
    req.end();
  });
}

/** A registry on its own MinIO, reached through a proxy that can throttle, cut or corrupt. */
async function minioBehindProxy(
  t: Test,
  env: Record<string, string>,
): Promise<{ own: Emulator; proxy: TcpProxy; cacheDir: string; r: Running }> {
  const own = await startMinio();
  t.teardown(() => own.dispose());
  const proxy = await startProxy(own.url);
  t.teardown(() => proxy.close());
  const cacheDir = await tempDir(t, 'mr-cache-');
  const r = await start(t, { ...minioEnv(own), AWS_ENDPOINT_URL: proxy.url, CACHE_DIR: cacheDir, ...env });
  return { own, proxy, cacheDir, r };
}

/** A model large enough that a download through a throttled proxy takes a while. */
const sixMiBModel = () => tgz([{ path: 'w.bin', body: randomBytes(6 * 2 ** 20) }]);

t.test('24 SIGKILLs at random points of uploads: old or new version whole, leftovers swept at start', async (t) => {
  const random = prng(SEED);
  t.comment(`kill schedule seed ${SEED} (replay with HARDENING_SEED=${SEED})`);
  const dir = await tempDir(t);
  const env = { LOCAL_STORAGE_DIR: dir, MODEL_HISTORY: '100', LOG_LEVEL: 'warn' };
  let server = await spawnServer(t, env);
  const v1 = model('v1', 16 * 1024);
  t.equal((await put(`${server.url}/models/m`, v1)).status, 201);
  const known = new Map([[sha256(v1), v1]]);
  let current = { sha: sha256(v1), version: 1 };
  const outcomes = { old: 0, new: 0, answered: 0 };
  const modes = ['headers only', 'mid-body', 'whole body, then kill while validating / committing'] as const;
  for (let round = 0; round < 24; round++) {
    const mode = modes[round % 3]!;
    const archive = model(`round-${round}`, Math.floor(16 * 1024 + random() * 512 * 1024));
    known.set(sha256(archive), archive);
    const sendBytes =
      mode === 'headers only'
        ? 0
        : mode === 'mid-body'
          ? Math.floor(archive.length * (0.05 + random() * 0.9))
          : archive.length;
    const delayMs = Math.floor(random() * (mode === 'mid-body' ? 30 : 60));
    const dying = server;
    const status = await uploadThenKill(dying.url, archive, sendBytes, delayMs, () => killHard(dying));
    server = await spawnServer(t, env);
    await t.test(
      `round ${round}: ${mode}, ${sendBytes}/${archive.length} bytes, kill after ${delayMs} ms`,
      async (t) => {
        t.same(await stagedFiles(dir), [], 'no staged upload left after the restart (swept at start)');
        const now = await assertWhole(t, server.url, known);
        if (status !== undefined) {
          outcomes.answered++;
          t.ok(status === 200, `the server answered ${status} before dying`);
          t.equal(now.sha, sha256(archive), 'an acknowledged upload survives the crash');
        }
        if (now.sha === sha256(archive)) {
          outcomes.new++;
          // A number claimed by an upload killed before it became current is skipped, never reused.
          t.ok(
            now.version > current.version,
            `the new version got a higher number (v${now.version} after v${current.version})`,
          );
          t.ok(now.version <= round + 2, 'one number per upload at most');
        } else {
          outcomes.old++;
          t.same(now, current, 'otherwise the old version is intact, same number');
        }
        current = now;
        if (mode !== 'whole body, then kill while validating / committing')
          t.equal(now.sha === sha256(archive), false, 'an incomplete body never becomes a version');
      },
    );
  }
  t.comment(`outcomes: ${JSON.stringify(outcomes)}`);
  t.ok(outcomes.old >= 16, `${outcomes.old} kills left the old version`);
  // The model can still be replaced, and the disk holds no debris.
  const after = model('after');
  t.equal((await put(`${server.url}/models/m`, after)).status, 200, 'writes work after all the crashes');
  t.same(await stagedFiles(dir), []);
  // Locks of killed commits are swept at start once stale (20 s untouched); history keys are
  // written once, so nothing else would ever remove theirs.
  const lockDir = path.join(dir, '.uploads', 'locks');
  const locks = await fs.readdir(lockDir).catch(() => [] as string[]);
  const ages = await Promise.all(locks.map(async (l) => Date.now() - (await fs.stat(path.join(lockDir, l))).mtimeMs));
  t.same(
    ages.filter((age) => age > 25_000),
    [],
    `no lock older than the stale window is left (${locks.length} recent ones)`,
  );
  await killHard(server);
});

t.test("a replica restarting after a crash sweeps only the dead writer's uploads, not a live replica's", async (t) => {
  const dir = await tempDir(t);
  const env = { LOCAL_STORAGE_DIR: dir, LOG_LEVEL: 'warn' };
  const [a, b] = [await spawnServer(t, env), await spawnServer(t, env)];
  const v1 = model('v1');
  await put(`${a.url}/models/m`, v1);
  const fromB = model('from-b', 256 * 1024);
  // B's upload stalls halfway; A dies mid-upload; A restarts (and sweeps); then B finishes.
  const bReq = request(`${b.url}/models/m`, {
    method: 'PUT',
    headers: { 'content-type': 'application/gzip', 'content-length': fromB.length },
  });
  const bDone = new Promise<number>((resolve, reject) => {
    bReq.on('response', (res) => {
      res.resume();
      resolve(res.statusCode!);
    });
    bReq.on('error', reject);
  });
  bReq.write(fromB.subarray(0, fromB.length / 2));
  t.ok(await eventually(async () => (await stagedFiles(dir)).length === 1), 'B is staging');
  // The kill waits for A's staged file (on a loaded machine A may not have opened it 10 ms on).
  await uploadThenKill(a.url, model('from-a', 256 * 1024), 100_000, 10, async () => {
    await eventually(async () => (await stagedFiles(dir)).length === 2);
    await killHard(a);
  });
  t.equal((await stagedFiles(dir)).length, 2, "A's partial upload is left by the crash");
  const a2 = await spawnServer(t, env);
  t.equal((await stagedFiles(dir)).length, 1, "the restart swept A's leftover and kept B's live upload");
  bReq.end(fromB.subarray(fromB.length / 2));
  t.equal(await bDone, 200, "B's upload completes after A's restart");
  const res = await fetch(`${a2.url}/models/m`);
  t.equal(sha256(await bytes(res)), sha256(fromB), 'and is the current version');
  t.same(await stagedFiles(dir), []);
  await killHard(a2);
  await killHard(b);
});

async function multipartUploads(minio: Emulator, bucket: string): Promise<number> {
  const s3 = new S3Client({
    endpoint: minio.url,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: MINIO_USER, secretAccessKey: MINIO_PASSWORD },
  });
  try {
    const page = await s3.send(new ListMultipartUploadsCommand({ Bucket: bucket }));
    return page.Uploads?.length ?? 0;
  } finally {
    s3.destroy();
  }
}

async function keysOf(r: Running, prefix: string): Promise<string[]> {
  const out: string[] = [];
  for await (const info of r.app.registry.storage.list(prefix)) out.push(info.key);
  return out;
}

/** A cold GET whose reader vanishes after `after` bytes. */
function readThenVanish(url: string, after: number): Promise<number> {
  return new Promise((resolve) => {
    let got = 0;
    const req = request(url, (res) => {
      res.on('data', (c: Buffer) => {
        got += c.length;
        if (got >= after) {
          req.destroy();
          resolve(got);
        }
      });
      res.on('end', () => resolve(got));
    });
    req.on('error', () => resolve(got));
    req.end();
  });
}

const minio = await startMinio();
t.teardown(() => minio.dispose());

for (const backend of ['local', 'minio'] as const) {
  t.test(`${backend}: clients vanishing mid-upload and mid-download leave nothing behind`, async (t) => {
    const env = backend === 'minio' ? minioEnv(minio) : {};
    const cacheDir = await tempDir(t, 'mr-cache-');
    const r = await start(t, { ...env, CACHE_DIR: cacheDir, CACHE_WRITE_THROUGH: 'false' });
    const big = model('big', 12 * 2 ** 20);
    t.equal((await put(`${r.url}/models/m`, big)).status, 201);
    // Ten uploads cut at random points at once (MinIO: some after a multipart part was sent).
    const random = prng(SEED + 1);
    await Promise.all(
      Array.from({ length: 10 }, (_, i) => {
        const next = model(`cut-${i}`, 10 * 2 ** 20);
        return uploadThenKill(r.url, next, Math.floor(next.length * (0.1 + random() * 0.85)), 20, async () => {});
      }),
    );
    // Eight cold readers vanish at random offsets, while the cache fill goes on.
    const got = await Promise.all(
      Array.from({ length: 8 }, () => readThenVanish(`${r.url}/models/m`, Math.floor(random() * big.length * 0.8))),
    );
    t.ok(
      got.every((n) => n < big.length),
      'every reader left early',
    );
    t.ok(await eventually(async () => (await keysOf(r, '.uploads/')).length === 0, 15_000), 'no staged upload left');
    if (backend === 'minio') {
      const bucket = (env as Record<string, string>).BUCKET_NAME!;
      t.ok(
        await eventually(async () => (await multipartUploads(minio, bucket)) === 0, 15_000),
        'no multipart upload left open',
      );
    }
    t.ok(
      await eventually(async () => (await fs.readdir(path.join(cacheDir, 'tmp'))).length === 0, 15_000),
      'no partial cache fill left',
    );
    for (const blob of (await fs.readdir(path.join(cacheDir, 'blobs'))).filter((n) => n.endsWith('.tar.gz'))) {
      t.equal(
        sha256(await fs.readFile(path.join(cacheDir, 'blobs', blob))),
        blob.slice(0, 64),
        'every cache entry is whole',
      );
    }
    const res = await fetch(`${r.url}/models/m`);
    t.equal(sha256(await bytes(res)), sha256(big), 'the model downloads whole');
    t.equal(res.headers.get('x-model-version'), '1', 'no cut upload became a version');
  });
}

t.test('MinIO dies mid-upload: 503, nothing partial, leftovers swept, recovery without a restart', async (t) => {
  const own = await startMinio();
  t.teardown(() => own.dispose());
  const env: Record<string, string> = { ...minioEnv(own), CACHE_WRITE_THROUGH: 'false' };
  const bucket = env.BUCKET_NAME!;
  const r = await start(t, env);
  const v1 = model('v1');
  t.equal((await put(`${r.url}/models/m`, v1)).status, 201);
  // 20 MiB: the first 8 MiB part goes to MinIO before it dies, the second fails.
  const v2 = tgz([{ path: 'w.bin', body: randomBytes(20 * 2 ** 20) }]);
  const answer = new Promise<{ status: number; body: string }>((resolve, reject) => {
    let answered = false;
    const req = request(
      `${r.url}/models/m`,
      { method: 'PUT', headers: { 'content-type': 'application/gzip', 'content-length': v2.length } },
      (res) => {
        answered = true;
        let text = '';
        res.on('data', (c) => (text += c)).on('end', () => resolve({ status: res.statusCode!, body: text }));
      },
    );
    // The server answers and closes without reading the rest of the body: a reset may race the
    // answer on the client side, so give the answer a moment before calling it an error.
    req.on('error', (err) => setTimeout(() => answered || reject(err), 500));
    req.write(v2.subarray(0, 12 * 2 ** 20), async () => {
      await eventually(async () => (await multipartUploads(own, bucket)) > 0, 10_000);
      await own.stop(true);
      req.end(v2.subarray(12 * 2 ** 20), () => {});
    });
  });
  const began = Date.now();
  const { status, body } = await answer;
  t.equal(status, 503, 'the upload fails with 503');
  t.match(JSON.parse(body), { error: 'STORAGE_UNAVAILABLE', message: String });
  t.ok(Date.now() - began < 30_000, `within ${Date.now() - began} ms`);
  await isError(t, await fetch(`${r.url}/models/m`), 503, 'STORAGE_UNAVAILABLE');

  await own.restart();
  const back = await fetch(`${r.url}/models/m`);
  t.equal(back.status, 200, 'the same process serves again once MinIO is back');
  t.equal(sha256(await bytes(back)), sha256(v1), 'the old version, whole');
  const versions = (await (await fetch(`${r.url}/models/m/versions`)).json()) as { versions: unknown[] };
  t.equal(versions.versions.length, 1, 'no version from the failed upload');
  // The body streamed straight to its history key; what MinIO's death left is the multipart
  // upload and, at most, the empty marker that names its writer (src/storage/s3/in-place.ts).
  const left: number[] = [];
  for await (const info of r.app.registry.storage.list('.uploads/')) left.push(info.size);
  t.ok(
    left.every((size) => size === 0),
    `no staged bytes visible (${left.length} empty marker(s))`,
  );
  await r.app.registry.sweep();
  t.equal(
    await multipartUploads(own, bucket),
    0,
    'the sweep (run at every start) aborts the orphaned multipart upload',
  );
  t.same(await keysOf(r, '.uploads/'), [], 'and removes the marker');
  const v3 = model('v3');
  t.equal((await put(`${r.url}/models/m`, v3)).status, 200, 'writes work again');
  t.equal(sha256(await bytes(await fetch(`${r.url}/models/m`))), sha256(v3));
});

t.test(
  'the copy onto the current key fails (S3): 503, the old version stays current, the new bytes and their number are given back',
  async (t) => {
    const own = await startMinio();
    t.teardown(() => own.dispose());
    const env: Record<string, string> = { ...minioEnv(own), CACHE_WRITE_THROUGH: 'false' };
    const r = await start(t, env);
    const v1 = model('v1');
    t.equal((await put(`${r.url}/models/m`, v1)).status, 201);
    // Publishing writes .history/m/v2.tar.gz, then copies it onto m.tar.gz: fail that last step.
    const storage = r.app.registry.storage;
    const copy = storage.copy.bind(storage);
    let failing = true;
    let attempted = 0;
    storage.copy = async (from, to, options) => {
      if (!failing || to !== 'm.tar.gz') return copy(from, to, options);
      attempted++;
      throw new StorageUnavailableError('s3', 'injected: the copy onto the current key failed');
    };
    const v2 = model('v2');
    await isError(t, await put(`${r.url}/models/m`, v2), 503, 'STORAGE_UNAVAILABLE');
    t.equal(attempted, 1, 'the copy onto the current key was attempted once');
    t.equal(
      sha256(await bytes(await fetch(`${r.url}/models/m`))),
      sha256(v1),
      'the old version is still served, whole',
    );
    const versions = (await (await fetch(`${r.url}/models/m/versions`)).json()) as { versions: unknown[] };
    t.equal(versions.versions.length, 1, 'no version from the failed replace');
    t.same(await keysOf(r, '.uploads/'), [], 'the staged upload was discarded');
    t.same(
      await keysOf(r, '.history/m/'),
      ['.history/m/v1.json', '.history/m/v1.tar.gz', '.history/m/v2.json'],
      "v2's bytes are deleted; its record stays as a tombstone",
    );
    t.equal(await multipartUploads(own, env.BUCKET_NAME!), 0, 'no multipart upload left for the sweep');
    failing = false;
    const next = await put(`${r.url}/models/m`, v2);
    t.equal(next.status, 200, 'the next replace works');
    t.equal(((await next.json()) as { version: number }).version, 3, 'with the next number: 2 is never reused');
    t.equal(sha256(await bytes(await fetch(`${r.url}/models/m?version=1`))), sha256(v1), 'v1 kept whole');
  },
);

t.test(
  'MinIO dies mid-download: the client sees a broken transfer, never a short "whole" one; recovery without a restart',
  async (t) => {
    const { own, proxy, cacheDir, r } = await minioBehindProxy(t, { CACHE_WRITE_THROUGH: 'false' });
    const big = sixMiBModel();
    t.equal((await put(`${r.url}/models/m`, big)).status, 201);
    proxy.rate = 2 * 2 ** 20; // storage → registry at 2 MiB/s: the download takes ~3 s
    let killed = false;
    const result = await download(`${r.url}/models/m`, (got) => {
      if (!killed && got >= 2 ** 20) {
        killed = true;
        void own.stop(true).then(() => proxy.cut());
      }
    });
    t.equal(result.status, 200, 'the download had started');
    t.equal(result.length, big.length, 'with the whole length announced');
    t.ok(result.got < big.length, `the transfer broke after ${result.got} of ${big.length} bytes`);
    t.ok(result.error, `and the client was told (${result.error})`);
    proxy.rate = 0;

    await isError(t, await fetch(`${r.url}/models/m`), 503, 'STORAGE_UNAVAILABLE');
    t.ok(
      await eventually(async () => (await fs.readdir(path.join(cacheDir, 'tmp'))).length === 0),
      'the failed fill is removed',
    );
    t.same(
      (await fs.readdir(path.join(cacheDir, 'blobs'))).filter((n) => n.endsWith('.tar.gz')),
      [],
      'nothing partial entered the cache',
    );
    await own.restart();
    const back = await fetch(`${r.url}/models/m`);
    t.equal(back.status, 200, 'served again by the same process');
    t.equal(sha256(await bytes(back)), sha256(big), 'whole');
    t.equal((await fetch(`${r.url}/readyz`)).status, 200);
  },
);

t.test(
  'a download from storage that does not match its digest: the client sees a broken transfer, never a whole wrong one; nothing is cached',
  async (t) => {
    const { proxy, cacheDir, r } = await minioBehindProxy(t, { CACHE_WRITE_THROUGH: 'false' });
    const big = sixMiBModel();
    t.equal((await put(`${r.url}/models/m`, big)).status, 201);

    // One byte changes on its way from MinIO, past the response headers, inside the body; at
    // 4 MiB/s the download takes ~1.5 s, so both requests follow the same one.
    proxy.flipAfter(3 * 2 ** 20);
    proxy.rate = 4 * 2 ** 20;
    const [whole, tail] = await Promise.all([
      download(`${r.url}/models/m`),
      fetch(`${r.url}/models/m`, { headers: { range: 'bytes=-1000' } }).then(
        async (res) => ({
          status: res.status,
          body: await bytes(res).then(
            () => 'read',
            (err: Error) => err.message,
          ),
        }),
        (err: Error) => ({ status: 0, body: err.message }),
      ),
    ]);
    t.equal(whole.status, 200, 'the download had started');
    t.equal(whole.length, big.length, 'with the whole length announced');
    t.ok(whole.got < big.length, `the transfer stopped short, after ${whole.got} of ${big.length} bytes`);
    t.ok(whole.error, `and the client was told (${whole.error})`);
    t.not(
      tail.body,
      'read',
      `a range that ends at the last byte is not completed either (${tail.status}, ${tail.body})`,
    );
    t.ok(
      await eventually(async () => (await fs.readdir(path.join(cacheDir, 'tmp'))).length === 0),
      'the failed fill is removed',
    );
    t.same(
      (await fs.readdir(path.join(cacheDir, 'blobs'))).filter((n) => n.endsWith('.tar.gz')),
      [],
      'the wrong bytes did not enter the cache',
    );
    proxy.rate = 0;

    const again = await fetch(`${r.url}/models/m`);
    t.equal(again.status, 200);
    t.equal(again.headers.get('x-cache'), 'MISS', 'fetched from storage again');
    t.equal(sha256(await bytes(again)), sha256(big), 'whole and right once the bytes arrive intact');
  },
);

t.test('the cache disk fails (S3): uploads stand without their cache copy, downloads come from storage', async (t) => {
  const { proxy, cacheDir, r } = await minioBehindProxy(t, { CACHE_WRITE_THROUGH: 'true' });
  // The cache's working directory goes away: every file the cache opens there fails, as on a
  // full or read-only disk.
  await fs.rm(path.join(cacheDir, 'tmp'), { recursive: true });
  const v1 = model('v1');
  const res = await put(`${r.url}/models/m`, v1);
  t.equal(res.status, 201, 'the upload is accepted: its write-through copy is not needed');
  const got = await fetch(`${r.url}/models/m`);
  t.equal(got.status, 200);
  t.equal(got.headers.get('x-cache'), 'BYPASS', 'served straight from storage');
  t.equal(sha256(await bytes(got)), sha256(v1), 'whole');
  t.same(
    (await fs.readdir(path.join(cacheDir, 'blobs'))).filter((n) => n.endsWith('.tar.gz')),
    [],
    'nothing entered the cache',
  );

  // Served without the cache, the bytes are still checked: one changed on the way from MinIO
  // breaks the transfer instead of completing it.
  const big = sixMiBModel();
  t.equal((await put(`${r.url}/models/big`, big)).status, 201);
  proxy.flipAfter(3 * 2 ** 20);
  const flipped = await download(`${r.url}/models/big`);
  t.equal(flipped.status, 200);
  t.ok(
    flipped.got < big.length && flipped.error,
    `a changed byte breaks the transfer (${flipped.got} of ${big.length} bytes, ${flipped.error})`,
  );
  const clean = await fetch(`${r.url}/models/big`);
  t.equal(sha256(await bytes(clean)), sha256(big), 'and intact bytes arrive whole');

  await fs.mkdir(path.join(cacheDir, 'tmp'));
  const again = await fetch(`${r.url}/models/m`);
  t.equal(again.headers.get('x-cache'), 'MISS', 'once the disk is back, the cache fills again');
  t.equal(sha256(await bytes(again)), sha256(v1));
});

/**
 * Commits and archive copies whose reply is lost (the SDK sends them again): each upload is
 * answered as it happened, no version doubled or lost. `publishing(key)` matches the request that
 * publishes onto `key` (the one whose reply the proxy drops).
 */
async function lostReplies(t: Test, r: Running, proxy: TcpProxy, publishing: (key: string) => RegExp) {
  const digests = async () => {
    const body = (await (await fetch(`${r.url}/models/m/versions`)).json()) as {
      versions: { version: number; sha256: string }[];
    };
    return body.versions.map((v) => [v.version, v.sha256]);
  };
  const v1 = model('v1');
  proxy.dropReplyTo(publishing('m.tar.gz'));
  const created = await put(`${r.url}/models/m`, v1, { 'if-none-match': '*' });
  t.equal(created.status, 201, 'a create-only upload whose commit reply was lost is created (not 412)');
  const etag1 = created.headers.get('etag')!;

  const v2 = model('v2');
  proxy.dropReplyTo(publishing('m.tar.gz'));
  const replaced = await put(`${r.url}/models/m`, v2, { 'if-match': etag1 });
  t.equal(replaced.status, 200, 'a conditional replace whose commit reply was lost succeeds (not 412)');
  t.equal(((await replaced.json()) as { version: number }).version, 2);

  const v3 = model('v3');
  proxy.dropReplyTo(publishing('m.tar.gz'));
  const again = await put(`${r.url}/models/m`, v3);
  t.equal(
    ((await again.json()) as { version: number }).version,
    3,
    'a plain replace is committed once: v3, not v3 and v4',
  );
  t.same(
    await digests(),
    [
      [3, sha256(v3)],
      [2, sha256(v2)],
    ],
    'v2 kept in the one history slot, not pushed out by a duplicate',
  );

  // The reply lost is the history copy's.
  const v4 = model('v4');
  proxy.dropReplyTo(publishing('.history/m/v3.tar.gz'));
  t.equal(
    (await put(`${r.url}/models/m`, v4)).status,
    200,
    'a replace whose history copy reply was lost succeeds (not 404)',
  );
  t.same(await digests(), [
    [4, sha256(v4)],
    [3, sha256(v3)],
  ]);
  t.equal(sha256(await bytes(await fetch(`${r.url}/models/m?version=3`))), sha256(v3), 'v3 archived whole');

  // A rollback publishes with a condition too.
  proxy.dropReplyTo(publishing('m.tar.gz'));
  const rolled = await fetch(`${r.url}/models/m/rollback`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ version: 3 }),
  });
  t.equal(rolled.status, 200, 'a rollback whose reply was lost succeeds');
  t.equal(((await rolled.json()) as { version: number }).version, 5, 'once: v5, not v5 and v6');
  t.same(await digests(), [
    [5, sha256(v3)],
    [4, sha256(v4)],
  ]);
  const meta = (await (await fetch(`${r.url}/models/m/meta`)).json()) as Record<string, unknown>;
  t.notMatch(JSON.stringify(meta), /registry-write/, 'the write nonce stays internal');
}

t.test(
  'S3 commits whose reply is lost (the SDK sends them again): each upload is answered as it happened, no version doubled or lost',
  async (t) => {
    const { r, proxy } = await minioBehindProxy(t, { MODEL_HISTORY: '1', CACHE_WRITE_THROUGH: 'false' });
    // The request that completes the multipart copy onto a key (not the one that starts it).
    await lostReplies(t, r, proxy, (key) => new RegExp(`^POST /[^ /]+/${key.replace(/\./g, '\\.')}\\?uploadId=`, 'm'));
  },
);

t.test(
  'Azure copies whose reply is lost (the SDK sends them again): each upload is answered as it happened, no version doubled or lost',
  async (t) => {
    const azurite = await startAzurite();
    t.teardown(() => azurite.dispose());
    const { origin, pathname } = new URL(azurite.url);
    const proxy = await startProxy(origin);
    t.teardown(() => proxy.close());
    const r = await start(t, {
      ...azuriteEnv(azurite),
      AZURE_BLOB_ENDPOINT: `${proxy.url}${pathname}`,
      MODEL_HISTORY: '1',
      CACHE_WRITE_THROUGH: 'false',
    });
    // Copy Blob onto the key: a PUT of the key carrying x-ms-copy-source.
    await lostReplies(
      t,
      r,
      proxy,
      (key) => new RegExp(`^PUT /[^ ]+/${key.replace(/\./g, '\\.')}(\\?[^ ]*)? HTTP[\\s\\S]*x-ms-copy-source`, 'i'),
    );
  },
);

t.test(
  'S3: a lost commit reply that cannot be checked is a 503 (outcome unknown), never a retry that commits twice',
  async (t) => {
    const { r, proxy } = await minioBehindProxy(t, { CACHE_WRITE_THROUGH: 'false' });
    t.equal((await put(`${r.url}/models/m`, model('v1'))).status, 201);
    type Next = (args: unknown) => Promise<unknown>;
    const s3 = (
      r.app.registry.storage as unknown as {
        inner: { inner: { client: { middlewareStack: { add: (m: unknown, o: unknown) => void } } } };
      }
    ).inner.inner; // through the outage guard and the metrics
    let failHead = false;
    s3.client.middlewareStack.add(
      (next: Next, context: { commandName?: string }) => async (args: unknown) => {
        if (failHead && context.commandName === 'HeadObjectCommand') {
          failHead = false; // the HEAD that checks whether the lost commit landed
          throw Object.assign(new Error('socket hang up'), { name: 'TimeoutError', code: 'ECONNRESET' });
        }
        try {
          return await next(args);
        } catch (err) {
          // The SDK's retry of the Complete whose reply was lost has just failed against our object.
          if (context.commandName === 'CompleteMultipartUploadCommand') failHead = true;
          throw err;
        }
      },
      { step: 'initialize', name: 'failOneHead' },
    );
    proxy.dropReplyTo(/^POST \/[^ /]+\/m\.tar\.gz\?uploadId=/m);
    const v2 = model('v2');
    const res = await put(`${r.url}/models/m`, v2);
    t.equal(res.status, 503, 'the client is told to retry; the outcome is not known');
    const versions = (await (await fetch(`${r.url}/models/m/versions`)).json()) as {
      versions: { version: number; sha256: string }[];
    };
    t.same(
      versions.versions.map((v) => v.version),
      [2, 1],
      'committed once (v2), not twice',
    );
    t.equal(versions.versions[0]!.sha256, sha256(v2));
  },
);
