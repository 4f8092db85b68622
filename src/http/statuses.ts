/**
 * The HTTP status of every error code the service answers with: the one table that turns a code
 * into a status. Nothing else decides a status of an error: the catalogue (src/errors.ts) gives
 * codes and messages, storage-level errors are translated into codes by src/http/errors.ts, and
 * the error handler, the not-found handler and the router's and parser's errors (src/app.ts)
 * all read the status here.
 *
 * Pure data, imported by src/errors.ts as well (for RegistryError.statusCode, which code outside
 * src/http still reads), so it imports nothing.
 */

export const STATUS_OF_CODE = {
  // The request itself: URL, name, query, headers, body.
  BAD_REQUEST: 400,
  BAD_URL: 400,
  INVALID_NAME: 400,
  INVALID_VERSION: 400,
  INVALID_QUERY: 400,
  INVALID_BODY: 400,
  INVALID_LABEL: 400,
  INVALID_HEADER: 400,
  INVALID_ALIAS: 400,
  ALIAS_RESERVED: 400,
  MULTIPART_NO_FILE: 400,
  MULTIPART_TOO_MANY_FILES: 400,
  UNAUTHORIZED: 401,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  METHOD_NOT_ALLOWED: 405,
  REQUEST_TIMEOUT: 408,
  MODEL_TOO_LARGE: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  HEADERS_TOO_LARGE: 431,
  // The archive uploaded (or, for /files, the one stored).
  INVALID_ARCHIVE: 422,
  UNSAFE_ARCHIVE: 422,
  PATH_TOO_LONG: 422,
  ARCHIVE_LIMIT_EXCEEDED: 422,
  DIGEST_MISMATCH: 422,
  // What the registry holds.
  MODEL_NOT_FOUND: 404,
  VERSION_NOT_FOUND: 404,
  FILE_NOT_FOUND: 404,
  ALIAS_NOT_FOUND: 404,
  VERSION_IS_CURRENT: 409,
  CONCURRENT_UPDATE: 409,
  ALIAS_IN_USE: 409,
  TOO_MANY_ALIASES: 409,
  PRECONDITION_FAILED: 412,
  RANGE_NOT_SATISFIABLE: 416,
  // The storage and the cache under the registry (see STORAGE_ERRORS in src/http/errors.ts).
  STORAGE_ACCESS_DENIED: 403,
  METADATA_TOO_LARGE: 413,
  STORAGE_UNAVAILABLE: 503,
  CACHE_UNAVAILABLE: 503,
  STORAGE_FULL: 507,
  // The process.
  SHUTTING_DOWN: 503,
  INTERNAL: 500,
} as const;

export type ErrorCode = keyof typeof STATUS_OF_CODE;

/** Retry-After (seconds) of the errors a client should simply retry. */
export const RETRY_AFTER: Partial<Record<ErrorCode, string>> = {
  STORAGE_UNAVAILABLE: '5',
  CACHE_UNAVAILABLE: '30',
  SHUTTING_DOWN: '1',
};

export function isErrorCode(code: string): code is ErrorCode {
  return Object.hasOwn(STATUS_OF_CODE, code);
}

/** The status of `code`; `fallback` for a code this table does not know (500 if none). */
export function statusOf(code: string, fallback = 500): number {
  return isErrorCode(code) ? STATUS_OF_CODE[code] : fallback;
}
