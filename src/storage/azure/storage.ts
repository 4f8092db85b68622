/**
 * Azure Blob Storage backend: one container holds the layout of README "Storage layout" as block
 * blobs.
 *
 *   stage   the body goes in 8 MiB blocks (4 in flight) to `.uploads/{pid}-{uuid}-{host}.part`,
 *           whose block list is committed at the end. Never to the final name: committing any
 *           block list on a blob discards every other writer's uncommitted blocks on it.
 *   commit  one server-side Copy Blob from the staged blob to the key, carrying the metadata,
 *           the destination condition (If-Match: token, or If-None-Match: *) and
 *           x-ms-source-if-match: the staged blob's ETag. copy() is the same request with
 *           x-ms-source-if-match: sourceToken; Copy Blob has no size limit below the blob's own,
 *           so large objects need no separate path.
 *   token   the ETag, which changes on every write (so uniqueTokens holds).
 *
 * Atomicity: the service evaluates the destination condition and replaces the destination's
 * committed content, metadata and ETag within that one Copy Blob request, serialised per blob,
 * so of two commits against one token the second sees a new ETag and gets 412; nothing is read
 * first. Within one account the service completes the copy of a committed block blob in the
 * request (copy status `success`): the destination moves from the old block list to the new one
 * at once, so readers see the old blob or the new one, whole. Azure reserves the right to
 * schedule a copy instead (status `pending`); then commit waits for it, and get() refuses to
 * stream a pending destination (503, retry) rather than serve undefined bytes.
 *
 * metadata.ts says how metadata travels; client.ts how requests time out (3 tries in all).
 */
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { BlobClient, BlobRequestConditions, ContainerClient } from '@azure/storage-blob';
import type { Logger } from '../../util/logger.js';
import type { CommonSettings } from '../driver.js';
import { NotFoundError, PreconditionFailedError, StorageUnavailableError } from '../errors.js';
import { copyOutByStream } from '../shared/copy-out.js';
import { mergeEntries, objectsOf } from '../shared/entries.js';
import { isTimeout } from '../shared/network.js';
import { isAbandoned, newStagedName, UPLOAD_STARTED_MAX_AGE_MS, UPLOADS_PREFIX } from '../shared/staging.js';
import { splitNonce, WRITE_NONCE, writeOnce } from '../shared/write-nonce.js';
import type {
  CommitOptions,
  InPlaceOptions,
  ListEntry,
  Metadata,
  ObjectInfo,
  PublishOptions,
  ReadOptions,
  StagedObject,
  Storage,
  StorageCapabilities,
  WriteCondition,
} from '../types.js';
import { blocksOf, putBlocks } from './blocks.js';
import { type Container, createContainer, type Source } from './client.js';
import { configError, translate } from './errors.js';
import { contentHeaders, dropUncommitted, mark, markedKey, uploadInPlace } from './in-place.js';
import { decodeMetadata, encodeMetadata } from './metadata.js';
import type { AzureSettings } from './settings.js';
import { createSigner, type Signer } from './signed-url.js';

/** This backend's settings and the common ones it uses. */
type Settings = AzureSettings & CommonSettings;

class AzureStaged implements StagedObject {
  constructor(
    readonly key: string,
    readonly size: number,
    readonly name: string,
    readonly etag: string,
  ) {}
}

export function create(config: Settings, logger: Logger): AzureStorage {
  return new AzureStorage(config, logger);
}

export class AzureStorage implements Storage {
  readonly kind = 'azure';
  readonly capabilities: StorageCapabilities;
  /** SAS URLs (signed-url.ts), with an account key only. */
  readonly signedUrl?: Signer;
  readonly #container: ContainerClient;
  readonly #source: Source;
  readonly #agents: Container['agents'];
  /** Staged blob names this process is writing or holding, which sweep() must leave alone. */
  readonly #active = new Set<string>();

  constructor(
    readonly config: Settings,
    readonly logger: Logger,
  ) {
    const { container, source, agents, sharedKey } = createContainer(config);
    const endpoint = config.AZURE_BLOB_PUBLIC_ENDPOINT;
    if (sharedKey) this.signedUrl = createSigner(container, sharedKey, source.endpoint, endpoint);
    this.capabilities = {
      listIncludesMetadata: true,
      uniqueTokens: true,
      localFiles: false,
      signedUrls: !!sharedKey,
      stagesInPlace: true,
    };
    this.#container = container;
    this.#source = source;
    this.#agents = agents;
  }

  async init(): Promise<void> {
    try {
      // Look before creating: credentials that may use the container need not be allowed to create one.
      const exists = await this.#container.exists();
      if (!exists && this.config.AUTO_CREATE_BUCKET) await this.#container.createIfNotExists();
      else if (!exists) await this.#container.getProperties(); // fails with ContainerNotFound
      await this.#container.listBlobsFlat({ prefix: UPLOADS_PREFIX }).byPage({ maxPageSize: 1 }).next();
    } catch (err) {
      throw configError(this.config, this.#source, err);
    }
  }

  async ping(): Promise<void> {
    await this.#call(() => this.#container.getProperties());
  }

  async head(key: string): Promise<ObjectInfo> {
    const p = await this.#call(() => this.#blob(key).getProperties(), key);
    return info(key, p.contentLength, p.lastModified, p.etag, decodeMetadata(p.metadata));
  }

  async get(key: string, options: ReadOptions = {}): Promise<{ info: ObjectInfo; body: Readable }> {
    const { range, signal } = options;
    const offset = range?.start ?? 0;
    const count = range ? range.end - range.start + 1 : undefined;
    // Info comes from the same response as the bytes; the SDK resumes a broken download with
    // If-Match on this response's ETag, so the stream never mixes versions.
    const res = await this.#call(
      () => this.#blob(key).download(offset, count, { abortSignal: signal, maxRetryRequests: 3 }),
      key,
    );
    const body = res.readableStreamBody as Readable;
    if (res.copyStatus === 'pending') {
      body.destroy();
      throw new StorageUnavailableError('azure', `${key} is still being copied`);
    }
    const total = /\/(\d+)$/.exec(res.contentRange ?? '')?.[1];
    return {
      info: info(
        key,
        total === undefined ? res.contentLength : Number(total),
        res.lastModified,
        res.etag,
        decodeMetadata(res.metadata),
      ),
      body,
    };
  }

  async stage(key: string, body: Readable, options: { signal?: AbortSignal } = {}): Promise<StagedObject> {
    checkKey(key);
    const name = newStagedName();
    const blob = this.#container.getBlockBlobClient(UPLOADS_PREFIX + name);
    this.#active.add(name);
    const blocks: string[] = [];
    let staging: Promise<number> | undefined;
    try {
      await pipeline(
        body,
        (source: AsyncIterable<Buffer>) =>
          (staging = putBlocks(blob, blocksOf(source), blocks, (i) =>
            Buffer.from(String(i).padStart(6, '0')).toString('base64'),
          )),
        { signal: options.signal },
      );
      const size = await staging!;
      const res = await blob.commitBlockList(blocks, {
        abortSignal: options.signal,
        blobHTTPHeaders: contentHeaders(key),
      });
      return new AzureStaged(key, size, name, res.etag!);
    } catch (err) {
      await staging?.catch(() => {}); // no block may land after the clean-up below
      // After a timeout the storage is silent: clean up behind the answer, not before it.
      const removal = blocks.length > 0 ? this.#removeStaged(name) : undefined;
      if (!isTimeout(err)) await removal;
      this.#active.delete(name);
      throw translate(err);
    }
  }

  /** The body to `key` itself: one Put Blob, or blocks of the key and Put Block List (in-place.ts). */
  async stageInPlace(
    key: string,
    body: Readable,
    metadata: Metadata,
    options: InPlaceOptions = {},
  ): Promise<ObjectInfo> {
    const blob = this.#container.getBlockBlobClient(checkKey(key));
    const conditions = destination(options.condition ?? { ifNoneMatch: true });
    let marker: string | undefined;
    const beforeBlocks = async () => {
      marker = await mark(this.#container, key);
      this.#active.add(marker);
    };
    try {
      // A request resent after its reply was lost fails its own condition: shared/write-nonce.ts.
      return await writeOnce(
        'azure',
        key,
        async (nonce) => {
          const w = { metadata: encodeMetadata({ ...metadata, [WRITE_NONCE]: nonce }), conditions, beforeBlocks };
          const done = await this.#call(() => uploadInPlace(blob, body, { ...w, signal: options.signal }), key);
          return info(key, done.size, done.lastModified, done.etag, metadata);
        },
        () => this.#readBack(key),
        this.logger,
      );
    } finally {
      if (marker) {
        this.#active.delete(marker);
        await this.#removeStaged(marker);
      }
    }
  }

  async commit(
    staged: StagedObject,
    metadata: Metadata,
    condition: WriteCondition,
    options: CommitOptions = {},
  ): Promise<ObjectInfo> {
    const { name, etag, size } = this.#own(staged);
    const key = options.key ?? staged.key;
    checkKey(key);
    await options.after;
    const source = this.#container.getBlobClient(UPLOADS_PREFIX + name);
    const done = await this.#publish(source, key, metadata, destination(condition), etag, key, size);
    this.#active.delete(name);
    await this.#removeStaged(name);
    return done;
  }

  async discard(staged: StagedObject): Promise<void> {
    const { name } = this.#own(staged);
    this.#active.delete(name);
    await this.#call(() => this.#container.getBlobClient(UPLOADS_PREFIX + name).deleteIfExists());
  }

  async copy(
    from: string,
    to: string,
    options: { sourceToken: string; metadata: Metadata; condition?: WriteCondition } & PublishOptions,
  ): Promise<ObjectInfo> {
    checkKey(to);
    const source = this.#blob(from);
    // The size, and early NotFound / stale-token errors; the copy itself is pinned to the token.
    const props = await this.#call(() => source.getProperties(), from);
    if (props.etag !== options.sourceToken) throw new PreconditionFailedError(from);
    await options.after;
    return this.#publish(
      source,
      to,
      options.metadata,
      destination(options.condition ?? {}),
      options.sourceToken,
      from,
      props.contentLength,
    );
  }

  async setMetadata(key: string, token: string, metadata: Metadata): Promise<ObjectInfo> {
    const blob = this.#blob(key);
    // Unconditional read first: a HEAD with If-Match on a missing blob answers 412, not 404.
    const props = await this.#call(() => blob.getProperties(), key);
    if (props.etag !== token) throw new PreconditionFailedError(key);
    const res = await this.#call(
      () => blob.setMetadata(encodeMetadata(metadata), { conditions: { ifMatch: token } }),
      key,
    );
    return info(key, props.contentLength, res.lastModified, res.etag, metadata);
  }

  async delete(key: string): Promise<void> {
    await this.#call(() => this.#blob(key).deleteIfExists({ deleteSnapshots: 'include' }), key);
  }

  list(prefix: string, options: { startAfter?: string } = {}): AsyncIterable<ObjectInfo> {
    return objectsOf(this.listEntries(prefix, options));
  }

  async *listEntries(prefix: string, options: { startAfter?: string } = {}): AsyncIterable<ListEntry> {
    const pages = this.#container
      .listBlobsByHierarchy('/', { prefix, includeMetadata: true })
      .byPage({ maxPageSize: 1000 });
    while (true) {
      const page = await this.#call(() => pages.next());
      if (page.done) return;
      const objects: ObjectInfo[] = [];
      for (const item of page.value.segment.blobItems) {
        if (!item.name.includes('/') && item.name.startsWith('.')) continue; // bookkeeping at the root
        const p = item.properties;
        objects.push(info(item.name, p.contentLength, p.lastModified, p.etag, decodeMetadata(item.metadata)));
      }
      const folders = (page.value.segment.blobPrefixes ?? []).map((p) => p.name);
      yield* mergeEntries(objects, folders, options.startAfter);
    }
  }

  async sweep(): Promise<number> {
    let removed = 0;
    // Uncommitted blobs too: a writer that died mid-stage left only uncommitted blocks.
    const items = this.#container.listBlobsFlat({
      prefix: UPLOADS_PREFIX,
      includeUncommitedBlobs: true,
      includeMetadata: true,
    });
    try {
      for await (const item of items) {
        const name = item.name.slice(UPLOADS_PREFIX.length);
        // A blob of uncommitted blocks keeps the date of its first block while the upload runs.
        if (
          name.includes('/') ||
          !isAbandoned(name, item.properties.lastModified, this.#active, UPLOAD_STARTED_MAX_AGE_MS)
        )
          continue;
        // A marker (in-place.ts): the dead writer's blocks on the key it names go first.
        const key = markedKey(item.metadata);
        if (key !== undefined) await dropUncommitted(this.#container.getBlockBlobClient(checkKey(key)));
        await this.#removeStaged(name);
        removed++;
      }
    } catch (err) {
      throw translate(err);
    }
    if (removed > 0) this.logger.info({ removed }, 'removed abandoned staged uploads');
    return removed;
  }

  /** Azure's 8 KB hold the registry's fields and 2 KiB of labels, percent-encoded (see encodeMetadata). */
  checkMetadata(): void {}

  copyOut(key: string, token: string, dest: string): Promise<void> {
    return copyOutByStream(this, key, token, dest);
  }

  async close(): Promise<void> {
    this.#agents.http.destroy();
    this.#agents.https.destroy();
  }

  // ---- internals ----

  /**
   * #copy, told apart from a lost race when its reply is lost and the SDK's resend fails against
   * the blob the first attempt wrote (shared/write-nonce.ts).
   */
  async #publish(
    source: BlobClient,
    to: string,
    metadata: Metadata,
    conditions: BlobRequestConditions,
    sourceEtag: string,
    sourceKey: string,
    size: number | undefined,
  ): Promise<ObjectInfo> {
    return writeOnce(
      'azure',
      to,
      async (nonce) => {
        const done = await this.#copy(
          source,
          to,
          { ...metadata, [WRITE_NONCE]: nonce },
          conditions,
          sourceEtag,
          sourceKey,
        );
        return info(to, size, done.lastModified, done.etag, metadata);
      },
      () => this.#readBack(to),
      this.logger,
    );
  }

  /** `key`'s info and the nonce of the write that stored it; undefined when there is none. */
  async #readBack(key: string): Promise<{ info: ObjectInfo; nonce?: string } | undefined> {
    try {
      const p = await this.#call(() => this.#blob(key).getProperties(), key);
      // A copy still running (or failed) has not published anything yet.
      if (p.copyStatus !== undefined && p.copyStatus !== 'success')
        throw new StorageUnavailableError('azure', `the copy to ${key} is ${p.copyStatus}`);
      const metadata = decodeMetadata(p.metadata);
      return { info: info(key, p.contentLength, p.lastModified, p.etag, metadata), nonce: metadata[WRITE_NONCE] };
    } catch (err) {
      if (err instanceof NotFoundError) return undefined;
      throw err;
    }
  }

  /** Server-side copy with the conditions; waits for a copy the service scheduled. */
  async #copy(
    source: BlobClient,
    to: string,
    metadata: Metadata,
    conditions: BlobRequestConditions,
    sourceEtag: string,
    sourceKey: string,
  ) {
    const poller = await this.#call(
      () =>
        this.#blob(to).beginCopyFromURL(source.url, {
          metadata: encodeMetadata(metadata),
          conditions,
          sourceConditions: { ifMatch: sourceEtag },
          intervalInMs: 1_000,
        }),
      to,
      sourceKey,
    );
    const done = await this.#call(() => poller.pollUntilDone(), to, sourceKey);
    if (done.copyStatus !== 'success') {
      throw new StorageUnavailableError('azure', `copy to ${to} ended ${done.copyStatus ?? 'without a status'}`);
    }
    return { etag: done.etag!, lastModified: done.lastModified! };
  }

  /** Deletes a staged blob, and its uncommitted blocks if it has no committed content. */
  async #removeStaged(name: string): Promise<void> {
    const blob = this.#container.getBlockBlobClient(UPLOADS_PREFIX + name);
    try {
      if (!(await blob.deleteIfExists()).succeeded) {
        // Only uncommitted blocks (or nothing): committing an empty list drops them all.
        await blob.commitBlockList([]);
        await blob.deleteIfExists();
      }
    } catch (err) {
      this.logger.warn({ err, name }, 'could not remove a staged upload; sweep() will retry');
    }
  }

  #blob(key: string): BlobClient {
    return this.#container.getBlobClient(checkKey(key));
  }

  #own(staged: StagedObject): AzureStaged {
    if (!(staged instanceof AzureStaged)) throw new TypeError('staged object does not belong to this backend');
    return staged;
  }

  /** Runs an SDK call, turning its errors into storage errors. */
  async #call<T>(fn: () => Promise<T>, key?: string, sourceKey?: string): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw translate(err, key, sourceKey);
    }
  }
}

function destination(condition: WriteCondition): BlobRequestConditions {
  if ('ifMatch' in condition) return { ifMatch: condition.ifMatch };
  if ('ifNoneMatch' in condition) return { ifNoneMatch: '*' };
  return {};
}

function info(
  key: string,
  size: number | undefined,
  lastModified: Date | undefined,
  etag: string | undefined,
  metadata: Metadata,
): ObjectInfo {
  // Listings give the ETag bare, headers quoted: one spelling, so tokens compare equal.
  const token = etag === undefined ? '' : etag.startsWith('"') ? etag : `"${etag}"`;
  return {
    key,
    size: size ?? 0,
    lastModified: lastModified ?? new Date(0),
    token,
    metadata: splitNonce(metadata).metadata,
    httpEtag: token, // what a GET of the blob answers with, quoted as here
  };
}

/** '.', '..' and empty segments would be normalised away in the blob URL; refuse them. */
function checkKey(key: string): string {
  const parts = key.split('/');
  if (!key || key.length > 1024 || parts.some((p) => p === '' || p === '.' || p === '..')) {
    throw new TypeError(`invalid storage key: ${JSON.stringify(key)}`);
  }
  return key;
}
