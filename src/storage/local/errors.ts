/** Errno errors of the local backend, as storage errors (the errno error kept as `cause`). */
import { NotFoundError, StorageFullError, StorageUnavailableError } from '../errors.js';

/** `key` given: a missing path is that key missing. */
export function translate(err: unknown, key?: string): unknown {
  const code = (err as NodeJS.ErrnoException)?.code;
  if (key !== undefined && (code === 'ENOENT' || code === 'ENOTDIR' || code === 'EISDIR')) {
    return new NotFoundError(key, { cause: err });
  }
  if (code === 'ENOSPC' || code === 'EDQUOT') {
    return new StorageFullError('local', { cause: err });
  }
  if (['EACCES', 'EPERM', 'EROFS', 'EIO', 'ENOENT', 'ELOCKED'].includes(code ?? '')) {
    return new StorageUnavailableError('local', `${code} on the storage directory`, { cause: err });
  }
  return err;
}
