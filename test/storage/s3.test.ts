/** The S3 backend against a real MinIO: the conformance suite, sweep, setup errors, an outage. */
import { createHash, createHmac, randomBytes, randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import { text } from 'node:stream/consumers';
import {
  CreateMultipartUploadCommand,
  HeadBucketCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type S3Client,
  S3ServiceException,
} from '@aws-sdk/client-s3';
import type { FinalizeRequestMiddleware, MetadataBearer } from '@smithy/types';
import { pino } from 'pino';
import t, { type Test } from 'tap';
import { type BackendConfig, loadConfig } from '../../src/config.js';
import { ConfigError, NotFoundError, PreconditionFailedError, StorageUnavailableError } from '../../src/errors.js';
import { copyPartSize } from '../../src/storage/s3/client.js';
import { setupErrorLine } from '../../src/storage/s3/errors.js';
import { S3Storage } from '../../src/storage/s3/storage.js';
import { newStagedName } from '../../src/storage/shared/staging.js';
import { type Emulator, MINIO_PASSWORD, MINIO_USER, startMinio } from '../helpers/emulators.js';
import { conformance } from '../helpers/storage-conformance.js';

const minio = await startMinio();
t.teardown(() => minio.dispose());
const logger = pino({ level: 'silent' });

const uniqueBucket = () => `test-${randomUUID().slice(0, 18)}`;

function awsConfig(env: Record<string, string>): BackendConfig<'aws'> {
  return loadConfig({ REMOTE_STORAGE: 'aws', STORAGE_TIMEOUT: '5s', ...env }) as BackendConfig<'aws'>;
}

const minioEnv = (server: Emulator, bucket = uniqueBucket()) => ({
  BUCKET_NAME: bucket,
  AWS_ENDPOINT_URL: server.url,
  AWS_ACCESS_KEY_ID: MINIO_USER,
  AWS_SECRET_ACCESS_KEY: MINIO_PASSWORD,
});

async function s3(tt: Test, env: Record<string, string> = minioEnv(minio)): Promise<S3Storage> {
  const storage = new S3Storage(awsConfig(env), logger);
  tt.teardown(() => storage.close());
  await storage.init();
  return storage;
}

const body = (data: string) => Readable.from([Buffer.from(data)]);
/** An upload that keeps coming (up to 64 MiB), like a client still sending. */
const endless = () => {
  const chunk = Buffer.alloc(1024 * 1024, 1);
  let sent = 0;
  return new Readable({
    read() {
      this.push(sent++ < 64 ? chunk : null);
    },
  });
};

/** Objects under .uploads/ plus every incomplete multipart upload in the bucket. */
async function leftovers(storage: S3Storage): Promise<number> {
  const { client, bucket } = storage;
  const objects = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: '.uploads/' }));
  return (objects.KeyCount ?? 0) + (await multipartUploads(client, bucket)).length;
}

async function multipartUploads(client: S3Client, bucket: string): Promise<string[]> {
  // No Prefix: MinIO lists multipart uploads only for an exact key.
  const r = await client.send(new ListMultipartUploadsCommand({ Bucket: bucket }));
  return (r.Uploads ?? []).map((u) => u.Key!);
}

t.test('conformance', async (t) => conformance(t, (tt) => s3(tt), { leftovers: (s) => leftovers(s as S3Storage) }));

t.test('metadata values that HTTP headers cannot carry as-is round-trip', async (t) => {
  const s = await s3(t);
  const metadata = {
    empty: '',
    spaces: '  two  spaces ',
    marker: '=?UTF-8?B?Zm9v?=',
    lines: 'a\nb',
    tab: 'a\tb',
    plain: 'a "b" c',
  };
  await s.commit(await s.stage('m.tar.gz', body('x')), metadata, {});
  t.same((await s.head('m.tar.gz')).metadata, metadata);
  const got = await s.get('m.tar.gz');
  got.body.destroy();
  t.same(got.info.metadata, metadata);
});

t.test('objects larger than a copy part are copied in ranged parts (the > 5 GiB path)', async (t) => {
  const s = new S3Storage(awsConfig(minioEnv(minio)), logger, { copyPartSize: 5 * 1024 * 1024 });
  t.teardown(() => s.close());
  await s.init();
  const data = randomBytes(11 * 1024 * 1024 + 7);
  const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
  const read = async (key: string) => Buffer.concat(await (await s.get(key)).body.toArray());
  const info = await s.commit(
    await s.stage('big.tar.gz', Readable.from([data])),
    { version: '1' },
    { ifNoneMatch: true },
  );
  t.match(info.token, /-3$/, 'three parts');
  t.equal(sha(await read('big.tar.gz')), sha(data));
  const copied = await s.copy('big.tar.gz', '.history/big/v1.tar.gz', {
    sourceToken: info.token,
    metadata: { version: '1' },
    condition: { ifNoneMatch: true },
  });
  t.equal(copied.size, data.length);
  t.equal(sha(await read('.history/big/v1.tar.gz')), sha(data));
  const updated = await s.setMetadata('big.tar.gz', info.token, { version: '1', sha256: sha(data) });
  t.same((await s.head('big.tar.gz')).metadata, { version: '1', sha256: sha(data) });
  t.equal((await s.head('big.tar.gz')).token, updated.token);
  t.equal(await leftovers(s), 0);
});

t.test(
  'the same bytes written to a key again get a new token (no ABA): a stale If-Match fails after a rollback',
  async (t) => {
    const s = await s3(t);
    const data = randomBytes(6 * 1024 * 1024 + 3);
    const v1 = await s.commit(
      await s.stage('m.tar.gz', Readable.from([data])),
      { version: '1' },
      { ifNoneMatch: true },
    );
    await s.copy('m.tar.gz', '.history/m/v1.tar.gz', { sourceToken: v1.token, metadata: { version: '1' } });
    const v2 = await s.commit(await s.stage('m.tar.gz', body('other bytes')), { version: '2' }, { ifMatch: v1.token });
    const history = await s.head('.history/m/v1.tar.gz');
    // A rollback: v1's bytes become current again.
    const v3 = await s.copy('.history/m/v1.tar.gz', 'm.tar.gz', {
      sourceToken: history.token,
      metadata: { version: '3' },
      condition: { ifMatch: v2.token },
    });
    t.not(v3.token, v1.token, 'v1 and its rollback have different tokens');
    // A replica that read v1 before all this must not overwrite v3.
    await t.rejects(
      s.commit(await s.stage('m.tar.gz', body('stale writer')), { version: '2' }, { ifMatch: v1.token }),
      PreconditionFailedError,
    );
    t.equal((await s.head('m.tar.gz')).metadata.version, '3');
    const sizes = Array.from({ length: 200 }, () => copyPartSize(1024 ** 3, 512 * 1024 ** 2));
    t.ok(
      sizes.every((p) => p >= 448 * 1024 ** 2 && p <= 512 * 1024 ** 2),
      'parts of a 1 GiB copy: 448-512 MiB',
    );
    t.ok(new Set(sizes).size > 190, 'drawn at random');
    t.equal(copyPartSize(5 * 1024 * 1024, 512 * 1024 ** 2), 5 * 1024 * 1024, 'up to 5 MiB: one part');
    const small = Array.from({ length: 50 }, () => copyPartSize(5 * 1024 * 1024 + 10, 512 * 1024 ** 2));
    t.ok(
      small.every((p) => p >= 5 * 1024 * 1024 && p < 5 * 1024 * 1024 + 10),
      'just over 5 MiB: two parts, the first at least 5 MiB',
    );
  },
);

t.test(
  'upload parts go UNSIGNED-PAYLOAD with a CRC32 checksum, and the server rejects a part that does not match it',
  async (t) => {
    const s = await s3(t);
    /** Runs after signing: sees (and may alter) exactly what goes on the wire. */
    const onWire =
      (
        see: (request: { headers: Record<string, string>; body: unknown }) => void,
      ): FinalizeRequestMiddleware<object, MetadataBearer> =>
      (next) =>
      async (args) => {
        see(args.request as { headers: Record<string, string>; body: unknown });
        return next(args);
      };
    const sent: Array<Record<string, string>> = [];
    s.client.middlewareStack.addRelativeTo(
      onWire((r) => ArrayBuffer.isView(r.body) && sent.push({ ...r.headers })),
      {
        relation: 'after',
        toMiddleware: 'httpSigningMiddleware',
        name: 'spy',
      },
    );
    const data = randomBytes(9 * 1024 * 1024); // two parts
    await s.commit(await s.stage('u.tar.gz', Readable.from([data])), {}, {});
    t.ok(Buffer.concat(await (await s.get('u.tar.gz')).body.toArray()).equals(data), 'stored intact');
    t.equal(sent.length, 2, 'both parts seen');
    for (const headers of sent) {
      t.equal(headers['x-amz-content-sha256'], 'UNSIGNED-PAYLOAD', 'the body is not hashed for the signature');
      t.match(headers['x-amz-checksum-crc32'], /^[A-Za-z0-9+/]{6}==$/, 'it carries a CRC32 instead');
    }

    // A byte changed in transit after the checksum was taken: the server refuses the part.
    s.client.middlewareStack.remove('spy');
    s.client.middlewareStack.addRelativeTo(
      onWire((r) => {
        if (ArrayBuffer.isView(r.body) && r.body.byteLength > 0) {
          const flipped = Buffer.from(r.body.buffer, r.body.byteOffset, r.body.byteLength);
          r.body = Buffer.concat([Buffer.from([flipped[0]! ^ 0xff]), flipped.subarray(1)]);
        }
      }),
      { relation: 'after', toMiddleware: 'httpSigningMiddleware', name: 'tamper' },
    );
    const refused: unknown = await s.stage('v.tar.gz', Readable.from([data])).then(
      () => undefined,
      (err: unknown) => err,
    );
    t.match(
      (refused as { cause?: { name?: string } } | undefined)?.cause?.name,
      'XAmzContentChecksumMismatch',
      'refused for its checksum',
    );
    s.client.middlewareStack.remove('tamper');
    await t.rejects(s.head('v.tar.gz'), NotFoundError);
    t.equal(await leftovers(s), 0, 'the refused upload left nothing');
  },
);

t.test('sweep removes uploads of dead writers and keeps live ones', async (t) => {
  const s = await s3(t);
  const { client, bucket } = s;
  const live = await s.stage('a.tar.gz', body('live'));
  const tag = /-([0-9a-f]{8})\.part$/.exec(newStagedName())![1];
  const put = (name: string) =>
    client.send(new PutObjectCommand({ Bucket: bucket, Key: `.uploads/${name}`, Body: 'x' }));
  // A crashed writer on this host (pid 2^22+1 does not exist), and an earlier life of our pid.
  await put(`4194305-00000000-0000-0000-0000-000000000000-${tag}.part`);
  await put(`${process.pid}-11111111-1111-1111-1111-111111111111-${tag}.part`);
  // An incomplete multipart upload of a crashed writer.
  await client.send(
    new CreateMultipartUploadCommand({
      Bucket: bucket,
      Key: `.uploads/4194305-33333333-3333-3333-3333-333333333333-${tag}.part`,
    }),
  );
  // Another host's upload in progress: left alone.
  await put('4194305-22222222-2222-2222-2222-222222222222-ffffffff.part');
  // A commit in progress (multipart copy onto a key): left alone, it is recent.
  await client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: 'b.tar.gz' }));

  t.equal(await s.sweep(), 3);
  const left = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: '.uploads/' }));
  const names = (left.Contents ?? []).map((o) => o.Key!);
  t.equal(names.length, 2, "the live upload and the other host's");
  t.ok(names.some((n) => n.endsWith('-ffffffff.part')));
  t.same(await multipartUploads(client, bucket), ['b.tar.gz']);
  await s.commit(live, {}, {});
  t.equal(await text((await s.get('a.tar.gz')).body), 'live', 'the live upload survived the sweep');
});

t.test(
  "sweep: another host's upload started hours ago is still being written (S3 dates uploads by their start); after a day it is a leftover",
  async (t) => {
    const s = await s3(t);
    const { client, bucket } = s;
    const other = '.uploads/4194305-44444444-4444-4444-4444-444444444444-eeeeeeee.part';
    await client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: other }));
    await client.send(new PutObjectCommand({ Bucket: bucket, Key: other, Body: 'staged, about to be committed' }));
    const realNow = Date.now;
    t.teardown(() => {
      Date.now = realNow;
    });
    Date.now = () => realNow() + 3 * 3_600_000; // a 20 GiB upload over a slow link takes hours
    t.equal(await s.sweep(), 0, 'three hours after it started: left alone');
    t.same(await multipartUploads(client, bucket), [other]);
    Date.now = () => realNow() + 25 * 3_600_000;
    t.equal(await s.sweep(), 2, 'a day after: removed (the upload and the staged object)');
  },
);

t.test(
  "an object whose metadata nearly fills S3's 2 KB (written before the write nonce existed) can still be copied: the nonce is left out",
  async (t) => {
    const s = await s3(t);
    const metadata = { version: '1', notes: 'n'.repeat(2000 - 'version'.length - 1 - 'notes'.length) }; // 2000 bytes: no room for the nonce
    const v1 = await s.commit(await s.stage('full.tar.gz', body('x')), metadata, {});
    const copied = await s.copy('full.tar.gz', '.history/full/v1.tar.gz', { sourceToken: v1.token, metadata });
    t.same((await s.head('.history/full/v1.tar.gz')).metadata, metadata);
    t.equal(copied.token, (await s.head('.history/full/v1.tar.gz')).token);
  },
);

t.test('init: one ConfigError line per setup mistake', async (t) => {
  const rejects = async (env: Record<string, string>, pattern: RegExp) => {
    const storage = new S3Storage(awsConfig(env), logger);
    t.teardown(() => storage.close());
    const err = await storage.init().then(
      () => undefined,
      (e: unknown) => e,
    );
    t.type(err, ConfigError, pattern.source);
    t.match((err as Error).message, pattern);
    t.notMatch((err as Error).message, /\n/, 'one line');
    return (err as Error).message;
  };

  await rejects(
    { ...minioEnv(minio), AWS_ENDPOINT_URL: 'http://127.0.0.1:1' },
    /^AWS_ENDPOINT_URL=http:\/\/127\.0\.0\.1:1 is unreachable \(ECONNREFUSED\): check the URL/,
  );
  const secret = await rejects(
    { ...minioEnv(minio), AWS_SECRET_ACCESS_KEY: 'not-the-secret' },
    /^AWS_SECRET_ACCESS_KEY does not belong to AWS_ACCESS_KEY_ID=registry-test \(SignatureDoesNotMatch\)/,
  );
  t.notMatch(secret, /not-the-secret/, 'the secret is never printed');
  await rejects(
    { ...minioEnv(minio), AWS_ACCESS_KEY_ID: 'nobody' },
    /^AWS_ACCESS_KEY_ID=nobody is not known to the server \(InvalidAccessKeyId\)/,
  );
  await rejects(
    { ...minioEnv(minio, 'no-such-bucket'), AUTO_CREATE_BUCKET: 'false' },
    /^BUCKET_NAME=no-such-bucket does not exist and AUTO_CREATE_BUCKET=false: create the bucket/,
  );

  const existing = (await s3(t)).bucket;
  const restricted = await assumeRole(minio.url, {
    Effect: 'Allow',
    Action: ['s3:PutObject'],
    Resource: ['arn:aws:s3:::*'],
  });
  await rejects(
    { ...minioEnv(minio, existing), ...restricted },
    /^BUCKET_NAME=\S+ cannot be read with these credentials \(AccessDenied\): grant s3:GetObject, s3:PutObject, s3:ListBucket and s3:DeleteObject/,
  );

  // Nothing in the environment, no profile, no instance metadata: the default chain finds nothing.
  const saved = Object.entries(process.env).filter(([k]) => k.startsWith('AWS_'));
  t.teardown(() => {
    for (const k of Object.keys(process.env)) if (k.startsWith('AWS_')) delete process.env[k];
    Object.assign(process.env, Object.fromEntries(saved));
  });
  for (const [k] of saved) delete process.env[k];
  Object.assign(process.env, {
    AWS_EC2_METADATA_DISABLED: 'true',
    AWS_CONFIG_FILE: '/nonexistent',
    AWS_SHARED_CREDENTIALS_FILE: '/nonexistent',
  });
  await rejects(
    { BUCKET_NAME: 'models', AWS_ENDPOINT_URL: minio.url },
    /^AWS_ACCESS_KEY_ID is not set and no AWS credentials were found .*: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or run with an IAM role\.$/,
  );
  await rejects(
    { BUCKET_NAME: 'models', AWS_ACCESS_KEY_ID: MINIO_USER, AWS_SECRET_ACCESS_KEY: MINIO_PASSWORD },
    /^AWS_DEFAULT_REGION is not set .*: set AWS_DEFAULT_REGION to the bucket's region code/,
  );
});

t.test('setup lines for what MinIO cannot reproduce (AWS answers)', async (t) => {
  // Built like the SDK builds them from AWS's answers; MinIO accepts any region, and its
  // region errors are the same code.
  const aws = (name: string, status: number, message: string, headers: Record<string, string> = {}) =>
    Object.defineProperty(
      new S3ServiceException({ name, $fault: 'client', message, $metadata: { httpStatusCode: status } }),
      '$response',
      {
        value: { statusCode: status, headers },
        enumerable: false,
      },
    );
  const config = awsConfig({ BUCKET_NAME: 'my-models', AWS_DEFAULT_REGION: 'us-east-1' });
  t.equal(
    setupErrorLine(
      aws(
        'PermanentRedirect',
        301,
        'The bucket you are attempting to access must be addressed using the specified endpoint.',
        { 'x-amz-bucket-region': 'eu-central-1' },
      ),
      config,
      'us-east-1',
    ),
    'AWS_DEFAULT_REGION=us-east-1 is not the region of BUCKET_NAME=my-models (PermanentRedirect): set AWS_DEFAULT_REGION=eu-central-1.',
  );
  t.equal(
    setupErrorLine(
      aws(
        'AuthorizationHeaderMalformed',
        400,
        "The authorization header is malformed; the region 'us-east-1' is wrong; expecting 'eu-west-1'",
      ),
      awsConfig({ BUCKET_NAME: 'my-models' }),
      'us-east-1',
    ),
    'The region us-east-1 of the AWS profile is not the region of BUCKET_NAME=my-models (AuthorizationHeaderMalformed): set AWS_DEFAULT_REGION=eu-west-1.',
  );
  t.match(
    setupErrorLine(aws('ExpiredToken', 400, 'The provided token has expired.'), config, 'us-east-1'),
    /^AWS_SESSION_TOKEN is expired or invalid \(ExpiredToken\)/,
  );
  t.equal(
    setupErrorLine(
      Object.assign(new Error('getaddrinfo ENOTFOUND my-models.s3.eu-centrl-1.amazonaws.com'), { code: 'ENOTFOUND' }),
      config,
      'us-east-1',
    ),
    'AWS_DEFAULT_REGION=us-east-1 leads to an unreachable endpoint https://s3.us-east-1.amazonaws.com (ENOTFOUND): check the region code and the network (proxy, firewall).',
  );
});

t.test('init creates a missing bucket when AUTO_CREATE_BUCKET is true (the default)', async (t) => {
  const env = minioEnv(minio);
  const s = await s3(t, env);
  await t.resolves(s.client.send(new HeadBucketCommand({ Bucket: env.BUCKET_NAME })));
  await t.resolves(s.init(), 'init again on an existing bucket');
  t.same(await s.head('x').catch((e: Error) => e.name), 'NotFoundError');
});

t.test('MinIO stops: calls fail fast with StorageUnavailableError; the same instance recovers', async (t) => {
  const own = await startMinio();
  t.teardown(() => own.dispose());
  const s = await s3(t, minioEnv(own));
  await s.commit(await s.stage('m.tar.gz', body('one')), { version: '1' }, {});
  await own.stop(true);

  for (const [name, call] of [
    ['head', () => s.head('m.tar.gz')],
    ['get', () => s.get('m.tar.gz')],
    ['stage', () => s.stage('n.tar.gz', body('two'))],
    ['stage (a body still streaming)', () => s.stage('n.tar.gz', endless())],
    ['ping', () => s.ping()],
  ] as const) {
    const began = Date.now();
    // t.type, not t.rejects: tap also compares `name`.
    t.type(
      await call().then(
        () => undefined,
        (e: unknown) => e,
      ),
      StorageUnavailableError,
      name,
    );
    t.ok(Date.now() - began < 15_000, `${name} failed in ${Date.now() - began} ms`);
  }

  await own.restart();
  await t.resolves(s.ping());
  t.equal(await text((await s.get('m.tar.gz')).body), 'one');
  const info = await s.commit(await s.stage('m.tar.gz', body('two')), { version: '2' }, {});
  t.equal((await s.head('m.tar.gz')).token, info.token);
});

/**
 * Temporary credentials from MinIO's STS AssumeRole, restricted by an inline policy: the way
 * to get a user that can reach the server but not read the bucket. Signed with SigV4 by hand.
 */
async function assumeRole(url: string, statement: object): Promise<Record<string, string>> {
  const payload = new URLSearchParams({
    Action: 'AssumeRole',
    Version: '2011-06-15',
    DurationSeconds: '900',
    Policy: JSON.stringify({ Version: '2012-10-17', Statement: [statement] }),
  }).toString();
  const sha = (d: string) => createHash('sha256').update(d).digest('hex');
  const hmac = (key: string | Buffer, d: string) => createHmac('sha256', key).update(d).digest();
  const date = new Date().toISOString().replace(/[-:]|\.\d{3}/g, '');
  const scope = `${date.slice(0, 8)}/us-east-1/sts/aws4_request`;
  const headers: Record<string, string> = {
    'content-type': 'application/x-www-form-urlencoded',
    host: new URL(url).host,
    'x-amz-content-sha256': sha(payload),
    'x-amz-date': date,
  };
  const names = Object.keys(headers).sort();
  const canonical = [
    'POST',
    '/',
    '',
    ...names.map((k) => `${k}:${headers[k]}`),
    '',
    names.join(';'),
    sha(payload),
  ].join('\n');
  const key = ['us-east-1', 'sts', 'aws4_request'].reduce(
    (k, part) => hmac(k, part),
    hmac(`AWS4${MINIO_PASSWORD}`, date.slice(0, 8)),
  );
  const signature = createHmac('sha256', key)
    .update(['AWS4-HMAC-SHA256', date, scope, sha(canonical)].join('\n'))
    .digest('hex');
  const { host: _host, ...sent } = headers;
  const res = await fetch(url, {
    method: 'POST',
    headers: {
      ...sent,
      authorization: `AWS4-HMAC-SHA256 Credential=${MINIO_USER}/${scope}, SignedHeaders=${names.join(';')}, Signature=${signature}`,
    },
    body: payload,
  });
  const xml = await res.text();
  const pick = (tag: string) => new RegExp(`<${tag}>([^<]+)</${tag}>`).exec(xml)?.[1];
  const [id, secret, token] = [pick('AccessKeyId'), pick('SecretAccessKey'), pick('SessionToken')];
  if (!id || !secret || !token) throw new Error(`AssumeRole failed: ${res.status} ${xml}`);
  return { AWS_ACCESS_KEY_ID: id, AWS_SECRET_ACCESS_KEY: secret, AWS_SESSION_TOKEN: token };
}
