/**
 * V4 signed URLs (redirect downloads): a URL that reads one object for a while without the
 * registry. The SDK signs with the service account's private key when it has one
 * (GOOGLE_APPLICATION_CREDENTIALS: locally, no request); with workload identity it asks the IAM
 * Credentials API to sign (the identity needs iam.serviceAccounts.signBlob on itself). The URL's
 * host is the client's endpoint (storage.googleapis.com, or the emulator's). V4 URLs live at most
 * 7 days. GCS lets a URL override Content-Disposition and Content-Type (response-content-*), not
 * Cache-Control, which comes from the object's metadata.
 */
import type { Bucket } from '@google-cloud/storage';
import { StorageUnavailableError } from '../errors.js';
import type { SignedResponse } from '../types.js';
import { shortDetail } from './errors.js';

export async function signedReadUrl(
  bucket: Bucket,
  key: string,
  ttlMs: number,
  response: SignedResponse = {},
): Promise<string> {
  try {
    const [url] = await bucket.file(key).getSignedUrl({
      version: 'v4',
      action: 'read',
      expires: Date.now() + ttlMs,
      responseDisposition: response.contentDisposition,
      responseType: response.contentType,
    });
    return url;
  } catch (err) {
    // Credentials without a private key and no signBlob permission, the usual cause.
    throw new StorageUnavailableError('gcs', `cannot sign a URL: ${shortDetail(err)}`, { cause: err });
  }
}
