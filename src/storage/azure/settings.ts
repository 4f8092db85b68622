/** The azure backend's settings (Azure Blob Storage, or Azurite) and its driver. */
import { z } from 'zod';
import { boolean, url } from '../../util/settings.js';
import { defineDriver } from '../driver.js';

export const schema = z
  .object({
    REMOTE_STORAGE: z.literal('azure'),
    AZURE_CONTAINER: z
      .string()
      .regex(
        /^(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$/,
        'is not a valid container name: use 3-63 lower-case letters, digits and single hyphens, e.g. models',
      ),
    AZURE_STORAGE_CONNECTION_STRING: z.string().optional(),
    AZURE_ACCOUNT_NAME: z
      .string()
      .regex(
        /^[a-z0-9]{3,24}$/,
        'is not a storage account name: use the 3-24 lower-case letters and digits of the account',
      )
      .optional(),
    AZURE_ACCOUNT_KEY: z
      .string()
      .refine(
        (k) => /^[A-Za-z0-9+/]+={0,2}$/.test(k) && k.length % 4 === 0 && Buffer.from(k, 'base64').length >= 32,
        "is not base64: copy key1 or key2 from the storage account's Access keys page unchanged",
      )
      .optional(),
    AZURE_BLOB_ENDPOINT: url('https://myaccount.blob.core.windows.net').optional(),
    /** Redirect downloads: the blob service URL clients reach, when not AZURE_BLOB_ENDPOINT's. */
    AZURE_BLOB_PUBLIC_ENDPOINT: url('https://blobs.example.com/myaccount').optional(),
    AUTO_CREATE_BUCKET: boolean.default(true),
  })
  .superRefine((c, ctx) => {
    if (
      c.AZURE_STORAGE_CONNECTION_STRING === undefined &&
      c.AZURE_ACCOUNT_NAME === undefined &&
      c.AZURE_BLOB_ENDPOINT === undefined
    ) {
      ctx.addIssue({
        code: 'custom',
        path: ['AZURE_ACCOUNT_NAME'],
        message:
          'is not set: set AZURE_ACCOUNT_NAME with AZURE_ACCOUNT_KEY, or AZURE_STORAGE_CONNECTION_STRING, or AZURE_BLOB_ENDPOINT with a SAS',
      });
    }
  });

export type AzureSettings = z.output<typeof schema>;

export const azure = defineDriver({
  name: 'azure',
  schema,
  secrets: ['AZURE_ACCOUNT_KEY', 'AZURE_STORAGE_CONNECTION_STRING'],
  requiredHints: { AZURE_CONTAINER: 'set it to the blob container to use, e.g. AZURE_CONTAINER=models' },
  lookAlikes: {
    prefixes: ['AUTO_CREATE'],
    sdkVariables: [
      'AZURE_CLIENT_ID',
      'AZURE_TENANT_ID',
      'AZURE_CLIENT_SECRET',
      'AZURE_CLIENT_CERTIFICATE_PATH',
      'AZURE_FEDERATED_TOKEN_FILE',
      'AZURE_AUTHORITY_HOST',
      'AZURE_USERNAME',
      'AZURE_PASSWORD',
    ],
  },
  describe: (c) => {
    const fromConnectionString = /AccountName=([^;]+)/i.exec(c.AZURE_STORAGE_CONNECTION_STRING ?? '')?.[1];
    const account = c.AZURE_BLOB_ENDPOINT ?? c.AZURE_ACCOUNT_NAME ?? fromConnectionString ?? '';
    return { label: `azure container ${c.AZURE_CONTAINER}`, identity: `azure ${account} ${c.AZURE_CONTAINER}` };
  },
  open: async (c, logger) => (await import('./storage.js')).create(c, logger),
});
