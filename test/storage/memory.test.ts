/**
 * The toy in-memory backend of test/helpers/memory-backend/, registered through the driver table
 * the built-in backends use, runs the conformance suite unchanged: adding a backend is a folder
 * and one line.
 */
import { randomUUID } from 'node:crypto';
import { pino } from 'pino';
import t, { type Test } from 'tap';
import { loadConfig } from '../../src/config.js';
import { ConfigError } from '../../src/errors.js';
import { registerDriver } from '../../src/storage/drivers.js';
import { createStorage } from '../../src/storage/index.js';
import { memory } from '../helpers/memory-backend/settings.js';
import type { MemoryStorage } from '../helpers/memory-backend/storage.js';
import { conformance } from '../helpers/storage-conformance.js';

registerDriver(memory);
const logger = pino({ level: 'silent' });

const open = async (tt: Test) => {
  const storage = await createStorage(loadConfig({ REMOTE_STORAGE: 'memory', MEMORY_STORE: randomUUID() }), logger);
  tt.teardown(() => storage.close());
  return storage;
};

t.test('conformance', async (t) => conformance(t, open, { leftovers: async (s) => (s as MemoryStorage).staged.size }));

t.test('a registered backend is configured like a built-in one: its settings, aliases and messages', async (t) => {
  const config = loadConfig({ REMOTE_STORAGE: 'MEM' }) as unknown as Record<string, unknown>;
  t.same(
    [config.REMOTE_STORAGE, config.MEMORY_STORE],
    ['memory', 'default'],
    'an alias, any case; the default applies',
  );
  t.throws(() => loadConfig({ REMOTE_STORAGE: 'memory', MEMORY_STORE: 'a/b' }), {
    message: 'MEMORY_STORE="a/b" is not a store name: use letters, digits, _ and -.',
  });
  t.throws(() => loadConfig({ REMOTE_STORAGE: 'tape' }), ConfigError);
  t.throws(() => loadConfig({ REMOTE_STORAGE: 'tape' }), {
    message: 'REMOTE_STORAGE="tape" must be one of local, aws (or s3, minio), gcs, azure, mongodb, memory (or mem).',
  });
});
