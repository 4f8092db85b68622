/**
 * Every error to the HTTP answer it becomes: status, headers and the `{"error", "message"}`
 * body. The catalogue's RegistryErrors keep their code and message and get their status from
 * src/http/statuses.ts; the errors below the service (storage, cache, Fastify, the multipart
 * parser) are translated here by the tables STORAGE_ERRORS and FASTIFY_ERRORS. What none of them
 * knows is a 500 whose details stay in the log.
 */
import type { FastifyError, FastifyReply } from 'fastify';
import { CacheDiskError } from '../cache/index.js';
import {
  errors,
  MetadataTooLargeError,
  NotFoundError,
  PreconditionFailedError,
  RegistryError,
  StorageAccessDeniedError,
  StorageFullError,
  StorageUnavailableError,
} from '../errors.js';
import { NO_STORE } from './caching.js';
import { type ErrorCode, isErrorCode, RETRY_AFTER, STATUS_OF_CODE, statusOf } from './statuses.js';

/** An error as the client receives it. */
export interface HttpError {
  status: number;
  code: string;
  message: string;
  headers: Record<string, string>;
}

/** What a client receives for an error: `{"error": CODE, "message": "..."}`. */
export function errorBody(e: { code: string; message: string }): { error: string; message: string } {
  return { error: e.code, message: e.message };
}

type Translation = { code: ErrorCode; message: string };

/**
 * Errors raised below the registry service that reach a response as they are: each class with
 * the code it answers with (its status in src/http/statuses.ts) and the message the client sees.
 * A storage-level error class a backend throws instead of building a RegistryError with a status
 * (a full disk, an object or its metadata over the backend's limit) gets a row here, and its code
 * a line in STATUS_OF_CODE (STORAGE_FULL and METADATA_TOO_LARGE are there already).
 */
const STORAGE_ERRORS: [new (...args: never[]) => Error, (err: never) => Translation][] = [
  [NotFoundError, () => ({ code: 'NOT_FOUND', message: 'The object does not exist.' })],
  [PreconditionFailedError, () => ({ code: 'PRECONDITION_FAILED', message: 'The object changed meanwhile: retry.' })],
  [StorageUnavailableError, (err: StorageUnavailableError) => ({ code: 'STORAGE_UNAVAILABLE', message: err.message })],
  [
    StorageAccessDeniedError,
    (err: StorageAccessDeniedError) => ({ code: 'STORAGE_ACCESS_DENIED', message: err.message }),
  ],
  [
    StorageFullError,
    () => ({
      code: 'STORAGE_FULL',
      message: 'The storage disk is full: free space or move LOCAL_STORAGE_DIR to a larger disk; nothing was stored.',
    }),
  ],
  [
    MetadataTooLargeError,
    (err: MetadataTooLargeError) => ({
      code: 'METADATA_TOO_LARGE',
      message:
        `The model metadata${err.bytes === undefined ? '' : ` (${err.bytes} bytes with the labels)`} is larger than` +
        ` ${err.service} allows (${err.bound}): send fewer or shorter labels.`,
    }),
  ],
  [
    CacheDiskError,
    () => ({
      code: 'CACHE_UNAVAILABLE',
      message:
        'The cache disk cannot take this model now (full or failing): retry later; operators should free space' +
        ' in CACHE_DIR or set CACHE_MAX_BYTES below the free space of its disk.',
    }),
  ],
];

/** Fastify's own client errors, reworded with a fix. */
const FASTIFY_ERRORS: Record<string, (err: FastifyError) => RegistryError> = {
  FST_ERR_CTP_INVALID_MEDIA_TYPE: (err) => errors.unsupportedMediaType(/: (.*)$/.exec(err.message)?.[1] ?? ''),
  FST_ERR_CTP_EMPTY_JSON_BODY: () => errors.invalidBody('the JSON body is empty; send e.g. {"version": 2}'),
  FST_ERR_CTP_INVALID_JSON_BODY: () => errors.invalidBody('the body is not valid JSON'),
  FST_ERR_CTP_BODY_TOO_LARGE: () => errors.invalidBody('the JSON body is too large'),
  FST_INVALID_MULTIPART_CONTENT_TYPE: () => errors.invalidBody('the multipart body is malformed'),
  FST_PARTS_LIMIT: () => errors.invalidBody('the multipart body has too many parts'),
  FST_FIELDS_LIMIT: () => errors.invalidBody('the multipart body has too many fields'),
  FST_FILES_LIMIT: () => errors.multipartManyFiles(),
};

/** busboy (under @fastify/multipart) reports a malformed multipart body with plain Errors. */
const MULTIPART_ERROR = new RegExp(
  '^(Multipart: Boundary not found|Boundary required|Unexpected end of multipart data' +
    '|\\w+ terminated early due to unexpected end of multipart data|The needle cannot)',
);

function answer(code: string, message: string, fallbackStatus?: number, headers: Record<string, string> = {}) {
  const retryAfter = isErrorCode(code) ? RETRY_AFTER[code] : undefined;
  return {
    status: statusOf(code, fallbackStatus),
    code,
    message,
    headers: { ...(retryAfter ? { 'retry-after': retryAfter } : {}), ...headers },
  };
}

/** The answer for `err`, or undefined when it is no error a client should see (a 500). */
export function toHttpError(err: unknown): HttpError | undefined {
  if (err instanceof RegistryError) return answer(err.code, err.message, err.statusCode, err.headers);
  if (err instanceof Error && !(err as FastifyError).statusCode && MULTIPART_ERROR.test(err.message)) {
    return fromRegistryError(
      errors.invalidBody(
        'the multipart body is malformed (missing or bad boundary, or cut' +
          ' short); let the client build it, e.g. curl -F file=@model.tar.gz',
      ),
    );
  }
  for (const [type, translate] of STORAGE_ERRORS) {
    if (err instanceof type) {
      const { code, message } = translate(err as never);
      return answer(code, message);
    }
  }
  const fe = err as FastifyError | undefined;
  const known = fe?.code ? FASTIFY_ERRORS[fe.code] : undefined;
  if (known) return fromRegistryError(known(fe!));
  // Only Fastify's own client errors keep their status: a storage SDK's error carries the
  // storage's status (a 401 of an expired storage credential is not the client's 401).
  const status = fe?.statusCode;
  if (typeof fe?.code === 'string' && fe.code.startsWith('FST_') && status && status >= 400 && status < 500) {
    return { status, code: fe.code, message: fe.message.endsWith('.') ? fe.message : `${fe.message}.`, headers: {} };
  }
  return undefined;
}

/** A catalogue error as the client receives it. */
export function fromRegistryError(err: RegistryError): HttpError {
  return answer(err.code, err.message, err.statusCode, err.headers);
}

/** The answer to an error nothing above knows: a 500 pointing at the log. */
export function internalError(requestId: string): HttpError {
  return {
    status: STATUS_OF_CODE.INTERNAL,
    code: 'INTERNAL',
    message: `Internal error; the server log has the details under request id ${requestId}.`,
    headers: {},
  };
}

/**
 * Sends `err` as the reply: its status, its headers and its JSON body. Never stored by a cache: an
 * error says how things stand at this moment (a 404 of a model uploaded a second later, a 503).
 */
export function sendError(reply: FastifyReply, err: HttpError): FastifyReply {
  return reply
    .code(err.status)
    .headers({ ...err.headers, 'cache-control': NO_STORE })
    .send(errorBody(err));
}
