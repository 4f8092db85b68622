/**
 * Crash hygiene: a registry process killed with SIGKILL in the middle of an upload leaves the old
 * version intact, and the next start sweeps its leftovers.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import t, { type Test } from 'tap';
import { model } from './helpers/archives.js';
import { sha256 } from './helpers/assert.js';
import { killHard, spawnServer } from './helpers/process.js';
import { bytes, put, tempDir } from './helpers/server.js';

const staged = async (dir: string) => {
  const names = (await fs.readdir(path.join(dir, '.uploads'))).filter((n) => n.endsWith('.part'));
  return Promise.all(names.map(async (n) => ({ name: n, size: (await fs.stat(path.join(dir, '.uploads', n))).size })));
};

async function until(what: string, check: () => Promise<boolean>, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`timed out waiting for ${what}`);
}

async function assertRecovered(t: Test, dir: string, v1: Buffer): Promise<void> {
  const server = await spawnServer(t, { LOCAL_STORAGE_DIR: dir });
  const res = await fetch(`${server.url}/models/m`);
  t.equal(res.status, 200);
  t.equal(res.headers.get('x-model-version'), '1', 'still version 1');
  t.equal(sha256(await bytes(res)), sha256(v1), 'old version intact');
  t.same(await staged(dir), [], 'leftover swept at start');
  const versions = (await (await fetch(`${server.url}/models/m/versions`)).json()) as { versions: unknown[] };
  t.equal(versions.versions.length, 1, 'no phantom version');
  t.equal((await put(`${server.url}/models/m`, model('after'))).status, 200, 'the model can be replaced again');
  await killHard(server);
}

t.test('killed between the staged write and the commit', async (t) => {
  const dir = await tempDir(t);
  const server = await spawnServer(t, { LOCAL_STORAGE_DIR: dir });
  const v1 = model('v1');
  t.equal((await put(`${server.url}/models/m`, v1)).status, 201);
  // Hold the model's lock as another replica would, so the upload is staged but cannot commit.
  const lock = path.join(dir, '.uploads', 'locks', `${encodeURIComponent('m.tar.gz')}.lock`);
  await fs.mkdir(lock);
  const v2 = model('v2', 512 * 1024);
  const upload = put(`${server.url}/models/m`, v2).catch((err: Error) => err);
  await until('the staged upload to be complete', async () => (await staged(dir)).some((s) => s.size === v2.length));
  await killHard(server);
  t.type(await upload, Error, 'the client saw the connection die');
  // The staged upload (and possibly the link made to archive v1) is left behind by the crash.
  t.ok(
    (await staged(dir)).some((s) => s.size === v2.length),
    'the staged upload is left behind by the crash',
  );
  await fs.rmdir(lock);
  await assertRecovered(t, dir, v1);
});

t.test('killed while the body is still arriving', async (t) => {
  const dir = await tempDir(t);
  const server = await spawnServer(t, { LOCAL_STORAGE_DIR: dir });
  const v1 = model('v1');
  await put(`${server.url}/models/m`, v1);
  const v2 = model('v2', 4 * 1024 * 1024);
  let sent = 0;
  const body = new ReadableStream({
    async pull(c) {
      if (sent >= v2.length / 2) return new Promise(() => {}); // stall halfway
      c.enqueue(new Uint8Array(v2.subarray(sent, sent + 65536)));
      sent += 65536;
    },
  });
  const upload = fetch(`${server.url}/models/m`, {
    method: 'PUT',
    body,
    duplex: 'half',
    headers: { 'content-type': 'application/gzip' },
  } as RequestInit).catch((err: Error) => err);
  await until('part of the body to be staged', async () => (await staged(dir)).some((s) => s.size > 0));
  await killHard(server);
  await upload;
  await assertRecovered(t, dir, v1);
});

t.test('killed while filling the cache: nothing partial is ever served', async (t) => {
  const dir = await tempDir(t);
  const cacheDir = await tempDir(t, 'mr-cache-');
  const env = { LOCAL_STORAGE_DIR: dir, CACHE_DIR: cacheDir, CACHE_WRITE_THROUGH: 'false' };
  const server = await spawnServer(t, env);
  const big = model('big', 64 * 1024 * 1024);
  t.equal((await put(`${server.url}/models/m`, big)).status, 201);
  const reading = fetch(`${server.url}/models/m`)
    .then((r) => r.arrayBuffer())
    .catch((err: Error) => err);
  const tmp = path.join(cacheDir, 'tmp');
  await until('a fill in progress', async () => (await fs.readdir(tmp)).some((n) => n.endsWith('.part')), 15_000);
  await killHard(server);
  await reading;
  const blobs = (await fs.readdir(path.join(cacheDir, 'blobs'))).filter((n) => n.endsWith('.tar.gz'));
  t.same(blobs, [], 'no cache entry from the interrupted fill');
  const again = await spawnServer(t, env);
  t.same(await fs.readdir(tmp), [], 'the partial fill is cleared at start');
  const res = await fetch(`${again.url}/models/m`);
  t.equal(res.headers.get('x-cache'), 'MISS');
  t.equal(sha256(await bytes(res)), sha256(big), 'the whole archive, refetched');
  await killHard(again);
});
