/**
 * Issue 21 §3: the local storage disk fills up during an upload. The answer is 507 STORAGE_FULL
 * (the raw ENOSPC of the upload stream used to win: 500), nothing partial stays, the previous
 * version is intact, and uploads that fit work again. The disk is a 4 MiB tmpfs mounted in a
 * mount namespace of the server's own (`unshare`), so no root is needed where user namespaces are.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { tgz } from '../helpers/archives.js';
import { isError, sha256 } from '../helpers/assert.js';
import { freePort } from '../helpers/process.js';
import { bytes, put, tempDir } from '../helpers/server.js';

t.test('a full storage disk during an upload is 507 STORAGE_FULL, and nothing partial stays', async (t) => {
  const dir = await tempDir(t, 'mr-full-');
  const storage = path.join(dir, 'models');
  await fs.mkdir(storage);
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const script = 'mount -t tmpfs -o size=4m tmpfs "$LOCAL_STORAGE_DIR" && exec "$NODE" dist/server.js';
  const child = spawn('unshare', [...(process.getuid?.() === 0 ? [] : ['-r']), '-m', 'sh', '-c', script], {
    env: {
      PATH: process.env.PATH,
      NODE: process.execPath,
      PORT: String(port),
      LOG_LEVEL: 'warn',
      LOCAL_STORAGE_DIR: storage,
      CACHE_DIR: path.join(dir, 'cache'),
      CACHE_WRITE_THROUGH: 'false',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  t.teardown(() => {
    child.kill('SIGKILL');
  });
  for (let i = 0; ; i++) {
    if (child.exitCode !== null || i === 100) throw new Error(`server did not start: ${out}`);
    if (
      await fetch(`${url}/healthz`).then(
        (r) => r.ok,
        () => false,
      )
    )
      break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const small = tgz([{ path: 'w.bin', body: randomBytes(100_000) }]);
  t.equal((await put(`${url}/models/m`, small)).status, 201, 'a small model fits');
  const big = tgz([{ path: 'w.bin', body: randomBytes(6 * 2 ** 20) }]); // random: gzip cannot shrink it
  for (const attempt of [1, 2]) {
    const res = await put(`${url}/models/m`, big);
    const body = await isError(t, res, 507, 'STORAGE_FULL');
    t.match(body.message, /disk is full.*nothing was stored/, `attempt ${attempt}: says so, and the fix`);
  }
  const current = await fetch(`${url}/models/m`);
  t.equal(sha256(await bytes(current)), sha256(small), 'the previous version is intact');
  t.equal(current.headers.get('x-model-version'), '1', 'and still current');
  t.equal((await put(`${url}/models/m`, small)).status, 200, 'the space is back: an upload that fits works');
  t.notMatch(out, /"level":50.*ENOSPC/, 'no 500 logged for it');
});
