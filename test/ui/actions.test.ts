/**
 * A signed-in operator in headless Chromium, with AUTH_TOKENS set: a token pasted into the page
 * lives in sessionStorage only; without one the page shows nothing; a read token's writes show
 * the registry's 403; promoting an alias wakes a client waiting with ?wait=; a rollback from a
 * stale page is the registry's 412; deleting an aliased history entry its 409, another one works;
 * an upload by drag and drop with upload progress.
 */
import t from 'tap';
import { model } from '../helpers/archives.js';
import { sha256 } from '../helpers/assert.js';
import { browser, rendered, screenshot } from '../helpers/browser.js';
import { bytes, put, start } from '../helpers/server.js';

const READ = 'read-token-0123456789';
const ADMIN = 'admin-token-0123456789';

t.test('operator actions', async (t) => {
  const { url } = await start(t, { AUTH_TOKENS: `read:${READ},admin:${ADMIN}` });
  const admin = { authorization: `Bearer ${ADMIN}` };
  const v1 = model('one');
  const v2 = model('two');
  t.equal((await put(`${url}/models/demo`, v1, admin)).status, 201);
  t.equal((await put(`${url}/models/demo`, v2, admin)).status, 200);
  const aliased = await fetch(`${url}/models/demo/aliases/production`, {
    method: 'PUT',
    headers: { ...admin, 'content-type': 'application/json' },
    body: JSON.stringify({ version: 1 }),
  });
  t.equal(aliased.status, 201);

  const b = await browser(t);
  const page = await b.page();
  page.on('dialog', (dialog) => void dialog.accept());

  const signIn = async (token: string) => {
    if (await page.locator('#sign-out').isVisible()) await rendered(page, () => page.click('#sign-out'));
    await page.fill('#token', token);
    await rendered(page, () => page.click('#sign-in button'));
  };

  t.test('without a token the page shows nothing of the registry', async (t) => {
    await page.goto(`${url}/ui`);
    await page.locator('.notice.error').waitFor();
    t.match(await page.locator('.notice.error').textContent(), /^401 UNAUTHORIZED: /);
    t.notMatch(await page.locator('body').textContent(), 'demo', 'no model name');
    await rendered(page, () => page.goto(`${url}/ui#/m/demo`));
    t.notMatch(await page.locator('main').textContent(), /v1|v2|production/, 'nor its versions or aliases');
  });

  t.test('a read token: everything it may read, and the 403 of a write', async (t) => {
    await rendered(page, () => page.goto(`${url}/ui#/`));
    await signIn(READ);
    t.equal(await page.locator('#models tbody tr').count(), 1);
    t.equal(await page.evaluate(() => sessionStorage.getItem('model-registry.token')), READ, 'kept in sessionStorage');
    t.equal(await page.evaluate(() => localStorage.length), 0, 'not in localStorage');
    t.same(await page.context().cookies(), [], 'no cookie');
    t.notMatch(page.url(), READ, 'never in the address');
    t.equal(await page.locator('#token').inputValue(), '', 'the field is emptied');
    await rendered(page, () => page.click('a:text-is("demo")'));
    await page.fill('#alias-name', 'production');
    await page.selectOption('#alias-version', '2');
    await page.click('#alias-set');
    await page.locator('#action-status .notice.error').waitFor();
    t.match(
      await page.locator('#action-status').textContent(),
      /^Point production at v2 failed: 403 FORBIDDEN: .*write/,
    );
    await screenshot(page, 'actions-403');
    const before = await page.locator('#versions tbody tr').count();
    await page.locator('#versions tr[data-version="1"] .rollback').click();
    await page.waitForFunction(() =>
      /Roll back to v1 failed/.test(document.querySelector('#action-status')?.textContent ?? ''),
    );
    t.match(await page.locator('#action-status').textContent(), '403 FORBIDDEN');
    t.equal(await page.locator('#versions tbody tr').count(), before, 'nothing changed');
    // An upload too (XMLHttpRequest): the registry's message.
    await dropFile(Buffer.from(v1), 'model.tar.gz');
    await page.waitForFunction(() => /Upload failed/.test(document.querySelector('#upload')?.textContent ?? ''));
    t.match(await page.locator('#upload .notice.error').textContent(), /^Upload failed: 403 FORBIDDEN: /);
  });

  t.test('promoting an alias wakes a client waiting with ?wait=', async (t) => {
    await signIn(ADMIN);
    const etag = `"sha256:${sha256(v1)}"`;
    let answered = false;
    const waiting = fetch(`${url}/models/demo@production?wait=60`, {
      headers: { authorization: `Bearer ${READ}`, 'if-none-match': etag },
    }).then((res) => {
      answered = true;
      return res;
    });
    await new Promise((resolve) => setTimeout(resolve, 500));
    t.notOk(answered, 'the client is waiting');
    await page.fill('#alias-name', 'production');
    await page.selectOption('#alias-version', '2');
    await rendered(page, () => page.click('#alias-set'));
    const res = await waiting;
    t.equal(res.status, 200, 'woken with the new version');
    t.equal(res.headers.get('x-model-version'), '2');
    t.equal(sha256(await bytes(res)), sha256(v2), "the promoted version's bytes");
    t.equal(await page.locator('#aliases .chip.alias').textContent(), 'production → v2×');
  });

  t.test('roll back: 412 from a stale page, then done', async (t) => {
    t.equal((await put(`${url}/models/demo`, model('three'), admin)).status, 200, 'v3 uploaded behind the page');
    await page.locator('#versions tr[data-version="1"] .rollback').click();
    await page.waitForFunction(() => /failed/.test(document.querySelector('#action-status')?.textContent ?? ''));
    t.match(
      await page.locator('#action-status').textContent(),
      /^Roll back to v1 failed: 412 PRECONDITION_FAILED: /,
      'the page acted on v2 being current',
    );
    await page.reload(); // a new document: its render count starts again
    await page.locator('#versions tr[data-version="3"]').waitFor();
    await rendered(page, () => page.locator('#versions tr[data-version="1"] .rollback').click());
    const current = await page.locator('#versions tbody tr').first().locator('td').allTextContents();
    t.match(current[0], /^v4\s*current$/);
    t.equal(current[4], 'rollback');
  });

  t.test('delete a history entry', async (t) => {
    await page.locator('#versions tr[data-version="2"] .delete-version').click();
    await page.waitForFunction(() => /failed/.test(document.querySelector('#action-status')?.textContent ?? ''));
    t.match(
      await page.locator('#action-status').textContent(),
      /^Delete v2 failed: 409 ALIAS_IN_USE: /,
      'an aliased version stays',
    );
    await rendered(page, () => page.locator('#versions tr[data-version="3"] .delete-version').click());
    t.equal(await page.locator('#versions tr[data-version="3"]').count(), 0, 'v3 is gone');
    t.equal((await fetch(`${url}/models/demo?version=3`, { headers: admin })).status, 404);
  });

  t.test('upload by drag and drop, with progress', async (t) => {
    const archive = model('dropped', 4 * 1024 * 1024);
    await page.fill('#upload-labels', 'git_sha=d00d dataset=faq');
    // Count the upload's progress events from outside the page's code.
    await page.evaluate(() => {
      const w = window as unknown as { __progress: number[] };
      w.__progress = [];
      const send = XMLHttpRequest.prototype.send;
      XMLHttpRequest.prototype.send = function (body) {
        this.upload.addEventListener('progress', (e) => w.__progress.push(e.loaded));
        return send.call(this, body);
      };
    });
    await dropFile(archive, 'dropped.tar.gz');
    await page.waitForFunction(() => /Uploaded/.test(document.querySelector('#upload')?.textContent ?? ''), undefined, {
      timeout: 30_000,
    });
    t.match(await page.locator('#upload .notice').first().textContent(), /^Uploaded demo v5 \(4\.0 MiB\)\./);
    t.equal(
      await page.locator('#upload-progress').evaluate((p) => (p as HTMLProgressElement).value),
      100,
      'the bar is full',
    );
    const progress = await page.evaluate(() => (window as unknown as { __progress: number[] }).__progress);
    t.ok(progress.length >= 1, `progress events (${progress.length})`);
    t.equal(progress.at(-1), archive.length, 'up to the whole file');
    await screenshot(page, 'actions-upload');
    const meta = (await (await fetch(`${url}/models/demo/meta`, { headers: admin })).json()) as {
      version: number;
      sha256: string;
      labels: Record<string, string>;
    };
    t.match(meta, { version: 5, sha256: sha256(archive), labels: { git_sha: 'd00d', dataset: 'faq' } });
  });

  t.test('no console errors', async (t) => b.clean(t));

  /** Drops `body` as a file named `name` on the upload zone, as a user dragging it from a desktop. */
  async function dropFile(body: Buffer, name: string) {
    await page.locator('#drop').evaluate(
      (drop, [b64, filename]) => {
        const raw = atob(b64!);
        const data = new Uint8Array(raw.length);
        for (let i = 0; i < raw.length; i++) data[i] = raw.charCodeAt(i);
        const transfer = new DataTransfer();
        transfer.items.add(new File([data], filename!, { type: 'application/gzip' }));
        drop.dispatchEvent(new DragEvent('dragover', { dataTransfer: transfer, bubbles: true, cancelable: true }));
        drop.dispatchEvent(new DragEvent('drop', { dataTransfer: transfer, bubbles: true, cancelable: true }));
      },
      [body.toString('base64'), name],
    );
  }
});
