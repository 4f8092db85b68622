/**
 * Graceful shutdown of the real process (dist/server.js): SIGTERM lets requests in flight finish,
 * exits 0, and after SHUTDOWN_GRACE aborts the rest without leaving anything partial behind.
 */
import { once } from 'node:events';
import fs from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import t from 'tap';
import { model } from '../helpers/archives.js';
import { sha256 } from '../helpers/assert.js';
import { ensureBuilt } from '../helpers/build.js';
import { type ServerProcess, spawnServer, until } from '../helpers/process.js';
import { put, start, tempDir } from '../helpers/server.js';

ensureBuilt();

const staged = async (dir: string) => {
  const names = await fs.readdir(path.join(dir, '.uploads')).catch(() => [] as string[]);
  return names.filter((n) => n.endsWith('.part'));
};

const exited = (p: ServerProcess) =>
  new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    if (p.child.exitCode !== null || p.child.signalCode !== null)
      resolve({ code: p.child.exitCode, signal: p.child.signalCode });
    else p.child.once('exit', (code, signal) => resolve({ code, signal }));
  });

/** A PUT whose body sends `first` bytes, then waits for release() before sending the rest. */
function heldUpload(url: string, body: Buffer, first: number) {
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  let sent = 0;
  const stream = new ReadableStream<Uint8Array>({
    async pull(c) {
      if (sent >= body.length) return c.close();
      if (sent >= first) await released;
      const chunk = body.subarray(sent, Math.min(sent + 65536, body.length));
      c.enqueue(new Uint8Array(chunk));
      sent += chunk.length;
    },
  });
  const response: Promise<Response | Error> = fetch(url, {
    method: 'PUT',
    body: stream,
    duplex: 'half',
    headers: { 'content-type': 'application/gzip' },
  } as RequestInit).catch((err: Error) => err);
  return { response, release };
}

t.test('an upload in flight at SIGTERM completes, then the process exits 0', async (t) => {
  const dir = await tempDir(t);
  const server = await spawnServer(t, { LOCAL_STORAGE_DIR: dir });
  const v1 = model('v1', 4 * 1024 * 1024);
  const upload = heldUpload(`${server.url}/models/m`, v1, v1.length / 2);
  await until('part of the body to be staged', async () => (await staged(dir)).length > 0);
  const exit = exited(server);
  server.child.kill('SIGTERM');
  await until('the shutdown to start', () => server.output().includes('shutting down'));
  const refused = await fetch(`${server.url}/healthz`).then(
    (r) => r.status,
    (err: Error) => err.name,
  );
  t.not(refused, 200, 'no new requests are served while shutting down');
  t.equal(server.child.exitCode, null, 'still running while the upload is in flight');

  upload.release();
  const res = await upload.response;
  const answered = Date.now();
  if (res instanceof Error) throw res;
  t.equal(res.status, 201, 'the upload completes');
  t.equal(res.headers.get('connection'), 'close', 'the connection is not kept alive');
  t.equal(((await res.json()) as { sha256: string }).sha256, sha256(v1));
  t.same(await exit, { code: 0, signal: null }, 'exit code 0');
  t.ok(Date.now() - answered < 3000, 'the process exits as soon as the upload is done');
  t.equal(sha256(await fs.readFile(path.join(dir, 'm.tar.gz'))), sha256(v1), 'the model is stored whole');
  t.same(await staged(dir), [], 'nothing left in .uploads');
  t.match(server.output(), /"msg":"stopped"/);
});

t.test('a download in flight at SIGTERM is sent whole', async (t) => {
  const dir = await tempDir(t);
  const server = await spawnServer(t, { LOCAL_STORAGE_DIR: dir });
  const big = model('big', 16 * 1024 * 1024);
  t.equal((await put(`${server.url}/models/m`, big)).status, 201);
  const res = await fetch(`${server.url}/models/m`);
  t.equal(res.status, 200);
  const reader = res.body!.getReader();
  const first = await reader.read();
  const exit = exited(server);
  server.child.kill('SIGTERM');
  await until('the shutdown to start', () => server.output().includes('shutting down'));
  await new Promise((r) => setTimeout(r, 300));
  const chunks = [Buffer.from(first.value!)];
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(Buffer.from(value));
  }
  t.equal(sha256(Buffer.concat(chunks)), sha256(big), 'the whole archive');
  t.same(await exit, { code: 0, signal: null }, 'exit code 0');
});

t.test('after SHUTDOWN_GRACE a stalled upload is aborted and nothing of it remains', async (t) => {
  const dir = await tempDir(t);
  const server = await spawnServer(t, { LOCAL_STORAGE_DIR: dir, SHUTDOWN_GRACE: '1s' });
  const v1 = model('v1');
  t.equal((await put(`${server.url}/models/m`, v1)).status, 201);
  const v2 = model('v2', 4 * 1024 * 1024);
  const upload = heldUpload(`${server.url}/models/m`, v2, v2.length / 2); // never released
  await until('part of the body to be staged', async () => (await staged(dir)).length > 0);
  const exit = exited(server);
  const signalled = Date.now();
  server.child.kill('SIGTERM');
  t.same(await exit, { code: 0, signal: null }, 'exit code 0');
  const took = Date.now() - signalled;
  t.ok(took >= 900, `waited for the grace (${took} ms)`);
  t.ok(took < 2500, `exited within ~2 s (${took} ms)`);
  t.type(await upload.response, Error, 'the client sees the upload cut off');
  t.equal(sha256(await fs.readFile(path.join(dir, 'm.tar.gz'))), sha256(v1), 'the model is unchanged');
  t.same(await staged(dir), [], 'no leftover in .uploads');
  t.match(server.output(), /shutdown grace is over/);
});

t.test('idle keep-alive connections do not delay the shutdown', async (t) => {
  const dir = await tempDir(t);
  const server = await spawnServer(t, { LOCAL_STORAGE_DIR: dir });
  // fetch keeps its connections alive; Fastify's keepAliveTimeout is 72 s.
  for (let i = 0; i < 3; i++) t.equal((await fetch(`${server.url}/healthz`)).status, 200);
  const exit = exited(server);
  const signalled = Date.now();
  server.child.kill('SIGINT');
  t.same(await exit, { code: 0, signal: null });
  t.ok(Date.now() - signalled < 2000, 'exits at once');
});

t.test(
  'a request that arrives on an open connection once shutdown began: 503 SHUTTING_DOWN in our error shape, and the connection closes',
  async (t) => {
    const { app, url } = await start(t);
    const socket = net.connect(Number(new URL(url).port), '127.0.0.1');
    await once(socket, 'connect');
    let received = '';
    socket.on('data', (d: Buffer) => (received += d.toString('latin1')));
    // Headers under way: the connection is not idle, so the shutdown does not close it.
    socket.write('GET /healthz HTTP/1.1\r\nHost: registry\r\n');
    await new Promise((r) => setTimeout(r, 100));
    const closed = app.close();
    await new Promise((r) => setTimeout(r, 100));
    socket.write('\r\n');
    await once(socket, 'end');
    await closed;
    const [head, body] = received.split('\r\n\r\n');
    t.match(head, /^HTTP\/1\.1 503 /);
    t.match(head, /\r\nconnection: close/i);
    t.match(head, /\r\nretry-after: 1/i);
    t.match(head, /\r\ncontent-type: application\/json/i);
    const error = JSON.parse(body!) as { error: string; message: string };
    t.equal(error.error, 'SHUTTING_DOWN');
    t.match(error.message, /shutting down: retry/);
  },
);

t.test('started through a symlink (a current -> release-N deploy layout), the server runs', async (t) => {
  const dir = await tempDir(t);
  const link = path.join(dir, 'current');
  await fs.symlink(process.cwd(), link);
  const server = await spawnServer(
    t,
    { LOCAL_STORAGE_DIR: path.join(dir, 'models') },
    path.join(link, 'dist', 'server.js'),
  );
  t.equal((await fetch(`${server.url}/healthz`)).status, 200);
  const exit = exited(server);
  server.child.kill('SIGTERM');
  t.same(await exit, { code: 0, signal: null });
});

t.test('`npm start` passes SIGTERM on to the server: it drains and exits, never left running behind npm', async (t) => {
  const dir = await tempDir(t);
  const { freePort } = await import('../helpers/process.js');
  const port = await freePort();
  const { spawn } = await import('node:child_process');
  const npm = spawn('npm', ['start', '--silent'], {
    cwd: path.resolve(import.meta.dirname, '../..'),
    env: {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      PORT: String(port),
      LOCAL_STORAGE_DIR: dir,
      CACHE_DIR: await tempDir(t, 'mr-cache-'),
    },
    stdio: 'ignore',
    detached: true, // its own process group: the teardown can kill a server left behind npm
  });
  const url = `http://127.0.0.1:${port}`;
  t.teardown(() => {
    try {
      process.kill(-npm.pid!, 'SIGKILL');
    } catch {}
  });
  await until(
    'npm start to serve',
    () =>
      fetch(`${url}/healthz`).then(
        (r) => r.ok,
        () => false,
      ),
    30_000,
  );
  npm.kill('SIGTERM'); // what `docker stop`, systemd or a supervisor sends to the process it started
  await once(npm, 'exit');
  await until(
    'the server to stop',
    () =>
      fetch(`${url}/healthz`).then(
        () => false,
        () => true,
      ),
    10_000,
  );
  t.pass('nothing serves on the port any more');
});
