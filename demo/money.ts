/**
 * Money on the wire: integer minor units as a JSON string of decimal digits ("1050" is 10.50 in
 * a two-decimal currency). Never a JSON number: past 2^53 a number silently loses cents, and a
 * float cannot hold 0.10 exactly. Parsing is strict; anything else is refused with the rule it
 * broke, never guessed at.
 */
export const INT64_MAX = 9_223_372_036_854_775_807n;

export type AmountProblem =
  | 'AMOUNT_MISSING'
  | 'AMOUNT_NOT_STRING'
  | 'AMOUNT_MALFORMED'
  | 'AMOUNT_NOT_POSITIVE'
  | 'AMOUNT_TOO_LARGE';

export class AmountError extends Error {
  readonly code: AmountProblem;
  constructor(code: AmountProblem, message: string) {
    super(message);
    this.name = 'AmountError';
    this.code = code;
  }
}

// At most 19 digits: INT64_MAX has 19, so anything longer is too large before BigInt sees it.
const DIGITS = /^(0|[1-9][0-9]{0,18})$/;

/** Parses a positive amount in minor units, 1 ..= INT64_MAX. */
export function parsePositiveAmount(raw: unknown, field = 'amount'): bigint {
  if (raw === undefined || raw === null) throw new AmountError('AMOUNT_MISSING', `"${field}" is required: integer minor units as a decimal string, e.g. "1050"`);
  if (typeof raw !== 'string') {
    const type = jsonTypeOf(raw);
    // Why a number is refused is worth saying; any other type is plainly not an amount.
    const why = type === 'number' ? ': a JSON number loses cents past 2^53 and cannot hold 0.10 exactly' : '';
    throw new AmountError('AMOUNT_NOT_STRING', `"${field}" must be a decimal string of integer minor units (e.g. "1050"), not a JSON ${type} (got ${echo(raw)})${why}`);
  }
  if (raw.length > 19 && /^[0-9]+$/.test(raw)) throw new AmountError('AMOUNT_TOO_LARGE', `"${field}" exceeds the int64 maximum ${INT64_MAX}`);
  if (!DIGITS.test(raw)) {
    throw new AmountError(
      'AMOUNT_MALFORMED',
      `"${field}" must be digits only with no sign, decimal point, exponent, spaces or leading zeros (got ${JSON.stringify(raw.slice(0, 40))})`,
    );
  }
  const value = BigInt(raw);
  if (value === 0n) throw new AmountError('AMOUNT_NOT_POSITIVE', `"${field}" must be greater than zero`);
  if (value > INT64_MAX) throw new AmountError('AMOUNT_TOO_LARGE', `"${field}" exceeds the int64 maximum ${INT64_MAX}`);
  return value;
}

/**
 * Whether `raw` is a decimal string of minor units as the wire writes them (digits, no sign or
 * leading zero, at most 19 digits), zero included: what a limit such as the `payments.limit`
 * switch must be before an amount is compared with it.
 */
export function isMinorUnits(raw: unknown): raw is string {
  return typeof raw === 'string' && DIGITS.test(raw);
}

/** The JSON type of a parsed value, as a client wrote it: an array is not an "object" to them. */
function jsonTypeOf(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  return typeof value;
}

/** A parsed JSON value in a message: its JSON text, cut at 40 characters. */
function echo(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length <= 40 ? text : `${text.slice(0, 40)}…`;
}

/** Minor units to the wire. */
export function formatAmount(value: bigint): string {
  return value.toString();
}
