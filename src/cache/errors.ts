/** The errors of the cache's disk: they cost speed, never correctness (the caller serves from storage). */

/** The cache directory cannot take a file (full, read-only, gone): serve from storage instead. */
export class CacheDiskError extends Error {
  constructor(cause: unknown) {
    super(`the cache directory cannot be written: ${(cause as Error).message}`, { cause });
    this.name = 'CacheDiskError';
  }
}

/** Errors of a disk that cannot take more (or any) data, as opposed to bugs. */
export function isDiskError(err: unknown): boolean {
  return ['ENOSPC', 'EDQUOT', 'EROFS', 'EIO', 'EFBIG'].includes((err as NodeJS.ErrnoException)?.code ?? '');
}
