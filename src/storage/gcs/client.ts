/**
 * The Google Cloud Storage client: SDK retries bounded so that they end, request timeouts (the
 * resumable uploads' too), and the endpoint of an emulator (fake-gcs-server).
 */
import { Storage as GcsClient, RETRYABLE_ERR_FN_DEFAULT } from '@google-cloud/storage';
import { ConfigError } from '../../util/config-error.js';
import type { CommonSettings } from '../driver.js';
import { isTimeout } from '../shared/network.js';
import type { GcsSettings } from './settings.js';

type Interceptor = GcsClient['interceptors'][number];

export function createClient(config: GcsSettings & CommonSettings): GcsClient {
  const timeout = config.STORAGE_TIMEOUT;
  const maxRetries = 2;
  const maxRetryDelay = 2; // seconds
  const retryOptions = {
    autoRetry: true,
    // A timed-out attempt is not retried where the SDK asks (errors with a response, resumable
    // uploads): the storage stayed silent for STORAGE_TIMEOUT already. (retry-request retries
    // errors without a response on its own; src/storage/shared/outage.ts bounds the quick calls.)
    retryableErrorFn: (err: Parameters<typeof RETRYABLE_ERR_FN_DEFAULT>[0]) =>
      !isTimeout(err) && RETRYABLE_ERR_FN_DEFAULT(err),
    maxRetries,
    retryDelayMultiplier: 2,
    maxRetryDelay,
    // Longer than every attempt timing out in turn: retry-request, past this deadline, drops a
    // due retry without ever calling back (a request to a server that accepts connections and
    // then stays silent hung for good).
    totalTimeout: Math.ceil(((maxRetries + 1) * timeout) / 1000) + maxRetries * maxRetryDelay + 5, // seconds
  };
  let apiEndpoint: string | undefined;
  if (config.STORAGE_EMULATOR_HOST !== undefined) {
    apiEndpoint = emulatorEndpoint(config.STORAGE_EMULATOR_HOST);
  }
  const client = new GcsClient({
    apiEndpoint,
    projectId: config.GOOGLE_CLOUD_PROJECT ?? (apiEndpoint ? 'local-emulator' : undefined),
    keyFilename: config.GOOGLE_APPLICATION_CREDENTIALS,
    timeout,
    retryOptions,
  });
  if (apiEndpoint) {
    // With STORAGE_EMULATOR_HOST in the environment the SDK uses it verbatim as the JSON API
    // base (no /storage/v1), which fake-gcs-server and the other SDKs' convention do not match.
    client.baseUrl = `${apiEndpoint}/storage/v1`;
  }
  // Resumable uploads go through gaxios, which has no timeout unless asked for one.
  client.interceptors.push({ request: (reqOpts) => ({ ...reqOpts, timeout }) as ReturnType<Interceptor['request']> });
  return client;
}

export /** STORAGE_EMULATOR_HOST as host:port or URL, with or without /storage/v1, as an http(s) origin. */
function emulatorEndpoint(raw: string): string {
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(raw) ? raw : `http://${raw}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch (err) {
    throw new ConfigError(
      `STORAGE_EMULATOR_HOST=${raw} is not a host:port or URL: use e.g. STORAGE_EMULATOR_HOST=http://127.0.0.1:4443.`,
      { cause: err },
    );
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new ConfigError(
      `STORAGE_EMULATOR_HOST=${raw} must be an http(s) URL: use e.g. STORAGE_EMULATOR_HOST=http://127.0.0.1:4443.`,
    );
  }
  return `${url.origin}${url.pathname.replace(/\/+$/, '').replace(/\/storage\/v1$/, '')}`;
}
