/** Assertions shared by the HTTP tests. */
import { createHash } from 'node:crypto';
import type { Test } from 'tap';
import type { Running } from './server.js';

export const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** The response is a JSON error with a code and a message, and has the expected status. */
export async function isError(
  t: Test,
  res: Response,
  status: number,
  code?: string | RegExp,
): Promise<{ error: string; message: string }> {
  t.equal(res.status, status, `status ${status}`);
  t.match(res.headers.get('content-type'), /application\/json/, 'error is JSON');
  const body = (await res.json()) as { error: string; message: string };
  t.type(body.error, 'string');
  t.ok(body.message && body.message.length > 20, 'error message explains the problem');
  if (code) t.match(body.error, code);
  return body;
}

/**
 * Nothing was stored: the model still serves `previous` (or does not exist), its version is
 * unchanged, and no upload file is left in the staging area.
 */
export async function unchanged(
  t: Test,
  r: Running,
  name: string,
  previous: Buffer | undefined,
  version?: number,
): Promise<void> {
  const res = await fetch(`${r.url}/models/${name}`);
  if (previous === undefined) {
    t.equal(res.status, 404, 'model still absent');
    await res.arrayBuffer();
  } else {
    t.equal(res.status, 200);
    t.ok(Buffer.from(await res.arrayBuffer()).equals(previous), 'previous version intact');
    if (version !== undefined) t.equal(res.headers.get('x-model-version'), String(version), 'version unchanged');
  }
  const staged: string[] = [];
  for await (const info of r.app.registry.storage.list('.uploads/'))
    if (info.key.endsWith('.part')) staged.push(info.key);
  t.same(staged, [], 'no upload left in the staging area');
  // Nor in history (where a backend that stages in place writes an upload): every archive
  // there is a version with its record, none a refused upload's under a number given back.
  const listed = new Map<string, number>();
  for await (const info of r.app.registry.storage.list(`.history/${name}/`)) listed.set(info.key, info.size);
  const orphans = [...listed.keys()]
    .filter((key) => key.endsWith('.tar.gz'))
    .filter((key) => (listed.get(key.replace(/\.tar\.gz$/, '.json')) ?? 0) < 64);
  t.same(orphans, [], 'no bytes of a refused upload in history');
}
