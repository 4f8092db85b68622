/**
 * `model-registry migrate` on real servers: local → MinIO → Azurite → local keeps every version,
 * digest, label and creation time, of namespaced models too; reruns copy nothing; an interrupted
 * run resumes; a dry run changes nothing; a corrupted source object fails alone; the built CLI
 * prints plain lines.
 */
import { spawn } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import t from 'tap';
import type { Storage } from '../src/storage/index.js';
import { model } from './helpers/archives.js';
import { sha256 } from './helpers/assert.js';
import { azuriteEnv, minioEnv } from './helpers/cloud.js';
import { startAzurite, startMinio } from './helpers/emulators.js';
import { collector, runMigrate, storageOf, envFile as writeEnv } from './helpers/migrate.js';
import { put, start, tempDir } from './helpers/server.js';

const ROOT = path.resolve(import.meta.dirname, '..');
const [minio, azurite] = await Promise.all([startMinio(), startAzurite()]);
t.teardown(() => Promise.all([minio.dispose(), azurite.dispose()]));

/** A directory holding the .env files; local storage dirs are given relative to it. */
const work = await tempDir(t, 'mr-migrate-');

const envFile = (name: string, vars: Record<string, string>) => writeEnv(work, name, vars);
const run = runMigrate;

async function keysIn(storage: Storage, prefix = ''): Promise<string[]> {
  const out: string[] = [];
  for await (const info of storage.list(prefix)) out.push(info.key);
  return out;
}

// ---- the original registry: 3 models with history and labels, and one foreign archive ----
const NAMES = ['alpha', 'beta', 'gamma', 'foreign', 'nlp', 'nlp/intent', 'team/nlp/de/intent'];
// Each published version is kept as history bytes and a record, beside the model's current object:
// alpha v1-v4, beta v1-v3, gamma v1-v3; foreign's current object and the record the registry
// wrote of it when it first read it; alpha's aliases document. Namespaced models beside a model
// nlp: nlp v1, nlp/intent v1-v2 and its aliases document, team/nlp/de/intent v1.
const OBJECTS = 4 * 2 + 1 + (3 * 2 + 1) + (3 * 2 + 1) + 2 + 1 + (2 + 1) + (2 * 2 + 1 + 1) + (2 + 1);
const sourceDir = path.join(work, 'source');
const original = await start(t, { LOCAL_STORAGE_DIR: sourceDir, MODEL_HISTORY: '3' });
for (const [name, uploads] of [
  ['alpha', 4],
  ['beta', 3],
  ['gamma', 3],
  ['nlp', 1],
  ['nlp/intent', 2],
  ['team/nlp/de/intent', 1],
] as const) {
  for (let v = 1; v <= uploads; v++) {
    const res = await put(`${original.url}/models/${name}`, model(`${name}-${v}`, 2048), {
      'x-model-label-git_sha': `${name}${v}`,
      'x-model-label-stage': v % 2 ? 'dev' : 'prod',
    });
    if (res.status >= 300) throw new Error(`upload ${name} v${v}: ${res.status} ${await res.text()}`);
  }
}
for (const [name, alias, version] of [
  ['alpha', 'production', 2],
  ['alpha', 'staging', 4],
  ['nlp/intent', 'production', 1],
] as const) {
  const res = await fetch(`${original.url}/models/${name}/aliases/${alias}`, {
    method: 'PUT',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ version }),
  });
  if (res.status !== 201) throw new Error(`alias ${alias}: ${res.status} ${await res.text()}`);
}
const foreignBytes = model('foreign', 2048);
await writeFile(path.join(sourceDir, 'foreign.tar.gz'), foreignBytes); // put there by hand: no metadata

const localEnv = await envFile('local.env', { REMOTE_STORAGE: 'local', LOCAL_STORAGE_DIR: 'source' }); // relative to the .env file
const minioVars = minioEnv(minio);
const minioFile = await envFile('minio.env', minioVars);
const azureVars = azuriteEnv(azurite);
const azureFile = await envFile('azure.env', azureVars);
const finalDir = path.join(work, 'final');
const finalFile = await envFile('final.env', { REMOTE_STORAGE: 'local', LOCAL_STORAGE_DIR: 'final' });

async function versionsAt(url: string): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = {};
  for (const name of NAMES) {
    const res = await fetch(`${url}/models/${name}/versions`);
    out[name] = res.ok ? await res.json() : res.status;
  }
  return out;
}

// Read once now: the registry identifies the foreign archive and records it (its own file beside
// the archive, which it leaves as it is); migrate carries that record.
const expected = await versionsAt(original.url);

t.test('local → MinIO → Azurite → local keeps every version, digest, label and createdAt', async (t) => {
  const bar = collector(true);
  const leg1 = await run({ from: localEnv, to: minioFile, stderr: bar, concurrency: 3 });
  t.equal(leg1.summary.exitCode, 0);
  t.equal(leg1.summary.copied, OBJECTS, 'every object copied');
  t.match(leg1.out, /^copied alpha v1 \(\d+\.\d KiB\)$/m, 'a plain line per object on stdout');
  t.match(leg1.out, /^copied foreign v1 /m);
  t.match(
    leg1.summary.line,
    new RegExp(`^copied ${OBJECTS} objects \\(\\d+\\.\\d KiB\\), skipped 0 identical, 0 failed in \\d+s$`),
  );
  t.match(leg1.out, /^copied alpha v1 record \(\d+ B\)$/m, 'records are copied as they are');
  t.match(leg1.out, /^copied alpha aliases \(\d+ B\)$/m, 'and the aliases document');
  t.match(leg1.out, /^copied nlp\/intent v2 \(\d+\.\d KiB\)$/m, 'namespaced models too');
  t.match(leg1.out, /^copied nlp\/intent aliases \(\d+ B\)$/m);
  t.match(leg1.out, /^copied team\/nlp\/de\/intent v1 /m, 'at every depth');
  t.match(
    bar.text,
    new RegExp(
      `\\r\\x1b\\[K\\[#{20}\\] 100% \\d+\\.\\d KiB \\/ \\d+\\.\\d KiB {2}\\S+ \\S+\\/s {2}ETA \\S+ {2}\\(${OBJECTS}\\/${OBJECTS} objects\\)`,
    ),
    'a progress bar on the TTY',
  );
  t.same(statSync(path.join(sourceDir, 'foreign.tar.gz')).size, foreignBytes.length);
  t.match(
    expected.alpha,
    { current: 4, versions: [{ version: 4 }, { version: 3 }, { version: 2 }, { version: 1 }] },
    'alpha has 3 history versions',
  );
  t.match(expected.foreign, { current: 1, versions: [{ version: 1, sha256: sha256(foreignBytes), labels: {} }] });

  const leg2 = await run({ from: minioFile, to: azureFile });
  t.equal(leg2.summary.copied, OBJECTS);
  const leg3 = await run({ from: azureFile, to: finalFile });
  t.equal(leg3.summary.copied, OBJECTS);
  t.equal(leg3.summary.exitCode, 0);

  const final = await start(t, { LOCAL_STORAGE_DIR: finalDir });
  t.same(await versionsAt(final.url), expected, 'same versions, sha256, sizes, labels, createdAt and aliases');
  const aliasesAt = async (url: string, name = 'alpha') =>
    (await (await fetch(`${url}/models/${name}/aliases`)).json()) as { aliases: { alias: string; version: number }[] };
  t.same(await aliasesAt(final.url), await aliasesAt(original.url), 'aliases survive the three legs');
  t.match((await aliasesAt(final.url, 'nlp/intent')).aliases, [{ alias: 'production', version: 1 }]);
  t.same((await aliasesAt(final.url, 'nlp')).aliases, [], "nlp has none of nlp/intent's");
  t.match((await aliasesAt(final.url)).aliases, [
    { alias: 'production', version: 2 },
    { alias: 'staging', version: 4 },
  ]);
  const promoted = await fetch(`${final.url}/models/alpha@production`);
  t.equal(promoted.headers.get('x-model-version'), '2', 'alpha@production serves v2 at the destination');
  await promoted.arrayBuffer();
  const listed = (await (await fetch(`${final.url}/models`)).json()) as { models: { name: string }[] };
  t.same(listed.models.map((m) => m.name).sort(), [...NAMES].sort());
  const old = await fetch(`${final.url}/models/beta?version=1`);
  t.equal(
    sha256(Buffer.from(await old.arrayBuffer())),
    (expected.beta as { versions: { sha256: string }[] }).versions.at(-1)!.sha256,
    'history bytes intact',
  );

  t.test('a rerun of each leg copies nothing and says so', async (t) => {
    for (const [from, to] of [
      [localEnv, minioFile],
      [minioFile, azureFile],
      [azureFile, finalFile],
    ] as const) {
      const again = await run({ from, to });
      t.equal(again.summary.copied, 0, `${path.basename(from)} → ${path.basename(to)}`);
      t.equal(again.summary.skipped, OBJECTS);
      t.equal(again.summary.exitCode, 0);
      t.equal(again.summary.line, `nothing to copy: all ${OBJECTS} objects already identical`);
      t.match(again.out, /^skipped gamma v2 \(identical\)$/m);
    }
  });
});

t.test(
  'into a registry whose uploads went in place (MinIO: history objects carry no digest, their records do): the same versions are identical, never a conflict',
  async (t) => {
    const vars = minioEnv(minio);
    const s3 = await start(t, vars);
    t.equal((await put(`${s3.url}/models/up`, model('up-1', 2048))).status, 201);
    t.equal((await put(`${s3.url}/models/up`, model('up-2', 2048))).status, 200);
    const there = await storageOf(t, vars);
    t.notOk((await there.head('.history/up/v1.tar.gz')).metadata.sha256, 'an upload in place: no digest on its object');
    const s3File = await envFile('in-place.env', vars);
    const copyFile = await envFile('in-place-copy.env', {
      REMOTE_STORAGE: 'local',
      LOCAL_STORAGE_DIR: 'in-place-copy',
    });
    const out = await run({ from: s3File, to: copyFile });
    t.equal(out.summary.exitCode, 0);
    const back = await run({ from: copyFile, to: s3File });
    t.equal(back.summary.exitCode, 0, back.summary.line);
    t.equal(back.summary.copied, 0, 'nothing copied back');
    t.equal(back.summary.failed, 0, 'no conflict');
    t.equal(back.summary.skipped, out.summary.copied, 'every object identical');
    const local = await start(t, { LOCAL_STORAGE_DIR: path.join(work, 'in-place-copy') });
    t.same(await versionsAt(local.url), await versionsAt(s3.url), 'the copy has the same versions');
  },
);

t.test('an interrupted run resumes: the rerun copies the rest', async (t) => {
  const vars = minioEnv(minio);
  const file = await envFile('interrupted.env', vars);
  const controller = new AbortController();
  const first = await run({
    from: localEnv,
    to: file,
    concurrency: 1,
    signal: controller.signal,
    onObject: (r) => {
      if (r.status === 'copied') controller.abort();
    },
  });
  t.equal(first.summary.interrupted, true);
  t.equal(first.summary.copied, 1);
  t.equal(first.summary.notCopied, OBJECTS - 1);
  t.equal(first.summary.exitCode, 1);
  t.match(first.summary.line, /^interrupted: copied 1 object .* rerun the same command to resume$/);
  const dest = await storageOf(t, vars);
  t.same(await keysIn(dest), [], 'history goes first: no current object without its history');
  t.same(await keysIn(dest, '.history/alpha/'), ['.history/alpha/v1.json'], "a version's record goes before its bytes");

  const second = await run({ from: localEnv, to: file });
  t.equal(second.summary.exitCode, 0);
  t.equal(second.summary.skipped, 1, 'the object copied before the interruption is skipped');
  t.equal(second.summary.copied, OBJECTS - 1);
  const r = await start(t, vars);
  t.same(await versionsAt(r.url), expected, 'complete and identical');
});

t.test('a dry run prints the plan and changes nothing', async (t) => {
  const vars = minioEnv(minio);
  const file = await envFile('dry.env', vars);
  const { summary, out } = await run({ from: localEnv, to: file, dryRun: true });
  t.equal(summary.wouldCopy, OBJECTS);
  t.equal(summary.copied, 0);
  t.equal(summary.exitCode, 0);
  t.match(out, /^would copy alpha v2 \(\d+\.\d KiB\)$/m);
  t.match(
    summary.line,
    new RegExp(`^dry run: would copy ${OBJECTS} objects \\(\\d+\\.\\d KiB\\), skip 0 identical; nothing was changed$`),
  );
  t.same(await keysIn(await storageOf(t, vars)), [], 'the destination is still empty');

  const done = await run({ from: localEnv, to: minioFile, dryRun: true });
  t.equal(done.summary.line, `dry run: nothing to copy: all ${OBJECTS} objects already identical`);
});

t.test(
  'a source object whose bytes do not match its sha256 fails alone; nothing of it reaches the destination',
  async (t) => {
    const dir = path.join(work, 'corrupt-source');
    await mkdir(dir);
    const source = await storageOf(t, { REMOTE_STORAGE: 'local', LOCAL_STORAGE_DIR: dir });
    const write = async (key: string, bytes: Buffer, digest: string) => {
      const staged = await source.stage(key, Readable.from([bytes]));
      await source.commit(
        staged,
        { version: '1', sha256: digest, 'created-at': new Date().toISOString(), labels: '{}' },
        {},
      );
    };
    const good = model('good', 1024);
    await write('good.tar.gz', good, sha256(good));
    await write('bad.tar.gz', model('bad', 1024), sha256(Buffer.from('something else')));
    const from = await envFile('corrupt.env', { REMOTE_STORAGE: 'local', LOCAL_STORAGE_DIR: 'corrupt-source' });
    const to = await envFile('corrupt-dest.env', { REMOTE_STORAGE: 'local', LOCAL_STORAGE_DIR: 'corrupt-dest' });

    const { summary, out } = await run({ from, to });
    t.equal(summary.exitCode, 1);
    t.equal(summary.failed, 1);
    t.equal(summary.copied, 1);
    t.match(out, /^FAILED bad v1: digest mismatch/m);
    t.match(summary.line, /^copied 1 object \(.*\), skipped 0 identical, 1 failed in \d+s$/);
    const dest = await storageOf(t, { REMOTE_STORAGE: 'local', LOCAL_STORAGE_DIR: path.join(work, 'corrupt-dest') });
    t.same(await keysIn(dest), ['good.tar.gz'], 'the corrupted object is not at the destination');
    const leftovers = (await readdir(path.join(work, 'corrupt-dest', '.uploads'))).filter((f) => f !== 'locks');
    t.same(leftovers, [], 'no staged copy left behind');
  },
);

t.test(
  'a rerun never overwrites what the destination has that the source does not; it does catch up a destination that is behind',
  async (t) => {
    const env = async (name: string) => ({
      file: await envFile(`${name}.env`, { REMOTE_STORAGE: 'local', LOCAL_STORAGE_DIR: name }),
      dir: path.join(work, name),
    });
    const src = await env('rerun-source');
    const dst = await env('rerun-dest');
    const a = await start(t, { LOCAL_STORAGE_DIR: src.dir });
    for (const v of ['v1', 'v2']) await put(`${a.url}/models/m`, model(v, 1024));
    t.equal((await run({ from: src.file, to: dst.file })).summary.exitCode, 0);

    // Writers moved to the destination and uploaded v3 there; then the migration is run again.
    const b = await start(t, { LOCAL_STORAGE_DIR: dst.dir });
    const v3 = model('v3 at the destination', 1024);
    t.equal((await put(`${b.url}/models/m`, v3)).status, 200);
    const again = await run({ from: src.file, to: dst.file });
    t.equal(again.summary.exitCode, 1, 'reported as a failure');
    t.match(
      again.out,
      /^FAILED m v2: the destination holds another version \(v3, sha256 [0-9a-f]{12}…\) that the source does not have/m,
    );
    const versions = (await (await fetch(`${b.url}/models/m/versions`)).json()) as {
      current: number;
      versions: { version: number; sha256: string }[];
    };
    t.equal(versions.current, 3, 'the destination keeps its v3');
    t.equal(versions.versions[0]!.sha256, sha256(v3));
    t.equal(sha256(Buffer.from(await (await fetch(`${b.url}/models/m`)).arrayBuffer())), sha256(v3), 'whole');

    // The other way round: the source moved on after a first run; the rerun brings the destination up.
    const behind = await env('rerun-behind');
    t.equal((await run({ from: src.file, to: behind.file })).summary.exitCode, 0);
    const v3s = model('v3 at the source', 1024);
    t.equal((await put(`${a.url}/models/m`, v3s)).status, 200);
    const caughtUp = await run({ from: src.file, to: behind.file });
    t.equal(caughtUp.summary.exitCode, 0);
    t.match(caughtUp.out, /^copied m v3 \(1\.\d KiB, replaced v2, an older version \(kept in history\)\)$/m);
    const c = await start(t, { LOCAL_STORAGE_DIR: behind.dir });
    const caught = (await (await fetch(`${c.url}/models/m/versions`)).json()) as {
      versions: { version: number; sha256: string }[];
    };
    t.same(
      caught.versions.map((v) => v.version),
      [3, 2, 1],
    );
    t.equal(caught.versions[0]!.sha256, sha256(v3s));

    // The source moved on past its history bound (MODEL_HISTORY=1): the destination's current
    // version is no longer in the source, and is kept in the destination's history.
    const pruned = await env('rerun-pruned-source');
    const ahead = await start(t, { LOCAL_STORAGE_DIR: pruned.dir, MODEL_HISTORY: '1' });
    for (const v of ['p1', 'p2']) await put(`${ahead.url}/models/p`, model(v, 1024));
    const prunedDest = await env('rerun-pruned-dest');
    t.equal((await run({ from: pruned.file, to: prunedDest.file })).summary.exitCode, 0);
    const p2 = (await (await fetch(`${ahead.url}/models/p/meta`)).json()) as { sha256: string };
    for (const v of ['p3', 'p4']) await put(`${ahead.url}/models/p`, model(v, 1024));
    const rerun = await run({ from: pruned.file, to: prunedDest.file });
    t.equal(rerun.summary.exitCode, 0, 'the rerun succeeds');
    const d = await start(t, { LOCAL_STORAGE_DIR: prunedDest.dir });
    const kept = (await (await fetch(`${d.url}/models/p/versions`)).json()) as {
      versions: { version: number; sha256: string }[];
    };
    t.same(
      kept.versions.map((v) => v.version),
      [4, 3, 2, 1],
      'v2, gone from the source, is kept in the destination history',
    );
    t.equal(kept.versions.find((v) => v.version === 2)!.sha256, p2.sha256);

    // Split brain: both sides went on after the cutover (the destination's v3 and the source's v3
    // differ, the source is at v4): nothing is replaced.
    t.equal((await put(`${a.url}/models/m`, model('v4 at the source', 1024))).status, 200);
    const split = await run({ from: src.file, to: dst.file });
    t.equal(split.summary.exitCode, 1);
    t.match(
      split.out,
      /^FAILED m v3: the destination's v3 \(sha256 [0-9a-f]{12}…\) differs from the source's: two different versions with one number, so neither is replaced/m,
    );
    t.match(
      split.out,
      /^FAILED m v3 record: the destination holds another record of this version number: it is left alone/m,
    );
    t.match(split.out, /^FAILED m v4: not copied because its history entry v3 failed$/m);
    t.equal(
      sha256(Buffer.from(await (await fetch(`${b.url}/models/m`)).arrayBuffer())),
      sha256(v3),
      "the destination's v3 is still current",
    );

    // An object the registry did not write, in the destination's place: left alone.
    const foreign = await env('rerun-foreign');
    await mkdir(foreign.dir);
    await writeFile(path.join(foreign.dir, 'm.tar.gz'), 'put here by hand');
    const refused = await run({ from: src.file, to: foreign.file });
    t.equal(refused.summary.exitCode, 1);
    t.match(refused.out, /^FAILED m v4: the destination has an object at this key that the registry did not write/m);
    t.equal(
      await (await import('node:fs/promises')).readFile(path.join(foreign.dir, 'm.tar.gz'), 'utf8'),
      'put here by hand',
    );
  },
);

t.test(
  'a source without any model is most likely the wrong one: exit code 1, and the line says what to check',
  async (t) => {
    await mkdir(path.join(work, 'empty-source'));
    const from = await envFile('empty-source.env', { REMOTE_STORAGE: 'local', LOCAL_STORAGE_DIR: 'empty-source' });
    const to = await envFile('empty-dest.env', { REMOTE_STORAGE: 'local', LOCAL_STORAGE_DIR: 'empty-dest' });
    const { summary } = await run({ from, to });
    t.equal(summary.exitCode, 1);
    t.match(
      summary.line,
      /^nothing to copy: the source has no models; check that the --from settings name the storage/,
    );
  },
);

t.test(
  'a .env file with a misspelt setting, or without REMOTE_STORAGE, is refused before anything is copied',
  async (t) => {
    const from = await envFile('typo-source.env', { REMOTE_STORAGE: 'local', LOCAL_STORAGE_DIR: 'source' });
    const typo = await envFile('typo-dest.env', {
      REMOTE_STORAGE: 'local',
      LOCAL_STORAGE_PATH: 'typo-dest',
      NODE_ENV: 'production',
    });
    await t.rejects(run({ from, to: typo }), {
      name: 'ConfigError',
      message:
        /typo-dest\.env: LOCAL_STORAGE_PATH is not a setting of the registry \(those of its kind: LOCAL_STORAGE_DIR\): fix its name or remove it\.$/,
    });
    const unnamed = await envFile('unnamed-dest.env', { LOCAL_STORAGE_DIR: 'unnamed-dest' });
    await t.rejects(run({ from, to: unnamed }), {
      name: 'ConfigError',
      message: /unnamed-dest\.env: REMOTE_STORAGE is not set: name the destination's backend explicitly/,
    });
    t.notOk(existsSync(path.join(work, 'data')), 'nothing was written to the default directory');
  },
);

t.test('secrets in a .env file never reach the output, even in a refused setting', async (t) => {
  const from = await envFile('secret-source.env', { REMOTE_STORAGE: 'local', LOCAL_STORAGE_DIR: 'source' });
  const to = await envFile('secret-dest.env', {
    REMOTE_STORAGE: 'azure',
    AZURE_CONTAINER: 'models',
    AZURE_BLOB_ENDPOINT: 'myacct.blob.core.windows.net/?sv=2024&sig=SECRETSIG0123456',
  });
  const err = await run({ from, to }).then(
    () => undefined,
    (e: Error) => e,
  );
  t.type(err, Error);
  t.match(err!.message, /^.*secret-dest\.env: AZURE_BLOB_ENDPOINT=/);
  t.notMatch(err!.message, /SECRETSIG0123456/);
});

t.test(
  'the source is only read: a directory of bare archives (as `aws s3 sync` leaves it) gets no working folders',
  async (t) => {
    const dir = path.join(work, 'bare-source');
    await mkdir(dir);
    const bytes = model('bare', 1024);
    await writeFile(path.join(dir, 'bare.tar.gz'), bytes);
    const from = await envFile('bare-source.env', { REMOTE_STORAGE: 'local', LOCAL_STORAGE_DIR: 'bare-source' });
    const to = await envFile('bare-dest.env', { REMOTE_STORAGE: 'local', LOCAL_STORAGE_DIR: 'bare-dest' });
    const { summary } = await run({ from, to });
    t.equal(summary.exitCode, 0);
    t.equal(summary.copied, 1);
    t.same(await readdir(dir), ['bare.tar.gz'], 'nothing was created in the source');
  },
);

t.test('the built CLI: plain lines, summary, exit codes, --help', async (t) => {
  const cli = path.join(ROOT, 'dist', 'cli.js');
  const newest = Math.max(...['cli.ts', 'migrate/index.ts'].map((f) => statSync(path.join(ROOT, 'src', f)).mtimeMs));
  if (!existsSync(cli) || statSync(cli).mtimeMs < newest) {
    // Emits even if another part of the tree has type errors; what matters is dist/cli.js.
    await exec(process.execPath, [
      path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'),
      '-p',
      'tsconfig.build.json',
    ]);
  }
  const node = (...args: string[]) => exec(process.execPath, [cli, ...args], { cwd: work });

  const help = await node('--help');
  t.equal(help.code, 0);
  t.match(
    help.stdout,
    /model-registry migrate --from <source\.env> --to <destination\.env> \[--dry-run\] \[--concurrency N\]/,
  );

  const vars = minioEnv(minio);
  await envFile('cli.env', vars);
  const first = await node('migrate', '--from', 'local.env', '--to', 'cli.env');
  t.equal(first.code, 0, first.stderr);
  t.match(first.stdout, /^migrating from local .*source \(local\.env\) to aws bucket models-\S+ \(cli\.env\)$/m);
  t.match(first.stdout, /^copied beta v3 \(\d+\.\d KiB\)$/m);
  t.match(
    first.stdout,
    new RegExp(`^copied ${OBJECTS} objects \\(.*\\), skipped 0 identical, 0 failed in \\d+s$`, 'm'),
  );
  t.notMatch(first.stderr, /\r/, 'no progress bar when stderr is not a TTY');
  const again = await node('migrate', '--from', 'local.env', '--to', 'cli.env', '--concurrency', '2');
  t.equal(again.code, 0);
  t.match(again.stdout, new RegExp(`^nothing to copy: all ${OBJECTS} objects already identical$`, 'm'));

  const usage = await node('migrate', '--from', 'local.env');
  t.equal(usage.code, 2);
  t.match(usage.stderr, /^model-registry: migrate needs --to <destination\.env>/);
  t.equal((await node('migrate', '--from', 'local.env', '--to', 'cli.env', '--concurrency', 'lots')).code, 2);
  t.equal((await node('copy')).code, 2);

  await envFile('bad.env', { REMOTE_STORAGE: 'aws', BUCKET_NAME: 's3://models' });
  const bad = await node('migrate', '--from', 'local.env', '--to', 'bad.env');
  t.equal(bad.code, 1);
  t.equal(bad.stderr.trim().split('\n').length, 1, 'one line');
  t.match(
    bad.stderr,
    /bad\.env: BUCKET_NAME="s3:\/\/models" must be the bare bucket name without s3:\/\/: use BUCKET_NAME=models/,
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
