/**
 * Issue 15, "serving works with read-only credentials": a registry process started with MinIO
 * temporary credentials whose session policy allows only s3:GetObject, s3:ListBucket and
 * s3:GetBucketLocation (from `aws sts assume-role --policy`, with AWS_SESSION_TOKEN). It starts
 * (its sweep meets AccessDenied on a leftover it may not delete, and carries on); list, GET,
 * ?version=N, HEAD, /meta, /files, /files/*, /versions work, for the registry's models and for an
 * object another tool wrote; PUT, rollback and DELETE answer 403 STORAGE_ACCESS_DENIED naming the
 * missing permission; the process keeps serving; and the bucket is exactly as it was.
 *
 * Runs dist/server.js (the startup sweep is the process's): `npm run build` first (npm test does).
 */
import { randomUUID } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { newStagedName } from '../../src/storage/shared/staging.js';
import { model } from '../helpers/archives.js';
import { minioEnv } from '../helpers/cloud.js';
import { startMinio } from '../helpers/emulators.js';
import { bucketListing, download, getJson, meta, rootAws, sha256, versions } from '../helpers/fidelity.js';
import { spawnServer } from '../helpers/process.js';
import { put, start, tempDir } from '../helpers/server.js';

interface ErrorBody {
  error: string;
  message: string;
}

t.test('a registry with read-only MinIO credentials serves, refuses writes by name, and writes nothing', async (t) => {
  const minio = await startMinio();
  t.teardown(() => minio.dispose());
  const env = minioEnv(minio);
  const bucket = env.BUCKET_NAME!;
  const aws = rootAws(minio);

  // The store, written with full rights: a model with history and labels, and another tool's object.
  const writer = await start(t, env);
  const v1 = model('ro-1');
  const v2 = model('ro-2');
  t.equal((await put(`${writer.url}/models/x`, v1, { 'x-model-label-stage': 'dev' })).status, 201);
  t.equal((await put(`${writer.url}/models/x`, v2, { 'x-model-label-stage': 'prod' })).status, 200);
  const scratch = await tempDir(t, 'mr-ro-');
  const foreign = model('ro-foreign');
  await writeFile(path.join(scratch, 'foreign.tar.gz'), foreign);
  await aws('s3', 'cp', path.join(scratch, 'foreign.tar.gz'), `s3://${bucket}/foreign.tar.gz`, '--no-progress');
  // A leftover the startup sweep takes for abandoned (its writer's pid is no process) and deletes
  // — when it may.
  const leftover = `.uploads/${newStagedName().replace(/^\d+-/, '2147483646-')}`;
  await writeFile(path.join(scratch, 'part'), 'interrupted upload');
  await aws('s3', 'cp', path.join(scratch, 'part'), `s3://${bucket}/${leftover}`, '--no-progress');
  const before = await bucketListing(aws, bucket);
  const published = await versions(writer.url, 'x');

  const policy = {
    Version: '2012-10-17',
    Statement: [
      {
        Effect: 'Allow',
        Action: ['s3:GetObject', 's3:ListBucket', 's3:GetBucketLocation'],
        Resource: [`arn:aws:s3:::${bucket}`, `arn:aws:s3:::${bucket}/*`],
      },
    ],
  };
  const assumed = JSON.parse(
    await aws(
      'sts',
      'assume-role',
      '--role-arn',
      'arn:xxx:xxx:xxx:xxxx',
      '--role-session-name',
      'test',
      '--policy',
      JSON.stringify(policy),
      '--output',
      'json',
    ),
  ) as { Credentials: { AccessKeyId: string; SecretAccessKey: string; SessionToken: string } };
  const c = assumed.Credentials;
  t.ok(c.AccessKeyId && c.SecretAccessKey && c.SessionToken, 'assume-role gave temporary credentials');

  const ro = await spawnServer(t, {
    ...env,
    AWS_ACCESS_KEY_ID: c.AccessKeyId,
    AWS_SECRET_ACCESS_KEY: c.SecretAccessKey,
    AWS_SESSION_TOKEN: c.SessionToken,
    AUTO_CREATE_BUCKET: 'false',
  });
  t.match(
    ro.output(),
    /may not be written with these credentials/,
    'startup: the sweep met AccessDenied and said the store is read-only',
  );
  t.ok(
    (await bucketListing(aws, bucket)).has(leftover),
    'the leftover is still there: the sweep really could not delete it',
  );
  t.equal((await fetch(`${ro.url}/readyz`)).status, 200, '/readyz: ready');

  // Reads.
  const list = await getJson<{ models: { name: string }[] }>(`${ro.url}/models`);
  t.same(list.models.map((m) => m.name).sort(), ['foreign', 'x'], 'GET /models lists both');
  t.equal(sha256((await download(ro.url, 'x')).body), sha256(v2), 'GET /models/x: the current bytes');
  t.equal(sha256((await download(ro.url, 'x', 1)).body), sha256(v1), 'GET ?version=1: the history bytes');
  t.equal((await fetch(`${ro.url}/models/x`, { method: 'HEAD' })).status, 200, 'HEAD');
  t.same(
    await versions(ro.url, 'x'),
    published,
    '/versions as the writer published them (numbers, digests, labels, dates)',
  );
  t.equal((await meta(ro.url, 'x')).labels.stage, 'prod', '/meta');
  const files = await getJson<{ files: { path: string }[] }>(`${ro.url}/models/x/files`);
  t.ok(
    files.files.some((f) => f.path === 'model/config.json'),
    '/files',
  );
  t.equal(
    await (await fetch(`${ro.url}/models/x/files/model/config.json`)).text(),
    JSON.stringify({ seed: 'ro-2' }),
    '/files/*',
  );
  const f = await meta(ro.url, 'foreign');
  t.equal(f.sha256, sha256(foreign), "another tool's object: its digest, computed without writing");
  t.equal(f.version, 1);
  t.equal(sha256((await download(ro.url, 'foreign')).body), sha256(foreign), 'and its bytes');
  t.equal(
    await (await fetch(`${ro.url}/models/foreign/files/model/config.json`)).text(),
    JSON.stringify({ seed: 'ro-foreign' }),
    'and its files',
  );

  // Writes: one clear refusal each, naming the permission.
  const refused = async (what: string, res: Response, permission: RegExp) => {
    const text = await res.text();
    t.equal(res.status, 403, `${what}: 403 (${text})`);
    const body = JSON.parse(text) as ErrorBody;
    t.equal(body.error, 'STORAGE_ACCESS_DENIED', `${what}: STORAGE_ACCESS_DENIED`);
    t.match(body.message, permission, `${what}: the message names ${permission.source}`);
  };
  await refused('PUT a new version', await put(`${ro.url}/models/x`, model('ro-3')), /s3:PutObject/);
  await refused(
    'PUT a new name',
    await put(`${ro.url}/models/new-${randomUUID().slice(0, 8)}`, model('ro-new')),
    /s3:PutObject/,
  );
  await refused(
    'rollback',
    await fetch(`${ro.url}/models/x/rollback`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ version: 1 }),
    }),
    /s3:PutObject/,
  );
  await refused(
    'DELETE ?version=1',
    await fetch(`${ro.url}/models/x?version=1`, { method: 'DELETE' }),
    /s3:DeleteObject/,
  );
  await refused('DELETE the model', await fetch(`${ro.url}/models/x`, { method: 'DELETE' }), /s3:DeleteObject/);

  t.equal(ro.child.exitCode, null, 'the process is still running');
  t.equal(ro.child.signalCode, null);
  t.equal(sha256((await download(ro.url, 'x')).body), sha256(v2), 'and still serving');
  t.same(await versions(ro.url, 'x'), published, 'the versions are as they were');
  t.same(await bucketListing(aws, bucket), before, 'the bucket is exactly as it was (same keys, same ETags)');

  // The same store with full rights: the sweep now removes the leftover (it was one to remove).
  const rw = await spawnServer(t, env);
  t.equal((await meta(rw.url, 'foreign')).version, 1, 'a writing registry numbers the foreign object v1 as well');
  t.notOk((await bucketListing(aws, bucket)).has(leftover), 'a registry with write rights swept the leftover at start');
});
