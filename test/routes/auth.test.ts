import { Writable } from 'node:stream';
import t from 'tap';
import { buildApp } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';
import { model } from '../helpers/archives.js';
import { isError } from '../helpers/assert.js';
import { put, start, tempDir } from '../helpers/server.js';

const READ = 'read-token-1234';
const WRITE = 'write-token-5678';
const ADMIN = 'admin-token-9abc';
const TOKENS = `read:${READ},write:${WRITE},admin:${ADMIN}`;
const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

t.test('scopes: read < write < admin; 401 without or with an unknown token, 403 when too weak', async (t) => {
  const { url } = await start(t, { AUTH_TOKENS: TOKENS });
  const a = model('a');

  const anonymous = await put(`${url}/models/sec`, a);
  const body = await isError(t, anonymous, 401, 'UNAUTHORIZED');
  t.match(body.message, /^A bearer token is required: send Authorization: Bearer <token>/, 'no token: one is required');
  t.equal(anonymous.headers.get('www-authenticate'), 'Bearer realm="model-registry"');
  const unknown = await put(`${url}/models/sec`, a, bearer('not-a-known-token'));
  t.match(
    (await isError(t, unknown, 401, 'UNAUTHORIZED')).message,
    /^The bearer token is not known to this server: send a token from its AUTH_TOKENS/,
    'a wrong token: it is not known',
  );
  t.equal(
    unknown.headers.get('www-authenticate'),
    'Bearer realm="model-registry", error="invalid_token"',
    'RFC 6750 invalid_token',
  );
  t.notMatch(
    JSON.stringify(await (await put(`${url}/models/sec`, a, bearer('not-a-known-token'))).json()),
    /not-a-known-token/,
    'the token is not echoed',
  );
  const basic = await put(`${url}/models/sec`, a, { authorization: `Basic ${READ}` });
  t.match((await isError(t, basic, 401)).message, /^The Authorization header is not a bearer token/);
  const weak = await isError(t, await put(`${url}/models/sec`, a, bearer(READ)), 403, 'FORBIDDEN');
  t.equal(weak.message, 'This token may not do that: the request needs a write token.');
  t.equal(
    (await fetch(`${url}/models/sec`, { headers: bearer(ADMIN) })).status,
    404,
    'nothing stored by refused uploads',
  );

  t.equal((await put(`${url}/models/sec`, a, bearer(WRITE))).status, 201);
  await isError(t, await fetch(`${url}/models/sec`), 401);
  await isError(t, await fetch(`${url}/models`), 401);
  t.equal((await fetch(`${url}/models/sec`, { headers: bearer(READ) })).status, 200);
  t.equal((await fetch(`${url}/models/sec`, { method: 'HEAD', headers: bearer(READ) })).status, 200);
  t.equal((await fetch(`${url}/models`, { headers: bearer(WRITE) })).status, 200, 'write includes read');

  const rollback = (token: string) =>
    fetch(`${url}/models/sec/rollback`, {
      method: 'POST',
      headers: { ...bearer(token), 'content-type': 'application/json' },
      body: '{"version":1}',
    });
  await isError(t, await rollback(READ), 403);

  const notAdmin = await isError(
    t,
    await fetch(`${url}/models/sec`, { method: 'DELETE', headers: bearer(WRITE) }),
    403,
    'FORBIDDEN',
  );
  t.equal(notAdmin.message, 'This token may not do that: the request needs an admin token.');
  t.equal(
    (await fetch(`${url}/models/sec`, { headers: bearer(ADMIN) })).status,
    200,
    'still there after a refused delete',
  );
  t.equal((await fetch(`${url}/models/sec`, { method: 'DELETE', headers: bearer(ADMIN) })).status, 204);

  t.equal((await fetch(`${url}/healthz`)).status, 200, 'health needs no token');
  t.equal((await fetch(`${url}/readyz`)).status, 200);
});

t.test('tokens never reach the log', async (t) => {
  const dir = await tempDir(t);
  let logged = '';
  const stream = new Writable({
    write(chunk, _enc, cb) {
      logged += chunk;
      cb();
    },
  });
  const config = loadConfig({ LOCAL_STORAGE_DIR: dir, AUTH_TOKENS: TOKENS, LOG_LEVEL: 'trace' });
  const app = await buildApp({
    config,
    logger: { level: 'trace', stream, redact: { paths: ['req.headers.authorization'], censor: '[redacted]' } },
  });
  t.teardown(() => app.close());
  await app.inject({ method: 'GET', url: '/models', headers: bearer(ADMIN) });
  await app.inject({ method: 'GET', url: '/models', headers: bearer('wrong-token-xyz') });
  await app.inject({
    method: 'PUT',
    url: '/models/x',
    headers: { ...bearer(READ), 'content-type': 'application/gzip' },
    payload: model('x'),
  });
  t.ok(logged.length > 0, 'something was logged');
  for (const secret of [READ, WRITE, ADMIN, 'wrong-token-xyz'])
    t.notOk(logged.includes(secret), 'token not in the log');
});

t.test('without tokens the server refuses a non-loopback HOST unless ALLOW_ANONYMOUS=true', async (t) => {
  t.throws(() => loadConfig({ HOST: '0.0.0.0' }), /HOST=0\.0\.0\.0 .*AUTH_TOKENS.*ALLOW_ANONYMOUS=true/);
  t.ok(loadConfig({ HOST: '0.0.0.0', ALLOW_ANONYMOUS: 'true' }));
  t.ok(loadConfig({ HOST: '0.0.0.0', AUTH_TOKENS: TOKENS }));
  t.ok(loadConfig({ HOST: 'localhost' }));
  t.ok(loadConfig({ HOST: '::1' }));
});

t.test(
  'aliases: read tokens read them, write tokens set and remove them (removing deletes no model data)',
  async (t) => {
    const { url } = await start(t, { AUTH_TOKENS: TOKENS });
    t.equal((await put(`${url}/models/al`, model('a'), bearer(WRITE))).status, 201);
    const set = (token: string) =>
      fetch(`${url}/models/al/aliases/prod`, {
        method: 'PUT',
        headers: { ...bearer(token), 'content-type': 'application/json' },
        body: '{"version":1}',
      });
    await isError(t, await set(READ), 403, 'FORBIDDEN');
    await isError(
      t,
      await fetch(`${url}/models/al/aliases/prod`, {
        method: 'PUT',
        headers: { 'content-type': 'application/json' },
        body: '{"version":1}',
      }),
      401,
    );
    t.equal((await set(WRITE)).status, 201);
    t.equal((await fetch(`${url}/models/al@prod`, { headers: bearer(READ) })).status, 200);
    t.equal((await fetch(`${url}/models/al/aliases`, { headers: bearer(READ) })).status, 200);
    await isError(t, await fetch(`${url}/models/al@prod`), 401);
    await isError(
      t,
      await fetch(`${url}/models/al/aliases/prod`, { method: 'DELETE', headers: bearer(READ) }),
      403,
      'FORBIDDEN',
    );
    t.equal((await fetch(`${url}/models/al/aliases/prod`, { method: 'DELETE', headers: bearer(WRITE) })).status, 204);
    await isError(t, await fetch(`${url}/models/al`, { method: 'DELETE', headers: bearer(WRITE) }), 403, 'FORBIDDEN'); // deleting the model still needs admin
  },
);
