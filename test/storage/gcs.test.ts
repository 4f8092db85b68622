import { randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { text } from 'node:stream/consumers';
import { Storage as GcsClient } from '@google-cloud/storage';
import pino from 'pino';
import t, { type Test } from 'tap';
import { type BackendConfig, loadConfig } from '../../src/config.js';
import { ConfigError, StorageUnavailableError } from '../../src/errors.js';
import { create, type GcsStorage } from '../../src/storage/gcs/storage.js';
import type { Storage } from '../../src/storage/types.js';
import { serviceAccountKey } from '../helpers/cloud.js';
import { startFakeGcs } from '../helpers/emulators.js';
import { tempDir } from '../helpers/server.js';
import { conformance } from '../helpers/storage-conformance.js';

const emulator = await startFakeGcs();
t.teardown(() => emulator.dispose());

const logger = pino({ level: 'silent' });
const raw = new GcsClient({ apiEndpoint: emulator.url, projectId: 'test' });
const bucketOf = new WeakMap<Storage, string>();

const bucketName = () => `gcs-test-${randomUUID().slice(0, 13)}`;
const gcsConfig = (env: Record<string, string | undefined> = {}) =>
  loadConfig({
    REMOTE_STORAGE: 'gcs',
    BUCKET_NAME: bucketName(),
    STORAGE_EMULATOR_HOST: emulator.url,
    ...env,
  }) as BackendConfig<'gcs'>;

const open = async (tt: Test, config = gcsConfig()): Promise<GcsStorage> => {
  const s = create(config, logger);
  tt.teardown(() => s.close());
  await s.init();
  bucketOf.set(s, config.BUCKET_NAME);
  return s;
};

const stagedObjects = async (s: Storage) => {
  const [files] = await raw.bucket(bucketOf.get(s)!).getFiles({ prefix: '.uploads/' });
  return files.map((f) => f.name);
};

const body = (data: string) => Readable.from([Buffer.from(data)]);

/** Runs init() on a backend that must refuse to start, returning the one-line error. */
const initError = async (tt: Test, config: BackendConfig<'gcs'>): Promise<ConfigError> => {
  const s = create(config, logger);
  tt.teardown(() => s.close());
  const err = await s.init().then(
    () => undefined,
    (e: unknown) => e,
  );
  tt.type(err, ConfigError);
  tt.notMatch((err as Error).message, /\n/, 'one line');
  return err as ConfigError;
};

// With a service-account key, so that signedUrl can sign (the emulator checks no credentials).
const { file: keyFile } = await serviceAccountKey(t);
const signing = (tt: Test) => open(tt, gcsConfig({ GOOGLE_APPLICATION_CREDENTIALS: keyFile }));
t.test('conformance', async (t) =>
  conformance(t, signing, { leftovers: async (s) => (await stagedObjects(s)).length }),
);

t.test('sweep removes staged objects of dead writers and keeps live ones', async (t) => {
  const s = await open(t);
  const bucket = raw.bucket(bucketOf.get(s)!);
  const live = await s.stage('a.tar.gz', body('live'));
  const [ours] = await stagedObjects(s);
  const tag = /-([0-9a-f]{8})\.part$/.exec(ours!)![1];
  // A crashed process on this host (pid 2^22+1 does not exist), an earlier life of our own pid
  // (a restarted container), and another host's upload in progress.
  await bucket.file(`.uploads/4194305-00000000-0000-0000-0000-000000000000-${tag}.part`).save('dead');
  await bucket.file(`.uploads/${process.pid}-11111111-1111-1111-1111-111111111111-${tag}.part`).save('old');
  await bucket.file('.uploads/4194305-22222222-2222-2222-2222-222222222222-ffffffff.part').save('other host');
  t.equal(await s.sweep(), 2);
  const left = await stagedObjects(s);
  t.equal(left.length, 2);
  t.ok(left.some((n) => n.endsWith('-ffffffff.part')));
  await s.commit(live, {}, {});
  t.equal(await text((await s.get('a.tar.gz')).body), 'live', 'the live upload survived the sweep');
});

t.test('init creates a missing bucket when AUTO_CREATE_BUCKET is true (the default)', async (t) => {
  const config = gcsConfig();
  const [before] = await raw.bucket(config.BUCKET_NAME).exists();
  t.notOk(before);
  await open(t, config);
  const [after] = await raw.bucket(config.BUCKET_NAME).exists();
  t.ok(after);
});

t.test('init errors are one line naming the variable and the fix', async (t) => {
  t.test('missing bucket with AUTO_CREATE_BUCKET=false', async (t) => {
    const config = gcsConfig({ AUTO_CREATE_BUCKET: 'false' });
    const err = await initError(t, config);
    t.match(err.message, `BUCKET_NAME=${config.BUCKET_NAME} does not exist`);
    t.match(err.message, 'AUTO_CREATE_BUCKET=true');
  });

  t.test('unreachable endpoint, reported within seconds', async (t) => {
    const started = Date.now();
    const err = await initError(t, gcsConfig({ STORAGE_EMULATOR_HOST: 'http://127.0.0.1:1' }));
    t.match(err.message, 'STORAGE_EMULATOR_HOST=http://127.0.0.1:1 is unreachable (ECONNREFUSED)');
    t.ok(Date.now() - started < 15_000, `took ${Date.now() - started} ms`);
  });

  t.test('GOOGLE_APPLICATION_CREDENTIALS pointing at a missing file', async (t) => {
    const err = await initError(t, gcsConfig({ GOOGLE_APPLICATION_CREDENTIALS: '/nonexistent/key.json' }));
    t.match(err.message, 'GOOGLE_APPLICATION_CREDENTIALS=/nonexistent/key.json cannot be read (ENOENT)');
  });

  t.test('GOOGLE_APPLICATION_CREDENTIALS pointing at something else than a key', async (t) => {
    const dir = await tempDir(t);
    const { writeFile } = await import('node:fs/promises');
    await writeFile(`${dir}/notes.txt`, 'not json');
    await writeFile(`${dir}/other.json`, '{"hello":"world"}');
    t.match(
      (await initError(t, gcsConfig({ GOOGLE_APPLICATION_CREDENTIALS: `${dir}/notes.txt` }))).message,
      /GOOGLE_APPLICATION_CREDENTIALS=.*notes\.txt is not a JSON credentials file/,
    );
    t.match(
      (await initError(t, gcsConfig({ GOOGLE_APPLICATION_CREDENTIALS: `${dir}/other.json` }))).message,
      /GOOGLE_APPLICATION_CREDENTIALS=.*other\.json is JSON but not a Google credentials file/,
    );
  });

  t.test('a service-account key that cannot sign (wrong or damaged credentials)', async (t) => {
    const dir = await tempDir(t);
    const { writeFile } = await import('node:fs/promises');
    await writeFile(
      `${dir}/key.json`,
      JSON.stringify({
        type: 'service_account',
        project_id: 'p',
        client_email: 'sa@p.iam.gserviceaccount.com',
        private_key: '-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n',
      }),
    );
    // No emulator: the SDK authenticates, and signing fails before any request leaves the host.
    const err = await initError(
      t,
      gcsConfig({
        STORAGE_EMULATOR_HOST: undefined,
        GOOGLE_APPLICATION_CREDENTIALS: `${dir}/key.json`,
        GOOGLE_CLOUD_PROJECT: 'p',
      }),
    );
    t.match(err.message, `GOOGLE_APPLICATION_CREDENTIALS=${dir}/key.json`);
  });

  t.test('no credentials at all', async (t) => {
    const saved = { ...process.env };
    t.teardown(() => {
      for (const k of ['GOOGLE_APPLICATION_CREDENTIALS', 'CLOUDSDK_CONFIG', 'METADATA_SERVER_DETECTION']) {
        if (saved[k] === undefined) delete process.env[k];
        else process.env[k] = saved[k];
      }
    });
    delete process.env.GOOGLE_APPLICATION_CREDENTIALS;
    process.env.CLOUDSDK_CONFIG = await tempDir(t); // no gcloud application-default credentials
    process.env.METADATA_SERVER_DETECTION = 'none'; // not on GCP: skip probing the metadata server
    const err = await initError(t, gcsConfig({ STORAGE_EMULATOR_HOST: undefined, GOOGLE_CLOUD_PROJECT: 'p' }));
    t.match(err.message, 'GOOGLE_APPLICATION_CREDENTIALS is not set and no default Google credentials were found');
  });

  t.test('a bucket these credentials may not read (403), from a server that says so', async (t) => {
    // fake-gcs-server has no access control: a minimal JSON API server answers 403 instead.
    const server = createServer((_req, res) => {
      res.writeHead(403, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          error: {
            code: 403,
            message:
              'sa@p.iam.gserviceaccount.com does not have storage.objects.list access to the Google Cloud Storage bucket.',
            errors: [{ reason: 'forbidden' }],
          },
        }),
      );
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    t.teardown(() => server.close());
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const config = gcsConfig({ STORAGE_EMULATOR_HOST: url });
    const err = await initError(t, config);
    t.match(err.message, `BUCKET_NAME=${config.BUCKET_NAME} cannot be read with these credentials (403`);
    t.match(err.message, 'roles/storage.objectAdmin');
  });
});

t.test('STORAGE_EMULATOR_HOST may be host:port or end in /storage/v1', async (t) => {
  for (const host of [emulator.url.replace('http://', ''), `${emulator.url}/storage/v1`]) {
    const s = await open(t, gcsConfig({ STORAGE_EMULATOR_HOST: host }));
    const info = await s.commit(await s.stage('h.tar.gz', body('x')), { version: '1' }, { ifNoneMatch: true });
    t.equal((await s.head('h.tar.gz')).token, info.token, host);
  }
});

t.test('an outage gives StorageUnavailableError within seconds, and the same instance recovers', async (t) => {
  const s = await open(t, gcsConfig({ STORAGE_TIMEOUT: '5s' }));
  await s.commit(await s.stage('o.tar.gz', body('before')), {}, {});
  await emulator.stop();
  let restarted = false;
  t.teardown(async () => {
    if (!restarted) await emulator.restart();
  });
  const checks: [string, () => Promise<unknown>][] = [
    ['head', () => s.head('o.tar.gz')],
    ['get', () => s.get('o.tar.gz')],
    ['stage', () => s.stage('p.tar.gz', body('during'))],
    [
      'list',
      async () => {
        for await (const _ of s.list('')) void _;
      },
    ],
    ['ping', () => s.ping()],
  ];
  for (const [name, fn] of checks) {
    const started = Date.now();
    const err = await fn().then(
      () => undefined,
      (e: unknown) => e,
    );
    const took = Date.now() - started;
    t.ok(err instanceof StorageUnavailableError, `${name}: ${(err as Error)?.message}`);
    t.ok(took < 15_000, `${name} failed in ${took} ms`);
  }
  await emulator.restart();
  restarted = true;
  t.equal(await text((await s.get('o.tar.gz')).body), 'before');
  const info = await s.commit(await s.stage('p.tar.gz', body('after')), {}, { ifNoneMatch: true });
  t.equal((await s.head('p.tar.gz')).token, info.token);
  await t.resolves(s.ping());
});

t.test('a server that accepts connections and then stays silent: StorageUnavailableError, never a hang', async (t) => {
  const { createServer: tcpServer } = await import('node:net');
  const sockets = new Set<import('node:net').Socket>();
  const silent = tcpServer((socket) => void sockets.add(socket.on('error', () => {})));
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    for (const socket of sockets) socket.destroy();
    silent.close();
  });
  // 2 s per attempt: three attempts and the retry delays outlast the SDK's old total deadline of
  // 5 s, past which it dropped the due retry without ever answering.
  const config = gcsConfig({
    STORAGE_EMULATOR_HOST: `http://127.0.0.1:${(silent.address() as AddressInfo).port}`,
    STORAGE_TIMEOUT: '2s',
  });
  const s = create(config, logger);
  t.teardown(() => s.close());
  const began = Date.now();
  const outcome = await Promise.race([
    s.head('m.tar.gz').then(
      () => 'answered',
      (err: unknown) => err,
    ),
    new Promise((resolve) => setTimeout(() => resolve('still waiting after 25 s'), 25_000)),
  ]);
  t.type(outcome, StorageUnavailableError, `head() failed after ${Date.now() - began} ms`);
});

t.test('a download that stalls half way fails after STORAGE_TIMEOUT instead of hanging', async (t) => {
  const { startProxy } = await import('../helpers/hostile.js');
  const proxy = await startProxy(emulator.url);
  t.teardown(() => proxy.close());
  const config = gcsConfig({ STORAGE_EMULATOR_HOST: proxy.url, STORAGE_TIMEOUT: '1s' });
  const s = await open(t, config);
  const bytes = Buffer.alloc(4 * 2 ** 20, 7);
  await s.commit(await s.stage('m.tar.gz', Readable.from([bytes])), { version: '1' }, {});
  // 16 KiB/s: a small answer passes at once, but after each 64 KiB read of the body the proxy
  // holds the connection for 4 s — far longer than STORAGE_TIMEOUT.
  proxy.rate = 16 * 1024;
  const { body } = await s.get('m.tar.gz');
  const began = Date.now();
  const outcome = await Promise.race([
    text(body).then(
      () => 'ended',
      (err: Error) => err,
    ),
    new Promise((resolve) => setTimeout(() => resolve('still waiting after 15 s'), 15_000)),
  ]);
  t.type(outcome, Error, 'the body fails');
  t.match((outcome as Error & { code?: string }).code, 'ETIMEDOUT');
  t.ok(Date.now() - began < 10_000, `after ${Date.now() - began} ms`);
});

t.test('a slow reader is not taken for a stalled server', async (t) => {
  const config = gcsConfig({ STORAGE_TIMEOUT: '300ms' });
  const s = await open(t, config);
  const bytes = Buffer.alloc(4 * 2 ** 20, 9);
  await s.commit(await s.stage('m.tar.gz', Readable.from([bytes])), { version: '1' }, {});
  const { body } = await s.get('m.tar.gz');
  await new Promise((r) => setTimeout(r, 1200)); // nobody reads for four timeouts
  let got = 0;
  for await (const chunk of body) got += (chunk as Buffer).length;
  t.equal(got, bytes.length, 'every byte arrives');
});

t.test('opened read-only (a migration source), no probe object is written: read-only credentials work', async (t) => {
  const config = gcsConfig();
  await open(t, config); // creates the bucket, as a server would
  const written: string[] = [];
  const s = create(config, logger);
  t.teardown(() => s.close());
  // Every object write goes through File.save / rewrite: count the requests that would write.
  const { File } = await import('@google-cloud/storage');
  const save = File.prototype.save;
  File.prototype.save = function (this: InstanceType<typeof File>, ...args: Parameters<typeof save>) {
    written.push(this.name);
    return save.apply(this, args);
  } as typeof save;
  t.teardown(() => {
    File.prototype.save = save;
  });
  await s.init({ readOnly: true });
  t.same(written, [], 'nothing written');
  const server = create(config, logger);
  t.teardown(() => server.close());
  await server.init();
  t.ok(written.length > 0, 'while a server start does probe its write access');
});

/**
 * A rewrite (the commit) whose reply is lost, as real GCS behaves: fake-gcs-server ignores rewrite
 * preconditions, so this server plays GCS for the three requests involved. The first rewrite
 * lands and its connection drops; the SDK sends it again, which now fails its own
 * ifGenerationMatch (412). Reading the destination back tells our write from another writer's.
 */
t.test('a commit whose reply was lost is told from a lost race by the nonce it wrote', async (t) => {
  type Readback = 'stored' | 'another writer' | 'failing';
  const run = async (readback: Readback) => {
    let generation = 222;
    let stored: Record<string, string> = {};
    let rewrites = 0;
    const server = createServer((req, res) => {
      let data = '';
      req.on('data', (d: Buffer) => (data += d));
      req.on('end', () => {
        const url = new URL(req.url!, 'http://x');
        const json = (status: number, body: unknown) =>
          res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
        if (req.method === 'POST' && url.pathname.includes('/rewriteTo/')) {
          rewrites++;
          if (Number(url.searchParams.get('ifGenerationMatch')) !== generation) {
            return json(412, {
              error: {
                code: 412,
                message: 'At least one of the pre-conditions you specified did not hold.',
                errors: [{ reason: 'conditionNotMet' }],
              },
            });
          }
          generation = 333; // the write lands ...
          stored = (JSON.parse(data) as { metadata: Record<string, string> }).metadata;
          if (readback === 'another writer') stored = { ...stored, 'registry-write': 'someone-else' };
          return req.socket.destroy(); // ... and its reply is lost
        }
        if (req.method === 'GET' && url.pathname.endsWith('/o/m.tar.gz')) {
          if (readback === 'failing') return json(403, { error: { code: 403, message: 'forbidden' } });
          return json(200, {
            name: 'm.tar.gz',
            bucket: 'bkt',
            generation: String(generation),
            metageneration: '1',
            size: '5',
            updated: new Date().toISOString(),
            metadata: stored,
          });
        }
        json(404, { error: { code: 404, message: 'not found' } });
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    t.teardown(() => server.close());
    // No init(): server-side rewrite conditions stay on, the path taken against real GCS.
    const s = create(
      gcsConfig({
        STORAGE_EMULATOR_HOST: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
        STORAGE_TIMEOUT: '5s',
      }),
      logger,
    );
    t.teardown(() => s.close());
    const outcome = await s
      .copy('.history/m/v1.tar.gz', 'm.tar.gz', {
        sourceToken: '111',
        metadata: { version: '3' },
        condition: { ifMatch: '222' },
      })
      .catch((err: unknown) => err);
    t.equal(rewrites, 2, `${readback}: the SDK sent the rewrite twice`);
    return outcome;
  };
  const landed = await run('stored');
  t.match(
    landed,
    { key: 'm.tar.gz', token: '333', metadata: { version: '3' } },
    'our write: success, with the generation it created',
  );
  t.notOk('registry-write' in (landed as { metadata: object }).metadata, 'the nonce stays internal');
  t.match(
    await run('another writer'),
    { name: 'PreconditionFailedError' },
    "another writer's object: the race was lost",
  );
  t.type(
    await run('failing'),
    StorageUnavailableError,
    'cannot tell: unavailable (outcome unknown), never a failed condition',
  );
});
