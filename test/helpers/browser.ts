/**
 * Headless Chromium (Debian's /usr/bin/chromium, installed by scripts/system/install.sh) driven by
 * playwright-core, for the page tests in test/ui/. A missing browser fails the test with the
 * reason; it is never skipped. Each test gets a fresh profile directory, and every page it opens
 * records console errors and uncaught exceptions (a CSP violation is a console error), which
 * `clean()` asserts there were none of. Screenshots go to .screenshots/ (git-ignored).
 */
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { type BrowserContext, chromium, type Page } from 'playwright-core';
import type { Test } from 'tap';
import { tempDir } from './server.js';

export const CHROMIUM = '/usr/bin/chromium';
export const SCREENSHOTS = path.resolve('.screenshots');

// The machine's network is closed: without these, Chromium waits on connections of its own.
const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

export interface Browser {
  context: BrowserContext;
  /** A new tab, recording its console errors and page errors. */
  page(): Promise<Page>;
  /** Asserts that no page logged an error (CSP violations included). */
  clean(t: Test): void;
}

export async function browser(t: Test): Promise<Browser> {
  if (!existsSync(CHROMIUM))
    throw new Error(`${CHROMIUM} is missing: run scripts/system/install.sh as root (it installs Debian's chromium)`);
  const profile = await tempDir(t, 'mr-chromium-');
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ARGS,
    viewport: { width: 1280, height: 800 },
    timeout: 60_000,
  });
  t.teardown(() => context.close());
  const problems: string[] = [];
  return {
    context,
    async page() {
      const page = await context.newPage();
      page.setDefaultTimeout(15_000);
      page.on('console', (msg) => {
        // A 4xx the page asked for and shows (401, 403, 412...) is logged by Chromium as a failed
        // resource; that is the registry answering, not a fault of the page.
        if (
          msg.type() === 'error' &&
          !/Failed to load resource: the server responded with a status of 4\d\d/.test(msg.text())
        )
          problems.push(msg.text());
      });
      page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
      return page;
    },
    clean(t: Test) {
      t.same(problems, [], 'no console errors, CSP violations or uncaught exceptions');
    },
  };
}

/** Saves a screenshot (of the whole page unless `fullPage` is false) as .screenshots/<name>.png; returns its path. */
export async function screenshot(page: Page, name: string, fullPage = true): Promise<string> {
  await mkdir(SCREENSHOTS, { recursive: true });
  const file = path.join(SCREENSHOTS, `${name}.png`);
  await page.screenshot({ path: file, fullPage });
  return file;
}

/** Runs `action` (a click, a fill and submit...) and waits until the page has rendered a view again. */
export async function rendered(page: Page, action: () => Promise<unknown>): Promise<void> {
  const before = Number(await page.locator('body').getAttribute('data-renders'));
  await action();
  await page.waitForFunction((n) => Number(document.body.dataset.renders) > n, before);
}
