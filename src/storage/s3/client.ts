/**
 * The S3 client: region, endpoint and keys from the settings (without them the SDK's default
 * chains apply), SDK retries and socket timeouts. Also the part sizes of server-side copies.
 *
 * Integrity of uploaded bytes: every part carries a CRC32 checksum (the SDK's default), which
 * S3 checks, and is sent as UNSIGNED-PAYLOAD instead of also being SHA-256-hashed for the
 * signature (what the SDK itself does for streamed bodies, and boto3 over HTTPS) — that hash cost
 * a second of CPU per GiB. End to end, the model's SHA-256 in its metadata (signed with the
 * request headers) is checked on every read from storage.
 *
 * Retries: the SDK's standard strategy retries a timed-out attempt too, so a silent server cost
 * maxAttempts × STORAGE_TIMEOUT; ours retries only errors that came back (a 500, a reset, a
 * throttle) and only while the call is younger than STORAGE_TIMEOUT.
 */
import { type BucketLocationConstraint, CreateBucketCommand, S3Client, type S3ClientConfig } from '@aws-sdk/client-s3';
import type { FinalizeRequestMiddleware, MetadataBearer, RetryErrorInfo, RetryStrategyV2 } from '@smithy/types';
import type { Logger } from '../../util/logger.js';
import type { CommonSettings } from '../driver.js';
import { isTimeout } from '../shared/network.js';
import { errorCode } from './errors.js';
import type { S3Settings } from './settings.js';

const MiB = 1024 * 1024;
/** S3's smallest part (all but the last). */
const MIN_PART_SIZE = 5 * MiB;

/** `extra`: options of a client for one purpose (the presigner's, signed-url.ts). */
export function createClient(config: S3Settings & CommonSettings, extra: S3ClientConfig = {}): S3Client {
  const region = config.AWS_DEFAULT_REGION ?? config.AWS_REGION ?? (config.AWS_ENDPOINT_URL ? 'us-east-1' : undefined);
  const client = new S3Client({
    // Without region or keys the SDK's default chains (env, profile, web identity, IAM role) apply.
    ...(region ? { region } : {}),
    ...(config.AWS_ENDPOINT_URL ? { endpoint: config.AWS_ENDPOINT_URL, forcePathStyle: true } : {}),
    ...(config.AWS_ACCESS_KEY_ID && config.AWS_SECRET_ACCESS_KEY
      ? {
          credentials: {
            accessKeyId: config.AWS_ACCESS_KEY_ID,
            secretAccessKey: config.AWS_SECRET_ACCESS_KEY,
            sessionToken: config.AWS_SESSION_TOKEN,
          },
        }
      : {}),
    retryStrategy: new DeadlineRetryStrategy(3, config.STORAGE_TIMEOUT),
    // Options for the SDK's NodeHttpHandler. socketTimeout is the inactivity timeout (also
    // while a body streams), which is what STORAGE_TIMEOUT means; requestTimeout in this
    // handler version caps the whole request and would only log a warning.
    requestHandler: {
      connectionTimeout: Math.min(5000, config.STORAGE_TIMEOUT),
      socketTimeout: config.STORAGE_TIMEOUT,
    },
    ...extra,
  });
  client.middlewareStack.addRelativeTo(unsignedChecksummedPayload, {
    relation: 'before',
    toMiddleware: 'httpSigningMiddleware',
    name: 'unsignedChecksummedPayload',
  });
  return client;
}

/**
 * The part size of one multipart copy of `size` bytes: up to `base`, drawn at random. A multipart
 * object's ETag is a hash of its parts' hashes, so the same bytes copied with the same parts get
 * the ETag they had — and a rollback would hand a replica's stale If-Match a token that matches
 * again (ABA), letting it overwrite a newer version. Random part boundaries make ETags unique per
 * write for objects well over 5 MiB (5 MiB + k bytes have k layouts; parts but the last are at
 * least 5 MiB); a small object's copy takes milliseconds, too short a window for a replace and a
 * rollback to fit in.
 */
export function copyPartSize(size: number, base: number): number {
  if (size <= MIN_PART_SIZE) return size;
  const high = Math.min(base, size - 1);
  const low = Math.max(MIN_PART_SIZE, high - Math.floor(base / 8));
  return low + Math.floor(Math.random() * (high - low + 1));
}

/**
 * Sends a part or small object that carries a checksum header (the SDK's default CRC32, which S3
 * verifies) as UNSIGNED-PAYLOAD, so the signer does not hash the whole body with SHA-256 as well.
 */
const unsignedChecksummedPayload: FinalizeRequestMiddleware<object, MetadataBearer> = (next) => async (args) => {
  const request = args.request as { headers?: Record<string, string>; body?: unknown };
  const headers = request.headers;
  if (
    headers &&
    ArrayBuffer.isView(request.body) &&
    !Object.keys(headers).some((h) => h.toLowerCase() === 'x-amz-content-sha256') &&
    Object.keys(headers).some((h) => h.toLowerCase().startsWith('x-amz-checksum-'))
  ) {
    headers['x-amz-content-sha256'] = 'UNSIGNED-PAYLOAD';
  }
  return next(args);
};

/**
 * The SDK prints a ten-line process warning on Node < 22, which would break the one-line start-up
 * errors; this says it once in the log instead.
 */
export function quietOldNodeWarning(logger: Logger): void {
  const env = process.env;
  const major = Number(process.versions.node.split('.')[0]);
  if (major >= 22 || env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED !== undefined) return;
  env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';
  logger.info(
    'AWS SDK releases after January 2027 need Node.js 22; this build pins its SDK version and runs on Node.js 20',
  );
}

/** Creates `bucket` in the client's region (AUTO_CREATE_BUCKET); one another replica made is fine. */
export async function createBucket(client: S3Client, bucket: string, logger: Logger): Promise<void> {
  const region = await client.config.region();
  // us-east-1 is the default location and must not be named.
  const location =
    region && region !== 'us-east-1'
      ? { CreateBucketConfiguration: { LocationConstraint: region as BucketLocationConstraint } }
      : {};
  try {
    await client.send(new CreateBucketCommand({ Bucket: bucket, ...location }));
    logger.info({ bucket, region }, 'created the bucket (AUTO_CREATE_BUCKET=true)');
  } catch (err) {
    if (errorCode(err) !== 'BucketAlreadyOwnedByYou') throw err; // another replica was faster
  }
}

interface Token {
  /** When the call's first attempt started. */
  started: number;
  getRetryCount(): number;
  getRetryDelay(): number;
}

const token = (started: number, retries: number, delay: number): Token => ({
  started,
  getRetryCount: () => retries,
  getRetryDelay: () => delay,
});

/**
 * The SDK's retry decisions (throttling and transient errors; the retry middleware waits the
 * token's delay), with a budget: no retry of a timeout, none that would start after `budgetMs`
 * from the call's start. Backoff as the standard strategy: full jitter on 100 ms × 2^n
 * (500 ms for throttling).
 */
export class DeadlineRetryStrategy implements RetryStrategyV2 {
  readonly mode = 'standard';

  constructor(
    readonly maxAttempts: number,
    readonly budgetMs: number,
  ) {}

  async acquireInitialRetryToken(): Promise<Token> {
    return token(Date.now(), 0, 0);
  }

  async refreshRetryTokenForRetry(previous: Token, info: RetryErrorInfo): Promise<Token> {
    const retryable = info.errorType === 'TRANSIENT' || info.errorType === 'THROTTLING';
    const retries = previous.getRetryCount();
    if (!retryable || isTimeout(info.error) || retries + 1 >= this.maxAttempts) {
      throw new Error('no retry'); // the middleware then throws the attempt's own error
    }
    const base = info.errorType === 'THROTTLING' ? 500 : 100;
    const delay = Math.floor(Math.random() * base * 2 ** retries);
    if (Date.now() + delay - previous.started >= this.budgetMs) throw new Error('no retry: past STORAGE_TIMEOUT');
    return token(previous.started, retries + 1, delay);
  }

  recordSuccess(): void {}
}
