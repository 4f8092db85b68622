/**
 * Service SAS URLs (redirect downloads): a URL that reads one blob for a while without the
 * registry, signed with the account key (HMAC, locally: no request). Only a shared key can sign
 * one here: with a SAS URL (AZURE_BLOB_ENDPOINT with sig=) or an identity (which would need a user
 * delegation key) the backend has no signedUrl and downloads are served by the registry.
 *
 * The SAS covers the blob's path, not the host, so a URL for clients that reach the service under
 * another name (AZURE_BLOB_PUBLIC_ENDPOINT, e.g. Azurite or a private endpoint behind a proxy)
 * is the same query on that endpoint. Cache-Control, Content-Disposition and Content-Type of the
 * answer are signed into the SAS (rscc, rscd, rsct).
 */
import {
  BlobSASPermissions,
  type ContainerClient,
  generateBlobSASQueryParameters,
  type StorageSharedKeyCredential,
} from '@azure/storage-blob';
import type { SignedResponse } from '../types.js';

export type Signer = (key: string, ttlMs: number, response?: SignedResponse) => Promise<string>;

/**
 * A signer for the blobs of `container`, whose service URL is `endpoint` (no query); URLs name
 * `publicEndpoint` instead when it is given.
 */
export function createSigner(
  container: ContainerClient,
  credential: StorageSharedKeyCredential,
  endpoint: string,
  publicEndpoint: string | undefined,
): Signer {
  const base = publicEndpoint?.replace(/\/+$/, '');
  return async (key, ttlMs, response = {}) => {
    const sas = generateBlobSASQueryParameters(
      {
        containerName: container.containerName,
        blobName: key,
        permissions: BlobSASPermissions.parse('r'),
        expiresOn: new Date(Date.now() + ttlMs),
        cacheControl: response.cacheControl,
        contentDisposition: response.contentDisposition,
        contentType: response.contentType,
      },
      credential,
    ).toString();
    const url = container.getBlobClient(key).url;
    const at = base && url.startsWith(endpoint) ? base + url.slice(endpoint.length) : url;
    return `${at}${at.includes('?') ? '&' : '?'}${sas}`;
  };
}
