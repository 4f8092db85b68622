/**
 * The namespace routes on one backend (test/namespaces.test.ts runs it on local disk and MinIO,
 * test/namespaces-cloud.test.ts on GCS, Azure and MongoDB emulators): `nlp/intent` through every
 * route beside a model `nlp`, its keys in storage, listing every depth and a namespace (paged,
 * beside other data of a shared bucket), and the name rule.
 */
import { Readable } from 'node:stream';
import type { Test } from 'tap';
import type { Storage } from '../../src/storage/index.js';
import { model } from './archives.js';
import { isError, sha256, unchanged } from './assert.js';
import { storageCalls } from './fidelity.js';
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
    t.same(
      await list('?prefix=nlp/'),
      ['nlp/de/intent', 'nlp/intent'],
      'a namespace is listed by its prefix, nested too',
    );
    t.same(await list('?prefix=nlp/de/'), ['nlp/de/intent']);
    t.same(await list('?prefix=nlp/in'), ['nlp/intent']);
    t.same(await list('?prefix=nlp/&alias=production'), ['nlp/intent']);
    t.same(await list(''), ['nlp', 'nlp/de/intent', 'nlp/intent'], 'every model at every depth');

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

  t.test(`${backend}: GET /models lists every depth, pages across namespaces, walks no other folder`, async (t) => {
    const r = await start(t, env());
    const storage = r.app.registry.storage;
    const names = ['z', 'nlp/intent', 'a', 'nlp', 'nlp-x', 'nlp/de/intent', 'team/nlp/de/intent'];
    for (const name of names) t.equal((await put(`${r.url}/models/${name}`, model(name))).status, 201, name);
    t.equal((await put(`${r.url}/models/team/nlp/de/intent`, model('v2'), { 'x-model-label-team': 'de' })).status, 200);
    for (const name of ['nlp/de/intent', 'team/nlp/de/intent', 'a']) {
      t.equal((await fetch(`${r.url}/models/${name}/aliases/production`, json({ version: 1 }))).status, 201);
    }
    // Other data in a shared bucket: only a valid `seg/…/name.tar.gz` is a model (shared/ok).
    const foreign = [
      'shared/ok.tar.gz',
      'shared/readme.txt',
      'deep/b/c/d/e.tar.gz', // five segments
      'meta/x.tar.gz', // a resource word
      'data.json/x.tar.gz', // a namespace ending in .json
      'my folder/x.tar.gz',
      '.hidden/x.tar.gz',
      'operatorai-model-store/intent/versions/m1/artifacts.tar.gz',
    ];
    for (const key of foreign) await storage.commit(await storage.stage(key, Readable.from([model(key)])), {}, {});

    const page = async (q: string) =>
      (await (await fetch(`${r.url}/models${q}`)).json()) as { models: { name: string }[]; nextCursor: string | null };
    const list = async (q: string) => (await page(q)).models.map((m) => m.name);
    // Key order, as a listing gives it (`nlp-x.tar.gz` sorts before `nlp.tar.gz`).
    const all = ['a', 'nlp-x', 'nlp', 'nlp/de/intent', 'nlp/intent', 'shared/ok', 'team/nlp/de/intent', 'z'];
    const lists0 = await storageCalls(r.url, 'list');
    t.same(await list(''), all, 'every model at every depth, in key order');
    // One listing per folder a name can be in: '', deep/ (and b/, b/c/), nlp/, nlp/de/,
    // operatorai-model-store/ (and intent/), shared/, team/ (and nlp/, nlp/de/); then .aliases/
    // with nlp/, nlp/de/, team/, team/nlp/, team/nlp/de/. Never .history/, .hidden/, meta/ …
    t.equal((await storageCalls(r.url, 'list')) - lists0, 12 + 6, 'no other folder is walked');
    for (const limit of [1, 3]) {
      const paged: string[] = [];
      let cursor: string | null = null;
      do {
        const p = await page(`?limit=${limit}${cursor ? `&cursor=${cursor}` : ''}`);
        t.ok(p.models.length <= limit);
        paged.push(...p.models.map((m) => m.name));
        cursor = p.nextCursor;
      } while (cursor);
      t.same(paged, all, `pages of ${limit} chained by nextCursor walk across namespaces`);
    }
    const inNlp: string[] = [];
    for (let cursor: string | null = ''; cursor !== null; ) {
      const p = await page(`?prefix=nlp&limit=1${cursor ? `&cursor=${cursor}` : ''}`);
      inNlp.push(...p.models.map((m) => m.name));
      cursor = p.nextCursor;
    }
    t.same(inNlp, ['nlp-x', 'nlp', 'nlp/de/intent', 'nlp/intent'], 'a prefix pages too');
    t.same(await list('?prefix=nlp/'), ['nlp/de/intent', 'nlp/intent']);
    t.same(await list('?prefix=team/'), ['team/nlp/de/intent'], 'four segments');
    t.same(await list('?prefix=team/nlp/de/'), ['team/nlp/de/intent']);
    t.same(await list('?prefix=deep/'), [], 'nothing deeper than four segments');
    t.same(await list('?alias=production'), ['a', 'nlp/de/intent', 'team/nlp/de/intent'], 'aliases at every depth');
    t.same(await list('?label.team=de'), ['team/nlp/de/intent'], 'labels at every depth');
    t.same((await list('?sort=updatedAt')).sort(), [...all].sort(), 'sort=updatedAt: every depth');
    t.match(await page('?prefix=team/'), {
      models: [{ name: 'team/nlp/de/intent', version: 2, aliases: { production: 1 } }],
    });
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
