/** Storage settings that point the app at the emulators, one fresh bucket / container per call. */
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Test } from 'tap';
import { AZURITE_ACCOUNT, AZURITE_KEY, type Emulator, MINIO_PASSWORD, MINIO_USER } from './emulators.js';
import { tempDir } from './server.js';

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

/** The client_email of serviceAccountKey()'s account. */
export const GCS_CLIENT_EMAIL = 'registry@test-project.iam.gserviceaccount.com';

/**
 * A service-account key file with a fresh RSA key (what V4 signed URLs are signed with; the
 * emulator checks no credentials), for GOOGLE_APPLICATION_CREDENTIALS. Returns its path and the
 * public key, to verify signatures with.
 */
export async function serviceAccountKey(t: Test) {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const file = path.join(await tempDir(t, 'mr-gcs-key-'), 'key.json');
  const key = {
    type: 'service_account',
    project_id: 'test-project',
    private_key_id: 'test-key',
    private_key: privateKey.export({ type: 'pkcs8', format: 'pem' }),
    client_email: GCS_CLIENT_EMAIL,
    client_id: '1',
    token_uri: 'https://oauth2.googleapis.com/token',
  };
  await writeFile(file, JSON.stringify(key));
  return { file, publicKey };
}
