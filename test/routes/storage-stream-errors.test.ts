/**
 * A storage read that fails before its first byte (the connection drops as the download
 * starts): the client gets the storage error as JSON (503 with Retry-After), not the archive's
 * headers over Fastify's own 500 body.
 */
import { Readable } from 'node:stream';
import t from 'tap';
import { StorageUnavailableError } from '../../src/errors.js';
import { LocalStorage } from '../../src/storage/local/storage.js';
import type { ReadOptions } from '../../src/storage/types.js';
import { model } from '../helpers/archives.js';
import { put, start, tempDir } from '../helpers/server.js';

/** Local storage whose reads fail once the stream is read from, while `failing`. */
class FailingReads extends LocalStorage {
  failing = false;
  override async get(key: string, options?: ReadOptions) {
    const got = await super.get(key, options);
    if (!this.failing) return got;
    got.body.destroy();
    const body = new Readable({
      read() {
        setTimeout(() => this.destroy(new StorageUnavailableError('test', 'connection reset')), 10);
      },
    });
    return { ...got, body };
  }
}

t.test('a download whose storage read fails before its first byte: 503 JSON', async (t) => {
  const storage = new FailingReads({ root: await tempDir(t) });
  await storage.init();
  t.teardown(() => storage.close());
  const r = await start(t, { CACHE_WRITE_THROUGH: 'false' }, storage);
  t.equal((await put(`${r.url}/models/m`, model('v1'))).status, 201);
  storage.failing = true;
  const res = await fetch(`${r.url}/models/m`);
  const body = await res.text();
  t.equal(res.status, 503, body);
  t.match(res.headers.get('content-type'), /^application\/json/);
  t.equal(res.headers.get('retry-after'), '5');
  t.equal(res.headers.get('etag'), null, 'no ETag of the archive on the error');
  t.equal(res.headers.get('content-digest'), null);
  t.ok(res.headers.get('x-request-id'), 'the request id stays');
  t.match(JSON.parse(body), { error: 'STORAGE_UNAVAILABLE' });
  storage.failing = false;
  const again = await fetch(`${r.url}/models/m`);
  t.equal(again.status, 200, 'and the next download works');
  await again.arrayBuffer();
});
