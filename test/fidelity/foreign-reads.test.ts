/**
 * Issue 15, "foreign objects are read-only": a `{name}.tar.gz` another tool wrote (writeFile on
 * the local backend, `aws s3 cp` to MinIO) is served without the registry ever writing to it.
 * 50 concurrent cold GETs make exactly one storage read of it — counted by the registry's own
 * /metrics and, on MinIO, by MinIO's trace of the calls it served. After GET, HEAD, /meta, /files,
 * /files/* and /versions the object is as it was: on disk the same inode, mtime, ctime, size,
 * link count and bytes, and no metadata sidecar; on MinIO the same ETag, LastModified, metadata
 * and object version (the bucket is versioned, so any write would show as a second version).
 * What the registry derives is its own: the digest, the manifest, a record under .history/.
 * On Azurite and fake-gcs-server the object is uploaded with the cloud's SDK, and its ETag /
 * generation, last-modified time and metadata, read with the SDK, are unchanged.
 */
import { createHash } from 'node:crypto';
import { readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { BlobServiceClient, StorageSharedKeyCredential } from '@azure/storage-blob';
import { Storage as GcsClient } from '@google-cloud/storage';
import t, { type Test } from 'tap';
import { model } from '../helpers/archives.js';
import { azuriteEnv, fakeGcsEnv, minioEnv } from '../helpers/cloud.js';
import { AZURITE_ACCOUNT, AZURITE_KEY, startAzurite, startFakeGcs, startMinio } from '../helpers/emulators.js';
import {
  bucketListing,
  callsTo,
  fileTree,
  getJson,
  headObject,
  meta,
  rootAws,
  sha256,
  storageCalls,
  type TraceCall,
  traceMinio,
  versions,
} from '../helpers/fidelity.js';
import { start, tempDir } from '../helpers/server.js';

const SEED = 'foreign-tool';
const CONCURRENT = 50;

/** 50 GETs at once: every one 200 with the object's bytes and its digest as ETag. */
async function coldGets(t: Test, base: string, body: Buffer): Promise<void> {
  const results = await Promise.all(
    Array.from({ length: CONCURRENT }, async () => {
      const res = await fetch(`${base}/models/foreign`);
      return {
        status: res.status,
        etag: res.headers.get('etag'),
        digest: createHash('sha256')
          .update(Buffer.from(await res.arrayBuffer()))
          .digest('hex'),
      };
    }),
  );
  t.same(new Set(results.map((r) => r.status)), new Set([200]), `${CONCURRENT} GETs answered 200`);
  t.same(new Set(results.map((r) => r.digest)), new Set([sha256(body)]), 'every GET got the bytes the tool wrote');
  t.same(
    new Set(results.map((r) => r.etag)),
    new Set([`"sha256:${sha256(body)}"`]),
    'every ETag is the digest of those bytes',
  );
}

/** Everything a reader may ask of a model; checks the answers. */
async function readEverything(t: Test, base: string, body: Buffer): Promise<void> {
  const m = await meta(base, 'foreign');
  t.equal(m.sha256, sha256(body), '/meta: the digest of the bytes');
  t.equal(m.size, body.length, '/meta: their size');
  t.equal(m.storageKey, 'foreign.tar.gz');
  t.equal(m.version, 1, '/meta: the first version of the name');
  const head = await fetch(`${base}/models/foreign`, { method: 'HEAD' });
  t.equal(head.status, 200);
  t.equal(head.headers.get('content-length'), String(body.length));
  t.equal(
    head.headers.get('content-digest'),
    `sha-256=:${createHash('sha256').update(body).digest('base64')}:`,
    'HEAD: Content-Digest',
  );
  const manifest = await getJson<{ files: { path: string; type: string; size: number }[] }>(
    `${base}/models/foreign/files`,
  );
  const paths = manifest.files.map((f) => f.path);
  for (const p of ['model/config.json', 'model/weights.bin', 'model/latest'])
    t.ok(paths.includes(p), `/files lists ${p}`);
  const file = await fetch(`${base}/models/foreign/files/model/config.json`);
  t.equal(file.status, 200);
  t.equal(await file.text(), JSON.stringify({ seed: SEED }), '/files/model/config.json is the file in the archive');
  const listed = await versions(base, 'foreign');
  t.same(
    listed.map((v) => [v.version, v.sha256]),
    [[1, sha256(body)]],
    '/versions: one version, that digest',
  );
}

t.test("local: another tool's file is read once and never touched", async (t) => {
  const r = await start(t);
  const body = model(SEED);
  const file = path.join(r.dir, 'foreign.tar.gz');
  await writeFile(file, body);
  const before = await fileTree(r.dir);
  t.ok(before.has('foreign.tar.gz'));

  await coldGets(t, r.url, body);
  t.equal(await storageCalls(r.url, 'get'), 1, `${CONCURRENT} concurrent cold GETs made exactly 1 storage read`);
  await readEverything(t, r.url, body);
  // /meta and /versions each read the model's aliases document (absent here): the archive no more.
  t.equal(
    await storageCalls(r.url, 'get'),
    4,
    'and HEAD, /meta, /files, /versions no more of the archive (served from the cache): 2 of the aliases document, 1 of the record (/versions tells its origin)',
  );
  t.equal(await storageCalls(r.url, 'copy'), 0, 'no storage copy (no copy onto itself, no link into the cache)');

  const after = await fileTree(r.dir);
  t.same(
    after.get('foreign.tar.gz'),
    before.get('foreign.tar.gz'),
    'the file has the same inode, mtime, ctime, size, link count and bytes',
  );
  for (const [rel, state] of before) t.same(after.get(rel), state, `${rel} unchanged`);
  const added = [...after.keys()].filter((rel) => !before.has(rel));
  t.same(added, ['.history/foreign/v1.json'], "the only file added is the registry's own record of the version");
  const sidecars = (await readdir(path.join(r.dir, '.meta'), { recursive: true })).filter((n) =>
    String(n).includes('foreign'),
  );
  t.same(sidecars, [], 'no metadata sidecar was written for it');

  // A second registry (fresh cache) on the same directory: the same version, one read again.
  const other = await start(t, { LOCAL_STORAGE_DIR: r.dir });
  await coldGets(t, other.url, body);
  t.equal((await meta(other.url, 'foreign')).version, 1, 'another replica says v1 too');
  t.equal(
    await storageCalls(other.url, 'get'),
    3,
    'its cold GETs: 1 read of the object and 1 of the record; its /meta 1 of the aliases document',
  );
  t.same((await fileTree(r.dir)).get('foreign.tar.gz'), before.get('foreign.tar.gz'), 'still untouched');
});

t.test('MinIO: an object `aws s3 cp` wrote is read once and never written', async (t) => {
  const minio = await startMinio();
  t.teardown(() => minio.dispose());
  const env = minioEnv(minio);
  const bucket = env.BUCKET_NAME!;
  const aws = rootAws(minio);
  await aws('s3', 'mb', `s3://${bucket}`);
  await aws('s3api', 'put-bucket-versioning', '--bucket', bucket, '--versioning-configuration', 'Status=Enabled');
  const body = model(SEED);
  const src = path.join(await tempDir(t, 'mr-foreign-'), 'foreign.tar.gz');
  await writeFile(src, body);
  await aws('s3', 'cp', src, `s3://${bucket}/foreign.tar.gz`, '--no-progress');
  const objectVersions = async () =>
    (
      JSON.parse(
        await aws(
          's3api',
          'list-object-versions',
          '--bucket',
          bucket,
          '--prefix',
          'foreign.tar.gz',
          '--output',
          'json',
        ),
      ) as { Versions?: unknown[] }
    ).Versions ?? [];
  const before = await headObject(aws, bucket, 'foreign.tar.gz');
  t.same(before.Metadata, {}, 'the object carries no metadata');
  t.equal((await objectVersions()).length, 1);

  const r = await start(t, env);
  const trace = await traceMinio(minio);
  await coldGets(t, r.url, body);
  const afterGets = [...trace.calls];
  await readEverything(t, r.url, body);
  const calls = await trace.stop();

  t.equal(
    callsTo(afterGets, 's3.GetObject', bucket, 'foreign.tar.gz').length,
    1,
    `MinIO served exactly 1 GetObject of the object for ${CONCURRENT} cold GETs`,
  );
  t.equal(
    callsTo(calls, 's3.GetObject', bucket, 'foreign.tar.gz').length,
    1,
    'and none more for HEAD, /meta, /files, /versions',
  );
  t.equal(
    await storageCalls(r.url, 'get'),
    4,
    "the registry's /metrics count 4 storage reads in all: the object, the aliases document for /meta and /versions, the record for /versions",
  );
  const onKey: TraceCall[] = calls.filter((c) => c.path === `/${bucket}/foreign.tar.gz`);
  t.same(
    [...new Set(onKey.map((c) => c.funcname))].filter((f) => f !== 's3.GetObject' && f !== 's3.HeadObject'),
    [],
    'every call on the object was a read (GetObject / HeadObject)',
  );
  const writes = calls.filter((c) => /Put|Copy|Multipart|Delete|Tagging|Retention|LegalHold/.test(c.funcname));
  t.ok(writes.length > 0, 'the registry did write its record (the trace sees writes)');
  const ours = new RegExp(`^/${bucket}/(\\.history/foreign/v1\\.json|\\.uploads/[^/]+)$`);
  t.same(
    writes.filter((c) => !ours.test(c.path)).map((c) => `${c.funcname} ${c.path}`),
    [],
    "every write went to the registry's own record of v1 (or its staging under .uploads/)",
  );

  const after = await headObject(aws, bucket, 'foreign.tar.gz');
  t.equal(after.ETag, before.ETag, 'ETag unchanged');
  t.equal(after.LastModified, before.LastModified, 'LastModified unchanged');
  t.same(after.Metadata, {}, 'no metadata added');
  t.equal(after.VersionId, before.VersionId, 'the same object version');
  t.equal((await objectVersions()).length, 1, 'the versioned bucket holds one version of it still');
  t.same(
    [...(await bucketListing(aws, bucket)).keys()].sort(),
    ['.history/foreign/v1.json', 'foreign.tar.gz'],
    'nothing else was written',
  );
});

/** The SDK's view of the object: what a write of any kind would change. */
async function cloudCase(
  t: Test,
  env: Record<string, string>,
  tool: { write(body: Buffer): Promise<void>; properties(): Promise<Record<string, unknown>> },
): Promise<void> {
  const r = await start(t, env); // creates the container / bucket
  const body = model(SEED);
  await tool.write(body);
  const before = await tool.properties();
  await coldGets(t, r.url, body);
  t.equal(await storageCalls(r.url, 'get'), 1, `${CONCURRENT} concurrent cold GETs made exactly 1 storage read`);
  await readEverything(t, r.url, body);
  t.equal(
    await storageCalls(r.url, 'get'),
    4,
    'and HEAD, /meta, /files, /versions no more of the object: 2 of the aliases document, 1 of the record (/versions tells its origin)',
  );
  t.equal(await storageCalls(r.url, 'copy'), 0, 'no storage copy');
  t.same(await tool.properties(), before, 'the object is unchanged (ETag / generation, last modified, metadata)');
}

t.test('Azurite: a blob the Azure SDK uploaded is read once and never written', async (t) => {
  const azurite = await startAzurite();
  t.teardown(() => azurite.dispose());
  const env = azuriteEnv(azurite);
  const blob = new BlobServiceClient(azurite.url, new StorageSharedKeyCredential(AZURITE_ACCOUNT, AZURITE_KEY))
    .getContainerClient(env.AZURE_CONTAINER!)
    .getBlockBlobClient('foreign.tar.gz');
  await cloudCase(t, env, {
    write: async (body) => void (await blob.uploadData(body)),
    properties: async () => {
      const p = await blob.getProperties();
      return {
        etag: p.etag,
        lastModified: p.lastModified?.toISOString(),
        metadata: p.metadata,
        length: p.contentLength,
      };
    },
  });
});

t.test('fake-gcs-server: an object the GCS SDK uploaded is read once and never written', async (t) => {
  const gcs = await startFakeGcs();
  t.teardown(() => gcs.dispose());
  const env = fakeGcsEnv(gcs);
  const file = new GcsClient({ apiEndpoint: gcs.url, projectId: env.GOOGLE_CLOUD_PROJECT })
    .bucket(env.BUCKET_NAME!)
    .file('foreign.tar.gz');
  await cloudCase(t, env, {
    write: (body) => file.save(body, { resumable: false }),
    properties: async () => {
      const [m] = await file.getMetadata();
      return {
        generation: m.generation,
        metageneration: m.metageneration,
        etag: m.etag,
        updated: m.updated,
        metadata: m.metadata ?? {},
        size: m.size,
      };
    },
  });
});
