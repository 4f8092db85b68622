/**
 * Which errors keep their HTTP status on the way to the client: ours and Fastify's own client
 * errors; never an error a storage SDK raised with the storage's status on it.
 */
import t from 'tap';
import { CacheDiskError } from '../src/cache/index.js';
import { errors } from '../src/errors.js';
import { toHttpError } from '../src/http/errors.js';

t.test('errors that become responses', async (t) => {
  t.equal(toHttpError(errors.invalidName('x/y'))?.status, 400, 'ours');
  const fastify = Object.assign(new Error('Unsupported Media Type: text/x-nope'), {
    code: 'FST_ERR_CTP_INVALID_MEDIA_TYPE',
    statusCode: 415,
  });
  t.equal(toHttpError(fastify)?.status, 415, "Fastify's, reworded");
  const otherFastify = Object.assign(new Error('Request body is too large'), {
    code: 'FST_ERR_SOMETHING_NEW',
    statusCode: 413,
  });
  t.equal(toHttpError(otherFastify)?.status, 413, "Fastify's, even ones not listed");
  // What a storage SDK throws when the storage refuses its own credentials or a request.
  const storage401 = Object.assign(new Error('Server failed to authenticate the request.'), {
    code: 'AuthenticationFailed',
    statusCode: 401,
  });
  t.equal(toHttpError(storage401), undefined, 'a storage SDK 401 is not the client being unauthorized (→ 500)');
  const numericCode = Object.assign(new Error('Invalid argument.'), { code: 400, statusCode: 400 });
  t.equal(toHttpError(numericCode), undefined, 'nor a GCS-style numeric code');
  // The cache disk full or failing where nothing can be served without it (/files).
  const enospc = Object.assign(new Error('no space left on device'), { code: 'ENOSPC' });
  const disk = toHttpError(new CacheDiskError(enospc));
  t.match(disk, {
    status: 503,
    code: 'CACHE_UNAVAILABLE',
    headers: { 'retry-after': '30' },
    message: /free space in CACHE_DIR/,
  });
});
