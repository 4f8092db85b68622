/**
 * Archives as the tools people use write them (tracker issue 15, "Faithful to what other tools
 * write"): Python's tarfile in its three formats and through shutil, GNU tar, git archive,
 * node-tar, pigz and concatenated gzip members, each run as the real program on one small model
 * directory. Every archive is accepted on upload and downloads byte for byte; its manifest lists
 * exactly the model's files, each of which reads back as written. The same archives copied into
 * the storage directory by "another tool" are extracted alike. The hostile corpus that must still
 * be refused is test/hardening/archives.test.ts.
 */
import { type ExecFileOptions, execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { gunzipSync } from 'node:zlib';
import t, { type Test } from 'tap';
import * as tar from 'tar';
import { type Entry, tgz } from '../helpers/archives.js';
import { sha256 } from '../helpers/assert.js';
import { bytes, put, start, tempDir } from '../helpers/server.js';

const exec = promisify(execFile);

/** Runs a producer and returns its stdout; a failing tool's error says why (its stderr). */
async function run(cmd: string, args: string[], options: ExecFileOptions = {}): Promise<Buffer> {
  try {
    const { stdout } = await exec(cmd, args, { ...options, encoding: 'buffer', maxBuffer: 256 * 2 ** 20 });
    return stdout;
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: Buffer };
    if (e.code === 'ENOENT') throw new Error(`${cmd} is not installed, and this test needs it to write archives`);
    throw new Error(`${cmd} ${args.join(' ')} failed: ${e.stderr?.toString() || e.message}`);
  }
}

// ---- the model directory ----

/** Over 100 characters as a path, with short names: ustar's prefix field, in every format. */
const DEEP = `sub/${'d'.repeat(60)}/${'d'.repeat(60)}`;
/** A name over 100 characters: no plain ustar header holds it (GNU long names, pax path). */
const LONG_NAME = `${'f'.repeat(110)}.bin`;

/** The model: path → bytes, and the hard-linked names (second name → first) made with `ln`. */
function modelFiles(ustar: boolean): { files: Map<string, Buffer>; links: [string, string][] } {
  const files = new Map<string, Buffer>([
    ['config.json', Buffer.from('{"pipeline":[{"name":"WhitespaceTokenizer"}]}\n')],
    // Many tar blocks and more than one deflate block, so the splits below fall inside it.
    ['weights.bin', randomBytes(300 * 1024)],
    ['empty.txt', Buffer.alloc(0)],
    ['sub/inner/a.txt', Buffer.from('a\n')],
    ['sub/naïve-ünïcode-名前.txt', Buffer.from('héllo wörld ✓\n')],
    [`${DEEP}/short.bin`, randomBytes(700)],
    ['sub/orig.dat', randomBytes(3000)],
  ]);
  const links: [string, string][] = [
    ['sub/twin.dat', 'sub/orig.dat'],
    ['triplet.dat', 'sub/orig.dat'],
  ];
  // A ustar header can neither name a file over 100 characters nor link to a path over 100
  // (tarfile refuses to write them): the ustar model has neither.
  if (!ustar) {
    files.set(`${DEEP}/${LONG_NAME}`, randomBytes(1500));
    links.push([`${DEEP}/${LONG_NAME}.twin`, `${DEEP}/${LONG_NAME}`]);
  }
  for (const [name, target] of links) files.set(name, files.get(target)!);
  return { files, links };
}

async function writeModel(dir: string, ustar: boolean): Promise<Map<string, Buffer>> {
  const { files, links } = modelFiles(ustar);
  const linkNames = new Set(links.map(([name]) => name));
  for (const [rel, data] of files) {
    if (linkNames.has(rel)) continue;
    await fs.mkdir(path.dirname(path.join(dir, rel)), { recursive: true });
    await fs.writeFile(path.join(dir, rel), data);
  }
  for (const [name, target] of links) await fs.link(path.join(dir, target), path.join(dir, name));
  return files;
}

const prefixed = (files: Map<string, Buffer>, prefix: string) =>
  new Map([...files].map(([p, b]) => [`${prefix}${p}`, b]));

// ---- the producers ----

const PY_TARFILE = `
import sys, tarfile
out, src, fmt, arcname = sys.argv[1:]
with tarfile.open(out, "w:gz", format=getattr(tarfile, fmt + "_FORMAT")) as archive:
    archive.add(src, arcname=arcname)
`;
const PY_SHUTIL = `
import sys, shutil
shutil.make_archive(sys.argv[1], "gztar", root_dir=sys.argv[2])
`;

interface Producer {
  name: string;
  /** Which model directory it archives, and what its files are called in the archive. */
  model: 'full' | 'ustar' | 'snapshots';
  prefix: string;
  make(src: string, work: string): Promise<Buffer>;
}

const gitEnv = {
  ...process.env,
  GIT_CONFIG_NOSYSTEM: '1',
  GIT_CONFIG_GLOBAL: '/dev/null',
  GIT_AUTHOR_DATE: '2024-01-01T00:00:00Z',
  GIT_COMMITTER_DATE: '2024-01-01T00:00:00Z',
};

/** `git archive` of a repository holding a copy of `src` (git keeps no hard links: two files). */
async function gitArchive(src: string, work: string, ...options: string[]): Promise<Buffer> {
  const repo = path.join(work, 'repo');
  await fs.cp(src, repo, { recursive: true });
  const identity = ['-c', 'user.name=t', '-c', 'user.email=t@example.com', '-c', 'commit.gpgsign=false'];
  const git = (...args: string[]) => run('git', ['-C', repo, ...identity, ...args], { env: gitEnv });
  await git('init', '-q');
  await git('add', '-A');
  await git('commit', '-qm', 'model');
  return git('archive', '--format=tar.gz', ...options, 'HEAD');
}

async function nodeTar(src: string, work: string, names: string[]): Promise<Buffer> {
  const out = path.join(work, 'out.tar.gz');
  // node-tar writes a second name of a file as a hard link only when `cwd` is absolute.
  await tar.c({ gzip: true, cwd: path.resolve(src), file: out }, names);
  return fs.readFile(out);
}

/** Gzip member sizes of the archives made of several, for the corpus check. */
const members = new Map<string, number[]>();

const producers: Producer[] = [
  ...(['USTAR', 'GNU', 'PAX'] as const).flatMap((fmt) =>
    (
      [
        ['', 'empty', ''],
        ['.', 'dot', ''],
        ['folder', 'folder', 'folder/'],
      ] as const
    ).map(
      ([arcname, label, prefix]): Producer => ({
        name: `py-${fmt.toLowerCase()}-${label}`,
        model: fmt === 'USTAR' ? 'ustar' : 'full',
        prefix,
        make: async (src, work) => {
          const out = path.join(work, 'out.tar.gz');
          await run('python3', ['-c', PY_TARFILE, out, src, fmt, arcname]);
          return fs.readFile(out);
        },
      }),
    ),
  ),
  {
    name: 'py-shutil-gztar',
    model: 'full',
    prefix: '',
    make: async (src, work) => {
      await run('python3', ['-c', PY_SHUTIL, path.join(work, 'out'), src]);
      return fs.readFile(path.join(work, 'out.tar.gz'));
    },
  },
  {
    // A folder and its `cp -al` snapshot: every file of the snapshot is a hard link.
    name: 'py-pax-snapshots',
    model: 'snapshots',
    prefix: '',
    make: async (src, work) => {
      const out = path.join(work, 'out.tar.gz');
      await run('python3', ['-c', PY_TARFILE, out, src, 'PAX', '']);
      return fs.readFile(out);
    },
  },
  ...(
    [
      ['gnutar-default', 'full', []],
      ['gnutar-posix', 'full', ['--format=posix']],
      ['gnutar-gnu', 'full', ['--format=gnu']],
      ['gnutar-ustar', 'ustar', ['--format=ustar']],
      ['gnutar-snapshots', 'snapshots', []],
      ['gnutar-snapshots-posix', 'snapshots', ['--format=posix']],
    ] as const
  ).map(
    ([name, model, flags]): Producer => ({
      name,
      model,
      prefix: '',
      make: (src) => run('tar', [...flags, '-czf', '-', '-C', src, '.']),
    }),
  ),
  {
    name: 'gnutar-names',
    model: 'full',
    prefix: '',
    make: async (src) => run('tar', ['-czf', '-', '-C', src, ...(await fs.readdir(src)).sort()]),
  },
  {
    name: 'gnutar-folder',
    model: 'full',
    prefix: 'folder/',
    make: async (src, work) => {
      await run('cp', ['-a', src, path.join(work, 'folder')]);
      return run('tar', ['-czf', '-', '-C', work, 'folder']);
    },
  },
  { name: 'git-archive', model: 'full', prefix: '', make: (src, work) => gitArchive(src, work) },
  {
    name: 'git-archive-prefix',
    model: 'full',
    prefix: 'folder/',
    make: (src, work) => gitArchive(src, work, '--prefix=folder/'),
  },
  { name: 'node-tar-dot', model: 'full', prefix: '', make: (src, work) => nodeTar(src, work, ['.']) },
  {
    name: 'node-tar-names',
    model: 'full',
    prefix: '',
    make: async (src, work) => nodeTar(src, work, (await fs.readdir(src)).sort()),
  },
  {
    // pigz: one gzip member of blocks compressed apart on four threads (32 KiB each, so many).
    name: 'pigz',
    model: 'full',
    prefix: '',
    make: async (src, work) => {
      const plain = path.join(work, 'plain.tar');
      await run('tar', ['-cf', plain, '-C', src, '.']);
      try {
        return await run('pigz', ['-c', '-p', '4', '-b', '32', plain]);
      } catch (err) {
        if (!/not installed/.test((err as Error).message)) throw err;
        throw new Error(
          'pigz is not installed: install it (apt-get install -y pigz; scripts/install.sh does); ' +
            'this case must not be skipped',
        );
      }
    },
  },
  ...(
    [
      ['gzip-members-odd-split', 37],
      ['gzip-members-block-split', 0],
    ] as const
  ).map(
    ([name, offset]): Producer => ({
      // A tar cut in two, each half gzipped on its own and the two concatenated (`cat a.gz b.gz`).
      name,
      model: 'full',
      prefix: '',
      make: async (src, work) => {
        const plain = path.join(work, 'plain.tar');
        await run('tar', ['-cf', plain, '-C', src, '.']);
        const data = await fs.readFile(plain);
        const cut = Math.floor(data.length / 2 / 512) * 512 + offset;
        await fs.writeFile(path.join(work, 'a'), data.subarray(0, cut));
        await fs.writeFile(path.join(work, 'b'), data.subarray(cut));
        const parts: Buffer[] = [];
        for (const half of ['a', 'b']) parts.push(await run('gzip', ['-c', '-n', path.join(work, half)]));
        members.set(
          name,
          parts.map((p) => p.length),
        );
        return Buffer.concat(parts);
      },
    }),
  ),
];

// ---- the checks ----

interface Listing {
  files: { path: string; size: number; type: string }[];
}

const fileUrl = (url: string, name: string, rel: string) =>
  `${url}/models/${name}/files/${rel.split('/').map(encodeURIComponent).join('/')}`;

const byPath = (a: [string, number], b: [string, number]) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0);

/** The manifest lists exactly `expected` as its files, no root entry, and each file reads back. */
async function sameFiles(t: Test, url: string, name: string, expected: Map<string, Buffer>): Promise<void> {
  const res = await fetch(`${url}/models/${name}/files`);
  t.equal(res.status, 200, 'the manifest is served');
  if (res.status !== 200) return void t.comment(await res.text());
  const listing = (await res.json()) as Listing;
  const listed = listing.files.filter((f) => f.type === 'file').map((f): [string, number] => [f.path, f.size]);
  const want = [...expected].map(([p, b]): [string, number] => [p, b.length]);
  t.same(listed.sort(byPath), want.sort(byPath), 'every regular file, with its size, and nothing else');
  const odd = listing.files.filter((f) => ['', '.', './', '/'].includes(f.path) || /^\.?\//.test(f.path));
  t.same(odd, [], 'the archive root is not an entry, and no path is absolute or ./-prefixed');
  for (const [rel, data] of expected) {
    const file = await fetch(fileUrl(url, name, rel));
    t.equal(file.status, 200, `${rel} is served`);
    t.ok((await bytes(file)).equals(data), `${rel}: the same ${data.length} bytes`);
  }
}

/** The entries of a .tar.gz as node-tar lists them (gunzipSync reads every gzip member). */
function entriesOf(archive: Buffer): { path: string; type: string; linkpath?: string }[] {
  const out: { path: string; type: string; linkpath?: string }[] = [];
  const parser = new tar.Parser({
    onReadEntry: (e) => {
      out.push({ path: e.path, type: e.type, linkpath: e.linkpath });
      e.resume();
    },
  });
  parser.end(gunzipSync(archive));
  return out;
}

// ---- the corpus ----

const root = await tempDir(t, 'mr-producers-');
const models = {
  full: path.join(root, 'full'),
  ustar: path.join(root, 'ustar'),
  snapshots: path.join(root, 'snapshots'),
};
const expectedOf = {
  full: await writeModel(models.full, false),
  ustar: await writeModel(models.ustar, true),
  snapshots: new Map<string, Buffer>(),
};
// A model folder and its `cp -al` snapshot (as DVC and backup scripts keep them).
for (const [p, b] of await writeModel(path.join(models.snapshots, 'model'), false)) {
  expectedOf.snapshots.set(`model/${p}`, b).set(`snapshot/${p}`, b);
}
await run('cp', ['-al', path.join(models.snapshots, 'model'), path.join(models.snapshots, 'snapshot')]);

const archives = new Map<string, { archive?: Buffer; error?: Error; expected: Map<string, Buffer> }>();
for (const p of producers) {
  const work = await fs.mkdtemp(path.join(root, `${p.name}-`));
  const expected = prefixed(expectedOf[p.model], p.prefix);
  try {
    archives.set(p.name, { archive: await p.make(models[p.model], work), expected });
  } catch (err) {
    archives.set(p.name, { error: err as Error, expected });
  }
}

/** The archive `name`'s producer wrote, or a failed test saying why there is none. */
function archiveOf(t: Test, name: string): { archive: Buffer; expected: Map<string, Buffer> } | undefined {
  const made = archives.get(name)!;
  if (made.archive) return { archive: made.archive, expected: made.expected };
  t.fail(`the producer failed: ${made.error!.message}`);
  return undefined;
}

/** Producers that keep no hard links (git stores a second name as another blob). */
const LINKLESS = new Set(['git-archive', 'git-archive-prefix']);
const SLASH_ROOT = new Set(['py-ustar-empty', 'py-gnu-empty', 'py-pax-empty', 'py-pax-snapshots']);
const DOT_ROOT = new Set(['py-shutil-gztar', 'gnutar-default', 'gnutar-posix', 'gnutar-gnu', 'node-tar-dot']);

t.test('the corpus holds what it is meant to: root entries, hard links, gzip members', async (t) => {
  for (const p of producers) {
    const made = archiveOf(t, p.name);
    if (!made) continue;
    const entries = entriesOf(made.archive);
    const links = entries.filter((e) => e.type === 'Link');
    if (LINKLESS.has(p.name)) t.equal(links.length, 0, `${p.name}: no hard link`);
    else t.ok(links.length >= 2, `${p.name}: ${links.length} hard links (${links[0]?.path} -> ${links[0]?.linkpath})`);
    if (SLASH_ROOT.has(p.name)) t.equal(entries[0]?.path, '/', `${p.name}: the root entry is "/"`);
    if (DOT_ROOT.has(p.name)) t.equal(entries[0]?.path, './', `${p.name}: the root entry is "./"`);
  }
  for (const [name, sizes] of members) {
    const archive = archives.get(name)!.archive!;
    t.equal(archive.length, sizes[0]! + sizes[1]!, `${name}: two gzip members`);
    t.same([...archive.subarray(sizes[0]!, sizes[0]! + 2)], [0x1f, 0x8b], `${name}: the second starts after the first`);
  }
});

t.test('uploaded: accepted, downloaded byte for byte, every file listed and served', async (t) => {
  const r = await start(t);
  for (const p of producers) {
    await t.test(p.name, async (t) => {
      const made = archiveOf(t, p.name);
      if (!made) return;
      const res = await put(`${r.url}/models/${p.name}`, made.archive);
      t.equal(res.status, 201, 'PUT is accepted');
      if (res.status !== 201) return void t.comment(await res.text());
      await res.arrayBuffer();
      const got = await fetch(`${r.url}/models/${p.name}`);
      t.equal(got.status, 200);
      t.equal(sha256(await bytes(got)), sha256(made.archive), 'GET returns exactly the bytes uploaded');
      await sameFiles(t, r.url, p.name, made.expected);
    });
  }
});

t.test('placed in the storage directory by another tool: extracted alike', async (t) => {
  // A server of its own: its cache has never seen these archives, so each is extracted here.
  const r = await start(t);
  for (const p of producers) {
    const made = archives.get(p.name)!;
    if (made.archive) await fs.writeFile(path.join(r.dir, `${p.name}.tar.gz`), made.archive);
  }
  for (const p of producers) {
    await t.test(p.name, async (t) => {
      const made = archiveOf(t, p.name);
      if (!made) return;
      await sameFiles(t, r.url, p.name, made.expected);
      const raw = await fetch(`${r.url}/models/${p.name}`);
      t.equal(sha256(await bytes(raw)), sha256(made.archive), 'the archive itself downloads as stored');
    });
  }
});

t.test('legitimate spellings the producers above do not all write', async (t) => {
  const w = randomBytes(2000);
  const link = (name: string, linkpath: string, extra: Partial<Entry> = {}): Entry => ({
    path: name,
    type: 'Link',
    linkpath,
    ...extra,
  });
  const roots = ['', '.', './', '/'].map((name): [string, Entry[], Record<string, Buffer>] => [
    `root entry ${JSON.stringify(name)}`,
    [
      { path: name, type: 'Directory' },
      { path: name.startsWith('.') ? './w.bin' : 'w.bin', body: w },
    ],
    { 'w.bin': w },
  ]);
  const long = `${DEEP}/${LONG_NAME}`;
  const longLink = link(`${long}.2`, `./${long}`, { pax: true, ustarPath: 'y', ustarLinkpath: 'x' });
  const cases: [string, Entry[], Record<string, Buffer>][] = [
    ...roots,
    [
      'a hard link to a hard link to an earlier file',
      [{ path: 'a/w.bin', body: w }, link('b', 'a/w.bin'), link('c/d', './b')],
      { 'a/w.bin': w, b: w, 'c/d': w },
    ],
    [
      'a hard link through a pax linkpath to a long earlier name',
      [{ path: long, body: w, pax: true, ustarPath: 'x' }, longLink],
      { [long]: w, [`${long}.2`]: w },
    ],
    [
      'a hard link to a file stored twice (the later one is linked)',
      [{ path: 'w.bin', body: 'old' }, { path: 'w.bin', body: w }, link('twin.bin', 'w.bin')],
      { 'w.bin': w, 'twin.bin': w },
    ],
  ];
  const uploads = await start(t);
  // A second server, whose cache has not seen them, for the same archives placed in storage.
  const placed = await start(t);
  for (const [i, [what, entries, files]] of cases.entries()) {
    await t.test(what, async (t) => {
      const archive = tgz(entries);
      const res = await put(`${uploads.url}/models/c${i}`, archive);
      t.equal(res.status, 201, 'PUT is accepted');
      if (res.status !== 201) return void t.comment(await res.text());
      await res.arrayBuffer();
      await sameFiles(t, uploads.url, `c${i}`, new Map(Object.entries(files)));
      await fs.writeFile(path.join(placed.dir, `c${i}.tar.gz`), archive);
      await sameFiles(t, placed.url, `c${i}`, new Map(Object.entries(files)));
    });
  }
});
