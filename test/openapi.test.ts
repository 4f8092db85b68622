import { readFile } from 'node:fs/promises';
import t from 'tap';
import { parse } from 'yaml';
import { start } from './helpers/server.js';

const METHODS = ['get', 'put', 'post', 'delete', 'head', 'patch', 'options'];

t.test('openapi.yaml documents exactly the routes the server has', async (t) => {
  const { app, url } = await start(t);
  const doc = parse(await readFile('openapi.yaml', 'utf8')) as { paths: Record<string, Record<string, unknown>> };
  const documented = new Set<string>();
  for (const [p, item] of Object.entries(doc.paths)) {
    for (const method of Object.keys(item)) if (METHODS.includes(method)) documented.add(`${method.toUpperCase()} ${p}`);
  }
  const key = ({ method, url }: { method: string; url: string }) =>
    `${method} ${url.replace(/:([A-Za-z]+)/g, '{$1}').replace(/\*$/, '{path}')}`;
  const served = new Set(app.routeList.map(key));
  // Routes registered with schema.hide are the Swagger UI's own page and assets: allowed only
  // under /docs, where the page itself is documented; every other route must be documented.
  const hidden = app.routeList.filter((r) => r.hidden);
  t.same(hidden.filter((r) => !/^\/docs(\/|$)/.test(r.url)).map(key), [], 'only the Swagger UI under /docs hides routes');
  const api = new Set(app.routeList.filter((r) => !r.hidden).map(key));
  // Fastify answers HEAD wherever there is a GET; those HEAD routes are implied by the GET.
  const implied = (r: string) => r.startsWith('HEAD ') && documented.has(r.replace(/^HEAD/, 'GET'));
  t.same([...api].filter((r) => !documented.has(r) && !implied(r)).sort(), [], 'every route is documented');
  t.same([...documented].filter((r) => !served.has(r)).sort(), [], 'every documented route exists');
  t.ok(served.size >= 10);

  const yaml = await fetch(`${url}/openapi.yaml`);
  t.equal(yaml.status, 200);
  t.equal(await yaml.text(), await readFile('openapi.yaml', 'utf8'), 'the server serves the document');
  const json = (await (await fetch(`${url}/openapi.json`)).json()) as { openapi: string };
  t.equal(json.openapi, '3.1.0');
});

t.test('every error response in the document uses the Error schema', async (t) => {
  const doc = parse(await readFile('openapi.yaml', 'utf8')) as { components: { responses: Record<string, { content?: Record<string, { schema: { $ref: string } }> }> } };
  for (const [name, response] of Object.entries(doc.components.responses)) {
    if (name === 'Archive') continue;
    t.equal(response.content?.['application/json']?.schema.$ref, '#/components/schemas/Error', name);
  }
});

t.test('openapi.yaml carries the version of package.json (the release it describes)', async (t) => {
  const doc = parse(await readFile('openapi.yaml', 'utf8')) as { info: { version: string } };
  const pkg = JSON.parse(await readFile('package.json', 'utf8')) as { version: string };
  t.equal(doc.info.version, pkg.version, 'bump both together');
});
