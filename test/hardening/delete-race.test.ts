/**
 * A DELETE racing a PUT, on every backend. People delete models for legal reasons, so a 204
 * must mean that every byte stored under that name is gone: when the race ends with the model
 * absent, no archive of it stays in storage (only the record holding its highest number, which
 * keeps numbers rising and holds no bytes or labels); when the PUT landed after the DELETE,
 * every archive in storage is a version the API lists. The API must never hide stored bytes.
 */

import { pino } from 'pino';
import type { Test } from 'tap';
import t from 'tap';
import { loadConfig } from '../../src/config.js';
import { createStorage, type Storage } from '../../src/storage/index.js';
import { model } from '../helpers/archives.js';
import { azuriteEnv, fakeGcsEnv, ferretEnv, minioEnv } from '../helpers/cloud.js';
import { type Emulator, startAzurite, startFakeGcs, startFerretDb, startMinio } from '../helpers/emulators.js';
import { put, start, tempDir } from '../helpers/server.js';

const ROUNDS = 20;
const emulators: Emulator[] = [];
t.teardown(() => Promise.all(emulators.map((e) => e.dispose())));
const started = async (launch: () => Promise<Emulator>) => {
  const e = await launch();
  emulators.push(e);
  return e;
};

const backends: Record<string, (t: Test) => Promise<Record<string, string>>> = {
  local: async (t) => ({ REMOTE_STORAGE: 'local', LOCAL_STORAGE_DIR: await tempDir(t) }),
  minio: async () => minioEnv(await started(startMinio)),
  gcs: async () => fakeGcsEnv(await started(startFakeGcs)),
  azure: async () => azuriteEnv(await started(startAzurite)),
  mongodb: async () => ferretEnv(await started(startFerretDb)),
};

async function keysOf(storage: Storage, name: string): Promise<string[]> {
  const found: string[] = [];
  for (const prefix of [`${name}.tar.gz`, `.history/${name}/`, `.aliases/${name}.json`]) {
    for await (const o of storage.list(prefix)) found.push(o.key);
  }
  return found.sort();
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

for (const [backend, envOf] of Object.entries(backends)) {
  t.test(`${backend}: DELETE racing PUT leaves no byte the API does not show`, async (t) => {
    const env = { ...(await envOf(t)), LOG_LEVEL: 'silent', MODEL_HISTORY: '5' };
    const config = loadConfig({ CACHE_DIR: await tempDir(t, 'mr-cache-'), PORT: '0', ...env });
    const storage = await createStorage(config, pino({ level: 'silent' }));
    t.teardown(() => storage.close());
    // In every other round the DELETE waits before it removes the current object, as a slow
    // storage call would: the PUT then publishes in between (after the DELETE looked at the
    // history, before the current object goes), the interleaving that used to leave bytes behind.
    const slowed = new Map<string, number>();
    const app = new Proxy(storage, {
      get(target, prop) {
        if (prop === 'delete') {
          return async (key: string) => {
            const wait = slowed.get(key);
            if (wait !== undefined) await sleep(wait);
            return target.delete(key);
          };
        }
        const value = Reflect.get(target, prop) as unknown;
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
    const { url } = await start(t, env, app);
    const outcomes = { gone: 0, recreated: 0 };
    const seen: Record<string, number> = {};
    for (let round = 0; round < ROUNDS; round++) {
      const name = `race-${round}`;
      const seeded = Date.now();
      t.equal((await put(`${url}/models/${name}`, model(`${name}-seed`, 20_000))).status, 201);
      // The DELETE starts at a point spread over the PUT's own duration (an upload takes a few ms
      // on local disk and tens on a cloud emulator), so that it lands in every step of a publish.
      const took = Date.now() - seeded;
      const jitter = (took * (round % 10)) / 8;
      if (round % 2 === 1) slowed.set(`${name}.tar.gz`, took * 3);
      const [putRes, deleteRes] = await Promise.all([
        put(`${url}/models/${name}?labels=stage%3Dracing`, model(`${name}-new`, 20_000)),
        sleep(jitter).then(() => fetch(`${url}/models/${name}`, { method: 'DELETE' })),
      ]);
      await putRes.arrayBuffer();
      await deleteRes.arrayBuffer();
      t.ok([200, 201, 409, 412].includes(putRes.status), `round ${round}: the PUT answered ${putRes.status}`);
      t.ok([204, 404].includes(deleteRes.status), `round ${round}: the DELETE answered ${deleteRes.status}`);
      const listed = await fetch(`${url}/models/${name}/versions`);
      const combo = `${putRes.status}/${deleteRes.status}/${listed.status}`;
      seen[combo] = (seen[combo] ?? 0) + 1;
      const stored = await keysOf(storage, name);
      const archives = stored.filter((k) => k.endsWith('.tar.gz'));
      if (listed.status === 404) {
        outcomes.gone++;
        t.same(archives, [], `round ${round}: the model is gone and so are its bytes`);
        const records = stored.filter((k) => k.endsWith('.json'));
        t.ok(
          records.length <= 1,
          `round ${round}: at most the record of the highest number stays (${records.join(', ')})`,
        );
        for (const key of records) {
          const { body } = await storage.get(key);
          const text = Buffer.concat(await body.toArray()).toString();
          t.notMatch(text, /racing|sha256/, `round ${round}: ${key} holds only a number`);
        }
      } else {
        outcomes.recreated++;
        const body = (await listed.json()) as { versions: { version: number }[] };
        const shown = new Set(body.versions.map((v) => `.history/${name}/v${v.version}.tar.gz`));
        for (const key of archives) {
          if (key === `${name}.tar.gz`) continue;
          t.ok(shown.has(key), `round ${round}: ${key} is a version the API lists`);
        }
      }
    }
    t.comment(JSON.stringify(seen));
    t.ok(outcomes.gone > 0, `some races ended with the model deleted (${outcomes.gone} of ${ROUNDS})`);
  });
}
