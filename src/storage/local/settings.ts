/** The local backend's settings (a directory on this machine) and its driver. */
import { z } from 'zod';
import { defineDriver } from '../driver.js';

export const schema = z.object({
  REMOTE_STORAGE: z.literal('local'),
  LOCAL_STORAGE_DIR: z.string().min(1).default('./data/models'),
});

export type LocalSettings = z.output<typeof schema>;

export const local = defineDriver({
  name: 'local',
  schema,
  paths: ['LOCAL_STORAGE_DIR'],
  lookAlikes: { prefixes: ['LOCAL_STORAGE'] },
  describe: (c) => ({ label: `local ${c.LOCAL_STORAGE_DIR}`, identity: `local ${c.LOCAL_STORAGE_DIR}` }),
  open: async (c) => (await import('./storage.js')).create(c),
});
