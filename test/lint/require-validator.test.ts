import { requireValidator } from '../../src/lint/rules/require-validator.ts';
import { GOVMAP, typedRuleTester } from './rule-tester.ts';

// Every case starts with these 2 lines, so the code under test begins on line 3.
const header = `import { GovernedMap, allOf, reject } from '${GOVMAP}';
import type { Validator } from '${GOVMAP}';
`;

typedRuleTester().run('require-validator', requireValidator, {
  valid: [
    { name: 'a business rule', code: `${header}new GovernedMap<string, bigint>({ name: 'balances', validate: (_id, next) => (next >= 0n ? true : 'BALANCE_UNDERFLOW') });` },
    { name: 'a block body with a refusal', code: `${header}new GovernedMap<string, bigint>({ name: 'b', validate(_id, next) { if (next < 0n) return reject('BALANCE_UNDERFLOW'); return true; } });` },
    { name: 'a validator that throws to refuse', code: `${header}new GovernedMap<string, bigint>({ name: 'b', validate: (_id, next) => { if (next < 0n) throw new RangeError('negative'); return true; } });` },
    { name: 'a validator from a variable whose body depends on the value', code: `${header}const nonNegative: Validator<string, bigint> = (_k, v) => v >= 0n || 'NEG';\nnew GovernedMap<string, bigint>({ name: 'b', validate: nonNegative });` },
    { name: 'allOf with one real rule', code: `${header}new GovernedMap<string, bigint>({ name: 'b', validate: allOf(() => true, (_k, v: bigint) => v >= 0n || 'NEG') });` },
    { name: 'a schema parse that throws to refuse, then true', code: `${header}declare const AccountSchema: { parse(v: unknown): { balance: bigint } };\nnew GovernedMap<string, { balance: bigint }>({ name: 'accounts', validate: (_k, v) => { AccountSchema.parse(v); return true; } });` },
    { name: 'an assertion helper that throws to refuse, then true', code: `${header}function assertActive(v: { status: string }): void { if (v.status !== 'active') throw new Error('ACCOUNT_INACTIVE'); }\nnew GovernedMap<string, { status: string }>({ name: 'accounts', validate: (_k, v) => { assertActive(v); return true; } });` },
    { name: 'a read-only map: the validator always throws', code: `${header}new GovernedMap<string, bigint>({ name: 'frozen', validate: ((): never => { throw new Error('READ_ONLY'); }) as unknown as Validator<string, bigint> });` },
    { name: 'a validator the rule cannot see into (declared only)', code: `${header}declare const fromConfig: Validator<string, bigint>;\nnew GovernedMap<string, bigint>({ name: 'b', validate: fromConfig });` },
    { name: 'true returned only by a nested function', code: `${header}new GovernedMap<string, bigint>({ name: 'b', validate: (_k, v) => { const ok = [v].every(() => true); return ok || 'NEG'; } });` },
    { name: 'a same-named GovernedMap class that is not govmap\'s', code: `class GovernedMap { constructor(_o: { validate: () => boolean }) {} }\nnew GovernedMap({ validate: () => true });` },
    { name: 'an accept-all validator in spread defaults, overridden by a real rule', code: `${header}const defaults = { validate: (): true => true };\nnew GovernedMap<string, bigint>({ ...defaults, name: 'b', validate: (_k, v) => v >= 0n || 'NEG' });` },
    { name: 'an accept-all validator followed by a spread the rule cannot see into (it may hold the real one)', code: `${header}declare const fromConfig: { validate: Validator<string, bigint> };\nnew GovernedMap<string, bigint>({ name: 'b', validate: () => true, ...fromConfig });` },
    { name: 'an accept-all validator followed by a spread of known defaults that themselves end with a spread the rule cannot see into', code: `${header}declare const fromConfig: { validate: Validator<string, bigint> };\nconst defaults = { name: 'b', ...fromConfig };\nnew GovernedMap<string, bigint>({ validate: () => true, ...defaults });` },
    { name: 'a negated value is a verdict that depends on it; !1 refuses', code: `${header}new GovernedMap<string, bigint>({ name: 'b', validate: (_k, v) => !!v || 'ZERO' });\nnew GovernedMap<string, bigint>({ name: 'c', validate: () => !1 });` },
    { name: 'validateDelete may accept everything (omitting it does the same)', code: `${header}new GovernedMap<string, bigint>({ name: 'b', validate: (_k, v) => v >= 0n || 'NEG', validateDelete: () => true });` },
  ],
  invalid: [
    {
      name: 'an accept-all validator in shared defaults, spread into the options',
      code: `${header}const defaults = { validate: (): true => true };\nnew GovernedMap<string, bigint>({ ...defaults, name: 'positions' });`,
      errors: [{ messageId: 'acceptsEverything', line: 3, column: 20, data: { map: '"positions"', why: 'it always returns true' } }],
    },
    {
      name: 'a real rule in the defaults, overridden by an accept-all one after the spread',
      code: `${header}const defaults = { name: 'b', validate: (_k: string, v: bigint) => v >= 0n || 'NEG' };\nnew GovernedMap<string, bigint>({ ...defaults, validate: () => true });`,
      errors: [{ messageId: 'acceptsEverything', line: 4, data: { map: '"b"', why: 'it always returns true' } }],
    },
    {
      name: '() => true',
      code: `${header}new GovernedMap<string, bigint>({ name: 'balances', validate: () => true });`,
      errors: [{ messageId: 'acceptsEverything', line: 3, column: 53, endColumn: 73, data: { map: '"balances"', why: 'it always returns true' } }],
    },
    {
      // `true` spelt so that a literal match misses it: still a validator that accepts everything.
      name: 'true in disguise: !!1, !0',
      code: `${header}new GovernedMap<string, bigint>({ name: 'fx', validate: () => !!1 });\nnew GovernedMap<string, bigint>({ name: 'limits', validate(_k, v) { if (v > 0n) return !0; return !''; } });`,
      errors: [
        { messageId: 'acceptsEverything', line: 3, data: { map: '"fx"', why: 'it always returns true' } },
        { messageId: 'acceptsEverything', line: 4, data: { map: '"limits"', why: 'every return is true' } },
      ],
    },
    {
      name: 'every return is true',
      code: `${header}new GovernedMap<string, bigint>({ name: 'b', validate(_k, v) { if (v > 0n) return true; return true; } });`,
      errors: [{ messageId: 'acceptsEverything', data: { map: '"b"', why: 'every return is true' } }],
    },
    {
      name: 'an empty function refuses every write at run time',
      code: `${header}new GovernedMap<string, bigint>({ name: 'b', validate: (() => {}) as unknown as Validator<string, bigint> });`,
      errors: [{ messageId: 'noVerdict', data: { map: '"b"', why: 'its body is empty' } }],
    },
    {
      name: 'a function declaration passed by name, through a const alias',
      code: `${header}function acceptAll(): true { return true; }\nconst v = acceptAll;\nnew GovernedMap<string, bigint>({ name: 'b', validate: v });`,
      errors: [{ messageId: 'acceptsEverything', line: 5 }],
    },
    {
      name: 'options in a const, shorthand validate',
      code: `${header}const validate = (): true => true;\nconst options = { name: 'b', validate };\nnew GovernedMap<string, bigint>(options);`,
      errors: [{ messageId: 'acceptsEverything', line: 4, column: 30 }],
    },
    {
      // allOf() of nothing does not accept every write: it throws a ConfigurationError when called.
      name: 'allOf() of nothing',
      code: `${header}new GovernedMap<string, bigint>({ name: 'b', validate: allOf() });`,
      errors: [{ messageId: 'emptyAllOf', data: { map: '"b"', why: 'allOf() of no validators' } }],
    },
    {
      name: 'allOf() of nothing nested in an allOf with a real rule',
      code: `${header}new GovernedMap<string, bigint>({ name: 'b', validate: allOf(allOf(), (_k, v: bigint) => v >= 0n || 'NEG') });`,
      errors: [{ messageId: 'emptyAllOf', data: { map: '"b"', why: 'allOf() containing allOf() of no validators' } }],
    },
    {
      name: 'a validator that throws to refuse but never returns a value refuses every write',
      code: `${header}new GovernedMap<string, bigint>({ name: 'b', validate: ((_k: string, v: bigint) => { if (v < 0n) throw new RangeError('negative'); }) as unknown as Validator<string, bigint> });`,
      errors: [{ messageId: 'noVerdict', data: { map: '"b"', why: 'it never returns a value' } }],
    },
    {
      name: 'a validator that never returns',
      code: `${header}new GovernedMap<string, bigint>({ name: 'b', validate: ((_k: string, v: bigint) => { console.log(v); }) as unknown as Validator<string, bigint> });`,
      errors: [{ messageId: 'noVerdict', data: { map: '"b"', why: 'it never returns a value' } }],
    },
  ],
});
