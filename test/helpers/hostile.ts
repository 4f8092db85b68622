/**
 * Generators and probes for the hardening suite (test/hardening/): hostile archives built from
 * raw tar headers (every trick a malicious uploader has), gzip bombs streamed through zlib
 * without ever holding the expanded bytes, raw HTTP requests that fetch would normalise, a
 * throttling TCP proxy (to make a storage outage land mid-transfer), and a check that nothing
 * was written outside the storage and cache roots.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import fs from 'node:fs/promises';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createGzip, gzipSync } from 'node:zlib';
import { Header } from 'tar';
import { headerWithSize, paxBlock, type Entry as RawEntry, tar as rawTar, retouch } from './archives.js';

/** A file name no test writes on purpose: finding it anywhere means an entry escaped. */
export const MARKER = `pwned-${randomUUID().slice(0, 8)}`;

export const rawTgz = (entries: RawEntry[], options?: { endBlocks?: boolean }) => gzipSync(rawTar(entries, options));

export interface HostileCase {
  name: string;
  body: Buffer;
  /** Expected HTTP status and error code of an upload. */
  status: number;
  code: RegExp;
  contentType?: string;
  /** A known bug (reported with a fix): the case runs as a tap todo until the fix lands. */
  bug?: string;
}

const UNSAFE = /^UNSAFE_ARCHIVE$/;
const INVALID = /^INVALID_ARCHIVE$/;
const LIMIT = /^ARCHIVE_LIMIT_EXCEEDED$/;

/** Limits the hostile catalogue is built against (pass them to the server as env). */
export const HOSTILE_LIMITS = { MAX_ARCHIVE_ENTRIES: '1000', MAX_EXTRACTED_BYTES: '16MiB', MAX_MODEL_BYTES: '8MiB' };

/**
 * Every archive the service must refuse, with the status and code it must refuse it with.
 * Escaping entries are named after MARKER, so an escape is found by name afterwards.
 */
const longName = (name: string): RawEntry => ({
  path: '././@LongLink',
  type: 'NextFileHasLongPath',
  body: `${name}\0`,
});
const longLink = (target: string): RawEntry => ({
  path: '././@LongLink',
  type: 'NextFileHasLongLinkpath',
  body: `${target}\0`,
});

export function hostileCatalogue(): HostileCase[] {
  const m = MARKER;
  const ok = { path: 'model/weights.bin', body: 'w'.repeat(100) };
  const gz = (b: Buffer) => gzipSync(b);
  const good = rawTgz([ok]);
  const badCrc = Buffer.from(good);
  badCrc.writeUInt32LE((badCrc.readUInt32LE(badCrc.length - 8) ^ 0xffffffff) >>> 0, badCrc.length - 8);
  const badSize = Buffer.from(good);
  badSize.writeUInt32LE((badSize.readUInt32LE(badSize.length - 4) + 1) >>> 0, badSize.length - 4);
  const cases: HostileCase[] = [
    // traversal
    { name: 'traversal ../', body: rawTgz([ok, { path: `../${m}`, body: 'x' }]), status: 422, code: UNSAFE },
    {
      name: 'traversal ../../../ deep',
      body: rawTgz([{ path: `${'../'.repeat(12)}tmp/${m}`, body: 'x' }]),
      status: 422,
      code: UNSAFE,
    },
    { name: 'traversal ./../', body: rawTgz([{ path: `./../${m}`, body: 'x' }]), status: 422, code: UNSAFE },
    {
      name: 'traversal nested a/../../',
      body: rawTgz([ok, { path: `a/../../${m}`, body: 'x' }]),
      status: 422,
      code: UNSAFE,
    },
    {
      name: 'traversal nested a/b/../../../',
      body: rawTgz([{ path: `a/b/../../../${m}`, body: 'x' }]),
      status: 422,
      code: UNSAFE,
    },
    { name: 'traversal backslash ..\\', body: rawTgz([{ path: `..\\${m}`, body: 'x' }]), status: 422, code: UNSAFE },
    {
      name: 'traversal as a directory entry',
      body: rawTgz([{ path: `../${m}/`, type: 'Directory' }]),
      status: 422,
      code: UNSAFE,
    },
    {
      name: 'PAX long name with traversal',
      body: rawTgz([{ path: `${'deep/'.repeat(60)}${'../'.repeat(70)}${m}`, body: 'x', pax: true }]),
      status: 422,
      code: UNSAFE,
    },
    {
      name: 'PAX path overrides a harmless ustar name',
      body: rawTgz([{ path: `../../${m}`, ustarPath: 'harmless.txt', body: 'x', pax: true }]),
      status: 422,
      code: UNSAFE,
    },
    {
      name: 'GNU long name (L) with traversal',
      body: rawTgz([
        { path: '././@LongLink', type: 'NextFileHasLongPath', body: `${'x/'.repeat(60)}${'../'.repeat(70)}${m}\0` },
        { path: 'placeholder', body: 'x' },
      ]),
      status: 422,
      code: UNSAFE,
    },
    // absolute paths
    { name: 'absolute path', body: rawTgz([{ path: path.join(tmpdir(), m), body: 'x' }]), status: 422, code: UNSAFE },
    {
      name: 'absolute path via PAX',
      body: rawTgz([{ path: path.join(tmpdir(), m), ustarPath: 'fine', body: 'x', pax: true }]),
      status: 422,
      code: UNSAFE,
    },
    { name: 'windows drive path', body: rawTgz([{ path: `C:\\${m}`, body: 'x' }]), status: 422, code: UNSAFE },
    { name: 'UNC path', body: rawTgz([{ path: `\\\\server\\share\\${m}`, body: 'x' }]), status: 422, code: UNSAFE },
    // links
    {
      name: 'symlink escaping with ..',
      body: rawTgz([ok, { path: 'link', type: 'SymbolicLink', linkpath: `../../${m}` }]),
      status: 422,
      code: UNSAFE,
    },
    {
      name: 'symlink escaping from a subdirectory',
      body: rawTgz([{ path: 'a/b/link', type: 'SymbolicLink', linkpath: `../../../${m}` }]),
      status: 422,
      code: UNSAFE,
    },
    {
      name: 'absolute symlink',
      body: rawTgz([{ path: 'passwd', type: 'SymbolicLink', linkpath: '/etc/passwd' }]),
      status: 422,
      code: UNSAFE,
    },
    {
      name: 'symlink via PAX linkpath',
      body: rawTgz([
        {
          path: 'l',
          type: 'SymbolicLink',
          linkpath: `${'x/'.repeat(70)}${'../'.repeat(80)}${m}`,
          pax: true,
          ustarPath: 'l',
        },
      ]),
      status: 422,
      code: /^(UNSAFE|INVALID)_ARCHIVE$/,
    },
    {
      name: 'empty symlink target',
      body: rawTgz([{ path: 'l', type: 'SymbolicLink', linkpath: '' }]),
      status: 422,
      code: /^(UNSAFE|INVALID)_ARCHIVE$/,
    },
    {
      name: 'symlink chain escaping (d/up -> .., d/out -> up/../x)',
      body: rawTgz([
        { path: 'd/', type: 'Directory' },
        { path: 'd/up', type: 'SymbolicLink', linkpath: '..' },
        { path: 'd/out', type: 'SymbolicLink', linkpath: `up/../${m}` },
      ]),
      status: 422,
      code: UNSAFE,
    },
    {
      name: 'symlink chain escaping, link defined after its user',
      body: rawTgz([
        { path: 'd/', type: 'Directory' },
        { path: 'd/out', type: 'SymbolicLink', linkpath: `up/../${m}` },
        { path: 'd/up', type: 'SymbolicLink', linkpath: '..' },
      ]),
      status: 422,
      code: UNSAFE,
    },
    {
      name: 'file written through a symlink to a directory',
      body: rawTgz([
        { path: 'sub/', type: 'Directory' },
        { path: 'dir', type: 'SymbolicLink', linkpath: 'sub' },
        { path: `dir/${m}`, body: 'x' },
      ]),
      status: 422,
      code: UNSAFE,
    },
    {
      name: 'file written through an escaping symlink',
      body: rawTgz([
        { path: 'dir', type: 'SymbolicLink', linkpath: '../..' },
        { path: `dir/${m}`, body: 'x' },
      ]),
      status: 422,
      code: UNSAFE,
    },
    {
      name: 'file written through a symlink, spelled ./dir//x',
      body: rawTgz([
        { path: 'dir', type: 'SymbolicLink', linkpath: '.' },
        { path: `./dir//${m}`, body: 'x' },
      ]),
      status: 422,
      code: UNSAFE,
    },
    ...linkAndRootCases(m, ok),
    // read one way by node-tar, another by GNU tar / Python's tarfile (which would extract outside)
    {
      name: 'pax GNU.sparse.name with traversal',
      body: gz(
        Buffer.concat([paxBlock([['GNU.sparse.name', `../${m}`]]), rawTar([{ path: 'harmless.txt', body: 'x' }])]),
      ),
      status: 422,
      code: UNSAFE,
    },
    {
      name: 'pax path holding a newline (node-tar drops the record)',
      body: gz(Buffer.concat([paxBlock([['path', `../${m}\n`]]), rawTar([{ path: 'safe', body: 'x' }])])),
      status: 422,
      code: UNSAFE,
    },
    {
      name: 'global pax header setting path',
      body: gz(Buffer.concat([paxBlock([['path', `../${m}`]], true), rawTar([{ path: 'safe', body: 'x' }])])),
      status: 422,
      code: UNSAFE,
    },
    {
      name: 'malformed pax record length',
      body: gz(
        Buffer.concat([paxBlock([['comment', 'x']]).fill(0x39, 512, 513), rawTar([{ path: 'safe', body: 'x' }])]),
      ),
      status: 422,
      code: /^(UNSAFE|INVALID)_ARCHIVE$/,
    },
    {
      name: 'symlink carrying data that hides an entry',
      body: gz(
        Buffer.concat([
          headerWithSize({ path: 'l', type: 'SymbolicLink', linkpath: 'safe' }, 1024),
          rawTar([{ path: `../${m}`, body: 'x' }], { endBlocks: false }),
          rawTar([{ path: 'safe', body: 'x' }]),
        ]),
      ),
      status: 422,
      code: UNSAFE,
    },
    {
      name: 'directory carrying data',
      body: gz(
        Buffer.concat([
          headerWithSize({ path: 'd/', type: 'Directory' }, 512),
          Buffer.alloc(512, 0x41),
          rawTar([{ path: 'safe', body: 'x' }]),
        ]),
      ),
      status: 422,
      code: /^(UNSAFE|INVALID)_ARCHIVE$/,
    },
    {
      name: 'an entry after the end-of-archive block',
      body: gz(
        Buffer.concat([
          rawTar([ok], { endBlocks: false }),
          Buffer.alloc(512),
          rawTar([{ path: `../${m}`, body: 'x' }]),
        ]),
      ),
      status: 422,
      code: /^(UNSAFE|INVALID)_ARCHIVE$/,
    },
    {
      name: 'data after the end of the archive',
      body: gz(Buffer.concat([rawTar([ok]), Buffer.from('appended')])),
      status: 422,
      code: INVALID,
    },
    // readers that let the first of two headers win, or pax over GNU long names, whatever the order
    {
      name: 'pax linkpath then GNU long link for one symlink',
      body: gz(
        Buffer.concat([
          paxBlock([['linkpath', `/tmp/${m}`]]),
          rawTar([longLink('ok'), { path: 's', type: 'SymbolicLink', linkpath: 'ok' }]),
        ]),
      ),
      status: 422,
      code: UNSAFE,
    },
    {
      name: 'two GNU long links for one symlink',
      body: gz(rawTar([longLink(`/tmp/${m}`), longLink('ok'), { path: 's', type: 'SymbolicLink', linkpath: 'ok' }])),
      status: 422,
      code: UNSAFE,
    },
    {
      name: 'two pax headers setting path',
      body: gz(
        Buffer.concat([
          paxBlock([['path', `../../${m}`]]),
          paxBlock([['path', 'ok3']]),
          rawTar([{ path: 'ok3', body: 'x' }]),
        ]),
      ),
      status: 422,
      code: UNSAFE,
    },
    {
      name: 'two GNU long names',
      body: gz(rawTar([longName(`../../${m}`), longName('ok4'), { path: 'ok4', body: 'x' }])),
      status: 422,
      code: UNSAFE,
    },
    {
      name: 'GNU long name and pax path for one entry',
      body: gz(
        Buffer.concat([paxBlock([['path', `../../${m}`]]), rawTar([longName('ok5'), { path: 'ok5', body: 'x' }])]),
      ),
      status: 422,
      code: UNSAFE,
    },
    {
      name: 'prefix field in a GNU-format header (tarfile joins it)',
      body: gz(
        Buffer.concat([
          retouch(rawTar([{ path: 'f5', body: 'x' }], { endBlocks: false }).subarray(0, 512), {
            257: 'ustar  \0',
            345: `../../${m}`,
          }),
          Buffer.alloc(512, 0x78),
          Buffer.alloc(1024),
        ]),
      ),
      status: 422,
      code: UNSAFE,
    },
    {
      name: 'old GNU long name type N (a file to other readers)',
      body: gz(
        Buffer.concat([
          headerWithSize({ path: `../../${m}`, type: 'OldGnuLongPath' }, 4),
          Buffer.from('ok6\0'.padEnd(512, '\0')),
          rawTar([{ path: 'ok6', body: 'x' }]),
        ]),
      ),
      status: 422,
      code: UNSAFE,
    },
    {
      name: 'a newline in a pax value smuggles a size record only node-tar reads',
      body: gz(
        Buffer.concat([paxBlock([['comment', 'z\n9 size=0']]), rawTar([{ path: 'f7', body: 'x'.repeat(600) }])]),
      ),
      status: 422,
      code: UNSAFE,
    },
    {
      name: 'pax size on a volume header',
      body: gz(
        Buffer.concat([
          paxBlock([['size', '0']]),
          headerWithSize({ path: 'evil', type: 'TapeVolumeHeader' }, 512),
          Buffer.alloc(512, 0x41),
          rawTar([ok]),
        ]),
      ),
      status: 422,
      code: UNSAFE,
    },
    // special files
    {
      name: 'character device',
      body: rawTgz([ok, { path: 'dev/null', type: 'CharacterDevice' }]),
      status: 422,
      code: UNSAFE,
    },
    { name: 'block device', body: rawTgz([{ path: 'sda', type: 'BlockDevice' }]), status: 422, code: UNSAFE },
    { name: 'FIFO', body: rawTgz([{ path: 'fifo', type: 'FIFO' }]), status: 422, code: UNSAFE },
    {
      name: 'GNU sparse file',
      body: rawTgz([{ path: 'sparse', type: 'SparseFile', body: 'x' }]),
      status: 422,
      code: /^(UNSAFE|INVALID)_ARCHIVE$/,
    },
    // bombs and floods
    {
      name: 'entry flood (20 000 empty files)',
      body: rawTgz(Array.from({ length: 20_000 }, (_, i) => ({ path: `f/${i}` }))),
      status: 422,
      code: LIMIT,
    },
    {
      name: 'directory flood (5 000 nested directories)',
      body: rawTgz(
        Array.from({ length: 5_000 }, (_, i) => ({ path: `${'d/'.repeat(Math.min(i, 40))}${i}/`, type: 'Directory' })),
      ),
      status: 422,
      code: LIMIT,
    },
    {
      name: 'claim bomb: 1 KiB compressed, header claims 1 GiB',
      body: rawTgz([{ path: 'huge', size: 2 ** 30, body: 'x' }], { endBlocks: false }),
      status: 422,
      code: LIMIT,
    },
    {
      name: 'gzip bomb: 64 MiB of zeros in one entry',
      body: gz(rawTar([{ path: 'zeros', body: Buffer.alloc(64 * 2 ** 20) }])),
      status: 422,
      code: LIMIT,
    },
    // broken containers
    { name: 'truncated gzip (header only)', body: good.subarray(0, 10), status: 422, code: INVALID },
    { name: 'truncated gzip (half)', body: good.subarray(0, Math.floor(good.length / 2)), status: 422, code: INVALID },
    { name: 'truncated gzip (trailer cut)', body: good.subarray(0, good.length - 3), status: 422, code: INVALID },
    { name: 'gzip with a wrong CRC', body: badCrc, status: 422, code: INVALID },
    { name: 'gzip with a wrong length trailer', body: badSize, status: 422, code: INVALID },
    {
      name: 'corrupt deflate data',
      body: Buffer.concat([good.subarray(0, 10), randomBytes(400)]),
      status: 422,
      code: INVALID,
    },
    {
      name: 'trailing garbage after the gzip stream',
      body: Buffer.concat([good, Buffer.from('garbage after the end of the archive')]),
      status: 422,
      code: INVALID,
    },
    { name: 'gzip of random non-tar data', body: gz(randomBytes(4096)), status: 422, code: INVALID },
    {
      name: 'gzip of text',
      body: gz(Buffer.from('this is not a tar archive\n'.repeat(100))),
      status: 422,
      code: INVALID,
    },
    {
      name: 'tar header with a bad checksum',
      body: rawTgz([{ ...ok, badChecksum: true }]),
      status: 422,
      code: INVALID,
    },
    {
      name: 'tar cut inside an entry',
      body: gz(rawTar([{ path: 'a', body: 'x'.repeat(5000) }]).subarray(0, 1536)),
      status: 422,
      code: INVALID,
    },
    { name: 'zip instead of gzip', body: zipFile('weights.bin', 'hello'), status: 422, code: INVALID },
    {
      name: 'bzip2 instead of gzip',
      body: Buffer.concat([Buffer.from('BZh91AY&SY'), randomBytes(100)]),
      status: 422,
      code: INVALID,
    },
    { name: 'a single byte', body: Buffer.from([0x1f]), status: 422, code: INVALID },
    { name: 'empty body', body: Buffer.alloc(0), status: 422, code: INVALID },
    { name: 'empty gzip (no tar at all)', body: gz(Buffer.alloc(0)), status: 422, code: INVALID },
    { name: 'empty archive (end blocks only)', body: gz(Buffer.alloc(1024)), status: 422, code: INVALID },
    { name: 'double gzip', body: gz(good), status: 422, code: INVALID },
    // zstd's magic where the tar should start (node-tar would switch to zstd, absent in Node 20)
    {
      name: 'gzip of zstd magic',
      body: gz(Buffer.concat([Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), Buffer.alloc(2000, 1)])),
      status: 422,
      code: INVALID,
    },
    {
      name: 'zstd magic sent as x-tar',
      body: Buffer.concat([Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), Buffer.alloc(2000, 1)]),
      status: 422,
      code: INVALID,
      contentType: 'application/x-tar',
    },
    {
      name: 'plain tar sent as x-tar with a traversal',
      body: rawTar([{ path: `../${m}`, body: 'x' }]),
      status: 422,
      code: UNSAFE,
      contentType: 'application/x-tar',
    },
    {
      name: 'plain tar sent as x-tar, empty',
      body: Buffer.alloc(1024),
      status: 422,
      code: INVALID,
      contentType: 'application/x-tar',
    },
    {
      name: 'too large compressed (413)',
      body: Buffer.concat([good.subarray(0, 10), randomBytes(9 * 2 ** 20)]),
      status: 413,
      code: /^MODEL_TOO_LARGE$/,
    },
  ];
  return cases;
}

/**
 * Hard links and root entries that must stay refused. A hard link to an earlier regular file is a
 * legitimate second name, and `/`, `./`, `.` or an empty name a legitimate root directory
 * (test/archives/real-producers.test.ts); anything else links whatever the disk holds there, or a
 * symlink resolved from elsewhere, or is an absolute path.
 */
function linkAndRootCases(m: string, ok: RawEntry): HostileCase[] {
  const link = (name: string, linkpath: string, extra: Partial<RawEntry> = {}): RawEntry => ({
    path: name,
    type: 'Link',
    linkpath,
    ...extra,
  });
  const symlink = (name: string, linkpath: string): RawEntry => ({ path: name, type: 'SymbolicLink', linkpath });
  const refused = (name: string, body: Buffer, code = UNSAFE): HostileCase => ({ name, body, status: 422, code });
  const EITHER = /^(UNSAFE|INVALID)_ARCHIVE$/;
  // Real writers put the link target cut short in the plain header (node-tar refuses an empty one).
  const viaPax: Partial<RawEntry> = { pax: true, ustarPath: m, ustarLinkpath: 'x' };
  const dir = (name: string): RawEntry => ({ path: name, type: 'Directory' });
  return [
    refused('hard link escaping', rawTgz([link('shadow', '/etc/shadow')])),
    refused('hard link to an absolute path in the temp directory', rawTgz([ok, link(m, path.join(tmpdir(), m))])),
    refused('hard link with ..', rawTgz([ok, link(m, `model/../../${m}`)])),
    refused('hard link with a backslash ..', rawTgz([ok, link(m, `..\\${m}`)])),
    refused('hard link to a later entry', rawTgz([link(m, String(ok.path)), ok])),
    refused('hard link to a missing entry', rawTgz([ok, link(m, 'model/absent.bin')])),
    refused('hard link to itself', rawTgz([ok, { path: m, body: 'x' }, link(`./${m}`, m)])),
    refused('hard link to a directory', rawTgz([dir('model/'), ok, link(m, 'model')])),
    refused('hard link to the archive root', rawTgz([dir('./'), ok, link(m, '.')])),
    refused('hard link to a symlink', rawTgz([ok, symlink('model/l', 'weights.bin'), link(m, 'model/l')])),
    // Extracted, a/M would be a copy of the symlink: ../M, now resolved from a/ (outside).
    refused(
      'hard link to a file since replaced by a symlink',
      rawTgz([{ path: 'a/b/f', body: 'x' }, symlink('a/b/f', `../${m}`), link(`a/${m}`, 'a/b/f')]),
    ),
    refused(
      'hard link through a symlink to a directory',
      rawTgz([dir('sub/'), { path: 'sub/f', body: 'x' }, symlink('dir', 'sub'), link(m, 'dir/f')]),
    ),
    refused(
      'hard link to a file since replaced by a directory',
      rawTgz([{ path: 'd', body: 'x' }, dir('d/'), link(m, 'd')]),
    ),
    refused(
      'hard link to a link to a later entry',
      rawTgz([ok, link('a', 'b'), link(m, 'a'), { path: 'b', body: 'x' }]),
    ),
    refused(
      'hard link via GNU long link to a missing entry',
      rawTgz([ok, longLink(`${'d/'.repeat(60)}${m}`), link(m, 'placeholder')]),
    ),
    refused(
      'hard link via PAX linkpath escaping',
      rawTgz([ok, link(m, `${'x/'.repeat(70)}${'../'.repeat(80)}${m}`, viaPax)]),
    ),
    refused('hard link with an empty target', rawTgz([ok, link(m, '')]), EITHER),
    // only the root's exact names, and only as a directory
    refused('absolute path just under the root (/x)', rawTgz([dir('/'), { path: `/${m}`, body: 'x' }])),
    refused('absolute path //x', rawTgz([{ path: `//${m}`, body: 'x' }])),
    refused('absolute /etc/passwd after a root entry /', rawTgz([dir('/'), { path: '/etc/passwd', body: 'x' }])),
    refused('root entry . as a file', rawTgz([ok, { path: '.', body: 'x' }])),
    refused('root entry / as a symlink', rawTgz([ok, symlink('/', 'model')])),
    refused('root entry ./ as a hard link', rawTgz([ok, link('./', String(ok.path))]), EITHER),
    refused('an empty name as a file', rawTgz([ok, { path: '', body: 'x' }])),
    // node-tar skips a header with an empty name but keeps the pax size for the next entry (which
    // would then hide M in its data from node-tar): the readers disagree.
    refused(
      'pax size before an entry with an empty name',
      gzipSync(Buffer.concat([paxBlock([['size', '0']]), rawTar([dir(''), { path: 'f', body: 'x'.repeat(600) }])])),
    ),
  ];
}

/** A real (stored, uncompressed) one-file zip. */
export function zipFile(name: string, content: string): Buffer {
  const data = Buffer.from(content);
  const fname = Buffer.from(name);
  const local = Buffer.alloc(30);
  local.writeUInt32LE(0x04034b50, 0);
  local.writeUInt16LE(20, 4);
  local.writeUInt32LE(data.length, 18);
  local.writeUInt32LE(data.length, 22);
  local.writeUInt16LE(fname.length, 26);
  const central = Buffer.alloc(46);
  central.writeUInt32LE(0x02014b50, 0);
  central.writeUInt16LE(20, 4);
  central.writeUInt16LE(20, 6);
  central.writeUInt32LE(data.length, 20);
  central.writeUInt32LE(data.length, 24);
  central.writeUInt16LE(fname.length, 28);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(1, 8);
  end.writeUInt16LE(1, 10);
  end.writeUInt32LE(46 + fname.length, 12);
  end.writeUInt32LE(30 + fname.length + data.length, 16);
  return Buffer.concat([local, fname, data, central, fname, end]);
}

let bomb: Promise<Buffer> | undefined;

/**
 * A real gzip bomb: a tar of one 1 GiB file of zeros, about 1 MiB compressed. Streamed through
 * zlib 4 MiB at a time, so the 1 GiB never exists in memory. Built once per process.
 */
export function gigabyteBomb(): Promise<Buffer> {
  bomb ??= (async () => {
    const gz = createGzip({ level: 9, memLevel: 9 });
    const chunks: Buffer[] = [];
    gz.on('data', (c: Buffer) => chunks.push(c));
    const ended = new Promise((resolve, reject) => gz.on('end', resolve).on('error', reject));
    const header = Buffer.alloc(512);
    new Header({ path: 'zeros.bin', type: 'File', size: 2 ** 30, mode: 0o644, mtime: new Date(0) }).encode(header, 0);
    gz.write(header);
    const zeros = Buffer.alloc(4 * 2 ** 20);
    for (let i = 0; i < 256; i++) if (!gz.write(zeros)) await new Promise((resolve) => gz.once('drain', resolve));
    gz.end(Buffer.alloc(1024));
    await ended;
    return Buffer.concat(chunks);
  })();
  return bomb;
}

// ---- escapes ----

async function walk(dir: string, out: string[], skip: Set<string>): Promise<void> {
  const entries = await fs.readdir(dir, { withFileTypes: true }).catch(() => []);
  for (const e of entries) {
    const full = path.join(dir, e.name);
    if (skip.has(full)) continue;
    out.push(full);
    if (e.isDirectory()) await walk(full, out, skip);
  }
}

/** Every path under `dir` except the subtrees in `except`. */
export async function filesUnder(dir: string, except: string[] = []): Promise<string[]> {
  const out: string[] = [];
  await walk(dir, out, new Set(except.map((p) => path.resolve(p))));
  return out.sort();
}

/**
 * Paths named after MARKER in the places an escaping entry could land: the sandbox that holds
 * the storage and cache roots (all of it), the temp directory, the working directory and /.
 */
export async function escapes(sandbox: string): Promise<string[]> {
  const found = (await filesUnder(sandbox)).filter((f) => f.includes(MARKER));
  for (const dir of [tmpdir(), process.cwd(), '/', path.dirname(sandbox)]) {
    for (const name of await fs.readdir(dir).catch(() => [] as string[]))
      if (name.includes(MARKER)) found.push(path.join(dir, name));
  }
  return found;
}

// ---- raw HTTP ----

export interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
  /** The server closed the connection without any response. */
  dropped: boolean;
}

/**
 * Sends bytes exactly as given on a new connection and reads one response. Nothing is
 * normalised: paths keep '..', %2F, raw UTF-8 and NULs. `head` is everything before the body.
 */
export function rawRequest(
  url: string,
  head: string | Buffer,
  body: Buffer = Buffer.alloc(0),
  timeoutMs = 15_000,
): Promise<RawResponse> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = createConnection({ host: hostname, port: Number(port) });
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no response within ${timeoutMs} ms to ${JSON.stringify(String(head).slice(0, 120))}`));
    }, timeoutMs);
    // Write without ending: a half-closed socket may be closed by the server before it answers.
    // Requests carry Connection: close, so the server closes once it has answered.
    socket.on('connect', () => socket.write(Buffer.concat([Buffer.from(head), body])));
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', () => {}); // a reset after the response is fine; a reset before it is `dropped`
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(parseResponse(Buffer.concat(chunks)));
    });
  });
}

export function parseResponse(raw: Buffer): RawResponse {
  const text = raw.toString('latin1');
  const end = text.indexOf('\r\n\r\n');
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(text);
  if (!m || end < 0) return { status: 0, headers: {}, body: '', dropped: true };
  const headers: Record<string, string> = {};
  for (const line of text.slice(0, end).split('\r\n').slice(1)) {
    const i = line.indexOf(':');
    if (i > 0) headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
  }
  let body = raw.subarray(Buffer.byteLength(text.slice(0, end + 4), 'latin1'));
  if (/chunked/i.test(headers['transfer-encoding'] ?? '')) {
    const parts: Buffer[] = [];
    let rest = body;
    for (;;) {
      const nl = rest.indexOf('\r\n');
      if (nl < 0) break;
      const size = parseInt(rest.subarray(0, nl).toString(), 16);
      if (!size) break;
      parts.push(rest.subarray(nl + 2, nl + 2 + size));
      rest = rest.subarray(nl + 2 + size + 2);
    }
    body = Buffer.concat(parts);
  }
  return { status: Number(m[1]), headers, body: body.toString('utf8'), dropped: false };
}

/** A raw HTTP/1.1 request head. */
export function head(method: string, target: string, headers: Record<string, string | number> = {}): string {
  const lines = [`${method} ${target} HTTP/1.1`, 'Host: 127.0.0.1', 'Connection: close'];
  for (const [k, v] of Object.entries(headers)) lines.push(`${k}: ${v}`);
  return `${lines.join('\r\n')}\r\n\r\n`;
}

// ---- a throttling TCP proxy ----

export interface Proxy {
  url: string;
  /** Bytes per second from the upstream to clients (0 = unlimited). */
  rate: number;
  /** Bytes forwarded upstream → client so far. */
  down: number;
  /** Flips the byte `bytes` further down the upstream → client traffic (corruption in transit). */
  flipAfter(bytes: number): void;
  /**
   * The next request whose head matches `pattern` reaches the server, and its reply is lost: the
   * connection drops as the reply starts (the server did the work, the client never hears).
   */
  dropReplyTo(pattern: RegExp): void;
  /** Destroys every open connection (an outage as the client sees it). */
  cut(): void;
  /** From now on nothing more reaches the client: the server seems to stop answering. */
  stall(): void;
  close(): Promise<void>;
}

/** Forwards 127.0.0.1:<random> to `target` (http://host:port), optionally throttling downloads. */
export async function startProxy(target: string, rate = 0): Promise<Proxy> {
  const { hostname, port } = new URL(target);
  const sockets = new Set<Socket>();
  let flipAt: number | undefined;
  let dropPattern: RegExp | undefined;
  let stalled = false;
  const server: Server = createServer((client) => {
    let dropping = false;
    const upstream = createConnection({ host: hostname, port: Number(port) });
    sockets.add(client).add(upstream);
    const drop = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
    client.pipe(upstream);
    client.on('data', (chunk: Buffer) => {
      if (dropPattern?.test(chunk.toString('latin1'))) {
        dropPattern = undefined;
        dropping = true;
      }
    });
    upstream.on('data', (chunk: Buffer) => {
      if (dropping) return drop();
      if (stalled) return void upstream.pause(); // this chunk and all after it are never delivered
      if (flipAt !== undefined && flipAt < proxy.down + chunk.length) {
        chunk[flipAt - proxy.down]! ^= 0xff;
        flipAt = undefined;
      }
      proxy.down += chunk.length;
      if (!client.write(chunk)) upstream.pause();
      if (proxy.rate > 0) {
        upstream.pause();
        setTimeout(() => upstream.resume(), (chunk.length / proxy.rate) * 1000);
      }
    });
    client.on('drain', () => upstream.resume());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address() as { port: number };
  const proxy: Proxy = {
    url: `http://127.0.0.1:${address.port}`,
    rate,
    down: 0,
    flipAfter: (bytes) => {
      flipAt = proxy.down + bytes;
    },
    dropReplyTo: (pattern) => {
      dropPattern = pattern;
    },
    stall: () => {
      stalled = true;
    },
    cut: () => {
      for (const s of sockets) s.destroy();
      sockets.clear();
    },
    close: async () => {
      proxy.cut();
      await new Promise((resolve) => server.close(resolve));
    },
  };
  return proxy;
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `check` until it is true or `ms` pass; returns whether it became true. */
export async function eventually(check: () => Promise<boolean> | boolean, ms = 10_000, every = 50): Promise<boolean> {
  const end = Date.now() + ms;
  for (;;) {
    if (await check()) return true;
    if (Date.now() > end) return false;
    await sleep(every);
  }
}
