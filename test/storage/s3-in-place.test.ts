/**
 * S3 stages uploads in place (capabilities.stagesInPlace): the body streams straight to its
 * history key under a number reserved first, so an upload costs one server-side copy (the
 * compare-and-swap onto the current key) and no staging copy; a refused upload leaves no bytes.
 */
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import {
  CreateMultipartUploadCommand,
  ListMultipartUploadsCommand,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import t from 'tap';
import { PreconditionFailedError } from '../../src/errors.js';
import type { S3Storage } from '../../src/storage/s3/storage.js';
import { model, tgz } from '../helpers/archives.js';
import { minioEnv } from '../helpers/cloud.js';
import { startMinio } from '../helpers/emulators.js';
import { until } from '../helpers/process.js';
import { put, type Running, start } from '../helpers/server.js';

const minio = await startMinio();
t.teardown(() => minio.dispose());

const MiB = 1024 * 1024;
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** The S3Storage under the app's wrappers (outage guard, metrics). */
function s3Of(r: Running): S3Storage {
  let s = r.app.registry.storage as unknown as { inner?: unknown; client?: S3Client };
  while (!s.client && s.inner) s = s.inner as typeof s;
  return s as unknown as S3Storage;
}

/** Every S3 command the app sends from now on, as `CommandName key`. */
function recordCommands(s3: S3Storage): string[] {
  const sent: string[] = [];
  type Next = (args: { input: { Key?: string } }) => Promise<unknown>;
  const stack = s3.client.middlewareStack as unknown as { add: (m: unknown, o: unknown) => void };
  stack.add(
    (next: Next, context: { commandName?: string }) => async (args: { input: { Key?: string } }) => {
      sent.push(`${context.commandName} ${args.input.Key ?? ''}`);
      return next(args);
    },
    { step: 'initialize', name: 'recordCommands' },
  );
  return sent;
}

async function versionOf(r: Running): Promise<number> {
  const res = await fetch(`${r.url}/models/m`, { method: 'HEAD' });
  return Number(res.headers.get('x-model-version'));
}

async function keys(r: Running, prefix: string): Promise<string[]> {
  const found: string[] = [];
  for await (const o of r.app.registry.storage.list(prefix)) found.push(o.key);
  return found;
}

async function openUploads(s3: S3Storage): Promise<string[]> {
  const page = await s3.client.send(new ListMultipartUploadsCommand({ Bucket: s3.bucket }));
  return (page.Uploads ?? []).map((u) => u.Key ?? '');
}

t.test('one upload: the body goes straight to its history key; one copy, onto the current key', async (t) => {
  const r = await start(t, { ...minioEnv(minio), CACHE_WRITE_THROUGH: 'false' });
  const s3 = s3Of(r);
  t.ok(r.app.registry.storage.capabilities.stagesInPlace, 'the wrappers pass the capability through');
  t.equal((await put(`${r.url}/models/m`, model('v1'))).status, 201);
  for (const size of [64 * 1024, 20 * MiB]) {
    const sent = recordCommands(s3);
    const body = model(`v-${size}`, size);
    const res = await put(`${r.url}/models/m`, body);
    t.equal(res.status, 200, `an upload of ${size} bytes`);
    const version = await versionOf(r);
    // A server-side copy is one multipart upload whose parts are UploadPartCopy (a random number
    // of them, copyPartSize); CopyObject is never used.
    const copied = new Set(sent.filter((c) => c.startsWith('UploadPartCopyCommand ')).map((c) => c.split(' ')[1]));
    t.same([...copied], ['m.tar.gz'], 'the only server-side copy is onto the current key');
    t.same(
      sent.filter((c) => c.startsWith('CopyObjectCommand ')),
      [],
      'no CopyObject',
    );
    t.same(
      sent.filter((c) => c === 'CreateMultipartUploadCommand m.tar.gz'),
      ['CreateMultipartUploadCommand m.tar.gz'],
      'one copy onto it',
    );
    // Past one part (a multipart upload), only an empty marker that names the writer (in-place.ts).
    t.same(
      sent.filter((c) => c.includes('.uploads/')).map((c) => c.split(' ')[0]),
      size > 8 * MiB ? ['PutObjectCommand', 'DeleteObjectCommand'] : [],
      size > 8 * MiB ? 'no bytes staged under .uploads/: a marker, put and deleted' : 'nothing under .uploads/',
    );
    const writes = sent.filter((c) => /^(PutObject|CompleteMultipartUpload)Command .*\.tar\.gz$/.test(c));
    const history = `.history/m/v${version}.tar.gz`;
    t.same(
      writes,
      [
        size > 8 * MiB ? `CompleteMultipartUploadCommand ${history}` : `PutObjectCommand ${history}`,
        'CompleteMultipartUploadCommand m.tar.gz',
      ],
      'the body is written once, to its history key',
    );
    const got = await fetch(`${r.url}/models/m`);
    t.ok(Buffer.from(await got.arrayBuffer()).equals(body), 'served whole');
    s3.client.middlewareStack.remove('recordCommands');
  }
  // The history object carries what was known before its body: number, date, labels (no digest);
  // its record has the rest, and every reader goes by it.
  const head = await r.app.registry.storage.head('.history/m/v3.tar.gz');
  t.equal(head.metadata.version, '3');
  t.ok(head.metadata['created-at']);
  t.notOk(head.metadata.sha256, 'no digest: it was not known when the upload started');
  const versions = (await (await fetch(`${r.url}/models/m/versions`)).json()) as {
    versions: { version: number; sha256: string }[];
  };
  t.same(
    versions.versions.map((v) => v.version),
    [3, 2, 1],
  );
  const v2 = await fetch(`${r.url}/models/m?version=2`);
  t.equal(v2.status, 200);
  t.equal(sha256(Buffer.from(await v2.arrayBuffer())), versions.versions[1]!.sha256, 'GET ?version=N serves history');
  const rollback = await fetch(`${r.url}/models/m/rollback`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ version: 1 }),
  });
  t.equal(rollback.status, 200, 'rollback to v1');
  t.equal(await versionOf(r), 4);
});

t.test('refused uploads leave no bytes and skip their number; the current version stays', async (t) => {
  const r = await start(t, { ...minioEnv(minio), CACHE_WRITE_THROUGH: 'false' });
  const s3 = s3Of(r);
  const v1 = model('v1');
  t.equal((await put(`${r.url}/models/m`, v1)).status, 201);
  const big = model('big', 20 * MiB); // multipart: parts are uploaded before the refusal
  const refused: [string, Buffer, Record<string, string>, number][] = [
    ['not gzip', Buffer.from('hello, this is not an archive'), {}, 422],
    ['an unsafe path', tgz([{ path: '../evil', body: 'x' }]), {}, 422],
    ['a digest mismatch', big, { 'x-checksum-sha256': sha256(v1) }, 422],
    ['a digest mismatch, small', model('small'), { 'x-checksum-sha256': sha256(v1) }, 422],
  ];
  for (const [what, body, headers, status] of refused) {
    const res = await put(`${r.url}/models/m`, body, headers);
    t.equal(res.status, status, `${what}: refused`);
    await res.arrayBuffer();
    t.same(
      (await keys(r, '.history/m/')).filter((k) => k.endsWith('.tar.gz')),
      ['.history/m/v1.tar.gz'],
      `${what}: no bytes in history`,
    );
    const current = await fetch(`${r.url}/models/m`);
    t.equal(current.headers.get('x-model-version'), '1', `${what}: the current version stays`);
    t.ok(Buffer.from(await current.arrayBuffer()).equals(v1));
  }
  t.same(await openUploads(s3), [], 'no multipart upload left open');
  const res = await put(`${r.url}/models/m`, model('v2'));
  t.equal(res.status, 200);
  const version = await versionOf(r);
  t.ok(version > 2, `the next upload skips the numbers the refused ones reserved (v${version})`);
  const listed = (await (await fetch(`${r.url}/models/m/versions`)).json()) as { versions: { version: number }[] };
  t.same(
    listed.versions.map((v) => v.version),
    [version, 1],
    'skipped numbers are never listed',
  );
});

t.test('a client that disconnects mid-upload leaves no bytes and no open upload', async (t) => {
  const r = await start(t, { ...minioEnv(minio), CACHE_WRITE_THROUGH: 'false' });
  const s3 = s3Of(r);
  const body = model('big', 30 * MiB);
  const controller = new AbortController();
  let sent = 0;
  const stream = new ReadableStream({
    pull(c) {
      if (sent >= 20 * MiB) {
        setTimeout(() => controller.abort(), 200);
        return new Promise(() => {}); // never ends
      }
      c.enqueue(new Uint8Array(body.subarray(sent, sent + MiB)));
      sent += MiB;
    },
  });
  await fetch(`${r.url}/models/m`, {
    method: 'PUT',
    body: stream,
    headers: { 'content-type': 'application/gzip' },
    signal: controller.signal,
    duplex: 'half',
  } as RequestInit).catch(() => {});
  for (let i = 0; i < 50 && (await openUploads(s3)).length > 0; i++) await new Promise((res) => setTimeout(res, 100));
  t.same(await openUploads(s3), [], 'the multipart upload was aborted');
  t.same(
    (await keys(r, '.history/m/')).filter((k) => k.endsWith('.tar.gz')),
    [],
    'no bytes',
  );
  t.equal((await fetch(`${r.url}/models/m`)).status, 404);
});

t.test('stageInPlace: if-none-match, and a body that fails writes nothing', async (t) => {
  const r = await start(t, { ...minioEnv(minio), CACHE_WRITE_THROUGH: 'false' });
  const storage = r.app.registry.storage;
  const info = await storage.stageInPlace!('k', Readable.from([Buffer.from('one')]), { a: 'b' });
  t.equal(info.size, 3);
  t.equal((await storage.head('k')).metadata.a, 'b');
  await t.rejects(storage.stageInPlace!('k', Readable.from([Buffer.from('two')]), {}), PreconditionFailedError);
  const failing = (bytes: number) =>
    new Readable({
      read() {
        if (bytes <= 0) return this.destroy(new Error('vetoed'));
        const n = Math.min(bytes, MiB);
        bytes -= n;
        this.push(Buffer.alloc(n, 7));
      },
    });
  await t.rejects(storage.stageInPlace!('small', failing(1000), {}), /vetoed/);
  await t.rejects(storage.stageInPlace!('large', failing(20 * MiB), {}), /vetoed/);
  t.same(await keys(r, 's'), [], 'nothing at the key');
  t.same(await keys(r, 'l'), [], 'nothing at the key');
  t.same(await openUploads(s3Of(r)), [], 'no multipart upload left open');
});

t.test(
  'sweep: a dead writer’s in-place upload goes at once by its marker, an unmarked one once a day old; this process’s own stays',
  async (t) => {
    const r = await start(t, { ...minioEnv(minio), CACHE_WRITE_THROUGH: 'false' });
    const s3 = s3Of(r);
    const storage = r.app.registry.storage;
    const { client, bucket } = s3;
    const markers = async () => (await keys(r, '.uploads/')).filter((k) => k.endsWith('.part'));

    // Ours, mid-body past its first part: a marker names it, and no sweep takes it, even a day on.
    let release: () => void = () => {};
    const held = new Promise<void>((resolve) => (release = resolve));
    let sent = 0;
    const body = new Readable({
      read() {
        if (sent >= 20 * MiB) return this.push(null);
        sent += MiB;
        // Past the first 8 MiB part, the body stalls until released.
        if (sent === 13 * MiB) void held.then(() => this.push(Buffer.alloc(MiB, 1)));
        else this.push(Buffer.alloc(MiB, 1));
      },
    });
    const writing = storage.stageInPlace!('.history/m/v1.tar.gz', body, { version: '1' });
    await until('the in-place upload to be under way', async () => (await openUploads(s3)).length === 1, 10_000);
    const [marker] = await markers();
    t.match(marker, new RegExp(`^\\.uploads/${process.pid}-`), 'a marker named after this process');
    // Its pid is this process's: only `active` keeps a sweep from taking it for an earlier life's.
    t.equal(await storage.sweep(), 0, 'a sweep leaves this process’s own upload alone');
    t.equal((await openUploads(s3)).length, 1);
    release();
    t.equal((await writing).size, 20 * MiB, 'and completes');
    t.same(await markers(), [], 'its marker goes with it');

    // A dead writer's (a pid that cannot exist, this host): its marker names the key to abort.
    const dead = marker!.replace(/^\.uploads\/\d+-/, '.uploads/4194305-');
    const deadKey = '.history/m/v7.tar.gz';
    await client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: deadKey }));
    await client.send(
      new PutObjectCommand({ Bucket: bucket, Key: dead, Body: '', Metadata: { 'registry-in-place': deadKey } }),
    );
    // And one with no marker (a writer that died before its first part was full, or an older release).
    const unmarked = '.history/m/v8.tar.gz';
    await client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: unmarked }));
    t.equal(await storage.sweep(), 1, 'the marked one goes at once (the marker counted)');
    t.same(await openUploads(s3), [unmarked], 'its upload was aborted; the unmarked one stays');
    t.same(await markers(), [], 'the marker went too');
    const realNow = Date.now;
    t.teardown(() => {
      Date.now = realNow;
    });
    Date.now = () => realNow() + 25 * 3_600_000;
    t.equal(await storage.sweep(), 1, 'a day on, the unmarked one goes by age');
    t.same(await openUploads(s3), []);
  },
);

t.test('an upload aborted while its marker is being stored still deletes the marker', async (t) => {
  const r = await start(t, { ...minioEnv(minio), CACHE_WRITE_THROUGH: 'false' });
  const s3 = s3Of(r);
  let release: () => void = () => {};
  const released = new Promise<void>((resolve) => (release = resolve));
  let held: () => void = () => {};
  const holding = new Promise<void>((resolve) => (held = resolve));
  type Next = (args: { input: { Key?: string } }) => Promise<unknown>;
  const stack = s3.client.middlewareStack as unknown as { add: (m: unknown, o: unknown) => void };
  stack.add(
    (next: Next, context: { commandName?: string }) => async (args: { input: { Key?: string } }) => {
      if (context.commandName === 'PutObjectCommand' && args.input.Key?.startsWith('.uploads/')) {
        held();
        await released; // the marker's PutObject waits here
      }
      return next(args);
    },
    { step: 'initialize', name: 'holdMarker' },
  );
  t.teardown(() => s3.client.middlewareStack.remove('holdMarker'));
  const controller = new AbortController();
  const writing = r.app.registry.storage.stageInPlace!(
    '.history/m/v1.tar.gz',
    Readable.from([model('big', 20 * MiB)]),
    {},
    {
      signal: controller.signal,
    },
  );
  await holding;
  controller.abort(new Error('client gone'));
  await new Promise((resolve) => setTimeout(resolve, 100));
  release();
  await t.rejects(writing);
  t.same(
    (await keys(r, '.uploads/')).filter((k) => k.endsWith('.part')),
    [],
    'no marker left',
  );
  t.same(await openUploads(s3), [], 'no multipart upload left open');
});
