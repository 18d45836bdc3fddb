import { GovMapError } from '../map/errors.ts';

/**
 * The audit's typed failures. Codes are stable (`GOVMAP_AUDIT_*`); messages name the path,
 * option or record at fault and the rule it broke.
 */

/** An audit option broke its rule (checked once, when the recorder or forwarder is created). */
export class AuditConfigurationError extends GovMapError {
  constructor(option: string, rule: string, received?: unknown) {
    super(
      'GOVMAP_AUDIT_INVALID_CONFIGURATION',
      `invalid audit option "${option}": ${rule}${received === undefined ? '' : ` (received ${describe(received)})`}`,
      { option, rule },
    );
  }
}

/** Another live recorder already writes this spool directory: two writers would break its chain. */
export class AuditSpoolLockedError extends GovMapError {
  constructor(dir: string, holder: string) {
    super(
      'GOVMAP_AUDIT_SPOOL_LOCKED',
      `audit spool "${dir}" is in use by ${holder}; one recorder per spool directory (give each instance its own dir)`,
      { dir, holder },
    );
  }
}

/** Who holds a forwarder lock, as its file says (null fields: the file could not be read). */
export interface ForwarderLockHolder {
  readonly pid: number | null;
  readonly host: string | null;
  readonly since: string | null;
}

/**
 * Another Kafka forwarder (in this process or another, live or on another host) already forwards
 * this spool to this topic: two would send every record twice and race on the checkpoint.
 */
export class AuditForwarderLockedError extends GovMapError {
  constructor(dir: string, topic: string, lockPath: string, holder: ForwarderLockHolder, note = '') {
    const who = holder.pid === null ? 'another forwarder (its lock file cannot be read)' : `process ${holder.pid} on ${holder.host ?? 'an unknown host'} since ${holder.since ?? 'an unknown time'}`;
    super(
      'GOVMAP_AUDIT_FORWARDER_LOCKED',
      `audit Kafka forwarder: spool "${dir}" is already forwarded to topic "${topic}" by ${who} (lock ${lockPath}${note === '' ? '' : `; ${note}`}); one forwarder per spool and topic: stop the other one first`,
      { dir, topic, lock: lockPath, pid: holder.pid, host: holder.host, since: holder.since },
    );
  }
}

/**
 * The spool could not be written or fsynced (disk full, I/O error). Records are kept in memory
 * (bounded) and retried; a write whose record could not be made durable is reported through this.
 */
export class AuditNotDurableError extends GovMapError {
  constructor(dir: string, cause: unknown) {
    const why = cause instanceof Error ? cause.message : String(cause);
    super(
      'GOVMAP_AUDIT_NOT_DURABLE',
      `audit spool "${dir}" cannot be written (${why}); the operation was applied but its audit record is not yet durable`,
      { dir, applied: true },
      { cause },
    );
  }
}

/**
 * The spool directory (option `dir`) cannot be used: the path is a file, lies under a file, or
 * cannot be created or written (permissions, a full disk). `errno` is the system's code.
 */
export class AuditSpoolDirectoryError extends GovMapError {
  constructor(dir: string, path: string, errno: string, why: string, cause?: unknown) {
    super(
      'GOVMAP_AUDIT_SPOOL_DIRECTORY',
      `audit option "dir": cannot use "${dir}" as the spool directory: ${why} (${errno}${path === dir ? '' : ` on ${path}`}); give a directory this process can create and write`,
      { option: 'dir', dir, path, errno },
      cause === undefined ? undefined : { cause },
    );
  }
}

/**
 * A spool path given to read (`tailSpool`, `govmap audit tail`) cannot be read as one: not there,
 * no segments, only compressed ones, or a segment that cannot be opened. `errno` is the system's
 * code when the system refused. Nothing was printed from it.
 */
export class AuditSpoolPathError extends GovMapError {
  constructor(path: string, rule: string, errno?: string, cause?: unknown) {
    super('GOVMAP_AUDIT_SPOOL_PATH', `${path}: ${rule}`, { path, rule, ...(errno === undefined ? {} : { errno }) }, cause === undefined ? undefined : { cause });
  }
}

/**
 * The spool holds bytes no recorder wrote: after a clean stop (AUDIT_STOPPED, sealed) the log
 * can only grow by the next start's AUDIT_STARTED. The recorder refuses to seal them into its
 * chain; the operator finds out what they are with `govmap audit verify`.
 */
export class AuditTamperedError extends GovMapError {
  constructor(dir: string, file: string, offset: number, what: string) {
    super(
      'GOVMAP_AUDIT_TAMPERED',
      `audit spool "${dir}": ${file} at byte ${offset}: ${what}; the recorder will not seal them into its chain. Run \`govmap audit verify ${dir}\` and keep the spool as evidence; start the recorder on a new directory meanwhile`,
      { dir, file, offset },
    );
  }
}

/** The write journal (option `writeJournal`) could not be opened, mapped or read. */
export class AuditJournalError extends GovMapError {
  constructor(path: string, rule: string) {
    super('GOVMAP_AUDIT_JOURNAL', `audit write journal "${path}": ${rule}`, { path, rule });
  }
}

/** The recorder (or the Kafka forwarder) was stopped; it records (forwards) nothing more. */
export class AuditStoppedError extends GovMapError {
  constructor(operation: string, what = 'audit recorder', when = 'after stop()') {
    super('GOVMAP_AUDIT_STOPPED', `${what}: ${operation}() called ${when}`, { operation });
  }
}

/** A Kafka send did not complete within its own deadline (the client's retries were not trusted to end). */
export class KafkaSendTimeoutError extends GovMapError {
  constructor(topic: string, messages: number, timeoutMs: number) {
    super(
      'GOVMAP_AUDIT_KAFKA_SEND_TIMEOUT',
      `audit forwarder: sending ${messages} record(s) to Kafka topic "${topic}" did not complete within ${timeoutMs} ms; it will be retried from the last acknowledged record`,
      { topic, messages, timeoutMs },
    );
  }
}

/** `forwarder.drain(ms)` ran out of time before Kafka acknowledged the spool written before the call. */
export class KafkaDrainTimeoutError extends GovMapError {
  constructor(topic: string, timeoutMs: number, lagBytes: number, lastError: string | null) {
    super(
      'GOVMAP_AUDIT_KAFKA_DRAIN_TIMEOUT',
      `audit forwarder: Kafka topic "${topic}" not caught up within ${timeoutMs} ms (lag ${lagBytes} bytes; last error: ${lastError ?? 'none'}); forwarding goes on`,
      { topic, timeoutMs, lagBytes, lastError },
    );
  }
}

function describe(value: unknown): string {
  // JSON has no NaN or Infinity (it writes null), and an operator must see what was passed.
  if (typeof value === 'number' && !Number.isFinite(value)) return String(value);
  try {
    const json = JSON.stringify(value, (_key, v: unknown) => (typeof v === 'number' && !Number.isFinite(v) ? String(v) : v)) as string | undefined;
    if (json !== undefined) return json.length > 80 ? `${json.slice(0, 77)}...` : json;
  } catch {
    // Not JSON (a bigint, a cycle): its type is enough to act on.
  }
  return typeof value;
}

/** A governance event handed to `recordGovernanceEvent` breaks the audit contract; nothing was written. */
export class AuditEventError extends GovMapError {
  constructor(field: string, rule: string, received?: unknown) {
    super(
      'GOVMAP_AUDIT_INVALID_EVENT',
      `invalid governance audit event "${field}": ${rule}${received === undefined ? '' : ` (received ${describe(received)})`}`,
      { field, rule },
    );
  }
}
