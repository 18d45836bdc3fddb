import assert from 'node:assert/strict';
import { test } from 'node:test';
import { describeStartFailure } from '../../src/cli/demo-start-failure.ts';
import { ConfigurationError, GovMapError } from '../../src/index.ts';

/**
 * The failures of `govmap demo` at start that a test cannot provoke for real (running as root,
 * no read-only mount at hand, no resolver offline), mapped to the line and the exit status the
 * user gets: 2 for a value that can never work, 1 for one the machine refuses now.
 */
const options = { host: '127.0.0.1', port: 8080, auditDir: '/srv/govmap/audit' };

function systemError(code: string, syscall: string, extra: Record<string, string> = {}): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: ${syscall} failed`), { code, syscall, ...extra });
}

const cases: Array<[string, unknown, RegExp, number, typeof options?]> = [
  ['a host name that does not resolve', systemError('ENOTFOUND', 'getaddrinfo', { hostname: 'gateway.internal' }), /^--host gateway\.internal: no such host \(ENOTFOUND\)/, 2, { ...options, host: 'gateway.internal' }],
  ['a resolver that fails for now', systemError('EAI_AGAIN', 'getaddrinfo', { hostname: 'gateway.internal' }), /^--host gateway\.internal: the name could not be resolved now \(EAI_AGAIN\)/, 1, { ...options, host: 'gateway.internal' }],
  ['an address not on this machine', systemError('EADDRNOTAVAIL', 'listen'), /^--host 127\.0\.0\.1: not an address of this machine \(EADDRNOTAVAIL\)/, 2],
  ['a port in use', systemError('EADDRINUSE', 'listen'), /^port 8080 on 127\.0\.0\.1 is in use/, 1],
  ['a privileged port', systemError('EACCES', 'listen'), /^--port 8080 on 127\.0\.0\.1: permission denied \(EACCES\); ports below 1024 need privileges/, 1],
  ['an audit dir that is a file', systemError('EEXIST', 'mkdir', { path: '/srv/govmap/audit' }), /^--audit-dir \/srv\/govmap\/audit: a file is in the way \(EEXIST on \/srv\/govmap\/audit\)/, 2],
  ['an audit dir under a file', systemError('ENOTDIR', 'mkdir', { path: '/srv/govmap' }), /^--audit-dir \/srv\/govmap\/audit: a file is in the way \(ENOTDIR on \/srv\/govmap\)/, 2],
  ['a dangling link on the way', systemError('ENOENT', 'mkdir', { path: '/srv/govmap/audit' }), /does not exist and cannot be created \(ENOENT/, 2],
  ['an audit dir without permission', systemError('EACCES', 'mkdir', { path: '/srv' }), /^--audit-dir \/srv\/govmap\/audit: permission denied on \/srv \(EACCES\)/, 1],
  ['a segment that cannot be opened', systemError('EACCES', 'open', { path: '/srv/govmap/audit/audit-000001.jsonl' }), /permission denied on \/srv\/govmap\/audit\/audit-000001\.jsonl/, 1],
  ['a read-only file system', systemError('EROFS', 'mkdir', { path: '/srv/govmap/audit' }), /^--audit-dir \/srv\/govmap\/audit: \/srv\/govmap\/audit is on a read-only file system \(EROFS\)/, 1],
  [
    'the recorder\'s own refusal of a file in the way',
    new GovMapError('GOVMAP_AUDIT_SPOOL_DIRECTORY', 'audit option "dir": cannot use "/srv/govmap/audit" as the spool directory: it exists and is not a directory (EEXIST)', { errno: 'EEXIST' }),
    /^--audit-dir \/srv\/govmap\/audit: cannot use "\/srv\/govmap\/audit" as the spool directory: it exists and is not a directory \(EEXIST\)$/,
    2,
  ],
  ['the recorder\'s own refusal of a full disk', new GovMapError('GOVMAP_AUDIT_SPOOL_DIRECTORY', 'audit option "dir": cannot use "/srv/govmap/audit" as the spool directory: no space left on the device (ENOSPC)', { errno: 'ENOSPC' }), /^--audit-dir \/srv\/govmap\/audit: .*\(ENOSPC\)$/, 1],
  // A demo environment variable (no flag was typed): the file system's reason decides, as for --audit-dir.
  ['a GOVMAP_SWITCH_FILE that does not exist', new GovMapError('GOVMAP_DEMO_ENVIRONMENT_INVALID', 'GOVMAP_SWITCH_FILE=/etc/govmap/switches.json: switch file /etc/govmap/switches.json: cannot open: ENOENT', { variable: 'GOVMAP_SWITCH_FILE', errno: 'ENOENT' }), /^GOVMAP_SWITCH_FILE=\/etc\/govmap\/switches\.json: /, 2],
  ['a GOVMAP_ROUTE_FILE that is a directory', new GovMapError('GOVMAP_DEMO_ENVIRONMENT_INVALID', 'GOVMAP_ROUTE_FILE=/etc: route table file /etc: cannot read: EISDIR', { variable: 'GOVMAP_ROUTE_FILE', errno: 'EISDIR' }), /^GOVMAP_ROUTE_FILE=\/etc: /, 2],
  ['a GOVMAP_SWITCH_FILE whose content breaks the schema', new GovMapError('GOVMAP_DEMO_ENVIRONMENT_INVALID', 'GOVMAP_SWITCH_FILE=s.yaml: switch set from switch file /s.yaml is invalid', { variable: 'GOVMAP_SWITCH_FILE' }), /^GOVMAP_SWITCH_FILE=s\.yaml: /, 2],
  ['a GOVMAP_SWITCH_FILE this user may not read', new GovMapError('GOVMAP_DEMO_ENVIRONMENT_INVALID', 'GOVMAP_SWITCH_FILE=/root/s.json: switch file /root/s.json: cannot open: EACCES', { variable: 'GOVMAP_SWITCH_FILE', errno: 'EACCES' }), /^GOVMAP_SWITCH_FILE=\/root\/s\.json: /, 1],
  ['a GOVMAP_DEMO_STATE_DIR on a read-only file system', new GovMapError('GOVMAP_DEMO_ENVIRONMENT_INVALID', 'GOVMAP_DEMO_STATE_DIR=/srv/state: cannot create it (EROFS)', { variable: 'GOVMAP_DEMO_STATE_DIR', errno: 'EROFS' }), /^GOVMAP_DEMO_STATE_DIR=\/srv\/state: /, 1],
  ['an option value refused by its own check', new ConfigurationError('--redis', 'give --redis or --redis-cluster, not both'), /give --redis or --redis-cluster, not both/, 2],
  // The libraries name their own options; the user typed the flag, and must be told which one to fix.
  ['an --etcd value the state store refuses', new ConfigurationError('endpoints', 'each endpoint is host:port or http(s)://host:port', ''), /^invalid option "--etcd": each endpoint is host:port/, 2],
  ['an --instance the breaker cluster refuses', new ConfigurationError('instance', 'an instance name is 1 to 128 letters', 'a b'), /^invalid option "--instance": an instance name/, 2],
  ['a --redis URL the store refuses', new ConfigurationError('redis.url', 'must be redis://host:port or rediss://host:port', 'notaurl'), /^invalid option "--redis": must be redis:\/\//, 2],
  ['a --redis-cluster node the store refuses', new ConfigurationError('redis.clusterNodes', 'each node must be host:port', 'x'), /^invalid option "--redis-cluster": each node must be host:port/, 2],
  ['a --redis-ca-file the store cannot read', new ConfigurationError('redis.tls.caFile', 'cannot be read (ENOENT)', '/nope/ca.pem'), /^invalid option "--redis-ca-file": cannot be read \(ENOENT\)/, 2],
  ['a rediss:// certificate the CA given did not sign', new ConfigurationError('redis.tls', "the server's TLS certificate is not trusted"), /^invalid option "--redis-ca-file": the server's TLS certificate is not trusted/, 2],
  ['another governance error', new GovMapError('GOVMAP_SOMETHING', 'the ledger could not open'), /the ledger could not open/, 1],
];
for (const [name, error, message, exitCode, given = options] of cases) {
  test(`${name}: one line, exit ${exitCode}`, () => {
    const failure = describeStartFailure(error, given);
    assert.ok(failure !== null);
    assert.match(failure.message, message);
    assert.equal(failure.exitCode, exitCode);
  });
}

test('what is not traced to an option keeps its stack (null): a bug, or a path elsewhere', () => {
  assert.equal(describeStartFailure(new TypeError('x is undefined'), options), null);
  // A name that does not resolve for --redis is not --host's.
  assert.equal(describeStartFailure(systemError('ENOTFOUND', 'getaddrinfo', { hostname: 'redis.internal' }), { ...options, host: 'gateway.internal' }), null);
  // Only a mkdir fails on an ancestor of the audit dir; another call there is not the audit's.
  assert.equal(describeStartFailure(systemError('EACCES', 'open', { path: '/srv' }), options), null);
  assert.equal(describeStartFailure(systemError('ENOENT', 'open', { path: '/etc/govmap/routes.json' }), options), null);
});
