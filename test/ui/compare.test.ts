/**
 * Comparing two versions in headless Chromium: files added, removed and changed — by size, and
 * by content digest when the size is the same — and label differences.
 */
import t from 'tap';
import { tgz } from '../helpers/archives.js';
import { browser, rendered, screenshot } from '../helpers/browser.js';
import { put, start } from '../helpers/server.js';

t.test('compare two versions', async (t) => {
  const { url } = await start(t);
  const v1 = tgz([
    { path: 'model/config.json', body: '{"epochs":100}' },
    { path: 'model/vocab.txt', body: 'hello\nworld\n' },
    { path: 'model/same.txt', body: 'unchanged' },
    { path: 'model/old.bin', body: Buffer.alloc(1000, 1) },
  ]);
  const v2 = tgz([
    { path: 'model/config.json', body: '{"epochs":200}' }, // same size, other bytes
    { path: 'model/vocab.txt', body: 'hello\nworld\nagain\n' },
    { path: 'model/same.txt', body: 'unchanged' },
    { path: 'model/new.bin', body: Buffer.alloc(2000, 2) },
  ]);
  t.equal(
    (await put(`${url}/models/demo`, v1, { 'x-model-label-git_sha': 'aaa111', 'x-model-label-dataset': 'faq' })).status,
    201,
  );
  t.equal(
    (
      await put(`${url}/models/demo`, v2, {
        'x-model-label-git_sha': 'bbb222',
        'x-model-label-dataset': 'faq',
        'x-model-label-team': 'nlp',
      })
    ).status,
    200,
  );

  const b = await browser(t);
  const page = await b.page();
  await page.goto(`${url}/ui#/m/demo`);
  await page.locator('#compare-form').waitFor();
  t.equal(await page.locator('#compare-a').inputValue(), '1', 'the previous version by default');
  t.equal(await page.locator('#compare-b').inputValue(), '2', 'against the current one');
  await rendered(page, () => page.click('#compare-form button'));
  t.equal(await page.locator('h1').textContent(), 'demo: v1 → v2');
  const paths = (id: string) =>
    page.locator(`#${id} tr[data-path]`).evaluateAll((rows) => rows.map((r) => (r as HTMLElement).dataset.path));
  t.same(await paths('added'), ['model/new.bin']);
  t.same(await paths('removed'), ['model/old.bin']);
  t.same(
    (await paths('changed')).sort(),
    ['model/config.json', 'model/vocab.txt'],
    'by size, and by digest where the size is the same',
  );
  t.match(await page.locator('#changed tr[data-path="model/vocab.txt"]').textContent(), '12 B → 18 B');
  t.match(
    await page.locator('#changed tr[data-path="model/config.json"]').textContent(),
    /14 B → 14 B[0-9a-f]{12}… → [0-9a-f]{12}…/,
  );
  t.match(await page.locator('main').textContent(), '1 file unchanged');
  const labels = await page
    .locator('#label-diff tr[data-label]')
    .evaluateAll((rows) => rows.map((r) => [...r.querySelectorAll('td')].map((c) => c.textContent)));
  t.same(
    labels,
    [
      ['git_sha', 'aaa111', 'bbb222'],
      ['team', '—', 'nlp'],
    ],
    'labels that differ, and only those',
  );
  await screenshot(page, 'compare');

  // A version that is not retained: the registry's message.
  await rendered(page, () => page.goto(`${url}/ui#/m/demo/compare?a=7&b=2`));
  t.match(await page.locator('.notice.error').textContent(), /^404 VERSION_NOT_FOUND: /);
  b.clean(t);
});
