/**
 * GCS errors as storage errors (the SDK error kept as `cause`), and the one line a user gets for
 * a setup that cannot work.
 */
import { readFile } from 'node:fs/promises';
import { ConfigError } from '../../util/config-error.js';
import { NotFoundError, PreconditionFailedError, StorageUnavailableError } from '../errors.js';
import { networkErrorCode } from '../shared/network.js';
import type { GcsSettings } from './settings.js';

/** The HTTP status of an SDK error (ApiError.code, GaxiosError.status), if any. */
export function statusOf(err: unknown): number | undefined {
  const e = err as { code?: unknown; status?: unknown; response?: { status?: unknown } } | undefined;
  for (const v of [e?.code, e?.status, e?.response?.status]) if (typeof v === 'number') return v;
  return undefined;
}

/** A network error code (shared/network.ts), or 'timeout' for the SDK's own timeouts; else undefined. */
function networkCode(err: unknown): string | undefined {
  const code = networkErrorCode(err);
  if (code) return code;
  type Chain = { type?: unknown; cause?: unknown } | undefined;
  for (let e = err as Chain, depth = 0; e && depth < 4; e = e.cause as Chain, depth++) {
    if (e.type === 'request-timeout' || (e as Error).name === 'TimeoutError') return 'timeout';
  }
  if (/network timeout|socket hang up|timeout of \d+ms exceeded/i.test((err as Error)?.message ?? '')) return 'timeout';
  return undefined;
}

/** Maps SDK errors to storage errors, keeping the original as cause. */
export function translate(err: unknown, key?: string, destination?: string): unknown {
  if (err instanceof NotFoundError || err instanceof PreconditionFailedError) return err;
  if (err instanceof StorageUnavailableError) return err;
  if ((err as Error)?.name === 'AbortError') return err; // the caller's own abort
  const status = statusOf(err);
  if (status === 404 && key !== undefined) return new NotFoundError(key, { cause: err });
  if (status === 412) return new PreconditionFailedError(destination ?? key ?? '', { cause: err });
  const failing = status === 404 || status === 408 || status === 429 || status === 401 || status === 403;
  if (networkCode(err) || failing || (status !== undefined && status >= 500)) {
    return new StorageUnavailableError('gcs', shortDetail(err), { cause: err });
  }
  return err;
}

export function shortDetail(err: unknown): string {
  const status = statusOf(err);
  const code = networkCode(err);
  return oneLine([status, code, code ? undefined : (err as Error)?.message].filter(Boolean).join(' ')).slice(0, 160);
}

function oneLine(text: string): string {
  return text.replace(/\s+/g, ' ').trim();
}

export async function checkKeyFile(keyFile: string | undefined): Promise<void> {
  if (keyFile === undefined) return;
  let text: string;
  try {
    text = await readFile(keyFile, 'utf8');
  } catch (err) {
    throw new ConfigError(
      `GOOGLE_APPLICATION_CREDENTIALS=${keyFile} cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}): point it at a service-account key file (JSON) readable by this user, or unset it to use the default credentials (workload identity, gcloud auth application-default login).`,
      { cause: err },
    );
  }
  let type: unknown;
  try {
    type = (JSON.parse(text) as { type?: unknown }).type;
  } catch (err) {
    throw new ConfigError(
      `GOOGLE_APPLICATION_CREDENTIALS=${keyFile} is not a JSON credentials file: download a key for the service account (gcloud iam service-accounts keys create) and point the variable at it.`,
      { cause: err },
    );
  }
  if (typeof type !== 'string') {
    throw new ConfigError(
      `GOOGLE_APPLICATION_CREDENTIALS=${keyFile} is JSON but not a Google credentials file (no "type" field): use a service-account key or an application-default credentials file.`,
    );
  }
}

/** One line for a setup problem found by init(). */
export function setupError(config: GcsSettings, err: unknown, action: 'read' | 'write' | 'create'): ConfigError {
  const bucket = `BUCKET_NAME=${config.BUCKET_NAME}`;
  const message = (err as Error)?.message ?? String(err);
  const code = networkCode(err);
  if (code) {
    return new ConfigError(
      config.STORAGE_EMULATOR_HOST !== undefined
        ? `STORAGE_EMULATOR_HOST=${config.STORAGE_EMULATOR_HOST} is unreachable (${code}): check the URL and that the server is running.`
        : `Google Cloud Storage (storage.googleapis.com, oauth2.googleapis.com) is unreachable (${code}): check this host's network, DNS and proxy settings (HTTPS_PROXY).`,
      { cause: err },
    );
  }
  if (/could not load the default credentials/i.test(message)) {
    return new ConfigError(
      'GOOGLE_APPLICATION_CREDENTIALS is not set and no default Google credentials were found: set it to a service-account key file, run with a service account (workload identity, GCE metadata server), or run gcloud auth application-default login.',
      { cause: err },
    );
  }
  if (
    config.GOOGLE_APPLICATION_CREDENTIALS &&
    /DECODER routines|PEM|private key|asn1|secretOrPrivateKey/i.test(message)
  ) {
    return new ConfigError(
      `GOOGLE_APPLICATION_CREDENTIALS=${config.GOOGLE_APPLICATION_CREDENTIALS} holds a private key that cannot be used (${oneLine(message)}): the file is damaged; download a new key for the service account.`,
      { cause: err },
    );
  }
  if (
    /invalid_grant|invalid_client|unauthorized_client|account not found|invalid jwt/i.test(message) ||
    statusOf(err) === 401
  ) {
    const setting = config.GOOGLE_APPLICATION_CREDENTIALS
      ? `GOOGLE_APPLICATION_CREDENTIALS=${config.GOOGLE_APPLICATION_CREDENTIALS}`
      : 'The default Google credentials';
    return new ConfigError(
      `${setting} were rejected by Google (${oneLine(message)}): the key may be deleted or revoked; create a new key for the service account or fix the default credentials.`,
      { cause: err },
    );
  }
  if (statusOf(err) === 403) {
    const grant =
      action === 'create'
        ? 'grant storage.buckets.create in the project, or create the bucket yourself'
        : 'grant roles/storage.objectAdmin on it to this service account, or use another bucket';
    return new ConfigError(
      `${bucket} cannot be ${action === 'create' ? 'created' : action === 'write' ? 'written' : 'read'} with these credentials (403 ${oneLine(message)}): ${grant}.`,
      { cause: err },
    );
  }
  return new ConfigError(`${bucket} cannot be used (${shortDetail(err)}): check the bucket and the GCS settings.`, {
    cause: err,
  });
}
