/**
 * The storage conformance suite: one set of contract tests (src/storage/types.ts) that every
 * backend runs unchanged against a real server. A backend file calls `conformance(t, factory)`.
 */
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { text } from 'node:stream/consumers';
import type { Test } from 'tap';
import { NotFoundError, PreconditionFailedError } from '../../src/errors.js';
import type { Storage } from '../../src/storage/types.js';
import { tempDir } from './server.js';

/**
 * Makes a fresh, initialised backend for one test (its own bucket / directory / database) and
 * registers its cleanup with `t.teardown`.
 */
export type StorageFactory = (t: Test) => Promise<Storage>;

export interface ConformanceOptions {
  /**
   * Counts what the backend still holds of uploads that were not committed (staged objects,
   * incomplete multipart uploads, orphan chunks). Must be 0 after a failed or discarded upload.
   */
  leftovers: (storage: Storage) => Promise<number>;
}

const body = (data: Buffer | string) => Readable.from([Buffer.from(data)]);

async function all<T>(iterable: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of iterable) out.push(x);
  return out;
}

async function write(s: Storage, key: string, data: string, metadata: Record<string, string> = {}, condition = {}) {
  return s.commit(await s.stage(key, body(data)), metadata, condition);
}

export function conformance(t: Test, factory: StorageFactory, options: ConformanceOptions): void {
  t.test('missing keys throw NotFoundError; delete of a missing key does not', async (t) => {
    const s = await factory(t);
    await t.rejects(s.head('nope.tar.gz'), NotFoundError);
    await t.rejects(s.get('nope.tar.gz'), NotFoundError);
    await t.resolves(s.delete('nope.tar.gz'));
    t.same(await all(s.list('nope')), []);
  });

  t.test('staged objects are invisible until committed; metadata travels with the object', async (t) => {
    const s = await factory(t);
    const staged = await s.stage('a.tar.gz', body('first'));
    t.equal(staged.size, 5);
    await t.rejects(s.head('a.tar.gz'), NotFoundError);
    t.same(await all(s.list('')), [], 'staging area is never listed');
    const info = await s.commit(staged, { version: '1', labels: '{"k":"v"}' }, { ifNoneMatch: true });
    t.equal(info.size, 5);
    const head = await s.head('a.tar.gz');
    t.equal(head.token, info.token);
    t.same(head.metadata, { version: '1', labels: '{"k":"v"}' });
    const { info: got, body: stream } = await s.get('a.tar.gz');
    t.equal(await text(stream), 'first');
    t.same(got.metadata, head.metadata);
  });

  t.test('commit is a compare-and-swap on the current token', async (t) => {
    const s = await factory(t);
    const first = await write(s, 'm.tar.gz', 'one', { version: '1' }, { ifNoneMatch: true });
    const staged = await s.stage('m.tar.gz', body('two'));
    await t.rejects(s.commit(staged, { version: '2' }, { ifNoneMatch: true }), PreconditionFailedError);
    await t.rejects(s.commit(staged, { version: '2' }, { ifMatch: 'not-a-token' }), PreconditionFailedError);
    t.equal(await text((await s.get('m.tar.gz')).body), 'one', 'failed commits change nothing');
    const second = await s.commit(staged, { version: '2' }, { ifMatch: first.token });
    t.not(second.token, first.token, 'the token changes on replace');
    t.equal(await text((await s.get('m.tar.gz')).body), 'two');
    await t.rejects(write(s, 'm.tar.gz', 'three', {}, { ifMatch: first.token }), PreconditionFailedError);
    await t.rejects(write(s, 'missing.tar.gz', 'x', {}, { ifMatch: first.token }), PreconditionFailedError);
  });

  t.test('concurrent commits against one token: exactly one wins', async (t) => {
    const s = await factory(t);
    const base = await write(s, 'race.tar.gz', 'base', {}, { ifNoneMatch: true });
    const staged = await Promise.all(Array.from({ length: 6 }, (_, i) => s.stage('race.tar.gz', body(`writer-${i}`))));
    const results = await Promise.allSettled(
      staged.map((st, i) => s.commit(st, { writer: String(i) }, { ifMatch: base.token })),
    );
    const won = results.filter((r) => r.status === 'fulfilled');
    t.equal(won.length, 1, 'one winner');
    for (const r of results) if (r.status === 'rejected') t.type(r.reason, PreconditionFailedError);
    const winner = (await s.head('race.tar.gz')).metadata.writer;
    t.equal(await text((await s.get('race.tar.gz')).body), `writer-${winner}`);
    await Promise.all(staged.map((st) => s.discard(st)));
  });

  t.test('a failing body leaves nothing behind', async (t) => {
    const s = await factory(t);
    const failing = new Readable({ read() {} });
    failing.push(randomBytes(1000));
    setTimeout(() => failing.destroy(new Error('client went away')), 10);
    await t.rejects(s.stage('f.tar.gz', failing), /client went away/);
    await t.rejects(s.head('f.tar.gz'), NotFoundError);
    t.equal(await options.leftovers(s), 0, 'no staged data left');
    const staged = await s.stage('g.tar.gz', body('discard me'));
    await s.discard(staged);
    await s.discard(staged);
    t.equal(await options.leftovers(s), 0, 'discard removes staged data, and may be repeated');
    await t.rejects(s.head('g.tar.gz'), NotFoundError);
  });

  t.test('an aborted signal stops a stage and leaves nothing', async (t) => {
    const s = await factory(t);
    const controller = new AbortController();
    const slow = new Readable({ read() {} });
    slow.push(randomBytes(64 * 1024));
    setTimeout(() => controller.abort(new Error('request aborted')), 20);
    await t.rejects(s.stage('s.tar.gz', slow, { signal: controller.signal }));
    t.equal(await options.leftovers(s), 0);
  });

  t.test('large bodies stream through in bounded memory', async (t) => {
    const s = await factory(t);
    const size = 24 * 1024 * 1024 + 123; // several multipart parts on backends that use them
    let sent = 0;
    const chunk = randomBytes(1024 * 1024);
    const stream = new Readable({
      read() {
        if (sent >= size) return this.push(null);
        const n = Math.min(chunk.length, size - sent);
        sent += n;
        this.push(chunk.subarray(0, n));
      },
    });
    const info = await s.commit(await s.stage('big.tar.gz', stream), { version: '1' }, {});
    t.equal(info.size, size);
    t.equal((await s.head('big.tar.gz')).size, size);
    let received = 0;
    for await (const c of (await s.get('big.tar.gz')).body) received += (c as Buffer).length;
    t.equal(received, size);
    const tail = await s.get('big.tar.gz', { range: { start: size - 10, end: size - 1 } });
    let tailBytes = 0;
    for await (const c of tail.body) tailBytes += (c as Buffer).length;
    t.equal(tailBytes, 10);
  });

  t.test('metadata values survive any text, including non-ASCII and JSON', async (t) => {
    const s = await factory(t);
    const metadata = {
      labels: JSON.stringify({ team: 'nlp', note: 'café ✓ 模型', quote: 'a "b" \\ c' }),
      'created-at': '2024-01-01T00:00:00.000Z',
    };
    await write(s, 'u.tar.gz', 'x', metadata);
    t.same((await s.head('u.tar.gz')).metadata, metadata);
    const { info, body } = await s.get('u.tar.gz');
    body.destroy(); // only the info is wanted here: a body left unread holds its file open
    t.same(info.metadata, metadata);
  });

  t.test('ranges, and a reader keeps the version it opened', async (t) => {
    const s = await factory(t);
    const v1 = await write(s, 'r.tar.gz', '0123456789', { version: '1' });
    t.equal(await text((await s.get('r.tar.gz', { range: { start: 2, end: 5 } })).body), '2345');
    const opened = await s.get('r.tar.gz');
    await write(s, 'r.tar.gz', 'replaced!!', { version: '2' }, { ifMatch: v1.token });
    t.equal(opened.info.token, v1.token);
    t.equal(opened.info.metadata.version, '1');
    t.equal(await text(opened.body), '0123456789', 'bytes of the version opened');
  });

  t.test('copy is pinned to a source token and takes new metadata', async (t) => {
    const s = await factory(t);
    const src = await write(s, 'c.tar.gz', 'payload', { version: '1' });
    const copied = await s.copy('c.tar.gz', '.history/c/v1.tar.gz', {
      sourceToken: src.token,
      metadata: { version: '1', kept: 'yes' },
    });
    t.equal(copied.size, 7);
    t.same((await s.head('.history/c/v1.tar.gz')).metadata, { version: '1', kept: 'yes' });
    t.equal(await text((await s.get('.history/c/v1.tar.gz')).body), 'payload');
    await t.rejects(
      s.copy('c.tar.gz', '.history/c/v9.tar.gz', { sourceToken: 'stale', metadata: {} }),
      PreconditionFailedError,
    );
    await t.rejects(s.head('.history/c/v9.tar.gz'), NotFoundError);
    await t.rejects(
      s.copy('gone.tar.gz', '.history/gone/v1.tar.gz', { sourceToken: src.token, metadata: {} }),
      NotFoundError,
    );
    // Copy back over the source (a rollback) is a compare-and-swap too, and yields a new token.
    const v2 = await write(s, 'c.tar.gz', 'second', { version: '2' }, { ifMatch: src.token });
    await t.rejects(
      s.copy('.history/c/v1.tar.gz', 'c.tar.gz', {
        sourceToken: copied.token,
        metadata: {},
        condition: { ifMatch: src.token },
      }),
      PreconditionFailedError,
    );
    const back = await s.copy('.history/c/v1.tar.gz', 'c.tar.gz', {
      sourceToken: copied.token,
      metadata: { version: '3' },
      condition: { ifMatch: v2.token },
    });
    t.not(back.token, v2.token);
    if (s.capabilities.uniqueTokens) t.not(back.token, src.token, 'tokens never repeat under a key');
    t.equal(await text((await s.get('c.tar.gz')).body), 'payload');
  });

  t.test('commit and copy given `after` publish nothing until it resolves, and nothing if it rejects', async (t) => {
    const s = await factory(t);
    const v1 = await write(s, 'w.tar.gz', 'one', { version: '1' });
    const source = await write(s, 'src.tar.gz', 'source');
    // Resolves late: the new version stays invisible meanwhile (the backend may prepare it).
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const committing = s.commit(
      await s.stage('w.tar.gz', body('two')),
      { version: '2' },
      { ifMatch: v1.token },
      { after: gate },
    );
    const copying = s.copy('src.tar.gz', 'w2.tar.gz', {
      sourceToken: source.token,
      metadata: { copy: 'yes' },
      after: gate,
    });
    for (let i = 0; i < 6; i++) {
      await new Promise((r) => setTimeout(r, 100));
      t.equal((await s.head('w.tar.gz')).token, v1.token, 'the current object is unchanged while `after` runs');
      await t.rejects(s.head('w2.tar.gz'), NotFoundError, 'the copy is not visible while `after` runs');
    }
    release();
    const v2 = await committing;
    t.equal(await text((await s.get('w.tar.gz')).body), 'two');
    t.equal((await s.head('w.tar.gz')).token, v2.token);
    t.same((await copying).metadata, { copy: 'yes' });
    t.equal(await text((await s.get('w2.tar.gz')).body), 'source');

    // Rejects: both calls reject with its reason; nothing is published; the staged object stays usable.
    const boom = new Error('the history copy failed');
    const failed = Promise.reject(boom);
    failed.catch(() => {});
    const staged = await s.stage('w.tar.gz', body('three'));
    await t.rejects(s.commit(staged, { version: '3' }, { ifMatch: v2.token }, { after: failed }), boom);
    await t.rejects(
      s.copy('src.tar.gz', 'w3.tar.gz', { sourceToken: source.token, metadata: {}, after: failed }),
      boom,
    );
    t.equal(await text((await s.get('w.tar.gz')).body), 'two', 'the current object is unchanged');
    await t.rejects(s.head('w3.tar.gz'), NotFoundError);
    t.same(
      (await all(s.list(''))).map((i) => i.key),
      ['src.tar.gz', 'w.tar.gz', 'w2.tar.gz'],
    );
    await s.commit(staged, { version: '3' }, { ifMatch: v2.token });
    t.equal(await text((await s.get('w.tar.gz')).body), 'three', 'the staged object was kept for a retry');
    t.equal(await options.leftovers(s), 0, 'no staged object or prepared copy is left behind');
  });

  t.test('setMetadata is conditional on the token', async (t) => {
    const s = await factory(t);
    const info = await write(s, 'x.tar.gz', 'data', {});
    await t.rejects(s.setMetadata('x.tar.gz', 'stale', { sha256: 'x' }), PreconditionFailedError);
    const updated = await s.setMetadata('x.tar.gz', info.token, { sha256: 'abc' });
    t.same((await s.head('x.tar.gz')).metadata, { sha256: 'abc' });
    t.equal((await s.head('x.tar.gz')).token, updated.token);
    t.equal(await text((await s.get('x.tar.gz')).body), 'data');
  });

  t.test('list: one level under the prefix, in key order, after startAfter', async (t) => {
    const s = await factory(t);
    for (const key of [
      'b.tar.gz',
      'a.tar.gz',
      'c.tar.gz',
      '.history/a/v1.tar.gz',
      '.history/a/v2.tar.gz',
      '.history/ab/v1.tar.gz',
    ]) {
      await write(s, key, key, { k: key });
    }
    t.same(
      (await all(s.list(''))).map((i) => i.key),
      ['a.tar.gz', 'b.tar.gz', 'c.tar.gz'],
    );
    t.same(
      (await all(s.list('', { startAfter: 'a.tar.gz' }))).map((i) => i.key),
      ['b.tar.gz', 'c.tar.gz'],
    );
    t.same(
      (await all(s.list('b'))).map((i) => i.key),
      ['b.tar.gz'],
    );
    const history = await all(s.list('.history/a/'));
    t.same(
      history.map((i) => i.key),
      ['.history/a/v1.tar.gz', '.history/a/v2.tar.gz'],
    );
    if (s.capabilities.listIncludesMetadata) t.same(history[0]!.metadata, { k: '.history/a/v1.tar.gz' });
    await s.delete('.history/a/v1.tar.gz');
    await s.delete('.history/a/v1.tar.gz');
    t.same(
      (await all(s.list('.history/a/'))).map((i) => i.key),
      ['.history/a/v2.tar.gz'],
    );
  });

  t.test('listEntries: objects and folders of one level, in one key order, after startAfter', async (t) => {
    const s = await factory(t);
    for (const key of [
      'nlp/intent.tar.gz',
      'a.tar.gz',
      'nlp.tar.gz',
      'nlp-x.tar.gz',
      'nlp/de/intent.tar.gz',
      'nlp0.tar.gz',
      '.history/a/v1.tar.gz',
      '.aliases/nlp/intent.json',
    ]) {
      await write(s, key, key, { k: key });
    }
    const staged = await s.stage('z.tar.gz', body('staged'));
    t.teardown(() => s.discard(staged));
    const entries = async (prefix: string, startAfter?: string) =>
      (await all(s.listEntries(prefix, startAfter === undefined ? {} : { startAfter }))).map(
        (e) => e.folder ?? e.object!.key,
      );
    t.same(
      await entries(''),
      ['.aliases/', '.history/', 'a.tar.gz', 'nlp-x.tar.gz', 'nlp.tar.gz', 'nlp/', 'nlp0.tar.gz'],
      'a folder sorts as its string; no staging area',
    );
    t.same(await entries('', 'nlp.tar.gz'), ['nlp/', 'nlp0.tar.gz']);
    t.same(await entries('', 'nlp/'), ['nlp0.tar.gz'], 'after a folder: past everything in it');
    t.same(await entries('', 'nlp/intent.tar.gz'), ['nlp0.tar.gz'], 'a folder is not greater than a key in it');
    t.same(await entries('/'), [], 'nothing starts with /');
    t.same(await entries('nl'), ['nlp-x.tar.gz', 'nlp.tar.gz', 'nlp/', 'nlp0.tar.gz'], 'a prefix within a name');
    t.same(await entries('nlp/'), ['nlp/de/', 'nlp/intent.tar.gz']);
    t.same(await entries('nlp/i'), ['nlp/intent.tar.gz']);
    t.same(await entries('.aliases/'), ['.aliases/nlp/']);
    const [object] = await all(s.listEntries('nlp/i'));
    t.match(object!.object, { key: 'nlp/intent.tar.gz', size: 'nlp/intent.tar.gz'.length });
    if (s.capabilities.listIncludesMetadata) t.same(object!.object!.metadata, { k: 'nlp/intent.tar.gz' });
    t.same(
      (await all(s.list('nlp/'))).map((i) => i.key),
      ['nlp/intent.tar.gz'],
      'list() gives the objects alone',
    );
    await s.delete('nlp/de/intent.tar.gz');
    t.same(await entries('nlp/de/'), [], 'a deleted key is gone (its folder may stay listed)');
  });

  t.test('copyOut makes a file of the pinned version, or refuses a replaced one', async (t) => {
    const s = await factory(t);
    const dir = await tempDir(t, 'mr-copyout-');
    const first = await write(s, 'c.tar.gz', 'first');
    await s.copyOut('c.tar.gz', first.token, path.join(dir, 'one'));
    t.equal(await readFile(path.join(dir, 'one'), 'utf8'), 'first');
    await write(s, 'c.tar.gz', 'second');
    await t.rejects(s.copyOut('c.tar.gz', first.token, path.join(dir, 'two')), PreconditionFailedError);
    await t.rejects(s.copyOut('gone.tar.gz', first.token, path.join(dir, 'three')), NotFoundError);
  });

  t.test('signedUrl, where capabilities.signedUrls: a URL that GETs the bytes without the backend', async (t) => {
    const s = await factory(t);
    if (!s.capabilities.signedUrls) {
      t.equal(s.signedUrl, undefined, 'no signer without the capability');
      return;
    }
    await write(s, '.history/s/v1.tar.gz', 'signed bytes');
    const disposition = 'attachment; filename="s.tar.gz"';
    const url = await s.signedUrl!('.history/s/v1.tar.gz', 60_000, { contentDisposition: disposition });
    const res = await fetch(url);
    t.equal(res.status, 200);
    t.equal(await res.text(), 'signed bytes');
    const missing = await fetch(await s.signedUrl!('.history/s/v2.tar.gz', 60_000));
    t.equal(missing.status, 404, 'signing checks nothing; the store answers 404 for a missing key');
    await missing.arrayBuffer();
  });

  t.test('stageInPlace, where capabilities.stagesInPlace: a conditional write to the key itself', async (t) => {
    const s = await factory(t);
    if (!s.capabilities.stagesInPlace) {
      t.equal(s.stageInPlace, undefined, 'no stageInPlace without the capability');
      return;
    }
    const inPlace = s.stageInPlace!.bind(s);
    const first = await inPlace('p.tar.gz', body('first'), { version: '1', labels: '{"k":"v"}' });
    t.equal(first.size, 5);
    const head = await s.head('p.tar.gz');
    t.equal(head.token, first.token);
    t.same(head.metadata, { version: '1', labels: '{"k":"v"}' }, 'the metadata, without the write nonce');
    t.equal(await text((await s.get('p.tar.gz')).body), 'first');
    await t.rejects(inPlace('p.tar.gz', body('again'), {}), PreconditionFailedError, 'if-none-match by default');
    await t.rejects(
      inPlace('p.tar.gz', body('stale'), {}, { condition: { ifMatch: `${first.token}0` } }),
      PreconditionFailedError,
      'if-match a stale token',
    );
    const second = await inPlace('p.tar.gz', body('second'), { version: '2' }, { condition: { ifMatch: first.token } });
    t.equal(await text((await s.get('p.tar.gz')).body), 'second', 'if-match the current token');
    await inPlace('p.tar.gz', body('third'), {}, { condition: {} });
    t.not((await s.head('p.tar.gz')).token, second.token, 'no condition: overwritten');

    // Racing creators of one key (numbers reserved by a record each): exactly one wins.
    const results = await Promise.allSettled(
      Array.from({ length: 6 }, (_, i) => inPlace('race.json', body(`writer-${i}`), { writer: String(i) })),
    );
    t.equal(results.filter((r) => r.status === 'fulfilled').length, 1, 'one creator wins');
    for (const r of results) if (r.status === 'rejected') t.type(r.reason, PreconditionFailedError);
    const winner = (await s.head('race.json')).metadata.writer;
    t.equal(await text((await s.get('race.json')).body), `writer-${winner}`);
  });

  t.test('stageInPlace: a body that fails or is aborted before its end leaves nothing, at any size', async (t) => {
    const s = await factory(t);
    if (!s.stageInPlace) return;
    const MiB = 1024 * 1024;
    for (const size of [1000, 20 * MiB]) {
      let sent = 0;
      const failing = new Readable({
        read() {
          if (sent >= size) return this.destroy(new Error('vetoed'));
          const n = Math.min(MiB, size - sent);
          sent += n;
          this.push(randomBytes(n));
        },
      });
      await t.rejects(s.stageInPlace('v.tar.gz', failing, { version: '1' }), /vetoed/, `${size} bytes: refused`);
      await t.rejects(s.head('v.tar.gz'), NotFoundError, `${size} bytes: nothing at the key`);
      t.same(await all(s.list('')), [], `${size} bytes: nothing listed`);
      t.equal(await options.leftovers(s), 0, `${size} bytes: no upload left`);
    }
    const controller = new AbortController();
    const slow = new Readable({ read() {} });
    slow.push(randomBytes(64 * 1024));
    setTimeout(() => controller.abort(new Error('request aborted')), 20);
    await t.rejects(s.stageInPlace('a.tar.gz', slow, {}, { signal: controller.signal }));
    await t.rejects(s.head('a.tar.gz'), NotFoundError, 'aborted: nothing at the key');
    t.equal(await options.leftovers(s), 0, 'aborted: no upload left');
  });

  t.test('ping succeeds on a healthy backend', async (t) => {
    const s = await factory(t);
    await t.resolves(s.ping());
  });
}
