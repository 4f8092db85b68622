/**
 * Rebuilds dist/ when a source file is newer than the build, for tests that run the real process
 * (dist/server.js). Type errors elsewhere still emit JavaScript; only a missing build is fatal.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';

function newest(dir: string): number {
  return readdirSync(dir, { withFileTypes: true }).reduce((m, e) => {
    const p = path.join(dir, e.name);
    return Math.max(m, e.isDirectory() ? newest(p) : e.name.endsWith('.ts') ? statSync(p).mtimeMs : 0);
  }, 0);
}

export function ensureBuilt(): void {
  const built = existsSync('dist/server.js') ? statSync('dist/server.js').mtimeMs : 0;
  if (built >= newest('src')) return;
  const r = spawnSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.build.json'], {
    encoding: 'utf8',
  });
  if (!existsSync('dist/server.js')) throw new Error(`build failed: ${r.stdout}${r.stderr}`);
}
