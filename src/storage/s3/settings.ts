/**
 * The aws backend's settings (AWS S3 and S3-compatible servers such as MinIO) and its driver.
 * Without keys or region the SDK's default chains apply (environment, profile, IAM role).
 */
import { z } from 'zod';
import { boolean, url } from '../../util/settings.js';
import { defineDriver } from '../driver.js';
import { bucketName } from '../shared/settings.js';

/** City and country names people write instead of AWS region codes. */
export const AWS_REGION_NAMES: Record<string, string> = {
  'n. virginia': 'us-east-1',
  'north virginia': 'us-east-1',
  virginia: 'us-east-1',
  ohio: 'us-east-2',
  'n. california': 'us-west-1',
  california: 'us-west-1',
  oregon: 'us-west-2',
  frankfurt: 'eu-central-1',
  ireland: 'eu-west-1',
  london: 'eu-west-2',
  paris: 'eu-west-3',
  stockholm: 'eu-north-1',
  milan: 'eu-south-1',
  spain: 'eu-south-2',
  zurich: 'eu-central-2',
  tokyo: 'ap-northeast-1',
  seoul: 'ap-northeast-2',
  osaka: 'ap-northeast-3',
  singapore: 'ap-southeast-1',
  sydney: 'ap-southeast-2',
  jakarta: 'ap-southeast-3',
  melbourne: 'ap-southeast-4',
  mumbai: 'ap-south-1',
  hyderabad: 'ap-south-2',
  'hong kong': 'ap-east-1',
  canada: 'ca-central-1',
  montreal: 'ca-central-1',
  calgary: 'ca-west-1',
  'sao paulo': 'sa-east-1',
  'são paulo': 'sa-east-1',
  bahrain: 'me-south-1',
  uae: 'me-central-1',
  'cape town': 'af-south-1',
  'tel aviv': 'il-central-1',
  beijing: 'cn-north-1',
  ningxia: 'cn-northwest-1',
};
const AWS_REGION_CODE = /^[a-z]{2}(-[a-z]+)+-\d{1,2}$/;

export const schema = z
  .object({
    REMOTE_STORAGE: z.literal('aws'),
    BUCKET_NAME: bucketName('s3'),
    AWS_DEFAULT_REGION: z.string().optional(),
    AWS_REGION: z.string().optional(),
    AWS_ENDPOINT_URL: url('http://127.0.0.1:9000').optional(),
    /** Redirect downloads: the endpoint clients reach the server at, when not AWS_ENDPOINT_URL. */
    AWS_PUBLIC_ENDPOINT_URL: url('https://minio.example.com').optional(),
    AWS_ACCESS_KEY_ID: z.string().optional(),
    AWS_SECRET_ACCESS_KEY: z.string().optional(),
    AWS_SESSION_TOKEN: z.string().optional(),
    AUTO_CREATE_BUCKET: boolean.default(true),
  })
  .superRefine((c, ctx) => {
    const region = c.AWS_DEFAULT_REGION ?? c.AWS_REGION;
    const variable = c.AWS_DEFAULT_REGION !== undefined ? 'AWS_DEFAULT_REGION' : 'AWS_REGION';
    // S3-compatible servers name regions as they like (MinIO us-east-1, R2 auto); AWS uses codes.
    if (region !== undefined && c.AWS_ENDPOINT_URL === undefined && !AWS_REGION_CODE.test(region)) {
      const code = AWS_REGION_NAMES[region.trim().toLowerCase()];
      ctx.addIssue({
        code: 'custom',
        path: [variable],
        message: code
          ? `is a region name, not a region code: use ${variable}=${code}`
          : "is not an AWS region code: use the code of the bucket's region, e.g. eu-central-1 or us-east-1",
      });
    }
    if ((c.AWS_ACCESS_KEY_ID === undefined) !== (c.AWS_SECRET_ACCESS_KEY === undefined)) {
      ctx.addIssue({
        code: 'custom',
        path: [c.AWS_ACCESS_KEY_ID === undefined ? 'AWS_ACCESS_KEY_ID' : 'AWS_SECRET_ACCESS_KEY'],
        message:
          'must be set together with its pair (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY), or leave both unset to use the default credential chain (IAM role, profile)',
      });
    }
  });

export type S3Settings = z.output<typeof schema>;

export const s3 = defineDriver({
  name: 'aws',
  aliases: ['s3', 'minio'],
  schema,
  secrets: ['AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN'],
  requiredHints: { BUCKET_NAME: 'set it to the bare name of the bucket, e.g. BUCKET_NAME=my-models' },
  lookAlikes: {
    prefixes: ['BUCKET_', 'AUTO_CREATE'],
    words: ['BUCKET'],
    sdkVariables: [
      'AWS_PROFILE',
      'AWS_CONFIG_FILE',
      'AWS_SHARED_CREDENTIALS_FILE',
      'AWS_ROLE_ARN',
      'AWS_ROLE_SESSION_NAME',
      'AWS_WEB_IDENTITY_TOKEN_FILE',
      'AWS_ENDPOINT_URL_S3',
      'AWS_MAX_ATTEMPTS',
      'AWS_RETRY_MODE',
      'AWS_CA_BUNDLE',
      'AWS_USE_FIPS_ENDPOINT',
      'AWS_USE_DUALSTACK_ENDPOINT',
      'AWS_STS_REGIONAL_ENDPOINTS',
      'AWS_EXECUTION_ENV',
      'AWS_ACCOUNT_ID',
      'AWS_REQUEST_CHECKSUM_CALCULATION',
      'AWS_RESPONSE_CHECKSUM_VALIDATION',
    ],
  },
  describe: (c) => ({
    label: `aws bucket ${c.BUCKET_NAME}`,
    identity: `aws ${c.AWS_ENDPOINT_URL ?? ''} ${c.BUCKET_NAME}`,
  }),
  open: async (c, logger) => (await import('./storage.js')).create(c, logger),
});
