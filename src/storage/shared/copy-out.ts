/**
 * copyOut() for backends whose objects are not files on this machine: the pinned version's bytes
 * are streamed into `dest`. (The local backend hard-links instead; see capabilities.localFiles.)
 */
import { createWriteStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import { PreconditionFailedError } from '../errors.js';
import type { Storage } from '../types.js';

/** Writes the bytes of `key` at `token` to `dest`; PreconditionFailedError when it has another token. */
export async function copyOutByStream(
  storage: Pick<Storage, 'get'>,
  key: string,
  token: string,
  dest: string,
): Promise<void> {
  const { info, body } = await storage.get(key);
  if (info.token !== token) {
    body.destroy();
    throw new PreconditionFailedError(key);
  }
  try {
    await pipeline(body, createWriteStream(dest));
  } catch (err) {
    await rm(dest, { force: true });
    throw err;
  }
}
