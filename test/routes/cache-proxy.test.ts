/**
 * The registry behind a real HTTP cache: Debian's nginx with proxy_cache (run in the foreground
 * with a generated config, as test/helpers/cluster.ts runs it), and REDbot, the HTTP linter, on
 * the registry's own answers. src/http/caching.ts says what may be kept.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import t, { type Test } from 'tap';
import { model } from '../helpers/archives.js';
import { runNginx } from '../helpers/cluster.js';
import { bytes, put, start } from '../helpers/server.js';

const ROOT = path.resolve(import.meta.dirname, '../..');
const REDBOT = path.join(ROOT, '.emulators', 'venv', 'bin', 'redbot');

/** nginx caching in front of `upstream` (host:port); every answer says X-Cache-Status. */
async function startCachingNginx(t: Test, upstream: string): Promise<string> {
  // The snippet of README.md ("Caches and CDNs in front"), with the temp paths a test needs.
  const nginx = await runNginx(
    t,
    (
      dir,
      port,
    ) => `  proxy_cache_path ${dir}/cache levels=1:2 keys_zone=models:1m max_size=1g inactive=7d use_temp_path=off;
  # With proxy_cache on, nginx drops the client's conditional and range headers on the way up
  # (it wants whole bodies to store), and answers no 304 itself for what it did not store: the
  # moving URLs would lose their 304 (Rasa's pull) and their ranges. Passed on for them; for
  # ?version=N nginx answers 304 and ranges from its copy.
  map $arg_version $pass_if_none_match { "" $http_if_none_match; default ""; }
  map $arg_version $pass_if_modified_since { "" $http_if_modified_since; default ""; }
  map $arg_version $pass_range { "" $http_range; default ""; }
  map $arg_version $pass_if_range { "" $http_if_range; default ""; }
  map $arg_version $pass_if_match { "" $http_if_match; default ""; }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://${upstream};
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
      proxy_cache models;
      proxy_cache_revalidate on;
      proxy_cache_lock on;
      proxy_request_buffering off;
      client_max_body_size 0;
      proxy_set_header If-None-Match $pass_if_none_match;
      proxy_set_header If-Modified-Since $pass_if_modified_since;
      proxy_set_header Range $pass_range;
      proxy_set_header If-Range $pass_if_range;
      proxy_set_header If-Match $pass_if_match;
      add_header X-Cache-Status $upstream_cache_status always;
    }
  }`,
    ['cache'],
  );
  return nginx.url;
}

/** GET requests the registry answered on `route` (its own /metrics, read past nginx). */
async function served(registry: string, route: string): Promise<number> {
  const text = await (await fetch(`${registry}/metrics`)).text();
  let n = 0;
  for (const line of text.split('\n')) {
    if (
      line.startsWith('http_request_duration_seconds_count{') &&
      line.includes(`route="${route}"`) &&
      line.includes('method="GET"')
    )
      n += Number(line.split(' ').pop());
  }
  return n;
}

t.test(
  'behind nginx proxy_cache: ?version=N is served by the cache, a replace is seen at once on the moving URL',
  async (t) => {
    const { url: registry } = await start(t);
    const a = model('a');
    const b = model('b');
    t.equal((await put(`${registry}/models/m`, a)).status, 201);
    const proxy = await startCachingNginx(t, registry.replace('http://', ''));

    const before = await served(registry, '/models/:name');
    for (let i = 0; i < 5; i++) {
      const res = await fetch(`${proxy}/models/m?version=1`);
      t.equal(res.status, 200);
      t.same(await bytes(res), a, `pull ${i + 1} of ?version=1: the bytes of v1`);
      t.equal(
        res.headers.get('x-cache-status'),
        i === 0 ? 'MISS' : 'HIT',
        `pull ${i + 1}: ${i === 0 ? 'fetched' : 'from nginx'}`,
      );
      t.equal(res.headers.get('cache-control'), 'public, max-age=31536000, immutable');
    }
    t.equal((await served(registry, '/models/:name')) - before, 1, 'the registry served ?version=1 once for 5 pulls');

    const file = async () => fetch(`${proxy}/models/m/files/model/config.json?version=1`);
    await (await file()).arrayBuffer();
    const again = await file();
    t.equal(again.headers.get('x-cache-status'), 'HIT', 'a file of a numbered version: from nginx');
    t.same(JSON.parse(await again.text()), { seed: 'a' });

    const current = await fetch(`${proxy}/models/m`);
    t.same(await bytes(current), a);
    t.equal(current.headers.get('cache-control'), 'no-cache');
    t.not(current.headers.get('x-cache-status'), 'HIT', 'the moving URL is not answered from the cache');
    const etag = current.headers.get('etag')!;
    t.equal((await put(`${registry}/models/m`, b)).status, 200, 'replaced');
    const moved = await fetch(`${proxy}/models/m`);
    t.same(await bytes(moved), b, 'the replace is seen at once through the cache');
    t.equal(moved.headers.get('x-model-version'), '2');
    t.not(moved.headers.get('x-cache-status'), 'HIT');
    const list = (await (await fetch(`${proxy}/models`)).json()) as { models: { version: number }[] };
    t.equal(list.models[0]!.version, 2, 'the list too');
    const meta = (await (await fetch(`${proxy}/models/m/meta`)).json()) as { version: number };
    t.equal(meta.version, 2, 'and the metadata');
    const old = await fetch(`${proxy}/models/m?version=1`);
    t.equal(old.headers.get('x-cache-status'), 'HIT', 'v1 is still v1, from the cache');
    t.same(await bytes(old), a);

    // The Rasa-style pull through the cache: its ETag of v1 is stale now, so a 200 with v2; then 304.
    const pull = await fetch(`${proxy}/models/m`, { headers: { 'if-none-match': etag } });
    t.equal(pull.status, 200, 'If-None-Match with the old ETag: the new version');
    await pull.arrayBuffer();
    const still = await fetch(`${proxy}/models/m`, { headers: { 'if-none-match': pull.headers.get('etag')! } });
    t.equal(still.status, 304, 'with the current ETag: 304 through nginx');
    const range = await fetch(`${proxy}/models/m`, { headers: { range: 'bytes=0-9' } });
    t.equal(range.status, 206, 'a range of the moving URL through nginx');
    t.same(await bytes(range), b.subarray(0, 10));
    const pinnedRange = await fetch(`${proxy}/models/m?version=1`, { headers: { range: 'bytes=0-9' } });
    t.equal(pinnedRange.status, 206, 'a range of ?version=1, from the cached copy');
    t.equal(pinnedRange.headers.get('x-cache-status'), 'HIT');
    t.same(await bytes(pinnedRange), a.subarray(0, 10));
    const pinnedPull = await fetch(`${proxy}/models/m?version=1`, { headers: { 'if-none-match': etag } });
    t.equal(pinnedPull.status, 304, "If-None-Match on ?version=1: nginx's own 304");
    const versions = await fetch(`${proxy}/models/m/versions`);
    await versions.arrayBuffer();
    const versionsAgain = await fetch(`${proxy}/models/m/versions`, {
      headers: { 'if-none-match': versions.headers.get('etag')! },
    });
    t.equal(versionsAgain.status, 304, 'a JSON view: 304 through nginx');
    const gone = await fetch(`${proxy}/models/nope?version=1`);
    t.equal(gone.status, 404);
    await gone.arrayBuffer();
    t.not(
      (await fetch(`${proxy}/models/nope?version=1`)).headers.get('x-cache-status'),
      'HIT',
      'an error is never kept',
    );
  },
);

type Note = { note_id: string; category: string; level: string; summary: string; subnotes?: Note[] };

/**
 * REDbot's notes on `url` (its HAR output: every note with its id, category and level). Spawned,
 * not spawnSync: the registry answering it runs in this process.
 */
async function redbot(url: string): Promise<Note[]> {
  const child = spawn(REDBOT, ['-o', 'har', url], { stdio: ['ignore', 'pipe', 'pipe'], timeout: 120_000 });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  if (code !== 0) throw new Error(`redbot exited with ${code}: ${stderr}`);
  const har = JSON.parse(stdout) as { log: { _red_error?: string; entries: { _red_messages: Note[] }[] } };
  if (har.log._red_error) throw new Error(`redbot: ${har.log._red_error}`);
  const flat = (notes: Note[]): Note[] => notes.flatMap((n) => [n, ...flat(n.subnotes ?? [])]);
  return flat(har.log.entries.flatMap((e) => e._red_messages));
}

/**
 * REDbot (PyPI redbot, pinned in scripts/python/requirements.txt) on the list, the metadata, the
 * versions, a download of ?version=N and a download of the moving URL. Asserted by note id:
 * - none says FRESHNESS_HEURISTIC (caches would pick their own lifetime: what issue 18 found);
 * - a moving answer says FRESHNESS_NO_CACHE (revalidated on every use), a numbered version
 *   FRESHNESS_FRESH (fresh for a year);
 * - the validator works: INM_304 (REDbot's If-None-Match subrequest got a 304);
 * - no note of the caching category at level BAD (e.g. CC_MAX_AGE_TOO_LARGE, INM_DUP_ETAG_STRONG),
 *   and none of its conditional-request problems INM_FULL / INM_UNKNOWN.
 */
t.test(
  'REDbot finds no heuristic freshness and no caching problem',
  { skip: existsSync(REDBOT) ? false : `no ${REDBOT}: run scripts/python/install.sh` },
  async (t) => {
    const { url } = await start(t);
    await put(`${url}/models/m`, model('a'));
    await put(`${url}/models/m`, model('b'));
    const cases: [string, 'FRESHNESS_NO_CACHE' | 'FRESHNESS_FRESH'][] = [
      ['/models', 'FRESHNESS_NO_CACHE'],
      ['/models/m/meta', 'FRESHNESS_NO_CACHE'],
      ['/models/m/versions', 'FRESHNESS_NO_CACHE'],
      ['/models/m?version=1', 'FRESHNESS_FRESH'],
      ['/models/m', 'FRESHNESS_NO_CACHE'],
    ];
    for (const [p, freshness] of cases) {
      const notes = await redbot(`${url}${p}`);
      const ids = notes.map((n) => n.note_id);
      t.ok(notes.length > 0, `${p}: REDbot said something`);
      t.notOk(ids.includes('FRESHNESS_HEURISTIC'), `${p}: no heuristic freshness`);
      t.ok(ids.includes(freshness), `${p}: ${freshness}`);
      t.ok(ids.includes('INM_304'), `${p}: If-None-Match gives 304`);
      for (const bad of ['INM_FULL', 'INM_UNKNOWN', 'INM_DUP_ETAG_STRONG', 'FRESHNESS_NO_CACHE_NO_VALIDATOR']) {
        t.notOk(ids.includes(bad), `${p}: no ${bad}`);
      }
      const problems = notes.filter((n) => n.category === 'CACHING' && n.level === 'BAD');
      t.same(
        problems.map((n) => `${n.note_id}: ${n.summary}`),
        [],
        `${p}: no caching note at level BAD`,
      );
      t.comment(`${p}: ${[...new Set(ids)].join(' ')}`);
    }
  },
);
