/**
 * Slow and greedy clients: headers sent a byte at a time (slowloris), upload bodies that stall,
 * idle keep-alive connections, more connections than allowed — each cut by a configurable limit,
 * while slow-but-steady uploads and long polls (?wait=) are left alone.
 *
 * At MAX_CONNECTIONS, silent connections make room for new ones, so that idle sockets cannot
 * lock clients out; only when every connection is busy is a new one refused.
 */
import { createConnection, type Socket } from 'node:net';
import t, { type Test } from 'tap';
import { KNOWN_VARIABLES, loadConfig } from '../../src/config.js';
import { model } from '../helpers/archives.js';
import { isError, sha256, unchanged } from '../helpers/assert.js';
import { eventually, parseResponse, sleep } from '../helpers/hostile.js';
import { bytes, put, start } from '../helpers/server.js';

const SETTINGS = [
  'HEADERS_TIMEOUT',
  'BODY_IDLE_TIMEOUT',
  'KEEP_ALIVE_TIMEOUT',
  'MAX_CONNECTIONS',
  'MAX_REQUESTS_PER_SOCKET',
];

t.test('the timeout and connection settings exist', (t) => {
  t.same(
    SETTINGS.filter((s) => !KNOWN_VARIABLES.includes(s)),
    [],
    'config.ts knows every setting',
  );
  t.end();
});

interface Conn {
  socket: Socket;
  data: () => Buffer;
  /** Resolves when the server closes the connection, with the ms it stayed open. */
  closed: Promise<number>;
}

function connect(url: string): Promise<Conn> {
  const { port } = new URL(url);
  return new Promise((resolve, reject) => {
    const began = Date.now();
    const socket = createConnection({ host: '127.0.0.1', port: Number(port) });
    const chunks: Buffer[] = [];
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', () => {});
    const closed = new Promise<number>((done) => socket.once('close', () => done(Date.now() - began)));
    socket.once('connect', () => resolve({ socket, data: () => Buffer.concat(chunks), closed }));
    socket.once('error', reject);
  });
}

const within = <T>(p: Promise<T>, ms: number) => Promise.race([p, sleep(ms).then(() => undefined)]);

t.test('configuration: defaults, units and errors', async (t) => {
  const config = loadConfig({}) as unknown as Record<string, unknown>;
  t.equal(config.HEADERS_TIMEOUT, 30_000, 'HEADERS_TIMEOUT defaults to 30s');
  t.equal(config.BODY_IDLE_TIMEOUT, 60_000, 'BODY_IDLE_TIMEOUT defaults to 60s');
  t.equal(config.KEEP_ALIVE_TIMEOUT, 72_000, 'KEEP_ALIVE_TIMEOUT defaults to 72s');
  t.equal(config.MAX_CONNECTIONS, 10_000, 'MAX_CONNECTIONS defaults to 10000');
  t.equal(config.MAX_REQUESTS_PER_SOCKET, 0, 'MAX_REQUESTS_PER_SOCKET defaults to 0 (no limit)');
  const custom = loadConfig({
    HEADERS_TIMEOUT: '500ms',
    BODY_IDLE_TIMEOUT: '2m',
    MAX_CONNECTIONS: '0',
  }) as unknown as Record<string, unknown>;
  t.same([custom.HEADERS_TIMEOUT, custom.BODY_IDLE_TIMEOUT, custom.MAX_CONNECTIONS], [500, 120_000, 0]);
  for (const [variable, value] of [
    ['HEADERS_TIMEOUT', 'soon'],
    ['BODY_IDLE_TIMEOUT', '-1s'],
    ['KEEP_ALIVE_TIMEOUT', '1 fortnight'],
    ['MAX_CONNECTIONS', 'many'],
    ['MAX_REQUESTS_PER_SOCKET', '-1'],
  ] as const) {
    t.throws(
      () => loadConfig({ [variable]: value }),
      { name: 'ConfigError', message: new RegExp(`^${variable}=`) },
      `${variable}=${value} is refused, naming the variable`,
    );
  }
});

t.test('slowloris: headers trickling in are cut at HEADERS_TIMEOUT; other clients are served meanwhile', async (t) => {
  const r = await start(t, { HEADERS_TIMEOUT: '1s' });
  const conns = await Promise.all(Array.from({ length: 20 }, () => connect(r.url)));
  let trickling = true;
  const trickle = (async () => {
    for (const c of conns) c.socket.write('GET /models HTTP/1.1\r\nHost: x\r\n');
    for (let i = 0; trickling && i < 100; i++) {
      for (const c of conns) if (!c.socket.destroyed) c.socket.write(`X-${i}: y\r\n`);
      await sleep(200);
    }
  })();
  const healthy = await fetch(`${r.url}/healthz`);
  t.equal(healthy.status, 200, 'a normal client is served while 20 connections trickle headers');
  const lifetimes = await within(Promise.all(conns.map((c) => c.closed)), 15_000);
  trickling = false;
  await trickle;
  t.ok(lifetimes, 'every trickling connection was closed by the server');
  if (!lifetimes) return;
  t.ok(Math.min(...lifetimes) >= 900, `not before HEADERS_TIMEOUT (${Math.min(...lifetimes)} ms)`);
  t.ok(Math.max(...lifetimes) < 8000, `soon after it (${Math.max(...lifetimes)} ms; generous for a busy machine)`);
  const answer = parseResponse(conns[0]!.data());
  t.ok(answer.dropped || answer.status === 408, `answered 408 or closed (${answer.status})`);
  t.equal((await fetch(`${r.url}/healthz`)).status, 200, 'the server is fine afterwards');
});

t.test('an upload body that stalls is refused with 408 after BODY_IDLE_TIMEOUT; nothing is stored', async (t) => {
  const r = await start(t, { BODY_IDLE_TIMEOUT: '1s', HEADERS_TIMEOUT: '5s' });
  const v1 = model('v1');
  t.equal((await put(`${r.url}/models/m`, v1)).status, 201);
  const v2 = model('v2', 256 * 1024);
  for (const sent of [0, Math.floor(v2.length * 0.4)]) {
    await t.test(`stalled after ${sent} of ${v2.length} bytes`, async (t) => {
      const c = await connect(r.url);
      c.socket.write(
        `PUT /models/m HTTP/1.1\r\nHost: x\r\nContent-Type: application/gzip\r\nContent-Length: ${v2.length}\r\n\r\n`,
      );
      c.socket.write(v2.subarray(0, sent));
      const lifetime = await within(c.closed, 15_000);
      t.ok(lifetime !== undefined, 'the server ended the stalled upload');
      t.ok((lifetime ?? 0) >= 900, `not before BODY_IDLE_TIMEOUT (${lifetime} ms)`);
      const answer = parseResponse(c.data());
      t.equal(answer.status, 408, 'answered 408');
      t.match(
        JSON.parse(answer.body || '{}'),
        { error: 'REQUEST_TIMEOUT', message: /BODY_IDLE_TIMEOUT/ },
        'a JSON error naming the setting',
      );
      t.ok(
        await eventually(async () => {
          for await (const info of r.app.registry.storage.list('.uploads/'))
            if (info.key.endsWith('.part')) return false;
          return true;
        }),
        'the staged upload was discarded',
      );
      await unchanged(t, r, 'm', v1, 1);
    });
  }
});

t.test('a slow but steady upload is not cut: the limit is on silence, not on duration', async (t) => {
  const r = await start(t, { BODY_IDLE_TIMEOUT: '1s' });
  const v = model('steady', 96 * 1024);
  const chunks = Math.ceil(v.length / 8192);
  let i = 0;
  const body = new ReadableStream({
    async pull(c) {
      if (i >= chunks) return c.close();
      await sleep(250); // 250 ms between chunks: the upload takes several BODY_IDLE_TIMEOUTs
      c.enqueue(new Uint8Array(v.subarray(i * 8192, ++i * 8192)));
    },
  });
  const began = Date.now();
  const res = await fetch(`${r.url}/models/s`, {
    method: 'PUT',
    body,
    duplex: 'half',
    headers: { 'content-type': 'application/gzip' },
  } as RequestInit);
  t.equal(res.status, 201, `accepted after ${Date.now() - began} ms`);
  t.ok(Date.now() - began > 2000, 'the upload lasted longer than the idle limit');
  t.equal(sha256(await bytes(await fetch(`${r.url}/models/s`))), sha256(v));
});

t.test('long polls (?wait=) outlive every timeout', async (t) => {
  const r = await start(t, { BODY_IDLE_TIMEOUT: '1s', HEADERS_TIMEOUT: '1s', KEEP_ALIVE_TIMEOUT: '500ms' });
  const v = model('w');
  await put(`${r.url}/models/w`, v);
  const began = Date.now();
  const res = await fetch(`${r.url}/models/w?wait=3`, { headers: { 'if-none-match': `"sha256:${sha256(v)}"` } });
  t.equal(res.status, 304, 'the poll ends normally, unchanged');
  t.ok(Date.now() - began >= 2900, `after the full wait (${Date.now() - began} ms)`);
});

t.test('idle keep-alive connections are closed after KEEP_ALIVE_TIMEOUT', async (t) => {
  const r = await start(t, { KEEP_ALIVE_TIMEOUT: '500ms' });
  const c = await connect(r.url);
  c.socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
  t.ok(await eventually(() => parseResponse(c.data()).status === 200, 5000), 'served on a kept-alive connection');
  const lifetime = await within(c.closed, 10_000);
  t.ok(lifetime !== undefined && lifetime < 6000, `closed by the server while idle (${lifetime} ms)`);
});

t.test(
  'MAX_CONNECTIONS: when every connection is busy, more are refused; capacity returns when one closes',
  async (t) => {
    const r = await start(t, { MAX_CONNECTIONS: '4' });
    // Busy: each holds a long poll on a model that does not change.
    const archive = model('held', 4096);
    await put(`${r.url}/models/held`, archive);
    const held = await Promise.all(Array.from({ length: 4 }, () => connect(r.url)));
    for (const c of held) {
      c.socket.write(
        `GET /models/held?wait=20 HTTP/1.1\r\nHost: x\r\nIf-None-Match: "sha256:${sha256(archive)}"\r\n\r\n`,
      );
    }
    await sleep(300);
    const extra = await connect(r.url);
    extra.socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    const lifetime = await within(extra.closed, 5000);
    t.ok(lifetime !== undefined, 'the fifth connection is closed by the server');
    t.equal(parseResponse(extra.data()).status, 0, 'without being served');
    t.ok(
      held.every((c) => !c.socket.destroyed && c.data().length === 0),
      'the busy ones are left alone',
    );
    held[0]!.socket.destroy();
    t.ok(
      await eventually(
        async () =>
          (await fetch(`${r.url}/healthz`).then(
            (res) => res.status,
            () => 0,
          )) === 200,
        5000,
      ),
      'served again once a connection is freed',
    );
    for (const c of held) c.socket.destroy();
  },
);

t.test('MAX_CONNECTIONS: silent and idle connections cannot lock clients out', async (t) => {
  const r = await start(t, { MAX_CONNECTIONS: '20', HEADERS_TIMEOUT: '30s' });
  // An attacker holds every slot: ten connections that never send a byte, five that send half a
  // request line, five kept alive after one request.
  const silent = await Promise.all(Array.from({ length: 10 }, () => connect(r.url)));
  const partial = await Promise.all(Array.from({ length: 5 }, () => connect(r.url)));
  for (const c of partial) c.socket.write('GET /heal');
  const idle = await Promise.all(Array.from({ length: 5 }, () => connect(r.url)));
  for (const c of idle) c.socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
  t.ok(
    await eventually(() => idle.every((c) => /HTTP\/1\.1 200/.test(c.data().toString('latin1'))), 5000),
    'the kept-alive ones were served',
  );
  // An upload in progress is busy: it is never the one closed.
  const upload = await connect(r.url);
  const archive = model('slow-upload', 64 * 1024);
  upload.socket.write(
    `PUT /models/steady HTTP/1.1\r\nHost: x\r\nContent-Type: application/gzip\r\nContent-Length: ${archive.length}\r\nConnection: close\r\n\r\n`,
  );
  upload.socket.write(archive.subarray(0, 1000));
  await sleep(200);
  // Real clients still get in, at once, many times over.
  for (let i = 0; i < 30; i++) {
    const began = Date.now();
    const status = await fetch(`${r.url}/healthz`).then(
      (res) => res.status,
      () => 0,
    );
    t.equal(status, 200, `request ${i} served`);
    t.ok(Date.now() - began < 2000, `request ${i} without waiting for HEADERS_TIMEOUT (${Date.now() - began} ms)`);
  }
  const attackers = [...silent, ...partial, ...idle];
  t.ok(
    attackers.filter((c) => c.socket.destroyed || c.socket.readableEnded).length > 0,
    'silent connections made room',
  );
  t.notOk(upload.socket.destroyed, 'the upload in progress was left alone');
  upload.socket.write(archive.subarray(1000));
  const uploaded = await within(upload.closed, 10_000);
  t.ok(uploaded !== undefined, 'the upload finished');
  t.equal(parseResponse(upload.data()).status, 201, 'and was stored');
  t.ok(sha256(await bytes(await fetch(`${r.url}/models/steady`))) === sha256(archive), 'whole');
  for (const c of attackers) c.socket.destroy();
});

t.test('MAX_REQUESTS_PER_SOCKET: a kept-alive connection is closed after that many requests', async (t) => {
  const r = await start(t, { MAX_REQUESTS_PER_SOCKET: '3' });
  const c = await connect(r.url);
  for (let i = 0; i < 3; i++) c.socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
  t.ok(
    await eventually(
      () =>
        (
          c
            .data()
            .toString('latin1')
            .match(/HTTP\/1\.1 200/g) ?? []
        ).length === 3,
      5000,
    ),
    'three requests answered',
  );
  const text = c.data().toString('latin1');
  const responses = text.split(/(?=HTTP\/1\.1 )/);
  t.notMatch(responses[0], /connection: close/i, 'the first response keeps the connection');
  t.match(responses[2], /connection: close/i, 'the third says the connection closes');
  c.socket.destroy();
});

t.test('the default limits do not disturb normal use', async (t: Test) => {
  const r = await start(t);
  const v = model('normal', 512 * 1024);
  t.equal((await put(`${r.url}/models/n`, v)).status, 201);
  const gets = await Promise.all(Array.from({ length: 32 }, () => fetch(`${r.url}/models/n`).then(bytes)));
  t.ok(
    gets.every((b) => b.equals(v)),
    '32 concurrent downloads, all whole',
  );
  await isError(t, await fetch(`${r.url}/models/none`), 404, 'MODEL_NOT_FOUND');
});
