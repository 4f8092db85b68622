/**
 * Markers of uploads staged in place (stageInPlace, storage.ts). Such an upload streams straight
 * to its final key — for a model version, `.history/{name}/v{N}.tar.gz` under a number reserved
 * first — so its multipart upload names no writer, and a sweep could only judge it by age (a day,
 * sweep.ts). Once a body outgrows one part (lib-storage then starts a multipart upload), the
 * writer first stores a marker: an empty object `.uploads/{pid}-{uuid}-{host}.part`, named like a
 * staged upload, with the key in its metadata. sweep() judges a marker like a staged object (pid
 * and host, or age) and, for a dead writer's, aborts the multipart uploads of its key before
 * deleting it. Nobody else writes that key: its number is the writer's. The marker goes when the
 * upload ends, whichever way.
 */
import { HeadObjectCommand, ListMultipartUploadsCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { NotFoundError } from '../errors.js';
import { newStagedName, UPLOADS_PREFIX } from '../shared/staging.js';

/** The marker's metadata key that names the upload's key. */
const MARKED_KEY = 'registry-in-place';

type Call = <T>(fn: () => Promise<T>) => Promise<T>;

/** Stores a marker for an upload in place to `key`; returns its staged name. */
export async function mark(client: S3Client, bucket: string, key: string, call: Call): Promise<string> {
  const name = newStagedName();
  await call(() =>
    client.send(
      new PutObjectCommand({ Bucket: bucket, Key: UPLOADS_PREFIX + name, Body: '', Metadata: { [MARKED_KEY]: key } }),
    ),
  );
  return name;
}

/**
 * For a dead writer's staged object `stagedKey` that is a marker: aborts the multipart uploads
 * of the key it names. Returns how many. Anything else (a staged body) is left to the caller.
 */
export async function abortMarked(
  client: S3Client,
  bucket: string,
  stagedKey: string,
  call: Call,
  abort: (key: string, uploadId: string) => Promise<void>,
): Promise<number> {
  const head = await call(() => client.send(new HeadObjectCommand({ Bucket: bucket, Key: stagedKey }))).catch(
    (err: unknown) => {
      if (err instanceof NotFoundError) return undefined; // removed meanwhile
      throw err;
    },
  );
  const key = head?.Metadata?.[MARKED_KEY];
  if (!key) return 0;
  // An exact key as the prefix: MinIO lists multipart uploads only for one.
  const page = await call(() => client.send(new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: key })));
  let aborted = 0;
  for (const u of page.Uploads ?? []) {
    if (u.Key !== key || !u.UploadId) continue;
    await abort(key, u.UploadId);
    aborted++;
  }
  return aborted;
}
