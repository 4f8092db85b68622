/**
 * A toy backend that keeps objects in this process's memory, written to show what adding a
 * backend takes: this folder, and one registerDriver() call (a built-in backend is a line in
 * src/storage/drivers.ts instead). Tests only: nothing survives the process.
 */
import { z } from 'zod';
import { defineDriver } from '../../../src/storage/driver.js';

export const schema = z.object({
  REMOTE_STORAGE: z.literal('memory'),
  /** Which store: backends opened with the same name share their objects, as replicas would. */
  MEMORY_STORE: z
    .string()
    .regex(/^[\w-]{1,64}$/, 'is not a store name: use letters, digits, _ and -')
    .default('default'),
});

export const memory = defineDriver({
  name: 'memory',
  aliases: ['mem'],
  schema,
  describe: (c) => ({ label: `memory store ${c.MEMORY_STORE}`, identity: `memory ${c.MEMORY_STORE}` }),
  open: async (c) => (await import('./storage.js')).create(c.MEMORY_STORE),
});
