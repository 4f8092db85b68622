/**
 * What `model-registry migrate` prints: one line per object (or a progress bar with bytes and ETA
 * on a terminal), the closing summary, and the byte / duration formats they use.
 */
import type { LogFn } from 'pino';
import type { Logger } from '../util/logger.js';
import type { MigrationSummary, ObjectResult, ObjectStatus, Output } from './types.js';

/**
 * Per-object lines on stdout; on a TTY a one-line bar on stderr instead, redrawn with \r
 * (failures are still printed, above the bar).
 */
export class Progress {
  #objects = 0;
  #settled = 0;
  #total = 0;
  #done = 0;
  #began = Date.now();
  #timer: NodeJS.Timeout | undefined;
  #drawn = false;
  #begun = false;
  readonly bar: boolean;
  readonly quiet: boolean;

  constructor(
    readonly stdout: Output,
    readonly stderr: Output,
    readonly dryRun: boolean,
  ) {
    this.bar = !dryRun && stderr.isTTY === true;
    // With the bar on the same terminal, per-object lines would only scroll it away.
    this.quiet = this.bar && stdout.isTTY === true;
  }

  begin(objects: number, bytes: number): void {
    this.#objects = objects;
    this.#total = bytes;
    this.#began = Date.now();
    this.#begun = true;
    if (this.bar) {
      this.#timer = setInterval(() => this.#draw(), 200);
      this.#timer.unref();
      this.#draw();
    }
  }

  bytes(n: number): void {
    this.#done += n;
  }

  settle(r: ObjectResult): void {
    this.#settled++;
    // Version 0: an importer refused the whole model.
    const what = r.aliases
      ? `${r.name} aliases`
      : r.version > 0
        ? `${r.name} v${r.version}${r.record ? ' record' : ''}`
        : r.name;
    let line: string | undefined;
    if (r.status === 'failed') line = `FAILED ${what}: ${r.detail}`;
    else if (!this.quiet) {
      if (r.status === 'copied')
        line = `copied ${what} (${r.detail === 'metadata only' ? 'metadata only' : formatBytes(r.bytes)}${r.detail?.startsWith('replaced ') ? `, ${r.detail}` : ''})`;
      else if (r.status === 'skipped')
        line = this.dryRun ? `would skip ${what} (identical)` : `skipped ${what} (identical)`;
      else if (r.status === 'would-copy') line = `would copy ${what} (${r.detail ?? formatBytes(r.size)})`;
    }
    if (line) this.#line(line);
    else if (this.bar) this.#draw();
  }

  /** A message above the bar / among the lines. */
  note(line: string): void {
    this.#line(line);
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    if (this.bar && this.#begun) {
      this.#draw();
      this.stderr.write('\n');
      this.#drawn = false;
    }
  }

  #line(text: string): void {
    if (this.#drawn) this.stderr.write('\r\x1b[K');
    this.stdout.write(`${text}\n`);
    if (this.#drawn) this.#draw();
  }

  #draw(): void {
    const done = Math.min(this.#done, this.#total);
    const fraction = this.#total > 0 ? done / this.#total : this.#settled === this.#objects ? 1 : 0;
    const width = 20;
    const filled = Math.round(fraction * width);
    const seconds = (Date.now() - this.#began) / 1000;
    const rate = seconds > 0.25 ? done / seconds : 0;
    const eta = done >= this.#total ? '0s' : rate > 0 ? formatDuration(((this.#total - done) / rate) * 1000) : '--';
    let text = `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${Math.floor(fraction * 100)}% ${formatBytes(done)} / ${formatBytes(this.#total)}  ${formatBytes(rate)}/s  ETA ${eta}  (${this.#settled}/${this.#objects} objects)`;
    const columns = this.stderr.columns;
    if (columns && text.length >= columns) text = text.slice(0, columns - 1);
    this.stderr.write(`\r\x1b[K${text}`);
    this.#drawn = true;
  }
}

export function summarize(
  objects: ObjectResult[],
  dryRun: boolean,
  durationMs: number,
  progress: Progress,
): MigrationSummary {
  const count = (s: ObjectStatus) => objects.filter((o) => o.status === s).length;
  const bytesOf = (s: ObjectStatus, field: 'bytes' | 'size') =>
    objects.reduce((n, o) => n + (o.status === s && o.detail !== 'metadata only' ? o[field] : 0), 0);
  const total = objects.length;
  const copied = count('copied');
  const copiedBytes = bytesOf('copied', 'bytes');
  const skipped = count('skipped');
  const failed = count('failed');
  const notCopied = count('not-copied');
  const wouldCopy = count('would-copy');
  const interrupted = notCopied > 0;
  const plural = (n: number) => `${n} object${n === 1 ? '' : 's'}`;
  const took = formatDuration(durationMs);
  let line: string;
  if (total === 0) {
    // Most likely the wrong source (a misspelt bucket, database or directory): not a success.
    line =
      'nothing to copy: the source has no models; check that the --from settings name the storage the registry uses';
  } else if (interrupted) {
    line = `interrupted: copied ${plural(copied)} (${formatBytes(copiedBytes)}), skipped ${skipped} identical, ${failed} failed, ${notCopied} not copied yet in ${took}; rerun the same command to resume`;
  } else if (dryRun) {
    line =
      wouldCopy === 0 && failed === 0
        ? `dry run: nothing to copy: all ${plural(total)} already identical`
        : `dry run: would copy ${plural(wouldCopy)} (${formatBytes(bytesOf('would-copy', 'size'))}), skip ${skipped} identical${failed ? `, ${failed} failed` : ''}; nothing was changed`;
  } else if (copied === 0 && failed === 0) {
    line = `nothing to copy: all ${plural(total)} already identical`;
  } else {
    line = `copied ${plural(copied)} (${formatBytes(copiedBytes)}), skipped ${skipped} identical, ${failed} failed in ${took}`;
  }
  progress.note(line);
  return {
    objects,
    total,
    copied,
    copiedBytes,
    skipped,
    failed,
    notCopied,
    wouldCopy,
    dryRun,
    interrupted,
    durationMs,
    line,
    exitCode: failed > 0 || interrupted || total === 0 ? 1 : 0,
  };
}

/** `512 B`, `12.3 MiB`, `1.4 GiB`. */
export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return i === 0 ? `${Math.round(n)} B` : `${n.toFixed(1)} ${units[i]}`;
}

/** `41s`, `2m10s`, `1h02m`. */
export function formatDuration(ms: number): string {
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

/** A Logger that prints warnings and errors as lines and drops the rest. */
export function lineLogger(print: (line: string) => void, bindings: Record<string, unknown> = {}): Logger {
  const at = (level: string): LogFn =>
    ((a: unknown, b?: unknown) => {
      const msg = typeof a === 'string' ? a : typeof b === 'string' ? b : '';
      const err = a && typeof a === 'object' ? (a as { err?: Error }).err : undefined;
      const where = typeof bindings.storage === 'string' ? ` (${bindings.storage})` : '';
      print(`${level}${where}: ${msg}${err?.message ? `: ${err.message}` : ''}`);
    }) as LogFn;
  const ignore = (() => {}) as LogFn;
  return {
    debug: ignore,
    info: ignore,
    warn: at('warning'),
    error: at('error'),
    child: (more) => lineLogger(print, { ...bindings, ...more }),
  };
}
