/**
 * Prometheus metrics: the instrumented storage counts and times real LocalStorage calls, and
 * the metrics plugin observes every route of a real Fastify server and serves /metrics.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import Fastify from 'fastify';
import t, { type Test } from 'tap';
import { NotFoundError, PreconditionFailedError } from '../src/errors.js';
import { createMetrics, type Metrics, STORAGE_OPERATIONS, STORAGE_OUTCOMES } from '../src/metrics.js';
import { metricsRoutes } from '../src/routes/metrics.js';
import { LocalStorage } from '../src/storage/local/storage.js';
import { instrument } from '../src/storage/shared/instrumented.js';
import type { Storage } from '../src/storage/types.js';
import { listening, tempDir } from './helpers/server.js';
import { conformance } from './helpers/storage-conformance.js';

const body = (data: string) => Readable.from([Buffer.from(data)]);

/** The value of one sample of a metric, 0 when it has no sample with these labels. */
async function sample(
  metrics: Metrics,
  name: string,
  labels: Record<string, string> = {},
  sampleName = name,
): Promise<number> {
  const metric = metrics.registry.getSingleMetric(name);
  if (!metric) throw new Error(`no metric ${name}`);
  const { values } = await metric.get();
  const found = (values as { value: number; labels: Record<string, string | number>; metricName?: string }[]).find(
    (v) =>
      (v.metricName ?? name) === sampleName &&
      Object.entries(labels).every(([k, value]) => String(v.labels[k]) === value),
  );
  return found?.value ?? 0;
}

const requests = (m: Metrics, operation: string, outcome: string) =>
  sample(m, 'model_registry_storage_requests_total', { operation, outcome });
const timings = (m: Metrics, operation: string) =>
  sample(
    m,
    'model_registry_storage_request_duration_seconds',
    { operation },
    'model_registry_storage_request_duration_seconds_count',
  );

/** Every storage counter, as "operation/outcome" → value, leaving out zeros. */
async function counts(m: Metrics): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const operation of STORAGE_OPERATIONS) {
    for (const outcome of STORAGE_OUTCOMES) {
      const v = await requests(m, operation, outcome);
      if (v) out[`${operation}/${outcome}`] = v;
    }
  }
  return out;
}

async function instrumentedLocal(t: Test): Promise<{ storage: Storage; local: LocalStorage; metrics: Metrics }> {
  const local = new LocalStorage({ root: await tempDir(t) });
  await local.init();
  const metrics = createMetrics();
  return { storage: instrument(local, metrics), local, metrics };
}

t.test('the instrumented storage still behaves as a storage (conformance suite)', async (t) => {
  const roots = new WeakMap<Storage, string>();
  conformance(
    t,
    async (tt) => {
      const { storage, local } = await instrumentedLocal(tt);
      roots.set(storage, local.root);
      return storage;
    },
    {
      leftovers: async (s) =>
        (await fs.readdir(path.join(roots.get(s)!, '.uploads'))).filter((n) => n.endsWith('.part')).length,
    },
  );
});

t.test('every storage call is counted with its operation and outcome', async (t) => {
  const { storage, local, metrics } = await instrumentedLocal(t);
  t.equal(storage.kind, 'local');
  t.same(storage.capabilities, local.capabilities);
  t.same(await counts(metrics), {}, 'all zero at start');

  await t.rejects(storage.head('missing.tar.gz'), NotFoundError);
  t.equal(await requests(metrics, 'head', 'not_found'), 1);
  t.equal(await timings(metrics, 'head'), 1, 'a failed call is timed too');

  const staged = await storage.stage('a.tar.gz', body('hello'));
  t.equal(
    staged.constructor,
    (await local.stage('x.tar.gz', body('x'))).constructor,
    "the backend's own staged object, untouched",
  );
  const info = await storage.commit(staged, { version: '1' }, { ifNoneMatch: true });
  t.equal(await requests(metrics, 'put', 'ok'), 2, 'stage and commit are one put each');

  const again = await storage.stage('a.tar.gz', body('other'));
  await t.rejects(storage.commit(again, {}, { ifNoneMatch: true }), PreconditionFailedError);
  t.equal(await requests(metrics, 'put', 'precondition_failed'), 1);
  await storage.discard(again);
  t.equal(await requests(metrics, 'delete', 'ok'), 1, 'discard counts as delete');

  const { info: got, body: stream } = await storage.get('a.tar.gz');
  t.equal(got.token, info.token);
  t.equal(await requests(metrics, 'get', 'ok'), 1, 'counted when the stream is open');
  let text = '';
  for await (const chunk of stream) text += chunk;
  t.equal(text, 'hello', 'the body passes through');
  await t.rejects(storage.get('missing.tar.gz'), NotFoundError);
  t.equal(await requests(metrics, 'get', 'not_found'), 1);

  const copied = await storage.copy('a.tar.gz', 'b.tar.gz', { sourceToken: info.token, metadata: { version: '2' } });
  t.equal(copied.key, 'b.tar.gz');
  await t.rejects(
    storage.copy('a.tar.gz', 'c.tar.gz', { sourceToken: 'stale', metadata: {} }),
    PreconditionFailedError,
  );
  t.equal(await requests(metrics, 'copy', 'ok'), 1);
  t.equal(await requests(metrics, 'copy', 'precondition_failed'), 1);

  await storage.setMetadata('b.tar.gz', copied.token, { version: '3' });
  t.equal(await requests(metrics, 'put', 'ok'), 4, 'setMetadata is a put');

  const keys: string[] = [];
  for await (const item of storage.list('')) keys.push(item.key);
  t.same(keys, ['a.tar.gz', 'b.tar.gz']);
  t.equal(await requests(metrics, 'list', 'ok'), 1, 'one list per iteration, not per item');

  await storage.delete('b.tar.gz');
  await storage.delete('b.tar.gz');
  t.equal(await requests(metrics, 'delete', 'ok'), 3);

  await storage.ping();
  t.equal(await requests(metrics, 'head', 'ok'), 1, 'ping is a head');

  await t.rejects(storage.head('../escape'), TypeError);
  t.equal(await requests(metrics, 'head', 'error'), 1, 'any other error is an error');

  t.same(await counts(metrics), {
    'head/ok': 1,
    'head/not_found': 1,
    'head/error': 1,
    'get/ok': 1,
    'get/not_found': 1,
    'put/ok': 4,
    'put/precondition_failed': 1,
    'copy/ok': 1,
    'copy/precondition_failed': 1,
    'list/ok': 1,
    'delete/ok': 3,
  });
  for (const [operation, n] of Object.entries({ head: 3, get: 2, put: 5, copy: 2, list: 1, delete: 3 })) {
    t.equal(await timings(metrics, operation), n, `every ${operation} is timed`);
  }
});

t.test('list() stays lazy and counts early stops and failures once', async (t) => {
  const { storage, metrics } = await instrumentedLocal(t);
  for (const key of ['a.tar.gz', 'b.tar.gz', 'c.tar.gz'])
    await storage.commit(await storage.stage(key, body(key)), {}, {});

  const iterable = storage.list('');
  t.equal(await requests(metrics, 'list', 'ok'), 0, 'nothing happens before iteration');
  // Written after list() was called but before iterating: a lazy listing sees it.
  await storage.commit(await storage.stage('d.tar.gz', body('d')), {}, {});
  const seen: string[] = [];
  for await (const item of iterable) {
    seen.push(item.key);
    if (seen.length === 2) break;
  }
  t.same(seen, ['a.tar.gz', 'b.tar.gz']);
  t.equal(await requests(metrics, 'list', 'ok'), 1, 'an iteration stopped early counts once');

  const all: string[] = [];
  for await (const item of storage.list('', { startAfter: 'b.tar.gz' })) all.push(item.key);
  t.same(all, ['c.tar.gz', 'd.tar.gz'], 'options pass through; the lazy listing saw d');
  t.equal(await requests(metrics, 'list', 'ok'), 2);

  const failing = instrument(
    {
      ...storage,
      kind: 'failing',
      capabilities: storage.capabilities,
      // biome-ignore lint/correctness/useYield: a listing that fails before its first entry
      list: async function* () {
        throw new Error('boom');
      },
    } as Storage,
    metrics,
  );
  await t.rejects(async () => {
    for await (const _ of failing.list('')) void _;
  }, /boom/);
  t.equal(await requests(metrics, 'list', 'error'), 1);
  t.equal(await timings(metrics, 'list'), 3);
});

t.test('each app has its own registry', async (t) => {
  const a = createMetrics();
  const b = createMetrics();
  a.cacheHits.inc();
  t.equal(await sample(a, 'model_registry_cache_hits_total'), 1);
  t.equal(await sample(b, 'model_registry_cache_hits_total'), 0);
});

t.test('GET /metrics serves process, storage, cache and HTTP series for every route', async (t) => {
  const metrics = createMetrics();
  const app = Fastify({ logger: false });
  await app.register(metricsRoutes, { metrics });
  // Registered in its own encapsulated context: the hook must still see it.
  await app.register(async (child) => {
    child.get('/things/:id', async (request) => ({ id: (request.params as { id: string }).id }));
    child.put('/things/:id', async (_request, reply) => reply.code(204).send());
  });
  const url = await listening(t, app);

  const before = await fetch(`${url}/metrics`);
  t.equal(before.status, 200);
  t.equal(before.headers.get('content-type'), metrics.registry.contentType);
  const initial = await before.text();
  for (const name of [
    'model_registry_storage_requests_total',
    'model_registry_storage_request_duration_seconds',
    'model_registry_cache_hits_total',
    'model_registry_cache_misses_total',
    'model_registry_cache_evictions_total',
    'model_registry_cache_bytes',
    'model_registry_cache_memory_bytes',
    'model_registry_http_bytes_total',
  ]) {
    t.match(
      initial,
      new RegExp(`^${name}(_bucket|_count|_sum)?(\\{[^}]*\\})? 0$`, 'm'),
      `${name} is exported at zero before any traffic`,
    );
  }
  t.match(initial, /^model_registry_storage_requests_total\{operation="copy",outcome="precondition_failed"\} 0$/m);
  t.match(initial, /^model_registry_http_bytes_total\{direction="in"\} 0$/m);
  t.match(initial, /^process_cpu_user_seconds_total \d/m, 'Node process metrics');
  t.match(initial, /^nodejs_eventloop_lag_seconds /m);

  const res = await fetch(`${url}/things/42`);
  t.same(await res.json(), { id: '42' });
  const sent = Number(res.headers.get('content-length'));
  t.ok(sent > 0);
  t.equal((await fetch(`${url}/things/43`, { method: 'PUT', body: 'x'.repeat(1000) })).status, 204);
  const head = await fetch(`${url}/things/44`, { method: 'HEAD' });
  t.equal(head.status, 200);
  const missing = await fetch(`${url}/no/such/route?token=secret`);
  t.equal(missing.status, 404);
  await missing.arrayBuffer();

  const scrape = await fetch(`${url}/metrics`);
  const text = await scrape.text();
  t.match(
    text,
    /^http_request_duration_seconds_bucket\{le="[^"]+",method="GET",route="\/things\/:id",status_code="200"\} 1$/m,
  );
  t.match(text, /^http_request_duration_seconds_count\{method="GET",route="\/things\/:id",status_code="200"\} 1$/m);
  t.match(text, /^http_request_duration_seconds_count\{method="PUT",route="\/things\/:id",status_code="204"\} 1$/m);
  t.match(text, /^http_request_duration_seconds_count\{method="HEAD",route="\/things\/:id",status_code="200"\} 1$/m);
  t.match(text, /^http_request_duration_seconds_count\{method="GET",route="unmatched",status_code="404"\} 1$/m);
  t.match(
    text,
    /^http_request_duration_seconds_count\{method="GET",route="\/metrics",status_code="200"\} 1$/m,
    'the first scrape',
  );
  t.notMatch(text, /\/things\/4\d|no\/such|secret/, 'no raw URLs in labels');
  t.match(text, /^process_cpu_user_seconds_total /m);

  t.equal(
    await sample(metrics, 'model_registry_http_bytes_total', { direction: 'in' }),
    1000,
    'request bodies by Content-Length',
  );
  // Out: the JSON of GET /things/42, the 404 error body and both scrapes; not the HEAD.
  const lengthOf = (r: Response) => Number(r.headers.get('content-length'));
  t.ok(lengthOf(head) > 0, 'HEAD announces a length that it does not send');
  t.equal(
    await sample(metrics, 'model_registry_http_bytes_total', { direction: 'out' }),
    sent + lengthOf(before) + lengthOf(missing) + lengthOf(scrape),
    'response bodies by Content-Length',
  );
});

t.test('responses that never complete are counted as aborted (onResponse never sees them)', async (t) => {
  const metrics = createMetrics();
  const app = Fastify({ logger: false });
  await app.register(metricsRoutes, { metrics });
  // A download that sends its first bytes, then nothing: the client gives up.
  app.get('/slow/:id', async (_request, reply) => {
    const body = new Readable({ read() {} });
    body.push(Buffer.alloc(65536));
    return reply.header('content-length', String(10 * 65536)).send(body);
  });
  const url = await listening(t, app);
  const controller = new AbortController();
  const res = await fetch(`${url}/slow/1`, { signal: controller.signal });
  await res.body!.getReader().read();
  controller.abort();
  const deadline = Date.now() + 3000;
  while (
    Date.now() < deadline &&
    (await sample(metrics, 'model_registry_http_requests_aborted_total', { method: 'GET', route: '/slow/:id' })) !== 1
  ) {
    await new Promise((r) => setTimeout(r, 20));
  }
  t.equal(
    await sample(metrics, 'model_registry_http_requests_aborted_total', { method: 'GET', route: '/slow/:id' }),
    1,
  );
  t.notMatch(
    await metrics.registry.metrics(),
    /http_request_duration_seconds_count\{method="GET",route="\/slow\/:id"/,
    'not in the duration histogram',
  );
});
