/**
 * Azure Blob Storage backend: one container holds the layout of SPEC §4 as block blobs.
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
 * Metadata: Azure metadata names must be C# identifiers and values ASCII header text, so names
 * map '-' to '_' (a leading '_' marks names that start with something other than a letter) and
 * values are percent-encoded ('%' alone stands for '', which Azure would drop); both are decoded
 * on the way back.
 *
 * Timeouts: the SDK's tryTimeoutInMs only sets the server-side ?timeout=, so our own agents
 * give every socket a 5 s connect timeout and a STORAGE_TIMEOUT idle timeout; 3 tries in all.
 */
import http from 'node:http';
import https from 'node:https';
import { copyOutByStream } from '../shared/copy-out.js';
import type { Socket } from 'node:net';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  BlobServiceClient,
  newPipeline,
  RestError,
  StorageSharedKeyCredential,
  type BlobClient,
  type BlobRequestConditions,
  type ContainerClient,
  type RequestPolicyFactory,
} from '@azure/storage-blob';
import { AuthenticationError, CredentialUnavailableError, DefaultAzureCredential } from '@azure/identity';
import type { TokenCredential } from '@azure/identity';
import type { CommonSettings } from '../driver.js';
import type { AzureSettings } from './settings.js';
import { ConfigError } from '../../util/config-error.js';
import { MetadataTooLargeError, NotFoundError, PreconditionFailedError, StorageUnavailableError } from '../errors.js';
import type { Logger } from '../../util/logger.js';
import { isAbandoned, newStagedName, UPLOAD_STARTED_MAX_AGE_MS, UPLOADS_PREFIX } from '../shared/staging.js';
import { splitNonce, WRITE_NONCE, writeOnce } from '../shared/write-nonce.js';
import type { CommitOptions, Metadata, ObjectInfo, PublishOptions, ReadOptions, StagedObject, Storage, WriteCondition } from '../types.js';

/** This backend's settings and the common ones it uses. */
type Settings = AzureSettings & CommonSettings;

const BLOCK_SIZE = 8 * 1024 * 1024;
const CONCURRENCY = 4;
const CONNECT_TIMEOUT_MS = 5_000;

class AzureStaged implements StagedObject {
  constructor(readonly key: string, readonly size: number, readonly name: string, readonly etag: string) {}
}

/** Where the settings came from, to name the right variable in error lines. */
interface Source {
  endpoint: string; // without any SAS query
  endpointVar: string;
  credentialVar: string;
  sharedKey: boolean;
}

export function create(config: Settings, logger: Logger): AzureStorage {
  return new AzureStorage(config, logger);
}

export class AzureStorage implements Storage {
  readonly kind = 'azure';
  readonly capabilities = { listIncludesMetadata: true, uniqueTokens: true, localFiles: false };
  readonly #container: ContainerClient;
  readonly #source: Source;
  readonly #agents: { http: http.Agent; https: https.Agent };
  /** Staged blob names this process is writing or holding, which sweep() must leave alone. */
  readonly #active = new Set<string>();

  constructor(
    readonly config: Settings,
    readonly logger: Logger,
  ) {
    const idle = config.STORAGE_TIMEOUT;
    this.#agents = {
      http: withTimeouts(new http.Agent({ keepAlive: true, timeout: idle }), 'connect'),
      https: withTimeouts(new https.Agent({ keepAlive: true, timeout: idle }), 'secureConnect'),
    };
    const { url, credential, source } = resolveClient(config);
    const agents = this.#agents;
    // The SDK's own timeout is only server-side (?timeout=): sockets get ours, per attempt.
    const timeouts: RequestPolicyFactory = {
      create: (next) => ({
        sendRequest: (request) => {
          request.agent = request.url.startsWith('https:') ? agents.https : agents.http;
          return next.sendRequest(request);
        },
      }),
    };
    const pipe = newPipeline(credential, {
      retryOptions: { maxTries: 3, tryTimeoutInMs: idle, retryDelayInMs: 500, maxRetryDelayInMs: 2_000 },
      userAgentOptions: { userAgentPrefix: 'model-registry' },
    });
    pipe.factories.push(timeouts);
    this.#container = new BlobServiceClient(url, pipe).getContainerClient(config.AZURE_CONTAINER);
    this.#source = source;
  }

  async init(): Promise<void> {
    try {
      // Look before creating: credentials that may use the container need not be allowed to create one.
      const exists = await this.#container.exists();
      if (!exists && this.config.AUTO_CREATE_BUCKET) await this.#container.createIfNotExists();
      else if (!exists) await this.#container.getProperties(); // fails with ContainerNotFound
      await this.#container.listBlobsFlat({ prefix: UPLOADS_PREFIX }).byPage({ maxPageSize: 1 }).next();
    } catch (err) {
      throw this.#configError(err);
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
    const res = await this.#call(() => this.#blob(key).download(offset, count, { abortSignal: signal, maxRetryRequests: 3 }), key);
    const body = res.readableStreamBody as Readable;
    if (res.copyStatus === 'pending') {
      body.destroy();
      throw new StorageUnavailableError('azure', `${key} is still being copied`);
    }
    const total = /\/(\d+)$/.exec(res.contentRange ?? '')?.[1];
    return { info: info(key, total === undefined ? res.contentLength : Number(total), res.lastModified, res.etag, decodeMetadata(res.metadata)), body };
  }

  async stage(key: string, body: Readable, options: { signal?: AbortSignal } = {}): Promise<StagedObject> {
    checkKey(key);
    const name = newStagedName();
    const blob = this.#container.getBlockBlobClient(UPLOADS_PREFIX + name);
    this.#active.add(name);
    const stop = new AbortController();
    const inflight = new Set<Promise<unknown>>();
    const blocks: string[] = [];
    let failure: unknown; // the first failed block: stops the loop
    let size = 0;
    try {
      await pipeline(
        body,
        async (source: AsyncIterable<Buffer>) => {
          for await (const part of blocksOf(source)) {
            const id = Buffer.from(String(blocks.length).padStart(6, '0')).toString('base64');
            blocks.push(id);
            size += part.length;
            const put: Promise<unknown> = blob.stageBlock(id, part, part.length, { abortSignal: stop.signal }).then(
              () => inflight.delete(put),
              (err: unknown) => {
                failure ??= err;
                stop.abort();
              },
            );
            inflight.add(put);
            while (inflight.size >= CONCURRENCY && failure === undefined) await Promise.race(inflight);
            if (failure !== undefined) throw failure;
          }
          await Promise.all(inflight);
          if (failure !== undefined) throw failure;
        },
        { signal: options.signal },
      );
      const res = await blob.commitBlockList(blocks, {
        abortSignal: options.signal,
        blobHTTPHeaders: { blobContentType: key.endsWith('.gz') ? 'application/gzip' : 'application/octet-stream' },
      });
      return new AzureStaged(key, size, name, res.etag!);
    } catch (err) {
      stop.abort();
      await Promise.allSettled(inflight); // no block may land after the clean-up below
      if (blocks.length > 0) await this.#removeStaged(name);
      this.#active.delete(name);
      throw translate(err);
    }
  }

  async commit(staged: StagedObject, metadata: Metadata, condition: WriteCondition, options: CommitOptions = {}): Promise<ObjectInfo> {
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
    return this.#publish(source, to, options.metadata, destination(options.condition ?? {}), options.sourceToken, from, props.contentLength);
  }

  async setMetadata(key: string, token: string, metadata: Metadata): Promise<ObjectInfo> {
    const blob = this.#blob(key);
    // Unconditional read first: a HEAD with If-Match on a missing blob answers 412, not 404.
    const props = await this.#call(() => blob.getProperties(), key);
    if (props.etag !== token) throw new PreconditionFailedError(key);
    const res = await this.#call(() => blob.setMetadata(encodeMetadata(metadata), { conditions: { ifMatch: token } }), key);
    return info(key, props.contentLength, res.lastModified, res.etag, metadata);
  }

  async delete(key: string): Promise<void> {
    await this.#call(() => this.#blob(key).deleteIfExists({ deleteSnapshots: 'include' }), key);
  }

  async *list(prefix: string, options: { startAfter?: string } = {}): AsyncIterable<ObjectInfo> {
    const pages = this.#container.listBlobsByHierarchy('/', { prefix, includeMetadata: true }).byPage({ maxPageSize: 1000 });
    while (true) {
      const page = await this.#call(() => pages.next());
      if (page.done) return;
      for (const item of page.value.segment.blobItems) {
        if (options.startAfter !== undefined && item.name <= options.startAfter) continue;
        if (!item.name.includes('/') && item.name.startsWith('.')) continue; // bookkeeping at the root
        const p = item.properties;
        yield info(item.name, p.contentLength, p.lastModified, p.etag, decodeMetadata(item.metadata));
      }
    }
  }

  async sweep(): Promise<number> {
    let removed = 0;
    // Uncommitted blobs too: a writer that died mid-stage left only uncommitted blocks.
    const items = this.#container.listBlobsFlat({ prefix: UPLOADS_PREFIX, includeUncommitedBlobs: true });
    try {
      for await (const item of items) {
        const name = item.name.slice(UPLOADS_PREFIX.length);
        // A blob of uncommitted blocks keeps the date of its first block while the upload runs.
        if (name.includes('/') || !isAbandoned(name, item.properties.lastModified, this.#active, UPLOAD_STARTED_MAX_AGE_MS)) continue;
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
   * the blob the first attempt wrote (write-nonce.ts).
   */
  async #publish(source: BlobClient, to: string, metadata: Metadata, conditions: BlobRequestConditions, sourceEtag: string, sourceKey: string, size: number | undefined): Promise<ObjectInfo> {
    return writeOnce('azure', to, async (nonce) => {
      const done = await this.#copy(source, to, { ...metadata, [WRITE_NONCE]: nonce }, conditions, sourceEtag, sourceKey);
      return info(to, size, done.lastModified, done.etag, metadata);
    }, () => this.#readBack(to), this.logger);
  }

  /** `key`'s info and the nonce of the write that stored it; undefined when there is none. */
  async #readBack(key: string): Promise<{ info: ObjectInfo; nonce?: string } | undefined> {
    try {
      const p = await this.#call(() => this.#blob(key).getProperties(), key);
      // A copy still running (or failed) has not published anything yet.
      if (p.copyStatus !== undefined && p.copyStatus !== 'success') throw new StorageUnavailableError('azure', `the copy to ${key} is ${p.copyStatus}`);
      const metadata = decodeMetadata(p.metadata);
      return { info: info(key, p.contentLength, p.lastModified, p.etag, metadata), nonce: metadata[WRITE_NONCE] };
    } catch (err) {
      if (err instanceof NotFoundError) return undefined;
      throw err;
    }
  }

  /** Server-side copy with the conditions; waits for a copy the service scheduled. */
  async #copy(source: BlobClient, to: string, metadata: Metadata, conditions: BlobRequestConditions, sourceEtag: string, sourceKey: string) {
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

  #configError(err: unknown): ConfigError {
    const { endpoint, endpointVar, credentialVar, sharedKey } = this.#source;
    const container = `AZURE_CONTAINER=${this.config.AZURE_CONTAINER}`;
    const account = accountOf(endpoint);
    const status = err instanceof RestError ? err.statusCode : undefined;
    const code = describe(err);
    let line: string;
    if (credentialVar === 'identity' && isIdentityError(err)) {
      line = `AZURE_ACCOUNT_NAME=${this.config.AZURE_ACCOUNT_NAME ?? account} has no AZURE_ACCOUNT_KEY, so an Azure identity was looked for and none could get a token (${(err as Error).name}): assign a managed or workload identity with the Storage Blob Data Contributor role on the container, or set AZURE_ACCOUNT_KEY or AZURE_STORAGE_CONNECTION_STRING.`;
    } else if (status === undefined) {
      line =
        endpointVar === 'AZURE_STORAGE_CONNECTION_STRING'
          ? `AZURE_STORAGE_CONNECTION_STRING points at ${endpoint}, which is unreachable (${code}): check BlobEndpoint (or AccountName and EndpointSuffix) in it and that the server is running.`
          : endpointVar === 'AZURE_ACCOUNT_NAME'
            ? `AZURE_ACCOUNT_NAME=${this.config.AZURE_ACCOUNT_NAME}: ${endpoint} is unreachable (${code}): check the storage account name, or set AZURE_BLOB_ENDPOINT for another cloud or an emulator.`
            : `AZURE_BLOB_ENDPOINT=${endpoint} is unreachable (${code}): check the URL and that the server is running.`;
    } else if (code === 'HTTP 403 AuthenticationFailed' || (status === 403 && sharedKey)) {
      // A shared key may do anything, so a 403 means a wrong key (Azurite says AuthorizationFailure
      // for that) or the account's firewall.
      line =
        credentialVar === 'AZURE_ACCOUNT_KEY'
          ? `AZURE_ACCOUNT_KEY is not accepted by storage account ${account} at ${endpoint} (${code}): copy key1 or key2 from the account's Access keys page unchanged, check that AZURE_ACCOUNT_NAME is that account, and that the account's firewall admits this network.`
          : credentialVar === 'AZURE_STORAGE_CONNECTION_STRING'
            ? `AZURE_STORAGE_CONNECTION_STRING is not accepted by storage account ${account} at ${endpoint} (${code}): copy the connection string again from the account's Access keys page (its AccountKey is wrong or was rotated), and check that the account's firewall admits this network.`
            : `AZURE_BLOB_ENDPOINT's SAS token is not accepted at ${endpoint} (${code}): create a new SAS with read, add, create, write, delete and list permissions that has not expired.`;
    } else if (status === 403) {
      line = `${container} cannot be used with these credentials (${code}): grant read, write, delete and list on it (Storage Blob Data Contributor), allow this network in the account's firewall, or use another container.`;
    } else if (status === 404 && !code.endsWith('ContainerNotFound')) {
      line = `${endpointVar === 'AZURE_BLOB_ENDPOINT' ? `AZURE_BLOB_ENDPOINT=${endpoint}` : endpointVar} does not lead to storage account ${account} (${code}): check the account name and, for an emulator or another cloud, that the endpoint includes the account, e.g. http://127.0.0.1:10000/devstoreaccount1.`;
    } else if (code.endsWith('ContainerNotFound')) {
      line = `${container} does not exist in storage account ${account} and AUTO_CREATE_BUCKET=false: create it (az storage container create --account-name ${account} --name ${this.config.AZURE_CONTAINER}) or set AUTO_CREATE_BUCKET=true.`;
    } else if (code.endsWith('ContainerBeingDeleted')) {
      line = `${container} is being deleted (${code}): wait a minute and start again, or use another container name.`;
    } else if (/InvalidResourceName|OutOfRangeInput/.test(code)) {
      line = `${container} is refused by the service (${code}): use 3-63 lower-case letters, digits and single hyphens, e.g. models.`;
    } else {
      line = `${container} cannot be used at ${endpoint} (${code}): check the storage account and ${endpointVar}.`;
    }
    return new ConfigError(line, { cause: err });
  }
}

/** Builds the service URL and credential from the settings; a setup that cannot work is a ConfigError. */
export function resolveClient(config: Settings) {
  const { AZURE_STORAGE_CONNECTION_STRING: cs, AZURE_ACCOUNT_NAME: name, AZURE_ACCOUNT_KEY: key, AZURE_BLOB_ENDPOINT: endpoint } = config;
  if (cs !== undefined) {
    let parsed: BlobServiceClient;
    try {
      parsed = BlobServiceClient.fromConnectionString(cs);
    } catch (err) {
      throw new ConfigError(
        `AZURE_STORAGE_CONNECTION_STRING=(hidden) cannot be parsed (${(err as Error).message}): copy it from the storage account's Access keys page; it looks like DefaultEndpointsProtocol=https;AccountName=...;AccountKey=...;EndpointSuffix=core.windows.net.`,
        { cause: err },
      );
    }
    const source = {
      endpoint: withoutQuery(parsed.url),
      endpointVar: 'AZURE_STORAGE_CONNECTION_STRING',
      credentialVar: 'AZURE_STORAGE_CONNECTION_STRING',
      sharedKey: parsed.credential instanceof StorageSharedKeyCredential,
    };
    return { url: parsed.url, credential: parsed.credential, source };
  }
  if (name !== undefined && key !== undefined) {
    const url = (endpoint ?? `https://${name}.blob.core.windows.net`).replace(/\/+$/, '');
    const source = { endpoint: url, endpointVar: endpoint ? 'AZURE_BLOB_ENDPOINT' : 'AZURE_ACCOUNT_NAME', credentialVar: 'AZURE_ACCOUNT_KEY', sharedKey: true };
    return { url, credential: new StorageSharedKeyCredential(name, key), source };
  }
  if (key !== undefined) {
    throw new ConfigError('AZURE_ACCOUNT_KEY is set without AZURE_ACCOUNT_NAME: set AZURE_ACCOUNT_NAME to the storage account the key belongs to.');
  }
  if (endpoint !== undefined && /[?&]sig=/.test(endpoint)) {
    // A SAS URL carries its own authorisation.
    const source = { endpoint: withoutQuery(endpoint), endpointVar: 'AZURE_BLOB_ENDPOINT', credentialVar: 'AZURE_BLOB_ENDPOINT', sharedKey: false };
    return { url: endpoint, credential: undefined, source };
  }
  // No key: the default Azure credential chain (environment, workload identity, managed
  // identity, Azure CLI). The identity needs Storage Blob Data Contributor on the container.
  const url = (endpoint ?? `https://${name}.blob.core.windows.net`).replace(/\/+$/, '');
  const source = { endpoint: url, endpointVar: endpoint ? 'AZURE_BLOB_ENDPOINT' : 'AZURE_ACCOUNT_NAME', credentialVar: 'identity', sharedKey: false };
  return { url, credential: new DefaultAzureCredential() as TokenCredential, source };
}

/** Maps SDK errors to storage errors. `sourceKey` names the source of a copy. Exported for tests. */
export function translate(err: unknown, key?: string, sourceKey?: string): unknown {
  // No token for the default credential chain (an identity endpoint down, a federated token
  // expired): the storage cannot be reached, as with a refused connection.
  if (isIdentityError(err)) return new StorageUnavailableError('azure', `no access token: ${(err as Error).name}`, { cause: err });
  if (!(err instanceof RestError)) return err; // AbortError, our own errors, bugs
  const status = err.statusCode;
  const code = errorCode(err);
  if (status === 404 && code !== 'ContainerNotFound' && (sourceKey ?? key) !== undefined) {
    return new NotFoundError((sourceKey ?? key)!, { cause: err });
  }
  if (status === 412 && key !== undefined) return new PreconditionFailedError(code === 'SourceConditionNotMet' ? (sourceKey ?? key) : key, { cause: err });
  if (status === 409 && code === 'BlobAlreadyExists' && key !== undefined) return new PreconditionFailedError(key, { cause: err });
  if (status === 400 && code === 'MetadataTooLarge') {
    return new MetadataTooLargeError('Azure', '8 KB in all, of which the registry\'s own fields take about 250 bytes', undefined, { cause: err });
  }
  // Anything else Azure refuses (401 from an expired credential, 400, ...) is the storage's
  // problem, not the client's: never pass Azure's status on as if the request were at fault.
  return new StorageUnavailableError('azure', describe(err), { cause: err });
}

/** The service's error code (x-ms-error-code, also sent for HEAD) or the socket error code. */
function errorCode(err: RestError): string | undefined {
  return (err.details as { errorCode?: string } | undefined)?.errorCode ?? err.code;
}

/** 'ECONNREFUSED', 'HTTP 403 AuthenticationFailed', 'HTTP 404'. */
function describe(err: unknown): string {
  if (!(err instanceof RestError)) return (err as Error)?.name ?? 'error';
  const code = errorCode(err);
  if (err.statusCode === undefined) return code ?? 'network error';
  return code ? `HTTP ${err.statusCode} ${code}` : `HTTP ${err.statusCode}`;
}

function destination(condition: WriteCondition): BlobRequestConditions {
  if ('ifMatch' in condition) return { ifMatch: condition.ifMatch };
  if ('ifNoneMatch' in condition) return { ifNoneMatch: '*' };
  return {};
}

function info(key: string, size: number | undefined, lastModified: Date | undefined, etag: string | undefined, metadata: Metadata): ObjectInfo {
  // Listings give the ETag bare, headers quoted: one spelling, so tokens compare equal.
  const token = etag === undefined ? '' : etag.startsWith('"') ? etag : `"${etag}"`;
  return { key, size: size ?? 0, lastModified: lastModified ?? new Date(0), token, metadata: splitNonce(metadata).metadata };
}

/** '.', '..' and empty segments would be normalised away in the blob URL; refuse them. */
function checkKey(key: string): string {
  const parts = key.split('/');
  if (!key || key.length > 1024 || parts.some((p) => p === '' || p === '.' || p === '..')) {
    throw new TypeError(`invalid storage key: ${JSON.stringify(key)}`);
  }
  return key;
}

function isIdentityError(err: unknown): boolean {
  return err instanceof CredentialUnavailableError || err instanceof AuthenticationError || (err as Error)?.name === 'AggregateAuthenticationError';
}

/**
 * Metadata values travel as header values: '%', spaces and what a header cannot carry (control
 * and non-ASCII characters) are percent-encoded, the rest is sent as is. Azure bounds metadata to
 * 8 KB in all: labels (2 KiB at most) then take ≤ 3 bytes per byte (encodeURIComponent of the
 * whole value took up to 6: `"` is `\"` in the labels' JSON, then `%5C%22`). decodeURIComponent
 * reads both spellings.
 */
const NEEDS_ENCODING = /[%\s\x00-\x1f\x7f-\u{10ffff}]/gu;

export function encodeMetadata(metadata: Metadata): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(metadata)) {
    const name = k.replace(/-/g, '_');
    // Azure drops empty values; a lone '%' is never produced (every '%' is encoded).
    out[/^[a-z]/i.test(k) ? name : `_${name}`] = v === '' ? '%' : v.replace(NEEDS_ENCODING, (c) => encodeURIComponent(c));
  }
  return out;
}

export function decodeMetadata(raw: Record<string, string> = {}): Metadata {
  const out: Metadata = {};
  for (const [name, v] of Object.entries(raw)) {
    const k = (name.startsWith('_') ? name.slice(1) : name).replace(/_/g, '-').toLowerCase();
    try {
      out[k] = v === '%' ? '' : decodeURIComponent(v);
    } catch {
      out[k] = v; // written by another tool, not percent-encoded
    }
  }
  return out;
}

/** Cuts a stream into BLOCK_SIZE buffers (the last one shorter). Holds at most one block. */
async function* blocksOf(source: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  let parts: Buffer[] = [];
  let length = 0;
  for await (const chunk of source) {
    let rest = chunk;
    while (length + rest.length >= BLOCK_SIZE) {
      const take = BLOCK_SIZE - length;
      parts.push(rest.subarray(0, take));
      yield Buffer.concat(parts);
      rest = rest.subarray(take);
      parts = [];
      length = 0;
    }
    if (rest.length > 0) {
      parts.push(rest);
      length += rest.length;
    }
  }
  if (length > 0) yield Buffer.concat(parts);
}

/**
 * Gives an agent's sockets a connect timeout (so a dead host fails in seconds, not after the TCP
 * default of minutes) and turns the agent's idle timeout (which Node only reports, and re-arms
 * each time a kept-alive socket is reused) into an error: a server that stops answering
 * mid-request or mid-body. The SDK retries both like any connection error.
 */
function withTimeouts<A extends http.Agent>(agent: A, connectEvent: 'connect' | 'secureConnect'): A {
  const a = agent as unknown as { createConnection: (...args: unknown[]) => Socket };
  const createConnection = a.createConnection.bind(agent);
  a.createConnection = (...args: unknown[]) => {
    const socket = createConnection(...args);
    const fail = (what: string) => socket.destroy(Object.assign(new Error(`${what} timed out`), { code: 'ETIMEDOUT' }));
    const connect = setTimeout(() => fail('connect'), CONNECT_TIMEOUT_MS);
    socket.once(connectEvent, () => clearTimeout(connect));
    socket.once('close', () => clearTimeout(connect));
    // Paused: the reader of a download is behind (backpressure), not the server silent. The idle
    // time counts again from when reading resumes; a server silent from then on still fails.
    let behind = false;
    socket.on('timeout', () => {
      if (socket.isPaused()) behind = true;
      else fail('idle socket');
    });
    socket.on('resume', () => {
      if (!behind) return;
      behind = false;
      socket.setTimeout(socket.timeout ?? 0);
    });
    return socket;
  };
  return agent;
}

function withoutQuery(url: string): string {
  return url.split('?')[0]!.replace(/\/+$/, '');
}

function accountOf(endpoint: string): string {
  const u = new URL(endpoint);
  const pathAccount = u.pathname.split('/').filter(Boolean)[0];
  return /^[\d.]+$|^localhost$/.test(u.hostname) && pathAccount ? pathAccount : u.hostname.split('.')[0]!;
}
