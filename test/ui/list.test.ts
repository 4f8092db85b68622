/**
 * The page's model list in headless Chromium: search by name prefix, labels and alias; each
 * model's version, size, updated time and aliases; paging with the registry's cursor; 1,000
 * models on one page in under a second; the page's weight.
 */
import t from 'tap';
import { model } from '../helpers/archives.js';
import { browser, rendered, screenshot } from '../helpers/browser.js';
import { put, start } from '../helpers/server.js';

const MODELS = 1000;

/** Runs `fn` over `items`, `n` at a time. */
async function pool<T>(items: T[], n: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: n }, async () => {
      while (next < items.length) await fn(items[next++]!);
    }),
  );
}

t.test('the model list', async (t) => {
  const { url } = await start(t);
  const archive = model('list', 1024);
  const names = Array.from({ length: MODELS }, (_, i) => `bulk-${String(i).padStart(4, '0')}`);
  await pool(names, 8, async (name) => {
    const res = await put(`${url}/models/${name}`, archive, {
      'x-model-label-team': Number(name.slice(5)) % 2 ? 'cv' : 'nlp',
      'x-model-label-git_sha': name.slice(5),
    });
    if (res.status !== 201) throw new Error(`PUT ${name}: ${res.status} ${await res.text()}`);
  });
  for (const [name, team] of [
    ['intent-classifier', 'nlp'],
    ['intent-router', 'nlp'],
    ['image-tagger', 'cv'],
  ] as const) {
    t.equal(
      (
        await put(`${url}/models/${name}`, model(name), {
          'x-model-label-team': team,
          'x-model-label-dataset': 'faq-2024',
        })
      ).status,
      201,
    );
  }
  t.equal(
    (await put(`${url}/models/intent-classifier`, model('second'), { 'x-model-label-team': 'nlp' })).status,
    200,
    'intent-classifier has v2',
  );
  const alias = await fetch(`${url}/models/intent-classifier/aliases/production`, {
    method: 'PUT',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ version: 1 }),
  });
  t.equal(alias.status, 201);

  const b = await browser(t);
  const page = await b.page();

  t.test('1,000 models render in under a second', async (t) => {
    const api = Date.now();
    await (await fetch(`${url}/models?limit=1000`)).text();
    t.comment(`GET /models?limit=1000 alone: ${Date.now() - api} ms`);
    // Cold: a fresh tab's first visit (assets, the API call for 1,000 models, building the rows),
    // three times; the median must be under 1 s in the page (from the navigation's start until the
    // rows are in the document).
    const walls: number[] = [];
    const inPage: number[] = [];
    for (let i = 0; i < 3; i++) {
      const tab = await b.page();
      const started = Date.now();
      await tab.goto(`${url}/ui#/?limit=1000`);
      await tab
        .locator('#models tbody tr')
        .nth(MODELS - 1)
        .waitFor();
      walls.push(Date.now() - started);
      inPage.push(Number(await tab.locator('body').getAttribute('data-rendered-at')));
      t.equal(await tab.locator('#models tbody tr').count(), MODELS);
      t.comment(
        `cold load ${i + 1}: ${walls.at(-1)} ms from page.goto to the last row; in the page ${inPage.at(-1)} ms from navigation start, of which building the rows ${await tab.locator('body').getAttribute('data-build-ms')} ms`,
      );
      await tab.close();
    }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[1]!;
    t.ok(median(inPage) < 1000, `in the page within 1 s of the navigation's start (median ${median(inPage)} ms)`);
    // From outside the figure also holds Playwright opening the tab and polling for the row (0.2-0.4 s
    // here): bounded, not the measure.
    t.ok(median(walls) < 1500, `measured from outside, page.goto to the last row (median ${median(walls)} ms)`);
    await page.goto(`${url}/ui#/?limit=1000`);
    await page
      .locator('#models tbody tr')
      .nth(MODELS - 1)
      .waitFor();
    // Warm (assets cached): what a user going back to the list sees.
    const again = Date.now();
    await page.reload();
    await page
      .locator('#models tbody tr')
      .nth(MODELS - 1)
      .waitFor();
    t.comment(`reload: ${Date.now() - again} ms`);
    t.ok(Date.now() - again < 1000);
    await screenshot(page, 'list-1000', false);
  });

  t.test('page weight', async (t) => {
    let total = 0;
    for (const asset of ['/ui', '/ui/app.js', '/ui/app.css']) {
      const body = Buffer.from(await (await fetch(`${url}${asset}`)).arrayBuffer());
      total += body.length;
      t.comment(`${asset}: ${body.length} bytes`);
    }
    const list = Buffer.from(await (await fetch(`${url}/models?limit=1000`)).arrayBuffer());
    t.comment(`page ${total} bytes in 3 requests (uncompressed); GET /models?limit=1000 ${list.length} bytes`);
    t.ok(total < 64 * 1024, 'the page is under 64 KiB');
  });

  t.test('/ redirects to the page; the default page and paging by cursor', async (t) => {
    await page.goto(`${url}/`);
    t.match(page.url(), /\/ui(#.*)?$/);
    await page.locator('#models tbody tr').first().waitFor();
    t.equal(await page.locator('#models tbody tr').count(), 100, '100 a page by default');
    t.equal(await page.locator('#models tbody tr').first().locator('td').first().textContent(), 'bulk-0000');
    const seen = new Set<string>();
    let pages = 0;
    await page.selectOption('select[name=limit]', '500');
    await rendered(page, () => page.click('#search button[type=submit]'));
    for (;;) {
      for (const name of await page.locator('#models tbody tr td:first-child').allTextContents()) seen.add(name);
      pages++;
      if ((await page.locator('#next').count()) === 0) break;
      await rendered(page, () => page.click('#next'));
    }
    t.equal(pages, 3, '1,003 models in pages of 500');
    t.equal(seen.size, MODELS + 3, 'every model once, following nextCursor');
  });

  t.test('search by prefix, labels and alias', async (t) => {
    const names = async () => page.locator('#models tbody tr td:first-child').allTextContents();
    await rendered(page, () => page.goto(`${url}/ui#/`));
    await page.fill('input[name=prefix]', 'intent');
    await rendered(page, () => page.click('#search button[type=submit]'));
    t.same(await names(), ['intent-classifier', 'intent-router']);
    const row = page.locator('#models tbody tr', { hasText: 'intent-classifier' });
    const cells = await row.locator('td').allTextContents();
    t.equal(cells[1], 'v2', 'the current version');
    t.match(cells[2], /KiB$/, 'the size');
    t.match(cells[3], /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$/, 'the updated time');
    t.equal(cells[4], 'production → v1', 'the aliases');
    t.match(cells[5], /team=nlp/, 'the labels');

    await page.fill('input[name=prefix]', '');
    await page.fill('input[name=labels]', 'dataset=faq-2024 team=nlp');
    await rendered(page, () => page.click('#search button[type=submit]'));
    t.same(await names(), ['intent-router'], 'labels of the current version, all of them');

    await page.fill('input[name=labels]', '');
    await page.fill('input[name=alias]', 'production');
    await rendered(page, () => page.click('#search button[type=submit]'));
    t.same(await names(), ['intent-classifier']);
    t.match(page.url(), /alias=production/, 'the search is in the address, for a link or a reload');
    await screenshot(page, 'list-search');

    await page.fill('input[name=alias]', 'no such alias!');
    await rendered(page, () => page.click('#search button[type=submit]'));
    t.match(
      await page.locator('.notice.error').textContent(),
      /^400 INVALID_QUERY: .*alias/,
      "the registry's own message",
    );
  });

  t.test('no console errors', async (t) => b.clean(t));
});
