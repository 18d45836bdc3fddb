import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * govmap's own entry, imported by absolute path so the project can live anywhere: the source in a
 * checkout, the build (its .d.ts) when `govmap bench scan` runs this from an installed dist/.
 */
const GOVMAP_ENTRY = fileURLToPath(new URL(`../../src/index.${import.meta.url.endsWith('.ts') ? 'ts' : 'js'}`, import.meta.url));
/** Where @types/node is, wherever it was installed (dist/ has no node_modules next to it). */
const TYPE_ROOTS = dirname(dirname(fileURLToPath(import.meta.resolve('@types/node/package.json'))));

export interface GeneratedProject {
  readonly root: string;
  readonly files: readonly string[];
  /** Lost updates planted (one per `lostUpdateEvery`-th file), as `src/<file>:<line>`. */
  readonly planted: readonly string[];
}

/** Line of the planted lost update's `store` call in a service file (see serviceFile). */
export const PLANTED_LINE = 44;

/**
 * Writes a TypeScript service project of `count` files under `root` (a package.json, a
 * tsconfig.json, src/service-NNNN.ts), each a realistic ~60-line module over a GovernedMap:
 * validated accounts, updateAsync credits, range reports, an import of its predecessor (so the
 * type checker has cross-file work), and every `lostUpdateEvery`-th file a lost update.
 */
export function generateProject(root: string, count: number, lostUpdateEvery = 10): GeneratedProject {
  mkdirSync(join(root, 'src'), { recursive: true });
  writeFileSync(join(root, 'package.json'), JSON.stringify({ name: 'generated-service', private: true, type: 'module' }, null, 2));
  writeFileSync(
    join(root, 'tsconfig.json'),
    JSON.stringify(
      {
        compilerOptions: {
          target: 'ES2023',
          lib: ['ES2023'],
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          types: ['node'],
          typeRoots: [TYPE_ROOTS],
          strict: true,
          noEmit: true,
          allowImportingTsExtensions: true,
          skipLibCheck: true,
        },
        include: ['src'],
      },
      null,
      2,
    ),
  );
  const files: string[] = [];
  const planted: string[] = [];
  for (let i = 0; i < count; i++) {
    const name = `service-${String(i).padStart(4, '0')}.ts`;
    const withBug = lostUpdateEvery > 0 && i % lostUpdateEvery === lostUpdateEvery - 1;
    writeFileSync(join(root, 'src', name), serviceFile(i, withBug));
    files.push(`src/${name}`);
    if (withBug) planted.push(`src/${name}:${PLANTED_LINE}`);
  }
  return { root, files, planted };
}

function serviceFile(i: number, withBug: boolean): string {
  const previous = i > 0 ? `import { accounts${i - 1} as previous } from './service-${String(i - 1).padStart(4, '0')}.ts';` : 'const previous: GovernedMap<string, unknown> | null = null;';
  const lines = [
    `import { GovernedMap, reject } from '${GOVMAP_ENTRY}';`,
    previous,
    '',
    `export interface Account${i} {`,
    '  readonly id: string;',
    '  readonly balance: bigint;',
    `  readonly status: 'active' | 'frozen';`,
    '}',
    '',
    `export const accounts${i} = new GovernedMap<string, Account${i}>({`,
    `  name: 'accounts_${i}',`,
    '  validate: (_id, next) => {',
    `    if (next.balance < 0n) return reject('BALANCE_UNDERFLOW', 'a balance never goes below zero');`,
    `    if (next.status !== 'active' && next.status !== 'frozen') return 'STATUS_UNKNOWN';`,
    '    return true;',
    '  },',
    '});',
    '',
    `async function screen${i}(id: string, amount: bigint): Promise<void> {`,
    '  await Promise.resolve();',
    `  if (id.length === 0 || amount <= 0n) throw new Error('screening refused');`,
    '}',
    '',
    `export async function credit${i}(id: string, amount: bigint): Promise<Account${i}> {`,
    `  return accounts${i}.updateAsync(id, async (current) => {`,
    `    await screen${i}(id, amount);`,
    `    const base = current ?? { id, balance: 0n, status: 'active' as const };`,
    '    return { ...base, balance: base.balance + amount };',
    '  });',
    '}',
    '',
    `export function frozen${i}(): string[] {`,
    '  const out: string[] = [];',
    `  accounts${i}.range((id, account) => {`,
    `    if (account.status === 'frozen') out.push(id);`,
    '  });',
    '  return out;',
    '}',
    '',
    `export async function debit${i}(id: string, amount: bigint): Promise<void> {`,
    `  const account = accounts${i}.load(id);`,
    `  if (account === undefined) throw new Error('no such account');`,
    `  await screen${i}(id, amount);`,
    withBug ? `  accounts${i}.store(id, { ...account, balance: account.balance - amount });` : `  accounts${i}.update(id, (current) => ({ ...(current ?? account), balance: (current ?? account).balance - amount }));`,
    '}',
    '',
    `export function total${i}(): bigint {`,
    '  let total = 0n;',
    `  accounts${i}.range((_id, account) => {`,
    '    total += account.balance;',
    '  });',
    '  return total + BigInt(previous === null ? 0 : previous.size);',
    '}',
    '',
  ];
  return lines.join('\n');
}
