/**
 * Scale-out, for real (issue 18): three registry processes on one MinIO bucket, each with its own
 * cache, behind nginx (Debian's, round robin, deploy/nginx/registry-proxy.conf). What README's
 * "Scaling out" promises, checked across processes:
 *   - compare-and-swap holds across replicas: 200 racing If-Match PUTs through nginx lose no
 *     acknowledged write and reuse no number;
 *   - a ?wait= long poll on every replica sees a change made through any replica within
 *     WATCH_POLL_INTERVAL (+ 0.5 s);
 *   - no replica serves a stale version once a replace has been acknowledged by another (every
 *     request reads the current version from the storage; caches are keyed by digest).
 * kill -9 of a replica is in crash.test.ts beside this file.
 */
import { request } from 'node:http';
import t from 'tap';
import { model } from '../helpers/archives.js';
import { sha256 } from '../helpers/assert.js';
import { type Cluster, startCluster } from '../helpers/cluster.js';
import { bytes, put } from '../helpers/server.js';

const POLL_MS = 1000;
const cluster: Cluster = await startCluster(t, 3, {
  WATCH_POLL_INTERVAL: `${POLL_MS}ms`,
  // Every version of the races stays listed, so each acknowledged write can be looked for.
  MODEL_HISTORY: '1000',
});
const { replicas } = cluster;
const etagOf = (body: Buffer) => `"sha256:${sha256(body)}"`;

interface Listed {
  version: number;
  sha256: string;
}
async function versions(url: string, name: string): Promise<Listed[]> {
  const res = await fetch(`${url}/models/${name}/versions`);
  if (res.status !== 200) throw new Error(`GET /models/${name}/versions on ${url}: ${res.status} ${await res.text()}`);
  return ((await res.json()) as { versions: Listed[] }).versions.map(({ version, sha256 }) => ({ version, sha256 }));
}

/** GET through `url`: status, ETag, version number and the body's digest. */
async function current(url: string, name: string, headers: Record<string, string> = {}) {
  const res = await fetch(`${url}/models/${name}`, { headers });
  const body = await bytes(res);
  return {
    status: res.status,
    etag: res.headers.get('etag'),
    version: Number(res.headers.get('x-model-version')),
    sha: sha256(body),
    upstream: res.headers.get('x-upstream'),
  };
}

t.test('the cluster is three replicas behind nginx, round robin', async (t) => {
  const seen = new Set<string>();
  for (let i = 0; i < 9; i++) {
    const res = await fetch(`${cluster.lb}/healthz`);
    t.equal(res.status, 200);
    seen.add(res.headers.get('x-upstream') ?? '');
  }
  t.same([...seen].sort(), replicas.map((r) => `127.0.0.1:${r.port}`).sort(), 'every replica answers in turn');
});

t.test(
  'compare-and-swap across replicas: 200 racing If-Match PUTs through nginx, no lost update, no number reused',
  async (t) => {
    const name = 'cas';
    const first = model('cas-initial', 4096);
    const created = await put(`${cluster.lb}/models/${name}`, first);
    t.equal(created.status, 201);
    const initial = { etag: etagOf(first), version: ((await created.json()) as { version: number }).version };

    const ATTEMPTS = 200;
    const WORKERS = 12;
    let next = 0;
    const wins: { ifMatch: string; etag: string; sha: string; version: number; upstream: string }[] = [];
    const refused: string[] = [];
    const other: string[] = [];
    const upstreams = new Map<string, number>();
    const worker = async () => {
      while (next < ATTEMPTS) {
        const i = next++;
        // What this writer last saw (through whichever replica nginx picks), then a write on it.
        const head = await fetch(`${cluster.lb}/models/${name}`, { method: 'HEAD' });
        const ifMatch = head.headers.get('etag')!;
        const body = model(`cas-${i}`, 4096);
        const res = await put(`${cluster.lb}/models/${name}`, body, { 'if-match': ifMatch });
        const upstream = res.headers.get('x-upstream') ?? '?';
        upstreams.set(upstream, (upstreams.get(upstream) ?? 0) + 1);
        const text = await res.text();
        if (res.status === 200) {
          const meta = JSON.parse(text) as { version: number; sha256: string };
          wins.push({ ifMatch, etag: etagOf(body), sha: sha256(body), version: meta.version, upstream });
          if (meta.sha256 !== sha256(body)) other.push(`attempt ${i}: 200 with the digest of another body`);
        } else if (res.status === 412) {
          refused.push(text);
        } else {
          other.push(`attempt ${i} via ${upstream}: ${res.status} ${text}`);
        }
      }
    };
    const started = Date.now();
    await Promise.all(Array.from({ length: WORKERS }, worker));
    t.comment(
      `${ATTEMPTS} attempts by ${WORKERS} writers in ${Date.now() - started} ms: ${wins.length} won, ${refused.length} got 412; PUTs per replica ${JSON.stringify(Object.fromEntries(upstreams))}`,
    );
    t.same(other, [], 'every attempt is a 200 or a 412');
    t.equal(wins.length + refused.length, ATTEMPTS);
    t.ok(refused.length > 0, 'the writers did race (some lost)');
    t.ok(wins.length >= 5, 'and several won');
    t.equal(upstreams.size, 3, 'the writes went through every replica');
    t.ok(
      refused.every((r) => /"error":"PRECONDITION_FAILED"/.test(r)),
      'a lost race is 412 PRECONDITION_FAILED',
    );

    // The CAS property: no two writers won against the same version.
    const byBase = new Map<string, number>();
    for (const w of wins) byBase.set(w.ifMatch, (byBase.get(w.ifMatch) ?? 0) + 1);
    t.same(
      [...byBase].filter(([, n]) => n > 1),
      [],
      'no version was replaced twice (each If-Match won at most once)',
    );
    const numbers = wins.map((w) => w.version);
    t.equal(new Set(numbers).size, numbers.length, 'no version number given twice');
    t.ok(
      numbers.every((n) => n > initial.version),
      'every number after the first version',
    );

    // Every acknowledged write is a link of one chain from the first version to the current one.
    const chain: typeof wins = [];
    let at = initial.etag;
    let lastVersion = initial.version;
    const from = new Map(wins.map((w) => [w.ifMatch, w]));
    for (let w = from.get(at); w; w = from.get(at)) {
      t.ok(w.version > lastVersion, `v${w.version} follows v${lastVersion}`);
      chain.push(w);
      at = w.etag;
      lastVersion = w.version;
    }
    t.equal(chain.length, wins.length, 'the acknowledged writes form one chain: none was overwritten unseen');
    for (const r of replicas) {
      const now = await current(r.url, name);
      t.equal(now.etag, at, `replica ${r.index} serves the end of the chain`);
      t.equal(now.version, lastVersion);
      t.equal(`"sha256:${now.sha}"`, at, 'byte-exact');
    }
    // …and each is retained, with the number and digest it was acknowledged with, and nothing else.
    const listed = await versions(cluster.lb, name);
    const expected = [
      { version: initial.version, sha256: sha256(first) },
      ...wins.map((w) => ({ version: w.version, sha256: w.sha })),
    ].sort((a, b) => b.version - a.version);
    t.same(listed, expected, '/versions lists exactly the acknowledged versions');
  },
);

t.test(
  'unconditional PUTs racing through nginx: every 2xx is a retained version, numbers unique and rising',
  async (t) => {
    const name = 'race';
    const WRITES = 60;
    let next = 0;
    const acked: { version: number; sha: string }[] = [];
    const other: string[] = [];
    await Promise.all(
      Array.from({ length: 12 }, async () => {
        while (next < WRITES) {
          const i = next++;
          const body = model(`race-${i}`, 4096);
          const res = await put(`${cluster.lb}/models/${name}`, body);
          const text = await res.text();
          if (res.status === 200 || res.status === 201)
            acked.push({ version: (JSON.parse(text) as { version: number }).version, sha: sha256(body) });
          else other.push(`write ${i} via ${res.headers.get('x-upstream')}: ${res.status} ${text}`);
        }
      }),
    );
    // FAILS intermittently on 2026-12-03 (found by this test, most runs with another test loading
    // the machine): a few writes get 503 STORAGE_UNAVAILABLE "the commit to .history/race/vN.json
    // may have completed (its reply was lost, and checking failed: NotFoundError)". Two writers
    // claim the same number N; the loser's conditional create is refused (412), src/storage/s3.ts
    // then HEADs the record to see whether the write was its own (the lost-reply check) and finds
    // it gone: the winner gave N back and a later publish's prune removed the tombstone. A lost
    // claim should be retried with the next number, as it is when the record is still there.
    t.same(other, [], 'every write is acknowledged (a lost race is retried by the registry)');
    t.equal(new Set(acked.map((a) => a.version)).size, acked.length, 'no number given twice');
    const newest = acked.reduce((a, b) => (b.version > a.version ? b : a));
    for (const r of replicas) {
      const now = await current(r.url, name);
      t.same(
        { version: now.version, sha: now.sha },
        { version: newest.version, sha: newest.sha },
        `replica ${r.index}: the current version is the highest number acknowledged`,
      );
    }
    const listed = await versions(cluster.lb, name);
    t.same(
      listed,
      acked.map((a) => ({ version: a.version, sha256: a.sha })).sort((a, b) => b.version - a.version),
      '/versions lists exactly the acknowledged writes',
    );
  },
);

/** A long poll on `url`; resolves when its answer arrives, with the time and what it carried. */
function longPoll(
  url: string,
  etag: string,
  seconds: number,
): Promise<{ status: number; at: number; etag?: string; sha?: string; error?: string }> {
  return new Promise((resolve) => {
    const req = request(`${url}?wait=${seconds}`, { headers: { 'if-none-match': etag } }, (res) => {
      const at = Date.now();
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({ status: res.statusCode!, at, etag: res.headers.etag, sha: sha256(Buffer.concat(chunks)) }),
      );
      res.on('error', (err) => resolve({ status: res.statusCode!, at, error: err.message }));
    });
    req.on('error', (err) => resolve({ status: 0, at: Date.now(), error: err.message }));
    req.end();
  });
}

t.test(
  `?wait= on every replica sees a change made through any replica within WATCH_POLL_INTERVAL (${POLL_MS} ms) + 0.5 s`,
  async (t) => {
    const name = 'watched';
    let body = model('watched-0');
    t.equal((await put(`${replicas[0]!.url}/models/${name}`, body)).status, 201);
    const worst: number[] = [];
    for (let round = 0; round < 3; round++) {
      const writer = replicas[round]!;
      const etag = etagOf(body);
      // Two waiters on each replica directly, and three through nginx.
      const targets = [...replicas.flatMap((r) => [r.url, r.url]), cluster.lb, cluster.lb, cluster.lb];
      const polls = targets.map((u) => longPoll(`${u}/models/${name}`, etag, 30));
      // Long enough for every waiter to be waiting, and for a poll of each replica to have run.
      await new Promise((r) => setTimeout(r, POLL_MS + 200));
      body = model(`watched-${round + 1}`);
      const res = await put(`${writer.url}/models/${name}`, body);
      const acknowledged = Date.now();
      t.equal(res.status, 200, `round ${round}: replaced through replica ${writer.index}`);
      const answers = await Promise.all(polls);
      const delays = answers.map((a) => a.at - acknowledged);
      worst.push(Math.max(...delays));
      t.comment(
        `round ${round} (writer ${writer.index}): wake-up after the 2xx, per waiter (ms): ${delays.join(', ')}`,
      );
      answers.forEach((a, i) => {
        t.equal(a.status, 200, `waiter ${i} (${targets[i]}) woke with 200${a.error ? ` (${a.error})` : ''}`);
        t.equal(a.etag, etagOf(body), `waiter ${i} got the new version's ETag`);
        t.equal(a.sha, sha256(body), `waiter ${i} got the new bytes`);
        t.ok(delays[i]! <= POLL_MS + 500, `waiter ${i} woke ${delays[i]} ms after the 2xx (≤ ${POLL_MS + 500} ms)`);
      });
    }
    t.comment(`slowest wake-up per round (ms): ${worst.join(', ')}`);
  },
);

t.test('no replica serves a stale version after a replace acknowledged by another', async (t) => {
  const name = 'fresh';
  let body = model('fresh-0');
  t.equal((await put(`${cluster.lb}/models/${name}`, body)).status, 201);
  for (let round = 1; round <= 9; round++) {
    // Every replica has the current version cached (memory for the small ones, disk for 9 MiB).
    for (const r of replicas)
      t.equal((await current(r.url, name)).sha, sha256(body), `round ${round}: replica ${r.index} warmed`);
    const old = etagOf(body);
    body = model(`fresh-${round}`, round % 3 === 0 ? 9 * 2 ** 20 : 32 * 1024);
    const writer = replicas[round % 3]!;
    const res = await put(`${writer.url}/models/${name}`, body);
    t.equal(res.status, 200);
    const { version } = (await res.json()) as { version: number };
    // Right after the 2xx, every replica at once: the download, a conditional GET with the old
    // ETag, HEAD and /meta all say the new version.
    await Promise.all(
      replicas.map(async (r) => {
        const got = await current(r.url, name);
        t.same(
          { status: got.status, etag: got.etag, version: got.version, sha: got.sha },
          { status: 200, etag: etagOf(body), version, sha: sha256(body) },
          `round ${round}: replica ${r.index} serves v${version} (written through replica ${writer.index})`,
        );
        const conditional = await current(r.url, name, { 'if-none-match': old });
        t.equal(conditional.status, 200, `replica ${r.index}: If-None-Match with the old ETag is not a 304`);
        const head = await fetch(`${r.url}/models/${name}`, { method: 'HEAD' });
        t.equal(head.headers.get('etag'), etagOf(body), `replica ${r.index}: HEAD says the new ETag`);
        const meta = (await (await fetch(`${r.url}/models/${name}/meta`)).json()) as {
          version: number;
          sha256: string;
        };
        t.same(
          { version: meta.version, sha256: meta.sha256 },
          { version, sha256: sha256(body) },
          `replica ${r.index}: /meta says v${version}`,
        );
      }),
    );
  }
});
