/**
 * One-pass validation of an uploaded model archive. The validator is a pass-through Transform
 * placed between the request and the storage: it counts and hashes the bytes, and feeds a copy
 * through gunzip into a tar parser that checks every entry against the upload rules (rules.ts,
 * and the strict second reading of the headers in tar-headers.ts).
 * It fails the stream (so the staged upload is discarded) on the first broken rule, and its
 * flush waits until the tar has been parsed to its end — so a staged upload that completed is
 * known to be valid. Memory stays bounded: gunzip output is consumed as it is produced.
 */
import { createHash, type Hash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { createGunzip, type Gunzip } from 'node:zlib';
import { Parser, type ReadEntry } from 'tar';
import { errors, type RegistryError } from '../../errors.js';
import type { ArchiveFormat, ArchiveLimits, ArchiveSummary } from '../archive.js';
import {
  allZero,
  brief,
  escapingLink,
  hardLinkProblem,
  isEmptyRootWarning,
  type Kind,
  MAX_PATH_BYTES,
  NO_LINKS,
  parserError,
  pathTooLong,
  posixKey,
  ROOT_NAMES,
  resolveInside,
} from './rules.js';
import { TarHeaders } from './tar-headers.js';

/** Bytes of body handed to gunzip at a time. */
const INFLATE_BATCH = 1024 * 1024;

/** A batch handed to gunzip: `onConsumed` runs once gunzip is done with it. */
interface InFlight {
  consumed: boolean;
  onConsumed?: () => void;
}

const FILE_TYPES = new Set(['File', 'OldFile', 'ContiguousFile']);
const GZIP_MAGIC = [0x1f, 0x8b];

export class ArchiveValidator extends Transform {
  readonly #limits: ArchiveLimits;
  readonly #format: ArchiveFormat;
  readonly #hash: Hash = createHash('sha256');
  readonly #gunzip: Gunzip | undefined;
  readonly #parser: Parser;
  /** The same headers read strictly, as other tar readers would (tar-headers.ts). */
  readonly #headers = new TarHeaders();
  /** Tar bytes not yet given to node-tar: the start of pax / long-name data still arriving. */
  #heldBack: Buffer | undefined;
  /** Symlinks seen so far: normalized path → target as stored. */
  readonly #symlinks = new Map<string, string>();
  /**
   * What each path (split on '/' only, as tar extractors on POSIX resolve a hard link's target)
   * holds so far: a hard link may only point to a path that holds a regular file when it comes.
   */
  readonly #kinds = new Map<string, Kind>();
  #received = 0;
  #emptyRoots = 0;
  #head = Buffer.alloc(0);
  #tarBytes = 0;
  /** No byte of the tar data so far was other than zero (an empty tar is only its end marker). */
  #tarAllZero = true;
  #entries = 0;
  #extracted = 0;
  #parsed = false;
  #onParsed: (() => void) | undefined;
  #summary: ArchiveSummary | undefined;
  /** Body chunks not yet inflated: fed to gunzip by the MiB (see #inflate). */
  #pending: Buffer[] = [];
  #pendingBytes = 0;
  /**
   * Where pending chunks are gathered for gunzip: two buffers, used in turn (a batch's buffer is
   * reused two batches later, when gunzip is done with it). A fresh buffer per MiB made V8
   * collect garbage a third more often.
   */
  readonly #batches: Buffer[] = [];
  #turn = 0;
  /** The latest batch handed to gunzip, if any. */
  #inflating: InFlight | undefined;

  constructor(format: ArchiveFormat, limits: ArchiveLimits) {
    super({ highWaterMark: 1024 * 1024 });
    this.#format = format;
    this.#limits = limits;
    // Only ever plain tar inside (gzip is ours to undo): node-tar would otherwise switch to zstd on
    // its magic bytes, which Node 20's zlib lacks — a throw outside any stream.
    // Not strict: in strict mode node-tar turns its warnings into errors, and one of them is the
    // archive root written with an empty name (tar-headers.ts); every other warning fails here.
    this.#parser = new Parser({ strict: false, maxDecompressionRatio: Infinity, zstd: false, brotli: false });
    this.#parser.on('entry', (entry: ReadEntry) => this.#checkEntry(entry));
    this.#parser.on('warn', (code: string, message: string | Error) => {
      if (isEmptyRootWarning(code, message) && this.#headers.takeEmptyRoot()) {
        this.#emptyRoots++;
        return;
      }
      this.#fail(this.#parserError(code, message));
    });
    this.#parser.on('error', (err: Error & { code?: string }) => this.#fail(this.#parserError(err.code ?? '', err)));
    this.#parser.on('end', () => {
      this.#parsed = true;
      this.#onParsed?.();
    });
    if (format === 'gzip') {
      this.#gunzip = createGunzip({ chunkSize: 1024 * 1024 });
      this.#gunzip.on('data', (chunk: Buffer) => this.#tar(chunk));
      this.#gunzip.on('end', () => this.#endTar());
      this.#gunzip.on('error', (err) =>
        this.#fail(errors.invalidArchive(`the gzip stream is corrupt or truncated (${err.message})`)),
      );
    }
  }

  /** Totals of a stream that ended successfully; throws if called earlier. */
  get summary(): ArchiveSummary {
    if (!this.#summary) throw new Error('archive not validated yet');
    return this.#summary;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.#received += chunk.length;
    if (this.#received > this.#limits.maxModelBytes) return callback(errors.tooLarge(this.#limits.maxModelBytes));
    if (this.#head.length < 2) this.#head = Buffer.concat([this.#head, chunk.subarray(0, 2)]);
    const magicErr = this.#checkMagic();
    if (magicErr) return callback(magicErr);
    this.#hash.update(chunk);
    this.push(chunk);
    if (this.#gunzip) {
      this.#pending.push(chunk);
      this.#pendingBytes += chunk.length;
      if (this.#pendingBytes < INFLATE_BATCH) return callback();
      this.#inflate(callback);
    } else {
      this.#tar(chunk);
      callback();
    }
  }

  override _flush(callback: TransformCallback): void {
    if (this.#received === 0) {
      return callback(errors.invalidArchive('the body is empty; send the .tar.gz file as the request body'));
    }
    if (this.#head.length < 2) {
      return callback(errors.invalidArchive('the body is too short to be an archive'));
    }
    let done = false;
    this.#onParsed = () => {
      if (this.destroyed || done) return;
      done = true;
      if (this.#entries === 0) return callback(errors.invalidArchive('the archive has no entries'));
      if (this.#headers.entries.length > 0 || this.#headers.emptyRootsLeft > 0) {
        const extra = this.#headers.entries[0]?.path ?? '';
        return callback(
          errors.unsafeArchive(
            `tar readers disagree on the archive: a strict reader sees the entry ${JSON.stringify(extra)} that this one ` +
              'does not; create the archive with a standard tar tool',
          ),
        );
      }
      // Only now are all symlinks known: a link may escape through one defined after it.
      const escaping = escapingLink(this.#symlinks);
      if (escaping) {
        const how = 'points outside the archive through another symlink';
        return callback(errors.unsafeArchive(`the symlink ${JSON.stringify(escaping)} ${how}`));
      }
      this.#summary = {
        receivedBytes: this.#received,
        receivedSha256: this.#hash.digest('hex'),
        entries: this.#entries,
        extractedBytes: this.#extracted,
        emptyRoots: this.#emptyRoots,
      };
      callback();
    };
    if (this.#gunzip) this.#inflate(() => this.#gunzip!.end());
    else this.#endTar();
    if (this.#parsed) this.#onParsed();
  }

  /**
   * Hands the pending body to gunzip as one buffer. Each write is a round trip to the thread pool,
   * so feeding it socket-sized (64 KiB) chunks made inflation 2–3× slower than the bytes arrive.
   * Up to two batches are in gunzip at once: the thread pool inflates one while this thread
   * receives and hashes the next (one at a time, each waited for the other: a 1 GiB PUT took
   * 2.6–3.1 s instead of 2.3–2.5 s). `callback` runs once the batch before this one is consumed.
   */
  #inflate(callback: () => void): void {
    const batch = this.#pending.length === 1 ? this.#pending[0]! : this.#gather();
    this.#pending = [];
    this.#pendingBytes = 0;
    if (batch.length === 0) return callback();
    const previous = this.#inflating;
    const current: InFlight = { consumed: false };
    this.#inflating = current;
    this.#gunzip!.write(batch, () => {
      current.consumed = true;
      current.onConsumed?.();
    });
    if (!previous || previous.consumed) callback();
    else previous.onConsumed = callback;
  }

  #gather(): Buffer {
    if (this.#pendingBytes > 2 * INFLATE_BATCH) return Buffer.concat(this.#pending, this.#pendingBytes);
    this.#turn ^= 1;
    const into = (this.#batches[this.#turn] ??= Buffer.allocUnsafe(2 * INFLATE_BATCH));
    let at = 0;
    for (const chunk of this.#pending) at += chunk.copy(into, at);
    return into.subarray(0, at);
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    this.#gunzip?.destroy();
    callback(err);
  }

  #checkMagic(): RegistryError | undefined {
    if (this.#head.length < 2) return undefined;
    const gzipped = this.#head[0] === GZIP_MAGIC[0] && this.#head[1] === GZIP_MAGIC[1];
    if (this.#format === 'gzip' && !gzipped) {
      return errors.invalidArchive(
        'the body is not gzip data; send a .tar.gz, or send a plain tar with Content-Type: application/x-tar',
      );
    }
    if (this.#format === 'tar' && gzipped) {
      return errors.invalidArchive(
        'the body is gzip-compressed but Content-Type says application/x-tar; send it as application/gzip',
      );
    }
    return undefined;
  }

  /** Feeds decompressed tar bytes to the parser, enforcing the extracted-size limit. */
  #tar(chunk: Buffer): void {
    if (this.destroyed) return;
    if (this.#tarBytes === 0 && chunk[0] === GZIP_MAGIC[0] && chunk[1] === GZIP_MAGIC[1]) {
      return this.#fail(errors.invalidArchive('the archive is compressed twice; gzip the tar once'));
    }
    this.#tarBytes += chunk.length;
    if (this.#tarAllZero && !allZero(chunk)) this.#tarAllZero = false;
    // Headers and padding add at most two blocks per entry, plus the end-of-archive blocks.
    const allowance = this.#limits.maxExtractedBytes + 1024 * (this.#limits.maxEntries + 20);
    if (this.#tarBytes > allowance) {
      const over = `it expands to more than MAX_EXTRACTED_BYTES (${this.#limits.maxExtractedBytes} bytes)`;
      return this.#fail(errors.archiveLimit(over, 'MAX_EXTRACTED_BYTES'));
    }
    const problem = this.#headers.write(chunk);
    if (problem) return this.#fail(problem);
    // node-tar decodes pax and long-name data chunk by chunk, garbling a character split between
    // two: such data goes to it in one piece, held back until all of it arrived (≤ 1 MiB).
    let data = this.#heldBack ? Buffer.concat([this.#heldBack, chunk]) : chunk;
    this.#heldBack = undefined;
    const metaAt = this.#headers.metaDataStart;
    const start = this.#tarBytes - data.length;
    if (metaAt !== undefined && metaAt < this.#tarBytes) {
      this.#heldBack = data.subarray(Math.max(0, metaAt - start));
      data = data.subarray(0, Math.max(0, metaAt - start));
    }
    if (data.length > 0) this.#parse(data);
  }

  #parse(data: Buffer): void {
    try {
      this.#parser.write(data);
    } catch (err) {
      // The parser throws from inside an event handler (gunzip's 'data'): never let it escape.
      this.#fail(errors.invalidArchive(`the tar data is corrupt (${(err as Error).message})`));
    }
  }

  /**
   * node-tar calls an empty tar (`tar -cf x.tar -T /dev/null`, Python's tarfile with nothing
   * added: nothing but zero blocks) an unrecognised format; it is an archive with no entries.
   */
  #parserError(code: string, message: string | Error): RegistryError {
    if (code === 'TAR_BAD_ARCHIVE' && this.#entries === 0 && this.#tarAllZero) {
      return errors.invalidArchive('the archive has no entries');
    }
    return parserError(code, message);
  }

  /** The end of the tar data: bytes still held back (a truncated header's) go to the parser first. */
  #endTar(): void {
    if (this.#heldBack) this.#parse(this.#heldBack);
    this.#heldBack = undefined;
    this.#parser.end();
  }

  #checkEntry(entry: ReadEntry): void {
    entry.resume();
    if (this.destroyed) return;
    const problem = this.#entryProblem(entry);
    if (problem) this.#fail(problem);
  }

  #entryProblem(entry: ReadEntry): RegistryError | undefined {
    const raw = entry.path;
    const shown = JSON.stringify(raw);
    // Other readers must see this very entry (tar-headers.ts read its header first).
    const strict = this.#headers.entries.shift();
    const same =
      strict &&
      strict.path === raw &&
      strict.linkpath === (entry.linkpath ?? '') &&
      strict.type === entry.header.typeKey &&
      strict.size === (entry.size ?? 0);
    if (!same) {
      const seen = strict ? JSON.stringify(strict.path) : 'no entry';
      const fix = 'create the archive with a standard tar tool';
      const readings = `${shown} here, ${seen} for a strict reader`;
      return errors.unsafeArchive(`tar readers disagree on an entry: ${readings}; ${fix}`);
    }
    this.#entries++;
    if (this.#entries > this.#limits.maxEntries) {
      const over = `it has more than MAX_ARCHIVE_ENTRIES (${this.#limits.maxEntries}) entries`;
      return errors.archiveLimit(over, 'MAX_ARCHIVE_ENTRIES');
    }
    this.#extracted += entry.size ?? 0;
    if (this.#extracted > this.#limits.maxExtractedBytes) {
      const over = `it expands to more than MAX_EXTRACTED_BYTES (${this.#limits.maxExtractedBytes} bytes)`;
      return errors.archiveLimit(over, 'MAX_EXTRACTED_BYTES');
    }
    if (raw.includes('\0')) return errors.unsafeArchive(`${shown} contains a NUL byte`);
    if (ROOT_NAMES.has(raw)) {
      // The root's own entry (its mode, its mtime) creates nothing; as anything else it is no root.
      if (entry.type === 'Directory') return undefined;
      return errors.unsafeArchive(
        `${shown} names the archive root, which only a directory entry may, but is a ${entry.type}; give it a name`,
      );
    }
    if (raw.startsWith('/') || raw.startsWith('\\') || /^[a-zA-Z]:/.test(raw)) {
      return errors.unsafeArchive(`${shown} is an absolute path`);
    }
    const parts = raw.split(/[\\/]/).filter((p) => p !== '' && p !== '.');
    if (parts.includes('..')) return errors.unsafeArchive(`${shown} has a '..' component`);
    const normalized = parts.join('/');
    const tooLong = pathTooLong(normalized);
    if (tooLong) return errors.pathTooLong(`the entry ${brief(raw)}`, tooLong);
    for (let i = 1; i <= parts.length; i++) {
      const prefix = parts.slice(0, i).join('/');
      if (this.#symlinks.has(prefix)) {
        return errors.unsafeArchive(`${shown} is written through the symlink ${JSON.stringify(prefix)}`);
      }
    }
    const type = entry.type;
    const key = posixKey(raw);
    if (FILE_TYPES.has(type) || type === 'Directory') {
      this.#kinds.set(key, type === 'Directory' ? 'directory' : 'file');
      return undefined;
    }
    if (type === 'SymbolicLink') {
      const target = entry.linkpath ?? '';
      const absolute = target.startsWith('/') || /^[a-zA-Z]:/.test(target);
      if (!target || absolute || !resolveInside(parts.slice(0, -1), target, NO_LINKS)) {
        return errors.unsafeArchive(`the symlink ${shown} points outside the archive (to ${JSON.stringify(target)})`);
      }
      if (Buffer.byteLength(target) > MAX_PATH_BYTES) {
        const why = `is ${Buffer.byteLength(target)} bytes long, over the limit of ${MAX_PATH_BYTES} bytes`;
        return errors.pathTooLong(`the target of the symlink ${brief(raw)}`, why);
      }
      this.#symlinks.set(normalized, target);
      this.#kinds.set(key, 'symlink');
      return undefined;
    }
    if (type === 'Link') {
      const problem = hardLinkProblem(shown, key, entry.linkpath ?? '', this.#kinds, this.#symlinks);
      if (problem) return problem;
      // It is that file from now on: a link to this link reaches the same regular file.
      this.#kinds.set(key, 'file');
      return undefined;
    }
    if (type === 'CharacterDevice' || type === 'BlockDevice') return errors.unsafeArchive(`${shown} is a device file`);
    if (type === 'FIFO') return errors.unsafeArchive(`${shown} is a FIFO`);
    return errors.unsafeArchive(`${shown} has the unsupported entry type ${type}`);
  }

  #fail(err: Error): void {
    if (!this.destroyed) this.destroy(err);
  }
}
