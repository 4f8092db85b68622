#!/usr/bin/env node
/**
 * The `model-registry` command: `serve` runs the server (like npm start), `migrate` copies every
 * model between two backends (src/migrate/). Usage errors exit 2, bad settings exit 1 with
 * one line naming the .env file and the variable.
 */
import './node-version.js'; // first: stops on a Node.js older than 22.12 before anything else loads
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { dropEmptySdkVariables } from './config.js';
import { ConfigError } from './errors.js';

const USAGE = `Usage:
  model-registry serve
      Run the registry with the settings in the environment (same as npm start).

  model-registry migrate --from <source.env> --to <destination.env> [--dry-run] [--concurrency N] [--from-layout L]
      Copy every model, its history and metadata from one backend to another. Each .env file
      holds the usual settings of one backend (REMOTE_STORAGE, BUCKET_NAME, LOCAL_STORAGE_DIR, ...);
      relative paths in it are relative to the file. Objects already identical at the destination
      are skipped, so an interrupted migration resumes when run again.

      --from FILE        settings of the backend to copy from (only read)
      --to FILE          settings of the backend to copy to
      --from-layout L    what the source holds: registry (default), modelstore (a store of the
                         modelstore library: each domain becomes a model, each of its models a
                         version), rasa-nlu-mongodb (Rasa NLU's model documents in the collection
                         MONGODB_COLLECTION, each packed into {model_name}.tar.gz)
      --dry-run          print what would be copied and skipped; change nothing
      --concurrency N    objects copied at the same time (default 4)

  model-registry --help
  model-registry --version
`;

/** The options each command takes, for the hint after an unknown or misused one. */
const OPTIONS = {
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean', short: 'v' },
  from: { type: 'string' },
  to: { type: 'string' },
  'from-layout': { type: 'string' },
  'dry-run': { type: 'boolean' },
  concurrency: { type: 'string' },
} as const;
const VALUE_HINTS: Record<string, string> = {
  from: '<source.env>',
  to: '<destination.env>',
  concurrency: 'N',
  'from-layout': 'L',
};

/** package.json's version: dist/cli.js and src/cli.ts both sit one folder below it. */
function packageVersion(): string {
  return (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;
}

/** Optimal-string-alignment distance, for "did you mean". */
function distance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1])
        d[i]![j] = Math.min(d[i]![j]!, d[i - 2]![j - 2]! + 1);
    }
  }
  return d[a.length]![b.length]!;
}

/** parseArgs' own error text ("Unknown option '--frm'. To specify a positional argument ...") as one plain line. */
function usageLine(err: Error & { code?: string }): string {
  const option = /'(-[^' ,]*)(?:, (--[^' ]+))?/.exec(err.message);
  const shown = option?.[2] ?? option?.[1] ?? '';
  const name = shown.replace(/^-+/, '');
  if (err.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
    const known = Object.keys(OPTIONS);
    const closest = known.map((k) => ({ k, d: distance(name, k) })).sort((a, b) => a.d - b.d)[0]!;
    const hint =
      closest.d <= Math.max(1, Math.floor(closest.k.length / 3))
        ? `did you mean --${closest.k}?`
        : `the options are ${known.map((k) => `--${k}`).join(', ')}`;
    return `unknown option ${shown}: ${hint}`;
  }
  if (err.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' && name in OPTIONS) {
    const key = name as keyof typeof OPTIONS;
    return OPTIONS[key].type === 'string'
      ? `--${key} needs a value: --${key} ${VALUE_HINTS[key] ?? '<value>'}`
      : `--${key} takes no value: write just --${key}`;
  }
  return err.message;
}

class UsageError extends Error {}

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: OPTIONS,
  });
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  if (values.version) {
    process.stdout.write(`model-registry ${packageVersion()} (Node.js ${process.version})\n`);
    return 0;
  }
  const [command, ...extra] = positionals;
  if (command === undefined) throw new UsageError('a command is required: serve or migrate');
  if (extra.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(extra[0])}`);

  if (command === 'serve') {
    for (const option of ['from', 'to', 'from-layout', 'dry-run', 'concurrency'] as const) {
      if (values[option] !== undefined) throw new UsageError(`--${option} belongs to migrate, not serve`);
    }
    const { serve } = await import('./server.js');
    await serve();
    return -1; // keeps running; serve() exits the process itself
  }
  if (command !== 'migrate') throw new UsageError(`unknown command ${JSON.stringify(command)}: use serve or migrate`);

  dropEmptySdkVariables(); // the SDKs read the process environment too
  if (!values.from) throw new UsageError('migrate needs --from <source.env>');
  if (!values.to) throw new UsageError('migrate needs --to <destination.env>');
  const { isLayout, LAYOUTS } = await import('./layouts/index.js');
  const fromLayout = values['from-layout'];
  if (fromLayout !== undefined && !isLayout(fromLayout)) {
    throw new UsageError(`--from-layout ${fromLayout} is not a layout migrate reads: use ${LAYOUTS.join(', ')}`);
  }
  let concurrency = 4;
  if (values.concurrency !== undefined) {
    concurrency = Number(values.concurrency);
    if (!/^\d+$/.test(values.concurrency) || concurrency < 1 || concurrency > 64) {
      throw new UsageError(`--concurrency ${values.concurrency} must be a whole number from 1 to 64`);
    }
  }

  // Ctrl-C: stop starting objects, cancel those in flight (nothing partial is committed), print
  // the summary. A second Ctrl-C exits at once.
  const controller = new AbortController();
  const onSignal = (signal: NodeJS.Signals) => {
    if (controller.signal.aborted) process.exit(130);
    process.stderr.write(
      `${process.stderr.isTTY ? '\n' : ''}${signal}: stopping; objects already copied stay, rerun the same command to resume (again to quit now)\n`,
    );
    controller.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const { migrate } = await import('./migrate/index.js');
  const summary = await migrate({
    from: values.from,
    to: values.to,
    fromLayout,
    dryRun: values['dry-run'] ?? false,
    concurrency,
    signal: controller.signal,
  });
  return controller.signal.aborted && summary.interrupted ? 130 : summary.exitCode;
}

/** Exits once stdout is flushed (a pipe may still hold the summary). */
function exit(code: number): void {
  process.stdout.write('', () => process.exit(code));
}

try {
  const code = await main(process.argv.slice(2));
  if (code >= 0) exit(code);
} catch (err) {
  if (err instanceof UsageError || (err as NodeJS.ErrnoException).code?.startsWith('ERR_PARSE_ARGS')) {
    const line = err instanceof UsageError ? err.message : usageLine(err as Error & { code?: string });
    process.stderr.write(`model-registry: ${line}\nRun model-registry --help for usage.\n`);
    exit(2);
  } else if (err instanceof ConfigError) {
    process.stderr.write(`model-registry: ${err.message}\n`);
    exit(1);
  } else if ((err as Error).name === 'AbortError') {
    process.stderr.write('model-registry: interrupted before anything was copied\n');
    exit(130);
  } else {
    process.stderr.write(`model-registry: ${(err as Error).stack ?? String(err)}\n`);
    exit(1);
  }
}
