/** The HTTP suite on Azurite (Azure Blob Storage). */
import t from 'tap';
import { azuriteEnv } from '../helpers/cloud.js';
import { startAzurite } from '../helpers/emulators.js';
import { httpSuite } from '../helpers/http-suite.js';

const azurite = await startAzurite();
t.teardown(() => azurite.dispose());

httpSuite(t, { env: async () => azuriteEnv(azurite) });
