import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { text } from 'node:stream/consumers';
import { Binary, MongoClient, ObjectId } from 'mongodb';
import { pino } from 'pino';
import t, { type Test } from 'tap';
import { type BackendConfig, loadConfig } from '../../src/config.js';
import { ConfigError, NotFoundError, PreconditionFailedError, StorageUnavailableError } from '../../src/errors.js';
import { create, GRACE_MS, type MongoStorage } from '../../src/storage/mongodb/storage.js';
import { newStagedName } from '../../src/storage/shared/staging.js';
import type { Storage } from '../../src/storage/types.js';
import { startFerretDb } from '../helpers/emulators.js';
import { startProxy } from '../helpers/hostile.js';
import { freePort } from '../helpers/process.js';
import { conformance } from '../helpers/storage-conformance.js';

const emulator = await startFerretDb();
t.teardown(() => emulator.dispose());
const admin = new MongoClient(emulator.url, { serverSelectionTimeoutMS: 5000 });
t.teardown(() => admin.close());

const logger = pino({ level: 'silent' });
const databases = new WeakMap<Storage, string>();
let counter = 0;

const configOf = (env: Record<string, string>) =>
  loadConfig({
    REMOTE_STORAGE: 'mongodb',
    MONGODB_URI: emulator.url,
    STORAGE_TIMEOUT: '5s',
    ...env,
  }) as BackendConfig<'mongodb'>;

const factory = async (tt: Test): Promise<MongoStorage> => {
  const database = `registry_${process.pid}_${counter++}`;
  const s = create(configOf({ MONGODB_DATABASE: database }), logger);
  await s.init();
  databases.set(s, database);
  tt.teardown(async () => {
    await s.close();
    await admin
      .db(database)
      .dropDatabase()
      .catch(() => {});
  });
  return s;
};

const db = (s: Storage) => admin.db(databases.get(s)!);
const body = (data: string) => Readable.from([Buffer.from(data)]);

/** Staged files never committed, plus chunks whose files document is missing. */
const leftovers = async (s: Storage) => {
  const staged = await db(s).collection('models.files').countDocuments({ 'metadata.staged': true });
  const fileIds = await db(s).collection('models.chunks').distinct('files_id');
  let orphans = 0;
  for (const id of fileIds) if (!(await db(s).collection('models.files').findOne({ _id: id }))) orphans++;
  return staged + orphans;
};

t.test('conformance', async (t) => conformance(t, factory, { leftovers }));

t.test('sweep removes staged files and chunks of dead writers and keeps live ones', async (t) => {
  const s = await factory(t);
  const files = db(s).collection<Record<string, unknown>>('models.files');
  const chunks = db(s).collection('models.chunks');
  const live = await s.stage('a.tar.gz', body('live'));
  const kept = await s.commit(await s.stage('k.tar.gz', body('kept')), {}, {});
  const tag = /-([0-9a-f]{8})\.part$/.exec(newStagedName())![1];
  const fake = async (name: string, withFile: boolean) => {
    await chunks.insertOne({ _id: new ObjectId(), files_id: name, n: 0, data: new Binary(Buffer.from('x')) });
    if (withFile) {
      await files.insertOne({
        _id: name as never,
        length: 1,
        chunkSize: 261120,
        uploadDate: new Date(),
        filename: `.uploads/${name}`,
        metadata: { key: 'x.tar.gz', staged: true },
      });
    }
  };
  await fake(`4194305-00000000-0000-0000-0000-000000000000-${tag}.part`, true); // crashed writer on this host
  await fake(`${process.pid}-11111111-1111-1111-1111-111111111111-${tag}.part`, true); // an earlier life of our pid
  await fake(`4194305-33333333-3333-3333-3333-333333333333-${tag}.part`, false); // died before its files document
  await fake(`4194305-22222222-2222-2222-2222-222222222222-ffffffff.part`, true); // another host, in progress
  t.equal(await s.sweep(), 3);
  t.equal(await files.countDocuments({ 'metadata.staged': true }), 2, "the live upload and the other host's remain");
  t.equal(await leftovers(s), 2);
  await s.commit(live, {}, {});
  t.equal(await text((await s.get('a.tar.gz')).body), 'live', 'the live upload survived the sweep');
  t.equal((await s.head('k.tar.gz')).token, kept.token);
  t.equal(await text((await s.get('k.tar.gz')).body), 'kept');
});

t.test('superseded versions and unreferenced files are pruned after the grace period', async (t) => {
  const s = await factory(t);
  const versions = db(s).collection('models.versions');
  const files = db(s).collection('models.files');
  const v1 = await s.commit(await s.stage('p.tar.gz', body('one')), { version: '1' }, {});
  await s.copy('p.tar.gz', '.history/p/v1.tar.gz', { sourceToken: v1.token, metadata: { version: '1' } });
  const v2 = await s.commit(await s.stage('p.tar.gz', body('two')), { version: '2' }, { ifMatch: v1.token });
  await s.commit(await s.stage('q.tar.gz', body('q1')), {}, {});
  const q2 = await s.commit(await s.stage('q.tar.gz', body('q2')), {}, {});
  await s.sweep();
  t.equal(await versions.countDocuments({}), 5, 'nothing is pruned within the grace period');
  await versions.updateMany({}, { $set: { createdAt: new Date(Date.now() - GRACE_MS - 1000) } });
  await s.sweep();
  t.equal(await versions.countDocuments({}), 3, 'only the heads remain');
  t.equal(await files.countDocuments({}), 3, 'p v1 stays (shared with its history copy), q1 is gone');
  t.equal(await text((await s.get('.history/p/v1.tar.gz')).body), 'one');
  t.equal(await text((await s.get('p.tar.gz')).body), 'two');
  t.equal((await s.head('p.tar.gz')).token, v2.token);
  t.equal(await text((await s.get('q.tar.gz')).body), 'q2');
  t.equal((await s.head('q.tar.gz')).token, q2.token);
});

t.test('a deleted key stays deleted for stale writers and can be created again', async (t) => {
  const s = await factory(t);
  const v1 = await s.commit(await s.stage('d.tar.gz', body('one')), {}, { ifNoneMatch: true });
  await s.delete('d.tar.gz');
  await t.rejects(s.head('d.tar.gz'), NotFoundError);
  await t.rejects(
    s.commit(await s.stage('d.tar.gz', body('stale')), {}, { ifMatch: v1.token }),
    PreconditionFailedError,
  );
  await t.rejects(s.setMetadata('d.tar.gz', v1.token, { a: 'b' }), NotFoundError);
  const v2 = await s.commit(await s.stage('d.tar.gz', body('two')), {}, { ifNoneMatch: true });
  t.not(v2.token, v1.token);
  t.equal(await text((await s.get('d.tar.gz')).body), 'two');
  t.same(
    await (async () => {
      const out = [];
      for await (const i of s.list('d')) out.push(i.key);
      return out;
    })(),
    ['d.tar.gz'],
  );
});

const initError = async (t: Test, env: Record<string, string>) => {
  const s = create(configOf({ MONGODB_DATABASE: `registry_${process.pid}_${counter++}`, ...env }), logger);
  const started = Date.now();
  const err = await s.init().then(
    () => undefined,
    (e: unknown) => e,
  );
  await s.close();
  t.type(err, ConfigError);
  const message = (err as Error).message;
  t.notMatch(message, /\n/, 'one line');
  t.notMatch(message, /s3cret/, 'the password is never echoed');
  t.ok(Date.now() - started < 15_000, 'fails within seconds');
  return message;
};

t.test('init: unreachable server', async (t) => {
  const port = await freePort();
  const message = await initError(t, { MONGODB_URI: `mongodb://registry:s3cret@127.0.0.1:${port}/` });
  t.match(message, new RegExp(`^MONGODB_URI=.*127\\.0\\.0\\.1:${port}.*unreachable \\(ECONNREFUSED\\)`));
});

t.test('init: unparsable connection strings', async (t) => {
  t.match(
    await initError(t, { MONGODB_URI: 'mongodb://registry:s3:cr@et@127.0.0.1' }),
    /^MONGODB_URI=\(hidden\) is not a valid connection string \(Password contains unescaped characters\)/,
  );
  t.match(
    await initError(t, { MONGODB_URI: 'mongodb://registry:s3cret@127.0.0.1:99999' }),
    /^MONGODB_URI=\(hidden\) is not a valid connection string/,
  );
  t.match(await initError(t, { MONGODB_URI: `${emulator.url}?tls=maybe` }), /^MONGODB_URI=.*tls/);
});

t.test('init: wrong credentials, and the right ones', async (t) => {
  const auth = await startAuthFerretDb(t);
  t.match(
    await initError(t, { MONGODB_URI: `mongodb://registry:s3cret-wrong@127.0.0.1:${auth}/?authSource=models` }),
    new RegExp(
      `^MONGODB_URI=\\(hidden\\) has credentials that 127\\.0\\.0\\.1:${auth} rejects \\(AuthenticationFailed\\)`,
    ),
  );
  const s = create(
    configOf({ MONGODB_URI: `mongodb://registry:right-password@127.0.0.1:${auth}/?authSource=models` }),
    logger,
  );
  t.teardown(() => s.close());
  await s.init();
  await s.commit(await s.stage('m.tar.gz', body('x')), {}, {});
  t.equal(await text((await s.get('m.tar.gz')).body), 'x');
});

t.test('the database is created on first use', async (t) => {
  const s = await factory(t);
  t.ok((await db(s).listCollections().toArray()).some((c) => c.name === 'models.versions'));
});

t.test('an outage gives StorageUnavailableError within seconds, and the same instance recovers', async (t) => {
  const s = await factory(t);
  await s.commit(await s.stage('o.tar.gz', body('before')), {}, {});
  await emulator.stop();
  try {
    const started = Date.now();
    const results = await Promise.allSettled([
      s.head('o.tar.gz'),
      s.get('o.tar.gz'),
      s.stage('o.tar.gz', body('during')),
      s.ping(),
    ]);
    const elapsed = Date.now() - started;
    for (const [i, r] of results.entries()) {
      const got = r.status === 'rejected' ? r.reason : r.value;
      t.type(
        got,
        StorageUnavailableError,
        `${['head', 'get', 'stage', 'ping'][i]}: ${got instanceof Error ? `${got.name}: ${got.message}` : JSON.stringify(got)}`,
      );
    }
    t.ok(elapsed < 15_000, `rejected after ${elapsed} ms`);
  } finally {
    await emulator.restart();
  }
  await s.ping();
  t.equal(await text((await s.get('o.tar.gz')).body), 'before');
  await s.commit(await s.stage('o.tar.gz', body('after')), {}, {});
  t.equal(await text((await s.get('o.tar.gz')).body), 'after');
});

t.test(
  'a server that stops answering mid-connection: StorageUnavailableError after STORAGE_TIMEOUT, not twice that',
  async (t) => {
    const { port } = new URL(emulator.url.replace('mongodb://', 'http://'));
    const proxy = await startProxy(`http://127.0.0.1:${port}`);
    t.teardown(() => proxy.close());
    const database = `registry_${process.pid}_${counter++}`;
    const s = create(
      configOf({
        MONGODB_URI: `mongodb://127.0.0.1:${new URL(proxy.url).port}`,
        MONGODB_DATABASE: database,
        STORAGE_TIMEOUT: '2s',
      }),
      logger,
    );
    await s.init();
    t.teardown(async () => {
      await s.close();
      await admin
        .db(database)
        .dropDatabase()
        .catch(() => {});
    });
    await s.commit(await s.stage('o.tar.gz', body('x')), {}, {});
    proxy.stall();
    const started = Date.now();
    await t.rejects(s.head('o.tar.gz'), StorageUnavailableError);
    const elapsed = Date.now() - started;
    // A retried read waited the socket timeout again: 4 s here, a minute with the default 30 s.
    t.ok(elapsed >= 1900 && elapsed < 3500, `rejected after ${elapsed} ms`);
  },
);

/** A second FerretDB with authentication on (user registry / right-password); returns its port. */
async function startAuthFerretDb(t: Test): Promise<number> {
  const dir = await mkdtemp(path.join(tmpdir(), 'mr-ferretdb-auth-'));
  await mkdir(path.join(dir, 'data'));
  const port = await freePort();
  const bin = path.join(import.meta.dirname, '../../.emulators/bin/ferretdb');
  const child = spawn(
    bin,
    [
      '--handler=sqlite',
      `--sqlite-url=file:${path.join(dir, 'data')}/`,
      `--listen-addr=127.0.0.1:${port}`,
      `--state-dir=${dir}`,
      '--debug-addr=-',
      '--telemetry=disable',
      '--log-level=error',
      '--test-enable-new-auth',
      '--setup-database=models',
      '--setup-username=registry',
      '--setup-password=right-password',
    ],
    { stdio: 'ignore' },
  );
  t.teardown(async () => {
    child.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
  });
  // Ready once the setup user can log in.
  const deadline = Date.now() + 30_000;
  for (;;) {
    const probe = new MongoClient(`mongodb://registry:right-password@127.0.0.1:${port}/?authSource=models`, {
      serverSelectionTimeoutMS: 500,
    });
    const ok = await probe
      .db('models')
      .command({ ping: 1 })
      .then(
        () => true,
        () => false,
      );
    await probe.close();
    if (ok) return port;
    if (Date.now() > deadline || child.exitCode !== null) throw new Error('ferretdb with authentication did not start');
    await new Promise((r) => setTimeout(r, 200));
  }
}

t.test(
  'a commit whose reply is lost after the server applied it: discard keeps the file the new version points to',
  async (t) => {
    const s = await factory(t);
    const v1 = await s.commit(await s.stage('m.tar.gz', body('version one')), { v: '1' }, { ifNoneMatch: true });
    // The server inserts the version, then the reply never arrives (a timeout, a failover).
    const { Collection, MongoNetworkTimeoutError } = await import('mongodb');
    const insertOne = Collection.prototype.insertOne;
    let lose = true;
    Collection.prototype.insertOne = async function (
      this: InstanceType<typeof Collection>,
      ...args: Parameters<typeof insertOne>
    ) {
      const result = await insertOne.apply(this, args);
      if (lose && this.collectionName.endsWith('.versions')) {
        lose = false;
        throw new MongoNetworkTimeoutError('reply lost (injected)');
      }
      return result;
    } as typeof insertOne;
    t.teardown(() => {
      Collection.prototype.insertOne = insertOne;
    });
    const staged = await s.stage('m.tar.gz', body('version two'));
    await t.rejects(s.commit(staged, { v: '2' }, { ifMatch: v1.token }), 'the commit looks failed');
    await s.discard(staged); // what the registry does after a failed commit
    const { info, body: read } = await s.get('m.tar.gz');
    t.equal(info.metadata.v, '2', 'the version did land');
    t.equal(await text(read), 'version two', 'and its bytes are still there');
  },
);

t.test('a commit of a staged file that a sweep removed fails instead of publishing missing bytes', async (t) => {
  const s = await factory(t);
  const v1 = await s.commit(await s.stage('m.tar.gz', body('version one')), { v: '1' }, { ifNoneMatch: true });
  const staged = await s.stage('m.tar.gz', body('version two'));
  // Another replica's sweep took this live upload for a dead one.
  const files = db(s).collection('models.files');
  const { _id } = (await files.findOne({ 'metadata.staged': true }))!;
  await files.deleteOne({ _id });
  await db(s).collection('models.chunks').deleteMany({ files_id: _id });
  await t.rejects(s.commit(staged, { v: '2' }, { ifMatch: v1.token }), StorageUnavailableError);
  const { info, body: read } = await s.get('m.tar.gz');
  t.equal(info.token, v1.token, 'the old version is still current');
  t.equal(await text(read), 'version one');
});

t.test(
  'opened read-only (a migration source), nothing is created: no indexes, no database for a misspelt name',
  async (t) => {
    const database = `registry_${process.pid}_readonly`;
    const s = create(configOf({ MONGODB_DATABASE: database }), logger);
    t.teardown(async () => {
      await s.close();
      await admin
        .db(database)
        .dropDatabase()
        .catch(() => {});
    });
    await s.init({ readOnly: true });
    const names = (await admin.db(database).listCollections().toArray()).map((c) => c.name);
    t.same(names, [], 'no collection or index was created');
    const listed: string[] = [];
    for await (const info of s.list('')) listed.push(info.key);
    t.same(listed, [], 'and it reads as empty');
  },
);

t.test(
  'a running process prunes and sweeps on its own: history and deleted keys are never written again',
  async (t) => {
    const database = `registry_${process.pid}_${counter++}`;
    const s = create(configOf({ MONGODB_DATABASE: database }), logger, { maintenanceEveryMs: 200 });
    await s.init();
    databases.set(s, database);
    t.teardown(async () => {
      await s.close();
      await admin
        .db(database)
        .dropDatabase()
        .catch(() => {});
    });
    const versions = db(s).collection('models.versions');
    const files = db(s).collection('models.files');
    // A history entry pruned by the service, and a deleted model: neither key is written again.
    const h = await s.commit(await s.stage('.history/m/v1.tar.gz', body('old')), {}, {});
    await s.delete(h.key);
    await s.commit(await s.stage('gone.tar.gz', body('gone')), {}, {});
    await s.delete('gone.tar.gz');
    // An upload that failed while the server was unreachable left chunks behind (no files document).
    await db(s)
      .collection('models.chunks')
      .insertOne({
        _id: new ObjectId(),
        files_id: newStagedName().replace(/^\d+/, '4194305'),
        n: 0,
        data: new Binary(Buffer.from('x')),
      });
    await versions.updateMany({}, { $set: { createdAt: new Date(Date.now() - GRACE_MS - 1000) } });
    const clean = async () =>
      (await files.countDocuments({})) === 0 && (await db(s).collection('models.chunks').countDocuments({})) === 0;
    const deadline = Date.now() + 5000;
    while (!(await clean()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    t.ok(await clean(), 'the bytes of deleted keys and failed uploads are gone without a restart');
    await t.rejects(s.head('gone.tar.gz'), NotFoundError, 'and the deleted key stays deleted');
  },
);

t.test(
  'a GridFS file missing or broken under a version: StorageUnavailableError (503), never a raw driver error',
  async (t) => {
    const s = await factory(t);
    await s.commit(await s.stage('a.tar.gz', body('a'.repeat(600 * 1024))), {}, {});
    await s.commit(await s.stage('b.tar.gz', body('b')), {}, {});
    const a = await db(s).collection('models.files').findOne({ filename: 'a.tar.gz' });
    await db(s)
      .collection('models.chunks')
      .deleteMany({ files_id: a!._id, n: { $gt: 0 } });
    const { body: broken } = await s.get('a.tar.gz');
    await t.rejects(
      text(broken),
      StorageUnavailableError,
      'last chunks missing: the stream fails with a storage error (the driver would end it short, silently)',
    );
    await db(s).collection('models.chunks').deleteMany({ files_id: a!._id });
    await db(s)
      .collection('models.chunks')
      .insertOne({ _id: new ObjectId(), files_id: a!._id, n: 1, data: new Binary(Buffer.alloc(261120)) });
    await t.rejects(
      text((await s.get('a.tar.gz')).body),
      StorageUnavailableError,
      "a chunk missing in the middle: the driver's error, translated",
    );
    await db(s).collection('models.files').deleteMany({ filename: 'b.tar.gz' });
    await t.rejects(s.get('b.tar.gz'), StorageUnavailableError, 'the file missing: get() itself fails');
    await t.rejects(s.get('nothing.tar.gz'), NotFoundError);
  },
);
