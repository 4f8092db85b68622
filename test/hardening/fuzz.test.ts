/**
 * Fuzzing of the HTTP surface with fast-check, for a fixed budget (25 s, fixed seed — replay
 * with HARDENING_FUZZ_SEED): random methods, paths under /models (hostile names, encodings,
 * sub-routes), queries, headers (If-Match, If-None-Match, Range, If-Range, Content-Digest,
 * X-Checksum-Sha256, labels, content types) and bodies (random bytes, truncated and bit-flipped
 * archives, valid archives, JSON), sent raw. Every answer is < 500 with the JSON error shape,
 * the process survives with no unhandled rejection, and the storage stays consistent.
 */
import fc from 'fast-check';
import t from 'tap';
import { model, tar } from '../helpers/archives.js';
import { sha256 } from '../helpers/assert.js';
import { eventually, rawRequest } from '../helpers/hostile.js';
import { bytes, put, start } from '../helpers/server.js';

const SEED = Number(process.env.HARDENING_FUZZ_SEED ?? 424242);
const BUDGET_MS = Number(process.env.HARDENING_FUZZ_MS ?? 25_000);

const unhandled: unknown[] = [];
const onUnhandled = (reason: unknown) => unhandled.push(reason);
process.on('unhandledRejection', onUnhandled);
t.teardown(() => void process.off('unhandledRejection', onUnhandled));

t.test(`fuzzing the HTTP surface for ${BUDGET_MS / 1000} s (seed ${SEED})`, async (t) => {
  const r = await start(t, { MAX_MODEL_BYTES: '256KiB', MAX_ARCHIVE_ENTRIES: '50', MAX_EXTRACTED_BYTES: '1MiB' });
  const good = model('fuzz', 2000);
  t.equal((await put(`${r.url}/models/m`, good)).status, 201);
  const etag = `"sha256:${sha256(good)}"`;

  // Header values: anything printable, plus the bytes a parser chokes on — but no CR/LF, which
  // would change the framing of the request itself rather than a header's value.
  const headerText = fc
    .oneof(
      fc.string({ maxLength: 80 }),
      fc.string({ unit: 'grapheme', maxLength: 20 }),
      fc.string({
        unit: fc.constantFrom(
          '"',
          ',',
          '*',
          ' ',
          'W',
          '/',
          ':',
          '=',
          '-',
          'a',
          '0',
          '\t',
          '\u0000',
          '\u007f',
          '\u00ff',
        ),
        maxLength: 30,
      }),
    )
    .map((s) => s.replace(/[\r\n]/g, ''));
  const b64 = fc.uint8Array({ minLength: 0, maxLength: 40 }).map((a) => Buffer.from(a).toString('base64'));
  const names = fc.oneof(
    fc.constantFrom(
      'm',
      'fuzz',
      'x',
      '..',
      '.',
      'm.tar.gz',
      'a%2Fb',
      '%2e%2e',
      '%00',
      '%FF',
      '%',
      'caf%C3%A9',
      '-x',
      '.x',
      'x'.repeat(128),
      'x'.repeat(129),
      'x'.repeat(600),
    ),
    fc.stringMatching(/^[A-Za-z0-9._~-]{0,140}$/),
    fc.string({ unit: 'grapheme', maxLength: 12 }).map(encodeURIComponent),
    fc.string({ unit: fc.constantFrom('a', '.', '/', '%', '2', 'F', 'e', '0', '\\', ';', '?', '#'), maxLength: 12 }),
  );
  const suffix = fc.oneof(
    fc.constantFrom(
      '',
      '/meta',
      '/versions',
      '/files',
      '/files/model/weights.bin',
      '/files/model/latest',
      '/rollback',
      '/x',
      '/',
      '/files/',
    ),
    fc.string({ unit: fc.constantFrom('a', '.', '/', '%', '2', 'e', '0'), maxLength: 16 }).map((s) => `/files/${s}`),
  );
  const queryValue = fc.oneof(
    fc.constantFrom('1', '0', '-1', '2', '99999999999999999999', '1e3', 'abc', '', '%00', '%FF', 'a/b', '..'),
    fc.stringMatching(/^[A-Za-z0-9%._-]{0,20}$/),
  );
  const query = fc.option(
    fc
      .array(fc.tuple(fc.constantFrom('version', 'prefix', 'limit', 'cursor', 'x', 'version[]', 'wait'), queryValue), {
        maxLength: 3,
      })
      // ?wait with a matching If-None-Match holds the request for that long: only 0 or invalid values.
      .map((pairs) =>
        pairs
          .map(([k, v]) => (k === 'wait' && /^\d+$/.test(v) ? [k, '0'] : [k, v]))
          .map(([k, v]) => `${k}=${v}`)
          .join('&'),
      ),
    { nil: undefined },
  );
  const path = fc.oneof(
    {
      weight: 8,
      arbitrary: fc.tuple(names, suffix, query).map(([n, s, q]) => `/models/${n}${s}${q === undefined ? '' : `?${q}`}`),
    },
    { weight: 1, arbitrary: query.map((q) => `/models${q === undefined ? '' : `?${q}`}`) },
  );
  // Mostly well-formed values (so requests reach the handlers), sometimes garbage.
  const valid = <T>(good: fc.Arbitrary<T>, bad: fc.Arbitrary<T>) =>
    fc.oneof({ weight: 3, arbitrary: good }, { weight: 1, arbitrary: bad });
  const header = fc.oneof(
    valid(fc.constantFrom(etag, '*', `W/${etag}`, '"sha256:other"', `${etag}, "x"`), headerText).map(
      (v) => ['If-Match', v] as const,
    ),
    valid(fc.constantFrom(etag, '*', '"sha256:other"', `W/${etag}`), headerText).map(
      (v) => ['If-None-Match', v] as const,
    ),
    valid(
      fc.oneof(
        fc.tuple(fc.nat(5000), fc.nat(5000)).map(([a, b]) => `bytes=${a}-${b}`),
        fc.nat(5000).map((n) => `bytes=-${n}`),
        fc.nat(5000).map((n) => `bytes=${n}-`),
      ),
      headerText,
    ).map((v) => ['Range', v] as const),
    valid(
      fc.oneof(
        fc.constant(etag),
        fc.date({ noInvalidDate: true, min: new Date(0), max: new Date(4e12) }).map((d) => d.toUTCString()),
      ),
      headerText,
    ).map((v) => ['If-Range', v] as const),
    valid(
      fc.oneof(
        b64.map((v) => `sha-256=:${v}:`),
        fc.constant(`sha-256=:${Buffer.from(sha256(good), 'hex').toString('base64')}:`),
        fc.tuple(fc.constantFrom('sha-512', 'md5'), b64).map(([a, v]) => `${a}=:${v}:`),
      ),
      headerText,
    ).map((v) => ['Content-Digest', v] as const),
    valid(fc.oneof(fc.constant(sha256(good)), fc.stringMatching(/^[0-9a-f]{64}$/)), headerText).map(
      (v) => ['X-Checksum-Sha256', v] as const,
    ),
    valid(
      fc.tuple(fc.stringMatching(/^[a-z0-9][a-z0-9_.-]{0,10}$/), fc.stringMatching(/^[ -~]{0,40}$/)),
      fc.tuple(fc.stringMatching(/^[a-zA-Z0-9_.-]{0,70}$/), headerText),
    ).map(([k, v]) => [`X-Model-Label-${k}`, v] as const),
  );
  const contentType = valid(
    fc.constantFrom(
      'application/gzip',
      'application/gzip',
      'application/x-gzip',
      'application/octet-stream',
      'application/x-tar',
      'application/json',
      'multipart/form-data; boundary=B',
    ),
    fc.oneof(headerText, fc.constantFrom('text/plain', 'multipart/form-data', 'application/x-www-form-urlencoded')),
  );
  const headers = fc.tuple(fc.option(contentType, { nil: undefined }), fc.array(header, { maxLength: 3 }));
  const goodTar = tar([{ path: 'w.bin', body: 'weights' }]);
  const body = fc.oneof(
    fc.constant(Buffer.alloc(0)),
    fc.uint8Array({ maxLength: 4096 }).map((a) => Buffer.from(a)),
    fc.nat(good.length).map((n) => good.subarray(0, n)),
    fc.tuple(fc.nat(good.length - 1), fc.integer({ min: 1, max: 255 })).map(([i, x]) => {
      const b = Buffer.from(good);
      b[i] = b[i]! ^ x;
      return b;
    }),
    fc.constant(good),
    fc.constant(goodTar),
    fc.integer({ min: -2, max: 5 }).map((v) => Buffer.from(JSON.stringify({ version: v }))),
    fc.constant(
      Buffer.from(
        '--B\r\nContent-Disposition: form-data; name="file"; filename="m.tar.gz"\r\n\r\n' +
          'x'.repeat(100) +
          '\r\n--B--\r\n',
      ),
    ),
  );
  const method = fc.constantFrom('GET', 'GET', 'HEAD', 'PUT', 'PUT', 'POST', 'DELETE', 'PATCH', 'OPTIONS');

  const statuses = new Map<number, number>();
  let knownBug2 = 0;
  let knownBug4 = 0;
  let runs = 0;
  const property = fc.asyncProperty(method, path, headers, body, async (m, target, h, payload) => {
    runs++;
    const [type, extra] = h;
    const lines = [
      `${m} ${target} HTTP/1.1`,
      'Host: 127.0.0.1',
      'Connection: close',
      `Content-Length: ${payload.length}`,
    ];
    if (type !== undefined) lines.push(`Content-Type: ${type}`);
    for (const [k, v] of extra) lines.push(`${k}: ${v}`);
    const head = Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1');
    // Bug 4 of the report: an upload with no Content-Type and no body never gets an answer
    // (and leaks a staged upload). Such requests get a short deadline and are counted.
    const bug4 = (m === 'PUT' || m === 'POST') && type === undefined && payload.length === 0;
    let res: Awaited<ReturnType<typeof rawRequest>>;
    try {
      res = await rawRequest(r.url, head, payload, bug4 ? 2000 : 15_000);
    } catch (err) {
      if (!bug4) throw err;
      knownBug4++;
      return;
    }
    statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
    if (res.dropped) throw new Error('the connection was dropped without an answer');
    // Bug 2 of the report (a malformed multipart body → 500) is counted, not failed, so the
    // fuzzer keeps looking for other 5xx; a todo test below asserts it stops happening.
    if (res.status === 500 && type !== undefined && /^\s*multipart\/form-data/i.test(type)) {
      knownBug2++;
      return;
    }
    if (res.status >= 500) throw new Error(`${res.status}: ${res.body.slice(0, 300)}`);
    if (res.status >= 400 && m !== 'HEAD' && /json/.test(res.headers['content-type'] ?? '')) {
      const parsed = JSON.parse(res.body) as { error?: unknown; message?: unknown };
      if (typeof parsed.error !== 'string' || typeof parsed.message !== 'string' || parsed.message.length < 10) {
        throw new Error(`error without the JSON shape: ${res.body.slice(0, 200)}`);
      }
    }
  });
  const details = await fc.check(property, {
    seed: SEED,
    numRuns: 1_000_000,
    interruptAfterTimeLimit: BUDGET_MS,
    markInterruptAsFailure: false,
  });
  t.notOk(
    details.failed,
    details.failed
      ? `${String(details.errorInstance)} — ${fc.defaultReportMessage(details)?.slice(0, 2000)}`
      : `${details.numRuns} requests, none answered 5xx`,
  );
  t.ok(runs >= 300, `${runs} requests within the budget`);
  t.comment(`statuses: ${JSON.stringify(Object.fromEntries([...statuses].sort((a, b) => a[0] - b[0])))}`);
  t.ok(
    [...statuses.keys()].some((s) => s >= 200 && s < 300),
    'some requests succeeded (the fuzzer reaches real handlers)',
  );
  t.ok([...statuses.keys()].filter((s) => s >= 400).length >= 4, 'and many kinds of client errors were produced');

  t.equal(knownBug2, 0, `a malformed multipart body is a 400, not a 500 (${knownBug2} requests hit bug 2)`);

  t.equal(knownBug4, 0, `an upload without Content-Type and body is answered (${knownBug4} requests hit bug 4)`);

  // Afterwards: alive, consistent, nothing half-written.
  t.equal((await fetch(`${r.url}/healthz`)).status, 200, 'the server is alive');
  // A request whose client gave up may still be removing its staged file: wait for it.
  let staged: string[] = [];
  await eventually(async () => {
    staged = [];
    for await (const info of r.app.registry.storage.list('.uploads/'))
      if (info.key.endsWith('.part')) staged.push(info.key);
    return staged.length <= knownBug4;
  });
  t.ok(
    staged.length <= knownBug4,
    `no staged upload left (${staged.length}), but those leaked by bug 4 (${knownBug4})`,
  );
  const list = (await (await fetch(`${r.url}/models?limit=1000`)).json()) as { models: { name: string }[] };
  for (const { name } of list.models) {
    const res = await fetch(`${r.url}/models/${encodeURIComponent(name)}`);
    const data = await bytes(res);
    t.equal(res.headers.get('etag'), `"sha256:${sha256(data)}"`, `${name} downloads whole`);
  }
});

t.test('no unhandled promise rejection in the process hosting the app', async (t) => {
  await new Promise((resolve) => setTimeout(resolve, 200));
  t.same(unhandled.map(String), [], 'none');
});
