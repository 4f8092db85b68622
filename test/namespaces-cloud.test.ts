/** The namespace routes (test/helpers/namespace-suite.ts) on fake-gcs-server, Azurite and FerretDB. */
import t from 'tap';
import { azuriteEnv, fakeGcsEnv, ferretEnv } from './helpers/cloud.js';
import { startAzurite, startFakeGcs, startFerretDb } from './helpers/emulators.js';
import { namespaceSuite } from './helpers/namespace-suite.js';

const [gcs, azurite, ferret] = await Promise.all([startFakeGcs(), startAzurite(), startFerretDb()]);
t.teardown(() => Promise.all([gcs.dispose(), azurite.dispose(), ferret.dispose()]));

namespaceSuite(t, 'gcs', () => fakeGcsEnv(gcs));
namespaceSuite(t, 'azure', () => azuriteEnv(azurite));
namespaceSuite(t, 'mongodb', () => ferretEnv(ferret));
