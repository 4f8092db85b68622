/**
 * The model-registry command's own lines (dist/cli.js): --version, and usage errors as one plain
 * line with a hint instead of Node's parseArgs text. Exit 2 for usage errors.
 */
import { spawnSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import t from 'tap';
import { ensureBuilt } from './helpers/build.js';

ensureBuilt();
const cli = (...args: string[]) =>
  spawnSync(process.execPath, ['dist/cli.js', ...args], {
    encoding: 'utf8',
    env: { PATH: process.env.PATH },
    timeout: 20_000,
  });

t.test('--version (and -v) print the package version', async (t) => {
  const { version } = JSON.parse(await readFile('package.json', 'utf8')) as { version: string };
  for (const flag of ['--version', '-v']) {
    const r = cli(flag);
    t.equal(r.status, 0, flag);
    t.equal(r.stdout, `model-registry ${version} (Node.js ${process.version})\n`);
    t.equal(r.stderr, '');
  }
  t.match(cli('--help').stdout, /model-registry --version/, '--help lists it');
});

t.test('usage errors: one line with the fix, then the pointer to --help; exit 2', async (t) => {
  const cases: [string[], string][] = [
    [['migrate', '--frm', 'a.env', '--to', 'b.env'], 'unknown option --frm: did you mean --from?'],
    [['migrate', '--concurency', '3'], 'unknown option --concurency: did you mean --concurrency?'],
    [['--dryrun'], 'unknown option --dryrun: did you mean --dry-run?'],
    [
      ['--banana'],
      'unknown option --banana: the options are --help, --version, --from, --to, --from-layout, --dry-run, --concurrency',
    ],
    [
      ['-x'],
      'unknown option -x: the options are --help, --version, --from, --to, --from-layout, --dry-run, --concurrency',
    ],
    [['migrate', '--from'], '--from needs a value: --from <source.env>'],
    [['migrate', '--from', 'a.env', '--to'], '--to needs a value: --to <destination.env>'],
    [['migrate', '--dry-run=yes'], '--dry-run takes no value: write just --dry-run'],
    [['--help=please'], '--help takes no value: write just --help'],
    [[], 'a command is required: serve or migrate'],
    [['copy'], 'unknown command "copy": use serve or migrate'],
  ];
  for (const [args, line] of cases) {
    const r = cli(...args);
    t.equal(r.status, 2, args.join(' '));
    t.equal(
      r.stderr,
      `model-registry: ${line}\nRun model-registry --help for usage.\n`,
      args.join(' ') || '(no arguments)',
    );
    t.notMatch(r.stderr, /positional argument|ERR_PARSE_ARGS/, "none of parseArgs' own text");
  }
});
