/**
 * The storage contract every backend implements: a handful of streaming operations on keys in
 * one flat namespace (README "Storage layout" describes the layout the registry builds on it).
 *
 * Error rules, shared by every method unless it says otherwise (the errors are in ./errors.ts):
 *  - a missing key throws NotFoundError;
 *  - a failed condition throws PreconditionFailedError;
 *  - an unreachable or failing backend throws StorageUnavailableError, never hangs
 *    (backends set timeouts), and keeps the SDK error as `cause`.
 * Backends know nothing about HTTP or about models; the registry service owns those.
 */
import type { Readable } from 'node:stream';

/** What a backend knows about one stored object. */
export interface ObjectInfo {
  key: string;
  size: number;
  lastModified: Date;
  /**
   * The backend's own version token (S3 ETag, GCS generation, Azure ETag, a file's
   * inode+mtime…). Opaque; only ever handed back in conditions. See
   * StorageCapabilities.uniqueTokens.
   */
  token: string;
  /**
   * User metadata stored with the object. Always complete from head() and get();
   * list() fills it only when the backend gets it at no extra cost (see capabilities).
   */
  metadata: Metadata;
  /**
   * The entity tag the store's own HTTP API answers this object with, where the backend knows it
   * from head(): what a client that followed a signed URL (signedUrl) saw as the ETag, and may
   * send back in If-None-Match. Not a token: never handed back in conditions.
   */
  httpEtag?: string;
}

export interface ListEntriesOptions {
  startAfter?: string;
  /**
   * How many entries the caller expects to take before it stops (a page of GET /models and the
   * one more that says whether a next page exists). A hint: a backend that lists in pages of a
   * fixed size may ask for no more than that (S3 MaxKeys), so that a page of 1,000 models plus one
   * is not two full listing requests; iterating past it still lists everything.
   */
  expect?: number;
}

/**
 * One entry of listEntries(): an object, or a folder — a common prefix of deeper keys, ending in
 * '/' (S3's and GCS's CommonPrefixes, Azure's BlobPrefix, a directory).
 */
export type ListEntry = { object: ObjectInfo; folder?: undefined } | { folder: string; object?: undefined };

/** Small string pairs stored with an object. Keys are lower-case [a-z0-9-]. */
export type Metadata = Record<string, string>;

/** A precondition on the object currently at the destination key. */
export type WriteCondition =
  | { ifMatch: string } // the destination exists with exactly this token
  | { ifNoneMatch: true } // the destination does not exist
  | Record<string, never>; // unconditional

export interface ReadOptions {
  /** Inclusive byte range. */
  range?: { start: number; end: number };
  signal?: AbortSignal;
}

export interface StorageCapabilities {
  /** list() returns complete metadata without one request per object. */
  listIncludesMetadata: boolean;
  /**
   * A key's token never repeats. False where the native token is a content hash (S3 ETag): the
   * same bytes written again (a rollback) get the token they had, which leaves a compare-and-swap
   * open to ABA in a narrow race.
   */
  uniqueTokens: boolean;
  /**
   * Objects are files on this machine: copyOut() hard-links them, costing no write and no
   * transfer. Elsewhere copyOut() streams the bytes, so a caller that has them at hand anyway
   * (an upload on its way to storage) keeps its own copy instead.
   */
  localFiles: boolean;
  /**
   * signedUrl() gives a short-lived URL a client can GET the object's bytes from, without the
   * registry (S3 presigned GET, GCS V4 signed URL, Azure SAS). False where there is none
   * (local disk, MongoDB): such a backend has no signedUrl().
   */
  signedUrls: boolean;
  /**
   * stageInPlace() writes an upload straight to its final key (S3: the multipart upload of the
   * body completes onto the key itself, with if-none-match; GCS: a resumable upload with
   * ifGenerationMatch; Azure: Put Blob or Put Block List with If-None-Match), so publishing it
   * costs no copy of the staged bytes. False where a stage is a separate object that commit()
   * copies or renames: local disk, MongoDB (those backends have no stageInPlace()).
   */
  stagesInPlace: boolean;
}

/**
 * Response headers a signed URL makes the storage answer with, where the store lets them be
 * signed into the URL (S3 response-* overrides, Azure SAS rscc/rscd/rsct; GCS: disposition and
 * type only). A store that cannot sign one leaves it out.
 */
export interface SignedResponse {
  cacheControl?: string;
  contentDisposition?: string;
  contentType?: string;
}

export interface PublishOptions {
  /**
   * Work that must be done before the write becomes visible (the history copy of the version it
   * replaces). Nothing is published before `after` resolves; if it rejects, nothing is published
   * and the call rejects with its reason. A backend may do its own slow part meanwhile (S3 copies
   * the parts of the new object while the history copy runs); the others simply wait first.
   */
  after?: Promise<unknown>;
}

export interface CommitOptions extends PublishOptions {
  /**
   * Publish under this key instead of the one the object was staged for (an upload's version
   * number, and so its key, is known only once its bytes are stored).
   */
  key?: string;
}

/**
 * An upload that has been written in full but is not yet visible under its key.
 * It stays valid after a commit that failed its condition, so the caller can retry the commit.
 */
export interface StagedObject {
  readonly key: string;
  readonly size: number;
}

export interface InPlaceOptions {
  signal?: AbortSignal;
  /** Default `{ ifNoneMatch: true }`. */
  condition?: WriteCondition;
}

export interface InitOptions {
  /** Open for reading only (a migration's source): create and probe nothing. */
  readOnly?: boolean;
}

export interface Storage {
  /** Short backend name for logs and errors: 'local', 's3', … */
  readonly kind: string;
  readonly capabilities: StorageCapabilities;
  /**
   * Where capabilities.signedUrls: a URL that GETs `key`'s bytes for `ttlMs` from now, signed
   * for the endpoint clients reach, answered with `response`'s headers where the store can sign
   * them. Signing is local where the backend holds a key (no storage request); it checks nothing
   * about `key`. Throws StorageUnavailableError when the URL cannot be signed (no key to sign
   * with). Absent where capabilities.signedUrls is false.
   */
  signedUrl?(key: string, ttlMs: number, response?: SignedResponse): Promise<string>;

  /**
   * Prepares the backend (creates the root / bucket when allowed) and checks access. `readOnly`
   * (a migration's source): checks read access only and writes nothing — no working folders,
   * probe objects or indexes — so read-only credentials and mounts work.
   */
  init(options?: InitOptions): Promise<void>;

  /** Cheap reachability check for /readyz; throws StorageUnavailableError. */
  ping(): Promise<void>;

  /** Info for one key. Throws NotFoundError. */
  head(key: string): Promise<ObjectInfo>;

  /**
   * Opens a key for reading. The returned info describes exactly the bytes of `body`, even if
   * the key is replaced meanwhile. A range outside the object is the caller's mistake: callers
   * clamp ranges with head() first. Throws NotFoundError.
   */
  get(key: string, options?: ReadOptions): Promise<{ info: ObjectInfo; body: Readable }>;

  /**
   * Writes `body` somewhere invisible, destined for `key`. Resolves once every byte is durably
   * stored; rejects (and leaves nothing behind) if `body` errors or `signal` aborts — so a caller
   * that validates the stream can veto the upload by destroying it.
   */
  stage(key: string, body: Readable, options?: { signal?: AbortSignal }): Promise<StagedObject>;

  /**
   * Where capabilities.stagesInPlace: writes `body` to `key` itself with `metadata`, if
   * `condition` holds (default: nothing is there, if-none-match), decided by the store when the
   * write completes — never a read-then-write. The object becomes
   * visible only once `body` ended without error, whole; if `body` errors or `signal` aborts, the
   * call rejects and nothing ever appears under `key` — so a caller that validates the stream can
   * still veto it by destroying the stream before its end. Throws PreconditionFailedError when
   * the condition fails. An upload of a writer that died midway is removed by sweep(). Absent where
   * capabilities.stagesInPlace is false.
   */
  stageInPlace?(key: string, body: Readable, metadata: Metadata, options?: InPlaceOptions): Promise<ObjectInfo>;

  /**
   * Atomically publishes a staged object under its key with `metadata`, if `condition` holds at
   * that instant (the backend's own conditional write — never a read-then-write). Readers see the
   * old object or the new one, whole. Throws PreconditionFailedError and keeps the staged object.
   */
  commit(
    staged: StagedObject,
    metadata: Metadata,
    condition: WriteCondition,
    options?: CommitOptions,
  ): Promise<ObjectInfo>;

  /** Removes a staged object that will not be committed. Never throws NotFoundError. */
  discard(staged: StagedObject): Promise<void>;

  /**
   * Copies `from` to `to` with new metadata. `sourceToken` pins the source version: if `from`
   * no longer has that token, throws PreconditionFailedError. `condition` applies to `to`.
   */
  copy(
    from: string,
    to: string,
    options: { sourceToken: string; metadata: Metadata; condition?: WriteCondition } & PublishOptions,
  ): Promise<ObjectInfo>;

  /**
   * Replaces the metadata of an existing object whose token is `token` (used to remember a
   * digest computed for an object written by another tool). May change the token.
   */
  setMetadata(key: string, token: string, metadata: Metadata): Promise<ObjectInfo>;

  /** Deletes a key. Does not throw when it is missing. */
  delete(key: string): Promise<void>;

  /**
   * Throws MetadataTooLargeError when an object of this backend could not carry `metadata` (S3
   * bounds it to 2 KB), so an upload is refused before its body is read rather than after.
   * Returns on backends whose bound is above what the registry ever writes.
   */
  checkMetadata(metadata: Metadata): void;

  /**
   * Makes `dest` (a path on this machine) a file with the bytes of `key` while its token is
   * `token`: a hard link where capabilities.localFiles, a download elsewhere. Throws
   * PreconditionFailedError when `key` has another token by then.
   */
  copyOut(key: string, token: string, dest: string): Promise<void>;

  /**
   * Lists keys starting with `prefix` that have no further '/' after it, in ascending key order,
   * starting after `startAfter`. Staging areas and backend bookkeeping are never listed.
   */
  list(prefix: string, options?: { startAfter?: string }): AsyncIterable<ObjectInfo>;

  /**
   * What list() lists, and the folders directly under `prefix` beside it: each `prefix…/` that
   * longer keys start with (up to the first '/' after `prefix`), once, as one listing with a
   * delimiter (S3 and GCS `delimiter=/`, Azure listBlobsByHierarchy, a directory read) gives them.
   * One ascending order, a folder sorting as its string (`nlp.tar.gz` < `nlp/` < `nlp0.tar.gz`), so
   * that walking each folder where it is met visits keys in key order. With `startAfter`, only
   * entries greater than it (an object by its key, a folder by its string). A folder may turn out
   * to hold nothing any more (a directory left empty). Staging areas and backend bookkeeping are
   * never listed.
   */
  listEntries(prefix: string, options?: ListEntriesOptions): AsyncIterable<ListEntry>;

  /** Removes leftovers of uploads that crashed (staged objects nobody will commit). */
  sweep(): Promise<number>;

  /** Releases clients and handles. */
  close(): Promise<void>;
}
