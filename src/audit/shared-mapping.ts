import { closeSync, constants, ftruncateSync, openSync, rmSync } from 'node:fs';
import type Koffi from 'koffi';
import { AuditJournalError } from './errors.ts';

/**
 * A file mapped shared into the process (mmap MAP_SHARED), through koffi: Node has no mmap, and
 * koffi calls libc with prebuilt binaries (no compiler on the machine). Loaded only when the
 * write journal is asked for. Linux only: the flag values below are Linux's.
 */
export interface SharedFileMapping {
  readonly path: string;
  readonly size: number;
  /** The mapped bytes; must not be touched after unmap(). */
  readonly buffer: ArrayBuffer;
  unmap(): void;
}

interface Libc {
  mmap(addr: null, len: number, prot: number, flags: number, fd: number, offset: number): unknown;
  munmap(addr: unknown, len: number): number;
  posix_fallocate(fd: number, offset: number, len: number): number;
  view(pointer: unknown, len: number): ArrayBuffer;
  address(pointer: unknown): bigint;
  errno(): number;
}

const PROT_READ = 1;
const PROT_WRITE = 2;
const MAP_SHARED = 1;
/** Faults the pages in now, not on the first copies into them. */
const MAP_POPULATE = 0x8000;
const MAP_FAILED = 0xffffffffffffffffn;
const ENOSPC = 28;

function journalSystemError(path: string, what: string, error: unknown): AuditJournalError {
  const e = error as NodeJS.ErrnoException;
  return new AuditJournalError(path, `${what} (${e.code ?? 'error'}: ${e.message ?? String(error)})`);
}

let libc: Promise<Libc> | undefined;

async function loadLibc(path: string): Promise<Libc> {
  if (process.platform !== 'linux') {
    throw new AuditJournalError(path, `the write journal maps a file with Linux's mmap; this is ${process.platform} (leave writeJournal off)`);
  }
  let koffi: typeof Koffi;
  try {
    koffi = (await import('koffi')).default;
  } catch (error) {
    throw new AuditJournalError(path, `the write journal needs the koffi package, which did not load (${error instanceof Error ? error.message : String(error)}); install it or leave writeJournal off`);
  }
  const lib = openCLibrary(koffi);
  if (lib === undefined) throw new AuditJournalError(path, 'the C library could not be loaded through koffi');
  const mmap = lib.func('void *mmap(void *addr, size_t len, int prot, int flags, int fd, int64_t offset)');
  const munmap = lib.func('int munmap(void *addr, size_t len)');
  const fallocate = lib.func('int posix_fallocate(int fd, int64_t offset, int64_t len)');
  return {
    mmap: (addr, len, prot, flags, fd, offset) => mmap(addr, len, prot, flags, fd, offset) as unknown,
    munmap: (addr, len) => munmap(addr, len) as number,
    posix_fallocate: (fd, offset, len) => fallocate(fd, offset, len) as number,
    view: (pointer, len) => koffi.view(pointer, len),
    address: (pointer) => koffi.address(pointer),
    errno: () => koffi.errno(),
  };
}

/**
 * Maps `path` (created if missing) at exactly `size` bytes, its blocks allocated on disk first:
 * a copy into a hole of a full disk would kill the process with SIGBUS, an allocation fails here.
 */
export async function mapSharedFile(path: string, size: number): Promise<SharedFileMapping> {
  libc ??= loadLibc(path);
  let c: Libc;
  try {
    c = await libc;
  } catch (error) {
    libc = undefined;
    throw error;
  }
  // Not truncated on open: recovery has read it already, and its size is reset below.
  let created = false;
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDWR | constants.O_CREAT | constants.O_EXCL, 0o600);
    created = true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw journalSystemError(path, 'could not be created', error);
    fd = openSync(path, constants.O_RDWR);
  }
  let pointer: unknown;
  try {
    try {
      ftruncateSync(fd, size);
    } catch (error) {
      throw journalSystemError(path, `could not be sized to ${size} bytes`, error);
    }
    const rc = c.posix_fallocate(fd, 0, size);
    if (rc !== 0) throw new AuditJournalError(path, `its ${size} bytes could not be allocated on disk (errno ${rc}${rc === ENOSPC ? ': no space left on the device' : ''}); free space, lower journalBytes, or set writeJournal: false`);
    pointer = c.mmap(null, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
    if (pointer === null || c.address(pointer) === MAP_FAILED) {
      throw new AuditJournalError(path, `mmap of ${size} bytes failed (errno ${c.errno()})`);
    }
  } catch (error) {
    // A file this call created holds nothing yet (the magic is written after mapping): left
    // behind, a zero-filled (sparse) journal would only confuse the next start.
    if (created) rmSync(path, { force: true });
    throw error;
  } finally {
    // The mapping keeps the file; the descriptor is not needed.
    closeSync(fd);
  }
  let mapped = true;
  return {
    path,
    size,
    buffer: c.view(pointer, size),
    unmap(): void {
      if (!mapped) return;
      mapped = false;
      c.munmap(pointer, size);
    },
  };
}

/** The C library through koffi, or undefined: glibc and musl name it differently. */
export function openCLibrary(koffi: typeof Koffi): ReturnType<typeof Koffi.load> | undefined {
  for (const name of ['libc.so.6', 'libc.so', 'libc.musl-x86_64.so.1', 'libc.musl-aarch64.so.1']) {
    try {
      return koffi.load(name);
    } catch {
      // Try the next name.
    }
  }
  return undefined;
}
