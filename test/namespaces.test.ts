/**
 * Namespaced names (issue 17) on local disk and MinIO: `nlp/intent` through every route with
 * literal slashes and with %2F, its keys in storage, coexistence with a model `nlp`, listing a
 * namespace, the name rule (400, nothing stored), namespace-limited tokens, STORAGE_PREFIX
 * (keys under the prefix, a plain copy of the prefix serves) and migrate with prefixes.
 */
import { cp, readdir } from 'node:fs/promises';
import path from 'node:path';
import t, { type Test } from 'tap';
import { loadConfig } from '../src/config.js';
import { encodeModelPath } from '../src/http/model-path.js';
import type { Storage } from '../src/storage/index.js';
import { model } from './helpers/archives.js';
import { isError, sha256 } from './helpers/assert.js';
import { minioEnv } from './helpers/cloud.js';
import { startMinio } from './helpers/emulators.js';
import { envFile, runMigrate, storageOf } from './helpers/migrate.js';
import { keysIn, namespaceSuite } from './helpers/namespace-suite.js';
import { bytes, put, start, tempDir } from './helpers/server.js';

const minio = await startMinio();
t.teardown(() => minio.dispose());

const json = (body: unknown) => ({
  method: 'PUT',
  headers: { 'content-type': 'application/json' },
  body: JSON.stringify(body),
});

t.test('the URL rewrite', async (t) => {
  t.equal(encodeModelPath('/models/nlp/intent'), '/models/nlp%2Fintent');
  t.equal(encodeModelPath('/models/nlp/intent/meta?version=1'), '/models/nlp%2Fintent/meta?version=1');
  t.equal(encodeModelPath('/models/a/b/c/files/dir/f.txt'), '/models/a%2Fb%2Fc/files/dir/f.txt');
  t.equal(
    encodeModelPath('/models/nlp/intent@production/aliases/production'),
    '/models/nlp%2Fintent@production/aliases/production',
  );
  t.equal(encodeModelPath('/models/meta/meta'), '/models/meta/meta', 'a one-segment name may be a resource word');
  t.equal(encodeModelPath('/models/m/files/a/b'), '/models/m/files/a/b');
  t.equal(encodeModelPath('/models/nlp%2Fintent/meta'), '/models/nlp%2Fintent/meta', '%2F as typed');
  t.equal(encodeModelPath('/models?prefix=nlp/'), '/models?prefix=nlp/');
  t.equal(encodeModelPath('/healthz'), '/healthz');
});

const backends: [string, () => Record<string, string>][] = [
  ['local', () => ({})],
  ['minio', () => minioEnv(minio)],
];

for (const [backend, env] of backends) namespaceSuite(t, backend, env);

t.test('namespace-limited tokens', async (t) => {
  const TOKENS =
    'admin:admin-token-0000,write:nlp/*:nlp-writer-1111,read:nlp/*:nlp-reader-2222,read:vision/*:mixed-token-3333,write:nlp/*:mixed-token-3333,write:plain-writer-4444';
  const r = await start(t, { AUTH_TOKENS: TOKENS });
  const as = (token: string, headers: Record<string, string> = {}) => ({
    authorization: `Bearer ${token}`,
    ...headers,
  });
  const a = model('a');

  t.equal(
    (await put(`${r.url}/models/nlp/intent`, a, as('nlp-writer-1111'))).status,
    201,
    'write inside the namespace',
  );
  t.equal((await put(`${r.url}/models/nlp/de/intent`, a, as('nlp-writer-1111'))).status, 201, 'deeper inside too');
  for (const name of ['vision/detect', 'nlp', 'nlp2/x', 'plain']) {
    const body = await isError(t, await put(`${r.url}/models/${name}`, a, as('nlp-writer-1111')), 403, 'FORBIDDEN');
    t.match(body.message, /limited to nlp\/\*.*use a name under nlp\//, `${name}: the 403 names the namespace`);
  }
  t.equal(
    (await fetch(`${r.url}/models/vision/detect`, { headers: as('admin-token-0000') })).status,
    404,
    'nothing stored by refused uploads',
  );
  await isError(
    t,
    await fetch(`${r.url}/models/nlp/intent`, { method: 'DELETE', headers: as('nlp-writer-1111') }),
    403,
    'FORBIDDEN',
  );
  t.equal(
    (
      await fetch(`${r.url}/models/nlp/intent/aliases/production`, {
        ...json({ version: 1 }),
        headers: as('nlp-writer-1111', { 'content-type': 'application/json' }),
      })
    ).status,
    201,
  );

  t.equal((await fetch(`${r.url}/models/nlp/intent`, { headers: as('nlp-reader-2222') })).status, 200, 'read inside');
  t.equal((await fetch(`${r.url}/models/nlp/intent@production/meta`, { headers: as('nlp-reader-2222') })).status, 200);
  t.match(
    (await isError(t, await put(`${r.url}/models/nlp/intent`, a, as('nlp-reader-2222')), 403, 'FORBIDDEN')).message,
    /needs a write token/,
  );
  t.equal(
    (await put(`${r.url}/models/plain`, a, as('plain-writer-4444'))).status,
    201,
    'a plain token still writes anywhere',
  );
  await isError(t, await fetch(`${r.url}/models/plain`, { headers: as('nlp-reader-2222') }), 403, 'FORBIDDEN');

  const list = async (token: string, q = '') => {
    const res = await fetch(`${r.url}/models${q}`, { headers: as(token) });
    return {
      status: res.status,
      names: res.status === 200 ? ((await res.json()) as { models: { name: string }[] }).models.map((m) => m.name) : [],
    };
  };
  t.same(
    await list('nlp-reader-2222'),
    { status: 200, names: ['nlp/de/intent', 'nlp/intent'] },
    'a namespaced token lists its namespace, nested too',
  );
  t.same(await list('nlp-reader-2222', '?prefix=nlp/de/'), { status: 200, names: ['nlp/de/intent'] });
  t.equal((await list('nlp-reader-2222', '?prefix=vision/')).status, 403, 'and nothing outside it');
  t.same(
    await list('plain-writer-4444'),
    { status: 200, names: ['nlp/de/intent', 'nlp/intent', 'plain'] },
    'a plain token lists every model',
  );

  // One secret in two entries: read on vision/, write on nlp/.
  t.equal((await put(`${r.url}/models/nlp/other`, a, as('mixed-token-3333'))).status, 201);
  t.equal((await put(`${r.url}/models/vision/detect`, a, as('admin-token-0000'))).status, 201);
  t.equal((await fetch(`${r.url}/models/vision/detect`, { headers: as('mixed-token-3333') })).status, 200);
  t.match(
    (await isError(t, await put(`${r.url}/models/vision/detect`, a, as('mixed-token-3333')), 403)).message,
    /needs a write token/,
  );
  await isError(t, await fetch(`${r.url}/models/nlp/intent`), 401);
});

t.test('AUTH_TOKENS syntax', async (t) => {
  t.match(loadConfig({ AUTH_TOKENS: 'write:nlp/*:secret-1234' }).AUTH_TOKENS, [
    { scope: 'write', token: 'secret-1234', namespace: 'nlp/' },
  ]);
  t.match(loadConfig({ AUTH_TOKENS: 'read:a/b/*:secret-1234,admin:plain-5678' }).AUTH_TOKENS, [
    { scope: 'read', token: 'secret-1234', namespace: 'a/b/' },
    { scope: 'admin', token: 'plain-5678' },
  ]);
  t.same(
    loadConfig({ AUTH_TOKENS: 'read:ab:cdefghij' }).AUTH_TOKENS,
    [{ scope: 'read', token: 'ab:cdefghij' }],
    'a colon in a plain token keeps working',
  );
  for (const bad of [
    'write:/*:secret-1234',
    'write:nl p/*:secret-1234',
    'write:a/b/c/d/*:secret-1234',
    'write:nlp/*:short',
  ]) {
    t.throws(
      () => loadConfig({ AUTH_TOKENS: bad }),
      /AUTH_TOKENS=\(hidden\) must be a comma-separated list of .*<scope>:<namespace>\/\*:<token>/,
      bad,
    );
  }
});

t.test('STORAGE_PREFIX validation', async (t) => {
  t.equal(loadConfig({ STORAGE_PREFIX: 'registry/' }).STORAGE_PREFIX, 'registry/');
  t.equal(loadConfig({ STORAGE_PREFIX: 'teams/nlp/registry/' }).STORAGE_PREFIX, 'teams/nlp/registry/');
  t.equal(loadConfig({}).STORAGE_PREFIX, '');
  for (const bad of ['registry', '/registry/', 'a/../b/', 'a//b/', './']) {
    t.throws(
      () => loadConfig({ STORAGE_PREFIX: bad }),
      {
        message: `STORAGE_PREFIX=${JSON.stringify(bad)} must be a relative folder ending in /, without a leading /, empty segments, . or .., e.g. STORAGE_PREFIX=registry/.`,
      },
      bad,
    );
  }
});

async function prefixSuite(t: Test, env: Record<string, string>, raw: Storage) {
  const r = await start(t, { ...env, STORAGE_PREFIX: 'registry/' });
  const [a, b] = [model('a'), model('b')];
  t.equal((await put(`${r.url}/models/m`, a)).status, 201);
  t.equal((await put(`${r.url}/models/m`, b)).status, 200);
  t.equal((await put(`${r.url}/models/nlp/intent`, a)).status, 201);
  t.equal((await fetch(`${r.url}/models/m/aliases/production`, json({ version: 1 }))).status, 201);
  t.equal(sha256(await bytes(await fetch(`${r.url}/models/m@production`))), sha256(a));
  t.match(
    await (await fetch(`${r.url}/models/m/meta`)).json(),
    { storageKey: 'm.tar.gz', version: 2 },
    'keys as the registry sees them',
  );
  t.same(
    ((await (await fetch(`${r.url}/models`)).json()) as { models: { name: string }[] }).models.map((m) => m.name),
    ['m', 'nlp/intent'],
    'every model under the prefix, none of the bucket root',
  );
  t.same(
    (await keysIn(raw, '')).filter((k) => k !== 'rootmodel.tar.gz'),
    [],
    'nothing of it at the root of the bucket',
  );
  t.same(await keysIn(raw, 'registry/'), ['registry/m.tar.gz']);
  t.same(await keysIn(raw, 'registry/nlp/'), ['registry/nlp/intent.tar.gz']);
  t.same(await keysIn(raw, 'registry/.history/m/'), [
    'registry/.history/m/v1.json',
    'registry/.history/m/v1.tar.gz',
    'registry/.history/m/v2.json',
    'registry/.history/m/v2.tar.gz',
  ]);
  t.same(await keysIn(raw, 'registry/.aliases/'), ['registry/.aliases/m.json']);
  t.equal((await fetch(`${r.url}/models/m?version=1`, { method: 'DELETE', headers: {} })).status, 409, 'aliased');
  t.equal((await fetch(`${r.url}/models/m`, { method: 'DELETE' })).status, 204);
  t.same(await keysIn(raw, 'registry/'), [], 'deleted under the prefix');
  return r;
}

t.test('STORAGE_PREFIX on local disk: keys under the prefix; a plain copy of the prefix serves', async (t) => {
  const dir = await tempDir(t);
  const raw = await storageOf(t, { LOCAL_STORAGE_DIR: dir });
  await prefixSuite(t, { LOCAL_STORAGE_DIR: dir }, raw);
  const r = await start(t, { LOCAL_STORAGE_DIR: dir, STORAGE_PREFIX: 'registry/' });
  t.equal((await put(`${r.url}/models/kept`, model('k'), { 'x-model-label-team': 'x' })).status, 201);
  t.same(
    (await readdir(dir)).filter((n) => !n.startsWith('.')),
    ['registry'],
    'only the prefix folder beside the backend bookkeeping',
  );
  // `cp -a registry/ elsewhere/`: a registry of its own, same version and labels.
  const copy = await tempDir(t);
  await cp(path.join(dir, 'registry'), copy, { recursive: true });
  await cp(path.join(dir, '.meta', 'registry'), path.join(copy, '.meta'), { recursive: true });
  const served = await start(t, { LOCAL_STORAGE_DIR: copy });
  t.match(await (await fetch(`${served.url}/models/kept/meta`)).json(), {
    name: 'kept',
    version: 1,
    labels: { team: 'x' },
  });
});

t.test('STORAGE_PREFIX on MinIO: keys under the prefix of a shared bucket', async (t) => {
  const env = minioEnv(minio);
  const raw = await storageOf(t, env);
  const other = await start(t, env);
  t.equal(
    (await put(`${other.url}/models/rootmodel`, model('other'))).status,
    201,
    'another user of the bucket, at its root',
  );
  await prefixSuite(t, env, raw);
  t.equal((await fetch(`${other.url}/models/rootmodel`)).status, 200, 'the root model is untouched');
});

t.test('migrate between prefixes of one bucket, and from a prefix to local', async (t) => {
  const env = minioEnv(minio);
  const source = await start(t, { ...env, STORAGE_PREFIX: 'team-a/' });
  const a = model('a');
  t.equal((await put(`${source.url}/models/m`, a, { 'x-model-label-team': 'a' })).status, 201);
  t.equal((await put(`${source.url}/models/m`, model('b'))).status, 200);
  t.equal((await put(`${source.url}/models/nlp/intent`, a)).status, 201);
  t.equal((await fetch(`${source.url}/models/nlp/intent/aliases/production`, json({ version: 1 }))).status, 201);
  const work = await tempDir(t);
  const from = await envFile(work, 'from.env', { ...env, STORAGE_PREFIX: 'team-a/' });
  const to = await envFile(work, 'to.env', { ...env, STORAGE_PREFIX: 'team-b/' });
  const { summary } = await runMigrate({ from, to });
  t.match(summary, { failed: 0 });
  const dest = await start(t, { ...env, STORAGE_PREFIX: 'team-b/' });
  t.match(await (await fetch(`${dest.url}/models/m/meta`)).json(), { version: 2 });
  t.equal(sha256(await bytes(await fetch(`${dest.url}/models/m?version=1`))), sha256(a));
  const raw = await storageOf(t, env);
  t.same(await keysIn(raw, 'team-b/'), ['team-b/m.tar.gz']);
  t.same(await keysIn(raw, 'team-b/nlp/'), ['team-b/nlp/intent.tar.gz'], 'namespaced models too');
  t.same(await keysIn(raw, 'team-b/.aliases/nlp/'), ['team-b/.aliases/nlp/intent.json']);
  t.match(await (await fetch(`${dest.url}/models/nlp/intent@production/meta`)).json(), { version: 1 });
  t.match((await runMigrate({ from, to })).summary, { copied: 0, failed: 0 }, 'a rerun copies nothing');
  await t.rejects(runMigrate({ from, to: from }), /name the same storage/, 'one prefix of one bucket is refused');
});
