/**
 * The file tree of a version in headless Chromium: paths and sizes, a preview of small text
 * files shown as text (markup in a file is never parsed or run), binary files not previewed,
 * single-file downloads.
 */
import { readFile } from 'node:fs/promises';
import t from 'tap';
import { tgz } from '../helpers/archives.js';
import { browser, rendered, screenshot } from '../helpers/browser.js';
import { put, start } from '../helpers/server.js';

const HOSTILE = '<script>window.__ran = 1</script><img src=x onerror="window.__ran = 2">\n&amp; "quotes" \'single\'\n';

t.test('files of a version', async (t) => {
  const { url } = await start(t);
  const config = JSON.stringify({ pipeline: ['WhitespaceTokenizer', 'DIETClassifier'], epochs: 100 }, null, 2);
  const weights = Buffer.alloc(300_000, 1);
  weights[10] = 0;
  const archive = tgz([
    { path: 'model/', type: 'Directory' },
    { path: 'model/config.json', body: config },
    { path: 'model/vocab/', type: 'Directory' },
    { path: 'model/vocab/words.txt', body: HOSTILE },
    { path: 'model/weights.bin', body: weights },
    { path: 'model/small.bin', body: Buffer.from([1, 2, 0, 3]) },
    { path: 'model/current', type: 'SymbolicLink', linkpath: 'weights.bin' },
  ]);
  t.equal((await put(`${url}/models/demo`, archive)).status, 201);

  const b = await browser(t);
  const page = await b.page();
  await page.goto(`${url}/ui#/m/demo`);
  await page.locator('#versions').waitFor();
  await rendered(page, () => page.click('#versions a:text-is("Files")'));
  t.equal(await page.locator('h1').textContent(), 'demo v1: files');
  const paths = await page
    .locator('#files tbody tr')
    .evaluateAll((rows) => rows.map((r) => (r as HTMLElement).dataset.path));
  t.same(
    paths,
    [
      'model',
      'model/config.json',
      'model/current',
      'model/small.bin',
      'model/vocab',
      'model/vocab/words.txt',
      'model/weights.bin',
    ],
    'the whole tree, in order',
  );
  const row = (p: string) => page.locator(`#files tr[data-path="${p}"]`);
  t.same(
    await row('model/config.json')
      .locator('td')
      .allTextContents()
      .then((c) => c.slice(0, 2)),
    ['config.json', `${config.length} B`],
  );
  t.equal(await row('model/weights.bin').locator('td').nth(1).textContent(), '293 KiB');
  t.equal(await row('model/current').locator('td').first().textContent(), 'current → weights.bin');
  t.equal(await row('model/vocab').locator('td').first().textContent(), 'vocab/');
  t.equal(await row('model/weights.bin').locator('.preview-button').count(), 0, 'no preview of a file over 256 KiB');

  await row('model/config.json').locator('.preview-button').click();
  await page.locator('#preview-text').waitFor();
  t.equal(await page.locator('#preview-text').textContent(), config, 'config.json previewed');

  await row('model/vocab/words.txt').locator('.preview-button').click();
  await page.waitForFunction(() => document.querySelector('#preview h2')?.textContent === 'model/vocab/words.txt');
  t.equal(await page.locator('#preview-text').textContent(), HOSTILE, 'markup shown as the text it is');
  t.equal(await page.locator('#preview script, #preview img').count(), 0, 'nothing of it became an element');
  t.equal(await page.evaluate(() => (window as unknown as { __ran?: number }).__ran), undefined, 'nothing of it ran');
  await screenshot(page, 'files');

  await row('model/small.bin').locator('.preview-button').click();
  await page.waitForFunction(() => /binary/.test(document.querySelector('#preview')?.textContent ?? ''));
  t.match(await page.locator('#preview').textContent(), 'model/small.bin is a binary file');

  const [download] = await Promise.all([
    page.waitForEvent('download'),
    row('model/config.json').locator('a.download').click(),
  ]);
  t.equal(download.suggestedFilename(), 'config.json');
  t.equal(await readFile((await download.path())!, 'utf8'), config, 'a single file downloaded');
  b.clean(t);
});
