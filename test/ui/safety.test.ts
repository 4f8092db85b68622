/**
 * Safety of the page: a strict Content-Security-Policy and nosniff on every /ui response, no
 * inline script or style in the HTML, no secret in it, markup in names' labels shown as text
 * (in headless Chromium, where a CSP violation or a script that ran would show).
 */
import t from 'tap';
import { model } from '../helpers/archives.js';
import { browser, rendered, screenshot } from '../helpers/browser.js';
import { put, start } from '../helpers/server.js';

const XSS = '<img src=x onerror="window.__ran=1">';
const TOKEN = 'admin-secret-token-0123456789';

t.test('headers of every /ui response', async (t) => {
  const { url } = await start(t, { AUTH_TOKENS: `admin:${TOKEN}` });
  for (const path of ['/ui', '/ui/app.js', '/ui/app.css']) {
    const res = await fetch(`${url}${path}`);
    t.equal(res.status, 200, `${path} needs no token: it holds no data`);
    const csp = res.headers.get('content-security-policy') ?? '';
    t.match(csp, /(^|; )default-src 'none'(;|$)/, `${path}: default-src 'none'`);
    t.match(csp, /(^|; )script-src 'self'(;|$)/, 'scripts only from the registry: no inline script, no eval');
    t.match(csp, /(^|; )style-src 'self'(;|$)/, 'styles only from the registry');
    t.match(csp, /(^|; )connect-src 'self'(;|$)/);
    t.match(csp, /(^|; )frame-ancestors 'none'(;|$)/);
    t.notMatch(csp, /unsafe-inline|unsafe-eval|\*|https?:|data:/, 'nothing loosens it');
    t.equal(res.headers.get('x-content-type-options'), 'nosniff');
    t.equal(res.headers.get('referrer-policy'), 'no-referrer');
    const body = await res.text();
    t.notMatch(body, TOKEN, 'no secret');
    t.notMatch(body, /https?:\/\//, 'nothing from elsewhere');
    if (path === '/ui') {
      t.match(res.headers.get('content-type'), 'text/html');
      t.notMatch(body, /<script(?![^>]*\bsrc=)[^>]*>/, 'no inline script');
      t.notMatch(body, /<style|\sstyle=|\son[a-z]+=/i, 'no inline style or handler');
    }
    const again = await fetch(`${url}${path}`, { headers: { 'if-none-match': res.headers.get('etag')! } });
    t.equal(again.status, 304, 'revalidated by ETag');
    t.ok(again.headers.get('content-security-policy'));
  }
  const root = await fetch(`${url}/`, { redirect: 'manual' });
  t.equal(root.status, 302);
  t.equal(root.headers.get('location'), '/ui');
  t.equal((await fetch(`${url}/ui/index.html`)).status, 404, 'only the three assets');
  t.equal((await fetch(`${url}/ui/..%2Fpackage.json`)).status, 404);
});

t.test('markup in labels, aliases and names is text', async (t) => {
  const { url } = await start(t);
  t.equal(
    (
      await put(`${url}/models/x-model`, model('x'), {
        'x-model-label-note': XSS,
        'x-model-label-git_sha': '"><script>window.__ran=2</script>',
      })
    ).status,
    201,
  );
  const b = await browser(t);
  const page = await b.page();
  // A CSP violation is reported as a console error: the browser helper collects those.
  await page.goto(`${url}/ui#/?prefix=${encodeURIComponent('x-')}`);
  await page.locator('#models tbody tr').first().waitFor();
  t.match(
    await page.locator('#models tbody tr').first().textContent(),
    `note=${XSS}`,
    'the label in the list, as text',
  );
  t.equal(await page.locator('main img, main script').count(), 0, 'no element made of it');
  await rendered(page, () => page.click('a:text-is("x-model")'));
  t.match(await page.locator('#versions').textContent(), `note=${XSS}`, 'the label on the model page, as text');
  t.match(await page.locator('#versions').textContent(), 'git_sha="><script>window.__ran=2</script>');
  t.equal(await page.locator('main img, main script').count(), 0);
  await rendered(page, () => page.goto(`${url}/ui#/m/${encodeURIComponent('<b>bold</b>')}`));
  t.match(
    await page.locator('.notice.error').textContent(),
    /^4\d\d [A-Z_]+: /,
    'a name that is no name: the registry says so, as text',
  );
  t.equal(await page.locator('main b').count(), 0);
  t.equal(await page.evaluate(() => (window as unknown as { __ran?: number }).__ran), undefined, 'nothing ran');
  // The page's own code cannot be joined by an inline script: the CSP refuses it.
  const inline = await page.evaluate(
    () =>
      new Promise<string>((resolve) => {
        document.addEventListener('securitypolicyviolation', (e) => resolve(e.violatedDirective), { once: true });
        const s = document.createElement('script');
        s.textContent = 'window.__ran = 3';
        document.body.append(s);
        setTimeout(() => resolve('no violation'), 2000);
      }),
  );
  t.match(inline, /^script-src/, 'an inline script is refused by the CSP');
  t.equal(await page.evaluate(() => (window as unknown as { __ran?: number }).__ran), undefined);
  await screenshot(page, 'safety');
});
