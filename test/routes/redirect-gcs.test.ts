/**
 * Redirect downloads on fake-gcs-server: V4 signed URLs need a service account's private key,
 * so the test makes one (an RSA key in a service-account key file, GOOGLE_APPLICATION_CREDENTIALS)
 * and checks the signature itself (fake-gcs-server serves the signed path without checking it).
 */
import { createHash, createVerify } from 'node:crypto';
import t from 'tap';
import { model } from '../helpers/archives.js';
import { fakeGcsEnv, GCS_CLIENT_EMAIL, serviceAccountKey } from '../helpers/cloud.js';
import { startFakeGcs } from '../helpers/emulators.js';
import { redirected, redirectSuite, startLogged } from '../helpers/redirect-suite.js';
import { bytes, put, start } from '../helpers/server.js';

const emulator = await startFakeGcs();
t.teardown(() => emulator.dispose());

const { file: keyFile, publicKey } = await serviceAccountKey(t);
const env = async () => ({ ...fakeGcsEnv(emulator), GOOGLE_APPLICATION_CREDENTIALS: keyFile });

// fake-gcs-server answers with the object's own Content-Type and no Content-Disposition override.
// Its ETag is the MD5 in base64, where GCS's XML API (signed URLs) sends it in hex.
const md5Hex = (body: Buffer) => `"${createHash('md5').update(body).digest('hex')}"`;
redirectSuite(t, {
  env,
  signs: { cacheControl: false, contentDisposition: false },
  storeEtag: (_r, body) => md5Hex(body),
});

t.test('the URL is a V4 signature by the service account, with the download headers signed in', async (t) => {
  const r = await start(t, { ...(await env()), DOWNLOAD_REDIRECT: 'true', DOWNLOAD_REDIRECT_TTL: '10m' });
  await put(`${r.url}/models/m`, model('signed'));
  const url = new URL((await redirected(`${r.url}/models/m`)).headers.get('location')!);
  const q = url.searchParams;
  t.equal(q.get('X-Goog-Algorithm'), 'GOOG4-RSA-SHA256');
  t.match(q.get('X-Goog-Credential'), new RegExp(`^${GCS_CLIENT_EMAIL}/\\d{8}/auto/storage/goog4_request$`));
  t.equal(q.get('X-Goog-Expires'), '600', 'DOWNLOAD_REDIRECT_TTL');
  t.equal(q.get('response-content-disposition'), 'attachment; filename="m.tar.gz"');
  t.equal(q.get('response-content-type'), 'application/gzip');
  // Rebuild the string to sign (GCS V4: canonical request → hash → string) and verify it.
  const signature = q.get('X-Goog-Signature')!;
  const enc = (s: string) =>
    encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
  const query = [...q.entries()]
    .filter(([k]) => k !== 'X-Goog-Signature')
    .map(([k, v]) => `${enc(k)}=${enc(v)}`)
    .sort()
    .join('&');
  const canonical = ['GET', url.pathname, query, `host:${url.hostname}\n`, 'host', 'UNSIGNED-PAYLOAD'].join('\n');
  const scope = q.get('X-Goog-Credential')!.split('/').slice(1).join('/');
  const toSign = [
    'GOOG4-RSA-SHA256',
    q.get('X-Goog-Date'),
    scope,
    createHash('sha256').update(canonical).digest('hex'),
  ];
  const ok = createVerify('RSA-SHA256').update(toSign.join('\n')).verify(publicKey, Buffer.from(signature, 'hex'));
  t.ok(ok, 'signed with the service account key');
});

t.test('without a key to sign with: ignored, said at start; downloads are served directly', async (t) => {
  const r = await startLogged(t, { ...fakeGcsEnv(emulator), DOWNLOAD_REDIRECT: 'true' });
  const v1 = model('unsigned');
  await put(`${r.url}/models/m`, v1);
  const res = await redirected(`${r.url}/models/m`);
  t.equal(res.status, 200, 'no signer: the registry serves the bytes');
  t.ok((await bytes(res)).equals(v1));
  t.match(
    r.log().find((l) => /DOWNLOAD_REDIRECT/.test(l.msg)),
    {
      level: 40,
      msg: /DOWNLOAD_REDIRECT=true is ignored: the gcs storage cannot sign a URL with these credentials \(/,
    },
  );
});
