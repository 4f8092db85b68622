/**
 * Issue 21 §6, stopping the process: one stop request delivered twice within milliseconds
 * (`kill -TERM -- -<pgid>` on `npm start`: once directly, once forwarded by npm) lets the upload
 * in flight finish; a SIGTERM a second or more later, or a SIGINT, aborts it; and a server whose
 * stdout nobody reads any more (`node dist/server.js | head -2`) still exits on SIGTERM.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import t, { type Test } from 'tap';
import { model } from '../helpers/archives.js';
import { sha256 } from '../helpers/assert.js';
import { ensureBuilt } from '../helpers/build.js';
import { freePort, type ServerProcess, spawnServer, until } from '../helpers/process.js';
import { tempDir } from '../helpers/server.js';

ensureBuilt();

const exited = (p: ServerProcess['child']) =>
  new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    if (p.exitCode !== null || p.signalCode !== null) resolve({ code: p.exitCode, signal: p.signalCode });
    else p.once('exit', (code, signal) => resolve({ code, signal }));
  });

/** A PUT whose body sends half, then waits for release() before sending the rest. */
function heldUpload(url: string, body: Buffer) {
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  let sent = 0;
  const stream = new ReadableStream<Uint8Array>({
    async pull(c) {
      if (sent >= body.length) return c.close();
      if (sent >= body.length / 2) await released;
      const chunk = body.subarray(sent, Math.min(sent + 65536, body.length));
      c.enqueue(new Uint8Array(chunk));
      sent += chunk.length;
    },
  });
  const response = fetch(url, {
    method: 'PUT',
    body: stream,
    duplex: 'half',
    headers: { 'content-type': 'application/gzip' },
  } as RequestInit).catch((err: Error) => err);
  return { response, release };
}

const staged = async (dir: string) =>
  (await fs.readdir(path.join(dir, '.uploads')).catch(() => [] as string[])).filter((n) => n.endsWith('.part'));

async function uploadAndSignal(t: Test, signals: { signal: NodeJS.Signals; afterMs: number }[]) {
  const dir = await tempDir(t);
  const server = await spawnServer(t, { LOCAL_STORAGE_DIR: dir });
  const body = model('v1', 4 * 1024 * 1024);
  const upload = heldUpload(`${server.url}/models/m`, body);
  await until('part of the body to be staged', async () => (await staged(dir)).length > 0);
  const exit = exited(server.child);
  let at = 0;
  for (const { signal, afterMs } of signals) {
    await new Promise((r) => setTimeout(r, afterMs - at));
    at = afterMs;
    server.child.kill(signal);
  }
  await new Promise((r) => setTimeout(r, 300));
  upload.release();
  const res = await upload.response;
  return { dir, server, body, res, exit };
}

t.test('SIGTERM twice within milliseconds is one stop request: the upload in flight completes', async (t) => {
  const { dir, body, res, exit, server } = await uploadAndSignal(t, [
    { signal: 'SIGTERM', afterMs: 0 },
    { signal: 'SIGTERM', afterMs: 5 },
  ]);
  if (res instanceof Error) throw res;
  t.equal(res.status, 201, 'the upload completes');
  t.same(await exit, { code: 0, signal: null }, 'exit code 0');
  t.equal(sha256(await fs.readFile(path.join(dir, 'm.tar.gz'))), sha256(body), 'stored whole');
  t.match(server.output(), /the same stop request again/, 'the repeat is logged as such');
});

t.test('a SIGTERM a second or more after the first aborts the upload in flight', async (t) => {
  const { dir, res, exit } = await uploadAndSignal(t, [
    { signal: 'SIGTERM', afterMs: 0 },
    { signal: 'SIGTERM', afterMs: 1200 },
  ]);
  t.ok(res instanceof Error || res.status >= 500, 'the upload is cut off');
  t.same(await exit, { code: 0, signal: null }, 'exit code 0');
  await t.rejects(fs.stat(path.join(dir, 'm.tar.gz')), 'nothing stored');
  t.same(await staged(dir), [], 'nothing left in .uploads');
});

t.test('SIGINT after SIGTERM aborts at once, however soon', async (t) => {
  const { res, exit } = await uploadAndSignal(t, [
    { signal: 'SIGTERM', afterMs: 0 },
    { signal: 'SIGINT', afterMs: 5 },
  ]);
  t.ok(res instanceof Error || res.status >= 500, 'the upload is cut off');
  t.same(await exit, { code: 0, signal: null });
});

t.test('SIGTERM exits when nobody reads stdout any more (node dist/server.js | head -2)', async (t) => {
  const dir = await tempDir(t);
  const port = await freePort();
  const child = spawn(process.execPath, ['dist/server.js'], {
    env: {
      PATH: process.env.PATH,
      PORT: String(port),
      LOG_LEVEL: 'info',
      LOCAL_STORAGE_DIR: dir,
      CACHE_DIR: path.join(dir, '.cache'),
    },
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  // Read two lines, as head -2 does, then close the pipe.
  const lines: string[] = [];
  const reader = createInterface({ input: child.stdout });
  await new Promise<void>((resolve) =>
    reader.on('line', (line) => {
      lines.push(line);
      if (lines.length === 2) resolve();
    }),
  );
  reader.close();
  child.stdout.destroy();
  // The second line is 'model registry ready'. No request now: its log line would meet the closed
  // pipe early; the hang was the shutdown's lines, still pending at exit.
  await new Promise((r) => setTimeout(r, 200));
  const exit = exited(child);
  const began = Date.now();
  child.kill('SIGTERM');
  const timeout = setTimeout(() => child.kill('SIGKILL'), 10_000);
  const result = await exit;
  clearTimeout(timeout);
  t.same(result, { code: 0, signal: null }, `exits 0 by itself, in ${Date.now() - began} ms`);
  t.ok(Date.now() - began < 5000, 'within a few seconds');
});
