/**
 * Issue 21 §4: paths no file system can hold. An entry path over MAX_PATH_BYTES (3 KiB), a
 * component over 255 bytes or a symlink target over 3 KiB is refused at upload with a 422 naming
 * the entry and the limit, and nothing is stored; the same archive put in storage by another
 * tool answers /files with that 422, not a 500 (the validator runs before every extraction, so
 * this holds on every backend). Paths just within the limits are accepted and served.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { type Entry, tgz } from '../helpers/archives.js';
import { isError } from '../helpers/assert.js';
import { put, start } from '../helpers/server.js';

const deep = (bytes: number) => {
  // Components of 200 bytes, 'd/' joined, cut to exactly `bytes`.
  const parts: string[] = [];
  let left = bytes;
  while (left > 0) {
    const n = Math.min(200, left);
    parts.push('d'.repeat(n));
    left -= n + 1;
  }
  const p = parts.join('/');
  return p.slice(0, bytes);
};

const cases: { name: string; entries: Entry[]; fragment: RegExp }[] = [
  {
    name: 'a path of 3073 bytes',
    entries: [{ path: deep(3073), body: 'x', pax: true }],
    fragment: /is 3073 bytes long, over the limit of 3072 bytes/,
  },
  {
    name: 'a path of 5000 bytes',
    entries: [{ path: deep(5000), body: 'x', pax: true }],
    fragment: /over the limit of 3072 bytes/,
  },
  {
    name: 'a component of 256 bytes',
    entries: [{ path: `dir/${'n'.repeat(256)}.bin`, body: 'x', pax: true }],
    fragment: /component "nnn.*of 260 bytes, over the limit of 255 bytes/,
  },
  {
    name: 'a directory of 256 bytes',
    entries: [{ path: `${'é'.repeat(128)}/`, type: 'Directory', pax: true }],
    fragment: /of 256 bytes, over the limit of 255 bytes/,
  },
  {
    name: 'a symlink target of 3073 bytes',
    entries: [
      { path: 'a', body: 'x' },
      { path: 'link', type: 'SymbolicLink', linkpath: `./${'/'.repeat(3071)}a`, pax: true, ustarLinkpath: 'a' },
    ],
    fragment: /target of the symlink "link" is 3074 bytes long/,
  },
];

t.test('over-long paths are refused at upload with 422 PATH_TOO_LONG, and nothing is stored', async (t) => {
  const r = await start(t);
  for (const c of cases) {
    const res = await put(`${r.url}/models/long`, tgz(c.entries));
    const body = await isError(t, res, 422, 'PATH_TOO_LONG');
    t.match(body.message, c.fragment, `${c.name}: the message names the entry and the limit`);
    t.match(body.message, /Shorten it/, `${c.name}: and the fix`);
    t.ok(
      body.message.length < 600,
      `${c.name}: the message quotes the entry shortened (${body.message.length} characters)`,
    );
  }
  t.equal((await fetch(`${r.url}/models/long`)).status, 404, 'nothing was stored');
});

t.test('paths at the limits are accepted and served', async (t) => {
  const r = await start(t);
  const longest = deep(3072);
  const name = `${'n'.repeat(251)}.bin`; // 255 bytes
  const res = await put(
    `${r.url}/models/edge`,
    tgz([
      { path: longest, body: 'deep', pax: true },
      { path: name, body: 'wide', pax: true },
    ]),
  );
  t.equal(res.status, 201, 'a path of 3072 bytes and a component of 255 bytes are accepted');
  const listing = (await (await fetch(`${r.url}/models/edge/files`)).json()) as { files: { path: string }[] };
  t.ok(
    listing.files.some((f) => f.path === longest),
    'the deep file is listed',
  );
  t.equal(await (await fetch(`${r.url}/models/edge/files/${name}`)).text(), 'wide', 'the wide one is served');
  t.equal(await (await fetch(`${r.url}/models/edge/files/${longest}`)).text(), 'deep', 'the deep one too');
});

t.test('an over-long path put in storage by another tool: /files answers the same 422, not 500', async (t) => {
  const r = await start(t);
  await fs.writeFile(
    path.join(r.dir, 'foreign.tar.gz'),
    tgz([{ path: `${'n'.repeat(300)}.bin`, body: 'x', pax: true }]),
  );
  t.equal((await fetch(`${r.url}/models/foreign`)).status, 200, 'the archive itself downloads');
  for (const attempt of [1, 2]) {
    const res = await fetch(`${r.url}/models/foreign/files`);
    const body = await isError(t, res, 422, 'PATH_TOO_LONG');
    t.match(body.message, /over the limit of 255 bytes/, `attempt ${attempt}: names the limit`);
  }
});
