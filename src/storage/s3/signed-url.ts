/**
 * Presigned GETs (redirect downloads): a URL that reads one object for a while without the
 * registry, signed with the client's credentials (SigV4 query parameters, no request to S3).
 *
 * The signature covers the Host header, so a URL for clients that reach the server under another
 * name (MinIO behind a proxy: AWS_PUBLIC_ENDPOINT_URL) is signed by a second client whose
 * endpoint is that name; the proxy must pass the Host header on unchanged. The response-*
 * overrides (Cache-Control, Content-Disposition, Content-Type) are part of what is signed.
 * A URL signed with temporary credentials (an IAM role) stops working when they expire, which may
 * be before `ttlMs`; S3 caps presigned URLs at 7 days.
 */
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import type { CommonSettings } from '../driver.js';
import { StorageUnavailableError } from '../errors.js';
import type { SignedResponse } from '../types.js';
import { createClient } from './client.js';
import { describe } from './errors.js';
import type { S3Settings } from './settings.js';

export type Signer = (key: string, ttlMs: number, response?: SignedResponse) => Promise<string>;

/**
 * A signer for the bucket: a client of its own (it sends no requests), for AWS_PUBLIC_ENDPOINT_URL
 * when that is set. It computes and asks for no checksums: the SDK would otherwise put its
 * x-amz-checksum-crc32 (of the empty GET body) or x-amz-checksum-mode in every URL.
 */
export function createSigner(config: S3Settings & CommonSettings): Signer {
  const endpoint = config.AWS_PUBLIC_ENDPOINT_URL ?? config.AWS_ENDPOINT_URL;
  const signing = createClient(
    { ...config, AWS_ENDPOINT_URL: endpoint },
    { requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED' },
  );
  return async (key, ttlMs, response = {}) => {
    const command = new GetObjectCommand({
      Bucket: config.BUCKET_NAME,
      Key: key,
      ResponseCacheControl: response.cacheControl,
      ResponseContentDisposition: response.contentDisposition,
      ResponseContentType: response.contentType,
    });
    try {
      return await getSignedUrl(signing, command, { expiresIn: Math.max(1, Math.floor(ttlMs / 1000)) });
    } catch (err) {
      // No credentials to sign with (the default chain found none) is the usual cause.
      throw new StorageUnavailableError('s3', `cannot presign a URL: ${describe(err)}`, { cause: err });
    }
  };
}
