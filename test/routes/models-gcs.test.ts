/** The HTTP suite on fake-gcs-server (Google Cloud Storage). */
import t from 'tap';
import { fakeGcsEnv } from '../helpers/cloud.js';
import { startFakeGcs } from '../helpers/emulators.js';
import { httpSuite } from '../helpers/http-suite.js';

const emulator = await startFakeGcs();
t.teardown(() => emulator.dispose());

httpSuite(t, { env: async () => fakeGcsEnv(emulator) });
