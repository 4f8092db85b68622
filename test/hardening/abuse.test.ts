/**
 * SPEC §1–§2 against abusive requests, sent byte for byte on raw sockets (fetch would normalise
 * '..', encode spaces and refuse NULs): hostile names in every route, malformed conditional,
 * digest, label, range, length and content-type headers, hostile queries and file paths.
 * Every answer is a 4xx (JSON where the app answers), never a 5xx or a dropped connection, and
 * the storage is byte-for-byte what it was before.
 */
import t, { type Test } from 'tap';
import { model, tgz } from '../helpers/archives.js';
import { sha256 } from '../helpers/assert.js';
import { head, type RawResponse, rawRequest } from '../helpers/hostile.js';
import { bytes, put, type Running, start } from '../helpers/server.js';

const r = await start(t, { MAX_MODEL_BYTES: '1MiB' });
const archive = tgz([
  { path: 'model/', type: 'Directory' },
  { path: 'model/weights.bin', body: 'weights' },
  { path: 'model/latest', type: 'SymbolicLink', linkpath: 'weights.bin' },
]);
// No assertion before the first t.test: the root test would end early.
if ((await put(`${r.url}/models/m`, archive)).status !== 201) throw new Error('could not upload the fixture model');
const etag = `"sha256:${sha256(archive)}"`;
const body = model('new', 1000);

async function keys(r: Running): Promise<string[]> {
  const out: string[] = [];
  for (const prefix of ['', '.history/', '.uploads/'])
    for await (const info of r.app.registry.storage.list(prefix)) out.push(`${info.key} ${info.token}`);
  return out.sort();
}
const before = await keys(r);

let counted = 0;
/** A 4xx from a live server; a JSON {error, message} whenever the app (not Node's parser) answered. */
function is4xx(t: Test, res: RawResponse, what: string, status?: number | number[]): void {
  counted++;
  t.notOk(res.dropped, `${what}: answered, not dropped`);
  if (status !== undefined) t.ok([status].flat().includes(res.status), `${what}: ${res.status}, expected ${status}`);
  else t.ok(res.status >= 400 && res.status < 500, `${what}: ${res.status} is a 4xx`);
  if (/json/.test(res.headers['content-type'] ?? '') && res.body !== '') {
    const parsed = JSON.parse(res.body) as { error?: unknown; message?: unknown };
    t.ok(typeof parsed.error === 'string' && typeof parsed.message === 'string', `${what}: JSON error shape`);
    // Ours, also for what the router and the HTTP parser refuse: a CODE, not Fastify's "Bad Request".
    t.match(parsed.error, /^[A-Z][A-Z_]+$/, `${what}: error code ${String(parsed.error)}`);
  }
  t.notMatch(res.body, /root:|INTERNAL|stack|at .*\.ts:/, `${what}: no leak`);
}

/** One raw request; `target` goes on the request line byte for byte. */
const send = (
  method: string,
  target: string | Buffer,
  headers: Record<string, string | number> = {},
  payload?: Buffer,
) => {
  const rest = head('X', '/', headers);
  const h = Buffer.concat([
    Buffer.from(`${method} `),
    Buffer.from(target),
    Buffer.from(rest.slice(rest.indexOf(' HTTP/1.1'))),
  ]);
  return rawRequest(r.url, h, payload);
};

/** Raw request-target segments standing for hostile model names. */
const NAMES: (string | Buffer)[] = [
  '..',
  '.',
  '%2e%2e',
  '%2E%2E',
  '.%2e',
  '%2e.',
  'a%2F%2Fb',
  'a%2f.x',
  'a/b/c/d/e',
  '..%2F..%2Fetc%2Fpasswd',
  '%2F',
  '%2F%2F',
  'a%5Cb',
  '..%5C..%5Cx',
  '%00',
  'a%00b',
  'a%00.tar.gz',
  '%2500',
  'm%00',
  'm.tar.gz',
  'x.tar.gz',
  'a.tar.gz.tar.gz',
  '.tar.gz',
  '-x',
  '_x',
  '.hidden',
  '~x',
  'x'.repeat(129),
  'x'.repeat(511),
  'x'.repeat(600),
  'x'.repeat(4000),
  '%C3%A9',
  'caf%C3%A9',
  '%FF',
  '%',
  '%zz',
  '%E2%80%AE',
  '%F0%9F%A4%96',
  '%EF%BD%8D',
  'a%20b',
  'a+b',
  'a;b',
  'a,b',
  "a'b",
  'a"b',
  '%3Cscript%3E',
  Buffer.from('café', 'utf8'),
  Buffer.from([0x6d, 0xff, 0xfe]),
];
const label = (n: string | Buffer) =>
  JSON.stringify(
    typeof n === 'string' ? (n.length > 40 ? `${n.slice(0, 20)}…(${n.length})` : n) : `bytes:${n.toString('hex')}`,
  );
const pathOf = (n: string | Buffer, suffix = '') =>
  typeof n === 'string' ? `/models/${n}${suffix}` : Buffer.concat([Buffer.from('/models/'), n, Buffer.from(suffix)]);

t.test('hostile names on every model route', async (t) => {
  for (const name of NAMES) {
    const routes: [string, string][] = [
      ['GET', ''],
      ['HEAD', ''],
      ['DELETE', ''],
      ['GET', '/meta'],
      ['GET', '/versions'],
      ['GET', '/files'],
      ['GET', '/files/model/weights.bin'],
    ];
    for (const [method, suffix] of routes)
      is4xx(t, await send(method, pathOf(name, suffix)), `${method} ${label(name)}${suffix}`);
    is4xx(
      t,
      await send('PUT', pathOf(name), { 'content-type': 'application/gzip', 'content-length': body.length }, body),
      `PUT ${label(name)}`,
    );
    is4xx(
      t,
      await send(
        'POST',
        pathOf(name, '/rollback'),
        { 'content-type': 'application/json', 'content-length': 13 },
        Buffer.from('{"version":1}'),
      ),
      `POST ${label(name)}/rollback`,
    );
  }
  // The request-target forms a proxy or a confused client sends.
  for (const target of [
    '/models/../models/m',
    '/models/./m/..',
    '/models//m',
    '/models/m/./meta/..',
    'http://evil.example/models/x.tar.gz',
    '*',
    '/models/%2e%2e/%2e%2e/etc/passwd',
  ]) {
    const res = await send('PUT', target, { 'content-type': 'application/gzip', 'content-length': body.length }, body);
    is4xx(t, res, `PUT ${target}`);
  }
});

t.test('names at the edge of the rules are accepted exactly as specified', async (t) => {
  const ok = ['M.TAR.GZ', 'a.tar.gzx', 'x'.repeat(128), '0', 'a..b', 'a_b-c.d'];
  for (const name of ok) {
    const res = await send(
      'PUT',
      `/models/${name}`,
      { 'content-type': 'application/gzip', 'content-length': archive.length },
      archive,
    );
    t.equal(res.status, 201, `${label(name)} is a valid name`);
    t.equal((await send('DELETE', `/models/${name}`)).status, 204);
  }
});

t.test('malformed If-Match / If-None-Match', async (t) => {
  const put = (headers: Record<string, string>) =>
    send('PUT', '/models/m', { 'content-type': 'application/gzip', 'content-length': body.length, ...headers }, body);
  const cases: [Record<string, string>, number][] = [
    [{ 'if-match': '"unterminated' }, 400],
    [{ 'if-match': 'unquoted' }, 400],
    [{ 'if-match': 'W/' }, 400],
    [{ 'if-match': ',,,' }, 400],
    [{ 'if-match': '"a" "b"' }, 400],
    [{ 'if-match': `"${'x'.repeat(7000)}"` }, 412],
    [{ 'if-match': '"sp ace"' }, 400],
    [{ 'if-match': '"\\"' }, 412],
    [{ 'if-match': 'W/"x"' }, 412],
    [{ 'if-match': `W/${etag}` }, 412],
    [{ 'if-match': '*, "x"' }, 400],
    [{ 'if-match': `${etag.toUpperCase()}` }, 412],
    [{ 'if-none-match': '"x"' }, 400],
    [{ 'if-none-match': 'garbage' }, 400],
    [{ 'if-none-match': '*' }, 412],
    [{ 'if-none-match': '* ,*' }, 400],
    [{ 'if-match': etag, 'if-none-match': '*' }, 400],
    [{ 'if-match': '\u00e9' }, 400],
  ];
  for (const [headers, status] of cases)
    is4xx(t, await put(headers), `PUT with ${JSON.stringify(headers).slice(0, 80)}`, status);
  for (const value of ['garbage', '"unterminated', 'W/', ',', '"a"b']) {
    is4xx(t, await send('GET', '/models/m', { 'if-none-match': value }), `GET If-None-Match ${value}`, 400);
    is4xx(
      t,
      await send('GET', '/models/m/files/model/weights.bin', { 'if-none-match': value }),
      `GET file If-None-Match ${value}`,
      400,
    );
  }
  is4xx(
    t,
    await send(
      'POST',
      '/models/m/rollback',
      { 'content-type': 'application/json', 'content-length': 13, 'if-match': 'nope' },
      Buffer.from('{"version":1}'),
    ),
    'rollback with a malformed If-Match',
    400,
  );
});

t.test('malformed Content-Digest and X-Checksum-Sha256', async (t) => {
  const put = (headers: Record<string, string>) =>
    send('PUT', '/models/m', { 'content-type': 'application/gzip', 'content-length': body.length, ...headers }, body);
  const b64 = (n: number) => Buffer.alloc(n, 7).toString('base64');
  const cases: [Record<string, string>, number][] = [
    [{ 'content-digest': 'sha-256=::' }, 400],
    [{ 'content-digest': 'sha-256=:!!!!:' }, 400],
    [{ 'content-digest': `sha-256=:${b64(31)}:` }, 400],
    [{ 'content-digest': `sha-256=:${b64(33)}:` }, 400],
    [{ 'content-digest': 'sha-256' }, 400],
    [{ 'content-digest': 'sha-256=' }, 400],
    [{ 'content-digest': `sha-256=:${b64(32)}` }, 400],
    [{ 'content-digest': `=:${b64(32)}:` }, 400],
    [{ 'content-digest': ',' }, 400],
    [{ 'content-digest': `${Array.from({ length: 300 }, () => `md5=:${b64(16)}:`).join(', ')}, sha-256=!` }, 400],
    [{ 'content-digest': `sha-256=:${b64(32)}:` }, 422],
    [
      { 'content-digest': `sha-256=:${Buffer.from(sha256(body), 'hex').toString('base64')}:, sha-256=:${b64(32)}:` },
      422,
    ],
    [{ 'x-checksum-sha256': 'g'.repeat(64) }, 400],
    [{ 'x-checksum-sha256': 'a'.repeat(63) }, 400],
    [{ 'x-checksum-sha256': '' }, 400],
    [{ 'x-checksum-sha256': 'a'.repeat(64) }, 422],
    [{ 'x-checksum-sha256': sha256(body), 'content-digest': `sha-256=:${b64(32)}:` }, 400],
  ];
  for (const [headers, status] of cases)
    is4xx(t, await put(headers), `PUT with ${JSON.stringify(headers).slice(0, 90)}`, status);
});

t.test('oversized and ill-formed labels', async (t) => {
  const put = (headers: Record<string, string>) =>
    send('PUT', '/models/m', { 'content-type': 'application/gzip', 'content-length': body.length, ...headers }, body);
  const many = (n: number, size: number) =>
    Object.fromEntries(Array.from({ length: n }, (_, i) => [`x-model-label-k${i}`, 'v'.repeat(size)]));
  const cases: [Record<string, string>, number | number[]][] = [
    [{ 'x-model-label-': 'empty key' }, 400],
    [{ 'x-model-label-_x': 'v' }, 400],
    [{ 'x-model-label-.x': 'v' }, 400],
    [{ [`x-model-label-${'k'.repeat(64)}`]: 'v' }, 400],
    [{ 'x-model-label-big': 'x'.repeat(2049) }, 400],
    [many(40, 60), 400],
    [many(300, 10), [400, 431]],
    [many(1000, 10), 431],
    [{ 'x-model-label-k': 'x'.repeat(20_000) }, 431],
    [{ 'x-model-label-k\u00e9': 'v' }, 400],
    [{ 'x-model-label-k': 'a\u0001b' }, 400],
    [{ 'x-model-label-k': 'a\u007fb' }, 400],
    [{ 'x-model-label-k': 'a\u0000b' }, 400],
    [{ 'x-model-label-a b': 'v' }, 400],
  ];
  for (const [headers, status] of cases)
    is4xx(t, await put(headers), `labels ${JSON.stringify(headers).slice(0, 70)}`, status);
  // Multipart labels: the same rules.
  const boundary = 'XyZ';
  const form = (fields: [string, string][]) =>
    Buffer.concat([
      ...fields.map(([k, v]) =>
        Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="${k}"\r\n\r\n${v}\r\n`),
      ),
      Buffer.from(
        `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="m.tar.gz"\r\nContent-Type: application/gzip\r\n\r\n`,
      ),
      body,
      Buffer.from(`\r\n--${boundary}--\r\n`),
    ]);
  const mp = (fields: [string, string][]) => {
    const payload = form(fields);
    return send(
      'PUT',
      '/models/m',
      { 'content-type': `multipart/form-data; boundary=${boundary}`, 'content-length': payload.length },
      payload,
    );
  };
  is4xx(t, await mp([['label.Bad Key', 'v']]), 'multipart label with a bad key', 400);
  is4xx(t, await mp([['label.k', 'x'.repeat(3000)]]), 'multipart label beyond fieldSize', 400);
  is4xx(
    t,
    await mp(Array.from({ length: 70 }, (_, i) => [`label.k${i}`, 'v'] as [string, string])),
    'multipart with too many fields',
    400,
  );
  is4xx(t, await mp([['label.k', 'a\u0001b']]), 'multipart label with a control character', 400);
});

t.test('bad Range and If-Range never break a download', async (t) => {
  const size = archive.length;
  const ranges: [string, number, Buffer | undefined][] = [
    ['bytes=abc', 200, archive],
    ['bytes=5-1', 200, archive],
    ['items=0-1', 200, archive],
    ['bytes=0-1,3-4', 200, archive],
    ['bytes= 0-1', 200, archive],
    ['bytes=-', 200, archive],
    ['bytes=--1', 200, archive],
    ['bytes=1-2-3', 200, archive],
    [`bytes=${'9'.repeat(4000)}-`, 416, undefined],
    ['bytes=99999999999999999999-', 416, undefined],
    ['bytes=-0', 416, undefined],
    [`bytes=${size}-${size + 10}`, 416, undefined],
    ['bytes=0-99999999999999999999', 206, archive],
    ['bytes=-99999999999999999999', 206, archive],
    ['bytes=0-0', 206, archive.subarray(0, 1)],
    [`bytes=${size - 1}-`, 206, archive.subarray(size - 1)],
    ['bytes=1e3-', 200, archive],
    ['bytes=0x10-', 200, archive],
    ['bytes=-1.5', 200, archive],
  ];
  for (const [range, status, expected] of ranges) {
    for (const method of ['GET', 'HEAD']) {
      const res = await send(method, '/models/m', { range });
      counted++;
      t.equal(res.status, status, `${method} Range: ${range.slice(0, 40)} → ${status}`);
      if (status === 416) is4xx(t, res, `Range ${range.slice(0, 40)}`, 416);
      if (expected)
        t.equal(
          res.headers['content-length'],
          String(expected.length),
          `${method} Range: ${range.slice(0, 40)} → ${expected.length} bytes`,
        );
    }
  }
  // Byte-exact checks over fetch, which handles binary bodies.
  const partial = await fetch(`${r.url}/models/m`, { headers: { range: 'bytes=0-99999999999999999999' } });
  t.equal(partial.status, 206);
  t.ok((await bytes(partial)).equals(archive), 'an end beyond the size is clamped');
  for (const ifRange of ['garbage', '"sha256:x"', `W/${etag}`, 'Thu, 01 Jan 1970 00:00:00 GMT', '\u00e9']) {
    const res = await send('GET', '/models/m', { range: 'bytes=0-0', 'if-range': ifRange });
    counted++;
    t.equal(res.status, 200, `If-Range ${ifRange} that does not match → the whole archive`);
  }
  for (const range of ['bytes=abc', 'bytes=99999999999999999999-', 'bytes=-0']) {
    const res = await send('GET', '/models/m/files/model/weights.bin', { range });
    counted++;
    t.ok(res.status === 200 || res.status === 416, `file Range ${range} → ${res.status}`);
  }
});

t.test('hostile file paths inside an archive', async (t) => {
  const targets = [
    '/models/m/files/../../../../etc/passwd',
    '/models/m/files/%2e%2e/%2e%2e/%2e%2e/etc/passwd',
    '/models/m/files/model/../../../../etc/passwd',
    '/models/m/files//etc/passwd',
    '/models/m/files/model%2F..%2F..%2F..%2Fetc%2Fpasswd',
    '/models/m/files/model/latest/..',
    '/models/m/files/model/weights.bin%00.txt',
    '/models/m/files/%00',
    '/models/m/files/model',
    '/models/m/files/',
    '/models/m/files/.',
    '/models/m/files/model/%FF',
    `/models/m/files/${'a/'.repeat(2000)}`,
    '/models/m/files/model\\..\\..\\etc\\passwd',
    '/models/m/files/C:%5Cwindows',
  ];
  for (const target of targets) {
    const res = await send('GET', target);
    is4xx(t, res, `GET ${target.slice(0, 60)}`);
  }
  const link = await fetch(`${r.url}/models/m/files/model/latest`);
  t.equal(await link.text(), 'weights', 'a symlink inside the archive still resolves');
});

t.test('hostile queries', async (t) => {
  const targets: [string, number | number[]][] = [
    ['/models/m?version=0', 400],
    ['/models/m?version=-1', 400],
    ['/models/m?version=1e3', 400],
    ['/models/m?version=99999999999999999', 400],
    ['/models/m?version=1&version=2', 400],
    ['/models/m?version[]=1', [200, 400]],
    ['/models/m?version=%00', 400],
    ['/models/m?version=', 400],
    ['/models/m?version=2', 404],
    ['/models/m?wait=301', 400],
    ['/models/m?wait=-1', 400],
    ['/models/m?wait=1.5', 400],
    ['/models/m?wait=abc', 400],
    ['/models?limit=abc', 400],
    ['/models?limit=1e3', 400],
    ['/models?limit=0', 400],
    ['/models?limit=-5', 400],
    ['/models?prefix=../', 400],
    ['/models?prefix=%00', 400],
    [`/models?prefix=${'a'.repeat(129)}`, 400],
    ['/models?cursor=%FF%FE', 400],
    ['/models?cursor=Li4v', 400],
    ['/models?limit=1&limit=2', 400],
    ['/models/m/meta?version=abc', 400],
    ['/models/m/files?version=0', 400],
    ['/models/m?%zz=1', [200, 400]],
  ];
  for (const [target, status] of targets) {
    const res = await send('GET', target);
    counted++;
    t.ok([status].flat().includes(res.status), `GET ${target.slice(0, 60)} → ${res.status}`);
    t.ok(res.status < 500);
  }
  is4xx(t, await send('DELETE', '/models/m?version=abc'), 'DELETE ?version=abc', 400);
});

t.test('broken framing, lengths, methods and content types', async (t) => {
  const raw = (text: string, payload?: Buffer) => rawRequest(r.url, text, payload);
  const cases: [string, string, Buffer?][] = [
    ['negative Content-Length', 'PUT /models/m HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n'],
    ['non-numeric Content-Length', 'PUT /models/m HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n'],
    [
      'conflicting Content-Lengths',
      'PUT /models/m HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n',
      Buffer.from('12345'),
    ],
    [
      'Content-Length with Transfer-Encoding',
      'PUT /models/m HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n',
      Buffer.from('0\r\n\r\n'),
    ],
    [
      'huge Content-Length',
      'PUT /models/m HTTP/1.1\r\nHost: x\r\nContent-Type: application/gzip\r\nContent-Length: 99999999999999999999\r\nConnection: close\r\n\r\n',
    ],
    [
      'bad chunk size',
      'PUT /models/m HTTP/1.1\r\nHost: x\r\nContent-Type: application/gzip\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n',
    ],
    ['header without a colon', 'GET /models/m HTTP/1.1\r\nHost: x\r\nbroken header\r\n\r\n'],
    ['NUL in a header value', 'GET /models/m HTTP/1.1\r\nHost: x\r\nIf-None-Match: "a\0b"\r\n\r\n'],
    ['space before the colon', 'GET /models/m HTTP/1.1\r\nHost: x\r\nRange : bytes=0-1\r\n\r\n'],
    ['obsolete line folding', 'GET /models/m HTTP/1.1\r\nHost: x\r\nIf-None-Match: "a",\r\n "b"\r\n\r\n'],
    ['HTTP/9.9', 'GET /models/m HTTP/9.9\r\nHost: x\r\n\r\n'],
    ['lower-case method', 'get /models/m HTTP/1.1\r\nHost: x\r\n\r\n'],
    ['unknown method', 'BREW /models/m HTTP/1.1\r\nHost: x\r\n\r\n'],
    ['headers beyond 16 KiB', `GET /models/m HTTP/1.1\r\nHost: x\r\nX-Pad: ${'p'.repeat(20_000)}\r\n\r\n`],
    ['request line beyond 16 KiB', `GET /models/${'m'.repeat(20_000)} HTTP/1.1\r\nHost: x\r\n\r\n`],
  ];
  for (const [what, text, payload] of cases) is4xx(t, await raw(text, payload), what);
  for (const method of ['PATCH', 'OPTIONS', 'TRACE', 'PROPFIND', 'MKCOL'])
    is4xx(t, await send(method, '/models/m'), `${method} /models/m`);
  const types = [
    'application/json',
    'text/plain',
    '\u00e9/\u00e9',
    ';',
    'application/x-www-form-urlencoded',
    'application/gzip2',
    'multipart/mixed; boundary=x',
  ];
  for (const type of types) {
    const res = await send('PUT', '/models/m', { 'content-type': type, 'content-length': body.length }, body);
    is4xx(t, res, `PUT Content-Type ${type}`);
  }
  const garbage = Buffer.from('--XyZ\r\nno headers here\r\n--XyZ--');
  is4xx(
    t,
    await send(
      'PUT',
      '/models/m',
      { 'content-type': 'multipart/form-data; boundary=XyZ', 'content-length': garbage.length },
      garbage,
    ),
    'garbage multipart body',
  );
  const answered4xx = (res: RawResponse | undefined, status: number) =>
    !!res && !res.dropped && res.status === status && /json/.test(res.headers['content-type'] ?? '');
  for (const type of [
    'multipart/form-data',
    'multipart/form-data; boundary=',
    'multipart/form-data; charset=utf-8',
    `multipart/form-data; boundary=${'b'.repeat(300)}`,
  ]) {
    const res = await send('PUT', '/models/nb', { 'content-type': type, 'content-length': body.length }, body);
    t.ok(answered4xx(res, 400), `PUT Content-Type ${type.slice(0, 50)} → 400 JSON`);
  }
  const cut = Buffer.concat([
    Buffer.from('--XyZ\r\nContent-Disposition: form-data; name="file"; filename="m.tar.gz"\r\n\r\n'),
    body.subarray(0, 500),
  ]);
  for (const payload of [body, Buffer.from('not multipart at all'), cut, Buffer.from('--XyZ\r\n')]) {
    const res = await send(
      'PUT',
      '/models/nb',
      { 'content-type': 'multipart/form-data; boundary=XyZ', 'content-length': payload.length },
      payload,
    );
    t.ok(
      answered4xx(res, 400),
      `multipart body ${JSON.stringify(payload.subarray(0, 12).toString('latin1'))}… → 400 JSON (got ${res.status})`,
    );
  }
  t.equal((await fetch(`${r.url}/models/nb`)).status, 404, 'no malformed multipart body was stored');
  for (const [method, headers] of [
    ['PUT', { 'content-length': 0 }],
    ['PUT', {}],
    ['POST', { 'content-length': 0 }],
  ] as const) {
    const res = await rawRequest(r.url, head(method, '/models/nobody', headers), undefined, 3000).catch(
      () => undefined,
    );
    t.ok(answered4xx(res, 422), `${method} without Content-Type or body ${JSON.stringify(headers)} → 422 JSON`);
  }
  t.equal((await fetch(`${r.url}/models/nobody`)).status, 404, 'an upload without a body stores nothing');
  const twoFiles = Buffer.concat(
    ['a', 'b']
      .map((n) =>
        Buffer.concat([
          Buffer.from(`--XyZ\r\nContent-Disposition: form-data; name="${n}"; filename="${n}.tar.gz"\r\n\r\n`),
          body,
          Buffer.from('\r\n'),
        ]),
      )
      .concat(Buffer.from('--XyZ--\r\n')),
  );
  const two = await send(
    'PUT',
    '/models/two',
    { 'content-type': 'multipart/form-data; boundary=XyZ', 'content-length': twoFiles.length },
    twoFiles,
  );
  t.ok(two.status < 500, `multipart with two files answered ${two.status}`);
  t.ok(answered4xx(two, 400), 'multipart with two files → 400 MULTIPART_TOO_MANY_FILES');
  t.equal((await fetch(`${r.url}/models/two`)).status, 404, 'nothing stored from a two-file upload');
  // curl -F file=@m.tar.gz -F label.team=nlp puts the label after the file: it must not be lost.
  const late = Buffer.concat([
    Buffer.from('--XyZ\r\nContent-Disposition: form-data; name="file"; filename="m.tar.gz"\r\n\r\n'),
    body,
    Buffer.from('\r\n--XyZ\r\nContent-Disposition: form-data; name="label.team"\r\n\r\nnlp\r\n--XyZ--\r\n'),
  ]);
  const lateRes = await send(
    'PUT',
    '/models/late',
    { 'content-type': 'multipart/form-data; boundary=XyZ', 'content-length': late.length },
    late,
  );
  t.equal(lateRes.status, 201, 'a label after the file part: upload accepted');
  t.match(JSON.parse(lateRes.body || '{}'), { labels: { team: 'nlp' } }, 'and the label is kept');
  const lateBad = Buffer.concat([
    Buffer.from('--XyZ\r\nContent-Disposition: form-data; name="file"; filename="m.tar.gz"\r\n\r\n'),
    body,
    Buffer.from('\r\n--XyZ\r\nContent-Disposition: form-data; name="label.Bad Key"\r\n\r\nx\r\n--XyZ--\r\n'),
  ]);
  const lateBadRes = await send(
    'PUT',
    '/models/late',
    { 'content-type': 'multipart/form-data; boundary=XyZ', 'content-length': lateBad.length },
    lateBad,
  );
  t.ok(answered4xx(lateBadRes, 400), 'an invalid label after the file part is refused too');
  for (const json of [
    '{',
    '[]',
    '{"version":"1; DROP"}',
    '{"version":1e400}',
    '{"version":-1}',
    '{"__proto__":{"version":1}}',
    'null',
    '"x"',
    JSON.stringify({ version: 'x'.repeat(60_000) }),
    'x'.repeat(70_000),
  ]) {
    const payload = Buffer.from(json);
    is4xx(
      t,
      await send(
        'POST',
        '/models/m/rollback',
        { 'content-type': 'application/json', 'content-length': payload.length },
        payload,
      ),
      `rollback body ${json.slice(0, 30)}`,
    );
  }
});

t.test('after all that, the storage is exactly as before and the server is healthy', async (t) => {
  // `late` was a legitimate upload (a label after the file part); everything else is refused.
  const mine = (ks: string[]) => ks.filter((k) => !/^(?:\.history\/)?late(\.tar\.gz|\/)/.test(k));
  t.same(mine(await keys(r)), before, 'no key added, removed or rewritten');
  const res = await fetch(`${r.url}/models/m`);
  t.equal(res.headers.get('etag'), etag);
  t.ok((await bytes(res)).equals(archive), 'the model is intact');
  t.equal((await fetch(`${r.url}/healthz`)).status, 200);
  t.ok(counted > 500, `${counted} abusive requests answered`);
});
