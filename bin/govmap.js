#!/usr/bin/env node
// Runs the compiled CLI; in a source checkout without a build, runs the TypeScript directly
// (Node >= 22.18 strips types natively).
try {
  await import('../dist/src/cli/main.js');
} catch (error) {
  if (error?.code !== 'ERR_MODULE_NOT_FOUND' || !String(error.message).includes('dist')) throw error;
  await import('../src/cli/main.ts');
}
