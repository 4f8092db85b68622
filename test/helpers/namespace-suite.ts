/**
 * The namespace routes on one backend (test/namespaces.test.ts runs it on local disk and MinIO,
 * test/namespaces-cloud.test.ts on GCS, Azure and MongoDB emulators): `nlp/intent` through every
 * route beside a model `nlp`, its keys in storage, listing a namespace, and the name rule.
 */
import type { Test } from 'tap';
import type { Storage } from '../../src/storage/index.js';
import { model } from './archives.js';
import { isError, sha256, unchanged } from './assert.js';
import { bytes, put, start } from './server.js';

const json = (body: unknown) => ({
  method: 'PUT',
  headers: { 'content-type': 'application/json' },
  body: JSON.stringify(body),
});

export async function keysIn(storage: Storage, prefix = ''): Promise<string[]> {
  const out: string[] = [];
  for await (const info of storage.list(prefix)) out.push(info.key);
  return out;
}

export function namespaceSuite(t: Test, backend: string, env: () => Record<string, string>): void {
  t.test(`${backend}: nlp/intent through every route, beside a model nlp`, async (t) => {
    const r = await start(t, { ...env(), MODEL_HISTORY: '3' });
    const storage = r.app.registry.storage;
    const [a, b, c, root] = [model('a'), model('b'), model('c'), model('root')];
    t.equal((await put(`${r.url}/models/nlp/intent`, a, { 'x-model-label-team': 'nlp' })).status, 201);
    t.equal((await put(`${r.url}/models/nlp/intent`, b)).status, 200);
    t.equal((await put(`${r.url}/models/nlp%2Fintent`, c)).status, 200, '%2F works as well');
    t.equal((await put(`${r.url}/models/nlp`, root)).status, 201, 'a model nlp beside the namespace nlp/');
    t.equal((await put(`${r.url}/models/nlp/de/intent`, a)).status, 201, 'three segments');

    const got = await fetch(`${r.url}/models/nlp/intent`);
    t.equal(got.status, 200);
    t.equal(sha256(await bytes(got)), sha256(c));
    t.equal(sha256(await bytes(await fetch(`${r.url}/models/nlp/intent?version=1`))), sha256(a));
    const meta = (await (await fetch(`${r.url}/models/nlp/intent/meta`)).json()) as {
      name: string;
      version: number;
      storageKey: string;
    };
    t.match(meta, { name: 'nlp/intent', version: 3, storageKey: 'nlp/intent.tar.gz' });
    t.equal(
      ((await (await fetch(`${r.url}/models/nlp%2Fintent/meta`)).json()) as { version: number }).version,
      3,
      '%2F meta',
    );
    const versions = (await (await fetch(`${r.url}/models/nlp/intent/versions`)).json()) as {
      versions: { version: number }[];
    };
    t.same(
      versions.versions.map((v) => v.version),
      [3, 2, 1],
    );
    const rootVersions = (await (await fetch(`${r.url}/models/nlp/versions`)).json()) as {
      versions: { version: number }[];
    };
    t.same(
      rootVersions.versions.map((v) => v.version),
      [1],
      "nlp's history holds none of nlp/intent's",
    );
    t.equal((await fetch(`${r.url}/models/nlp/intent/files`)).status, 200);
    t.equal(sha256(await bytes(await fetch(`${r.url}/models/nlp/intent/files/weights.bin`))).length, 64);

    t.equal((await fetch(`${r.url}/models/nlp/intent/aliases/production`, json({ version: 2 }))).status, 201);
    t.equal(sha256(await bytes(await fetch(`${r.url}/models/nlp/intent@production`))), sha256(b));
    t.match(await (await fetch(`${r.url}/models/nlp/intent@production/meta`)).json(), {
      version: 2,
      aliases: ['production'],
    });
    t.same(
      ((await (await fetch(`${r.url}/models/nlp/aliases`)).json()) as { aliases: unknown[] }).aliases,
      [],
      "nlp has none of nlp/intent's aliases",
    );
    t.equal((await fetch(`${r.url}/models/nlp/aliases/staging`, json({ version: 1 }))).status, 201);
    t.same(
      (
        (await (await fetch(`${r.url}/models/nlp/intent/aliases`)).json()) as { aliases: { alias: string }[] }
      ).aliases.map((x) => x.alias),
      ['production'],
    );

    const rolled = await fetch(`${r.url}/models/nlp/intent/rollback`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"version":1}',
    });
    t.equal(rolled.status, 200);
    t.equal(sha256(await bytes(await fetch(`${r.url}/models/nlp/intent`))), sha256(a), 'rolled back');

    t.same((await keysIn(storage, 'nlp/')).sort(), ['nlp/intent.tar.gz'], 'stored as nlp/intent.tar.gz');
    t.ok((await keysIn(storage, '.history/nlp/intent/')).includes('.history/nlp/intent/v1.tar.gz'));
    t.same(await keysIn(storage, '.aliases/nlp/'), ['.aliases/nlp/intent.json']);
    t.ok((await keysIn(storage)).includes('nlp.tar.gz'), 'the one-segment name keeps the Rasa layout');

    const list = async (q: string) =>
      ((await (await fetch(`${r.url}/models${q}`)).json()) as { models: { name: string }[] }).models.map((m) => m.name);
    t.same(await list('?prefix=nlp/'), ['nlp/intent'], 'a namespace is listed by its prefix');
    t.same(await list('?prefix=nlp/de/'), ['nlp/de/intent']);
    t.same(await list('?prefix=nlp/in'), ['nlp/intent']);
    t.same(await list('?prefix=nlp/&alias=production'), ['nlp/intent']);
    t.same(await list(''), ['nlp'], 'the top level: one-segment names');

    t.equal((await fetch(`${r.url}/models/nlp`, { method: 'DELETE' })).status, 204);
    t.equal((await fetch(`${r.url}/models/nlp/intent`)).status, 200, 'deleting nlp leaves nlp/intent');
    t.equal((await fetch(`${r.url}/models/nlp/intent/aliases/production`)).status, 200);
    t.equal((await fetch(`${r.url}/models/nlp/intent`, { method: 'DELETE' })).status, 204);
    t.equal((await fetch(`${r.url}/models/nlp/intent`)).status, 404);
    t.same(
      (await keysIn(storage, '.history/nlp/intent/')).filter((k) => k.endsWith('.tar.gz')),
      [],
      'its history is gone (a record keeps its number, never reused)',
    );
    t.same(await keysIn(storage, '.aliases/nlp/'), [], 'and its aliases');
    t.equal((await fetch(`${r.url}/models/nlp/de/intent`)).status, 200, 'the deeper one stays');
  });

  t.test(`${backend}: bad namespaced names are 400 and store nothing`, async (t) => {
    const r = await start(t, env());
    for (const name of [
      'a/b/c/d/e',
      'a//b',
      'nlp/',
      '/x',
      'nlp/.hidden',
      'nlp%2Fmeta%2Fx',
      'v1.json/x',
      `${'n'.repeat(128)}/${'m'.repeat(128)}`,
    ]) {
      const res = await put(`${r.url}/models/${name}`, model('x'));
      const body = await isError(t, res, 400, 'INVALID_NAME');
      t.match(body.message, /up to 4 \/-separated segments/, `${name}: the message states the namespace rule`);
    }
    await isError(t, await put(`${r.url}/models/a%2Fb%2Fc%2Fd%2Fe`, model('x')), 400, 'INVALID_NAME');
    t.same(
      (await keysIn(r.app.registry.storage)).filter((k) => k.endsWith('.tar.gz')),
      [],
      'nothing stored',
    );
    await unchanged(t, r, 'a', undefined);
    t.equal((await put(`${r.url}/models/a/b/c/d`, model('x'))).status, 201, 'four segments are fine');
    t.equal((await put(`${r.url}/models/meta`, model('m'))).status, 201, 'a one-segment name may be a resource word');
    t.match(await (await fetch(`${r.url}/models/meta/meta`)).json(), { name: 'meta', version: 1 });
  });
}
