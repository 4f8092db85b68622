/**
 * Redirect downloads on Azurite: SAS URLs signed with the account key (Azurite's well-known
 * development key), which Azurite checks; the public endpoint; no signer without a key.
 */
import t from 'tap';
import { model } from '../helpers/archives.js';
import { azuriteEnv } from '../helpers/cloud.js';
import { AZURITE_ACCOUNT, AZURITE_KEY, startAzurite } from '../helpers/emulators.js';
import { redirected, redirectSuite, startLogged } from '../helpers/redirect-suite.js';
import { bytes, put, start } from '../helpers/server.js';

const azurite = await startAzurite();
t.teardown(() => azurite.dispose());

redirectSuite(t, { env: async () => azuriteEnv(azurite), signs: { cacheControl: true, contentDisposition: true } });

t.test('the SAS is read-only, expires with DOWNLOAD_REDIRECT_TTL, and Azurite checks it', async (t) => {
  const r = await start(t, { ...azuriteEnv(azurite), DOWNLOAD_REDIRECT: 'true', DOWNLOAD_REDIRECT_TTL: '1s' });
  await put(`${r.url}/models/m`, model('sas'));
  const location = (await redirected(`${r.url}/models/m`)).headers.get('location')!;
  const q = new URL(location).searchParams;
  t.equal(q.get('sp'), 'r', 'read only');
  t.equal(q.get('sr'), 'b', 'this one blob');
  const forged = new URL(location);
  forged.searchParams.set('sig', Buffer.alloc(32).toString('base64'));
  t.equal((await fetch(forged)).status, 403, 'a wrong signature is refused');
  const write = await fetch(location, { method: 'PUT', body: 'x', headers: { 'x-ms-blob-type': 'BlockBlob' } });
  t.equal(write.status, 403, 'cannot write through it');
  await new Promise((resolve) => setTimeout(resolve, 2500));
  t.equal((await fetch(location)).status, 403, 'expired');
});

t.test('AZURE_BLOB_PUBLIC_ENDPOINT: the URL names the endpoint clients reach', async (t) => {
  const publicUrl = `http://localhost:${azurite.port}/${AZURITE_ACCOUNT}`;
  const r = await start(t, {
    ...azuriteEnv(azurite),
    DOWNLOAD_REDIRECT: 'true',
    AZURE_BLOB_PUBLIC_ENDPOINT: publicUrl,
  });
  const v1 = model('public');
  await put(`${r.url}/models/m`, v1);
  const location = (await redirected(`${r.url}/models/m`)).headers.get('location')!;
  t.ok(location.startsWith(`${publicUrl}/`), location);
  const target = await fetch(location);
  t.equal(target.status, 200);
  t.ok((await bytes(target)).equals(v1));
});

t.test('a SAS endpoint instead of a key cannot sign: ignored, said at start', async (t) => {
  const { AZURE_ACCOUNT_KEY: _key, AZURE_ACCOUNT_NAME: _name, ...env } = azuriteEnv(azurite);
  // An account SAS good for a day, made with the key this test does not give the registry.
  const {
    AccountSASPermissions,
    AccountSASResourceTypes,
    AccountSASServices,
    generateAccountSASQueryParameters,
    StorageSharedKeyCredential,
  } = await import('@azure/storage-blob');
  const sas = generateAccountSASQueryParameters(
    {
      expiresOn: new Date(Date.now() + 86_400_000),
      permissions: AccountSASPermissions.parse('rwdlac'),
      resourceTypes: AccountSASResourceTypes.parse('sco').toString(),
      services: AccountSASServices.parse('b').toString(),
    },
    new StorageSharedKeyCredential(AZURITE_ACCOUNT, AZURITE_KEY),
  ).toString();
  const r = await startLogged(t, { ...env, AZURE_BLOB_ENDPOINT: `${azurite.url}?${sas}`, DOWNLOAD_REDIRECT: 'true' });
  await put(`${r.url}/models/m`, model('sas endpoint'));
  t.equal((await redirected(`${r.url}/models/m`)).status, 200);
  t.match(
    r.log().find((l) => /DOWNLOAD_REDIRECT/.test(l.msg)),
    { level: 40, msg: /only an account key signs a SAS/ },
  );
});
