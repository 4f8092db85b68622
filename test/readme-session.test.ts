/**
 * The README's "A session with curl" runs as written: its shell blocks are taken from the README,
 * pointed at a live server, and run in order with bash. Every curl must get a 2xx (curl
 * --fail-with-body), and a block written as a transcript (`$ command` then its output) must print
 * that output. So the README cannot drift from the server again.
 */
import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { tar, tgz } from './helpers/archives.js';
import { start, tempDir } from './helpers/server.js';

const README_URL = 'http://127.0.0.1:8080';

/** The ```sh blocks of the README section `heading`, in order. */
function shellBlocks(readme: string, heading: string): string[] {
  const at = readme.indexOf(`\n${heading}\n`);
  if (at < 0) throw new Error(`README has no section ${heading}`);
  const rest = readme.slice(at + heading.length + 2);
  const section = rest.slice(0, rest.search(/^## /m) >>> 0);
  return [...section.matchAll(/^```sh\n([\s\S]*?)^```$/gm)].map((m) => m[1]!);
}

/** A transcript block: `$ command` lines, each followed by the output it prints. */
function transcript(block: string): { command: string; output: string }[] | undefined {
  if (!block.startsWith('$ ')) return undefined;
  return block
    .split(/^\$ /m)
    .filter(Boolean)
    .map((part) => {
      const [command, ...output] = part.replace(/\n$/, '').split('\n');
      return { command: command!, output: output.join('\n') };
    });
}

function bash(script: string, cwd: string): Promise<{ code: number; stdout: string; stderr: string }> {
  // curl as the README's reader runs it, but failing on any HTTP error, and quiet but for errors.
  const prelude = 'set -euo pipefail\ncurl() { command curl -sS --fail-with-body "$@"; }\n';
  return new Promise((resolve) => {
    execFile('bash', ['-c', prelude + script], { cwd, timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

t.test("the README's session with curl runs in order against a live server", async (t) => {
  const readme = await readFile('README.md', 'utf8');
  const blocks = shellBlocks(readme, '## A session with curl');
  t.ok(blocks.length >= 2, 'the session and the bad-upload example');
  const { url } = await start(t); // the defaults the README assumes (MODEL_HISTORY=3, no tokens)
  const cwd = await tempDir(t);
  // The files the session uploads, as a reader would have them.
  const files = [
    { path: 'model/config.yml', body: 'pipeline: []\n' },
    { path: 'model/weights.bin', body: Buffer.alloc(4096, 7) },
  ];
  await writeFile(path.join(cwd, 'model.tar.gz'), tgz(files));
  await writeFile(path.join(cwd, 'model.tar'), tar(files));
  await writeFile(path.join(cwd, 'notes.txt'), 'not a model\n');

  for (const [i, block] of blocks.entries()) {
    const steps = transcript(block);
    if (steps) {
      for (const { command, output } of steps) {
        // The output is what a failing request prints: run it without --fail-with-body.
        const r = await bash(`unset -f curl; ${command.replaceAll(README_URL, url)} -sS`, cwd);
        t.equal(r.code, 0, `${command}: ${r.stderr}`);
        t.equal(r.stdout.trim(), output.trim(), `block ${i + 1}: ${command} prints what the README shows`);
      }
    } else {
      const commands = block.replaceAll(README_URL, url);
      t.not(commands, block, `block ${i + 1} talks to the server`);
      const r = await bash(commands, cwd);
      t.equal(
        r.code,
        0,
        `block ${i + 1} runs to its end; it stopped at: ${r.stderr.trim()} (stdout: ${r.stdout.slice(-400)})`,
      );
    }
  }
  // The session ends by deleting the model.
  t.equal((await fetch(`${url}/models/intent-classifier`)).status, 404, 'the model is gone at the end');
});

t.test("the session's block really fails when a step does (the check is not vacuous)", async (t) => {
  const { url } = await start(t);
  const cwd = await tempDir(t);
  const r = await bash(`curl -X DELETE '${url}/models/intent-classifier?version=1'\necho after`, cwd);
  t.not(r.code, 0, 'a 404 stops the block');
  t.notMatch(r.stdout, /after/);
  t.match(r.stdout, /MODEL_NOT_FOUND|VERSION_NOT_FOUND/);
});
