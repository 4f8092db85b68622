/** GET /docs: Swagger UI over openapi.yaml, next to /openapi.yaml itself. */
import { readFile } from 'node:fs/promises';
import t from 'tap';
import { parse } from 'yaml';
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
