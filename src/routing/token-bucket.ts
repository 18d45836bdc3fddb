import { ConfigurationError } from '../map/errors.ts';
import { optionKeys, refuseUnknownOptions } from '../map/known-options.ts';

export interface TokenBucketOptions {
  /** Tokens added per second (the sustained rate). > 0. */
  readonly ratePerSec: number;
  /** Most tokens held at once (the largest burst). >= 1. Default: ceil(ratePerSec). */
  readonly burst?: number;
  /** Milliseconds, monotonic. Default `performance.now`. */
  readonly clock?: () => number;
}

/** Every key of TokenBucketOptions (the compiler checks the two stay the same): any other is refused. */
/**
 * Slack when comparing the token count with 1. Refill adds `dt * rate / 1000` in floating point,
 * so calls exactly 1/rate apart can find 0.9999999999999999 tokens (rate 3: every third call
 * refused, the bucket running at 2/3 of its rate). Far below a token, far above the rounding.
 */
const EPSILON = 1e-9;

const TOKEN_BUCKET_OPTIONS = optionKeys<TokenBucketOptions>({
  ratePerSec: true, burst: true, clock: true,
});

/**
 * A token bucket: `take()` succeeds while tokens remain; tokens refill continuously at
 * `ratePerSec`, up to `burst`. Starts full. Refill is computed on demand from the clock, so an
 * idle bucket costs nothing:
 *   tokens(t) = min(burst, tokens(t0) + (t - t0) * ratePerSec / 1000)
 */
export class TokenBucket {
  readonly ratePerSec: number;
  readonly burst: number;
  readonly #clock: () => number;
  #tokens: number;
  #at: number;

  constructor(options: TokenBucketOptions) {
    refuseUnknownOptions(options, TOKEN_BUCKET_OPTIONS, 'TokenBucket');
    if (!(Number.isFinite(options.ratePerSec) && options.ratePerSec > 0)) throw new ConfigurationError('ratePerSec', 'a positive number of tokens per second', options.ratePerSec);
    const burst = options.burst ?? Math.max(1, Math.ceil(options.ratePerSec));
    if (!(Number.isFinite(burst) && burst >= 1)) throw new ConfigurationError('burst', 'at least 1 token', burst);
    this.ratePerSec = options.ratePerSec;
    this.burst = burst;
    this.#clock = options.clock ?? (() => performance.now());
    this.#tokens = burst;
    this.#at = this.#clock();
  }

  /** Takes one token if there is one. */
  take(): boolean {
    this.#refill();
    if (this.#tokens < 1 - EPSILON) return false;
    this.#tokens = Math.max(0, this.#tokens - 1);
    return true;
  }

  /** Milliseconds until a token is available (0 when one is). */
  waitMs(): number {
    this.#refill();
    return this.#tokens >= 1 - EPSILON ? 0 : ((1 - this.#tokens) * 1000) / this.ratePerSec;
  }

  get tokens(): number {
    this.#refill();
    return this.#tokens;
  }

  #refill(): void {
    const now = this.#clock();
    if (now > this.#at) {
      this.#tokens = Math.min(this.burst, this.#tokens + ((now - this.#at) * this.ratePerSec) / 1000);
      this.#at = now;
    }
  }
}
