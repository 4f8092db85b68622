/**
 * The upload validator on its own: whatever sizes the body arrives in (socket-sized chunks that
 * are gathered into batches for gunzip, single large chunks, one byte at a time), it passes the
 * bytes through unchanged, and its verdict and digest depend only on the bytes.
 */
import { createHash, randomBytes } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import t from 'tap';
import { ArchiveValidator } from '../src/registry/archive.js';
import { tgz } from './helpers/archives.js';

const limits = { maxModelBytes: 1 << 30, maxExtractedBytes: 1 << 30, maxEntries: 1000 };
const MiB = 1024 * 1024;

/** Several MiB compressed (so many batches), with runs that inflate far beyond their input. */
const archive = tgz([
  { path: 'm/noise.bin', body: randomBytes(5 * MiB) },
  { path: 'm/zeros.bin', body: Buffer.alloc(24 * MiB) },
  { path: 'm/more-noise.bin', body: randomBytes(2 * MiB + 123) },
]);

function* slices(data: Buffer, sizes: () => number): Generator<Buffer> {
  for (let at = 0; at < data.length; ) {
    const n = Math.min(sizes(), data.length - at);
    // A copy, as a socket would hand over: the validator must not depend on buffers it was given.
    yield Buffer.from(data.subarray(at, at + n));
    at += n;
  }
}

async function validate(data: Buffer, sizes: () => number) {
  const validator = new ArchiveValidator('gzip', limits);
  const out: Buffer[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _e, cb) {
      out.push(chunk);
      cb();
    },
  });
  await pipeline(Readable.from(slices(data, sizes)), validator, sink);
  return { summary: validator.summary, passed: Buffer.concat(out) };
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
let seed = 7;
const random = (max: number) => () => {
  seed = (seed * 1103515245 + 12345) % 2 ** 31;
  return 1 + (seed % max);
};

for (const [name, sizes] of [
  ['socket-sized chunks (64 KiB)', () => 64 * 1024],
  ['random chunk sizes up to 200 KiB', random(200 * 1024)],
  ['chunks larger than a batch (3 MiB)', () => 3 * MiB],
  ['one chunk', () => archive.length],
] as const) {
  t.test(`${name}: passed through unchanged, valid, one digest`, async (t) => {
    const { summary, passed } = await validate(archive, sizes);
    t.ok(passed.equals(archive), 'bytes passed through unchanged');
    t.equal(summary.receivedSha256, sha256(archive));
    t.equal(summary.receivedBytes, archive.length);
    t.equal(summary.entries, 3);
    t.equal(summary.extractedBytes, 31 * MiB + 123);
  });
}

t.test('a byte flipped deep inside the compressed stream is caught, whatever the chunking', async (t) => {
  const corrupt = Buffer.from(archive);
  corrupt[Math.floor(corrupt.length * 0.7)]! ^= 0xff;
  for (const sizes of [() => 64 * 1024, random(200 * 1024)]) {
    await t.rejects(validate(corrupt, sizes), { code: 'INVALID_ARCHIVE', message: /incorrect data check/ });
  }
});

t.test(
  'a long UTF-8 name in a pax header is read right wherever the body is split (node-tar alone garbles a character split between chunks)',
  async (t) => {
    const { tar: rawTar } = await import('./helpers/archives.js');
    // Long (over 700 bytes), in names a file system holds (each under 255 bytes).
    const name = `модель/${Array.from({ length: 8 }, (_, i) => `${i}-${'весы-'.repeat(10)}`).join('/')}.bin`;
    const tarBytes = rawTar([{ path: name, body: 'weights', pax: true, ustarPath: 'placeholder' }]);
    const refused: number[] = [];
    for (let cut = 513; cut < 2048; cut += 7) {
      const validator = new ArchiveValidator('tar', limits);
      const sink = new Writable({
        write(_chunk, _e, cb) {
          cb();
        },
      });
      await pipeline(Readable.from([tarBytes.subarray(0, cut), tarBytes.subarray(cut)]), validator, sink).catch(() =>
        refused.push(cut),
      );
    }
    t.same(refused, [], 'accepted at every split');
  },
);

async function verdict(format: 'gzip' | 'tar', body: Buffer, custom = limits) {
  const validator = new ArchiveValidator(format, custom);
  const sink = new Writable({
    write(_c, _e, cb) {
      cb();
    },
  });
  return pipeline(Readable.from([body]), validator, sink).then(
    () => undefined,
    (err: Error & { code?: string }) => ({ code: err.code, message: err.message }),
  );
}

t.test('an empty tar is "the archive has no entries", however it was made', async (t) => {
  const { gzipSync } = await import('node:zlib');
  const empties: [string, Buffer][] = [
    ['tar -cf x.tar -T /dev/null (10 KiB of zeros)', Buffer.alloc(10240)],
    ['Python tarfile with nothing added (two zero blocks)', Buffer.alloc(1024)],
    ['one zero block', Buffer.alloc(512)],
    ['no tar data at all', Buffer.alloc(0)],
  ];
  for (const [name, tarData] of empties) {
    t.same(
      await verdict('gzip', gzipSync(tarData)),
      { code: 'INVALID_ARCHIVE', message: 'The upload is not a valid model archive: the archive has no entries.' },
      `${name}, gzipped`,
    );
    if (tarData.length > 0)
      t.same(
        await verdict('tar', tarData),
        { code: 'INVALID_ARCHIVE', message: 'The upload is not a valid model archive: the archive has no entries.' },
        `${name}, plain tar`,
      );
  }
  const junk = Buffer.alloc(1024);
  junk[700] = 1; // not an end marker: something that is no tar
  t.notMatch((await verdict('gzip', gzipSync(junk)))?.message, /no entries/, 'a non-zero byte is not an empty archive');
});

t.test('ARCHIVE_LIMIT_EXCEEDED names the setting that raises the limit', async (t) => {
  const many = tgz(Array.from({ length: 5 }, (_, i) => ({ path: `f${i}`, body: 'x' })));
  t.same(await verdict('gzip', many, { ...limits, maxEntries: 3 }), {
    code: 'ARCHIVE_LIMIT_EXCEEDED',
    message:
      'The archive exceeds a server limit: it has more than MAX_ARCHIVE_ENTRIES (3) entries. Make the model smaller, or have the operator raise MAX_ARCHIVE_ENTRIES on the server.',
  });
  const big = tgz([{ path: 'zeros', body: Buffer.alloc(MiB) }]);
  t.match(await verdict('gzip', big, { ...limits, maxExtractedBytes: 64 * 1024 }), {
    code: 'ARCHIVE_LIMIT_EXCEEDED',
    message:
      /^The archive exceeds a server limit: it expands to more than MAX_EXTRACTED_BYTES \(65536 bytes\)\. Make the model smaller, or have the operator raise MAX_EXTRACTED_BYTES on the server\.$/,
  });
});
