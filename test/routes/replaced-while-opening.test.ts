/**
 * A model replaced between the describe of a request and the opening of its bytes (cold cache):
 * the routes describe again, and the answer must be about the bytes it carries — status,
 * Content-Range, Content-Digest and ETag of the new version, never a mix of the two.
 */
import { createHash } from 'node:crypto';
import t, { type Test } from 'tap';
import { LocalStorage } from '../../src/storage/local/storage.js';
import type { ReadOptions } from '../../src/storage/types.js';
import { model, tgz } from '../helpers/archives.js';
import { bytes, put, start, tempDir } from '../helpers/server.js';

/** Local storage that runs `beforeNextGet` (once) before the next read of an archive. */
class ReplacingStorage extends LocalStorage {
  beforeNextGet?: () => Promise<void>;
  override async get(key: string, options?: ReadOptions) {
    const hook = this.beforeNextGet;
    this.beforeNextGet = undefined;
    await hook?.();
    return super.get(key, options);
  }
}

async function setup(t: Test) {
  const storage = new ReplacingStorage({ root: await tempDir(t) });
  await storage.init();
  t.teardown(() => storage.close());
  const r = await start(t, { CACHE_WRITE_THROUGH: 'false' }, storage);
  /** Uploads `first` as `name` (201 when new, else 200), then `next` once a request opens it. */
  const replacedOnOpen = async (name: string, first: Buffer, next: Buffer, status = 201) => {
    t.equal((await put(`${r.url}/models/${name}`, first)).status, status);
    storage.beforeNextGet = async () => void t.equal((await put(`${r.url}/models/${name}`, next)).status, 200);
  };
  return { r, replacedOnOpen };
}

const etag = (archive: Buffer) => `"sha256:${createHash('sha256').update(archive).digest('hex')}"`;

t.test('a resumed download whose If-Range no longer matches gets the whole new version with 200', async (t) => {
  const { r, replacedOnOpen } = await setup(t);
  const v1 = model('v1', 100_000);
  const v2 = model('v2', 300_000);
  await replacedOnOpen('m', v1, v2);
  const res = await fetch(`${r.url}/models/m`, { headers: { range: 'bytes=50000-', 'if-range': etag(v1) } });
  const body = await bytes(res);
  t.equal(res.status, 200, 'not a 206: the range was for the old version');
  t.equal(res.headers.get('content-range'), null, 'no Content-Range of the old version');
  t.equal(res.headers.get('etag'), etag(v2));
  t.equal(res.headers.get('x-model-version'), '2');
  t.equal(res.headers.get('content-length'), String(v2.length));
  t.ok(body.equals(v2), 'the whole new archive');
});

t.test(
  "a range that starts to apply on the second attempt is a 206 without the whole archive's Content-Digest",
  async (t) => {
    const { r, replacedOnOpen } = await setup(t);
    const v1 = model('v1', 100_000);
    const v2 = model('v2', 300_000);
    await replacedOnOpen('m', v1, v2);
    // The client already knows v2: its If-Range fails on v1 (full body) and holds on v2.
    const res = await fetch(`${r.url}/models/m`, { headers: { range: 'bytes=1000-1999', 'if-range': etag(v2) } });
    const body = await bytes(res);
    t.equal(res.status, 206);
    t.equal(res.headers.get('content-range'), `bytes 1000-1999/${v2.length}`);
    t.equal(res.headers.get('content-digest'), null, 'Content-Digest would describe the whole archive');
    t.ok(body.equals(v2.subarray(1000, 2000)));
  },
);

t.test(
  'file routes describe again when the model is replaced during their cold read (no 412 to a request without preconditions)',
  async (t) => {
    const { r, replacedOnOpen } = await setup(t);
    const v1 = tgz([{ path: 'config.json', body: '{"v":1}' }]);
    const v2 = tgz([
      { path: 'config.json', body: '{"v":2}' },
      { path: 'extra.txt', body: 'x' },
    ]);
    await replacedOnOpen('a', v1, v2);
    const manifest = await fetch(`${r.url}/models/a/files`);
    t.equal(manifest.status, 200);
    const listed = (await manifest.json()) as { version: number; files: { path: string }[] };
    t.equal(listed.version, 2);
    t.same(listed.files.map((f) => f.path).sort(), ['config.json', 'extra.txt']);

    await replacedOnOpen('b', v1, v2);
    const file = await fetch(`${r.url}/models/b/files/config.json`);
    t.equal(file.status, 200);
    t.equal(await file.text(), '{"v":2}');
    t.equal(file.headers.get('x-model-version'), '2');
  },
);

t.test("a second attempt that ends in 304 or 416 carries none of the first version's headers", async (t) => {
  const { r, replacedOnOpen } = await setup(t);
  const v1 = model('v1', 300_000);
  const v2 = model('v2', 100_000);
  await replacedOnOpen('m', v1, v2);
  const notModified = await fetch(`${r.url}/models/m`, { headers: { 'if-none-match': etag(v2) } });
  t.equal(notModified.status, 304);
  t.equal(notModified.headers.get('etag'), etag(v2));
  for (const name of ['repr-digest', 'content-disposition', 'content-type'])
    t.equal(notModified.headers.get(name), null, `no ${name} of v1`);
  t.not(notModified.headers.get('content-length'), String(v1.length), 'no Content-Length of v1');

  // A range that fits the version first described (300 KB), not the one that replaced it.
  const v4 = model('v4', 100_000);
  await replacedOnOpen('m', model('v3', 300_000), v4, 200);
  const unsatisfiable = await fetch(`${r.url}/models/m`, { headers: { range: 'bytes=200000-' } });
  t.equal(unsatisfiable.status, 416);
  t.equal(unsatisfiable.headers.get('content-range'), `bytes */${v4.length}`);
  t.equal(unsatisfiable.headers.get('repr-digest'), null);
  t.equal(unsatisfiable.headers.get('content-disposition'), null);
  t.match(unsatisfiable.headers.get('content-type'), /^application\/json/);
  await unsatisfiable.text();
});
