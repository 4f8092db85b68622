import fs from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { tgz } from '../helpers/archives.js';
import { httpSuite } from '../helpers/http-suite.js';
import { put, start, tempDir } from '../helpers/server.js';

httpSuite(t, { env: async (t) => ({ LOCAL_STORAGE_DIR: await tempDir(t) }) });

t.test('local: hostile archives write nothing outside the storage root', async (t) => {
  const parent = await tempDir(t);
  const dir = path.join(parent, 'models');
  const { url } = await start(t, { LOCAL_STORAGE_DIR: dir });
  for (const entry of [{ path: '../evil', body: 'x' }, { path: '/tmp/evil-abs', body: 'x' }, { path: 'l', type: 'SymbolicLink' as const, linkpath: '../../evil' }]) {
    t.equal((await put(`${url}/models/h`, tgz([entry]))).status, 422);
  }
  t.same(await fs.readdir(parent), ['models'], 'nothing beside the root');
  t.same((await fs.readdir(dir)).filter((n) => !n.startsWith('.')), [], 'nothing stored');
  await t.rejects(fs.access('/tmp/evil-abs'));
});

t.test('local: the folder has the bucket layout', async (t) => {
  const { url, dir } = await start(t);
  const { model } = await import('../helpers/archives.js');
  await put(`${url}/models/m`, model('a'));
  await put(`${url}/models/m`, model('b'));
  t.ok((await fs.stat(path.join(dir, 'm.tar.gz'))).isFile());
  t.ok((await fs.stat(path.join(dir, '.history', 'm', 'v1.tar.gz'))).isFile());
});
