/**
 * A model's page in headless Chromium: version history with labels, sizes, digests and origin;
 * aliases; copy-paste snippets (curl, Rasa endpoints.yml, a ?wait= watch loop), the curl one run
 * as shown.
 */
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { model } from '../helpers/archives.js';
import { sha256 } from '../helpers/assert.js';
import { browser, rendered, screenshot } from '../helpers/browser.js';
import { put, start, tempDir } from '../helpers/server.js';

// Asynchronous: the registry under test runs in this process.
const run = promisify(execFile);

t.test('a model page', async (t) => {
  const { url } = await start(t);
  const v1 = model('one', 2048);
  const v2 = model('two', 4096);
  t.equal(
    (await put(`${url}/models/demo`, v1, { 'x-model-label-git_sha': 'aaa111', 'x-model-label-dataset': 'faq-2024' }))
      .status,
    201,
  );
  t.equal((await put(`${url}/models/demo`, v2, { 'x-model-label-git_sha': 'bbb222' })).status, 200);
  const rollback = await fetch(`${url}/models/demo/rollback`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ version: 1 }),
  });
  t.equal(rollback.status, 200);
  const alias = await fetch(`${url}/models/demo/aliases/production`, {
    method: 'PUT',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ version: 2 }),
  });
  t.equal(alias.status, 201);

  const b = await browser(t);
  const page = await b.page();
  await page.goto(`${url}/ui#/`);
  await rendered(page, () => page.click('a:text-is("demo")'));
  t.equal(await page.locator('h1').textContent(), 'demo');

  const rows = page.locator('#versions tbody tr');
  t.equal(await rows.count(), 3, 'current and two retained versions');
  const cells = async (i: number) => rows.nth(i).locator('td').allTextContents();
  const [r3, r2, r1] = [await cells(0), await cells(1), await cells(2)];
  t.match(r3[0], /^v3\s*current$/);
  t.equal(r3[4], 'rollback', 'origin of a rollback');
  t.equal(r2[4], 'upload', 'origin of an upload');
  t.equal(r1[2], `${(v1.length / 1024).toFixed(1)} KiB`, 'size');
  t.match(r2[5], /git_sha=bbb222/, 'labels');
  t.match(r1[5], /dataset=faq-2024/);
  t.match(r3[5], /git_sha=aaa111/, 'a rollback keeps the labels of the version it restores');
  t.equal(r2[6], 'production', 'aliases of a version');
  t.equal(await rows.nth(1).locator('td.mono').getAttribute('title'), sha256(v2), 'the full digest on the short one');
  t.equal(r2[3], `${sha256(v2).slice(0, 12)}…`);
  t.match(r3[1], /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$/, 'created time');
  t.equal(await page.locator('#aliases .chip.alias').textContent(), 'production → v2×');

  // Snippets: the first alias by default, a plain name on request.
  t.equal(await page.locator('#snippet-ref').inputValue(), 'demo@production');
  const snippets = await page.locator('#snippets pre').allTextContents();
  t.equal(snippets.length, 3);
  t.equal(snippets[0], `curl -fSL -o model.tar.gz ${url}/models/demo@production`);
  t.match(snippets[1], `models:\n  url: ${url}/models/demo@production\n  wait_time_between_pulls: 10`);
  t.match(snippets[2], `"${url}/models/demo@production?wait=300"`);
  t.match(snippets[2], 'If-None-Match: $etag');
  // The curl line works as written.
  const dir = await tempDir(t);
  await run('bash', ['-c', snippets[0]!], { cwd: dir, timeout: 20_000 });
  t.equal(
    sha256(await readFile(path.join(dir, 'model.tar.gz'))),
    sha256(v2),
    'the curl snippet downloads the aliased version',
  );
  await page.selectOption('#snippet-ref', 'demo');
  t.equal(await page.locator('#snippets pre').first().textContent(), `curl -fSL -o model.tar.gz ${url}/models/demo`);
  // The watch loop, one round: it gets the current version at once and stops there.
  const loop = (await page.locator('#snippets pre').nth(2).textContent())!.replace(
    'while true; do',
    'for round in 1; do',
  );
  await run('bash', ['-c', loop], { cwd: dir, timeout: 20_000 });
  t.equal(
    sha256(await readFile(path.join(dir, 'model.tar.gz'))),
    sha256(v1),
    'the watch loop fetched the current version (v3 = v1 bytes)',
  );
  await screenshot(page, 'model');

  // Unknown model: the registry's 404, as text.
  await rendered(page, () => page.goto(`${url}/ui#/m/nope`));
  t.match(await page.locator('.notice.error').textContent(), /^404 MODEL_NOT_FOUND: /);
  b.clean(t);
});
