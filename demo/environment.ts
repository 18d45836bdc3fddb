import { GovMapError } from '../src/map/errors.ts';

/**
 * A demo environment variable whose value cannot work (GOVMAP_SWITCH_FILE, GOVMAP_ROUTE_FILE,
 * GOVMAP_DEMO_STATE_DIR). No flag was typed, so the message names the variable and its value.
 * `details.errno` is the file system's reason, when it refused the path; absent when the value
 * itself breaks a rule (empty, a content that does not parse or breaks the schema). `govmap demo`
 * reads it to tell a value that can never work (exit 2) from a machine refusing one now (1).
 */
export class DemoEnvironmentError extends GovMapError {
  constructor(variable: string, value: string, rule: string, errno?: string, cause?: unknown) {
    super(
      'GOVMAP_DEMO_ENVIRONMENT_INVALID',
      value === '' ? `${variable} is set but empty: ${rule}` : `${variable}=${value}: ${rule}`,
      errno === undefined ? { variable, value } : { variable, value, errno },
      cause === undefined ? undefined : { cause },
    );
  }
}

/** The refusals of a watched file at start: it cannot be read (the first two), or its content breaks a rule. */
const SOURCE_CODES = new Set(['GOVMAP_SWITCH_SOURCE_FAILED', 'GOVMAP_ROUTE_TABLE_SOURCE_FAILED']);
const CONTENT_CODES = new Set(['GOVMAP_SWITCH_CONFIG_INVALID', 'GOVMAP_SWITCH_NAME_INVALID', 'GOVMAP_ROUTE_TABLE_INVALID']);

/**
 * Starts a part that loads the file named by `variable` (when `given` is undefined, the part
 * reads the variable), restating the file's refusal with the variable's name: the user set an
 * environment variable and must be told which one to fix. `unset` says what unsetting it gives.
 */
export async function withEnvironmentFile<T>(variable: string, given: string | undefined, unset: string, start: () => Promise<T>): Promise<T> {
  const value = given === undefined ? process.env[variable] : undefined;
  if (value === undefined) return start();
  // An empty value is most often an unset shell variable in a deploy script: refused, never
  // taken as "no file", which would serve the built-in set the file was meant to replace.
  if (value === '') throw new DemoEnvironmentError(variable, value, `give a file path, or unset it for ${unset}`);
  try {
    return await start();
  } catch (error) {
    if (!(error instanceof GovMapError)) throw error;
    const hint = `; fix it, or unset ${variable} for ${unset}`;
    if (SOURCE_CODES.has(error.code)) {
      const errno = (error.cause as NodeJS.ErrnoException | undefined)?.code;
      throw new DemoEnvironmentError(variable, value, `${String(error.details.source)}: ${String(error.details.rule)}${hint}`, typeof errno === 'string' ? errno : undefined, error);
    }
    if (CONTENT_CODES.has(error.code)) throw new DemoEnvironmentError(variable, value, `${error.message}${hint}`, undefined, error);
    throw error;
  }
}
