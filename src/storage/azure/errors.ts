/**
 * Azure errors as storage errors (the SDK error kept as `cause`), and the one line a user gets
 * for a setup that cannot work.
 */
import { AuthenticationError, CredentialUnavailableError } from '@azure/identity';
import { RestError } from '@azure/storage-blob';
import { ConfigError } from '../../util/config-error.js';
import { MetadataTooLargeError, NotFoundError, PreconditionFailedError, StorageUnavailableError } from '../errors.js';
import { accountOf, type Source } from './client.js';
import type { AzureSettings } from './settings.js';

/** Maps SDK errors to storage errors. `sourceKey` names the source of a copy.  */
export function translate(err: unknown, key?: string, sourceKey?: string): unknown {
  // No token for the default credential chain (an identity endpoint down, a federated token
  // expired): the storage cannot be reached, as with a refused connection.
  if (isIdentityError(err))
    return new StorageUnavailableError('azure', `no access token: ${(err as Error).name}`, { cause: err });
  if (!(err instanceof RestError)) return err; // AbortError, our own errors, bugs
  const status = err.statusCode;
  const code = errorCode(err);
  if (status === 404 && code !== 'ContainerNotFound' && (sourceKey ?? key) !== undefined) {
    return new NotFoundError((sourceKey ?? key)!, { cause: err });
  }
  if (status === 412 && key !== undefined) {
    return new PreconditionFailedError(code === 'SourceConditionNotMet' ? (sourceKey ?? key) : key, { cause: err });
  }
  if (status === 409 && code === 'BlobAlreadyExists' && key !== undefined) {
    return new PreconditionFailedError(key, { cause: err });
  }
  if (status === 400 && code === 'MetadataTooLarge') {
    const bound = "8 KB in all, of which the registry's own fields take about 250 bytes";
    return new MetadataTooLargeError('Azure', bound, undefined, { cause: err });
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
export function describe(err: unknown): string {
  if (!(err instanceof RestError)) return (err as Error)?.name ?? 'error';
  const code = errorCode(err);
  if (err.statusCode === undefined) return code ?? 'network error';
  return code ? `HTTP ${err.statusCode} ${code}` : `HTTP ${err.statusCode}`;
}

export function isIdentityError(err: unknown): boolean {
  return (
    err instanceof CredentialUnavailableError ||
    err instanceof AuthenticationError ||
    (err as Error)?.name === 'AggregateAuthenticationError'
  );
}

/** The one line a user gets for a setup that cannot work, naming the variables it came from. */
export function configError(config: AzureSettings, source: Source, err: unknown): ConfigError {
  const { endpoint, endpointVar, credentialVar, sharedKey } = source;
  const container = `AZURE_CONTAINER=${config.AZURE_CONTAINER}`;
  const account = accountOf(endpoint);
  const status = err instanceof RestError ? err.statusCode : undefined;
  const code = describe(err);
  let line: string;
  if (credentialVar === 'identity' && isIdentityError(err)) {
    line = `AZURE_ACCOUNT_NAME=${config.AZURE_ACCOUNT_NAME ?? account} has no AZURE_ACCOUNT_KEY, so an Azure identity was looked for and none could get a token (${(err as Error).name}): assign a managed or workload identity with the Storage Blob Data Contributor role on the container, or set AZURE_ACCOUNT_KEY or AZURE_STORAGE_CONNECTION_STRING.`;
  } else if (status === undefined) {
    line =
      endpointVar === 'AZURE_STORAGE_CONNECTION_STRING'
        ? `AZURE_STORAGE_CONNECTION_STRING points at ${endpoint}, which is unreachable (${code}): check BlobEndpoint (or AccountName and EndpointSuffix) in it and that the server is running.`
        : endpointVar === 'AZURE_ACCOUNT_NAME'
          ? `AZURE_ACCOUNT_NAME=${config.AZURE_ACCOUNT_NAME}: ${endpoint} is unreachable (${code}): check the storage account name, or set AZURE_BLOB_ENDPOINT for another cloud or an emulator.`
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
    line = `${container} does not exist in storage account ${account} and AUTO_CREATE_BUCKET=false: create it (az storage container create --account-name ${account} --name ${config.AZURE_CONTAINER}) or set AUTO_CREATE_BUCKET=true.`;
  } else if (code.endsWith('ContainerBeingDeleted')) {
    line = `${container} is being deleted (${code}): wait a minute and start again, or use another container name.`;
  } else if (/InvalidResourceName|OutOfRangeInput/.test(code)) {
    line = `${container} is refused by the service (${code}): use 3-63 lower-case letters, digits and single hyphens, e.g. models.`;
  } else {
    line = `${container} cannot be used at ${endpoint} (${code}): check the storage account and ${endpointVar}.`;
  }
  return new ConfigError(line, { cause: err });
}
