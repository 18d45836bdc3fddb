import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

/**
 * The TypeScript and JavaScript in README.md and docs/*.md is what a user copies first: each block
 * must compile under the project's strict settings against govmap's public entry points (the
 * package.json "exports" a dependent sees), so a renamed option, export or method breaks here,
 * not in the user's build. Names a block assumes from its context (`balances`, `board`, your
 * `gateway`) are declared `any`; everything it calls on govmap is checked.
 */
const root = fileURLToPath(new URL('../..', import.meta.url));
const documents = ['README.md', ...['audit', 'breaker', 'dashboard', 'lint', 'redis', 'routing', 'sandbox', 'shared-memory', 'switches'].map((d) => `docs/${d}.md`)];

interface Snippet {
  readonly where: string;
  readonly file: string;
  readonly text: string;
}

/** One virtual file per block, or per part of a block written as two files (`// main thread` then `// worker`). */
function snippets(): Snippet[] {
  const out: Snippet[] = [];
  for (const document of documents) {
    const text = readFileSync(join(root, document), 'utf8');
    for (const m of text.matchAll(/^```(?:ts|typescript|js|javascript)[ \t]*\n([\s\S]*?)^```/gm)) {
      const line = text.slice(0, m.index).split('\n').length;
      const parts: string[][] = [[]];
      for (const l of m[1]!.split('\n')) {
        if (/^\/\/ (main thread|worker|[\w-]+\.(js|ts))\s*$/.test(l) && parts.at(-1)!.some((p) => p.trim() !== '')) parts.push([]);
        parts.at(-1)!.push(l);
      }
      parts.forEach((lines, i) => {
        let body = lines.join('\n');
        // A rule's entry in an ESLint config (`'govmap/forbidden-calls': [...]`) is a property, not a statement.
        if (/^\s*['"][^'"]+['"]\s*:/.test(body)) body = `export const fragment = {\n${body}\n};`;
        const file = join(root, 'docs-snippets', `${document.replace(/\W/g, '_')}_L${line}_${i}.ts`);
        out.push({ where: `${document}:${line}${parts.length > 1 ? ` (part ${i + 1})` : ''}`, file, text: `${body}\nexport {};\n` });
      });
    }
  }
  return out;
}

/** `govmap/<part>` as a dependent resolves it, pointed at the source the published .d.ts is built from. */
function entryPoints(): Record<string, string[]> {
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { name: string; exports: Record<string, string | { types?: string }> };
  const paths: Record<string, string[]> = {};
  for (const [subpath, target] of Object.entries(pkg.exports)) {
    const types = typeof target === 'string' ? target : target.types;
    if (types === undefined || !types.endsWith('.d.ts')) continue;
    paths[pkg.name + subpath.slice(1)] = [join(root, types.replace(/^\.\/dist\//, '').replace(/\.d\.ts$/, '.ts'))];
  }
  return paths;
}

const UNDECLARED = new Set([2304, 2552, 18004]);

function check(blocks: readonly Snippet[], declared: ReadonlyMap<string, ReadonlySet<string>>): readonly ts.Diagnostic[] {
  const config = ts.getParsedCommandLineOfConfigFile(join(root, 'tsconfig.json'), {}, { ...ts.sys, onUnRecoverableConfigFileDiagnostic: (d) => assert.fail(ts.flattenDiagnosticMessageText(d.messageText, ' ')) })!;
  // A name the block takes from its surroundings is `any`: its callbacks' parameters too.
  const options: ts.CompilerOptions = { ...config.options, noImplicitAny: false, noEmit: true, paths: entryPoints() };
  const virtual = new Map(blocks.map((b) => [b.file, b.text + [...(declared.get(b.file) ?? [])].map((n) => `declare var ${n}: any;\n`).join('')]));
  const base = ts.createCompilerHost(options);
  const host: ts.CompilerHost = {
    ...base,
    fileExists: (f) => virtual.has(f) || base.fileExists(f),
    readFile: (f) => virtual.get(f) ?? base.readFile(f),
    getSourceFile: (f, language, ...rest) => (virtual.has(f) ? ts.createSourceFile(f, virtual.get(f)!, language) : base.getSourceFile(f, language, ...rest)),
  };
  const program = ts.createProgram({ rootNames: blocks.map((b) => b.file), options, host });
  return blocks.flatMap((b) => {
    const source = program.getSourceFile(b.file)!;
    return [...program.getSyntacticDiagnostics(source), ...program.getSemanticDiagnostics(source)];
  });
}

test('every TypeScript block of README.md and docs/*.md compiles under strict against the package exports', () => {
  const blocks = snippets();
  assert.ok(blocks.length >= 15, `only ${blocks.length} code blocks found: is the extraction still matching the docs?`);
  const declared = new Map<string, Set<string>>();
  for (const d of check(blocks, declared)) {
    const name = UNDECLARED.has(d.code) ? /'([^']+)'/.exec(ts.flattenDiagnosticMessageText(d.messageText, '\n'))?.[1] : undefined;
    if (name !== undefined && d.file !== undefined) declared.set(d.file.fileName, (declared.get(d.file.fileName) ?? new Set()).add(name));
  }
  const problems = check(blocks, declared).map((d) => {
    const block = blocks.find((b) => b.file === d.file?.fileName);
    const line = d.file !== undefined && d.start !== undefined ? d.file.getLineAndCharacterOfPosition(d.start).line + 1 : 0;
    return `${block?.where ?? d.file?.fileName ?? '?'}, line ${line} of the block: TS${d.code} ${ts.flattenDiagnosticMessageText(d.messageText, ' ')}`;
  });
  assert.deepEqual(problems, []);
});
