/**
 * A page of GET /models on S3 asks for what it needs: the page and the one more key that says
 * whether a next page exists (ListObjectsV2 MaxKeys), not two full requests of 1,000 keys each
 * time the page size is 1,000. Iterating past the hint still lists everything, in order.
 */
import { randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import type { InitializeMiddleware, MetadataBearer } from '@smithy/types';
import { pino } from 'pino';
import t, { type Test } from 'tap';
import { type BackendConfig, loadConfig } from '../../src/config.js';
import { AliasStore } from '../../src/registry/aliases.js';
import { listModels } from '../../src/registry/listing.js';
import { S3Storage } from '../../src/storage/s3/storage.js';
import { MINIO_PASSWORD, MINIO_USER, startMinio } from '../helpers/emulators.js';

const minio = await startMinio();
t.teardown(() => minio.dispose());

/** An S3 backend on a new bucket holding `names` as models, and the MaxKeys of each listing it sends. */
async function bucketWith(t: Test, names: string[]): Promise<{ storage: S3Storage; maxKeys: (number | undefined)[] }> {
  const env = {
    REMOTE_STORAGE: 'aws',
    BUCKET_NAME: `list-${randomUUID().slice(0, 18)}`,
    AWS_ENDPOINT_URL: minio.url,
    AWS_ACCESS_KEY_ID: MINIO_USER,
    AWS_SECRET_ACCESS_KEY: MINIO_PASSWORD,
  };
  const storage = new S3Storage(loadConfig(env) as BackendConfig<'aws'>, pino({ level: 'silent' }));
  t.teardown(() => storage.close());
  await storage.init();
  for (const name of names) {
    await storage.commit(await storage.stage(`${name}.tar.gz`, Readable.from([Buffer.from(name)])), {}, {});
  }
  const maxKeys: (number | undefined)[] = [];
  const spy: InitializeMiddleware<object, MetadataBearer> = (next, context) => async (args) => {
    if (context.commandName === 'ListObjectsV2Command') maxKeys.push((args.input as { MaxKeys?: number }).MaxKeys);
    return next(args);
  };
  storage.client.middlewareStack.add(spy, { step: 'initialize', name: 'listSpy' });
  return { storage, maxKeys };
}

const names = Array.from({ length: 7 }, (_, i) => `m-${i}`);

t.test('listEntries: the first request asks for the expected entries only; the rest still comes', async (t) => {
  const { storage, maxKeys } = await bucketWith(t, names);
  const listed: string[] = [];
  for await (const e of storage.listEntries('', { startAfter: '/', expect: 3 }))
    listed.push(e.object?.key ?? e.folder!);
  t.same(
    listed,
    names.map((n) => `${n}.tar.gz`),
    'every entry, in key order, past the hint',
  );
  t.same(maxKeys, [3, undefined], 'MaxKeys=3 first, then a full page (S3 default 1,000)');

  maxKeys.length = 0;
  for await (const _ of storage.listEntries('', { startAfter: '/' })) void _;
  t.same(maxKeys, [undefined], 'without a hint, one request of the default size');
});

t.test('GET /models?limit=N lists N+1 keys: the page and the one that says a next page exists', async (t) => {
  const { storage, maxKeys } = await bucketWith(t, names);
  const aliases = new AliasStore(storage);
  const first = await listModels(storage, aliases, { limit: 3 });
  t.same(
    first.models.map((m) => m.name),
    ['m-0', 'm-1', 'm-2'],
  );
  t.equal(first.nextCursor, 'm-2');
  t.same(maxKeys.at(-1), 4, 'the models listing asked for limit + 1 keys');
  const listings = maxKeys.length;

  const second = await listModels(storage, aliases, { limit: 3, cursor: first.nextCursor! });
  t.same(
    second.models.map((m) => m.name),
    ['m-3', 'm-4', 'm-5'],
  );
  t.equal(second.nextCursor, 'm-5');
  const last = await listModels(storage, aliases, { limit: 3, cursor: second.nextCursor! });
  t.same(
    last.models.map((m) => m.name),
    ['m-6'],
  );
  t.equal(last.nextCursor, null, 'the last page says so');
  t.ok(
    maxKeys.slice(listings).every((k) => k === undefined || k <= 4),
    'no page asked for more than it needs',
  );

  // Filtered by labels, the page cannot know how many keys it needs: full requests, same answer.
  maxKeys.length = 0;
  const filtered = await listModels(storage, aliases, { limit: 3, labels: { stage: 'none' } });
  t.same(filtered.models, []);
  t.ok(
    maxKeys.every((k) => k === undefined),
    'a filtered listing gives no hint',
  );
});
