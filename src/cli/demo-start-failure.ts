import { isAbsolute, relative, resolve, sep } from 'node:path';
import { GovMapError } from '../map/errors.ts';
import { redactUrl } from '../stores/redis/connect.ts';

/** Exit statuses of a demo that cannot start: 2 an option value that can never work, 1 one the machine refuses now. */
export const EXIT_START_FAILED = 1;
export const EXIT_USAGE = 2;

/** What the demo was started with, as far as a start failure can be traced back to it. */
export interface StartOptions {
  readonly host: string;
  readonly port: number;
  /** None for the bare baseline, which has no audit: no failure of it is traced to --audit-dir. */
  readonly auditDir?: string;
  /** `--redis` or `--redis-cluster` and its value as typed, when the balances are in Redis. */
  readonly redis?: { readonly flag: '--redis' | '--redis-cluster'; readonly value: string };
}

/** One line for the user, and the exit status. */
export interface StartFailure {
  readonly message: string;
  readonly exitCode: number;
}

/** GovMapError codes of an option value refused by its own check (demo/redis.ts, demo/audit.ts). */
const OPTION_VALUE_CODES = new Set(['GOVMAP_INVALID_CONFIGURATION', 'GOVMAP_AUDIT_INVALID_CONFIGURATION']);
/**
 * The library options the demo fills from its flags. Their own refusals name the option
 * ("endpoints"), which no one typed on the command line: the flag to fix is named instead.
 */
const FLAG_OF_OPTION: Readonly<Record<string, string>> = { endpoints: '--etcd', instance: '--instance', 'redis.url': '--redis', 'redis.clusterNodes': '--redis-cluster', 'redis.tls': '--redis-ca-file', 'redis.tls.caFile': '--redis-ca-file', allowedHosts: '--allowed-hosts' };
/** The audit recorder's refusal of its spool directory; `details.errno` says why. */
const SPOOL_DIRECTORY_CODE = 'GOVMAP_AUDIT_SPOOL_DIRECTORY';
/**
 * Why a path can never be a spool directory, whoever runs the demo: a file is in the way, a
 * link dangles or loops, the name is too long. Other reasons (permissions, a read-only or full
 * disk) are the machine's, for now.
 */
const IMPOSSIBLE_DIRECTORY = new Set(['EEXIST', 'ENOTDIR', 'ENOENT', 'ENAMETOOLONG', 'ELOOP']);
/**
 * A demo environment variable's refusal (demo/environment.ts), `details.errno` the file system's
 * reason if any. A file is impossible also when it is a directory (EISDIR).
 */
const ENVIRONMENT_CODE = 'GOVMAP_DEMO_ENVIRONMENT_INVALID';
const IMPOSSIBLE_PATH = new Set([...IMPOSSIBLE_DIRECTORY, 'EISDIR']);

/**
 * Turns a failure of `startDemo` into one line naming the option (or environment variable) and
 * its value, instead of a Node stack. The exit status follows the CLI's rule: 2 when the value is
 * plainly wrong (a host that does not resolve or is not on this machine, an audit dir that is a
 * file or under one, a GOVMAP_SWITCH_FILE that is missing, a directory or not valid), 1 when the
 * value is fine but the machine refuses it now (a port in use or privileged, a file or directory
 * without permission or on a read-only file system). Null for anything else: a bug keeps its stack.
 */
export function describeStartFailure(error: unknown, options: StartOptions): StartFailure | null {
  if (error instanceof GovMapError && error.code === SPOOL_DIRECTORY_CODE) {
    // Its message names the recorder's option ("dir"); the user typed --audit-dir.
    return {
      message: `--audit-dir ${options.auditDir}: ${error.message.replace(/^audit option "dir": /, '')}`,
      exitCode: IMPOSSIBLE_DIRECTORY.has(String(error.details.errno)) ? EXIT_USAGE : EXIT_START_FAILED,
    };
  }
  if (error instanceof GovMapError && error.code === ENVIRONMENT_CODE) {
    // Without errno the value broke a rule of its own (empty, a file that does not parse).
    const errno = error.details.errno;
    return { message: error.message, exitCode: errno === undefined || (typeof errno === 'string' && IMPOSSIBLE_PATH.has(errno)) ? EXIT_USAGE : EXIT_START_FAILED };
  }
  if (error instanceof GovMapError && error.code === 'GOVMAP_REDIS_UNAVAILABLE' && error.details.map === null && options.redis !== undefined) {
    // The library's own line names neither the address nor the reason; a typo in a host name
    // and a Redis that is down both read "Redis unavailable (CONNECTION_LOST)" without them.
    const { flag, value } = options.redis;
    const shownValue = value.split(',').map((node) => redactUrl(node.trim())).join(',');
    const why = error.cause instanceof Error ? `: ${error.cause.message.split('\n')[0]!.slice(0, 200)}` : '';
    return { message: `${flag} ${shownValue}: no Redis answered (${String(error.details.reason)}${why}); start it, or give the address of one that runs`, exitCode: EXIT_START_FAILED };
  }
  if (error instanceof GovMapError) {
    const option = error.details.option;
    const flag = typeof option === 'string' && Object.hasOwn(FLAG_OF_OPTION, option) ? FLAG_OF_OPTION[option]! : null;
    const message = flag === null ? error.message : error.message.replace(`invalid option "${String(option)}"`, `invalid option "${flag}"`);
    return { message, exitCode: OPTION_VALUE_CODES.has(error.code) ? EXIT_USAGE : EXIT_START_FAILED };
  }
  const e = error as NodeJS.ErrnoException & { hostname?: string };
  if (typeof e?.code !== 'string' || typeof e.syscall !== 'string') return null;
  const host = `--host ${options.host}`;
  const port = `--port ${options.port}`;
  if (e.syscall === 'getaddrinfo' && e.hostname === options.host) {
    if (e.code === 'ENOTFOUND' || e.code === 'EAI_NONAME') return { message: `${host}: no such host (${e.code}); give an address or name of this machine, e.g. 127.0.0.1 or 0.0.0.0`, exitCode: EXIT_USAGE };
    return { message: `${host}: the name could not be resolved now (${e.code}); retry, or give an address, e.g. 127.0.0.1`, exitCode: EXIT_START_FAILED };
  }
  if (e.syscall === 'listen') {
    switch (e.code) {
      case 'EADDRNOTAVAIL':
        return { message: `${host}: not an address of this machine (EADDRNOTAVAIL); give one of its interfaces, e.g. 127.0.0.1 or 0.0.0.0`, exitCode: EXIT_USAGE };
      case 'EADDRINUSE':
        return { message: `port ${options.port} on ${options.host} is in use; pass --port <n> (or PORT=<n>), or --port 0 for any free port`, exitCode: EXIT_START_FAILED };
      case 'EACCES':
      case 'EPERM':
        return { message: `${port} on ${options.host}: permission denied (${e.code}); ports below 1024 need privileges: pass --port 8080, or --port 0 for any free port`, exitCode: EXIT_START_FAILED };
      default:
        return { message: `${host} ${port}: cannot listen (${e.code}): ${e.message}`, exitCode: EXIT_START_FAILED };
    }
  }
  if (typeof e.path === 'string' && options.auditDir !== undefined && onAuditPath(e.path, options.auditDir, e.syscall === 'mkdir')) {
    const dir = `--audit-dir ${options.auditDir}`;
    // A raw system error: what the recorder threw before it named its own (GOVMAP_AUDIT_SPOOL_DIRECTORY).
    switch (e.code) {
      case 'EEXIST':
      case 'ENOTDIR':
        return { message: `${dir}: a file is in the way (${e.code} on ${e.path}); the audit spool needs a directory`, exitCode: EXIT_USAGE };
      case 'ENOENT':
        return { message: `${dir}: ${e.path} does not exist and cannot be created (ENOENT: a dangling link on the way?)`, exitCode: EXIT_USAGE };
      case 'EACCES':
      case 'EPERM':
        return { message: `${dir}: permission denied on ${e.path} (${e.code}); give a directory this user can write`, exitCode: EXIT_START_FAILED };
      case 'EROFS':
        return { message: `${dir}: ${e.path} is on a read-only file system (EROFS); give a writable directory`, exitCode: EXIT_START_FAILED };
      default:
        return { message: `${dir}: cannot create the audit spool (${e.code}): ${e.message}`, exitCode: EXIT_START_FAILED };
    }
  }
  return null;
}

/**
 * True when `path` is the audit dir or inside it, or, for a mkdir (which creates the missing
 * parents too and fails on one of them), one of its ancestors.
 */
function onAuditPath(path: string, auditDir: string, creating: boolean): boolean {
  const dir = resolve(auditDir);
  const at = resolve(path);
  const within = (parent: string, child: string): boolean => {
    const rel = relative(parent, child);
    return rel !== '..' && !rel.startsWith(`..${sep}`) && !isAbsolute(rel);
  };
  return within(dir, at) || (creating && within(at, dir));
}
