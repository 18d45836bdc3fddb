import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startDemo } from '../../demo/server.ts';
import type { DemoService } from '../../demo/server.ts';

let demo: DemoService;
before(async () => {
  demo = await startDemo({ port: 0, accounts: 5, openingBalance: 1_000n });
});
after(async () => {
  await demo.close();
});

describe('the demo shows static analysis', () => {
  test('announces GET /lint/report', () => {
    assert.ok(demo.announcements.some((line) => line.includes('/lint/report')));
  });

  test('GET /lint/report scans the demo source with every rule; ?format=sarif is a SARIF 2.1.0 log', async () => {
    const response = await fetch(`${demo.url}/lint/report`);
    assert.equal(response.status, 200);
    const body = (await response.json()) as { filesScanned: number; failing: number; rules: Array<{ id: string; level: string }>; findings: Array<{ file: string; ruleId: string; fingerprint: string }> };
    assert.ok(body.filesScanned >= 5, `scanned ${body.filesScanned} files`);
    assert.equal(body.rules.length, 7);
    assert.ok(body.findings.every((f) => f.file.startsWith('demo/') && f.ruleId.startsWith('govmap/') && /^[0-9a-f]{32}$/.test(f.fingerprint)));
    assert.equal(body.failing, body.findings.filter((f) => f.ruleId !== 'govmap/no-plain-shared-cache').length);

    const sarif = await fetch(`${demo.url}/lint/report?format=sarif`);
    assert.equal(sarif.headers.get('content-type'), 'application/sarif+json');
    const log = (await sarif.json()) as { version: string; runs: Array<{ results: unknown[] }> };
    assert.equal(log.version, '2.1.0');
    assert.equal(log.runs[0]!.results.length >= body.findings.length, true);

    // A format the report does not come in is refused, not answered as JSON.
    const xml = await fetch(`${demo.url}/lint/report?format=xml`);
    assert.equal(xml.status, 400);
    const refused = (await xml.json()) as { error: { code: string; reason: string } };
    assert.equal(refused.error.code, 'FORMAT_UNKNOWN');
    assert.match(refused.error.reason, /"xml".*json \(the default\) or sarif/);
    assert.equal((await fetch(`${demo.url}/lint/report?format=json`)).status, 200);
  });
});
