/**
 * What a command must finish before govmap exits on a closed stdout (see main.ts). Exiting at
 * once left a running demo's audit spool open, as after a crash (the next start records a CRASH
 * gap), and cut the answers underway.
 */
let hook: (() => Promise<void>) | null = null;

/** Runs `stop` before the exit on a closed stdout; returns the function that removes it. */
export function beforeClosedPipeExit(stop: () => Promise<void>): () => void {
  hook = stop;
  return () => {
    if (hook === stop) hook = null;
  };
}

/** The stop to await before exiting, if a command registered one. */
export function closedPipeStop(): (() => Promise<void>) | null {
  return hook;
}
