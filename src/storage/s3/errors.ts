/**
 * S3 errors as storage errors (the SDK error kept as `cause`), and the one line a user gets for a
 * setup that cannot work.
 */
import { S3ServiceException } from '@aws-sdk/client-s3';
import {
  NotFoundError,
  PreconditionFailedError,
  StorageAccessDeniedError,
  StorageError,
  StorageUnavailableError,
} from '../errors.js';
import { networkErrorCode } from '../shared/network.js';
import { metadataTooLarge } from './metadata.js';
import type { S3Settings } from './settings.js';

/** The one line a user gets for a setup that cannot work (`region` as the client resolved it). */
export function setupErrorLine(err: unknown, c: S3Settings, region: string | undefined): string {
  const code = errorCode(err);
  const bucket = `BUCKET_NAME=${c.BUCKET_NAME}`;
  const regionVar =
    c.AWS_DEFAULT_REGION === undefined && c.AWS_REGION !== undefined ? 'AWS_REGION' : 'AWS_DEFAULT_REGION';
  const regionSet =
    (c.AWS_DEFAULT_REGION ?? c.AWS_REGION) !== undefined
      ? `${regionVar}=${region}`
      : `The region ${region} of the AWS profile`;
  const keyId = c.AWS_ACCESS_KEY_ID
    ? `AWS_ACCESS_KEY_ID=${c.AWS_ACCESS_KEY_ID}`
    : 'AWS_ACCESS_KEY_ID is not set and the key found by the default credential chain (profile, IAM role)';
  const expected =
    /expecting '([^']+)'/.exec(String((err as Error)?.message))?.[1] ??
    (err as { $response?: { headers?: Record<string, string> } })?.$response?.headers?.['x-amz-bucket-region'];
  let line: string;
  if (code === 'CredentialsProviderError') {
    line =
      'AWS_ACCESS_KEY_ID is not set and no AWS credentials were found (no profile, web identity or instance role): set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or run with an IAM role.';
  } else if (/region is missing/i.test(String((err as Error)?.message))) {
    line =
      "AWS_DEFAULT_REGION is not set and no AWS profile names a region: set AWS_DEFAULT_REGION to the bucket's region code, e.g. AWS_DEFAULT_REGION=eu-central-1.";
  } else if (code === 'InvalidAccessKeyId') {
    line = `${keyId} is not known to the server (InvalidAccessKeyId): check the access key, or unset both keys to use the default credential chain.`;
  } else if (code === 'SignatureDoesNotMatch') {
    line = `AWS_SECRET_ACCESS_KEY does not belong to ${c.AWS_ACCESS_KEY_ID ? `AWS_ACCESS_KEY_ID=${c.AWS_ACCESS_KEY_ID}` : 'the access key found by the default credential chain'} (SignatureDoesNotMatch): copy the secret key again, without spaces or quotes.`;
  } else if (code === 'ExpiredToken' || code === 'InvalidToken' || code === 'TokenRefreshRequired') {
    line = `AWS_SESSION_TOKEN is expired or invalid (${code}): get fresh temporary credentials, or use long-term keys or an IAM role.`;
  } else if (
    expected &&
    (code === 'AuthorizationHeaderMalformed' ||
      code === 'PermanentRedirect' ||
      code === 'IllegalLocationConstraintException' ||
      statusOf(err) === 301)
  ) {
    line = `${regionSet} is not the region of ${bucket} (${code}): set ${regionVar}=${expected}.`;
  } else if (code === 'NoSuchBucket') {
    line = `${bucket} does not exist and AUTO_CREATE_BUCKET=false: create the bucket (aws s3 mb s3://${c.BUCKET_NAME}) or set AUTO_CREATE_BUCKET=true.`;
  } else if (code === 'BucketAlreadyExists') {
    line = `${bucket} is taken by another account (BucketAlreadyExists): bucket names are global, choose another one.`;
  } else if (code === 'AccessDenied' || code === 'AllAccessDisabled' || code === 'Forbidden' || statusOf(err) === 403) {
    line = `${bucket} cannot be read with these credentials (${code}): grant s3:GetObject, s3:PutObject, s3:ListBucket and s3:DeleteObject on it, or use another bucket.`;
  } else if (isNetworkError(err)) {
    line = c.AWS_ENDPOINT_URL
      ? `AWS_ENDPOINT_URL=${c.AWS_ENDPOINT_URL} is ${code === 'TimeoutError' ? 'not answering' : 'unreachable'} (${code}): check the URL and that the server is running.`
      : `${regionSet} leads to an unreachable endpoint https://s3.${region}.amazonaws.com (${code}): check the region code and the network (proxy, firewall).`;
  } else {
    line = `${bucket} could not be checked at ${c.AWS_ENDPOINT_URL ?? `region ${region}`} (${describe(err)}): check the S3 settings.`;
  }
  return line.replace(/\s*\n\s*/g, ' ');
}

/** What a call does, for the permission a refusal names. */
export type Access = 'read' | 'write' | 'delete';
const PERMISSIONS: Record<Access, string> = {
  read: 's3:GetObject and s3:ListBucket',
  write: 's3:PutObject (writing objects)',
  delete: 's3:DeleteObject',
};

/** Maps an SDK error to the storage errors of ../errors.ts, keeping it as `cause`. */
export function translate(err: unknown, key: string, access: Access = 'read'): unknown {
  if (err instanceof StorageError) return err;
  if ((err as Error)?.name === 'AbortError') return err;
  const code = errorCode(err);
  const status = statusOf(err);
  // An upload gone under us (a sweep judged it abandoned, or a lifecycle rule): the object
  // asked for is not missing — the write failed, and may be retried.
  if (code === 'NoSuchUpload')
    return new StorageUnavailableError('s3', `the multipart upload to ${key} no longer exists (NoSuchUpload)`, {
      cause: err,
    });
  if (code === 'NoSuchKey' || (code === 'NotFound' && status === 404)) return new NotFoundError(key, { cause: err });
  // 409 ConditionalRequestConflict: a concurrent conditional write to the same key won.
  if (status === 412 || code === 'PreconditionFailed' || code === 'ConditionalRequestConflict')
    return new PreconditionFailedError(key, { cause: err });
  if (code === 'MetadataTooLarge') return metadataTooLarge(undefined, err);
  if (code === 'AccessDenied' || code === 'AllAccessDisabled' || (status === 403 && code === 'Forbidden')) {
    return new StorageAccessDeniedError('s3', `${describe(err)} on ${key}`, PERMISSIONS[access], { cause: err });
  }
  if (err instanceof S3ServiceException || isNetworkError(err) || code === 'CredentialsProviderError') {
    return new StorageUnavailableError('s3', describe(err), { cause: err });
  }
  return err;
}

/** A translated error whose cause is S3's NoSuchUpload. */
export function isNoSuchUpload(err: unknown): boolean {
  return errorCode((err as Error | undefined)?.cause) === 'NoSuchUpload';
}

export function errorCode(err: unknown): string {
  const e = err as { code?: string; Code?: string; name?: string; errors?: { code?: string }[] } | undefined;
  return e?.code ?? e?.errors?.[0]?.code ?? e?.Code ?? e?.name ?? 'Error';
}

export function statusOf(err: unknown): number | undefined {
  return (err as { $metadata?: { httpStatusCode?: number } })?.$metadata?.httpStatusCode;
}

function isNetworkError(err: unknown): boolean {
  return networkErrorCode(err) !== undefined || (err as Error)?.name === 'TimeoutError';
}

export function describe(err: unknown): string {
  const status = statusOf(err);
  return status ? `${errorCode(err)} ${status}` : errorCode(err);
}
