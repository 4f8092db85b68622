import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { text } from 'node:stream/consumers';
import { AggregateAuthenticationError, CredentialUnavailableError, DefaultAzureCredential } from '@azure/identity';
import {
  AccountSASPermissions,
  AccountSASResourceTypes,
  BlobServiceClient,
  generateAccountSASQueryParameters,
  RestError,
  StorageSharedKeyCredential,
} from '@azure/storage-blob';
import t, { type Test } from 'tap';
import { type BackendConfig, loadConfig } from '../../src/config.js';
import { ConfigError, MetadataTooLargeError, NotFoundError, StorageUnavailableError } from '../../src/errors.js';
import { toHttpError } from '../../src/http/errors.js';
import { resolveClient } from '../../src/storage/azure/client.js';
import { translate } from '../../src/storage/azure/errors.js';
import { decodeMetadata, encodeMetadata } from '../../src/storage/azure/metadata.js';
import { type AzureStorage, create } from '../../src/storage/azure/storage.js';
import type { Storage } from '../../src/storage/types.js';
import type { Logger } from '../../src/util/logger.js';
import { AZURITE_ACCOUNT, AZURITE_KEY, startAzurite } from '../helpers/emulators.js';
import { conformance } from '../helpers/storage-conformance.js';

const emulator = await startAzurite();
t.teardown(() => emulator.dispose());

const sharedKey = new StorageSharedKeyCredential(AZURITE_ACCOUNT, AZURITE_KEY);
const service = new BlobServiceClient(emulator.url, sharedKey);
const silent: Logger = { debug() {}, info() {}, warn() {}, error() {}, child: () => silent };
let counter = 0;
const newContainer = () => `t${process.pid}-${Date.now().toString(36)}-${counter++}`;

const config = (env: Record<string, string>) =>
  loadConfig({ REMOTE_STORAGE: 'azure', STORAGE_TIMEOUT: '5s', ...env }) as BackendConfig<'azure'>;
const keyEnv = (container: string) => ({
  AZURE_CONTAINER: container,
  AZURE_ACCOUNT_NAME: AZURITE_ACCOUNT,
  AZURE_ACCOUNT_KEY: AZURITE_KEY,
  AZURE_BLOB_ENDPOINT: emulator.url,
});
const connectionString = `DefaultEndpointsProtocol=http;AccountName=${AZURITE_ACCOUNT};AccountKey=${AZURITE_KEY};BlobEndpoint=${emulator.url};`;

async function open(t: Test, env: Record<string, string>): Promise<AzureStorage> {
  const s = create(config(env), silent);
  t.teardown(async () => {
    await s.close();
    await service.getContainerClient(s.config.AZURE_CONTAINER).deleteIfExists();
  });
  await s.init();
  return s;
}

const azure = (t: Test) => open(t, keyEnv(newContainer()));

/** Blobs under .uploads/, committed or holding only uncommitted blocks. */
async function uploads(s: Storage): Promise<string[]> {
  const names: string[] = [];
  const container = service.getContainerClient((s as AzureStorage).config.AZURE_CONTAINER);
  for await (const b of container.listBlobsFlat({ prefix: '.uploads/', includeUncommitedBlobs: true }))
    names.push(b.name);
  // And any key holding only uncommitted blocks (an upload in place that did not finish).
  const committed = new Set<string>();
  for await (const b of container.listBlobsFlat()) committed.add(b.name);
  for await (const b of container.listBlobsFlat({ includeUncommitedBlobs: true }))
    if (!b.name.startsWith('.uploads/') && !committed.has(b.name)) names.push(`${b.name} (uncommitted blocks)`);
  return names;
}

/** Runs init() and returns the ConfigError line. */
async function initError(t: Test, cfg: BackendConfig<'azure'>): Promise<string> {
  let s: AzureStorage;
  try {
    s = create(cfg, silent);
  } catch (err) {
    t.type(err, ConfigError);
    return (err as Error).message;
  }
  t.teardown(() => s.close());
  const err = await s.init().then(
    () => undefined,
    (e: unknown) => e,
  );
  t.type(err, ConfigError);
  const message = (err as Error).message;
  t.notMatch(message, /\n/, 'one line');
  t.notMatch(message, AZURITE_KEY, 'never echoes the key');
  return message;
}

const body = (data: string | Buffer) => Readable.from([Buffer.from(data)]);

t.test('conformance', async (t) => conformance(t, azure, { leftovers: async (s) => (await uploads(s)).length }));

t.test('the connection-string form works like the key form', async (t) => {
  const s = await open(t, { AZURE_CONTAINER: newContainer(), AZURE_STORAGE_CONNECTION_STRING: connectionString });
  const info = await s.commit(
    await s.stage('cs.tar.gz', body('via connection string')),
    { version: '1' },
    { ifNoneMatch: true },
  );
  t.same((await s.head('cs.tar.gz')).metadata, { version: '1' });
  t.equal(await text((await s.get('cs.tar.gz')).body), 'via connection string');
  t.same(
    (await collect(s.list(''))).map((i) => i.token),
    [info.token],
  );
});

t.test('a SAS URL in AZURE_BLOB_ENDPOINT works without a key, copies included', async (t) => {
  const sas = generateAccountSASQueryParameters(
    {
      permissions: AccountSASPermissions.parse('rwdlac'),
      resourceTypes: AccountSASResourceTypes.parse('sco').toString(),
      services: 'b',
      expiresOn: new Date(Date.now() + 3_600_000),
    },
    sharedKey,
  ).toString();
  const s = await open(t, { AZURE_CONTAINER: newContainer(), AZURE_BLOB_ENDPOINT: `${emulator.url}?${sas}` });
  const info = await s.commit(await s.stage('sas.tar.gz', body('via sas')), {}, { ifNoneMatch: true });
  await s.copy('sas.tar.gz', '.history/sas/v1.tar.gz', { sourceToken: info.token, metadata: { version: '1' } });
  t.equal(await text((await s.get('.history/sas/v1.tar.gz')).body), 'via sas');
});

t.test('metadata is stored under Azure-valid names and read back from other tools', async (t) => {
  const s = await azure(t);
  await s.commit(
    await s.stage('m.tar.gz', body('x')),
    { 'created-at': '2024-01-01', labels: '{"a":"é"}', '9lives': 'cat', empty: '' },
    {},
  );
  const blob = service.getContainerClient(s.config.AZURE_CONTAINER).getBlobClient('m.tar.gz');
  const { registry_write: nonce, ...stored } = (await blob.getProperties()).metadata!;
  t.same(stored, { created_at: '2024-01-01', labels: '{"a":"%C3%A9"}', _9lives: 'cat', empty: '%' });
  t.match(nonce, /^[0-9a-f-]{36}$/, 'the write nonce (write-nonce.ts) is stored too');
  t.same(
    (await s.head('m.tar.gz')).metadata,
    { 'created-at': '2024-01-01', labels: '{"a":"é"}', '9lives': 'cat', empty: '' },
    'and read back without it',
  );
  // Values as an earlier release wrote them (encodeURIComponent of the whole value) still read.
  await blob.setMetadata({ labels: '%7B%22a%22%3A%22%C3%A9%22%7D' });
  t.same((await s.head('m.tar.gz')).metadata, { labels: '{"a":"é"}' });
  // A blob uploaded by hand (az storage blob upload --metadata note=100%) is served as-is.
  const other = service.getContainerClient(s.config.AZURE_CONTAINER).getBlockBlobClient('hand.tar.gz');
  await other.upload('y', 1, { metadata: { note: '100%' } });
  t.same((await s.head('hand.tar.gz')).metadata, { note: '100%' });
});

t.test('a body that fails after some blocks were sent leaves no uncommitted blocks', async (t) => {
  const s = await azure(t);
  let sent = 0;
  const failing = new Readable({
    read() {
      if (sent >= 9 * 1024 * 1024) return void setTimeout(() => this.destroy(new Error('client went away')), 200);
      sent += 1024 * 1024;
      this.push(Buffer.alloc(1024 * 1024, 1));
    },
  });
  await t.rejects(s.stage('f.tar.gz', failing), /client went away/);
  t.same(await uploads(s), []);
});

t.test(
  'sweep removes staged uploads of dead writers, including bare uncommitted blocks, and keeps live ones',
  async (t) => {
    const s = await azure(t);
    const container = service.getContainerClient(s.config.AZURE_CONTAINER);
    const live = await s.stage('a.tar.gz', body('live'));
    const [ours] = await uploads(s);
    const tag = /-([0-9a-f]{8})\.part$/.exec(ours!)![1];
    // A crashed writer on this host (pid 2^22+1 does not exist) that had committed its staging
    // blob, one that died mid-stage (uncommitted blocks only), and another host's live upload.
    await container
      .getBlockBlobClient(`.uploads/4194305-00000000-0000-0000-0000-000000000000-${tag}.part`)
      .upload('dead', 4);
    const midway = container.getBlockBlobClient(`.uploads/4194305-11111111-1111-1111-1111-111111111111-${tag}.part`);
    await midway.stageBlock(Buffer.from('000000').toString('base64'), 'half', 4);
    await container
      .getBlockBlobClient('.uploads/4194305-22222222-2222-2222-2222-222222222222-ffffffff.part')
      .upload('other', 5);
    t.equal((await uploads(s)).length, 4);
    t.equal(await s.sweep(), 2);
    const left = await uploads(s);
    t.equal(left.length, 2);
    t.ok(
      left.some((n) => n.endsWith('-ffffffff.part')),
      "another host's upload is left alone",
    );
    // Azure dates a blob of uncommitted blocks by its first block: another host's upload running
    // for hours looks hours old. It is taken for abandoned only after a day.
    const realNow = Date.now;
    try {
      Date.now = () => realNow() + 5 * 3600_000;
      t.equal(await s.sweep(), 0, "five hours on, another host's upload is still left alone");
      Date.now = () => realNow() + 25 * 3600_000;
      t.equal(await s.sweep(), 1, 'a day on, it is swept');
    } finally {
      Date.now = realNow;
    }
    await s.commit(live, {}, {});
    t.equal(await text((await s.get('a.tar.gz')).body), 'live', 'the live upload survived the sweep');
  },
);

t.test('sweep: a dead writer’s upload in place goes by its marker, blocks and all; a live one stays', async (t) => {
  const s = await azure(t);
  const container = service.getContainerClient(s.config.AZURE_CONTAINER);
  const MiB = 1024 * 1024;
  let release: () => void = () => {};
  const held = new Promise<void>((resolve) => (release = resolve));
  let sent = 0;
  const stalled = new Readable({
    read() {
      if (sent >= 20 * MiB) return this.push(null);
      sent += MiB;
      if (sent === 18 * MiB)
        void held.then(() => this.push(Buffer.alloc(MiB, 1))); // past two blocks
      else this.push(Buffer.alloc(MiB, 1));
    },
  });
  const writing = s.stageInPlace('.history/m/v1.tar.gz', stalled, { version: '1' });
  for (let i = 0; i < 100 && (await uploads(s)).length < 2; i++) await new Promise((r) => setTimeout(r, 50));
  const during = await uploads(s);
  t.equal(during.length, 2, `a marker and the key's uncommitted blocks (${during})`);
  const marker = during.find((n) => n.startsWith('.uploads/'))!;
  t.equal(await s.sweep(), 0, 'this process’s own upload is left alone');
  release();
  t.equal((await writing).size, 20 * MiB, 'and completes');
  t.same(await uploads(s), [], 'its marker went with it');

  // A body that fails once blocks are on the key: they go (an empty commit, then a delete).
  let sentToo = 0;
  const failing = new Readable({
    read() {
      sentToo += MiB;
      if (sentToo === 18 * MiB) return; // stalls past two blocks, until destroyed below
      this.push(Buffer.alloc(MiB, 2));
    },
  });
  const refused = s.stageInPlace('.history/m/v2.tar.gz', failing, { version: '2' });
  for (let i = 0; i < 100 && (await uploads(s)).length < 2; i++) await new Promise((r) => setTimeout(r, 50));
  t.ok((await uploads(s)).includes('.history/m/v2.tar.gz (uncommitted blocks)'), 'blocks staged on the key itself');
  failing.destroy(new Error('vetoed'));
  await t.rejects(refused, /vetoed/);
  t.same(await uploads(s), [], 'a failed body leaves no blocks and no marker');
  await t.rejects(s.head('.history/m/v2.tar.gz'), NotFoundError);

  // A dead writer on this host (pid 2^22+1 does not exist): its marker and its blocks on the key.
  const dead = container.getBlockBlobClient(marker.replace(/^\.uploads\/\d+-/, '.uploads/4194305-'));
  await dead.upload('', 0, { metadata: { registry_in_place: encodeURIComponent('.history/m/v7.tar.gz') } });
  const key = container.getBlockBlobClient('.history/m/v7.tar.gz');
  await key.stageBlock(Buffer.from('x-000000').toString('base64'), 'half', 4);
  t.equal((await uploads(s)).length, 2);
  t.equal(await s.sweep(), 1, 'the dead writer’s marker is swept');
  t.same(await uploads(s), [], 'and the blocks on the key it named');
  await t.rejects(s.head('.history/m/v7.tar.gz'), NotFoundError, 'no blob left there');
});

t.test('init errors are one line naming the variable', async (t) => {
  t.test('unreachable endpoint, with the URL', async (t) => {
    const url = 'http://127.0.0.1:1/devstoreaccount1';
    const line = await initError(t, config({ ...keyEnv('models'), AZURE_BLOB_ENDPOINT: url }));
    t.equal(
      line,
      `AZURE_BLOB_ENDPOINT=${url} is unreachable (ECONNREFUSED): check the URL and that the server is running.`,
    );
    const viaCs = await initError(
      t,
      config({
        AZURE_CONTAINER: 'models',
        AZURE_STORAGE_CONNECTION_STRING: connectionString.replace(emulator.url, url),
      }),
    );
    t.match(
      viaCs,
      /^AZURE_STORAGE_CONNECTION_STRING points at http:\/\/127\.0\.0\.1:1\/devstoreaccount1, which is unreachable \(ECONNREFUSED\)/,
    );
  });

  t.test('wrong key (valid base64, wrong bytes)', async (t) => {
    const wrong = Buffer.alloc(64, 7).toString('base64');
    const line = await initError(t, config({ ...keyEnv('models'), AZURE_ACCOUNT_KEY: wrong }));
    t.match(
      line,
      /^AZURE_ACCOUNT_KEY is not accepted by storage account devstoreaccount1 at http:\/\/127\.0\.0\.1:\d+\/devstoreaccount1 \(HTTP 403 \w+\): copy key1 or key2/,
    );
    t.notMatch(line, wrong);
    const viaCs = await initError(
      t,
      config({
        AZURE_CONTAINER: 'models',
        AZURE_STORAGE_CONNECTION_STRING: connectionString.replace(AZURITE_KEY, wrong),
      }),
    );
    t.match(viaCs, /^AZURE_STORAGE_CONNECTION_STRING is not accepted by storage account devstoreaccount1/);
  });

  t.test('wrong account name', async (t) => {
    const line = await initError(
      t,
      config({
        ...keyEnv('models'),
        AZURE_ACCOUNT_NAME: 'nosuchaccount',
        AZURE_BLOB_ENDPOINT: emulator.url.replace(AZURITE_ACCOUNT, 'nosuchaccount'),
      }),
    );
    t.match(
      line,
      /^AZURE_BLOB_ENDPOINT=\S+\/nosuchaccount does not lead to storage account nosuchaccount \(HTTP 404 ResourceNotFound\)/,
    );
  });

  t.test('missing container with AUTO_CREATE_BUCKET=false', async (t) => {
    const name = newContainer();
    const line = await initError(t, config({ ...keyEnv(name), AUTO_CREATE_BUCKET: 'false' }));
    t.equal(
      line,
      `AZURE_CONTAINER=${name} does not exist in storage account devstoreaccount1 and AUTO_CREATE_BUCKET=false: create it (az storage container create --account-name devstoreaccount1 --name ${name}) or set AUTO_CREATE_BUCKET=true.`,
    );
    t.equal(await service.getContainerClient(name).exists(), false, 'nothing was created');
  });

  t.test('a container name the service refuses (config checks are bypassed here)', async (t) => {
    const line = await initError(t, { ...config(keyEnv('models')), AZURE_CONTAINER: 'Bad_Name' });
    t.match(line, /^AZURE_CONTAINER=Bad_Name is refused by the service \(HTTP 400 \w+\): use 3-63 lower-case letters/);
  });

  t.test('unparsable connection string', async (t) => {
    const line = await initError(
      t,
      config({ AZURE_CONTAINER: 'models', AZURE_STORAGE_CONNECTION_STRING: `AccountKey=${AZURITE_KEY};garbage` }),
    );
    t.match(line, /^AZURE_STORAGE_CONNECTION_STRING=\(hidden\) cannot be parsed \(.+\): copy it from/);
  });

  t.test('without a key, the default Azure identity chain is used (managed / workload identity)', async (t) => {
    // Only the resolution is checked: acquiring a token would ask the instance metadata service,
    // which is not on this machine's network (and must not be probed from tests).
    const { url, credential, source } = resolveClient(
      config({ AZURE_CONTAINER: 'models', AZURE_ACCOUNT_NAME: 'myaccount' }),
    );
    t.equal(url, 'https://myaccount.blob.core.windows.net');
    t.type(credential, DefaultAzureCredential);
    t.match(source, { credentialVar: 'identity', sharedKey: false });
  });
});

t.test('the container is created when missing, and init is repeatable', async (t) => {
  const name = newContainer();
  t.equal(await service.getContainerClient(name).exists(), false);
  const s = await open(t, keyEnv(name));
  t.equal(await service.getContainerClient(name).exists(), true);
  await t.resolves(s.init());
  const again = await open(t, { ...keyEnv(name), AUTO_CREATE_BUCKET: 'false' });
  await t.resolves(again.ping());
});

t.test('a server that stops answering fails after one timeout, not once per retry', async (t) => {
  let requests = 0;
  // Answers the first request (a blob HEAD), then accepts requests and never answers them.
  const server = createServer((_req, res) => {
    if (++requests > 1) return;
    res.writeHead(200, { etag: '"0x1"', 'content-length': '0', 'last-modified': new Date().toUTCString() }).end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    server.closeAllConnections();
    server.close();
  });
  const port = (server.address() as AddressInfo).port;
  const s = create(
    config({
      ...keyEnv('models'),
      AZURE_BLOB_ENDPOINT: `http://127.0.0.1:${port}/${AZURITE_ACCOUNT}`,
      STORAGE_TIMEOUT: '500ms',
    }),
    silent,
  );
  t.teardown(() => s.close());
  t.equal((await s.head('x.tar.gz')).token, '"0x1"');
  const started = Date.now();
  t.type(await failure(s.head('x.tar.gz')), StorageUnavailableError);
  t.ok(Date.now() - started < 1500, `gave up after ${Date.now() - started} ms: one STORAGE_TIMEOUT`);
  t.equal(requests, 2, 'the request on the kept-alive socket, not retried after its timeout (issue 21)');
});

t.test('an outage gives StorageUnavailableError fast, and the same instance recovers', async (t) => {
  const s = await azure(t);
  const before = await s.commit(await s.stage('o.tar.gz', body('before')), {}, {});
  await emulator.stop();
  try {
    const ops: Record<string, () => Promise<unknown>> = {
      head: () => s.head('o.tar.gz'),
      get: () => s.get('o.tar.gz'),
      stage: () => s.stage('p.tar.gz', body('during')),
      ping: () => s.ping(),
    };
    for (const [name, op] of Object.entries(ops)) {
      const started = Date.now();
      // t.type, not t.rejects: tap also compares `name`.
      t.type(await failure(op()), StorageUnavailableError, name);
      t.ok(Date.now() - started < 15_000, `${name} gave up after ${Date.now() - started} ms`);
    }
  } finally {
    await emulator.restart();
  }
  t.equal((await s.head('o.tar.gz')).token, before.token);
  const after = await s.commit(await s.stage('o.tar.gz', body('after')), {}, { ifMatch: before.token });
  t.equal(await text((await s.get('o.tar.gz')).body), 'after');
  t.not(after.token, before.token);
});

async function failure(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => undefined,
    (err: unknown) => err,
  );
}

async function collect<T>(iterable: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of iterable) out.push(x);
  return out;
}

t.test(
  'a request Azure refuses for its own reasons is a storage error (503), never its status passed on',
  async (t) => {
    const s = await azure(t);
    await s.commit(await s.stage('m.tar.gz', Readable.from([Buffer.from('0123456789')])), { version: '1' }, {});
    // A range past the end (as after a replace between describe and read): Azure answers 416.
    await t.rejects(s.get('m.tar.gz', { range: { start: 1000, end: 2000 } }), StorageUnavailableError);
  },
);

t.test(
  "labels at the 2 KiB limit fit in Azure's 8 KB of metadata, whatever their characters, and read back",
  async (t) => {
    const s = await azure(t);
    const limit = 2048 - 'x'.length;
    for (const [what, value] of [
      ['quotes (escaped in JSON, then sent)', '"'.repeat(limit)],
      ['backslashes', '\\'.repeat(limit)],
      ['non-ASCII (3 bytes each)', '数'.repeat(Math.floor(limit / 3))],
      ['spaces and percent signs', ' %'.repeat(limit / 2)],
    ] as const) {
      const metadata = {
        version: '9007199254740991',
        sha256: 'f'.repeat(64),
        'created-at': new Date().toISOString(),
        labels: JSON.stringify({ x: value }),
        'registry-write': crypto.randomUUID(),
      };
      const bytes = Object.entries(encodeMetadata(metadata)).reduce((n, [k, v]) => n + k.length + v.length, 0);
      t.ok(bytes <= 8000, `${what}: ${bytes} bytes of metadata`);
      t.same(decodeMetadata(encodeMetadata(metadata)), metadata, `${what}: read back as written`);
    }
    const labels = JSON.stringify({ x: '"数 %'.repeat(300) });
    await s.commit(await s.stage('m.tar.gz', body('x')), { labels }, {});
    t.equal((await s.head('m.tar.gz')).metadata.labels, labels, 'through Azurite too');
  },
);

t.test("Azure errors that are not the client's fault or that name a limit", async (t) => {
  // The default identity chain failing at request time (its endpoint down, a federated token
  // expired): storage unreachable, 503 — not a 500. (Tests must not probe the metadata service.)
  t.type(translate(new CredentialUnavailableError('no managed identity endpoint')), StorageUnavailableError);
  t.type(translate(new AggregateAuthenticationError([new Error('a')], 'chain failed')), StorageUnavailableError);
  // Metadata over Azure's bound: the labels are too large, a 413 naming the fix, not a 503.
  const tooLarge = translate(
    new RestError('metadata too large', { statusCode: 400, code: 'MetadataTooLarge' }),
    'm.tar.gz',
  );
  t.type(tooLarge, MetadataTooLargeError);
  t.match(toHttpError(tooLarge), { status: 413, code: 'METADATA_TOO_LARGE', message: /fewer or shorter labels/ });
});

t.test('a slow reader is not taken for a silent server (pauses longer than STORAGE_TIMEOUT)', async (t) => {
  const s = await open(t, { ...keyEnv(newContainer()), STORAGE_TIMEOUT: '300ms' });
  const bytes = Buffer.alloc(8 * 2 ** 20, 9);
  await s.commit(await s.stage('m.tar.gz', Readable.from([bytes])), {}, {});
  const { body } = await s.get('m.tar.gz');
  let got = 0;
  for await (const chunk of body as AsyncIterable<Buffer>) {
    got += chunk.length;
    // Behind for 600 ms every 2 MiB (a client on a slow link, a migration to a slow destination).
    if (got % (2 * 2 ** 20) < chunk.length) await new Promise((resolve) => setTimeout(resolve, 600));
  }
  t.equal(got, bytes.length, 'every byte arrives');
});
