/** Setting parsers that more than one backend uses. */
import { z } from 'zod';

/** BUCKET_NAME: a bare bucket name (not a URL), valid for S3 or GCS. */
export const bucketName = (scheme: 's3' | 'gs') =>
  z.string().superRefine((text, ctx) => {
    const m = /^([a-z0-9]+):\/\/([^/]*)/i.exec(text);
    if (m) {
      ctx.addIssue({
        code: 'custom',
        message: `must be the bare bucket name without ${m[1]}://: use BUCKET_NAME=${m[2]}`,
      });
    } else if (!/^[a-z0-9][a-z0-9._-]{1,221}[a-z0-9]$/.test(text)) {
      ctx.addIssue({
        code: 'custom',
        message: `is not a valid ${scheme === 's3' ? 'S3' : 'GCS'} bucket name: use 3-63 lower-case letters, digits, dots and hyphens, e.g. my-models`,
      });
    }
  });
