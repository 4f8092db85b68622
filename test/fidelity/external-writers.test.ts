/**
 * Issue 15, "version numbers are forever": another tool overwriting `{name}.tar.gz` — `cp` and a
 * plain writeFile on the local backend, `aws s3 cp` on MinIO — is a new version with a higher
 * number every time; numbers never go back (MODEL_HISTORY=0, after DELETE ?version=N, after the
 * model was deleted); what the registry published stays retrievable as history, byte for byte;
 * a second replica and a restarted registry (a new process on the same storage) see the same
 * numbers. On Azurite and fake-gcs-server too, where the other tool is the cloud's own SDK
 * uploading the blob / object over the registry's.
 *
 * The restarts run dist/server.js: `npm run build` first (npm test does).
 */
import { randomUUID } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { BlobServiceClient, StorageSharedKeyCredential } from '@azure/storage-blob';
import { Storage as GcsClient } from '@google-cloud/storage';
import t, { type Test } from 'tap';
import { model } from '../helpers/archives.js';
import { azuriteEnv, fakeGcsEnv, minioEnv } from '../helpers/cloud.js';
import {
  AZURITE_ACCOUNT,
  AZURITE_KEY,
  type Emulator,
  startAzurite,
  startFakeGcs,
  startMinio,
} from '../helpers/emulators.js';
import { download, meta, portable, rootAws, sha256, versions } from '../helpers/fidelity.js';
import { spawnServer } from '../helpers/process.js';
import { put, start, tempDir } from '../helpers/server.js';
import { run } from '../helpers/tools.js';

interface Store {
  kind: string;
  /** The registry settings that point at this store. */
  env: Record<string, string>;
  /** Another tool writes `body` as `{name}.tar.gz`; `i` picks among the tool's ways. */
  overwrite(name: string, body: Buffer, i: number): Promise<void>;
}

async function localStore(t: Test): Promise<Store> {
  const dir = await tempDir(t, 'mr-ext-local-');
  const scratch = await tempDir(t, 'mr-ext-src-');
  return {
    kind: 'local',
    env: { LOCAL_STORAGE_DIR: dir },
    async overwrite(name, body, i) {
      const target = path.join(dir, `${name}.tar.gz`);
      if (i % 2 === 0) {
        // cp(1) onto an existing file truncates and rewrites it in place (same inode).
        const src = path.join(scratch, `${randomUUID()}.tar.gz`);
        await writeFile(src, body);
        await run('cp', [src, target]);
      } else {
        await writeFile(target, body);
      }
    },
  };
}

let minio: Emulator | undefined;
async function minioStore(t: Test): Promise<Store> {
  minio ??= await startMinio();
  const env = minioEnv(minio);
  const aws = rootAws(minio);
  await aws('s3', 'mb', `s3://${env.BUCKET_NAME}`);
  const scratch = await tempDir(t, 'mr-ext-src-');
  return {
    kind: 'minio',
    env,
    async overwrite(name, body) {
      const src = path.join(scratch, `${randomUUID()}.tar.gz`);
      await writeFile(src, body);
      await aws('s3', 'cp', src, `s3://${env.BUCKET_NAME}/${name}.tar.gz`, '--no-progress');
    },
  };
}

let azurite: Emulator | undefined;
async function azureStore(): Promise<Store> {
  azurite ??= await startAzurite();
  const env = azuriteEnv(azurite);
  const service = new BlobServiceClient(azurite.url, new StorageSharedKeyCredential(AZURITE_ACCOUNT, AZURITE_KEY));
  return {
    kind: 'azure',
    env,
    async overwrite(name, body) {
      await service.getContainerClient(env.AZURE_CONTAINER!).getBlockBlobClient(`${name}.tar.gz`).uploadData(body);
    },
  };
}

let gcs: Emulator | undefined;
async function gcsStore(): Promise<Store> {
  gcs ??= await startFakeGcs();
  const env = fakeGcsEnv(gcs);
  const client = new GcsClient({ apiEndpoint: gcs.url, projectId: env.GOOGLE_CLOUD_PROJECT });
  return {
    kind: 'gcs',
    env,
    async overwrite(name, body) {
      await client.bucket(env.BUCKET_NAME!).file(`${name}.tar.gz`).save(body, { resumable: false });
    },
  };
}
t.teardown(async () => {
  await Promise.all([minio?.dispose(), azurite?.dispose(), gcs?.dispose()]);
});

async function upload(
  t: Test,
  base: string,
  name: string,
  body: Buffer,
  labels: Record<string, string> = {},
): Promise<number> {
  const headers = Object.fromEntries(Object.entries(labels).map(([k, v]) => [`x-model-label-${k}`, v]));
  const res = await put(`${base}/models/${name}`, body, headers);
  const json = (await res.json()) as { version: number };
  t.ok(res.status === 200 || res.status === 201, `PUT ${name} stored (${res.status})`);
  return json.version;
}

/** A new registry process on the same storage: its /versions must equal `expected`. */
async function restartAgrees(t: Test, store: Store, name: string, base: string): Promise<string> {
  const expected = (await versions(base, name)).map(portable);
  const again = await spawnServer(t, { ...store.env, LOG_LEVEL: 'warn' });
  t.same(
    (await versions(again.url, name)).map(portable),
    expected,
    `${store.kind}: a restarted registry gives ${name} the same numbers, digests, sizes, labels and dates`,
  );
  return again.url;
}

for (const makeStore of [localStore, minioStore, azureStore, gcsStore]) {
  t.test(
    `${makeStore.name}: six external overwrites are six new, rising numbers; the published version stays`,
    async (t) => {
      const store = await makeStore(t);
      const r = await start(t, store.env);
      const replica = await start(t, store.env);
      const v1 = model('published-1');
      const v2 = model('published-2');
      t.equal(await upload(t, r.url, 'x', v1, { git_sha: 'aaa' }), 1);
      t.equal(await upload(t, r.url, 'x', v2, { git_sha: 'bbb' }), 2);
      const published = await meta(r.url, 'x');

      const numbers: number[] = [];
      const bodies: Buffer[] = [];
      for (let i = 0; i < 6; i++) {
        const body = model(`external-${i}`);
        bodies.push(body);
        await store.overwrite('x', body, i);
        // Two replicas asked at once agree on the number (one record claims it).
        const [seen, other] = await Promise.all([meta(r.url, 'x'), meta(replica.url, 'x')]);
        t.equal(seen.sha256, sha256(body), `overwrite ${i + 1}: the new bytes are identified by their digest`);
        t.same(seen.labels, {}, `overwrite ${i + 1}: another tool's version has no labels`);
        t.equal(other.version, seen.version, `overwrite ${i + 1}: a second replica gives it the same number`);
        t.ok(
          seen.version > (numbers.at(-1) ?? published.version),
          `overwrite ${i + 1} is v${seen.version}, above v${numbers.at(-1) ?? published.version}`,
        );
        numbers.push(seen.version);
        const got = await download(r.url, 'x');
        t.equal(sha256(got.body), sha256(body), `overwrite ${i + 1}: GET serves the new bytes`);
        t.equal(got.headers.get('x-model-version'), String(seen.version));
        t.equal(got.headers.get('etag'), `"sha256:${sha256(body)}"`);
      }
      t.equal(new Set(numbers).size, 6, `six distinct numbers: ${numbers.join(', ')}`);
      t.same(
        numbers,
        [...numbers].sort((a, b) => a - b),
        'rising',
      );

      // What the registry published is still there, byte for byte, with its record.
      t.equal(
        sha256((await download(r.url, 'x', 2)).body),
        sha256(v2),
        'GET ?version=2 is the published v2, byte-exact',
      );
      t.equal(
        sha256((await download(r.url, 'x', 1)).body),
        sha256(v1),
        'GET ?version=1 is the published v1, byte-exact',
      );
      const listed = await versions(r.url, 'x');
      t.equal(listed[0]!.version, numbers.at(-1), '/versions: the last overwrite is current');
      t.same(
        listed.find((v) => v.version === 2) && portable(listed.find((v) => v.version === 2)!),
        portable(published),
        '/versions lists the published v2 as it was published',
      );
      t.same(listed.find((v) => v.version === 1)?.labels, { git_sha: 'aaa' }, '/versions lists v1 with its labels');

      const restarted = await restartAgrees(t, store, 'x', r.url);

      // The next upload follows the highest number; the external object it replaces is kept.
      const v9 = model('published-after');
      t.equal(
        await upload(t, restarted, 'x', v9),
        numbers.at(-1)! + 1,
        'an upload after the overwrites gets the next number',
      );
      t.equal(
        sha256((await download(r.url, 'x', numbers.at(-1))).body),
        sha256(bodies.at(-1)!),
        'the replaced external version is kept as history, byte-exact',
      );
      t.equal(sha256((await download(r.url, 'x')).body), sha256(v9));
    },
  );

  t.test(`${makeStore.name}: MODEL_HISTORY=0 — v2 overwritten externally is v3, never v1`, async (t) => {
    const store = await makeStore(t);
    const env = { ...store.env, MODEL_HISTORY: '0' };
    const r = await start(t, env);
    const v2 = model('h0-2');
    t.equal(await upload(t, r.url, 'x', model('h0-1')), 1);
    t.equal(await upload(t, r.url, 'x', v2), 2);
    const body = model('h0-external');
    await store.overwrite('x', body, 0);
    const seen = await meta(r.url, 'x');
    t.equal(seen.version, 3, 'the external object is v3');
    t.equal(seen.sha256, sha256(body));
    t.equal(sha256((await download(r.url, 'x', 2)).body), sha256(v2), 'the published v2 is still retrievable');
    await store.overwrite('x', model('h0-external-2'), 1);
    t.equal((await meta(r.url, 'x')).version, 4, 'a second overwrite is v4');
    const again = await spawnServer(t, { ...env, LOG_LEVEL: 'warn' });
    t.equal((await meta(again.url, 'x')).version, 4, 'a restarted registry says v4 too');
    t.equal(await upload(t, again.url, 'x', model('h0-5')), 5, 'the next upload is v5');
  });

  t.test(`${makeStore.name}: numbers keep rising after DELETE ?version=N and after the model is deleted`, async (t) => {
    const store = await makeStore(t);
    const r = await start(t, store.env);
    for (let i = 1; i <= 3; i++) t.equal(await upload(t, r.url, 'x', model(`d-${i}`)), i);
    const del = async (query: string) => {
      const res = await fetch(`${r.url}/models/x${query}`, { method: 'DELETE' });
      t.equal(res.status, 204, `DELETE /models/x${query}: ${res.status === 204 ? '' : await res.text()}`);
    };
    const seen: number[] = [3];
    const overwriteIsNext = async (seed: string, i: number) => {
      const body = model(seed);
      await store.overwrite('x', body, i);
      const m = await meta(r.url, 'x');
      t.equal(m.sha256, sha256(body));
      t.ok(m.version > Math.max(...seen), `${seed}: v${m.version}, above every number seen (${Math.max(...seen)})`);
      seen.push(m.version);
    };

    await del('?version=2');
    await overwriteIsNext('after-delete-2', 0);
    await del('?version=3'); // the version the registry published last
    await overwriteIsNext('after-delete-3', 1);
    await del('?version=1');
    await overwriteIsNext('after-delete-1', 2);
    const put1 = await upload(t, r.url, 'x', model('d-put'));
    t.ok(put1 > Math.max(...seen), `an upload then is v${put1}`);
    seen.push(put1);
    await restartAgrees(t, store, 'x', r.url);

    // The whole model goes; its highest number stays taken, for uploads and other tools alike.
    await del('');
    t.equal((await fetch(`${r.url}/models/x/meta`)).status, 404, 'deleted');
    await overwriteIsNext('after-model-delete', 3);
    await del('');
    const again = await upload(t, r.url, 'x', model('recreated'));
    t.ok(again > Math.max(...seen), `the model created again is v${again}, above every earlier number`);
  });
}
