/**
 * Issue 21 §6: the leftover of a crashed upload whose process is a zombie (exited, not yet reaped
 * by its parent) is swept: the zombie's pid still answers kill(pid, 0), but it will never
 * commit anything.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import t from 'tap';
import { isAbandoned, newStagedName } from '../../src/storage/shared/staging.js';

t.test('an upload staged by a zombie process counts as abandoned; a live one does not', async (t) => {
  // A parent that forks a child which exits at once, and never reaps it.
  const parent = spawn(
    'python3',
    ['-c', 'import os,sys,time\npid=os.fork()\nif pid==0: os._exit(0)\nprint(pid,flush=True)\ntime.sleep(30)'],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  t.teardown(() => parent.kill('SIGKILL'));
  const line = await new Promise<string>((resolve) => createInterface({ input: parent.stdout }).once('line', resolve));
  const zombie = Number(line);
  const ours = newStagedName();
  const asIf = (pid: number) => ours.replace(/^\d+/, String(pid));
  const now = new Date();
  for (let i = 0; i < 100; i++) {
    if (/\) Z/.test(readFileSync(`/proc/${zombie}/stat`, 'latin1'))) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  t.doesNotThrow(() => process.kill(zombie, 0), 'the zombie still takes signals');
  t.equal(isAbandoned(asIf(zombie), now, new Set()), true, "the zombie's upload is a leftover");
  t.equal(isAbandoned(asIf(parent.pid!), now, new Set()), false, "a live process's upload is not");
  t.equal(isAbandoned(ours, now, new Set()), true, "this process's own, not active, is (as before)");
});
