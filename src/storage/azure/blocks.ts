import type { BlockBlobClient } from '@azure/storage-blob';

/** How a body is cut into the blocks an Azure upload is staged in (Put Block, 8 MiB each). */
const BLOCK_SIZE = 8 * 1024 * 1024;

/** Cuts a stream into BLOCK_SIZE buffers (the last one shorter). Holds at most one block. */
export async function* blocksOf(source: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  let parts: Buffer[] = [];
  let length = 0;
  for await (const chunk of source) {
    let rest = chunk;
    while (length + rest.length >= BLOCK_SIZE) {
      const take = BLOCK_SIZE - length;
      parts.push(rest.subarray(0, take));
      yield Buffer.concat(parts);
      rest = rest.subarray(take);
      parts = [];
      length = 0;
    }
    if (rest.length > 0) {
      parts.push(rest);
      length += rest.length;
    }
  }
  if (length > 0) yield Buffer.concat(parts);
}

/** Blocks staged at once. */
export const CONCURRENCY = 4;

/**
 * Stages `parts` as blocks of `blob`, CONCURRENCY in flight, pushing each block's id (`idOf` its
 * index) to `blocks` in order; returns the bytes staged. On a failure it waits for every block in
 * flight (none may land after the caller's clean-up) and throws the first error.
 */
export async function putBlocks(
  blob: BlockBlobClient,
  parts: AsyncIterable<Buffer>,
  blocks: string[],
  idOf: (index: number) => string,
): Promise<number> {
  const stop = new AbortController();
  const inflight = new Set<Promise<unknown>>();
  let failure: unknown; // the first failed block: stops the loop
  let size = 0;
  try {
    for await (const part of parts) {
      const id = idOf(blocks.length);
      blocks.push(id);
      size += part.length;
      const put: Promise<unknown> = blob.stageBlock(id, part, part.length, { abortSignal: stop.signal }).then(
        () => inflight.delete(put),
        (err: unknown) => {
          failure ??= err;
          stop.abort();
        },
      );
      inflight.add(put);
      while (inflight.size >= CONCURRENCY && failure === undefined) await Promise.race(inflight);
      if (failure !== undefined) throw failure;
    }
    await Promise.all(inflight);
    if (failure !== undefined) throw failure;
    return size;
  } catch (err) {
    stop.abort();
    await Promise.allSettled(inflight);
    throw err;
  }
}
