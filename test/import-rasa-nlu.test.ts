/**
 * `migrate --from-layout rasa-nlu-mongodb`: Rasa NLU model documents written with pymongo into
 * FerretDB are packed into deterministic `{model_name}.tar.gz` archives, published at a local
 * directory and at MinIO, and served by a registry (/versions, /files, file contents); reruns skip;
 * a dry run writes nothing; bad documents fail alone; a collection that is not Rasa NLU's is one line.
 */
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import t, { type Test } from 'tap';
import { sha256 } from './helpers/assert.js';
import { ferretEnv, minioEnv } from './helpers/cloud.js';
import { startFerretDb, startMinio } from './helpers/emulators.js';
import { collector, runMigrate, envFile as writeEnv } from './helpers/migrate.js';
import { start, tempDir } from './helpers/server.js';
import { python, venvBin } from './helpers/tools.js';

const ROOT = path.resolve(import.meta.dirname, '..');
const [ferret, minio] = await Promise.all([startFerretDb(), startMinio()]);
t.teardown(() => Promise.all([ferret.dispose(), minio.dispose()]));
const work = await tempDir(t, 'mr-rasa-nlu-');

const envFile = (name: string, vars: Record<string, string>) => writeEnv(work, name, vars);
const run = (options: Parameters<typeof runMigrate>[0]) => runMigrate({ fromLayout: 'rasa-nlu-mongodb', ...options });

type FileSpec = { text: string } | { base64: string };
interface DocSpec {
  model_name?: string;
  files?: Record<string, FileSpec>;
  raw?: Record<string, unknown>;
}

/** Inserts documents with pymongo (the venv's), as Rasa NLU's persistence writes them. */
async function insert(database: string, collection: string, documents: DocSpec[]): Promise<string[]> {
  const spec = path.join(work, `spec-${collection}.json`);
  await writeFile(spec, JSON.stringify({ documents }));
  const { stdout } = await python([
    path.join(ROOT, 'test', 'python', 'rasa_nlu_documents.py'),
    ferret.url,
    database,
    collection,
    spec,
  ]);
  return stdout.trim().split('\n');
}

const base = ferretEnv(ferret);
const DB = base.MONGODB_DATABASE!;
const pickle = randomBytes(3000);
const MODELS: Record<string, Record<string, Buffer>> = {
  'model_20161111-180000': {
    'metadata.json': Buffer.from(
      JSON.stringify({ language: 'en', pipeline: ['nlp_spacy', 'intent_classifier_sklearn'] }),
    ),
    'training_data.json': Buffer.from('{"rasa_nlu_data": {"common_examples": []}}'),
    'intent_classifier.pkl': pickle,
    'entity_extractor/crf_model.pkl': randomBytes(1500),
  },
  'model_20161112-090000': {
    'metadata.json': Buffer.from('{"language": "de"}'),
    'regex/patterns.json': Buffer.from('[]'),
  },
};
const specOf = (files: Record<string, Buffer>): Record<string, FileSpec> =>
  Object.fromEntries(
    Object.entries(files).map(([p, b]) => [
      p,
      p.endsWith('.json') ? { text: b.toString('utf8') } : { base64: b.toString('base64') },
    ]),
  );
const ids = await insert(
  DB,
  'rasa_models',
  Object.entries(MODELS).map(([model_name, files]) => ({ model_name, files: specOf(files) })),
);
const fromFile = await envFile('rasa.env', { ...base, MONGODB_COLLECTION: 'rasa_models' });

/** Every model, its versions, manifest and file contents through a registry on `env`. */
async function checkServed(tt: Test, env: Record<string, string>) {
  const r = await start(tt, env);
  const listed = (await (await fetch(`${r.url}/models`)).json()) as { models: { name: string }[] };
  tt.same(listed.models.map((m) => m.name).sort(), Object.keys(MODELS).sort(), 'every document is a model');
  const digests: Record<string, string> = {};
  for (const [name, files] of Object.entries(MODELS)) {
    const versions = (await (await fetch(`${r.url}/models/${name}/versions`)).json()) as {
      current: number;
      versions: { version: number; sha256: string; labels: Record<string, string> }[];
    };
    tt.match(
      versions,
      { current: 1, versions: [{ version: 1, labels: { imported_from: 'rasa-nlu-mongodb' } }] },
      `${name}: one version`,
    );
    tt.equal(versions.versions.length, 1);
    const archive = Buffer.from(await (await fetch(`${r.url}/models/${name}`)).arrayBuffer());
    tt.equal(sha256(archive), versions.versions[0]!.sha256, 'the archive served is the version listed');
    digests[name] = versions.versions[0]!.sha256;
    const manifest = (await (await fetch(`${r.url}/models/${name}/files`)).json()) as {
      files: { path: string; type: string; size: number }[];
    };
    const filesListed = manifest.files.filter((f) => f.type === 'file').map((f) => [f.path, f.size]);
    tt.same(
      filesListed.sort(),
      Object.entries(files)
        .map(([p, b]) => [p, b.length])
        .sort(),
      `${name}: the manifest has each file with its size`,
    );
    for (const [p, b] of Object.entries(files)) {
      const res = await fetch(`${r.url}/models/${name}/files/${p}`);
      tt.equal(res.status, 200, p);
      tt.ok(Buffer.from(await res.arrayBuffer()).equals(b), `${name}/${p}: the bytes of the document`);
    }
  }
  return digests;
}

let localDigests: Record<string, string> = {};

t.test(
  'FerretDB → local: a dry run first, then every document a model, served with its files; a rerun skips',
  async (t) => {
    const to = await envFile('rasa-local.env', { REMOTE_STORAGE: 'local', LOCAL_STORAGE_DIR: 'rasa-local' });
    const dry = await run({ from: fromFile, to, dryRun: true });
    t.equal(dry.summary.exitCode, 0, dry.out);
    t.equal(dry.summary.wouldCopy, 6, 'per model: record, history bytes, current');
    t.match(dry.out, /^would copy model_20161111-180000 v1 \(\d+(\.\d)? (B|KiB)\)$/m);
    // (A dry run opens the destination, which makes its working folders.)
    t.same(
      (await readdir(path.join(work, 'rasa-local')).catch(() => [] as string[])).filter((f) => !f.startsWith('.')),
      [],
      'the dry run wrote no model',
    );

    const first = await run({ from: fromFile, to });
    t.equal(first.summary.exitCode, 0, first.out);
    t.equal(first.summary.copied, 6);
    t.match(first.out, /^reading the rasa-nlu-mongodb layout from mongodb .*\(.*rasa\.env\)$/m);
    t.match(first.out, /^importing rasa-nlu-mongodb from mongodb /m);
    t.match(first.out, /^copied model_20161111-180000 v1 record \(\d+ B\)$/m);
    localDigests = await checkServed(t, { LOCAL_STORAGE_DIR: path.join(work, 'rasa-local') });
    const versions = (await (
      await fetch(
        `${(await start(t, { LOCAL_STORAGE_DIR: path.join(work, 'rasa-local') })).url}/models/model_20161111-180000/versions`,
      )
    ).json()) as { versions: { createdAt: string; labels: Record<string, string> }[] };
    t.equal(versions.versions[0]!.labels['rasa_nlu.document_id'], ids[0], 'the document id is a label');
    t.equal(
      versions.versions[0]!.createdAt,
      new Date(parseInt(ids[0]!.slice(0, 8), 16) * 1000).toISOString(),
      'createdAt is the ObjectId time',
    );

    const again = await run({ from: fromFile, to });
    t.equal(again.summary.exitCode, 0);
    t.equal(again.summary.copied, 0);
    t.equal(again.summary.skipped, 6);
    t.equal(again.summary.line, 'nothing to copy: all 6 objects already identical');
  },
);

t.test('FerretDB → MinIO: the same archives, byte for byte (the tar is deterministic)', async (t) => {
  const vars = minioEnv(minio);
  const to = await envFile('rasa-minio.env', vars);
  const bar = collector(true);
  const first = await run({ from: fromFile, to, stderr: bar });
  t.equal(first.summary.exitCode, 0, first.out);
  t.equal(first.summary.copied, 6);
  t.match(bar.text, /\r\x1b\[K\[#{20}\] 100% .* \(6\/6 objects\)/, 'the progress bar on a TTY');
  const digests = await checkServed(t, vars);
  t.same(digests, localDigests, 'packed twice, the same sha256');
  const again = await run({ from: fromFile, to });
  t.equal(again.summary.skipped, 6, 'a rerun is skipped as identical');
});

t.test(
  'the archive: sorted names, parent directories, fixed mtime, uid/gid 0, fixed modes (read with Python tarfile)',
  async (t) => {
    const file = path.join(work, 'rasa-local', 'model_20161111-180000.tar.gz');
    const { stdout } = await python([
      '-c',
      `
import json, sys, tarfile
with tarfile.open(sys.argv[1], "r:gz") as tar:
    print(json.dumps([[m.name, m.type.decode(), m.mtime, m.uid, m.gid, m.uname, m.gname, oct(m.mode)] for m in tar.getmembers()]))
`,
      file,
    ]);
    const members = JSON.parse(stdout) as [string, string, number, number, number, string, string, string][];
    const mtime = parseInt(ids[0]!.slice(0, 8), 16);
    t.same(members, [
      ['entity_extractor', '5', mtime, 0, 0, '', '', '0o755'],
      ['entity_extractor/crf_model.pkl', '0', mtime, 0, 0, '', '', '0o644'],
      ['intent_classifier.pkl', '0', mtime, 0, 0, '', '', '0o644'],
      ['metadata.json', '0', mtime, 0, 0, '', '', '0o644'],
      ['training_data.json', '0', mtime, 0, 0, '', '', '0o644'],
    ]);
  },
);

t.test('documents that are not models fail alone, each with its reason; the good ones are copied', async (t) => {
  await insert(DB, 'mixed', [
    { model_name: 'model_good', files: { 'metadata.json': { text: '{}' } } },
    { model_name: 'model_escape', files: { '../../etc/passwd': { text: 'x' } } },
    { raw: { model_name: 'model_nofiles' } },
    { model_name: 'model_twice', files: { 'a.json': { text: '1' } } },
    { model_name: 'model_twice', files: { 'a.json': { text: '2' } } },
    { model_name: 'bad name!', files: { 'a.json': { text: '1' } } },
  ]);
  const from = await envFile('mixed.env', { ...base, MONGODB_COLLECTION: 'mixed' });
  const to = await envFile('mixed-dest.env', { REMOTE_STORAGE: 'local', LOCAL_STORAGE_DIR: 'mixed-dest' });
  const { summary, out } = await run({ from, to });
  t.equal(summary.exitCode, 1);
  t.equal(summary.failed, 4);
  t.equal(summary.copied, 3, 'model_good: record, history, current');
  t.match(
    out,
    /^FAILED model_escape v1: document \S+: files\[0\]\.path "\.\.\/\.\.\/etc\/passwd" has an empty, '\.' or '\.\.' segment$/m,
  );
  t.match(out, /^FAILED model_nofiles v1: document \S+: it has no files array/m);
  t.match(
    out,
    /^FAILED model_twice v1: 2 documents have model_name model_twice \(_id \S+, \S+\): keep one and rerun$/m,
  );
  t.match(out, /^FAILED bad name! v1: model_name "bad name!" is not a model name the registry accepts/m);
  t.same(
    (await readdir(path.join(work, 'mixed-dest'))).filter((f) => !f.startsWith('.')),
    ['model_good.tar.gz'],
  );
});

t.test("a collection that is not Rasa NLU's: one line naming it, nothing written", async (t) => {
  await insert(DB, 'not_models', [{ raw: { name: 'something', value: 1 } }]);
  const to = await envFile('none-dest.env', { REMOTE_STORAGE: 'local', LOCAL_STORAGE_DIR: 'none-dest' });
  for (const [collection, why] of [
    ['not_models', /none of its 1 documents has a model_name/],
    ['missing', /it is empty or does not exist/],
  ] as const) {
    const from = await envFile(`${collection}.env`, { ...base, MONGODB_COLLECTION: collection });
    const err = await run({ from, to }).then(
      () => undefined,
      (e: Error) => e,
    );
    t.equal(err?.name, 'ConfigError', collection);
    t.match(
      err?.message,
      new RegExp(`^\\S+${collection}\\.env \\(${DB}\\.${collection}\\) is not a Rasa NLU model collection: `),
    );
    t.match(err?.message, why);
    t.notMatch(err?.message, /\n/, 'one line');
  }
  const wrongBackend = await envFile('wrong.env', { REMOTE_STORAGE: 'local', LOCAL_STORAGE_DIR: '.' });
  const err = await run({ from: wrongBackend, to: fromFile }).then(
    () => undefined,
    (e: Error) => e,
  );
  t.match(err?.message, /--from-layout rasa-nlu-mongodb reads a MongoDB collection, but REMOTE_STORAGE=local/);
});

t.test(
  'every copied byte is verified: a document changed between planning and copying fails, nothing of it is published',
  async (t) => {
    const [id] = await insert(DB, 'changing', [
      { model_name: 'model_changing', files: { 'metadata.json': { text: '{"v": 1}' } } },
    ]);
    const from = await envFile('changing.env', { ...base, MONGODB_COLLECTION: 'changing' });
    const to = await envFile('changing-dest.env', { REMOTE_STORAGE: 'local', LOCAL_STORAGE_DIR: 'changing-dest' });
    let changed = false;
    const { summary, out } = await run({
      from,
      to,
      concurrency: 1,
      // The record goes first; the archive is packed again from the document when it is copied.
      onObject: () => {
        if (changed) return;
        changed = true;
        execFileSync(
          venvBin('python'),
          [
            '-c',
            `
import sys
from bson import ObjectId
from pymongo import MongoClient
c = MongoClient(sys.argv[1], serverSelectionTimeoutMS=5000)
c[sys.argv[2]]["changing"].update_one({"_id": ObjectId(sys.argv[3])}, {"$set": {"files": [{"path": "metadata.json", "content": "{\\"v\\": 2}"}]}})
`,
            ferret.url,
            DB,
            id!,
          ],
          { env: { PATH: process.env.PATH ?? '', PYTHONNOUSERSITE: '1' } },
        );
      },
    });
    t.equal(summary.exitCode, 1);
    // The size is checked at the end of the stream beside the digest; either says the bytes changed.
    t.match(
      out,
      /^FAILED model_changing v1: (digest mismatch: the source's metadata says sha256 [0-9a-f]{64}, its bytes hash to [0-9a-f]{64}; nothing was written|read \d+ bytes, the source object has \d+)$/m,
    );
    t.match(out, /^FAILED model_changing v1: not copied because its history entry v1 failed$/m);
    t.same(
      (await readdir(path.join(work, 'changing-dest'))).filter((f) => !f.startsWith('.')),
      [],
      'no current object',
    );
  },
);

t.test('the built CLI: --from-layout rasa-nlu-mongodb, and an unknown layout is a usage error', async (t) => {
  const cli = path.join(ROOT, 'dist', 'cli.js');
  const newest = Math.max(
    ...['cli.ts', 'migrate/index.ts', 'layouts/index.ts', 'layouts/rasa-nlu-mongodb.ts'].map(
      (f) => statSync(path.join(ROOT, 'src', f)).mtimeMs,
    ),
  );
  if (!existsSync(cli) || statSync(cli).mtimeMs < newest) {
    await exec(process.execPath, [
      path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'),
      '-p',
      'tsconfig.build.json',
    ]);
  }
  const node = (...args: string[]) => exec(process.execPath, [cli, ...args], { cwd: work });
  await envFile('cli-dest.env', { REMOTE_STORAGE: 'local', LOCAL_STORAGE_DIR: 'cli-dest' });
  const first = await node(
    'migrate',
    '--from',
    'rasa.env',
    '--from-layout',
    'rasa-nlu-mongodb',
    '--to',
    'cli-dest.env',
  );
  t.equal(first.code, 0, first.stderr);
  t.match(first.stdout, /^copied 6 objects \(.*\), skipped 0 identical, 0 failed in \d+s$/m);
  const again = await node(
    'migrate',
    '--from',
    'rasa.env',
    '--from-layout',
    'rasa-nlu-mongodb',
    '--to',
    'cli-dest.env',
  );
  t.match(again.stdout, /^nothing to copy: all 6 objects already identical$/m);
  const bad = await node('migrate', '--from', 'rasa.env', '--from-layout', 'rasa', '--to', 'cli-dest.env');
  t.equal(bad.code, 2);
  t.match(
    bad.stderr,
    /^model-registry: --from-layout rasa is not a layout migrate reads: use registry, modelstore, rasa-nlu-mongodb$/m,
  );
  await envFile('cli-empty.env', { ...base, MONGODB_COLLECTION: 'nothing_here' });
  const empty = await node(
    'migrate',
    '--from',
    'cli-empty.env',
    '--from-layout',
    'rasa-nlu-mongodb',
    '--to',
    'cli-dest.env',
  );
  t.equal(empty.code, 1);
  t.equal(empty.stderr.trim().split('\n').length, 1, 'one line');
  t.match(
    empty.stderr,
    /cli-empty\.env \(\S+\.nothing_here\) is not a Rasa NLU model collection: it is empty or does not exist/,
  );
});

function exec(
  cmd: string,
  args: string[],
  options: { cwd?: string } = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: options.cwd ?? ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}
