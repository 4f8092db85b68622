/**
 * Conditional writes whose reply is lost. The SDKs send a request again when its reply does not
 * arrive (a reset connection, a timeout on a slow copy, a 5xx after success). When the first
 * attempt had landed, the second fails its own condition — 412, or 409 where the object now
 * exists — and the service would take its own write for a lost race: a 412 for an upload that
 * worked, or the same upload committed a second time under the next version number, pushing a
 * real version out of history. Each write carries a nonce in the object's metadata; after a
 * failure, the destination is read: our nonce there means the write landed.
 *
 * S3 does the same inside its commit (s3/storage.ts), where the failure shows differently (NoSuchUpload).
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from '../../util/logger.js';
import { PreconditionFailedError, StorageUnavailableError } from '../errors.js';
import type { Metadata, ObjectInfo } from '../types.js';

/** The metadata key of the nonce. Never part of a model's metadata: readers split it off. */
export const WRITE_NONCE = 'registry-write';

/** `metadata` as the model sees it, and the nonce of the write that stored it, if any. */
export function splitNonce(metadata: Metadata): { metadata: Metadata; nonce?: string } {
  if (!(WRITE_NONCE in metadata)) return { metadata };
  const { [WRITE_NONCE]: nonce, ...rest } = metadata;
  return { metadata: rest, nonce };
}

/**
 * Runs `write` with a fresh nonce (to store under WRITE_NONCE with the object's metadata). When
 * it fails with a failed condition or an unavailable storage, `read` fetches the destination
 * (undefined when there is none): if it carries the nonce, the write landed and its info is the
 * answer. When that cannot be told — `read` fails too — the answer is StorageUnavailableError,
 * never a failed condition, which the caller would retry into a second write.
 */
export async function writeOnce(
  backend: string,
  key: string,
  write: (nonce: string) => Promise<ObjectInfo>,
  read: () => Promise<{ info: ObjectInfo; nonce?: string } | undefined>,
  logger: Logger,
): Promise<ObjectInfo> {
  const nonce = randomUUID();
  try {
    return await write(nonce);
  } catch (err) {
    if (!(err instanceof PreconditionFailedError) && !(err instanceof StorageUnavailableError)) throw err;
    const found = await read().catch((readErr: unknown) => {
      if (err instanceof StorageUnavailableError) throw err;
      throw new StorageUnavailableError(
        backend,
        `the write to ${key} may have completed (its reply was lost, and reading it back failed: ${(readErr as Error).message})`,
        { cause: err },
      );
    });
    if (found?.nonce !== nonce) throw err;
    logger.info({ key }, 'a write whose reply was lost had succeeded');
    return found.info;
  }
}
