import assert from 'node:assert/strict';
import type { TestContext } from 'node:test';

/** The brokers the Kafka tests talk to (test/infra/kafka.sh starts one; CI always does). */
export const BROKERS = process.env.GOVMAP_KAFKA_BROKERS?.split(',').filter((b) => b !== '') ?? [];
export const CI = process.env.CI !== undefined && process.env.CI !== '' && process.env.CI !== 'false';

/** True when a broker is configured; otherwise skips the test, or fails it under CI (no Kafka test is skipped there). */
export function needKafka(t: TestContext): boolean {
  if (BROKERS.length > 0) return true;
  const reason = 'GOVMAP_KAFKA_BROKERS is not set: start Kafka with `bash test/infra/kafka.sh start` and export GOVMAP_KAFKA_BROKERS=127.0.0.1:9092';
  if (CI) assert.fail(`under CI the Kafka tests must run: ${reason}`);
  t.skip(reason);
  return false;
}
