/**
 * SPEC §3 under contention across replicas: writers and readers spread over two registry
 * instances sharing one MinIO bucket (every read is one whole committed version, no update is
 * lost), and two registry processes racing with If-Match / If-None-Match on the same name,
 * on MinIO and on a shared local directory (exactly one wins each race).
 */
import t from 'tap';
import { model } from '../helpers/archives.js';
import { sha256 } from '../helpers/assert.js';
import { minioEnv } from '../helpers/cloud.js';
import { startMinio } from '../helpers/emulators.js';
import { killHard, spawnServer } from '../helpers/process.js';
import { bytes, put, start, tempDir } from '../helpers/server.js';

const minio = await startMinio();
t.teardown(() => minio.dispose());

t.test('MinIO, two replicas: 4 writers and 8 readers on one name see only whole committed versions', async (t) => {
  const shared = { ...minioEnv(minio), MODEL_HISTORY: '50' };
  const replicas = [await start(t, shared), await start(t, shared)];
  const first = model('seed', 100 * 1024);
  t.equal((await put(`${replicas[0]!.url}/models/hot`, first)).status, 201);
  const uploads = Array.from({ length: 4 }, (_, w) =>
    Array.from({ length: 4 }, (_, i) => model(`w${w}-${i}`, 100 * 1024)),
  );
  const known = new Set([first, ...uploads.flat()].map(sha256));
  const versions: number[] = [];
  let writing = true;
  const writers = uploads.map(async (mine, w) => {
    const url = replicas[w % 2]!.url;
    for (const archive of mine) {
      const res = await put(`${url}/models/hot`, archive);
      t.equal(res.status, 200, `writer ${w} replaced the model`);
      versions.push(((await res.json()) as { version: number }).version);
    }
  });
  let reads = 0;
  let bad = 0;
  const seenVersions = new Set<string>();
  const readers = Array.from({ length: 8 }, async (_, i) => {
    const url = replicas[i % 2]!.url;
    while (writing) {
      // Half the readers ask for a range, to cover ranged reads during replaces too.
      const ranged = i >= 4;
      const res = await fetch(`${url}/models/hot`, ranged ? { headers: { range: 'bytes=0-' } } : {});
      const body = await bytes(res);
      const digest = sha256(body);
      const etag = res.headers.get('etag');
      if (
        ![200, 206].includes(res.status) ||
        etag !== `"sha256:${digest}"` ||
        !known.has(digest) ||
        Number(res.headers.get('content-length')) !== body.length
      ) {
        bad++;
        t.fail(`read a partial or mixed archive (status ${res.status}, etag ${etag}, got ${digest})`);
      }
      seenVersions.add(res.headers.get('x-model-version')!);
      reads++;
    }
  });
  await Promise.all(writers);
  writing = false;
  await Promise.all(readers);
  t.equal(bad, 0, `${reads} reads on two replicas, all whole committed versions`);
  t.ok(reads >= 16, `${reads} reads happened during the writes`);
  t.ok(seenVersions.size >= 2, `readers saw ${seenVersions.size} different versions while writes went on`);
  // Numbers only rise and are never shared; a writer overtaken in a race skips the one it held.
  t.equal(new Set(versions).size, 16, 'every upload got its own version, none lost');
  t.ok(
    versions.every((v) => v > 1),
    'all after the seed',
  );
  for (const r of replicas) {
    const history = (await (await fetch(`${r.url}/models/hot/versions`)).json()) as {
      versions: { version: number; sha256: string }[];
    };
    t.equal(history.versions.length, 17, 'both replicas list every version');
    t.equal(new Set(history.versions.map((v) => v.sha256)).size, 17, 'each a distinct upload');
    for (const v of history.versions.slice(0, 3)) {
      t.equal(
        sha256(await bytes(await fetch(`${r.url}/models/hot?version=${v.version}`))),
        v.sha256,
        `v${v.version} downloads whole from either replica`,
      );
    }
  }
});

for (const backend of ['minio', 'local'] as const) {
  t.test(`${backend}: two registry processes racing with If-Match / If-None-Match: exactly one wins`, async (t) => {
    const base = { LOG_LEVEL: 'warn', MODEL_HISTORY: '10' };
    const env: Record<string, string> =
      backend === 'minio' ? { ...minioEnv(minio), ...base } : { LOCAL_STORAGE_DIR: await tempDir(t), ...base };
    const procs = [await spawnServer(t, env), await spawnServer(t, env)];
    // Create-only race: four contenders, two per process.
    const creators = Array.from({ length: 4 }, (_, i) => model(`create-${i}`, 50 * 1024));
    const created = await Promise.all(
      creators.map((a, i) => put(`${procs[i % 2]!.url}/models/race`, a, { 'if-none-match': '*' })),
    );
    const createdStatuses = created.map((r) => r.status).sort();
    t.same(createdStatuses, [201, 412, 412, 412], 'If-None-Match: * — one creator wins, three get 412');
    await Promise.all(created.map((r) => r.arrayBuffer()));
    const winner = creators[created.findIndex((r) => r.status === 201)]!;
    let current = winner;
    let last = 1;
    for (let round = 0; round < 8; round++) {
      const etag = `"sha256:${sha256(current)}"`;
      const contenders = Array.from({ length: 4 }, (_, i) => model(`r${round}-${i}`, 50 * 1024));
      const answers = await Promise.all(
        contenders.map((a, i) => put(`${procs[i % 2]!.url}/models/race`, a, { 'if-match': etag })),
      );
      const statuses = answers.map((r) => r.status);
      const bodies = await Promise.all(answers.map((r) => r.json() as Promise<{ version?: number; error?: string }>));
      t.same([...statuses].sort(), [200, 412, 412, 412], `round ${round}: one If-Match writer wins, three get 412`);
      const won = statuses.indexOf(200);
      // Each contender may have claimed a number before losing the compare-and-swap; a number
      // claimed and lost is skipped, never reused: the winner's is above the last. Staged, a
      // contender claims once its body is in, so by at most 4. On S3 each claims before its body
      // streams (an upload staged in place), so a round's losers may hold numbers above its
      // winner: then the bound is what the races so far can have claimed, 4 per race.
      const made = bodies[won]!.version!;
      const ceiling = backend === 'minio' ? 4 * (round + 2) : last + 4;
      t.ok(made > last && made <= ceiling, `round ${round}: the winner made v${made}, after v${last} (≤ v${ceiling})`);
      last = made;
      t.ok(
        bodies.filter((_, i) => i !== won).every((b) => b.error === 'PRECONDITION_FAILED'),
        'losers are told why',
      );
      current = contenders[won]!;
      for (const p of procs) {
        const res = await fetch(`${p.url}/models/race`);
        t.equal(sha256(await bytes(res)), sha256(current), `round ${round}: both processes serve the winner`);
      }
    }
    const versions = (await (await fetch(`${procs[1]!.url}/models/race/versions`)).json()) as {
      current: number;
      versions: { sha256: string }[];
    };
    t.equal(versions.current, last, 'the last winner is current');
    t.equal(versions.versions.length, 9, 'one version per round, none lost or doubled');
    t.equal(new Set(versions.versions.map((v) => v.sha256)).size, 9, 'each a different winner');
    for (const p of procs) await killHard(p);
  });
}
