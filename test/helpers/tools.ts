/**
 * The external programs tests run as subprocesses: the Python venv (.emulators/venv, made by
 * scripts/python/install.sh from scripts/python/requirements.txt — the AWS CLI v1, boto3, aiohttp,
 * requests) and Debian's pigz, git and GNU tar (scripts/system/install.sh). `npm test` installs
 * them (scripts/install.sh); a missing one fails the test, never skips it.
 *
 * Every tool starts from a clean environment, not the developer's: no AWS profile, credentials,
 * region or endpoint of theirs leaks in, no config file is read and the instance metadata service
 * is never asked for credentials. The caller passes what a test needs (`env`, `--endpoint-url`).
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';

const ROOT = path.resolve(import.meta.dirname, '../..');
export const VENV = path.join(ROOT, '.emulators', 'venv');

export interface RunResult {
  stdout: string;
  stderr: string;
  code: number;
}

export interface RunOptions {
  /** Added to (and overriding) the clean environment. */
  env?: Record<string, string>;
  cwd?: string;
  /** Written to the process's standard input, which is closed otherwise. */
  input?: string | Buffer;
  /** Killed (and rejected) after this long; 120 s unless told. */
  timeoutMs?: number;
}

/** A non-zero exit (or a kill) of a tool: the message has its stderr; the output is kept. */
export class ToolError extends Error implements RunResult {
  constructor(
    readonly command: string,
    readonly code: number,
    readonly stdout: string,
    readonly stderr: string,
    why: string,
  ) {
    super(`${command} ${why}: ${stderr.trim() || stdout.trim() || '(no output)'}`);
    this.name = 'ToolError';
  }
}

/** Absolute path of a program in the venv's bin/; throws when it is not there. */
export function venvBin(name: string): string {
  const file = path.join(VENV, 'bin', name);
  if (!existsSync(file)) {
    throw new Error(`${name} is not installed at ${file}: run scripts/install.sh (npm test does this)`);
  }
  return file;
}

/** Settings that keep the AWS CLI and boto3 off anything of the developer's and off the network. */
const AWS_ISOLATION: Record<string, string> = {
  AWS_PAGER: '',
  AWS_CONFIG_FILE: '/dev/null',
  AWS_SHARED_CREDENTIALS_FILE: '/dev/null',
  AWS_EC2_METADATA_DISABLED: 'true',
  // botocore sends `Expect: 100-continue` even with an empty body; MinIO answers such a PUT at
  // once, and the next request on that kept-alive connection then reads a garbled response (an
  // upload part without ETag, after a 30 s stall): `aws s3 sync` of an empty file next to a
  // multipart one failed 4 runs in 5. botocore's own opt-out (boto/botocore#3123, #3124):
  BOTO_EXPERIMENTAL__NO_EMPTY_CONTINUE: 'true',
};

function cleanEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const name of ['HOME', 'TMPDIR', 'LANG', 'LC_ALL', 'TZ']) {
    const value = process.env[name];
    if (value !== undefined) env[name] = value;
  }
  env.PATH = `${path.join(VENV, 'bin')}${path.delimiter}${process.env.PATH ?? '/usr/bin:/bin'}`;
  env.VIRTUAL_ENV = VENV;
  env.PYTHONNOUSERSITE = '1';
  env.PYTHONDONTWRITEBYTECODE = '1';
  return { ...env, ...AWS_ISOLATION };
}

/** Runs `cmd` with a clean environment; resolves on exit 0, rejects with a ToolError otherwise. */
export function run(cmd: string, args: string[], options: RunOptions = {}): Promise<RunResult> {
  const shown = [path.basename(cmd), ...args].join(' ');
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      cwd: options.cwd,
      env: { ...cleanEnv(), ...options.env },
      stdio: [options.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timeoutMs = options.timeoutMs ?? 120_000;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(new ToolError(shown, -1, stdout, stderr || err.message, 'could not start'));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) return resolve({ stdout, stderr, code });
      const why = timedOut
        ? `did not finish within ${timeoutMs} ms`
        : signal
          ? `was killed by ${signal}`
          : `exited with ${code}`;
      reject(new ToolError(shown, code ?? -1, stdout, stderr, why));
    });
    if (options.input !== undefined) child.stdin!.end(options.input);
  });
}

/**
 * The venv's AWS CLI (v1). `env` carries AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and
 * AWS_DEFAULT_REGION; `args` the command and `--endpoint-url`.
 */
export function awsCli(
  args: string[],
  env: Record<string, string>,
  options: Omit<RunOptions, 'env'> = {},
): Promise<RunResult> {
  return run(venvBin('aws'), args, { ...options, env });
}

/** The venv's python (boto3, aiohttp, requests importable), e.g. python(['-c', code]). */
export function python(args: string[], options: RunOptions = {}): Promise<RunResult> {
  return run(venvBin('python'), args, options);
}
