/**
 * The errors every backend translates its SDK errors into, keeping the SDK error as `cause`.
 * They state what happened to the storage; they carry no HTTP status and no advice to the
 * client — src/http/errors.ts maps each one to a response.
 */

/** Any error a backend raises on purpose. */
export abstract class StorageError extends Error {}

/** The key does not exist. */
export class NotFoundError extends StorageError {
  constructor(
    readonly key: string,
    options?: { cause?: unknown },
  ) {
    super(`object not found: ${key}`, options);
    this.name = 'NotFoundError';
  }
}

/** A conditional write or copy lost: the object is not in the state the caller expected. */
export class PreconditionFailedError extends StorageError {
  constructor(
    readonly key: string,
    options?: { cause?: unknown },
  ) {
    super(`precondition failed: ${key}`, options);
    this.name = 'PreconditionFailedError';
  }
}

/**
 * The storage is unreachable or failing; the request may succeed later. The message is the one
 * operators read in logs and in `migrate` output, so it says where to look.
 */
export class StorageUnavailableError extends StorageError {
  constructor(
    readonly backend: string,
    readonly detail: string,
    options?: { cause?: unknown },
  ) {
    super(
      `The ${backend} storage is unavailable (${detail}): retry shortly; operators should check the storage settings and /readyz.`,
      options?.cause === undefined ? undefined : { cause: options.cause },
    );
    this.name = 'StorageUnavailableError';
  }
}

/**
 * The storage refused the registry's credentials an operation (a read-only user, a bucket
 * policy). Retrying does not help; the operator grants the permission, or runs the registry for
 * reads only. `permission` names what is missing, in the storage's own terms.
 */
export class StorageAccessDeniedError extends StorageError {
  constructor(
    readonly backend: string,
    readonly detail: string,
    readonly permission: string,
    options?: { cause?: unknown },
  ) {
    super(
      `The ${backend} storage refused this (${detail}): the registry's storage credentials lack ${permission}. ` +
        'Reads keep working; ask the operator to grant it for uploads, rollbacks and deletes.',
      options?.cause === undefined ? undefined : { cause: options.cause },
    );
    this.name = 'StorageAccessDeniedError';
  }
}

/** The storage has no room for the write (a full disk, a quota); nothing was stored. */
export class StorageFullError extends StorageError {
  constructor(
    readonly backend: string,
    options?: { cause?: unknown },
  ) {
    super(`the ${backend} storage is full`, options);
    this.name = 'StorageFullError';
  }
}

/**
 * An object's metadata exceeds what the backend can store with it. `service` names the storage
 * service ('S3'), `bound` its limit in words; `bytes` is the size asked for, when known.
 */
export class MetadataTooLargeError extends StorageError {
  constructor(
    readonly service: string,
    readonly bound: string,
    readonly bytes?: number,
    options?: { cause?: unknown },
  ) {
    super(
      `metadata${bytes === undefined ? '' : ` of ${bytes} bytes`} is larger than ${service} allows (${bound})`,
      options,
    );
    this.name = 'MetadataTooLargeError';
  }
}
