import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

/**
 * govmap as a dependency: what `npm pack` puts in the tarball, and whether what it compiles into
 * dist/ can run there. A project that installs govmap gets dist/ only (no .ts to run: Node does
 * not strip types under node_modules) and none of govmap's devDependencies.
 */
const root = fileURLToPath(new URL('../..', import.meta.url));

describe('the package', () => {
  test('the tarball carries the license its package.json names (Apache-2.0 requires a copy with every distribution)', () => {
    // --ignore-scripts: list the files without building dist/ (the prepare script) first.
    const r = spawnSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: root, encoding: 'utf8', timeout: 60_000 });
    assert.equal(r.status, 0, r.stderr);
    const [pack] = JSON.parse(r.stdout) as Array<{ files: Array<{ path: string }> }>;
    const files = pack!.files.map((f) => f.path);
    const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { license: string };
    assert.equal(pkg.license, 'Apache-2.0');
    assert.ok(files.includes('LICENSE'), `no LICENSE in the tarball: ${files.filter((f) => !f.includes('/')).join(', ')}`);
    assert.match(readFileSync(join(root, 'LICENSE'), 'utf8'), /Apache License\s+Version 2\.0, January 2004/);
  });

  test('nothing compiled into dist/ builds a URL to a .ts file: dist/ has only the .js (govmap bench routing, scan)', () => {
    // The files tsconfig.build.json compiles, and the test/ modules they import (compiled too).
    const build = JSON.parse(readFileSync(join(root, 'tsconfig.build.json'), 'utf8')) as { include: string[] };
    const pending = build.include.flatMap((dir) => typeScriptFiles(join(root, dir)));
    const compiled = new Set<string>();
    while (pending.length > 0) {
      const file = pending.pop()!;
      if (compiled.has(file)) continue;
      compiled.add(file);
      for (const m of readFileSync(file, 'utf8').matchAll(/from '(\.\.?\/[^']+\.ts)'/g)) pending.push(resolve(dirname(file), m[1]!));
    }
    const offenders: string[] = [];
    for (const file of compiled) {
      readFileSync(file, 'utf8').split('\n').forEach((line, i) => {
        // A literal path ending in .ts: `import.meta.url.endsWith('.ts') ? 'ts' : 'js'` is the way.
        if (/new URL\(\s*(['"`])[^'"`$]*\.ts\1/.test(line)) offenders.push(`${relative(root, file)}:${i + 1}: ${line.trim()}`);
      });
    }
    assert.ok(compiled.has(join(root, 'test/lint/generate-project.ts')), 'bench/scan.bench.ts imports test/lint/generate-project.ts, compiled with it');
    assert.deepEqual(offenders, []);
  });
});

function typeScriptFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && e.name.endsWith('.ts') && !e.name.endsWith('.d.ts'))
    .map((e) => join(e.parentPath, e.name));
}
