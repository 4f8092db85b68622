#!/usr/bin/env node
/**
 * The `model-registry` command: `serve` runs the server (like npm start), `migrate` copies every
 * model between two backends (src/migrate.ts). Usage errors exit 2, bad settings exit 1 with
 * one line naming the .env file and the variable.
 */
import { parseArgs } from 'node:util';
import { ConfigError } from './errors.js';
import { dropEmptySdkVariables } from './config.js';

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
`;

class UsageError extends Error {}

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      help: { type: 'boolean', short: 'h' },
      from: { type: 'string' },
      to: { type: 'string' },
      'from-layout': { type: 'string' },
      'dry-run': { type: 'boolean' },
      concurrency: { type: 'string' },
    },
  });
  if (values.help) {
    process.stdout.write(USAGE);
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
    process.stderr.write(`${process.stderr.isTTY ? '\n' : ''}${signal}: stopping; objects already copied stay, rerun the same command to resume (again to quit now)\n`);
    controller.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const { migrate } = await import('./migrate.js');
  const summary = await migrate({ from: values.from, to: values.to, fromLayout, dryRun: values['dry-run'] ?? false, concurrency, signal: controller.signal });
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
    process.stderr.write(`model-registry: ${(err as Error).message}\nRun model-registry --help for usage.\n`);
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
