/** Storage settings that point the app at the emulators, one fresh bucket / container per call. */
import { randomUUID } from 'node:crypto';
import { AZURITE_ACCOUNT, AZURITE_KEY, type Emulator, MINIO_PASSWORD, MINIO_USER } from './emulators.js';

const unique = (prefix: string) => `${prefix}-${randomUUID().slice(0, 12)}`;

export function minioEnv(minio: Emulator): Record<string, string> {
  return {
    REMOTE_STORAGE: 'minio',
    BUCKET_NAME: unique('models'),
    AWS_ENDPOINT_URL: minio.url,
    AWS_DEFAULT_REGION: 'us-east-1',
    AWS_ACCESS_KEY_ID: MINIO_USER,
    AWS_SECRET_ACCESS_KEY: MINIO_PASSWORD,
    STORAGE_TIMEOUT: '5s',
  };
}

export function azuriteEnv(azurite: Emulator): Record<string, string> {
  return {
    REMOTE_STORAGE: 'azure',
    AZURE_CONTAINER: unique('models'),
    AZURE_ACCOUNT_NAME: AZURITE_ACCOUNT,
    AZURE_ACCOUNT_KEY: AZURITE_KEY,
    AZURE_BLOB_ENDPOINT: azurite.url,
    STORAGE_TIMEOUT: '5s',
  };
}

export function fakeGcsEnv(gcs: Emulator): Record<string, string> {
  return {
    REMOTE_STORAGE: 'gcs',
    BUCKET_NAME: unique('models'),
    STORAGE_EMULATOR_HOST: gcs.url,
    GOOGLE_CLOUD_PROJECT: 'test-project',
    STORAGE_TIMEOUT: '5s',
  };
}

export function ferretEnv(ferret: Emulator): Record<string, string> {
  return {
    REMOTE_STORAGE: 'mongodb',
    MONGODB_URI: ferret.url,
    MONGODB_DATABASE: unique('models').replace(/-/g, '_'),
    STORAGE_TIMEOUT: '5s',
  };
}
