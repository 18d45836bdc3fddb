import { createHash } from 'node:crypto';

/** Version tag of the fingerprint scheme; it names the SARIF partialFingerprints key. */
export const FINGERPRINT_KEY = 'govmap/v1';

/** Hex digits kept of the SHA-256: 128 bits, far beyond any project's finding count. */
const FINGERPRINT_HEX_DIGITS = 32;

export interface Fingerprintable {
  readonly ruleId: string;
  readonly file: string;
  readonly line: number;
  readonly column: number;
  /** Non-null when silenced in the source (see below); absent counts as active. */
  readonly suppression?: string | null;
}

/**
 * Stable identities for findings, for baselines and for SARIF `partialFingerprints` (GitHub
 * code scanning uses them to follow an alert across commits). A finding is identified by its
 * rule, its file (root-relative, `/`-separated) and the text of its line with whitespace
 * collapsed, not by its line number: adding code above it does not make it "new". Several
 * findings of one rule on identical lines of one file are told apart by their order.
 * Suppressed findings are numbered apart from active ones (and hashed with a marker, so the
 * two never share a fingerprint): baselines hold only active findings, and a suppressed twin
 * added above an accepted finding, or fixed and deleted, must not shift its number and make
 * it "new".
 * Invariant: same inputs, same fingerprints, on any machine.
 */
export function fingerprintAll<T extends Fingerprintable>(findings: readonly T[], lineText: (finding: T) => string): Map<T, string> {
  const ordered = [...findings].sort((a, b) => a.file.localeCompare(b.file) || a.line - b.line || a.column - b.column || a.ruleId.localeCompare(b.ruleId));
  const seen = new Map<string, number>();
  const out = new Map<T, string>();
  for (const finding of ordered) {
    const line = `${finding.ruleId}\u0000${finding.file}\u0000${lineText(finding).trim().replace(/\s+/g, ' ')}`;
    // Active findings keep the scheme's original input, so existing baselines still match.
    const identity = finding.suppression == null ? line : `${line}\u0000suppressed`;
    const occurrence = seen.get(identity) ?? 0;
    seen.set(identity, occurrence + 1);
    const digest = createHash('sha256').update(`${identity}\u0000${occurrence}`).digest('hex');
    out.set(finding, digest.slice(0, FINGERPRINT_HEX_DIGITS));
  }
  return out;
}
