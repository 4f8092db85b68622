/** GET /docs: Swagger UI over openapi.yaml, next to /openapi.yaml itself. */
import { readFile } from 'node:fs/promises';
import t from 'tap';
import { parse } from 'yaml';
import { DOCS_CSP } from '../../src/routes/system.js';
import { start } from '../helpers/server.js';

t.test('/docs serves Swagger UI over openapi.yaml', async (t) => {
  const { url } = await start(t, { AUTH_TOKENS: 'read:docs-read-token-123' });
  const page = await fetch(`${url}/docs`, { redirect: 'follow' });
  t.equal(page.status, 200, 'public, like /openapi.yaml, even when AUTH_TOKENS is set');
  t.match(page.headers.get('content-type'), /^text\/html/);
  const html = await page.text();
  t.match(html, /swagger-ui/i);

  const init = await fetch(`${url}/docs/static/swagger-initializer.js`);
  t.equal(init.status, 200);
  t.match(await init.text(), /json/, 'the UI loads the document from /docs/json');
  const css = await fetch(`${url}/docs/static/swagger-ui.css`);
  t.equal(css.status, 200, 'its assets are served');

  const expected = parse(await readFile('openapi.yaml', 'utf8')) as unknown;
  const json = await fetch(`${url}/docs/json`);
  t.equal(json.status, 200);
  t.same(await json.json(), expected, '/docs/json is openapi.yaml, not a generated document');
  const yaml = await fetch(`${url}/docs/yaml`);
  t.same(parse(await yaml.text()), expected);
  t.equal((await fetch(`${url}/openapi.yaml`)).status, 200, '/openapi.yaml is still served');
});

/** The directives of a CSP header, by name. */
function directives(csp: string): Map<string, string[]> {
  return new Map(
    csp
      .split(';')
      .map((d) => d.trim().split(/\s+/))
      .filter((d) => d[0])
      .map(([name, ...values]) => [name!, values]),
  );
}

t.test('/docs has a strict CSP that its own page and assets pass (no browser: checked on the HTML)', async (t) => {
  const { url } = await start(t);
  const page = await fetch(`${url}/docs/`);
  t.equal(page.status, 200);
  t.match(page.headers.get('content-type'), /^text\/html/);
  const csp = page.headers.get('content-security-policy') ?? '';
  t.equal(csp, DOCS_CSP, 'the page carries the CSP');
  const d = directives(csp);
  t.same(d.get('default-src'), ["'none'"], 'nothing loads unless allowed');
  t.same(d.get('script-src'), ["'self'"], "scripts only from this origin: no 'unsafe-inline', no 'unsafe-eval'");
  t.same(d.get('script-src-attr'), ["'none'"], 'no inline event handlers');
  t.same(d.get('frame-ancestors'), ["'none'"], 'not framed');
  t.same(d.get('connect-src'), ["'self'"], 'fetches only this origin (the document at /docs/json)');
  t.notOk(d.has('upgrade-insecure-requests'), 'no upgrade-insecure-requests: it would break the page on plain HTTP');
  for (const path of [
    '/docs',
    '/docs/',
    '/docs/static/swagger-initializer.js',
    '/docs/static/swagger-ui.css',
    '/docs/json',
  ]) {
    const res = await fetch(`${url}${path}`, { redirect: 'manual' });
    t.equal(res.headers.get('content-security-policy'), DOCS_CSP, `${path}: the CSP`);
    t.equal(res.headers.get('x-content-type-options'), 'nosniff', `${path}: nosniff`);
  }
  t.equal(
    (await fetch(`${url}/openapi.yaml`)).headers.get('content-security-policy'),
    null,
    "the docs' CSP stays on /docs",
  );
  t.equal((await fetch(`${url}/healthz`)).headers.get('content-security-policy'), null);

  // What the page loads, against the policy: every script external and same-origin (a relative
  // URL), no inline script, no event-handler attribute, stylesheets and icons relative too.
  const html = await page.text();
  const scripts = [...html.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/gi)];
  t.ok(scripts.length >= 3, `${scripts.length} scripts`);
  for (const [, attrs, body] of scripts) {
    const src = /\bsrc="([^"]+)"/.exec(attrs!)?.[1];
    t.ok(src && !/^[a-z]+:|^\/\//i.test(src), `script ${src}: same origin`);
    t.equal(body!.trim(), '', `script ${src}: nothing inline`);
    t.equal((await fetch(new URL(src!, `${url}/docs/`))).status, 200, `script ${src}: served`);
  }
  t.notMatch(html, /\son[a-z]+\s*=/i, 'no inline event handlers');
  for (const [, href] of html.matchAll(/<link\b[^>]*\bhref="([^"]+)"/gi)) {
    t.ok(!/^[a-z]+:|^\/\//i.test(href!), `link ${href}: same origin`);
  }
  const init = await (await fetch(`${url}/docs/static/swagger-initializer.js`)).text();
  t.match(init, /"validatorUrl":null/, 'the validator badge (an image from validator.swagger.io) is off');
});
