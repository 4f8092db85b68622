import fs from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import t, { type Test } from 'tap';
import { LocalStorage } from '../../src/storage/local/storage.js';
import { tempDir } from '../helpers/server.js';
import { conformance } from '../helpers/storage-conformance.js';

const local = async (tt: Test) => {
  const s = new LocalStorage({ root: await tempDir(tt) });
  await s.init();
  return s;
};

t.test('conformance', async (t) =>
  conformance(t, local, {
    leftovers: async (s) =>
      (await fs.readdir(path.join((s as LocalStorage).root, '.uploads'))).filter((n) => n.endsWith('.part')).length,
  }),
);

t.test('the directory keeps the bucket layout, with no stray model-like files', async (t) => {
  const s = await local(t);
  const staged = await s.stage('m.tar.gz', Readable.from([Buffer.from('x')]));
  const info = await s.commit(staged, { version: '1' }, {});
  await s.copy('m.tar.gz', '.history/m/v1.tar.gz', { sourceToken: info.token, metadata: { version: '1' } });
  const files: string[] = [];
  const walk = async (dir: string): Promise<void> => {
    for (const e of await fs.readdir(dir, { withFileTypes: true })) {
      const full = path.join(dir, e.name);
      if (e.isDirectory()) await walk(full);
      else files.push(path.relative(s.root, full));
    }
  };
  await walk(s.root);
  t.same(files.filter((f) => f.endsWith('.tar.gz')).sort(), ['.history/m/v1.tar.gz', 'm.tar.gz']);
  t.ok(
    files.every((f) => f.endsWith('.tar.gz') || f.startsWith('.meta/')),
    'metadata lives under .meta/ only',
  );
});

t.test('sweep removes staged files of dead writers and keeps live ones', async (t) => {
  const s = await local(t);
  const uploads = path.join(s.root, '.uploads');
  const live = await s.stage('a.tar.gz', Readable.from([Buffer.from('live')]));
  const [ours] = (await fs.readdir(uploads)).filter((n) => n.endsWith('.part'));
  const tag = /-([0-9a-f]{8})\.part$/.exec(ours!)![1];
  // A leftover of a crashed process on this host (pid 2^22+1 does not exist), and one of an
  // earlier run of a process with our own pid (a container restarted as pid 1).
  await fs.writeFile(path.join(uploads, `4194305-00000000-0000-0000-0000-000000000000-${tag}.part`), 'dead');
  await fs.writeFile(path.join(uploads, `${process.pid}-11111111-1111-1111-1111-111111111111-${tag}.part`), 'old');
  // Another host's upload in progress: left alone.
  await fs.writeFile(path.join(uploads, `4194305-22222222-2222-2222-2222-222222222222-ffffffff.part`), 'other host');
  t.equal(await s.sweep(), 2);
  const left = (await fs.readdir(uploads)).filter((n) => n.endsWith('.part')).sort();
  t.equal(left.length, 2);
  t.ok(left.some((n) => n.endsWith('-ffffffff.part')));
  await s.commit(live, {}, {});
  t.equal(await fs.readFile(path.join(s.root, 'a.tar.gz'), 'utf8'), 'live', 'the live upload survived the sweep');
});

t.test('sweep removes sidecar temp files a crash left, after a minute', async (t) => {
  const s = await local(t);
  const info = await s.commit(await s.stage('m.tar.gz', Readable.from([Buffer.from('x')])), { version: '1' }, {});
  const meta = path.join(s.root, '.meta');
  const sidecar = (await fs.readdir(meta)).find((n) => n.endsWith('.json'))!;
  const old = path.join(meta, `${sidecar}.00000000-0000-0000-0000-000000000000.tmp`);
  const fresh = path.join(meta, `${sidecar}.11111111-1111-1111-1111-111111111111.tmp`);
  await fs.writeFile(old, '{"version":');
  await fs.writeFile(fresh, '{"version":');
  const twoMinutesAgo = new Date(Date.now() - 120_000);
  await fs.utimes(old, twoMinutesAgo, twoMinutesAgo);
  t.equal(await s.sweep(), 1);
  t.same(
    (await fs.readdir(meta)).sort(),
    [sidecar, path.basename(fresh)].sort(),
    'the old temp file went; a write that may be in progress stays',
  );
  t.same((await s.head('m.tar.gz')).metadata, info.metadata, 'the sidecar itself is untouched');
});

t.test(
  'copying onto a link of the same file (a history copy redone after a crash) leaves no staged file',
  async (t) => {
    const s = await local(t);
    const info = await s.commit(await s.stage('m.tar.gz', Readable.from([Buffer.from('x')])), { version: '1' }, {});
    await s.copy('m.tar.gz', '.history/m/v1.tar.gz', { sourceToken: info.token, metadata: { version: '1' } });
    await s.copy('m.tar.gz', '.history/m/v1.tar.gz', { sourceToken: info.token, metadata: { version: '1' } });
    const staged = (await fs.readdir(path.join(s.root, '.uploads'))).filter((n) => n.endsWith('.part'));
    t.same(staged, [], 'rename(2) onto the same inode does nothing; the staged name is removed anyway');
    t.equal(await fs.readFile(path.join(s.root, '.history/m/v1.tar.gz'), 'utf8'), 'x');
  },
);

t.test('copyOut links the pinned version out of storage, or refuses a replaced one', async (t) => {
  const s = await local(t);
  const out = await tempDir(t, 'mr-out-');
  const first = await s.commit(await s.stage('m.tar.gz', Readable.from([Buffer.from('one')])), { version: '1' }, {});
  const dest = path.join(out, 'one');
  await s.copyOut('m.tar.gz', first.token, dest);
  t.equal(await fs.readFile(dest, 'utf8'), 'one');
  t.equal(
    (await fs.stat(dest)).ino,
    (await fs.stat(path.join(s.root, 'm.tar.gz'))).ino,
    'a hard link: no second write',
  );

  await s.commit(
    await s.stage('m.tar.gz', Readable.from([Buffer.from('two')])),
    { version: '2' },
    { ifMatch: first.token },
  );
  t.equal(await fs.readFile(dest, 'utf8'), 'one', 'replacing the key leaves the linked copy whole');
  const stale = path.join(out, 'stale');
  await t.rejects(s.copyOut('m.tar.gz', first.token, stale), { name: 'PreconditionFailedError' });
  await t.rejects(fs.stat(stale), { code: 'ENOENT' }, 'nothing left behind');
  await t.rejects(s.copyOut('gone.tar.gz', first.token, stale), { name: 'NotFoundError' });
});

t.test('a sidecar rewritten for the same token (another tool, another process) is not served stale', async (t) => {
  const root = await tempDir(t);
  const a = new LocalStorage({ root });
  const b = new LocalStorage({ root });
  await a.init();
  // A file put there by hand has no sidecar: nothing is remembered for it.
  await fs.writeFile(path.join(root, 'h.tar.gz'), 'by hand');
  const bare = await a.head('h.tar.gz');
  t.same(bare.metadata, {});
  await b.setMetadata('h.tar.gz', bare.token, { sha256: 'abc' });
  t.same((await a.head('h.tar.gz')).metadata, { sha256: 'abc' }, "the other process's metadata is seen");
  // A replace by the other process is a new token: seen at once.
  const info = await b.commit(await b.stage('h.tar.gz', Readable.from([Buffer.from('v2')])), { sha256: 'def' }, {});
  t.same((await a.head('h.tar.gz')).metadata, { sha256: 'def' });
  t.equal((await a.head('h.tar.gz')).token, info.token);
});

t.test('keys that could leave the root are refused', async (t) => {
  const s = await local(t);
  for (const key of ['../x.tar.gz', '/etc/passwd', 'a//b', 'a/../b', '']) {
    await t.rejects(s.head(key), TypeError, key);
  }
});

t.test(
  'staged names carry the pid namespace: a writer in another one on the same host is judged by age only',
  async (t) => {
    const { hostname } = await import('node:os');
    const { readlink } = await import('node:fs/promises');
    const { hostTag, isAbandoned, newStagedName } = await import('../../src/storage/shared/staging.js');
    const ns = await readlink('/proc/self/ns/pid').catch(() => '');
    t.equal(
      /-([0-9a-f]{8})\.part$/.exec(newStagedName())![1],
      hostTag(hostname(), ns),
      'our names: this host and this pid namespace',
    );
    // A container sharing the hostname (host networking) whose writer is pid 1 in its own namespace.
    const neighbour = `1-00000000-0000-0000-0000-000000000000-${hostTag(hostname(), 'pid:[4026599999]')}.part`;
    t.notOk(isAbandoned(neighbour, new Date(), new Set()), 'its upload in progress is left alone');
    t.ok(
      isAbandoned(neighbour, new Date(Date.now() - 2 * 60 * 60 * 1000), new Set()),
      'until it has been untouched for long',
    );
  },
);

t.test('copies to and from root keys are synced copies; between history keys a link needs no copy', async (t) => {
  const s = await local(t);
  const v1 = await s.commit(
    await s.stage('m.tar.gz', Readable.from([Buffer.from('version one')])),
    { version: '1' },
    {},
  );
  // Counts fsyncs of files staged under .uploads/ (the copy before it is renamed into place).
  const open = fs.open;
  let syncs = 0;
  fs.open = (async (...args: Parameters<typeof fs.open>) => {
    const handle = await open(...args);
    if (String(args[0]).includes(`${path.sep}.uploads${path.sep}`)) {
      const sync = handle.sync.bind(handle);
      handle.sync = async () => {
        syncs++;
        return sync();
      };
    }
    return handle;
  }) as typeof fs.open;
  t.teardown(() => {
    fs.open = open;
  });
  const archived = await s.copy('m.tar.gz', '.history/m/v1.tar.gz', {
    sourceToken: v1.token,
    metadata: { version: '1' },
  });
  t.equal(syncs, 1, 'a root file (other tools write it, some in place) is copied into history, never linked');
  t.not(
    (await fs.stat(path.join(s.root, '.history/m/v1.tar.gz'))).ino,
    (await fs.stat(path.join(s.root, 'm.tar.gz'))).ino,
  );
  await s.copy('.history/m/v1.tar.gz', '.history/m/v2.tar.gz', {
    sourceToken: archived.token,
    metadata: { version: '2' },
  });
  t.equal(syncs, 1, 'between history keys a hard link: nothing to sync');
  await s.copy('.history/m/v1.tar.gz', 'm.tar.gz', {
    sourceToken: archived.token,
    metadata: { version: '3' },
    condition: { ifMatch: v1.token },
  });
  t.equal(syncs, 2, 'the rollback copy was synced before it was published');
  t.equal(await fs.readFile(path.join(s.root, 'm.tar.gz'), 'utf8'), 'version one');
});
