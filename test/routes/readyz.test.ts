/**
 * /readyz against a storage that stops answering: 503 within the readiness deadline
 * (STORAGE_TIMEOUT, at most 5 s), one storage check shared by every probe meanwhile.
 */
import t from 'tap';
import { LocalStorage } from '../../src/storage/local/storage.js';
import { isError } from '../helpers/assert.js';
import { start, tempDir } from '../helpers/server.js';

class SilentStorage extends LocalStorage {
  silent = false;
  pings = 0;
  override async ping(): Promise<void> {
    this.pings++;
    if (this.silent) return new Promise(() => {}); // a stalled server: its SDK would retry for minutes
    return super.ping();
  }
}

t.test('a storage that stops answering: /readyz is 503 after the deadline, and probes share one check', async (t) => {
  const storage = new SilentStorage({ root: await tempDir(t) });
  await storage.init();
  t.teardown(() => storage.close());
  const r = await start(t, { STORAGE_TIMEOUT: '1s' }, storage);
  t.equal((await fetch(`${r.url}/readyz`)).status, 200);
  storage.silent = true;
  const pingsBefore = storage.pings;
  const started = Date.now();
  const probes = await Promise.all(Array.from({ length: 5 }, () => fetch(`${r.url}/readyz`)));
  const elapsed = Date.now() - started;
  for (const probe of probes) await isError(t, probe, 503, 'STORAGE_UNAVAILABLE');
  t.ok(elapsed >= 900 && elapsed < 3000, `answered after ${elapsed} ms`);
  t.equal(storage.pings - pingsBefore, 1, 'one storage check for five probes');
  storage.silent = false;
});
