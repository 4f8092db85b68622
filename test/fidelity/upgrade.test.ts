/**
 * Issue 15, "upgrading": a store in the layout of the release before version records — the
 * current object and history entries carrying the registry's object metadata, no
 * `.history/{name}/v{N}.json`, the current version not in history — is read as it is (same
 * numbers, digests, labels, createdAt; reads write nothing) and moves to the new layout one model
 * at a time on its next upload: the old current version is kept in history with its record,
 * kept history gets records, and numbers go on from the highest. Doing it again changes nothing.
 * On the local backend and MinIO; the old store is written through the same storage layer the
 * old release wrote it with.
 */
import { Readable } from 'node:stream';
import pino from 'pino';
import t, { type Test } from 'tap';
import { loadConfig } from '../../src/config.js';
import { createStorage, type Storage } from '../../src/storage/index.js';
import { model } from '../helpers/archives.js';
import { minioEnv } from '../helpers/cloud.js';
import { startMinio } from '../helpers/emulators.js';
import { download, portable, sha256, versions } from '../helpers/fidelity.js';
import { put, start, tempDir } from '../helpers/server.js';

const minio = await startMinio();
t.teardown(() => minio.dispose());

interface Old {
  key: string;
  version: number;
  body: Buffer;
  labels: Record<string, string>;
  createdAt: string;
}

/** What the release before records wrote: objects with metadata only. */
async function writeOldStore(storage: Storage, objects: Old[]): Promise<void> {
  for (const o of objects) {
    const staged = await storage.stage(o.key, Readable.from([o.body]));
    const metadata = {
      version: String(o.version),
      sha256: sha256(o.body),
      'created-at': o.createdAt,
      labels: JSON.stringify(o.labels),
    };
    await storage.commit(staged, metadata, { ifNoneMatch: true });
    await storage.discard(staged).catch(() => {});
  }
}

async function allKeys(storage: Storage): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const prefix of ['', '.history/m/', '.history/gap/']) {
    for await (const info of storage.list(prefix)) out[info.key] = info.token;
  }
  return out;
}

async function upgrade(t: Test, env: Record<string, string>) {
  const storage = await createStorage(loadConfig({ ...env, LOG_LEVEL: 'silent' }), pino({ level: 'silent' }));
  t.teardown(() => storage.close());
  const day = (d: number) => new Date(Date.UTC(2026, 0, d, 12)).toISOString();
  const old: Old[] = [
    { key: '.history/m/v1.tar.gz', version: 1, body: model('m1', 2048), labels: { stage: 'dev' }, createdAt: day(1) },
    {
      key: '.history/m/v2.tar.gz',
      version: 2,
      body: model('m2', 2048),
      labels: { stage: 'prod', git: 'ab12' },
      createdAt: day(2),
    },
    { key: 'm.tar.gz', version: 3, body: model('m3', 2048), labels: { stage: 'prod', git: 'cd34' }, createdAt: day(3) },
    // A gap: v2 had been deleted with DELETE ?version=2.
    { key: '.history/gap/v1.tar.gz', version: 1, body: model('g1', 1024), labels: {}, createdAt: day(4) },
    { key: 'gap.tar.gz', version: 3, body: model('g3', 1024), labels: { note: 'ünïcode' }, createdAt: day(5) },
  ];
  await writeOldStore(storage, old);
  const before = await allKeys(storage);

  const r = await start(t, { ...env, MODEL_HISTORY: '5' });
  const expected = (name: string) =>
    old
      .filter((o) => o.key === `${name}.tar.gz` || o.key.startsWith(`.history/${name}/`))
      .sort((a, b) => b.version - a.version)
      .map((o) => ({
        version: o.version,
        sha256: sha256(o.body),
        size: o.body.length,
        createdAt: o.createdAt,
        labels: o.labels,
        etag: `"sha256:${sha256(o.body)}"`,
      }));
  t.same(
    (await versions(r.url, 'm')).map(portable),
    expected('m'),
    'the old store is read as it is: same numbers, digests, labels, createdAt',
  );
  t.same((await versions(r.url, 'gap')).map(portable), expected('gap'), 'a gap stays a gap');
  for (const o of old) {
    const name = o.key.startsWith('.history/') ? o.key.split('/')[1]! : o.key.replace('.tar.gz', '');
    t.equal(
      sha256((await download(r.url, name, o.version)).body),
      sha256(o.body),
      `${name} v${o.version} byte for byte`,
    );
  }
  t.same(await allKeys(storage), before, 'reading wrote nothing: no record, no copy, no object changed');

  // The next upload moves the model to the new layout.
  const m4 = model('m4', 2048);
  const res = await put(`${r.url}/models/m`, m4, { 'x-model-label-stage': 'canary' });
  t.equal(res.status, 200);
  t.equal(((await res.json()) as { version: number }).version, 4, 'numbers go on from the highest');
  const after = await allKeys(storage);
  for (const v of [1, 2, 3, 4]) {
    t.ok(after[`.history/m/v${v}.json`], `v${v} has its record`);
    t.ok(after[`.history/m/v${v}.tar.gz`], `v${v} has its bytes in history`);
  }
  t.equal(after['.history/m/v1.tar.gz'], before['.history/m/v1.tar.gz'], 'old history objects are not rewritten');
  const upgraded = await versions(r.url, 'm');
  t.same(upgraded.slice(1).map(portable), expected('m'), 'every old version as it was');
  t.equal(upgraded[0]!.sha256, sha256(m4));

  // The records alone now carry the versions: a copy without object metadata would serve them.
  const records = await Promise.all(
    [1, 2, 3].map(async (v) => {
      const { body } = await storage.get(`.history/m/v${v}.json`);
      const chunks: Buffer[] = [];
      for await (const c of body) chunks.push(c as Buffer);
      return JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>;
    }),
  );
  t.same(
    records.map((rec) => ({ version: rec.version, sha256: rec.sha256, createdAt: rec.createdAt, labels: rec.labels })),
    expected('m')
      .map(({ version, sha256, createdAt, labels }) => ({ version, sha256, createdAt, labels }))
      .reverse(),
    'records hold what the metadata said',
  );

  // Idempotent: a restart and a second upload convert nothing again and keep every number.
  const again = await start(t, { ...env, MODEL_HISTORY: '5' });
  t.same((await versions(again.url, 'm')).map(portable), upgraded.map(portable), 'a new process sees the same');
  const m5 = await put(`${again.url}/models/m`, model('m5', 2048));
  t.equal(((await m5.json()) as { version: number }).version, 5);
  t.equal((await allKeys(storage))['.history/m/v1.json'], after['.history/m/v1.json'], 'a record is written once');
  // The model not uploaded to is still in the old layout, and still served the same.
  t.same((await versions(again.url, 'gap')).map(portable), expected('gap'));
  const g = await put(`${again.url}/models/gap`, model('g4', 1024));
  t.equal(((await g.json()) as { version: number }).version, 4, 'after a gap too');
}

t.test('local: a store of the release before records is served as it is and upgraded on the next upload', async (t) => {
  await upgrade(t, { REMOTE_STORAGE: 'local', LOCAL_STORAGE_DIR: await tempDir(t, 'mr-upgrade-') });
});

t.test('MinIO: the same', async (t) => {
  await upgrade(t, minioEnv(minio));
});
