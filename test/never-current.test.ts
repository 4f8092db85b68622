/**
 * A writer that stored a version's bytes and record in history (steps 1-3 of a publish) and died
 * before making it current (step 4) leaves a number that never became current. The next publish
 * turns it into a tombstone at once, so no listing shows it, and deletes its bytes once they are
 * older than a losing writer could still need them (abandonedAfterMs; 10 minutes in service).
 * The cluster test (test/cluster/crash.test.ts) makes the same crash with a real kill -9.
 */
import { Readable } from 'node:stream';
import { pino } from 'pino';
import t, { type Test } from 'tap';
import { loadConfig } from '../src/config.js';
import { encodeRecord } from '../src/registry/records.js';
import { ModelRegistry } from '../src/registry/service.js';
import { createStorage, type Storage } from '../src/storage/index.js';
import { model } from './helpers/archives.js';
import { sha256 } from './helpers/assert.js';
import { tempDir } from './helpers/server.js';

const limits = { maxModelBytes: 2 ** 30, maxExtractedBytes: 2 ** 32, maxEntries: 10_000 };

async function setup(t: Test, abandonedAfterMs: number) {
  const config = loadConfig({ REMOTE_STORAGE: 'local', LOCAL_STORAGE_DIR: await tempDir(t), LOG_LEVEL: 'silent' });
  const storage = await createStorage(config, pino({ level: 'silent' }));
  t.teardown(() => storage.close());
  const registry = new ModelRegistry({
    storage,
    limits,
    history: 5,
    logger: pino({ level: 'silent' }),
    abandonedAfterMs,
  });
  const upload = (bytes: Buffer) =>
    registry.put('m', { body: Readable.from([bytes]), format: 'gzip', labels: {}, condition: {} });
  return { storage, registry, upload };
}

/** What a writer that died after step 3 leaves: the record claiming v{N} and its history bytes. */
async function crashAfterStoring(storage: Storage, version: number, bytes: Buffer) {
  const record = {
    version,
    sha256: sha256(bytes),
    size: bytes.length,
    createdAt: new Date().toISOString(),
    labels: {},
    origin: 'upload' as const,
  };
  await storage.commit(
    await storage.stage('.history/m/v2.json', Readable.from([Buffer.from(encodeRecord(record))])),
    {},
    { ifNoneMatch: true },
  );
  await storage.commit(
    await storage.stage(`.history/m/v${version}.tar.gz`, Readable.from([bytes])),
    {},
    { ifNoneMatch: true },
  );
}

async function keys(storage: Storage): Promise<string[]> {
  const out: string[] = [];
  for await (const o of storage.list('.history/m/')) out.push(o.key);
  return out.sort();
}

for (const [label, after, bytesGone] of [
  ['old enough', 0, true],
  ['still young', 60_000, false],
] as const) {
  t.test(`a number that never became current, its bytes ${label}`, async (t) => {
    const { storage, registry, upload } = await setup(t, after);
    const first = model('first');
    t.equal((await upload(first)).model.version, 1);
    await crashAfterStoring(storage, 2, model('never-current'));
    const third = model('third');
    const { model: made } = await upload(third);
    t.equal(made.version, 3, 'the next upload skips the claimed number');
    t.same(
      (await registry.versions('m')).map((v) => [v.version, v.sha256]),
      [
        [3, sha256(third)],
        [1, sha256(first)],
      ],
      'the versions are those that were current',
    );
    const left = await keys(storage);
    t.equal(left.includes('.history/m/v2.tar.gz'), !bytesGone, bytesGone ? 'its bytes are gone' : 'its bytes wait');
    t.ok(left.includes('.history/m/v2.json'), 'its number stays taken');
    const { body } = await storage.get('.history/m/v2.json');
    t.match(Buffer.concat(await body.toArray()).toString(), /"deleted":true/, 'as a tombstone');
  });
}
