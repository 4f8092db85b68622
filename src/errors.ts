/**
 * The error catalogue. Every error the service raises on purpose is a RegistryError with a
 * stable machine code and a message that tells the user how to fix it; which HTTP status a code
 * answers with is src/http/statuses.ts's to say (the catalogue names none).
 * Storage backends translate their SDK errors into the storage errors of storage/errors.ts
 * (re-exported at the bottom), which src/http/errors.ts maps to responses.
 */
import { type ErrorCode, statusOf } from './http/statuses.js';
import { NAMESPACE_RULE } from './registry/namespaces.js';

export class RegistryError extends Error {
  /**
   * `statusCode` is the status src/http/statuses.ts gives `code`; it stays on the error for code
   * that still compares it (a 404 of the registry service). The catalogue below fills it from
   * that table; a backend that builds a RegistryError of its own passes it (for codes the table
   * does not know, src/http/errors.ts uses it as given).
   */
  constructor(
    readonly code: string,
    readonly statusCode: number,
    message: string,
    options?: { cause?: unknown; headers?: Record<string, string> },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'RegistryError';
    this.headers = options?.headers ?? {};
  }
  readonly headers: Record<string, string>;
}

type Maker<A extends unknown[]> = (...args: A) => RegistryError;
const define =
  <A extends unknown[]>(code: ErrorCode, message: (...args: A) => string): Maker<A> =>
  (...args) =>
    new RegistryError(code, statusOf(code), message(...args));

export const errors = {
  invalidName: define(
    'INVALID_NAME',
    (name: string) =>
      `Model name ${JSON.stringify(name)} is not valid: use 1-128 characters from A-Z a-z 0-9 . _ -, starting with a ` +
      `letter or digit and not ending in .tar.gz; ${NAMESPACE_RULE}.`,
  ),
  nameTooLong: define(
    'INVALID_NAME',
    () => 'A model name or file path in the URL is far too long: names have 1-128 characters from A-Z a-z 0-9 . _ -.',
  ),
  badUrl: define(
    'BAD_URL',
    () => 'The URL is not valid percent-encoding: escape each byte as %XX (e.g. %2F), or let the client build the URL.',
  ),
  badRequestFraming: define(
    'BAD_REQUEST',
    () => 'The request is not valid HTTP/1.1 (malformed request line or header): send it with a standard HTTP client.',
  ),
  headersTooLarge: define(
    'HEADERS_TOO_LARGE',
    () => 'The request headers are too large: send fewer or shorter headers (labels go in at most 2 KiB).',
  ),
  headersTimeout: define(
    'REQUEST_TIMEOUT',
    () => 'The request headers did not arrive within HEADERS_TIMEOUT: send them at once.',
  ),
  invalidVersion: define(
    'INVALID_VERSION',
    (raw: string, where: 'query' | 'body' = 'query') =>
      `Version ${JSON.stringify(raw)} is not valid: pass a positive integer, e.g. ` +
      `${where === 'body' ? '{"version": 3}' : '?version=3'}.`,
  ),
  invalidQuery: define('INVALID_QUERY', (detail: string) => `Invalid query: ${detail}.`),
  invalidBody: define('INVALID_BODY', (detail: string) => `Invalid request body: ${detail}.`),
  invalidLabel: define('INVALID_LABEL', (detail: string) => `Invalid label: ${detail}.`),
  invalidHeader: define('INVALID_HEADER', (header: string, fix: string) => `Header ${header} is malformed: ${fix}.`),
  unsupportedMediaType: define(
    'UNSUPPORTED_MEDIA_TYPE',
    (type: string) =>
      `Content-Type ${JSON.stringify(type)} is not accepted: send a .tar.gz as application/gzip (curl -T model.tar.gz), ` +
      `a plain tar as application/x-tar, or multipart/form-data with one file part (curl -F file=@model.tar.gz).`,
  ),
  multipartNoFile: define(
    'MULTIPART_NO_FILE',
    () => 'The multipart body has no file part: send the archive as a file field, e.g. curl -F file=@model.tar.gz.',
  ),
  multipartManyFiles: define(
    'MULTIPART_TOO_MANY_FILES',
    () => 'The multipart body has more than one file part: send exactly one archive per upload.',
  ),
  tooLarge: define(
    'MODEL_TOO_LARGE',
    (limit: number) =>
      `The upload is larger than MAX_MODEL_BYTES (${limit} bytes): compress the model better or raise MAX_MODEL_BYTES ` +
      `on the server.`,
  ),
  invalidArchive: define('INVALID_ARCHIVE', (detail: string) => `The upload is not a valid model archive: ${detail}.`),
  unsafeArchive: define(
    'UNSAFE_ARCHIVE',
    (detail: string) =>
      `The archive contains an unsafe entry: ${detail}. Archives may hold only regular files, directories, symlinks ` +
      `that stay inside the archive, and hard links to a regular file earlier in it.`,
  ),
  pathTooLong: define(
    'PATH_TOO_LONG',
    (what: string, why: string) =>
      `The archive holds a path too long to extract: ${what} ${why}. Shorten it, e.g. by moving deep folders up, and ` +
      `upload again.`,
  ),
  archiveLimit: define(
    'ARCHIVE_LIMIT_EXCEEDED',
    (detail: string, setting: 'MAX_ARCHIVE_ENTRIES' | 'MAX_EXTRACTED_BYTES') =>
      `The archive exceeds a server limit: ${detail}. Make the model smaller, or have the operator raise ${setting} on ` +
      `the server.`,
  ),
  digestMismatch: define(
    'DIGEST_MISMATCH',
    (header: string, expected: string, actual: string) =>
      `The body's SHA-256 does not match ${header}: expected ${expected}, received ${actual}. The upload was corrupted ` +
      `or the header is wrong; nothing was stored.`,
  ),
  modelNotFound: define(
    'MODEL_NOT_FOUND',
    (name: string) => `Model ${JSON.stringify(name)} does not exist: upload it with PUT /models/${name}.`,
  ),
  versionNotFound: define(
    'VERSION_NOT_FOUND',
    (name: string, version: number) =>
      `Model ${JSON.stringify(name)} has no version ${version}: list the retained versions with GET ` +
      `/models/${name}/versions.`,
  ),
  fileNotFound: define(
    'FILE_NOT_FOUND',
    (name: string, version: number, file: string) =>
      `Version ${version} of ${JSON.stringify(name)} has no file ${JSON.stringify(file)}: list its files with GET ` +
      `/models/${name}/files.`,
  ),
  versionIsCurrent: define(
    'VERSION_IS_CURRENT',
    (name: string, version: number) =>
      `Version ${version} is the current version of ${JSON.stringify(name)}: roll back to another version first, or ` +
      `delete the whole model.`,
  ),
  alreadyExists: define(
    'PRECONDITION_FAILED',
    (name: string) =>
      `Model ${JSON.stringify(name)} already exists and If-None-Match: * was sent: drop the header to replace it, or ` +
      `use If-Match with its current ETag.`,
  ),
  etagMismatch: define('PRECONDITION_FAILED', (name: string, current: string | undefined) =>
    current === undefined
      ? `Model ${JSON.stringify(name)} does not exist, so If-Match cannot match: drop If-Match to create it.`
      : `Model ${JSON.stringify(name)} changed: its current ETag is ${current}. Fetch it again and retry with that ` +
        `ETag.`,
  ),
  conflict: define(
    'CONCURRENT_UPDATE',
    (name: string) => `Model ${JSON.stringify(name)} kept changing under concurrent writers: retry the request.`,
  ),
  deletedWhilePublishing: define(
    'CONCURRENT_UPDATE',
    (name: string) =>
      `Model ${JSON.stringify(name)} was deleted while this version was being published, so it was not: upload it again ` +
      `to create the model anew.`,
  ),
  invalidAlias: define(
    'INVALID_ALIAS',
    (alias: string, name?: string) =>
      `Alias ${JSON.stringify(alias)}${name === undefined ? '' : ` (in ${JSON.stringify(`${name}@${alias}`)})`} is not ` +
      `valid: use 1-63 characters from A-Z a-z 0-9 _ -, starting with a letter or _, not v<digits> (that reads as a ` +
      `version; use ?version=N) and not latest, e.g. production.`,
  ),
  aliasReserved: define(
    'ALIAS_RESERVED',
    (alias: string) =>
      `Alias ${JSON.stringify(alias)} is reserved: name@latest always means the current version and cannot be set or ` +
      `removed; pick another name, e.g. production.`,
  ),
  aliasNotFound: define(
    'ALIAS_NOT_FOUND',
    (name: string, alias: string) =>
      `Model ${JSON.stringify(name)} has no alias ${JSON.stringify(alias)}: list its aliases with GET ` +
      `/models/${name}/aliases, or set it with PUT /models/${name}/aliases/${alias} and {"version": N}.`,
  ),
  aliasTargetGone: define(
    'VERSION_NOT_FOUND',
    (name: string, alias: string, version: number) =>
      `Alias ${JSON.stringify(alias)} of ${JSON.stringify(name)} points to version ${version}, which is no longer ` +
      `stored: point it at a retained version with PUT /models/${name}/aliases/${alias}.`,
  ),
  aliasWithVersion: define(
    'INVALID_QUERY',
    (ref: string) =>
      `Invalid query: ${JSON.stringify(ref)} already names one version, so ?version= cannot be added: ask for the alias ` +
      `or for the version, not both.`,
  ),
  aliasInUse: define(
    'ALIAS_IN_USE',
    (name: string, version: number, aliases: string[]) =>
      `Version ${version} of ${JSON.stringify(name)} is what ${aliases.length === 1 ? 'alias' : 'aliases'} ` +
      `${aliases.map((a) => JSON.stringify(a)).join(', ')} ${aliases.length === 1 ? 'points' : 'point'} to: move ` +
      `${aliases.length === 1 ? 'it' : 'them'} first (PUT /models/${name}/aliases/${aliases[0]}), or delete with ` +
      `?force=true, which removes ${aliases.length === 1 ? 'the alias' : 'those aliases'} too.`,
  ),
  aliasExists: define(
    'PRECONDITION_FAILED',
    (name: string, alias: string, etag: string) =>
      `Alias ${JSON.stringify(alias)} of ${JSON.stringify(name)} already exists (it points to ${etag}) and ` +
      `If-None-Match: * was sent: drop the header to move it, or send If-Match with that ETag.`,
  ),
  aliasEtagMismatch: define('PRECONDITION_FAILED', (name: string, alias: string, current: string | undefined) =>
    current === undefined
      ? `Alias ${JSON.stringify(alias)} of ${JSON.stringify(name)} does not exist, so If-Match cannot match: drop ` +
        `If-Match to create it.`
      : `Alias ${JSON.stringify(alias)} of ${JSON.stringify(name)} moved: it now points to ${current}. Read it again ` +
        `(GET /models/${name}/aliases) and retry with that ETag.`,
  ),
  tooManyAliases: define(
    'TOO_MANY_ALIASES',
    (name: string, max: number) =>
      `Model ${JSON.stringify(name)} already has ${max} aliases, the most one model may have: remove one it no longer ` +
      `needs with DELETE /models/${name}/aliases/<alias>.`,
  ),
  bodyTimeout: define(
    'REQUEST_TIMEOUT',
    (ms: number) =>
      `The upload body sent nothing for ${ms} ms (BODY_IDLE_TIMEOUT), so the upload was discarded: send the body ` +
      `without long pauses, or ask the operator to raise BODY_IDLE_TIMEOUT.`,
  ),
  rangeNotSatisfiable: define('RANGE_NOT_SATISFIABLE', (size: number) =>
    size === 0
      ? 'The file is empty, so no range of it exists: ask without a Range header.'
      : `The requested range is outside the file (${size} bytes): ask for bytes between 0 and ${size - 1}.`,
  ),
  readPreconditionFailed: define(
    'PRECONDITION_FAILED',
    (current: string) =>
      `The model is no longer the version your If-Match / If-Unmodified-Since names: its ETag is now ${current}; start ` +
      `the download again without the condition, or with the new ETag.`,
  ),
  alreadyCurrent: define(
    'VERSION_IS_CURRENT',
    (name: string, version: number) =>
      `Version ${version} is already the current version of ${JSON.stringify(name)}: there is nothing to roll back; ` +
      `pick an older version from GET /models/${name}/versions.`,
  ),
  unauthorized: define('UNAUTHORIZED', (why: 'missing' | 'not-bearer' | 'unknown' = 'missing') =>
    why === 'unknown'
      ? 'The bearer token is not known to this server: send a token from its AUTH_TOKENS (check for a typo, a stray ' +
        'character or a token that was rotated).'
      : why === 'not-bearer'
        ? 'The Authorization header is not a bearer token: send Authorization: Bearer <token> with a token from ' +
          'AUTH_TOKENS.'
        : 'A bearer token is required: send Authorization: Bearer <token> with a token from AUTH_TOKENS.',
  ),
  forbidden: define(
    'FORBIDDEN',
    (needed: string) =>
      `This token may not do that: the request needs ${needed === 'admin' ? 'an' : 'a'} ${needed} token.`,
  ),
  outsideNamespace: define(
    'FORBIDDEN',
    (name: string, namespaces: string[]) =>
      `This token is limited to ${namespaces.map((n) => `${n}*`).join(', ')}: it may not act on ${JSON.stringify(name)};` +
      ` use a name under ${namespaces.join(' or ')}, or a token for that namespace.`,
  ),
  notFound: define(
    'NOT_FOUND',
    (method: string, url: string) => `No route ${method} ${url}: see GET /openapi.yaml for the API.`,
  ),
  shuttingDown: define(
    'SHUTTING_DOWN',
    () => 'The server is shutting down: retry; another replica, or this one once restarted, will answer.',
  ),
  methodNotAllowed: define(
    'METHOD_NOT_ALLOWED',
    (method: string, url: string, allowed: string[]) =>
      `${method} is not allowed on ${url}: use ${allowed.join(', ')} (see GET /openapi.yaml for the API).`,
  ),
} as const;

// ---- Storage errors: defined beside the backends, which raise them; re-exported for callers. ----

export {
  MetadataTooLargeError,
  NotFoundError,
  PreconditionFailedError,
  StorageAccessDeniedError,
  StorageError,
  StorageFullError,
  StorageUnavailableError,
} from './storage/errors.js';

export { ConfigError } from './util/config-error.js';
