/**
 * Scale-out under crashes (issue 18): three registry processes on one MinIO bucket behind nginx
 * (test/helpers/cluster.ts), one of them killed with SIGKILL mid-upload, and once exactly between
 * storing a new version in history and making it current (held there by a proxy in front of
 * MinIO). Nothing acknowledged is lost, the previous version stays served byte-exact, another
 * replica's upload in progress survives the restart's sweep, and nothing is left: no version that
 * was never current, no staged object, no multipart upload.
 */
import { request } from 'node:http';
import t from 'tap';
import { model } from '../helpers/archives.js';
import { sha256 } from '../helpers/assert.js';
import { type Cluster, startCluster, startHoldingProxy } from '../helpers/cluster.js';
import { until } from '../helpers/process.js';
import { bytes, put } from '../helpers/server.js';

const cluster: Cluster = await startCluster(t, 3, { MODEL_HISTORY: '1000' });
const { replicas } = cluster;

interface Listed {
  version: number;
  sha256: string;
}
async function versions(url: string, name: string): Promise<Listed[]> {
  const res = await fetch(`${url}/models/${name}/versions`);
  if (res.status !== 200) throw new Error(`GET /models/${name}/versions on ${url}: ${res.status} ${await res.text()}`);
  return ((await res.json()) as { versions: Listed[] }).versions.map(({ version, sha256 }) => ({ version, sha256 }));
}

async function current(url: string, name: string) {
  const res = await fetch(`${url}/models/${name}`);
  const body = await bytes(res);
  return { status: res.status, version: Number(res.headers.get('x-model-version')), sha: sha256(body) };
}

/**
 * Starts a PUT over a raw connection and writes `sendBytes` of `body`; the rest is sent by
 * `finish()`. `response` resolves with the status (or 0 when the connection died first).
 */
function partialUpload(url: string, body: Buffer, sendBytes: number) {
  const req = request(url, {
    method: 'PUT',
    headers: { 'content-type': 'application/gzip', 'content-length': body.length },
  });
  const response = new Promise<{ status: number; text: string }>((resolve) => {
    req.on('response', (res) => {
      let text = '';
      res.on('data', (d) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode!, text }));
      res.on('error', () => resolve({ status: res.statusCode!, text }));
    });
    req.on('error', () => resolve({ status: 0, text: '' }));
  });
  req.write(body.subarray(0, sendBytes));
  return { response, finish: () => req.end(body.subarray(sendBytes)), abort: () => req.destroy() };
}

t.test('kill -9 of a replica mid-upload loses nothing and leaves nothing', async (t) => {
  const name = 'crashy';
  const v1 = model('crashy-1', 2 * 2 ** 20);
  t.equal((await put(`${cluster.lb}/models/${name}`, v1)).status, 201);
  const before = await versions(cluster.lb, name);
  const [a, b] = [replicas[0]!, replicas[1]!];
  // On S3 an upload streams straight to its history key (.history/{name}/v{N}.tar.gz), a multipart
  // upload that names no writer; past its first part the writer also stages a marker object,
  // `.uploads/{pid}-{uuid}-{host}.part`, that names both (src/storage/s3/in-place.ts).
  const pidOf = (key: string) => Number(/^\.uploads\/(\d+)-/.exec(key)?.[1]);
  const markers = async (pid: number | undefined) => (await cluster.keys('.uploads/')).filter((k) => pidOf(k) === pid);
  const uploadKeys = async () => (await cluster.multipartUploads()).map((u) => u.key);

  // A live upload on replica A, stalled past its first 8 MiB part: it must outlive B's crash and
  // the sweep B's restart runs.
  const fromA = model('crashy-from-a', 20 * 2 ** 20);
  const live = partialUpload(`${a.url}/models/${name}`, fromA, 12 * 2 ** 20);
  await until(
    "A's upload to be staged in MinIO",
    async () => (await markers(a.child.pid)).length === 1 && (await uploadKeys()).length === 1,
    30_000,
  );
  const [aKey] = await uploadKeys();
  t.match(aKey, /^\.history\/crashy\/v\d+\.tar\.gz$/, "A's body goes straight to its history key");

  // B gets most of an upload, then dies.
  const fromB = model('crashy-from-b', 20 * 2 ** 20);
  const dying = partialUpload(`${b.url}/models/${name}`, fromB, 12 * 2 ** 20);
  await until(
    "B's upload to be staged in MinIO",
    async () => (await markers(b.child.pid)).length === 1 && (await uploadKeys()).length === 2,
    30_000,
  );
  const bKey = (await uploadKeys()).find((k) => k !== aKey)!;
  const deadPid = b.child.pid;
  await cluster.kill(1);
  t.equal((await dying.response).status, 0, "B's client saw the connection die");
  t.ok((await uploadKeys()).includes(bKey), "the crash left B's upload behind (for the sweep)");
  t.equal((await markers(deadPid)).length, 1, 'and the marker that names its writer');

  // Nothing lost, nothing half-visible: every live replica, and nginx (which skips the dead one).
  for (const url of [replicas[0]!.url, replicas[2]!.url, cluster.lb, cluster.lb, cluster.lb]) {
    const now = await current(url, name);
    t.same(
      { status: now.status, sha: now.sha, version: now.version },
      { status: 200, sha: sha256(v1), version: before[0]!.version },
      `${url} still serves v1, byte-exact`,
    );
  }
  t.same(await versions(cluster.lb, name), before, 'no new version listed');

  // The restart sweeps the dead writer's leftovers at start, and only those.
  const restarted = await cluster.restart(1);
  await until("the restart's sweep", async () => !(await uploadKeys()).includes(bKey), 15_000).catch(() =>
    t.fail("B's upload is still there after its restart"),
  );
  t.same(await markers(deadPid), [], 'no staged object of B left');
  t.same(await uploadKeys(), [aKey], "A's live upload was left alone");
  t.equal((await markers(a.child.pid)).length, 1, "and A's marker");

  // A's upload completes, and it is the next version everywhere.
  live.finish();
  const done = await live.response;
  t.equal(done.status, 200, `A's upload completes after B's restart (${done.text.slice(0, 200)})`);
  const { version } = JSON.parse(done.text) as { version: number };
  for (const r of [replicas[0]!, restarted, replicas[2]!]) {
    const now = await current(r.url, name);
    t.same(
      { sha: now.sha, version: now.version },
      { sha: sha256(fromA), version },
      `replica ${r.index} serves A's upload, byte-exact`,
    );
  }
  const after = await versions(cluster.lb, name);
  t.same(after, [{ version, sha256: sha256(fromA) }, ...before], "exactly one version more: A's");
  t.same(await cluster.keys('.uploads/'), [], 'no staged object left in the bucket');
  t.same(await cluster.multipartUploads(), [], 'no multipart upload left');
  t.equal(restarted.output().includes('"level":50'), false, 'the restarted replica logged no error');
});

t.test(
  'kill -9 of a replica between storing a version and making it current: that version never appears',
  async (t) => {
    const name = 'crashy';
    const before = await versions(cluster.lb, name);
    const base = before[0]!;
    // Replica C reaches MinIO through a proxy that holds back the write of the current object
    // (the last step of a publish, src/registry/publish.ts: the copy onto {name}.tar.gz): C has stored the
    // new version's bytes and record in history (step 3) and is killed right there.
    const proxy = await startHoldingProxy(t, cluster.minio.url);
    const c = await cluster.restart(2, { AWS_ENDPOINT_URL: proxy.url });
    const fromC = model('crashy-from-c', 4 * 2 ** 20);
    const held = proxy.hold(new RegExp(`^(PUT|POST) /${cluster.bucket}/${name}\\.tar\\.gz[ ?]`));
    const stored = new Set(await cluster.keys(`.history/${name}/`));
    const upload = partialUpload(`${c.url}/models/${name}`, fromC, fromC.length);
    await held;
    // The number C reserved; above the current one, and above any a dead writer left skipped.
    const fresh = (await cluster.keys(`.history/${name}/`)).filter((k) => !stored.has(k) && k.endsWith('.tar.gz'));
    t.equal(fresh.length, 1, `C stored the new version in history (${fresh}) before it was held`);
    const claimed = fresh[0] ?? '';
    const claimedVersion = Number(/v(\d+)\.tar\.gz$/.exec(claimed)?.[1]);
    t.ok(claimedVersion > base.version, `under a number above the current one (v${claimedVersion})`);
    await cluster.kill(2);
    t.equal((await upload.response).status, 0, "C's client got no answer");
    for (const url of [replicas[0]!.url, replicas[1]!.url, cluster.lb]) {
      const now = await current(url, name);
      t.same(
        { sha: now.sha, version: now.version },
        { sha: base.sha256, version: base.version },
        `${url} serves the previous version`,
      );
    }
    t.same(await versions(cluster.lb, name), before, 'the version that never became current is not listed');

    // C restarts (sweeping at start), and a new version is published through it.
    const restarted = await cluster.restart(2);
    await until(
      "the sweep of C's restart",
      async () => (await cluster.keys('.uploads/')).length === 0 && (await cluster.multipartUploads()).length === 0,
      15_000,
    ).catch(() => undefined);
    t.same(await cluster.keys('.uploads/'), [], 'no staged object left after the restart');
    t.same(await cluster.multipartUploads(), [], 'no multipart upload left');
    const last = model('crashy-last');
    const res = await put(`${restarted.url}/models/${name}`, last);
    t.equal(res.status, 200);
    const { version } = (await res.json()) as { version: number };
    t.ok(version > claimedVersion, `the next upload skips the claimed number (v${version})`);
    // What was never current never surfaces as history once a later version is current: the
    // publish that made it so turned the claimed number into a tombstone (src/registry/publish.ts,
    // #prune). Its bytes stay until they are older than any publish takes (ABANDONED_AFTER_MS,
    // 10 minutes: a writer that lost the race still copies them to its next number), then the next
    // publish deletes them; that wait is not run here.
    t.same(
      await versions(cluster.lb, name),
      [{ version, sha256: sha256(last) }, ...before],
      'the versions are those that were current, each once',
    );
    const record = (await cluster.sizes(`.history/${name}/`)).get(claimed.replace(/\.tar\.gz$/, '.json'));
    t.ok(record !== undefined && record < 64, `the claimed number's record is a tombstone (${record} bytes)`);
  },
);
