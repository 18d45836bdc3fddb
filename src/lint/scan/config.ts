import { readFile } from 'node:fs/promises';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { ScanUsageError } from './errors.ts';
import type { Preset } from './scan.ts';

/**
 * The optional scan config file (`govmap scan --config govmap-scan.yaml`, JSON or YAML):
 *
 *     preset: strict                     # recommended (default) | strict
 *     project: tsconfig.json             # default: each file's nearest tsconfig.json
 *     ignore: ['src/generated/**']       # ESLint globs, relative to the scan root
 *     rules:                             # ESLint-style overrides of govmap rules
 *       govmap/no-plain-shared-cache: off
 *       govmap/forbidden-calls: [error, { calls: [{ module: fs, name: rmSync, reason: ... }] }]
 *
 * Command-line flags win over the file. Rule options are checked against each rule's schema
 * when the scan starts.
 */
export interface ScanConfig {
  readonly preset?: Preset;
  readonly project?: string;
  readonly ignore?: readonly string[];
  readonly rules?: Readonly<Record<string, unknown>>;
}

const severity = z.union([z.enum(['off', 'warn', 'error']), z.literal(0), z.literal(1), z.literal(2)]);
// zod's own message for a failed union is "Invalid input": name the value and what a level is.
const ruleSetting = z.union([severity, z.tuple([severity]).rest(z.unknown())], {
  error: (issue) => `${JSON.stringify(issue.input)} is not a rule level: off, warn or error (or 0, 1, 2), or [level, options...]`,
});

const schema = z
  .object({
    preset: z.enum(['recommended', 'strict']).optional(),
    project: z.string().min(1).optional(),
    ignore: z.array(z.string().min(1)).optional(),
    rules: z.record(z.string(), ruleSetting).optional(),
  })
  .strict();

export async function loadScanConfig(path: string): Promise<ScanConfig> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (cause) {
    throw new ScanUsageError('GOVMAP_SCAN_CONFIG_INVALID', `scan config "${path}" cannot be read: ${(cause as Error).message}`, { path }, { cause });
  }
  let data: unknown;
  try {
    data = /\.json$/i.test(path) ? JSON.parse(text) : parseYaml(text);
  } catch (cause) {
    throw new ScanUsageError('GOVMAP_SCAN_CONFIG_INVALID', `scan config "${path}" is not valid ${/\.json$/i.test(path) ? 'JSON' : 'YAML'}: ${(cause as Error).message.split('\n')[0]}`, { path }, { cause });
  }
  const parsed = schema.safeParse(data ?? {});
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const where = issue.path.length > 0 ? issue.path.join('.') : '(top level)';
    const keys = issue.path.length === 0 ? ' (allowed keys: preset, project, ignore, rules)' : '';
    throw new ScanUsageError('GOVMAP_SCAN_CONFIG_INVALID', `scan config "${path}": ${where}: ${issue.message}${keys}`, { path, field: where });
  }
  return parsed.data;
}
