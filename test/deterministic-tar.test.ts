/**
 * The deterministic tar of the Rasa NLU importer: the same files give the same bytes whatever
 * their order; long and non-ASCII names survive (ustar prefix, PAX path), read back by Python's
 * tarfile; paths that cannot be archive members are refused.
 */
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { packDeterministic, type TarFile } from '../src/layouts/deterministic-tar.js';
import { tempDir } from './helpers/server.js';
import { python } from './helpers/tools.js';

const files: TarFile[] = [
  { path: 'b.txt', content: Buffer.from('bee') },
  { path: 'a/deep/x.bin', content: Buffer.alloc(1000, 7) },
  { path: `${'d'.repeat(120)}/${'f'.repeat(90)}.json`, content: Buffer.from('{}') }, // ustar prefix
  { path: `${'p'.repeat(300)}.txt`, content: Buffer.from('pax') }, // PAX path
  { path: 'modèle/données.json', content: Buffer.from('[]') },
  { path: 'empty', content: Buffer.alloc(0) },
];

t.test('same files, same bytes, in any order', async (t) => {
  const a = packDeterministic(files, 1_480_000_000);
  const b = packDeterministic([...files].reverse(), 1_480_000_000);
  t.ok(a.equals(b));
  t.notOk(a.equals(packDeterministic(files, 1_480_000_001)), 'the mtime is in the bytes');
});

t.test('Python tarfile reads every name and content back, sorted, with parent directories', async (t) => {
  const file = path.join(await tempDir(t, 'mr-dtar-'), 'm.tar.gz');
  await writeFile(file, packDeterministic(files, 1_480_000_000));
  const { stdout } = await python([
    '-c',
    `
import json, sys, tarfile
with tarfile.open(sys.argv[1], "r:gz") as tar:
    out = []
    for m in tar.getmembers():
        data = tar.extractfile(m).read().hex() if m.isfile() else None
        out.append([m.name, m.type.decode(), m.mtime, m.uid, m.gid, oct(m.mode), data])
    print(json.dumps(out))
`,
    file,
  ]);
  const members = JSON.parse(stdout) as [string, string, number, number, number, string, string | null][];
  const fileEntries = members
    .filter((m) => m[1] === '0')
    .map((m) => [m[0], Buffer.from(m[6]!, 'hex').toString('latin1')]);
  t.same(fileEntries.sort(), files.map((f) => [f.path, f.content.toString('latin1')]).sort());
  t.same(
    members.filter((m) => m[1] === '5').map((m) => m[0]),
    ['a', 'a/deep', 'd'.repeat(120), 'modèle'],
  );
  const names = members.map((m) => m[0]);
  t.same(
    names,
    [...names].sort((x, y) =>
      Buffer.compare(
        Buffer.from(x + (members.find((m) => m[0] === x)![1] === '5' ? '/' : '')),
        Buffer.from(y + (members.find((m) => m[0] === y)![1] === '5' ? '/' : '')),
      ),
    ),
    'sorted by bytes',
  );
  t.ok(
    members.every((m) => m[2] === 1_480_000_000 && m[3] === 0 && m[4] === 0),
    'fixed mtime, uid, gid',
  );
  t.ok(
    members.every((m) => m[5] === (m[1] === '5' ? '0o755' : '0o644')),
    'fixed modes',
  );
});

t.test('paths that cannot be members are refused', async (t) => {
  for (const bad of ['/etc/passwd', '../x', 'a/../../x', 'a//b', './a', '']) {
    t.throws(() => packDeterministic([{ path: bad, content: Buffer.from('x') }], 0), bad);
  }
  t.throws(
    () =>
      packDeterministic(
        [
          { path: 'a', content: Buffer.from('1') },
          { path: 'a', content: Buffer.from('2') },
        ],
        0,
      ),
    /given twice/,
  );
  t.throws(
    () =>
      packDeterministic(
        [
          { path: 'a', content: Buffer.from('1') },
          { path: 'a/b', content: Buffer.from('2') },
        ],
        0,
      ),
    /both a file and a directory/,
  );
});
