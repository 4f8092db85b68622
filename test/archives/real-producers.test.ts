/**
 * Archives as the tools people use write them (tracker issue 15, "Faithful to what other tools
 * write"): Python's tarfile in its three formats and through shutil, GNU tar, git archive,
 * node-tar, pigz and concatenated gzip members, each run as the real program on one small model
 * directory. Every archive is accepted on upload and downloads byte for byte; its manifest lists
 * exactly the model's files, each of which reads back as written. The same archives copied into
 * the storage directory by "another tool" are extracted alike. The hostile corpus that must still
 * be refused is test/hardening/archives.test.ts.
 */
import { execFile, type ExecFileOptions } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { gunzipSync } from 'node:zlib';
import t, { type Test } from 'tap';
import * as tar from 'tar';
import { tgz, type Entry } from '../helpers/archives.js';
import { sha256 } from '../helpers/assert.js';
import { bytes, put, start, tempDir, type Running } from '../helpers/server.js';

const exec = promisify(execFile);

/** Runs a producer; its stderr is in the error, so a failing tool says why. */
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

const DEEP = `sub/${'d'.repeat(60)}/${'d'.repeat(60)}`;
/** Over 100 characters: a name no plain ustar header holds (GNU long names, pax path). */
const LONG_NAME = `${'f'.repeat(110)}.bin`;

/** The model: path → bytes, and the hard-linked names (second name → first) made with `ln`. */
function modelFiles(ustar: boolean): { files: Map<string, Buffer>; links: [string, string][] } {
  const files = new Map<string, Buffer>([
    ['config.json', Buffer.from('{"pipeline":[{"name":"WhitespaceTokenizer"}]}\n')],
    // Larger than a gzip member's typical block and many tar blocks, so splits fall inside it.
    ['weights.bin', randomBytes(300 * 1024)],
    ['empty.txt', Buffer.alloc(0)],
    ['sub/inner/a.txt', Buffer.from('a\n')],
    ['sub/naïve-ünïcode-名前.txt', Buffer.from('héllo wörld ✓\n')],
    // A path over 100 characters with a short name: ustar's prefix field, in every format.
    [`${DEEP}/short.bin`, randomBytes(700)],
    ['sub/orig.dat', randomBytes(3000)],
  ]);
  const links: [string, string][] = [['sub/twin.dat', 'sub/orig.dat'], ['triplet.dat', 'sub/orig.dat']];
  // A ustar header cannot name a file over 100 characters, nor link to a path over 100 (tarfile
  // refuses to write them): the ustar model has neither.
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

const prefixed = (files: Map<string, Buffer>, prefix: string) => new Map([...files].map(([p, b]) => [`${prefix}${p}`, b]));

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

const gitEnv = { ...process.env, GIT_CONFIG_NOSYSTEM: '1', GIT_CONFIG_GLOBAL: '/dev/null', GIT_AUTHOR_DATE: '2024-01-01T00:00:00Z', GIT_COMMITTER_DATE: '2024-01-01T00:00:00Z' };

/** A git repository holding a copy of `src` (git stores no hard links: two files there). */
async function gitRepo(src: string, work: string): Promise<string> {
  const repo = path.join(work, 'repo');
  await fs.cp(src, repo, { recursive: true });
  const git = (...args: string[]) => run('git', ['-C', repo, '-c', 'user.name=t', '-c', 'user.email=t@example.com', '-c', 'commit.gpgsign=false', ...args], { env: gitEnv });
  await git('init', '-q');
  await git('add', '-A');
  await git('commit', '-qm', 'model');
  return repo;
}

const readOut = async (file: string) => fs.readFile(file);

const producers: Producer[] = [
  ...(['USTAR', 'GNU', 'PAX'] as const).flatMap((fmt) =>
    ([['', ''], ['.', ''], ['folder', 'folder/']] as const).map(([arcname, prefix]): Producer => ({
      name: `py-${fmt.toLowerCase()}-${arcname === '' ? 'empty' : arcname === '.' ? 'dot' : 'folder'}`,
      model: fmt === 'USTAR' ? 'ustar' : 'full',
      prefix,
      make: async (src, work) => {
        const out = path.join(work, 'out.tar.gz');
        await run('python3', ['-c', PY_TARFILE, out, src, fmt, arcname]);
        return readOut(out);
      },
    })),
  ),
  {
    name: 'py-shutil-gztar',
    model: 'full',
    prefix: '',
    make: async (src, work) => {
      await run('python3', ['-c', PY_SHUTIL, path.join(work, 'out'), src]);
      return readOut(path.join(work, 'out.tar.gz'));
    },
  },
  {
    // Python's tarfile over a folder and its `cp -al` snapshot: the snapshot is all hard links.
    name: 'py-pax-snapshots',
    model: 'snapshots',
    prefix: '',
    make: async (src, work) => {
      const out = path.join(work, 'out.tar.gz');
      await run('python3', ['-c', PY_TARFILE, out, src, 'PAX', '']);
      return readOut(out);
    },
  },
  ...([['gnutar-default', []], ['gnutar-posix', ['--format=posix']], ['gnutar-gnu', ['--format=gnu']]] as const).map(
    ([name, flags]): Producer => ({
      name,
      model: 'full',
      prefix: '',
      make: (src) => run('tar', [...flags, '-czf', '-', '-C', src, '.']),
    }),
  ),
  {
    name: 'gnutar-ustar',
    model: 'ustar',
    prefix: '',
    make: (src) => run('tar', ['--format=ustar', '-czf', '-', '-C', src, '.']),
  },
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
      await fs.cp(src, path.join(work, 'folder'), { recursive: true, verbatimSymlinks: true });
      // cp does not keep hard links: link them again, as the model has them.
      for (const [name, target] of modelFiles(false).links) {
        await fs.rm(path.join(work, 'folder', name));
        await fs.link(path.join(work, 'folder', target), path.join(work, 'folder', name));
      }
      return run('tar', ['-czf', '-', '-C', work, 'folder']);
    },
  },
  ...([['gnutar-snapshots', []], ['gnutar-snapshots-posix', ['--format=posix']]] as const).map(
    ([name, flags]): Producer => ({
      name,
      model: 'snapshots',
      prefix: '',
      make: (src) => run('tar', [...flags, '-czf', '-', '-C', src, '.']),
    }),
  ),
  {
    name: 'git-archive',
    model: 'full',
    prefix: '',
    make: async (src, work) => run('git', ['-C', await gitRepo(src, work), 'archive', '--format=tar.gz', 'HEAD'], { env: gitEnv }),
  },
  {
    name: 'git-archive-prefix',
    model: 'full',
    prefix: 'folder/',
    make: async (src, work) =>
      run('git', ['-C', await gitRepo(src, work), 'archive', '--format=tar.gz', '--prefix=folder/', 'HEAD'], { env: gitEnv }),
  },
  {
    name: 'node-tar-dot',
    model: 'full',
    prefix: '',
    make: async (src, work) => {
      const out = path.join(work, 'out.tar.gz');
      await tar.c({ gzip: true, cwd: src, file: out }, ['.']);
      return readOut(out);
    },
  },
  {
    name: 'node-tar-names',
    model: 'full',
    prefix: '',
    make: async (src, work) => {
      const out = path.join(work, 'out.tar.gz');
      await tar.c({ gzip: true, cwd: src, file: out }, (await fs.readdir(src)).sort());
      return readOut(out);
    },
  },
  {
    name: 'pigz',
    model: 'full',
    prefix: '',
    make: async (src, work) => {
      const plain = path.join(work, 'plain.tar');
      await run('tar', ['-cf', plain, '-C', src, '.']);
      try {
        // Small blocks on several threads: many deflate blocks, as pigz writes big models.
        return await run('pigz', ['-c', '-p', '4', '-b', '32', plain]);
      } catch (err) {
        if (/not installed/.test((err as Error).message)) {
          throw new Error('pigz is not installed: install it (apt-get install -y pigz, as scripts/install.sh does); this case must not be skipped');
        }
        throw err;
      }
    },
  },
  ...([['gzip-members-odd-split', 37], ['gzip-members-block-split', 0]] as const).map(
    ([name, offset]): Producer => ({
      // A tar cut in two and each half gzipped on its own: `cat a.gz b.gz`, two gzip members.
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
        const members = [await run('gzip', ['-c', '-n', path.join(work, 'a')]), await run('gzip', ['-c', '-n', path.join(work, 'b')])];
        return Buffer.concat(members);
      },
    }),
  ),
];

// ---- the checks ----

interface Listing {
  files: { path: string; size: number; type: string }[];
}

const fileUrl = (url: string, name: string, rel: string) => `${url}/models/${name}/files/${rel.split('/').map(encodeURIComponent).join('/')}`;

/** The manifest lists exactly `expected` as its files, no root entry, and each file reads back. */
async function sameFiles(t: Test, url: string, name: string, expected: Map<string, Buffer>): Promise<void> {
  const res = await fetch(`${url}/models/${name}/files`);
  t.equal(res.status, 200, 'the manifest is served');
  if (res.status !== 200) return void t.comment(await res.text());
  const listing = (await res.json()) as Listing;
  const listed = listing.files.filter((f) => f.type === 'file').map((f) => [f.path, f.size]);
  const want = [...expected].map(([p, b]) => [p, b.length]);
  const byPath = (a: (string | number)[], b: (string | number)[]) => (a[0]! < b[0]! ? -1 : a[0]! > b[0]! ? 1 : 0);
  t.same(listed.sort(byPath), want.sort(byPath), 'every regular file, with its size, and nothing else');
  const odd = listing.files.filter((f) => ['', '.', './', '/'].includes(f.path) || /^\.?\//.test(f.path));
  t.same(odd, [], 'the archive root is not an entry, and no path is absolute or ./-prefixed');
  for (const [rel, data] of expected) {
    const file = await fetch(fileUrl(url, name, rel));
    t.equal(file.status, 200, `${rel} is served`);
    const body = await bytes(file);
    t.ok(body.equals(data), `${rel}: the same ${data.length} bytes`);
  }
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
// A model folder and its `cp -al` snapshot (as DVC and backup scripts keep them): every file of
// the snapshot is a hard link to the model's.
await writeModel(path.join(models.snapshots, 'model'), false).then((files) => {
  for (const [p, b] of files) expectedOf.snapshots.set(`model/${p}`, b).set(`snapshot/${p}`, b);
});
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

/** The archive `name`'s producer wrote, or a failed test naming why there is none. */
function archiveOf(t: Test, name: string): { archive: Buffer; expected: Map<string, Buffer> } | undefined {
  const made = archives.get(name)!;
  if (made.archive) return { archive: made.archive, expected: made.expected };
  t.fail(`the producer failed: ${made.error!.message}`);
  return undefined;
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

/** Producers that write a hard link for a second name of a file (git stores two blobs). */
const LINKLESS = new Set(['git-archive', 'git-archive-prefix']);

t.test('the corpus holds the constructs it is meant to (root entries, hard links, gzip members)', async (t) => {
  for (const p of producers) {
    const made = archiveOf(t, p.name);
    if (!made) continue;
    const entries = entriesOf(made.archive);
    const links = entries.filter((e) => e.type === 'Link');
    if (LINKLESS.has(p.name)) t.equal(links.length, 0, `${p.name}: no hard link`);
    else t.ok(links.length >= 2, `${p.name}: ${links.length} hard links (${links[0]?.path} -> ${links[0]?.linkpath})`);
    if (p.name.startsWith('py-') && p.name.endsWith('-empty')) t.equal(entries[0]?.path, '/', `${p.name}: the root entry is "/"`);
    if (p.name === 'py-shutil-gztar' || p.name.startsWith('gnutar-d') || p.name === 'node-tar-dot') t.equal(entries[0]?.path, './', `${p.name}: the root entry is "./"`);
  }
  const split = archiveOf(t, 'gzip-members-odd-split');
  if (split) t.ok(split.archive.subarray(10).indexOf(Buffer.from([0x1f, 0x8b, 0x08])) > 0, 'the split archive has a second gzip member');
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

t.test('placed in storage by another tool: extracted alike', async (t) => {
  // A server of its own: a cache that has never seen these archives, so each is extracted here.
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

t.test('legitimate constructs the producers above write only in some spellings', async (t) => {
  const r = await start(t);
  const weights = randomBytes(2000);
  const cases: [string, Entry[], Record<string, Buffer>][] = [
    ...['', '.', './', '/'].map((root): [string, Entry[], Record<string, Buffer>] => [
      `root entry ${JSON.stringify(root)}`,
      [{ path: root, type: 'Directory' }, { path: `${root === '/' || root === '' ? '' : './'}w.bin`, body: weights }],
      { 'w.bin': weights },
    ]),
    [
      'a hard link to a hard link to an earlier file',
      [{ path: 'a/w.bin', body: weights }, { path: 'b', type: 'Link', linkpath: 'a/w.bin' }, { path: 'c/d', type: 'Link', linkpath: './b' }],
      { 'a/w.bin': weights, b: weights, 'c/d': weights },
    ],
    [
      'a hard link through a pax linkpath to a long earlier name',
      [{ path: `${DEEP}/${LONG_NAME}`, body: weights, pax: true, ustarPath: 'x' }, { path: `${DEEP}/${LONG_NAME}.2`, type: 'Link', linkpath: `./${DEEP}/${LONG_NAME}`, pax: true, ustarPath: 'y', ustarLinkpath: 'x' }],
      { [`${DEEP}/${LONG_NAME}`]: weights, [`${DEEP}/${LONG_NAME}.2`]: weights },
    ],
    [
      'a hard link to a file stored twice (the later one is linked)',
      [{ path: 'w.bin', body: 'old' }, { path: 'w.bin', body: weights }, { path: 'twin.bin', type: 'Link', linkpath: 'w.bin' }],
      { 'w.bin': weights, 'twin.bin': weights },
    ],
  ];
  for (const [i, [what, entries, files]] of cases.entries()) {
    await t.test(what, async (t) => {
      const res = await put(`${r.url}/models/c${i}`, tgz(entries));
      t.equal(res.status, 201, 'PUT is accepted');
      if (res.status !== 201) return void t.comment(await res.text());
      await res.arrayBuffer();
      await sameFiles(t, r.url, `c${i}`, new Map(Object.entries(files)));
    });
  }
});
