export type { MapStore } from './store.ts';
export { InProcessStore } from './in-process-store.ts';
export * from './shared-memory/index.ts';
