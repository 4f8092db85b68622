/**
 * Issue 15, "copies carry everything": a local store with several models, labels, history, a gap
 * after DELETE ?version=3, a model deleted and created again, an external overwrite and another
 * tool's object is copied with `cp -a`, `rsync -a`, `aws s3 sync` from the directory to MinIO and
 * back to a new directory, and `aws s3 sync` from bucket to bucket. A registry started on each
 * copy (fresh cache, so nothing comes from the source's process) lists every model's /versions
 * identically — number, sha256, size, labels, createdAt — and serves every version byte for byte;
 * a new upload on the copy gets the next number, never one the source ever used.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import t, { type Test } from 'tap';
import { model } from '../helpers/archives.js';
import { minioEnv } from '../helpers/cloud.js';
import { startMinio } from '../helpers/emulators.js';
import { download, portable, rootAws, sha256, type VersionView, versions } from '../helpers/fidelity.js';
import { put, start, tempDir } from '../helpers/server.js';
import { run } from '../helpers/tools.js';

interface Expected {
  /** name → /versions of the source */
  versions: Map<string, VersionView[]>;
  /** name@version → sha256 of the bytes the source serves */
  bytes: Map<string, string>;
  /** name → the highest number the source ever gave it (deleted versions included) */
  highest: Map<string, number>;
}

async function upload(
  t: Test,
  base: string,
  name: string,
  body: Buffer,
  labels: Record<string, string> = {},
): Promise<number> {
  // Header values travel as bytes: UTF-8 text is sent as its bytes (what curl sends).
  const headers = Object.fromEntries(
    Object.entries(labels).map(([k, v]) => [`x-model-label-${k}`, Buffer.from(v, 'utf8').toString('latin1')]),
  );
  const res = await put(`${base}/models/${name}`, body, headers);
  const json = (await res.json()) as { version: number };
  t.ok(res.status === 200 || res.status === 201, `PUT ${name}: ${res.status}`);
  return json.version;
}

async function del(t: Test, base: string, name: string, query = ''): Promise<void> {
  const res = await fetch(`${base}/models/${name}${query}`, { method: 'DELETE' });
  t.equal(res.status, 204, `DELETE ${name}${query}`);
}

/** Builds the source store; returns what every copy must serve. */
async function buildSource(t: Test, dir: string): Promise<Expected> {
  const r = await start(t, { LOCAL_STORAGE_DIR: dir });
  const highest = new Map<string, number>();
  // a: four versions with labels, then a gap: v3 deleted.
  for (let i = 1; i <= 4; i++)
    await upload(t, r.url, 'a', model(`a-${i}`), { git_sha: `sha-a-${i}`, dataset: 'nlu-2024', accuracy: `0.9${i}` });
  await del(t, r.url, 'a', '?version=3');
  highest.set('a', 4);
  // b: deleted and created again; the new life continues the numbers.
  await upload(t, r.url, 'b', model('b-1'), { run: 'first' });
  await upload(t, r.url, 'b', model('b-2'), { run: 'first' });
  await del(t, r.url, 'b');
  const b3 = await upload(t, r.url, 'b', model('b-3'), { run: 'second', note: 'größer — ünïcode' });
  t.equal(b3, 3, 'b created again is v3');
  await upload(t, r.url, 'b', model('b-4'), { run: 'second' });
  highest.set('b', 4);
  // e: published, then overwritten by another tool (an external version, recorded on read).
  await upload(t, r.url, 'e', model('e-1'), { owner: 'registry' });
  await writeFile(path.join(dir, 'e.tar.gz'), model('e-external'));
  t.equal((await versions(r.url, 'e'))[0]!.version, 2, 'e: the external overwrite is v2');
  highest.set('e', 2);
  // f: only ever written by another tool.
  await writeFile(path.join(dir, 'f.tar.gz'), model('f-foreign'));
  t.equal((await versions(r.url, 'f'))[0]!.version, 1);
  highest.set('f', 1);

  const expected: Expected = { versions: new Map(), bytes: new Map(), highest };
  for (const name of ['a', 'b', 'e', 'f']) {
    const listed = await versions(r.url, name);
    expected.versions.set(name, listed);
    for (const v of listed)
      expected.bytes.set(`${name}@${v.version}`, sha256((await download(r.url, name, v.version)).body));
  }
  t.same(
    expected.versions.get('a')!.map((v) => v.version),
    [4, 2, 1],
    'a: v3 is a gap',
  );
  t.same(
    expected.versions.get('b')!.map((v) => v.version),
    [4, 3],
    'b: only its second life',
  );
  t.equal(expected.versions.get('b')![1]!.labels.note, 'größer — ünïcode', 'b v3: a UTF-8 label');
  await r.app.close();
  return expected;
}

/** A registry on the copy serves exactly `expected`; then an upload gets the next number. */
async function assertCarried(t: Test, how: string, env: Record<string, string>, expected: Expected): Promise<void> {
  const copy = await start(t, env);
  for (const [name, listed] of expected.versions) {
    t.same(
      (await versions(copy.url, name)).map(portable),
      listed.map(portable),
      `${how}: ${name}'s /versions are identical (number, sha256, size, labels, createdAt)`,
    );
    for (const v of listed) {
      const got = await download(copy.url, name, v.version);
      t.equal(sha256(got.body), expected.bytes.get(`${name}@${v.version}`), `${how}: ${name} v${v.version} byte-exact`);
    }
  }
  for (const [name, highest] of expected.highest) {
    const next = await upload(t, copy.url, name, model(`${how}-${name}-next`));
    t.equal(
      next,
      highest + 1,
      `${how}: a new upload of ${name} is v${highest + 1}, after every number the source used`,
    );
  }
}

t.test('plain copies of a store carry every version, label and date', async (t) => {
  const src = await tempDir(t, 'mr-copy-src-');
  const expected = await buildSource(t, src);
  const scratch = await tempDir(t, 'mr-copy-dst-');

  t.test('cp -a', async (t) => {
    const dst = path.join(scratch, 'cp');
    await run('cp', ['-a', src, dst]);
    await assertCarried(t, 'cp -a', { LOCAL_STORAGE_DIR: dst }, expected);
  });

  t.test('rsync -a', async (t) => {
    const dst = path.join(scratch, 'rsync');
    await mkdir(dst);
    await run('rsync', ['-a', `${src}/`, `${dst}/`]);
    await assertCarried(t, 'rsync -a', { LOCAL_STORAGE_DIR: dst }, expected);
  });

  t.test('aws s3 sync: directory → MinIO → new directory, and bucket → bucket', async (t) => {
    const minio = await startMinio();
    t.teardown(() => minio.dispose());
    const aws = rootAws(minio);
    const a = minioEnv(minio);
    const b = minioEnv(minio);
    for (const env of [a, b]) await aws('s3', 'mb', `s3://${env.BUCKET_NAME}`);
    await aws('s3', 'sync', src, `s3://${a.BUCKET_NAME}`, '--no-progress');
    await aws('s3', 'sync', `s3://${a.BUCKET_NAME}`, `s3://${b.BUCKET_NAME}`, '--no-progress');
    const back = path.join(scratch, 's3-back');
    await mkdir(back);
    await aws('s3', 'sync', `s3://${a.BUCKET_NAME}`, back, '--no-progress');
    // Uploads on the copies come last: each copy is checked as it was synced.
    await assertCarried(t, 'sync to MinIO', a, expected);
    await assertCarried(t, 'sync bucket to bucket', b, expected);
    await assertCarried(t, 'sync MinIO back to a directory', { LOCAL_STORAGE_DIR: back }, expected);
  });
});
