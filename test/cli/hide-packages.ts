/**
 * Preloaded (`--import`, through NODE_OPTIONS so child processes get it too): the packages named
 * in GOVMAP_TEST_HIDE_PACKAGES (comma-separated) do not resolve, as in a project that installed
 * govmap without its devDependencies.
 */
import { registerHooks } from 'node:module';

const hidden = new Set((process.env.GOVMAP_TEST_HIDE_PACKAGES ?? '').split(',').filter((p) => p !== ''));

registerHooks({
  resolve(specifier, context, nextResolve) {
    const name = specifier.startsWith('@') ? specifier.split('/').slice(0, 2).join('/') : specifier.split('/')[0]!;
    if (hidden.has(name)) {
      throw Object.assign(new Error(`Cannot find package '${name}' (hidden by test/cli/hide-packages.ts)`), { code: 'ERR_MODULE_NOT_FOUND' });
    }
    return nextResolve(specifier, context);
  },
});
