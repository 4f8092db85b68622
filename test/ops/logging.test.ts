/**
 * Logs: one JSON line per request with the fields operators need, and no secret anywhere —
 * not in request lines, not in objects or errors logged by the code, not in startup error lines.
 */
import { spawn } from 'node:child_process';
import { Writable } from 'node:stream';
import t, { type Test } from 'tap';
import { buildApp, loggerOptions } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';
import { CENSOR, scrub, secretValues } from '../../src/util/redact.js';
import { model } from '../helpers/archives.js';
import { ensureBuilt } from '../helpers/build.js';
import { put, tempDir } from '../helpers/server.js';

type Line = Record<string, unknown>;

class Capture extends Writable {
  text = '';
  override _write(chunk: Buffer, _encoding: string, done: () => void): void {
    this.text += chunk.toString();
    done();
  }
  get lines(): Line[] {
    return this.text
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Line);
  }
}

const TOKEN = 'tok-Wr1te-0123456789abcdef';
const READ_TOKEN = 'tok-Re4d-fedcba9876543210';
const SECRETS = {
  AUTH_TOKENS: `write:${TOKEN},read:${READ_TOKEN}`,
  AWS_SECRET_ACCESS_KEY: 'aws-SeCrEt-wJalrXUtnFEMI/K7MDENG',
  AWS_SESSION_TOKEN: 'aws-SeSsIoN-IQoJb3JpZ2luX2VjEJr',
  AZURE_ACCOUNT_KEY: 'YXp1cmUta2V5LXNlY3JldC12YWx1ZS0xMjM0NTY3ODkwYWJjZGVm',
  AZURE_STORAGE_CONNECTION_STRING:
    'DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=Q29ubmVjdGlvblN0cmluZ0tleVNlY3JldA==;EndpointSuffix=core.windows.net',
  MONGODB_URI: 'mongodb://registry:m0ngo-Pa55w0rd@db.internal:27017/?authSource=admin',
};
/** Every value that must never appear in a log or an error line. */
const NEVER = [TOKEN, READ_TOKEN, ...Object.values(SECRETS), 'Q29ubmVjdGlvblN0cmluZ0tleVNlY3JldA==', 'm0ngo-Pa55w0rd'];

function assertNoSecret(t: Test, text: string, what: string): void {
  const leaked = NEVER.filter((s) => text.includes(s));
  t.same(leaked, [], `no secret in ${what}`);
}

async function startLogged(t: Test, env: Record<string, string> = {}) {
  const dir = await tempDir(t);
  const config = loadConfig({
    LOCAL_STORAGE_DIR: dir,
    CACHE_DIR: await tempDir(t, 'mr-cache-'),
    LOG_LEVEL: 'info',
    ...env,
  });
  const capture = new Capture();
  const app = await buildApp({
    config,
    logger: loggerOptions(config, { secrets: secretValues(env), stream: capture }),
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  t.teardown(() => {
    app.server.closeAllConnections();
    return app.close();
  });
  const address = app.server.address() as { port: number };
  return { app, capture, url: `http://127.0.0.1:${address.port}` };
}

t.test('one line per request with id, method, route, model, status, bytes and duration', async (t) => {
  const { capture, url } = await startLogged(t);
  const body = model('m1');
  t.equal((await put(`${url}/models/m1`, body, { 'x-request-id': 'upload-42' })).status, 201);
  const res = await fetch(`${url}/models/m1`);
  t.equal(res.status, 200);
  t.ok(res.headers.get('x-request-id'), 'the request id is returned');
  const size = (await res.arrayBuffer()).byteLength;
  t.equal((await fetch(`${url}/healthz`)).status, 200);
  t.equal((await fetch(`${url}/no/such/route`)).status, 404);

  const lines = capture.lines;
  t.same(
    lines.filter((l) => l.msg === 'incoming request' || l.msg === 'request completed'),
    [],
    'no Fastify default request lines',
  );
  const requests = lines.filter((l) => l.msg === 'request');
  t.equal(requests.length, 4, 'exactly one line per request');
  const [up, down, health, missing] = requests as [Line, Line, Line, Line];
  t.match(up, {
    reqId: 'upload-42',
    method: 'PUT',
    route: '/models/:name',
    model: 'm1',
    status: 201,
    bytesIn: body.length,
    url: '/models/m1',
  });
  t.type(up.durationMs, 'number');
  t.notOk('bytesOut' in up && up.bytesOut === undefined);
  t.match(down, { method: 'GET', route: '/models/:name', model: 'm1', status: 200, bytesOut: size });
  t.equal(down.reqId, res.headers.get('x-request-id'), 'the line carries the id the client got');
  t.notOk('bytesIn' in down, 'no bytes in for a GET without a body');
  t.match(health, { method: 'GET', route: '/healthz', status: 200 });
  t.notOk('model' in health);
  t.match(missing, { method: 'GET', status: 404, url: '/no/such/route' });
  t.notOk('route' in missing, 'an unmatched URL has no route template');
  t.equal(new Set(requests.map((l) => l.reqId)).size, 4, 'ids are distinct');
});

t.test('an aborted download is logged once, as aborted', async (t) => {
  const { capture, url } = await startLogged(t);
  t.equal((await put(`${url}/models/big`, model('big', 8 * 1024 * 1024))).status, 201);
  const controller = new AbortController();
  const res = await fetch(`${url}/models/big`, { signal: controller.signal });
  await res.body!.getReader().read();
  controller.abort();
  const deadline = Date.now() + 5000;
  while (!capture.lines.some((l) => l.msg === 'request aborted') && Date.now() < deadline)
    await new Promise((r) => setTimeout(r, 20));
  const lines = capture.lines.filter((l) => l.model === 'big' && l.method === 'GET');
  t.equal(lines.length, 1, 'one line');
  t.match(lines[0], { msg: 'request aborted', aborted: true, status: 200 });
});

t.test('an upload cut off by its client is logged with a plain reason, not an error spread into fields', async (t) => {
  const { capture, url } = await startLogged(t);
  const controller = new AbortController();
  const archive = model('cut', 8 * 1024 * 1024);
  let sent = 0;
  const body = new ReadableStream<Uint8Array>({
    async pull(c) {
      if (sent >= 2 * 1024 * 1024) {
        await new Promise((r) => setTimeout(r, 100));
        controller.abort();
        return;
      }
      c.enqueue(new Uint8Array(archive.subarray(sent, sent + 65536)));
      sent += 65536;
    },
  });
  await fetch(`${url}/models/cut`, {
    method: 'PUT',
    body,
    duplex: 'half',
    signal: controller.signal,
    headers: { 'content-type': 'application/gzip' },
  } as RequestInit).catch(() => {});
  const deadline = Date.now() + 5000;
  while (!capture.lines.some((l) => l.msg === 'client went away') && Date.now() < deadline)
    await new Promise((r) => setTimeout(r, 20));
  const line = capture.lines.find((l) => l.msg === 'client went away');
  t.ok(line, 'logged');
  t.type(line?.reason, 'string');
  t.notOk(
    line && 'err' in line && typeof line.err === 'object' && line.err !== null && '0' in (line.err as object),
    'no field per character',
  );
});

t.test('secrets never reach the log', async (t) => {
  const { app, capture, url } = await startLogged(t, { ...SECRETS, REMOTE_STORAGE: 'local' });
  // Requests with valid, unknown and malformed credentials.
  t.equal((await put(`${url}/models/s`, model('s'), { authorization: `Bearer ${TOKEN}` })).status, 201);
  t.equal((await fetch(`${url}/models/s/meta`, { headers: { authorization: `Bearer ${READ_TOKEN}` } })).status, 200);
  t.equal(
    (await fetch(`${url}/models/s/meta`, { headers: { authorization: 'Bearer not-a-configured-token-xyz' } })).status,
    401,
  );
  t.equal(
    (
      await fetch(`${url}/models/s/meta`, {
        headers: { authorization: `Basic ${Buffer.from(`u:${TOKEN}`).toString('base64')}` },
      })
    ).status,
    401,
  );

  // What code might log: the config, headers, objects with secret-named fields at any depth,
  // messages and errors quoting secret values.
  app.log.info({ config: app.config }, 'config');
  app.log.info({ env: SECRETS }, 'environment');
  app.log.info({ ...SECRETS }, 'top level');
  app.log.info(
    { req: { headers: { authorization: `Bearer ${TOKEN}` } }, headers: { authorization: `Bearer ${TOKEN}` } },
    'headers',
  );
  app.log.info(
    {
      a: {
        b: {
          c: { d: { password: 'pw-deep-0123456', clientSecret: 'cs-deep-0123456', MONGODB_URI: SECRETS.MONGODB_URI } },
        },
      },
    },
    'deep',
  );
  app.log.warn(`connecting to ${SECRETS.MONGODB_URI} with ${SECRETS.AZURE_STORAGE_CONNECTION_STRING}`);
  app.log.warn('token %s and key %s', TOKEN, SECRETS.AWS_SECRET_ACCESS_KEY);
  const err = new Error(`failed for ${SECRETS.MONGODB_URI}`, { cause: new Error(`key ${SECRETS.AZURE_ACCOUNT_KEY}`) });
  app.log.error({ err }, 'storage error');
  app.log.error(new Error(`session ${SECRETS.AWS_SESSION_TOKEN}`));
  app.log
    .child({ component: 'x' })
    .info({ detail: `sas https://acct.blob.core.windows.net/?sv=2024&sig=SaSsIgNaTuRe123%3D` }, 'child');

  const text = capture.text;
  assertNoSecret(t, text, 'the log');
  t.notOk(
    text.includes('pw-deep-0123456') || text.includes('cs-deep-0123456'),
    'deep password / secret fields censored',
  );
  t.notOk(text.includes('SaSsIgNaTuRe123'), 'SAS signature censored');
  t.ok(text.includes(CENSOR), 'censored values are marked');
  t.match(text, /mongodb:\/\/registry:\[redacted\]@db\.internal/, 'the URI stays useful without its password');
  t.ok(
    capture.lines.some((l) => l.msg === 'config' && typeof l.config === 'object'),
    'the config itself is still logged',
  );
});

t.test('scrub() and secretValues()', async (t) => {
  const secrets = secretValues({
    ...SECRETS,
    AZURE_BLOB_ENDPOINT: 'https://a.blob.core.windows.net/?sv=1&sig=abcdefgh%2B',
  });
  for (const s of [
    TOKEN,
    READ_TOKEN,
    'm0ngo-Pa55w0rd',
    'Q29ubmVjdGlvblN0cmluZ0tleVNlY3JldA==',
    'abcdefgh%2B',
    'abcdefgh+',
  ])
    t.ok(secrets.includes(s), s);
  t.equal(scrub('postgres://me:hunter2@db/x'), `postgres://me:${CENSOR}@db/x`);
  t.equal(scrub('Authorization: Bearer abc.def.ghi'), `Authorization: Bearer ${CENSOR}`);
  t.equal(scrub('x AccountKey=abc==;y'), `x AccountKey=${CENSOR};y`);
  t.equal(scrub('nothing to hide: s3://bucket/key'), 'nothing to hide: s3://bucket/key');
});

/** Runs dist/server.js to its exit and returns what it printed. */
async function runServer(env: Record<string, string>): Promise<{ code: number | null; output: string }> {
  const child = spawn(process.execPath, ['dist/server.js'], {
    env: { PATH: process.env.PATH, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (d) => (output += d));
  child.stderr.on('data', (d) => (output += d));
  const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  clearTimeout(timer);
  return { code, output };
}

t.test('startup errors never print secrets', async (t) => {
  ensureBuilt();
  const cacheDir = await tempDir(t, 'mr-cache-');
  const base = { ...SECRETS, CACHE_DIR: cacheDir, PORT: '0' };
  const cases: [string, Record<string, string>, RegExp][] = [
    [
      'unparsable MongoDB URI',
      { REMOTE_STORAGE: 'mongodb', MONGODB_URI: 'mongodb://registry:m0ngo-Pa55w0rd@db.internal:notaport/' },
      /MONGODB_URI/,
    ],
    ['bad AUTH_TOKENS', { AUTH_TOKENS: `write:${TOKEN},read:short` }, /AUTH_TOKENS=\(hidden\)/],
    [
      'bad Azure key',
      {
        REMOTE_STORAGE: 'azure',
        AZURE_CONTAINER: 'models',
        AZURE_ACCOUNT_NAME: 'acct',
        AZURE_ACCOUNT_KEY: `${SECRETS.AZURE_ACCOUNT_KEY}!`,
      },
      /AZURE_ACCOUNT_KEY=\(hidden\)/,
    ],
    ['bad SHUTDOWN_GRACE', { SHUTDOWN_GRACE: 'soon' }, /SHUTDOWN_GRACE="soon" is not a duration/],
  ];
  for (const [what, env, expected] of cases) {
    const { code, output } = await runServer({ ...base, ...env });
    t.equal(code, 1, `${what}: exit 1`);
    t.match(output, expected, `${what}: names the variable`);
    t.equal(output.trim().split('\n').length, 1, `${what}: one line`);
    assertNoSecret(t, output, what);
    t.notOk(output.includes(`${SECRETS.AZURE_ACCOUNT_KEY}!`), `${what}: not even the bad key`);
  }
});
