// The README's Options block lists every command and every option the CLI takes, so it cannot
// drift from the command line as commands and options are added (its wording is the README's;
// `mdevfs CMD --help` is tested in cli.test.ts).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { COMMANDS } from '../../src/cli/args';

const readme = readFileSync(join(__dirname, '..', '..', 'README.md'), 'utf8');
const section = readme.slice(readme.indexOf('## Options'));
const block = section.slice(section.indexOf('```text'), section.indexOf('```', section.indexOf('```text') + 7));

t.test('every command is in the README Options block', (t) => {
  t.ok(block.length > 100, 'the block was found');
  const missing = Object.keys(COMMANDS).filter((c) => c !== 'help' && !new RegExp(`^mdevfs ${c}\\b`, 'm').test(block));
  t.same(missing, []);
  t.end();
});

t.test('every option is in the README Options block', (t) => {
  const options = [...new Set(Object.values(COMMANDS).flatMap((c) => c.options))];
  t.ok(options.length > 5);
  const missing = options.filter((o) => !block.includes(`--${o}`));
  t.same(missing, []);
  t.end();
});
