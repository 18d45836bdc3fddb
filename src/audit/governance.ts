import type { BreakerTransition, TransitionListener } from '../breaker/index.ts';
import type { LeakSuspect } from '../sandbox/index.ts';
import type { SwitchAuditEvent, SwitchAuditHook } from '../switches/index.ts';
import type { GovernanceEvent } from './governance-event.ts';

/** What the adapters need of a recorder: its one governance entry point (a test can pass a fake). */
export interface GovernanceAuditSink {
  recordGovernanceEvent(event: GovernanceEvent): void;
}

/**
 * Adapters that turn the other parts' hooks into audit records, so wiring is one line:
 *
 *   group.onTransition(auditBreakerTransitions(recorder));
 *   new SwitchBoard({ audit: auditSwitchChanges(recorder) });
 *   new Sandbox({ onSuspect: auditLeakSuspects(recorder) });
 *
 * Each call writes before it returns (the recorder's write path); a recorder that cannot write
 * keeps the record in its backlog and names any loss with AUDIT_GAP, as for map writes.
 */

/** BREAKER_TRANSITION per state change: map = group (breaker name), resource_id = `name:key`, reason = the transition's. */
export function auditBreakerTransitions(recorder: GovernanceAuditSink, by = 'breaker'): TransitionListener {
  return (t: BreakerTransition) => {
    recorder.recordGovernanceEvent({
      op: 'BREAKER_TRANSITION',
      owner: t.name,
      resource: t.breaker,
      reason: t.reason,
      detail: { by, from: t.from, to: t.to, key: t.key, at: new Date(t.at).toISOString() },
    });
  };
}

/**
 * SWITCH_CHANGED per switch a change touched (one record per name, so a search by switch finds
 * it): map = board, resource_id = switch name, reason = the operator's reason, detail = who
 * (`by`), old and new board version, source, every name changed together. A change that touched
 * no switch (a no-op) is still recorded, with resource_id `*`.
 */
export function auditSwitchChanges(recorder: GovernanceAuditSink): SwitchAuditHook {
  return {
    record(e: SwitchAuditEvent): void {
      const names = e.changed.length === 0 ? ['*'] : e.changed;
      for (const name of names) {
        recorder.recordGovernanceEvent({
          op: 'SWITCH_CHANGED',
          owner: e.board,
          resource: name,
          reason: e.reason,
          detail: { by: e.actor, old_version: e.oldVersion, new_version: e.newVersion, source: e.source, changed: e.changed, at: e.at },
        });
      }
    },
  };
}

/** LEAK_SUSPECT per new suspect: resource_id = the suspected map (or `site` for a site's growth), reason = kind, detail = figures and creation site. */
export function auditLeakSuspects(recorder: GovernanceAuditSink, by = 'sandbox'): (suspect: LeakSuspect) => void {
  return (s: LeakSuspect) => {
    const site = s.site === null ? null : (s.site.frames[0] ?? null);
    let resource: string;
    let figures: Record<string, string | number | null | readonly string[]>;
    switch (s.kind) {
      case 'IDLE':
        resource = s.map;
        figures = { instances: s.instances, keys: s.keys, idle_for_ms_min: s.idleForMs.min, oldest_created_at: s.oldestCreatedAt };
        break;
      case 'SITE_GROWTH':
        resource = s.maps.length === 1 ? s.maps[0]! : s.maps.length === 0 ? 'site' : s.maps.join(',').slice(0, 512);
        figures = { maps: s.maps, live: s.live, grew_from: s.grewFrom, rising_samples: s.risingSamples, since: s.since };
        break;
      case 'KEY_GROWTH':
        resource = s.map;
        figures = { instance: s.instance, keys: s.keys, grew_from: s.grewFrom, rising_sweeps: s.risingSweeps, since: s.since };
        break;
    }
    recorder.recordGovernanceEvent({ op: 'LEAK_SUSPECT', owner: null, resource, reason: s.kind, detail: { by, ...figures, site } });
  };
}
