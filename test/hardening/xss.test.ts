/**
 * Issue 21 §5: stored XSS on the registry's origin. A model's files are anyone's bytes: an
 * .html or .svg out of an archive must never run as this origin. Every /files/* response is
 * sandboxed (Content-Security-Policy: sandbox, nothing may load) and every response of the
 * server carries X-Content-Type-Options: nosniff, errors and framework answers included.
 */
import { connect } from 'node:net';
import t from 'tap';
import { FILES_CSP } from '../../src/routes/models/index.js';
import { tgz } from '../helpers/archives.js';
import { put, start } from '../helpers/server.js';

const EVIL_HTML =
  '<html><body><script>fetch("/models",{headers:{authorization:sessionStorage.token}})</script></body></html>';
const EVIL_SVG =
  '<svg xmlns="http://www.w3.org/2000/svg" onload="alert(document.domain)"><script>alert(1)</script></svg>';

t.test('files out of an archive are served sandboxed, never as the origin', async (t) => {
  const r = await start(t);
  t.equal(
    (
      await put(
        `${r.url}/models/m`,
        tgz([
          { path: 'evil.html', body: EVIL_HTML },
          { path: 'evil.svg', body: EVIL_SVG },
          { path: 'notes.txt', body: 'plain text' },
          { path: 'noext', body: '<script>alert(1)</script>' },
        ]),
      )
    ).status,
    201,
  );
  for (const file of ['evil.html', 'evil.svg', 'notes.txt', 'noext']) {
    for (const method of ['GET', 'HEAD']) {
      const res = await fetch(`${r.url}/models/m/files/${file}`, { method });
      t.equal(res.status, 200, `${method} ${file}`);
      t.equal(res.headers.get('x-content-type-options'), 'nosniff', `${method} ${file}: nosniff`);
      const csp = res.headers.get('content-security-policy') ?? '';
      t.equal(csp, FILES_CSP, `${method} ${file}: the sandbox CSP`);
      t.match(csp, /^sandbox(;|$)/, 'sandbox without allow-scripts or allow-same-origin');
      t.notMatch(csp, /allow-/, 'no sandbox exception');
      t.match(csp, /default-src 'none'/, 'nothing may load');
      t.notMatch(csp, /script-src/, 'no script source at all');
    }
  }
  const ranged = await fetch(`${r.url}/models/m/files/evil.html`, { headers: { range: 'bytes=0-5' } });
  t.equal(ranged.status, 206);
  t.equal(ranged.headers.get('content-security-policy'), FILES_CSP, 'a range too');
  const etag = ranged.headers.get('etag')!;
  const cached = await fetch(`${r.url}/models/m/files/evil.html`, { headers: { 'if-none-match': etag } });
  t.equal(cached.status, 304);
  t.equal(cached.headers.get('content-security-policy'), FILES_CSP, 'a 304 too');
  const text = await fetch(`${r.url}/models/m/files/notes.txt`);
  t.match(text.headers.get('content-type'), /^text\/plain/, 'plain text keeps its type');
  t.equal(text.headers.get('content-disposition'), null, 'and is shown inline, not forced to a download');
  t.equal(await text.text(), 'plain text');
  const missing = await fetch(`${r.url}/models/m/files/nope.html`);
  t.equal(missing.status, 404);
  t.equal(missing.headers.get('content-security-policy'), FILES_CSP, 'a 404 of the files route too');
});

t.test('every response carries X-Content-Type-Options: nosniff', async (t) => {
  const r = await start(t, { AUTH_TOKENS: 'read:read-token-1234' });
  const auth = { authorization: 'Bearer read-token-1234' };
  const cases: [string, RequestInit, number][] = [
    ['/healthz', {}, 200],
    ['/readyz', {}, 200],
    ['/metrics', {}, 200],
    ['/openapi.yaml', {}, 200],
    ['/models', {}, 401],
    ['/models', { headers: auth }, 200],
    ['/models/missing', { headers: auth }, 404],
    ['/models/bad%20name', { headers: auth }, 400],
    ['/models/%E0%A4%A', { headers: auth }, 400],
    ['/nowhere', {}, 404],
    ['/models/m', { method: 'PATCH', headers: auth }, 405],
  ];
  for (const [path, init, status] of cases) {
    const res = await fetch(`${r.url}${path}`, init);
    t.equal(res.status, status, `${init.method ?? 'GET'} ${path}`);
    t.equal(res.headers.get('x-content-type-options'), 'nosniff', `${init.method ?? 'GET'} ${path}: nosniff`);
  }
  // A request the HTTP parser refuses is answered by hand, before Fastify: nosniff there too.
  const raw = await new Promise<string>((resolve, reject) => {
    const port = Number(new URL(r.url).port);
    const socket = connect(port, '127.0.0.1', () => socket.write('GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n'));
    let out = '';
    socket.on('data', (d) => (out += d));
    socket.on('end', () => resolve(out));
    socket.on('error', reject);
  });
  t.match(raw, /^HTTP\/1\.1 400/, 'broken framing is a 400');
  t.match(raw, /\r\nX-Content-Type-Options: nosniff\r\n/i, 'with nosniff');
});
