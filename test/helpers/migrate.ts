/**
 * Shared by the migrate and importer tests: .env files in a work directory, output collected as
 * text, one migrate run, and a backend opened from settings.
 */
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import pino from 'pino';
import type { Test } from 'tap';
import { loadConfig } from '../../src/config.js';
import { type MigrateOptions, migrate, type Output } from '../../src/migrate/index.js';
import { createStorage, type InitOptions, type Storage } from '../../src/storage/index.js';

/** Writes `vars` as the .env file `name` in `dir`; returns its path. */
export async function envFile(dir: string, name: string, vars: Record<string, string>): Promise<string> {
  const file = path.join(dir, name);
  await writeFile(
    file,
    Object.entries(vars)
      .map(([k, v]) => `${k}="${v}"\n`)
      .join(''),
  );
  return file;
}

export const collector = (isTTY = false): Output & { text: string } => ({
  text: '',
  isTTY,
  columns: 200,
  write(s: string) {
    this.text += s;
  },
});

/** One run; stdout's lines come back as `out`. */
export async function runMigrate(options: Omit<MigrateOptions, 'stdout' | 'stderr'> & { stderr?: Output }) {
  const stdout = collector();
  const summary = await migrate({ stderr: collector(), ...options, stdout });
  return { summary, out: stdout.text };
}

/** A backend from registry settings, closed with the test. */
export async function storageOf(tt: Test, env: Record<string, string>, options: InitOptions = {}): Promise<Storage> {
  const storage = await createStorage(loadConfig({ ...env, LOG_LEVEL: 'silent' }), pino({ level: 'silent' }), options);
  tt.teardown(() => storage.close());
  return storage;
}
