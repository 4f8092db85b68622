/**
 * The README's "Using it with Rasa", run as written: Rasa's model-server pull (aiohttp, as Rasa's
 * agent makes it: If-None-Match with the ETag it has, 304 while nothing changed), Rasa's AWS
 * persistor on the registry's bucket (boto3, as Rasa calls it), and the README's Python upload
 * snippet — taken from the README itself, so the two cannot drift — retrying a 503 while MinIO
 * is down. The Python tools come from the venv that scripts/install.sh makes (npm test runs it).
 */
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { model } from './helpers/archives.js';
import { minioEnv } from './helpers/cloud.js';
import { startMinio } from './helpers/emulators.js';
import { headObject, rootAws, sha256, type VersionView } from './helpers/fidelity.js';
import { put, start, tempDir } from './helpers/server.js';
import { python } from './helpers/tools.js';

const ROOT = path.resolve(import.meta.dirname, '..');
const HERE = path.join(ROOT, 'test', 'rasa');
const minio = await startMinio();
t.teardown(() => minio.dispose());

const READ = 'read-token-for-rasa-0123456789';
const WRITE = 'write-token-for-training-0123456789';
const env: Record<string, string> = { ...minioEnv(minio), AUTH_TOKENS: `read:${READ},write:${WRITE}` };
const registry = await start(t, env);
const bucket = env.BUCKET_NAME!;
const s3env = {
  AWS_ENDPOINT_URL: minio.url,
  AWS_ACCESS_KEY_ID: env.AWS_ACCESS_KEY_ID!,
  AWS_SECRET_ACCESS_KEY: env.AWS_SECRET_ACCESS_KEY!,
  AWS_DEFAULT_REGION: 'us-east-1',
};
const work = await tempDir(t, 'mr-rasa-');
const auth = { authorization: `Bearer ${WRITE}` };

async function versions(base: string, name: string): Promise<VersionView[]> {
  const res = await fetch(`${base}/models/${name}/versions`, { headers: { authorization: `Bearer ${READ}` } });
  if (res.status !== 200) throw new Error(`/versions answered ${res.status}: ${await res.text()}`);
  return ((await res.json()) as { versions: VersionView[] }).versions;
}

interface Pulled {
  status: number;
  etag: string | null;
  file: string | null;
  body?: string;
}

async function pull(fingerprint = ''): Promise<Pulled> {
  const out = await python([
    path.join(HERE, 'pull.py'),
    `${registry.url}/models/intent`,
    work,
    fingerprint,
    `Bearer ${READ}`,
  ]);
  return JSON.parse(out.stdout) as Pulled;
}

t.test(
  "Rasa's model-server pull: the archive with its ETag, 304 while it is current, the new one after an upload",
  async (t) => {
    const v1 = model('rasa v1', 4096);
    t.equal((await put(`${registry.url}/models/intent`, v1, auth)).status, 201);
    const first = await pull();
    t.equal(first.status, 200, first.body ?? 'pulled');
    t.equal(first.etag, `"sha256:${sha256(v1)}"`, 'the fingerprint Rasa keeps is the ETag');
    t.equal(sha256(await readFile(first.file!)), sha256(v1), 'the archive, byte for byte');
    const again = await pull(first.etag!);
    t.equal(again.status, 304, 'nothing changed: Rasa keeps its model');
    const v2 = model('rasa v2', 4096);
    t.equal((await put(`${registry.url}/models/intent`, v2, auth)).status, 200);
    const next = await pull(first.etag!);
    t.equal(next.status, 200, 'a new version: Rasa loads it');
    t.equal(next.etag, `"sha256:${sha256(v2)}"`);
    t.equal(sha256(await readFile(next.file!)), sha256(v2));
    t.equal((await pull(next.etag!)).status, 304);
  },
);

t.test(
  "Rasa's AWS persistor on the registry's bucket: its upload is a new version, left as Rasa wrote it; it downloads what the registry publishes",
  async (t) => {
    const before = await versions(registry.url, 'intent');
    const published = before[0]!;
    const trained = path.join(work, 'trained.tar.gz');
    const bytes = model('trained by rasa', 4096);
    await writeFile(trained, bytes);
    await python([path.join(HERE, 'persistor_s3.py'), 'persist', bucket, 'intent.tar.gz', trained], { env: s3env });
    const aws = rootAws(minio);
    const written = await headObject(aws, bucket, 'intent.tar.gz');

    const now = await versions(registry.url, 'intent');
    t.equal(now[0]!.version, published.version + 1, "Rasa's upload is the next version");
    t.equal(now[0]!.sha256, sha256(bytes));
    t.same(now[0]!.labels, {}, 'with no labels');
    t.same(
      now.find((v) => v.version === published.version)?.sha256,
      published.sha256,
      'the version the registry had published is still in history',
    );
    const pulled = await pull(published.etag);
    t.equal(pulled.status, 200, 'the model server serves it to Rasa too');
    t.equal(sha256(await readFile(pulled.file!)), sha256(bytes));
    const after = await headObject(aws, bucket, 'intent.tar.gz');
    t.same(
      { etag: after.ETag, lastModified: after.LastModified, metadata: after.Metadata },
      { etag: written.ETag, lastModified: written.LastModified, metadata: written.Metadata },
      "the registry never wrote to Rasa's object",
    );

    const v = model('published by the registry', 4096);
    t.equal((await put(`${registry.url}/models/intent`, v, auth)).status, 200);
    const retrieved = path.join(work, 'retrieved.tar.gz');
    await python([path.join(HERE, 'persistor_s3.py'), 'retrieve', bucket, 'intent.tar.gz', retrieved], { env: s3env });
    t.equal(sha256(await readFile(retrieved)), sha256(v), 'rasa run --remote-storage aws gets the current version');
  },
);

t.test(
  "the README's Python upload snippet, as written: digest and labels sent, a 503 retried after Retry-After",
  async (t) => {
    const readme = await readFile(path.join(ROOT, 'README.md'), 'utf8');
    const section = readme.slice(readme.indexOf('## Using it with Rasa'));
    const block = /```python\n([\s\S]*?)```/.exec(section)?.[1];
    t.ok(block, 'the README has the snippet');
    const script = path.join(work, 'upload.py');
    // The snippet without a token sends none; this registry needs one: the same call with it.
    await writeFile(script, block!.replace('labels, token=None,', `labels, token=${JSON.stringify(WRITE)},`));
    const archive = path.join(work, 'model.tar.gz');
    const bytes = model('from a training job', 4096);
    await writeFile(archive, bytes);

    const ok = await python([script, registry.url, 'from-training', archive]);
    t.equal(ok.stdout.trim(), '1', 'prints the new version');
    const meta = (await versions(registry.url, 'from-training'))[0]!;
    t.equal(meta.sha256, sha256(bytes));
    t.same(meta.labels, { git_sha: '1a2b3c4', dataset: 'faq-2024' });

    // Storage down for a few seconds: the registry answers 503 with Retry-After; the snippet waits.
    await minio.stop();
    const retried = python([script, registry.url, 'from-training', archive], { timeoutMs: 90_000 });
    await new Promise((resolve) => setTimeout(resolve, 3000));
    await minio.restart();
    const out = await retried;
    t.equal(out.stdout.trim(), '2', 'the upload went through after the outage');
    t.equal((await versions(registry.url, 'from-training'))[0]!.sha256, sha256(bytes));

    // A refused upload ends the script with the registry's message.
    await writeFile(archive, 'not an archive');
    const bad = await python([script, registry.url, 'from-training', archive]).then(
      () => undefined,
      (err: Error) => err,
    );
    t.match(bad?.message, /upload failed: 422 The upload is not a valid model archive/);
  },
);
