/**
 * Concurrent writers and readers on one name: every read is one whole committed version
 * (its bytes hash to its ETag and are one of the uploads), and no update is lost.
 */
import t from 'tap';
import { model } from './helpers/archives.js';
import { sha256 } from './helpers/assert.js';
import { bytes, put, start } from './helpers/server.js';

t.test('4 writers and 8 readers on one model', async (t) => {
  const { url } = await start(t, { MODEL_HISTORY: '50' });
  const first = model('seed', 200 * 1024);
  await put(`${url}/models/hot`, first);
  const uploads = Array.from({ length: 4 }, (_, w) =>
    Array.from({ length: 5 }, (_, i) => model(`w${w}-${i}`, 200 * 1024)),
  );
  const known = new Set([first, ...uploads.flat()].map(sha256));
  const versions: number[] = [];
  let writing = true;

  const writers = uploads.map(async (mine) => {
    for (const archive of mine) {
      const res = await put(`${url}/models/hot`, archive);
      t.equal(res.status, 200);
      versions.push(((await res.json()) as { version: number }).version);
    }
  });
  let reads = 0;
  const readers = Array.from({ length: 8 }, async () => {
    while (writing) {
      const res = await fetch(`${url}/models/hot`);
      const body = await bytes(res);
      const digest = sha256(body);
      if (
        res.headers.get('etag') !== `"sha256:${digest}"` ||
        !known.has(digest) ||
        Number(res.headers.get('content-length')) !== body.length
      ) {
        t.fail(`read a partial or mixed archive (etag ${res.headers.get('etag')}, got ${digest})`);
      }
      reads++;
    }
  });
  await Promise.all(writers);
  writing = false;
  await Promise.all(readers);
  t.ok(reads > 20, `${reads} reads, all whole versions`);
  // Numbers only rise and are never shared; a writer overtaken in a race skips the one it held.
  t.equal(new Set(versions).size, 20, 'every upload got its own version');
  t.ok(
    versions.every((v) => v > 1),
    'all after the seed',
  );
  const history = (await (await fetch(`${url}/models/hot/versions`)).json()) as {
    versions: { version: number; sha256: string }[];
  };
  t.same(
    history.versions
      .map((v) => v.version)
      .slice(0, 20)
      .sort((a, b) => a - b),
    [...versions].sort((a, b) => a - b),
    'exactly those numbers are in history',
  );
  t.equal(history.versions.length, 21, 'every replaced version is in history');
  t.same(new Set(history.versions.map((v) => v.sha256)).size, 21, 'each history entry holds a distinct upload');
});
