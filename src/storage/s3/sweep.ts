/**
 * What crashed S3 writers leave: staged objects under `.uploads/`, and multipart uploads (of a
 * stage, of an upload staged in place under `.history/` — stageInPlace — or of a commit that
 * crashed mid-copy). An upload to a key outside `.uploads/` names no writer, so it is judged by
 * age alone, unless this process is writing it (`active`). Other hosts' uploads are judged by age
 * from their start (S3 gives no later time: a multipart upload's Initiated, and the LastModified
 * of the object it completes to): a day, so that a 20 GiB upload over a slow link is not taken
 * for a leftover while it is still being written.
 */
import { ListMultipartUploadsCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { isAbandoned, UPLOAD_STARTED_MAX_AGE_MS, UPLOADS_PREFIX } from '../shared/staging.js';

type Call = <T>(fn: () => Promise<T>) => Promise<T>;

/** Deletes staged objects of dead writers; `active` are this process's. Returns how many. */
export async function sweepStaged(
  client: S3Client,
  bucket: string,
  active: ReadonlySet<string>,
  call: Call,
  remove: (key: string) => Promise<void>,
): Promise<number> {
  let removed = 0;
  let continuation: string | undefined;
  do {
    const page = await call(() =>
      client.send(
        new ListObjectsV2Command({ Bucket: bucket, Prefix: UPLOADS_PREFIX, ContinuationToken: continuation }),
      ),
    );
    for (const o of page.Contents ?? []) {
      if (!o.Key || !o.LastModified) continue;
      if (isAbandoned(o.Key.slice(UPLOADS_PREFIX.length), o.LastModified, active, UPLOAD_STARTED_MAX_AGE_MS)) {
        await remove(o.Key);
        removed++;
      }
    }
    continuation = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (continuation);
  return removed;
}

/** Aborts multipart uploads of dead writers; `active` are this process's (names and keys). Returns how many. */
export async function sweepMultipart(
  client: S3Client,
  bucket: string,
  active: ReadonlySet<string>,
  call: Call,
  abort: (key: string, uploadId: string) => Promise<void>,
): Promise<number> {
  let removed = 0;
  // No Prefix: MinIO lists multipart uploads only for an exact key, so filter here instead.
  let keyMarker: string | undefined;
  let uploadIdMarker: string | undefined;
  do {
    const page = await call(() =>
      client.send(
        new ListMultipartUploadsCommand({ Bucket: bucket, KeyMarker: keyMarker, UploadIdMarker: uploadIdMarker }),
      ),
    );
    for (const u of page.Uploads ?? []) {
      if (!u.Key || !u.UploadId || !u.Initiated) continue;
      const abandoned = u.Key.startsWith(UPLOADS_PREFIX)
        ? isAbandoned(u.Key.slice(UPLOADS_PREFIX.length), u.Initiated, active, UPLOAD_STARTED_MAX_AGE_MS)
        : // staged in place, or a commit that crashed mid-copy
          !active.has(u.Key) && Date.now() - u.Initiated.getTime() > UPLOAD_STARTED_MAX_AGE_MS;
      if (abandoned) {
        await abort(u.Key, u.UploadId);
        removed++;
      }
    }
    [keyMarker, uploadIdMarker] = page.IsTruncated
      ? [page.NextKeyMarker, page.NextUploadIdMarker]
      : [undefined, undefined];
  } while (keyMarker);
  return removed;
}
