import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { govmapSync as govmap } from './govmap-process.ts';

/** The README's CLI section says what the CLI does: every option is in its synopsis, and usage errors look as described. */
const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
const section = readme.slice(readme.indexOf('## The CLI'), readme.indexOf('\n## ', readme.indexOf('## The CLI') + 1));

/** The synopsis of `govmap <command>`: its line in the README's code block and the indented lines after it. */
function synopsisOf(command: string): string {
  const block = section.slice(section.indexOf('```') + 3, section.indexOf('```', section.indexOf('```') + 3));
  const lines = block.split('\n');
  const start = lines.findIndex((l) => l.startsWith(`govmap ${command} `));
  assert.ok(start >= 0, `no synopsis of govmap ${command}`);
  const end = lines.findIndex((l, i) => i > start && !/^\s/.test(l));
  return lines.slice(start, end === -1 ? undefined : end).join('\n');
}

for (const command of ['demo', 'scan', 'audit verify', 'audit tail', 'sandbox report', 'advise']) {
  test(`every option of govmap ${command} --help is in the README synopsis`, () => {
    const help = govmap(...command.split(' '), '--help');
    assert.equal(help.status, 0, help.stderr);
    // `-n, --lines <n>`: the synopsis may use either spelling.
    const options = [...help.stdout.matchAll(/^\s+(?:(-\w), )?(--[a-z][a-z-]*)/gm)].map((m) => [m[2]!, m[1]] as const).filter(([long]) => long !== '--help');
    assert.ok(options.length > 0, help.stdout);
    const synopsis = synopsisOf(command);
    const said = (flag: string | undefined): boolean => flag !== undefined && new RegExp(`(?<![a-z-])${flag}(?![a-z-])`).test(synopsis);
    const missing = options.filter(([long, short]) => !said(long) && !said(short)).map(([long]) => long);
    assert.deepEqual(missing, [], `missing from the README synopsis of govmap ${command}`);
  });
}

test('a usage error looks as the README says: the error line, then the (add --help for usage) hint, exit 2', () => {
  const r = govmap('demo', '--bogus');
  assert.equal(r.status, 2);
  assert.deepEqual(r.stderr.trimEnd().split('\n'), ["error: unknown option '--bogus'", '(add --help for usage)']);
  assert.match(section, /a second line follows: `\(add --help for usage\)`/);
  assert.doesNotMatch(section, /is one line on stderr/);
});

test('npm test -- <files> with a file that does not exist exits 2 naming it, rather than passing on the files that do', () => {
  const runner = fileURLToPath(new URL('../run.ts', import.meta.url));
  const r = spawnSync(process.execPath, [runner, 'test/map/no-such.test.ts', 'test/cli/govmap-process.ts'], {
    encoding: 'utf8',
    timeout: 60_000,
    env: { ...process.env, GOVMAP_INFRA: '0' },
  });
  assert.equal(r.status, 2, r.stdout + r.stderr);
  assert.match(r.stderr, /test\/map\/no-such\.test\.ts: no such test file/);
  assert.match(readme, /`npm test -- <files>` runs only those/);
});
