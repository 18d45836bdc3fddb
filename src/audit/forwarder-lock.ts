import { createHash } from 'node:crypto';
import { linkSync, readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { AuditForwarderLockedError } from './errors.ts';
import type { ForwarderLockHolder } from './errors.ts';
import { isAlive } from './recovery.ts';
import { makeDirectorySync } from '../map/make-directory.ts';

/** Topics up to this long keep the file names they always had (`kafka-<topic>.checkpoint`). */
const PLAIN_TOPIC_CHARS = 200;

/**
 * The stem of every file the forwarder of `topic` keeps in the spool: `<stem>.checkpoint`,
 * `<stem>.lock` and their temporary names (up to ~40 bytes more). Kafka takes topics of up to 249
 * characters, and a file name holds 255 bytes: `kafka-<topic>` with its suffixes failed at start
 * with ENAMETOOLONG past ~215. A longer topic gets a readable prefix and the SHA-256 of the whole
 * name; `~` is not a topic character, so no other topic's stem can be the same.
 */
export function forwarderFileStem(topic: string): string {
  if (topic.length <= PLAIN_TOPIC_CHARS) return `kafka-${topic}`;
  return `kafka-${topic.slice(0, 120)}~${createHash('sha256').update(topic).digest('hex')}`;
}

/**
 * One Kafka forwarder per spool and topic: `kafka-<topic>.lock` beside the topic's checkpoint
 * (`kafka-<topic>.checkpoint`), created exclusively (link(2): fails if it exists, like O_EXCL) at start and holding the pid, host
 * and start time of its forwarder. Two forwarders on one spool and topic would each send every
 * record and race on the checkpoint (its temp file, and its position going back and forth).
 * The lock matches the checkpoint: forwarders of one spool to different topics share nothing.
 * (A topic longer than 200 characters: see forwarderFileStem.)
 */
export function forwarderLockPath(dir: string, topic: string): string {
  return join(dir, `${forwarderFileStem(topic)}.lock`);
}

/** Locks held by this process, released on its exit (a crash or a kill leaves a stale lock, taken over). */
const held = new Set<() => void>();
/** What those locks hold (each unique: pid, host, start time, topic). */
const heldContents = new Set<string>();
let exitHook = false;

/**
 * Takes the forwarder lock of `topic` on `dir`; returns its release (idempotent). A lock held by
 * a live process (this one included: a second forwarder in the same process), or by a process on
 * another host (whose liveness cannot be checked from here), is refused with
 * AuditForwarderLockedError naming the holder. A lock whose holder ran on this host and is gone
 * is taken over.
 */
export function acquireForwarderLock(dir: string, topic: string): () => void {
  // A forwarder may start before its recorder has created the spool.
  makeDirectorySync(dir);
  const path = forwarderLockPath(dir, topic);
  const me = JSON.stringify({ pid: process.pid, host: hostname(), since: new Date().toISOString(), topic });
  for (let attempt = 0; attempt < 5; attempt++) {
    if (create(path, me)) return hold(path, me);
    const text = readLock(path);
    if (text === undefined) continue; // Released meanwhile: try again.
    const holder = parseHolder(text);
    if (holder.pid === null || holder.host === null) {
      // Damaged (a lock is never seen half written: see create): never taken over.
      throw new AuditForwarderLockedError(dir, topic, path, holder, `remove ${path} if no forwarder runs on this spool`);
    }
    if (holder.host !== hostname()) {
      throw new AuditForwarderLockedError(dir, topic, path, holder, `remove ${path} if that host is gone`);
    }
    if (isAlive(holder.pid) && !earlierSelf(holder, text)) throw new AuditForwarderLockedError(dir, topic, path, holder);
    takeOver(path, text);
  }
  throw new AuditForwarderLockedError(dir, topic, path, { pid: null, host: null, since: null }, 'other forwarders are racing for it');
}

/**
 * Creates the lock with its content in one step: written to a file of our own, then linked to the
 * lock's name (fails if it exists, like O_EXCL), so no one ever reads an empty or partial lock.
 */
function create(path: string, me: string): boolean {
  const tmp = `${path}.new-${process.pid}-${Math.random().toString(36).slice(2)}`;
  writeFileSync(tmp, me, { flag: 'wx' });
  try {
    linkSync(tmp, path);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    return false;
  } finally {
    unlinkSync(tmp);
  }
}

function hold(path: string, me: string): () => void {
  let released = false;
  const release = (): void => {
    if (released) return;
    released = true;
    held.delete(release);
    heldContents.delete(me);
    try {
      if (readFileSync(path, 'utf8') === me) unlinkSync(path);
    } catch {
      // Already gone: nothing to release.
    }
  };
  held.add(release);
  heldContents.add(me);
  if (!exitHook) {
    exitHook = true;
    process.on('exit', () => {
      for (const r of [...held]) r();
    });
  }
  return release;
}

/**
 * A lock naming this pid but written before this process started: left by a killed process whose
 * pid this one got again, as a restarted container's does (its processes start in the same
 * order). Taken for a live holder, the forwarder would be refused after every crash.
 */
function earlierSelf(holder: ForwarderLockHolder, text: string): boolean {
  // One this process holds is never stale, whatever the clock did since (a step back).
  if (holder.pid !== process.pid || holder.since === null || heldContents.has(text)) return false;
  const since = Date.parse(holder.since);
  return Number.isFinite(since) && since < performance.timeOrigin;
}

function readLock(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

function parseHolder(text: string): ForwarderLockHolder {
  try {
    const v = JSON.parse(text) as { pid?: unknown; host?: unknown; since?: unknown } | null;
    if (v !== null && typeof v === 'object' && Number.isSafeInteger(v.pid) && (v.pid as number) > 0 && typeof v.host === 'string') {
      return { pid: v.pid as number, host: v.host, since: typeof v.since === 'string' ? v.since : null };
    }
  } catch {
    // Not JSON: below.
  }
  return { pid: null, host: null, since: null };
}

/**
 * Removes the stale lock whose content is `stale`, and only that one. Removing by name could
 * remove the fresh lock of another forwarder that took the stale one over between our read and
 * our unlink (both would then run): the lock is first moved to a name of our own, atomically, and
 * only removed if it is still the stale one; a fresh lock moved by mistake is put back (link:
 * never over a lock created meanwhile).
 */
function takeOver(path: string, stale: string): void {
  const aside = `${path}.stale-${process.pid}-${Math.random().toString(36).slice(2)}`;
  try {
    renameSync(path, aside);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return; // Someone else removed it.
    throw error;
  }
  let moved: string | undefined;
  try {
    moved = readFileSync(aside, 'utf8');
  } catch {
    moved = undefined;
  }
  if (moved !== stale) {
    try {
      linkSync(aside, path);
    } catch {
      // A newer lock is in place already: its holder wins.
    }
  }
  try {
    unlinkSync(aside);
  } catch {
    // Gone already.
  }
}
