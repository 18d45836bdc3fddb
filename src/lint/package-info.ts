import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** How far up from this file govmap's package.json can be (src/lint/ or dist/src/lint/). */
const MAX_LEVELS = 5;

/**
 * govmap's own version, for the plugin's `meta` (ESLint's cache key) and SARIF's `tool.driver`.
 * Read from the package.json above this file, whether running from source or from dist/.
 */
export const GOVMAP_VERSION: string = findVersion();

function findVersion(): string {
  let directory = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < MAX_LEVELS; i++) {
    try {
      const pkg = JSON.parse(readFileSync(join(directory, 'package.json'), 'utf8')) as { name?: unknown; version?: unknown };
      if (pkg.name === 'govmap' && typeof pkg.version === 'string') return pkg.version;
    } catch {
      // no package.json at this level; keep walking up
    }
    directory = dirname(directory);
  }
  return '0.0.0';
}
