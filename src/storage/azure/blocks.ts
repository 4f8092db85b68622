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
