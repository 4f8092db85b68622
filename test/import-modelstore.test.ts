/**
 * The modelstore layout and `migrate --from-layout modelstore`, on stores the modelstore library
 * itself wrote (test/python/modelstore_store.py): on the local file system and on MinIO (through
 * modelstore's AWS storage). The reader finds every domain, model id, archive and state in upload
 * order; the import makes each domain a model and each of its models a version, with the archive
 * bytes unchanged and modelstore's metadata as labels, checked through a registry's HTTP API.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import t, { type Test } from 'tap';
import { readModelstore } from '../src/layouts/modelstore.js';
import { minioEnv } from './helpers/cloud.js';
import { startMinio } from './helpers/emulators.js';
import { storageOf as openStorage, runMigrate, envFile as writeEnv } from './helpers/migrate.js';
import { start, tempDir } from './helpers/server.js';
import { python } from './helpers/tools.js';

const ROOT = path.resolve(import.meta.dirname, '..');
const minio = await startMinio();
t.teardown(() => minio.dispose());
const work = await tempDir(t, 'mr-modelstore-');
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

interface Written {
  uploads: { domain: string; model_id: string; deleted: boolean }[];
  states: Record<string, [string, string][]>;
}

const envFile = (name: string, vars: Record<string, string>) => writeEnv(work, name, vars);
const storageOf = (tt: Test, env: Record<string, string>) => openStorage(tt, env, { readOnly: true });
const run = (options: Parameters<typeof runMigrate>[0]) => runMigrate({ fromLayout: 'modelstore', ...options });

// ---- the two real stores ----
const localRoot = path.join(work, 'modelstore-root');
const local: Written = JSON.parse(
  (await python([path.join(ROOT, 'test', 'python', 'modelstore_store.py'), 'file', localRoot])).stdout,
);
const localVars = { REMOTE_STORAGE: 'local', LOCAL_STORAGE_DIR: localRoot };
const s3Vars: Record<string, string> = { ...minioEnv(minio), AUTO_CREATE_BUCKET: 'false' };
const s3Env = {
  AWS_ENDPOINT_URL: s3Vars.AWS_ENDPOINT_URL!,
  AWS_ACCESS_KEY_ID: s3Vars.AWS_ACCESS_KEY_ID!,
  AWS_SECRET_ACCESS_KEY: s3Vars.AWS_SECRET_ACCESS_KEY!,
  AWS_DEFAULT_REGION: 'us-east-1',
};
const s3: Written = JSON.parse(
  (await python([path.join(ROOT, 'test', 'python', 'modelstore_store.py'), 's3', s3Vars.BUCKET_NAME!], { env: s3Env }))
    .stdout,
);
const stores = [
  { label: 'local file system', vars: localVars, written: local },
  { label: 'MinIO', vars: s3Vars, written: s3 },
] as const;

/** What the import should make of a store: per domain, [version, model id] of the live models. */
function expectedVersions(w: Written): Record<string, [number, string][]> {
  const out: Record<string, [number, string][]> = {};
  for (const domain of ['intent', 'entities']) {
    out[domain] = w.uploads
      .filter((u) => u.domain === domain)
      .map((u, i) => [i + 1, u.model_id, u.deleted] as const)
      .filter(([, , d]) => !d)
      .map(([v, id]) => [v, id]);
  }
  return out;
}

for (const store of stores) {
  t.test(`the reader on a ${store.label} store modelstore wrote`, async (t) => {
    const storage = await storageOf(t, store.vars);
    const read = await readModelstore(storage, 'test.env');
    t.same([...read.domains].sort(), ['entities', 'intent']);
    t.same([...read.states].sort(), ['production', 'shadow'], 'states (the reserved modelstore-deleted excepted)');
    for (const domain of read.domains) {
      const models = read.models.get(domain)!;
      t.same(
        models.map((m) => [m.modelId, m.deleted]),
        store.written.uploads.filter((u) => u.domain === domain).map((u) => [u.model_id, u.deleted]),
        `${domain}: every model, in upload order`,
      );
      for (const m of models) {
        const tagged = Object.entries(store.written.states)
          .filter(([, pairs]) => pairs.some(([d, id]) => d === domain && id === m.modelId))
          .map(([s]) => s);
        t.same(m.states, tagged, `${domain} ${m.modelId}: its states`);
        if (m.deleted) continue;
        t.match(
          m.archiveKey,
          new RegExp(
            `^operatorai-model-store/${domain}/\\d{4}\\.\\d\\d\\.\\d\\d-\\d\\d\\.\\d\\d\\.\\d\\d/${m.modelId}/artifacts\\.tar\\.gz$`,
          ),
        );
        t.match(m.createdAt, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.000Z$/);
        t.match(m.meta, {
          model: { domain, model_id: m.modelId, model_type: { library: 'model_file' } },
          modelstore: '0.0.82',
        });
      }
    }
  });
}

for (const store of stores) {
  t.test(
    `${store.label} store → a registry: each domain a model, each model a version, archives unchanged`,
    async (t) => {
      const from = await envFile(`from-${store.written.uploads[0]!.model_id}.env`, store.vars);
      const destDir = path.join(work, `dest-${store.written.uploads[0]!.model_id}`);
      const to = await envFile(`to-${store.written.uploads[0]!.model_id}.env`, {
        REMOTE_STORAGE: 'local',
        LOCAL_STORAGE_DIR: destDir,
      });
      // Per version: record + history bytes; per model: the current object. intent 3, entities 2;
      // and per model a state tags, its aliases document.
      const tagged = new Set(Object.values(store.written.states).flatMap((pairs) => pairs.map(([domain]) => domain)));
      const OBJECTS = 3 * 2 + 1 + 2 * 2 + 1 + tagged.size;

      const dry = await run({ from, to, dryRun: true });
      t.equal(dry.summary.wouldCopy, OBJECTS, dry.out);
      t.equal(dry.summary.exitCode, 0);

      const first = await run({ from, to });
      t.equal(first.summary.exitCode, 0, first.out);
      t.equal(first.summary.copied, OBJECTS);
      t.match(first.out, /^importing modelstore from /m);
      t.match(first.out, /^copied intent v3 \(\d+ B\)$/m);
      const expected = expectedVersions(store.written);
      t.notMatch(first.out, /not imported/, 'every state became an alias');

      const r = await start(t, { LOCAL_STORAGE_DIR: destDir });
      // Each state is an alias on the version it tags: domain@state serves that version.
      for (const [state, pairs] of Object.entries(store.written.states)) {
        for (const [domain, id] of pairs) {
          const version = expected[domain]!.find(([, m]) => m === id)![0];
          const meta = (await (await fetch(`${r.url}/models/${domain}@${state}/meta`)).json()) as {
            version: number;
            aliases: string[];
          };
          t.equal(meta.version, version, `${domain}@${state} is v${version} (modelstore model ${id})`);
          t.ok(meta.aliases.includes(state));
        }
      }
      const storage = await storageOf(t, store.vars);
      const catalogue = await readModelstore(storage, 'test.env');
      const listed = (await (await fetch(`${r.url}/models`)).json()) as { models: { name: string }[] };
      t.same(listed.models.map((m) => m.name).sort(), ['entities', 'intent']);
      for (const [domain, versions] of Object.entries(expected)) {
        const body = (await (await fetch(`${r.url}/models/${domain}/versions`)).json()) as {
          current: number;
          versions: { version: number; sha256: string; createdAt: string; labels: Record<string, string> }[];
        };
        t.equal(body.current, versions.at(-1)![0], `${domain}: the newest upload is current`);
        t.same(
          body.versions.map((v) => [v.version, v.labels['modelstore.model_id']]),
          [...versions].reverse(),
          `${domain}: versions in upload order, a deleted model's number unused`,
        );
        for (const [version, id] of versions) {
          const m = catalogue.models.get(domain)!.find((x) => x.modelId === id)!;
          const { body: archiveBody } = await storage.get(m.archiveKey!);
          const chunks: Buffer[] = [];
          for await (const c of archiveBody) chunks.push(c as Buffer);
          const original = Buffer.concat(chunks);
          const served = Buffer.from(await (await fetch(`${r.url}/models/${domain}?version=${version}`)).arrayBuffer());
          t.ok(served.equals(original), `${domain} v${version}: the artifacts.tar.gz bytes, unchanged`);
          const v = body.versions.find((x) => x.version === version)!;
          t.equal(v.sha256, sha256(original));
          t.equal(v.createdAt, m.createdAt);
          const code = m.meta.code as { user: string; runtime: string; dependencies: Record<string, string | null> };
          t.match(
            v.labels,
            {
              'modelstore.model_id': id,
              'modelstore.uploader': code.user,
              'modelstore.version': '0.0.82',
              'modelstore.runtime': code.runtime,
              'modelstore.library': 'model_file',
              'lib.joblib': code.dependencies.joblib!,
            },
            `${domain} v${version}: modelstore's metadata as labels`,
          );
        }
        const files = (await (await fetch(`${r.url}/models/${domain}/files`)).json()) as { files: { path: string }[] };
        t.ok(
          files.files.some((f) => f.path.endsWith('.json')),
          `${domain}: its files are served`,
        );
      }

      const again = await run({ from, to });
      t.equal(again.summary.exitCode, 0);
      t.equal(again.summary.copied, 0);
      t.equal(again.summary.line, `nothing to copy: all ${OBJECTS} objects already identical`);
    },
  );
}

t.test('modelstore → MinIO: published in the registry layout on a bucket too', async (t) => {
  const from = await envFile('ms-local.env', localVars);
  const vars = minioEnv(minio);
  const to = await envFile('ms-minio.env', vars);
  const first = await run({ from, to });
  t.equal(first.summary.exitCode, 0, first.out);
  const r = await start(t, vars);
  const body = (await (await fetch(`${r.url}/models/intent/versions`)).json()) as {
    current: number;
    versions: { version: number }[];
  };
  t.equal(body.current, 3);
  t.same(
    body.versions.map((v) => v.version),
    [3, 2, 1],
  );
  const archive = await readFile(
    path.join(
      localRoot,
      (await readModelstore(await storageOf(t, localVars), 'x')).models.get('intent')![0]!.archiveKey!,
    ),
  );
  t.ok(Buffer.from(await (await fetch(`${r.url}/models/intent?version=1`)).arrayBuffer()).equals(archive));
});

t.test('a source that is not a modelstore store: one line, nothing copied', async (t) => {
  const registryDir = path.join(work, `dest-${local.uploads[0]!.model_id}`); // the registry store made above
  const from = await envFile('not-modelstore.env', { REMOTE_STORAGE: 'local', LOCAL_STORAGE_DIR: registryDir });
  const to = await envFile('nowhere.env', { REMOTE_STORAGE: 'local', LOCAL_STORAGE_DIR: 'nowhere' });
  const err = await run({ from, to }).then(
    () => undefined,
    (e: Error) => e,
  );
  t.equal(err?.name, 'ConfigError');
  t.match(
    err?.message,
    /not-modelstore\.env holds no modelstore store: there is no operatorai-model-store\/domains\/\*\.json\. Point --from at the bucket or directory modelstore writes to .*, or drop --from-layout: it looks like a registry store$/,
  );
  t.notMatch(err?.message, /\n/);
  const mongo = await envFile('ms-mongo.env', { REMOTE_STORAGE: 'mongodb', MONGODB_URI: 'mongodb://127.0.0.1:1/' });
  const wrong = await run({ from: mongo, to }).then(
    () => undefined,
    (e: Error) => e,
  );
  t.match(
    wrong?.message,
    /--from-layout modelstore reads a modelstore store on local files, S3, GCS or Azure; modelstore has no MongoDB storage/,
  );
});
