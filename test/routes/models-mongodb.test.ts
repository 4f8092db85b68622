/** The HTTP suite on FerretDB (MongoDB GridFS). */
import t from 'tap';
import { ferretEnv } from '../helpers/cloud.js';
import { startFerretDb } from '../helpers/emulators.js';
import { httpSuite } from '../helpers/http-suite.js';

const emulator = await startFerretDb();
t.teardown(() => emulator.dispose());

httpSuite(t, { env: async () => ferretEnv(emulator) });
