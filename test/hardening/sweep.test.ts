/**
 * Leftovers of interrupted uploads are swept while the registry runs, not only at start: a
 * staged upload of a process that died after this one started (or a zombie that was still
 * there when it started) goes within SWEEP_INTERVAL, and a live upload of this process stays.
 */
import { spawn } from 'node:child_process';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { loadConfig } from '../../src/config.js';
import { newStagedName } from '../../src/storage/shared/staging.js';
import { model } from '../helpers/archives.js';
import { eventually } from '../helpers/hostile.js';
import { start, tempDir } from '../helpers/server.js';

t.test("SWEEP_INTERVAL: a dead process's staged upload goes while the registry runs", async (t) => {
  const dir = await tempDir(t);
  const { url } = await start(t, { LOCAL_STORAGE_DIR: dir, SWEEP_INTERVAL: '300ms' });
  // A process that exits at once stands in for an uploader that died after this one started.
  const child = spawn(process.execPath, ['-e', '']);
  const pid = await new Promise<number>((resolve) => child.once('exit', () => resolve(child.pid!)));
  const uploads = path.join(dir, '.uploads');
  await mkdir(uploads, { recursive: true });
  const leftover = newStagedName().replace(/^\d+-/, `${pid}-`);
  await writeFile(path.join(uploads, leftover), Buffer.alloc(1024 * 1024));
  // An upload in flight of this process meanwhile is left alone and completes.
  const body = model('while-sweeping', 2 * 1024 * 1024);
  const uploaded = fetch(`${url}/models/live`, {
    method: 'PUT',
    body: new Uint8Array(body),
    headers: { 'content-type': 'application/gzip' },
  });
  t.ok(await eventually(async () => !(await readdir(uploads)).includes(leftover), 5000), 'the leftover was swept');
  t.equal((await uploaded).status, 201, 'the upload in flight completed');
});

t.test('SWEEP_INTERVAL defaults to 10 minutes; 0 sweeps only at start', async (t) => {
  t.equal(loadConfig({}).SWEEP_INTERVAL, 600_000);
  t.equal(loadConfig({ SWEEP_INTERVAL: '0' }).SWEEP_INTERVAL, 0);
  t.throws(() => loadConfig({ SWEEP_INTERVAL: 'often' }), /SWEEP_INTERVAL/);
});
