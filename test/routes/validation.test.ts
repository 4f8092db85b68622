/**
 * The route schemas (src/http/zod.ts) answer with the catalogue's own errors, in the order the
 * routes checked by hand: name before query, query parameters in the order they are declared,
 * the list's query as a whole. And the validator itself: a parse function's RegistryError is the
 * error; a plain zod check that fails is INVALID_QUERY / INVALID_BODY naming the value.
 */
import t from 'tap';
import { z } from 'zod';
import { errors } from '../../src/errors.js';
import { fields, parsed, validatorCompiler } from '../../src/http/zod.js';
import { model } from '../helpers/archives.js';
import { put, start } from '../helpers/server.js';

t.test('4xx bodies of the schema-checked values', async (t) => {
  const { url } = await start(t);
  t.equal((await put(`${url}/models/m`, model('m'))).status, 201);
  const error = async (path: string, init?: RequestInit) => {
    const res = await fetch(`${url}${path}`, init);
    return { status: res.status, ...((await res.json()) as { error: string; message: string }) };
  };
  t.match(await error('/models/m?version=abc'), { status: 400, error: 'INVALID_VERSION', message: /"abc"/ });
  t.match(
    await error('/models/m?version=1&version=2'),
    { status: 400, error: 'INVALID_VERSION', message: /"1,2"/ },
    'a repeated parameter reaches the parse function as it did',
  );
  t.match(await error('/models/bad%20name?version=abc'), { status: 400, error: 'INVALID_NAME' }, 'the name first');
  t.match(await error('/models/m?version=abc&wait=999'), { error: 'INVALID_VERSION' }, 'then version, then wait');
  t.match(await error('/models/m?wait=999'), { error: 'INVALID_QUERY', message: /wait must be/ });
  const del = await error('/models/m?force=maybe', { method: 'DELETE' });
  t.match(del, { error: 'INVALID_QUERY', message: /force must/ });
  t.match(await error('/models/m/meta?version=0'), { error: 'INVALID_VERSION' });
  t.match(await error('/models/m/files?version=x'), { error: 'INVALID_VERSION' });
  t.match(
    await error('/models?limit=5000&sort=bad'),
    { error: 'INVALID_QUERY', message: /^Invalid query: sort must/ },
    'the list query is checked as a whole, sort before limit',
  );
  t.match(await error('/models?prefix=a&prefix=b'), { error: 'INVALID_QUERY', message: /prefix was given 2 times/ });
  const list = await fetch(`${url}/models?label.team=nlp&limit=2`);
  t.equal(list.status, 200, 'label.<key> parameters pass through the schema');
  const ok = await fetch(`${url}/models/m?version=1`);
  t.equal(ok.status, 200, 'a valid version downloads');
});

t.test('the validator compiler', async (t) => {
  const compile = (schema: z.ZodType, httpPart = 'querystring') =>
    validatorCompiler({ schema, method: 'GET', url: '/x', httpPart }) as (data: unknown) => unknown;
  const byParse = compile(
    fields({
      n: parsed((raw) => {
        if (raw !== '1') throw errors.invalidQuery('n must be 1');
        return 1;
      }),
    }),
  );
  t.same(byParse({ n: '1', other: 'kept' }), { value: { n: 1, other: 'kept' } }, 'parsed, unknown keys kept');
  t.match(byParse({ n: '2' }), { error: { code: 'INVALID_QUERY', message: 'Invalid query: n must be 1.' } });
  t.match(byParse({}), { error: { code: 'INVALID_QUERY' } }, 'an absent value reaches the parse function too');
  const plain = compile(z.object({ n: z.string() }));
  t.match(plain({ n: 3 }), { error: { code: 'INVALID_QUERY', message: /^Invalid query: n: / } });
  t.match(compile(z.object({ n: z.string() }), 'body')({}), { error: { code: 'INVALID_BODY' } });
  t.equal(compile(z.object({ n: z.string() }), 'headers')({}), true, 'headers are declared, not checked');
});
