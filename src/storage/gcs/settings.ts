/** The gcs backend's settings (Google Cloud Storage, or fake-gcs-server) and its driver. */
import { z } from 'zod';
import { boolean } from '../../util/settings.js';
import { defineDriver } from '../driver.js';
import { bucketName } from '../shared/settings.js';

export const schema = z.object({
  REMOTE_STORAGE: z.literal('gcs'),
  BUCKET_NAME: bucketName('gs'),
  GOOGLE_CLOUD_PROJECT: z.string().optional(),
  GOOGLE_APPLICATION_CREDENTIALS: z.string().optional(),
  STORAGE_EMULATOR_HOST: z.string().optional(),
  AUTO_CREATE_BUCKET: boolean.default(true),
});

export type GcsSettings = z.output<typeof schema>;

export const gcs = defineDriver({
  name: 'gcs',
  schema,
  requiredHints: { BUCKET_NAME: 'set it to the bare name of the bucket, e.g. BUCKET_NAME=my-models' },
  paths: ['GOOGLE_APPLICATION_CREDENTIALS'],
  lookAlikes: {
    prefixes: ['BUCKET_', 'AUTO_CREATE'],
    words: ['BUCKET'],
    sdkVariables: ['GCLOUD_PROJECT', 'GOOGLE_CLOUD_QUOTA_PROJECT'],
  },
  describe: (c) => ({
    label: `gcs bucket ${c.BUCKET_NAME}`,
    identity: `gcs ${c.STORAGE_EMULATOR_HOST ?? ''} ${c.BUCKET_NAME}`,
  }),
  open: async (c, logger) => (await import('./storage.js')).create(c, logger),
});
