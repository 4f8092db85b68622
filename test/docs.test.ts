import { readFile } from 'node:fs/promises';
import t from 'tap';
import { KNOWN_VARIABLES } from '../src/config.js';

t.test('README and .env.example document every setting the server reads', async (t) => {
  const readme = await readFile('README.md', 'utf8');
  const example = await readFile('.env.example', 'utf8');
  t.ok(KNOWN_VARIABLES.length > 30);
  for (const variable of KNOWN_VARIABLES) {
    t.ok(readme.includes(`\`${variable}\``), `README documents ${variable}`);
    t.match(example, new RegExp(`^(# )?${variable}=`, 'm'), `.env.example lists ${variable}`);
  }
});

t.test('README opens with the install/start and test commands', async (t) => {
  const head = (await readFile('README.md', 'utf8')).split('\n').slice(0, 15).join('\n');
  t.match(head, /npm install && npm start/);
  t.match(head, /npm test/);
});
