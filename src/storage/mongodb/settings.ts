/** The mongodb backend's settings (MongoDB, or a compatible server such as FerretDB) and its driver. */
import { z } from 'zod';
import { defineDriver } from '../driver.js';

export const schema = z.object({
  REMOTE_STORAGE: z.literal('mongodb'),
  MONGODB_URI: z
    .string()
    .regex(
      /^mongodb(\+srv)?:\/\//,
      'is not a MongoDB connection string: use mongodb://host:27017 or mongodb+srv://cluster.example.net',
    ),
  MONGODB_DATABASE: z
    .string()
    .regex(/^[^/\\. "$]{1,63}$/, 'is not a valid database name')
    .default('models'),
  MONGODB_COLLECTION: z
    .string()
    .regex(/^[A-Za-z0-9_-]{1,100}$/, 'is not a valid collection name: use letters, digits, _ and -')
    .default('models'),
});

export type MongoSettings = z.output<typeof schema>;

export const mongodb = defineDriver({
  name: 'mongodb',
  schema,
  secrets: ['MONGODB_URI'],
  requiredHints: { MONGODB_URI: 'set it to the connection string, e.g. MONGODB_URI=mongodb://127.0.0.1:27017' },
  lookAlikes: { prefixes: ['MONGODB_'], words: ['MONGODB'] },
  describe: (c) => ({
    label: `mongodb ${c.MONGODB_DATABASE}.${c.MONGODB_COLLECTION}`,
    identity: `mongodb ${c.MONGODB_URI} ${c.MONGODB_DATABASE} ${c.MONGODB_COLLECTION}`,
  }),
  open: async (c, logger) => (await import('./storage.js')).create(c, logger),
});
