import { ErrorCode, OpenFeatureEventEmitter, ProviderEvents, StandardResolutionReasons } from '@openfeature/server-sdk';
import type { EvaluationContext, JsonValue as OfJsonValue, Provider, ResolutionDetails } from '@openfeature/server-sdk';
import type { SwitchBoard } from './board.ts';
import { ConfigurationError } from '../map/errors.ts';
import type { JsonValue } from './definition.ts';
import type { SwitchContext, SwitchEvaluation, SwitchReason } from './targeting.ts';

/** govmap reasons -> OpenFeature's standard ones; the govmap reason travels in flagMetadata. */
const REASONS: Record<SwitchReason, string> = {
  ON: StandardResolutionReasons.STATIC,
  TARGETED: StandardResolutionReasons.TARGETING_MATCH,
  ROLLOUT_INCLUDED: StandardResolutionReasons.SPLIT,
  ROLLOUT_EXCLUDED: StandardResolutionReasons.SPLIT,
  ROLLOUT_KEY_MISSING: StandardResolutionReasons.DEFAULT,
  NOT_TARGETED: StandardResolutionReasons.TARGETING_MATCH,
  DENIED: StandardResolutionReasons.TARGETING_MATCH,
  DISABLED: StandardResolutionReasons.DISABLED,
  KILLED: StandardResolutionReasons.DISABLED,
  UNKNOWN_SWITCH: StandardResolutionReasons.ERROR,
};

/**
 * An OpenFeature provider over a SwitchBoard: the same snapshots, the same targeting, the same
 * per-request pin (inside `board.run()` every evaluation reads the pinned version).
 *
 * Evaluation never throws: an unknown flag gives the caller's default with FLAG_NOT_FOUND, a
 * flag of another type gives the default with TYPE_MISMATCH (objects, lists and null all answer
 * getObjectValue, as in the SDK's own in-memory provider), anything unexpected the default
 * with GENERAL. Every change of the board emits PROVIDER_CONFIGURATION_CHANGED with the keys
 * of the flags that changed.
 *
 * Context: `orgId`, `txnType`, `account` and any other string, finite number or boolean attribute are
 * available to targeting by name; `targetingKey` as `targetingKey`.
 */
export class GovmapSwitchProvider implements Provider {
  readonly metadata = { name: 'govmap-switches' } as const;
  readonly runsOn = 'server' as const;
  readonly events = new OpenFeatureEventEmitter();
  readonly #board: SwitchBoard;
  #unsubscribe: (() => void) | null = null;

  constructor(board: SwitchBoard) {
    // From plain JavaScript a missing board reached `board.subscribe` as a bare TypeError.
    // Duck-typed, not instanceof: a board from another copy of govmap (dist/ and src/) still serves.
    if (typeof (board as Partial<SwitchBoard> | null)?.subscribe !== 'function' || typeof (board as Partial<SwitchBoard>).evaluate !== 'function') throw new ConfigurationError('board', 'GovmapSwitchProvider serves the switches of a SwitchBoard: pass one', board);
    this.#board = board;
    this.#subscribe();
  }

  /**
   * Called by the SDK each time the provider is set where it was not bound: after the SDK closed
   * it (replaced in its domain, OpenFeature.close()), a provider set again heard no more changes.
   */
  // eslint-disable-next-line @typescript-eslint/require-await -- the SDK's contract is a promise
  async initialize(): Promise<void> {
    this.#subscribe();
  }

  #subscribe(): void {
    if (this.#unsubscribe !== null) return;
    this.#unsubscribe = this.#board.subscribe((change) => {
      this.events.emit(ProviderEvents.ConfigurationChanged, {
        flagsChanged: [...change.changed],
        metadata: { version: change.next.version, actor: change.next.actor },
      });
    });
  }

  // eslint-disable-next-line @typescript-eslint/require-await -- the SDK's contract is a promise
  async onClose(): Promise<void> {
    this.#unsubscribe?.();
    this.#unsubscribe = null;
  }

  resolveBooleanEvaluation(flagKey: string, defaultValue: boolean, context: EvaluationContext): Promise<ResolutionDetails<boolean>> {
    return Promise.resolve(this.#resolve(flagKey, defaultValue, context, 'boolean'));
  }

  resolveStringEvaluation(flagKey: string, defaultValue: string, context: EvaluationContext): Promise<ResolutionDetails<string>> {
    return Promise.resolve(this.#resolve(flagKey, defaultValue, context, 'string'));
  }

  resolveNumberEvaluation(flagKey: string, defaultValue: number, context: EvaluationContext): Promise<ResolutionDetails<number>> {
    return Promise.resolve(this.#resolve(flagKey, defaultValue, context, 'number'));
  }

  resolveObjectEvaluation<T extends OfJsonValue>(flagKey: string, defaultValue: T, context: EvaluationContext): Promise<ResolutionDetails<T>> {
    return Promise.resolve(this.#resolve(flagKey, defaultValue, context, 'object'));
  }

  #resolve<T>(flagKey: string, defaultValue: T, context: EvaluationContext, type: 'boolean' | 'string' | 'number' | 'object'): ResolutionDetails<T> {
    let evaluation: SwitchEvaluation;
    try {
      const switchContext = toSwitchContext(context);
      // Inside board.run() the pinned snapshot answers; a context given here refines targeting only.
      evaluation = this.#board.view(switchContext).evaluate(flagKey);
    } catch (error) {
      return { value: defaultValue, reason: StandardResolutionReasons.ERROR, errorCode: ErrorCode.GENERAL, errorMessage: `govmap switch evaluation failed: ${String(error)}` };
    }
    const flagMetadata = { version: evaluation.version, govmapReason: evaluation.reason };
    if (evaluation.reason === 'UNKNOWN_SWITCH') {
      return {
        value: defaultValue,
        reason: StandardResolutionReasons.ERROR,
        errorCode: ErrorCode.FLAG_NOT_FOUND,
        errorMessage: `no switch named ${JSON.stringify(flagKey.slice(0, 80))} in snapshot v${evaluation.version}`,
        flagMetadata,
      };
    }
    if (!servesType(evaluation.value, type)) {
      return {
        value: defaultValue,
        reason: StandardResolutionReasons.ERROR,
        errorCode: ErrorCode.TYPE_MISMATCH,
        errorMessage: `switch ${JSON.stringify(flagKey)} serves ${jsonType(evaluation.value)} values; asked for ${type}`,
        flagMetadata,
      };
    }
    return { value: evaluation.value as T, variant: evaluation.on ? 'on' : 'off', reason: REASONS[evaluation.reason], flagMetadata };
  }
}

/**
 * Whether a value answers a request of `type`. OpenFeature's object flags are structures of
 * any JSON shape: a list (a switch serving allowed currencies) or null is one too, as the SDK's
 * own in-memory provider decides (by `typeof`).
 */
function servesType(value: JsonValue, type: 'boolean' | 'string' | 'number' | 'object'): boolean {
  return type === 'object' ? value === null || typeof value === 'object' : typeof value === type;
}

function jsonType(value: JsonValue): string {
  return value === null ? 'null' : Array.isArray(value) ? 'array' : typeof value === 'object' ? 'object' : typeof value;
}

/** OpenFeature context -> targeting context: strings, finite numbers and booleans as strings; others (NaN, a Date, an object) ignored. */
export function toSwitchContext(context: EvaluationContext | undefined): SwitchContext | undefined {
  if (context === undefined) return undefined;
  const keys = Object.keys(context);
  if (keys.length === 0) return undefined;
  const out: Record<string, string> = {};
  for (const key of keys) {
    const value = context[key];
    if (typeof value === 'string') out[key] = value;
    // Finite only, the rule of targeting's attribute(): "NaN" would be a rollout key every malformed orgId shares.
    else if ((typeof value === 'number' && Number.isFinite(value)) || typeof value === 'boolean') out[key] = String(value);
  }
  return out;
}
