/**
 * The Azure container client: the service URL and credential from the settings (a connection
 * string, an account name and key, a SAS URL, or the default Azure credential chain), SDK
 * retries, and our own socket timeouts — the SDK's tryTimeoutInMs only sets the server-side
 * ?timeout=, so our agents give every socket a connect timeout and a STORAGE_TIMEOUT idle timeout.
 */
import http from 'node:http';
import https from 'node:https';
import { DefaultAzureCredential, type TokenCredential } from '@azure/identity';
import {
  BlobServiceClient,
  type ContainerClient,
  newPipeline,
  type RequestPolicyFactory,
  RestError,
  StorageSharedKeyCredential,
} from '@azure/storage-blob';
import { ConfigError } from '../../util/config-error.js';
import type { CommonSettings } from '../driver.js';
import { withSocketTimeouts } from '../shared/idle-timeout.js';
import type { AzureSettings } from './settings.js';

export /** Where the settings came from, to name the right variable in error lines. */
interface Source {
  endpoint: string; // without any SAS query
  endpointVar: string;
  credentialVar: string;
  sharedKey: boolean;
}

export interface Container {
  container: ContainerClient;
  source: Source;
  /** The agents every request goes through; close() destroys them. */
  agents: { http: http.Agent; https: https.Agent };
  /** The account key, when that is the credential (what signs SAS URLs). */
  sharedKey?: StorageSharedKeyCredential;
}

export function createContainer(config: AzureSettings & CommonSettings): Container {
  const idle = config.STORAGE_TIMEOUT;
  const agents = {
    http: withSocketTimeouts(new http.Agent({ keepAlive: true, timeout: idle }), 'connect'),
    https: withSocketTimeouts(new https.Agent({ keepAlive: true, timeout: idle }), 'secureConnect'),
  };
  const { url, credential, source } = resolveClient(config);
  // The SDK's own timeout is only server-side (?timeout=): sockets get ours, per attempt. This
  // policy runs once per call, outside the SDK's retries (core-rest-pipeline orders policies
  // without a phase before the Retry phase), so it also bounds the call's silence in all: after
  // STORAGE_TIMEOUT with no response and no upload progress it aborts, which the retry policy
  // does not retry (an AbortError), and turns that into an ETIMEDOUT (an outage, not a disconnect).
  const timeouts: RequestPolicyFactory = {
    create: (next) => ({
      sendRequest: async (request) => {
        request.agent = request.url.startsWith('https:') ? agents.https : agents.http;
        const own = request.abortSignal;
        const progress = request.onUploadProgress;
        const silent = new AbortController();
        let timer: NodeJS.Timeout | undefined;
        const arm = () => {
          clearTimeout(timer);
          timer = setTimeout(() => silent.abort(), idle);
        };
        arm();
        // (A caller's signal that is not a Node AbortSignal would be left without the deadline.)
        if (!own) request.abortSignal = silent.signal;
        else if (own instanceof AbortSignal) request.abortSignal = AbortSignal.any([own, silent.signal]);
        request.onUploadProgress = (p) => {
          arm();
          progress?.(p);
        };
        try {
          return await next.sendRequest(request);
        } catch (err) {
          if (!silent.signal.aborted || own?.aborted) throw err;
          throw new RestError(`no response within ${idle} ms`, { code: 'ETIMEDOUT' });
        } finally {
          clearTimeout(timer);
        }
      },
    }),
  };
  const pipe = newPipeline(credential, {
    retryOptions: { maxTries: 3, tryTimeoutInMs: idle, retryDelayInMs: 500, maxRetryDelayInMs: 2_000 },
    userAgentOptions: { userAgentPrefix: 'model-registry' },
  });
  pipe.factories.push(timeouts);
  const container = new BlobServiceClient(url, pipe).getContainerClient(config.AZURE_CONTAINER);
  const sharedKey = credential instanceof StorageSharedKeyCredential ? credential : undefined;
  return { container, source, agents, ...(sharedKey ? { sharedKey } : {}) };
}

/** Builds the service URL and credential from the settings; a setup that cannot work is a ConfigError. */
export function resolveClient(config: AzureSettings) {
  const { AZURE_STORAGE_CONNECTION_STRING: cs, AZURE_ACCOUNT_NAME: name, AZURE_ACCOUNT_KEY: key } = config;
  const endpoint = config.AZURE_BLOB_ENDPOINT;
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
    const endpointVar = endpoint ? 'AZURE_BLOB_ENDPOINT' : 'AZURE_ACCOUNT_NAME';
    const source = { endpoint: url, endpointVar, credentialVar: 'AZURE_ACCOUNT_KEY', sharedKey: true };
    return { url, credential: new StorageSharedKeyCredential(name, key), source };
  }
  if (key !== undefined) {
    throw new ConfigError(
      'AZURE_ACCOUNT_KEY is set without AZURE_ACCOUNT_NAME: set AZURE_ACCOUNT_NAME to the storage account the key belongs to.',
    );
  }
  if (endpoint !== undefined && /[?&]sig=/.test(endpoint)) {
    // A SAS URL carries its own authorisation.
    const source = {
      endpoint: withoutQuery(endpoint),
      endpointVar: 'AZURE_BLOB_ENDPOINT',
      credentialVar: 'AZURE_BLOB_ENDPOINT',
      sharedKey: false,
    };
    return { url: endpoint, credential: undefined, source };
  }
  // No key: the default Azure credential chain (environment, workload identity, managed
  // identity, Azure CLI). The identity needs Storage Blob Data Contributor on the container.
  const url = (endpoint ?? `https://${name}.blob.core.windows.net`).replace(/\/+$/, '');
  const endpointVar = endpoint ? 'AZURE_BLOB_ENDPOINT' : 'AZURE_ACCOUNT_NAME';
  const source = { endpoint: url, endpointVar, credentialVar: 'identity', sharedKey: false };
  return { url, credential: new DefaultAzureCredential() as TokenCredential, source };
}

function withoutQuery(url: string): string {
  return url.split('?')[0]!.replace(/\/+$/, '');
}

export function accountOf(endpoint: string): string {
  const u = new URL(endpoint);
  const pathAccount = u.pathname.split('/').filter(Boolean)[0];
  return /^[\d.]+$|^localhost$/.test(u.hostname) && pathAccount ? pathAccount : u.hostname.split('.')[0]!;
}
