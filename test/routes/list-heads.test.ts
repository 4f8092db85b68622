/**
 * A listing on S3 (whose listings carry no metadata) HEADs a model only when it changed since
 * this process last described it: a catalog listed twice (namespaces too) costs one listing walk
 * the second time, and a replace or a rollback shows at once.
 */
import t from 'tap';
import { model } from '../helpers/archives.js';
import { minioEnv } from '../helpers/cloud.js';
import { startMinio } from '../helpers/emulators.js';
import { storageCalls } from '../helpers/fidelity.js';
import { put, start } from '../helpers/server.js';

const minio = await startMinio();
t.teardown(() => minio.dispose());

interface Listed {
  models: { name: string; version: number; labels: Record<string, string> }[];
}

t.test('a second listing of unchanged models makes no HEAD; a changed one is HEADed again', async (t) => {
  const { url } = await start(t, minioEnv(minio));
  // A third of them namespaced, a third two namespaces deep: the walk remembers them all alike.
  const nameOf = (i: number) => `${['', 'team/', 'team/de/'][i % 3]}m-${i}`;
  for (let i = 0; i < 30; i++) t.equal((await put(`${url}/models/${nameOf(i)}`, model(`m-${i}`, 4096))).status, 201);
  const list = async () => (await (await fetch(`${url}/models?limit=1000`)).json()) as Listed;
  const heads0 = await storageCalls(url, 'head');
  const first = await list();
  t.same(first.models.map((m) => m.name).sort(), Array.from({ length: 30 }, (_, i) => nameOf(i)).sort());
  const heads1 = await storageCalls(url, 'head');
  const second = await list();
  const heads2 = await storageCalls(url, 'head');
  t.equal(heads2 - heads1, 0, `the second listing made no HEAD (the first made ${heads1 - heads0})`);
  t.ok(
    second.models.every((m) => m.version === 1),
    'and says what the first said',
  );

  t.equal((await put(`${url}/models/m-3`, model('m-3 again', 4096), { 'x-model-label-stage': 'new' })).status, 200);
  const afterReplace = await list();
  const heads3 = await storageCalls(url, 'head');
  const m3 = afterReplace.models.find((m) => m.name === 'm-3')!;
  t.same([m3.version, m3.labels.stage], [2, 'new'], 'a replace shows at once');
  t.ok(heads3 - heads2 <= 2, `only the changed model is HEADed again (${heads3 - heads2})`);

  // A rollback publishes the bytes of v1 again: the same ETag on S3, new metadata.
  await new Promise((r) => setTimeout(r, 1100));
  const rolled = await fetch(`${url}/models/m-3/rollback`, {
    method: 'POST',
    body: JSON.stringify({ version: 1 }),
    headers: { 'content-type': 'application/json' },
  });
  t.equal(rolled.status, 200);
  const m3b = (await list()).models.find((m) => m.name === 'm-3')!;
  t.equal(m3b.version, 3, 'a rollback shows at once too (same bytes, new number)');
});
