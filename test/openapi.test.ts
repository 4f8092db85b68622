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
    for (const method of Object.keys(item)) {
      if (METHODS.includes(method)) documented.add(`${method.toUpperCase()} ${p}`);
    }
  }
  const key = ({ method, url }: { method: string; url: string }) =>
    `${method} ${url.replace(/:([A-Za-z]+)/g, '{$1}').replace(/\*$/, '{path}')}`;
  const served = new Set(app.routeList.map(key));
  // Routes registered with schema.hide are the Swagger UI's own page and assets: allowed only
  // under /docs, where the page itself is documented; every other route must be documented.
  const hidden = app.routeList.filter((r) => r.hidden);
  const hiddenElsewhere = hidden.filter((r) => !/^\/docs(\/|$)/.test(r.url)).map(key);
  t.same(hiddenElsewhere, [], 'only the Swagger UI under /docs hides routes');
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

type Parameter = { name: string; in: string; style?: string; $ref?: string };
type Operation = { parameters?: Parameter[]; responses: Record<string, unknown> };
type Doc = {
  paths: Record<string, Record<string, unknown> & { parameters?: Parameter[] }>;
  components: { parameters: Record<string, Parameter> };
};

/**
 * Each route against its operation in the document, both ways: the path parameters of its URL,
 * the query parameters and headers its schema declares (src/http/zod.ts), and the statuses its
 * config lists. A query parameter `label` with style deepObject is the route's `label.*`; header
 * names compare lower-cased. Authorization (the security scheme), Content-Type and Content-Length
 * (the request body) are not parameters. The statuses every route can answer (500, and 503 while
 * shutting down) are said once in the document's description, not per operation.
 */
t.test('openapi.yaml documents every route parameter by parameter, status by status', async (t) => {
  const { app } = await start(t);
  const doc = parse(await readFile('openapi.yaml', 'utf8')) as Doc;
  const resolve = (p: Parameter) =>
    p.$ref ? doc.components.parameters[p.$ref.replace('#/components/parameters/', '')]! : p;
  const sorted = (list: Iterable<string>) => [...new Set(list)].sort();
  let operations = 0;
  for (const route of app.routeList.filter((r) => !r.hidden)) {
    const path = route.url.replace(/:([A-Za-z]+)/g, '{$1}').replace(/\*$/, '{path}');
    const item = doc.paths[path];
    const op = item?.[route.method.toLowerCase()] as Operation | undefined;
    const label = `${route.method} ${path}`;
    // (A HEAD Fastify adds beside a GET is implied by the GET; every other route must be there.)
    if (!op) continue;
    operations++;
    const params = [...(item!.parameters ?? []), ...(op.parameters ?? [])].map(resolve);
    const named = (where: string) =>
      sorted(params.filter((p) => p.in === where).map((p) => (p.style === 'deepObject' ? `${p.name}.*` : p.name)));
    const urlParams = sorted(
      [...route.url.matchAll(/:([A-Za-z]+)/g)].map((m) => m[1]!).concat(route.url.endsWith('*') ? ['path'] : []),
    );
    t.same(named('path'), urlParams, `${label}: path parameters`);
    if (route.params.length > 0) {
      const declared = sorted(route.params.map((p) => (p === '*' ? 'path' : p)));
      t.same(declared, urlParams, `${label}: the schema's params are the URL's`);
    }
    t.same(named('query'), sorted(route.query), `${label}: query parameters`);
    t.same(
      named('header').map((h) => h.toLowerCase()),
      sorted(route.headers),
      `${label}: headers`,
    );
    t.ok(route.statuses, `${label}: the route lists its statuses`);
    t.same(sorted(Object.keys(op.responses)), sorted((route.statuses ?? []).map(String)), `${label}: statuses`);
  }
  t.ok(operations >= 24, `${operations} operations compared`);
});

t.test('every error response in the document uses the Error schema', async (t) => {
  type Responses = Record<string, { content?: Record<string, { schema: { $ref: string } }> }>;
  const doc = parse(await readFile('openapi.yaml', 'utf8')) as { components: { responses: Responses } };
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
