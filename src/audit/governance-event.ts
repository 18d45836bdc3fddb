import { AuditEventError } from './errors.ts';
import { GOVERNANCE_OPS } from './event.ts';
import type { GovernanceOpType } from './event.ts';

/** A detail value: flat JSON scalars (and lists of strings), so the record stays small and greppable. */
export type GovernanceDetailValue = string | number | boolean | null | readonly string[];

/**
 * A governance event as a part hands it to `AuditRecorder.recordGovernanceEvent`.
 *
 * Invariants checked before anything is written: `op` is one of GOVERNANCE_OPS; `resource` is a
 * non-empty string of at most 512 UTF-16 units; `detail` serialises to a JSON object of at most
 * MAX_DETAIL_CHARS characters. The record's own `actor` stays the recorder's (the service
 * instance, PCI DSS 10.2.2's "who acted"); the person or system that asked for the change is
 * `by` inside the detail.
 */
export interface GovernanceEvent {
  readonly op: GovernanceOpType;
  /** The owner: breaker group, switch board, or null. Written as `map`. */
  readonly owner?: string | null;
  /** What changed: breaker (`name:key`), switch name, suspected map. Written as `resource_id`. */
  readonly resource: string;
  /** Why (transition reason, the operator's reason, suspect kind). Written as `reason`. */
  readonly reason?: string | null;
  /** Who asked for it (`by`), before/after and the like. Written as `detail`, a JSON object string. */
  readonly detail: Readonly<Record<string, GovernanceDetailValue>>;
}

/** Longest detail, in characters of its JSON text: a governance record stays a few hundred bytes. */
export const MAX_DETAIL_CHARS = 4096;
const MAX_RESOURCE_CHARS = 512;
const OPS: ReadonlySet<string> = new Set(GOVERNANCE_OPS);

/** Checks `event` and returns its detail as JSON text; throws AuditEventError naming the broken rule. */
export function checkGovernanceEvent(event: GovernanceEvent): string {
  if (event === null || typeof event !== 'object') throw new AuditEventError('event', 'must be an object', event);
  if (!OPS.has(event.op)) throw new AuditEventError('op', `must be one of ${GOVERNANCE_OPS.join(', ')}`, event.op);
  if (typeof event.resource !== 'string' || event.resource.length === 0 || event.resource.length > MAX_RESOURCE_CHARS) {
    throw new AuditEventError('resource', `must be a non-empty string of at most ${MAX_RESOURCE_CHARS} characters`, event.resource);
  }
  if (event.owner !== undefined && event.owner !== null && typeof event.owner !== 'string') throw new AuditEventError('owner', 'must be a string or null', event.owner);
  if (event.reason !== undefined && event.reason !== null && typeof event.reason !== 'string') throw new AuditEventError('reason', 'must be a string or null', event.reason);
  const detail = event.detail;
  if (detail === null || typeof detail !== 'object' || Array.isArray(detail)) throw new AuditEventError('detail', 'must be a plain object', detail);
  for (const [name, value] of Object.entries(detail)) {
    const ok =
      value === null ||
      typeof value === 'string' ||
      typeof value === 'boolean' ||
      (typeof value === 'number' && Number.isFinite(value)) ||
      (Array.isArray(value) && value.every((x) => typeof x === 'string'));
    if (!ok) throw new AuditEventError(`detail.${name}`, 'must be a string, finite number, boolean, null or list of strings (money: decimal string)', value);
  }
  const text = JSON.stringify(detail);
  if (text.length > MAX_DETAIL_CHARS) throw new AuditEventError('detail', `must serialise to at most ${MAX_DETAIL_CHARS} characters`, `${text.length} characters`);
  return text;
}
