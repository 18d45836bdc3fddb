import type { AuditRecorder } from './recorder.ts';

export interface KafkaForwarderOptions {
  readonly dir: string;
  readonly brokers: readonly string[];
  readonly topic?: string;
  readonly recorder?: AuditRecorder;
  readonly actor?: string;
  readonly key?: Uint8Array | null;
}

export interface KafkaForwarder {
  stop(): Promise<void>;
}

export function startKafkaForwarder(_options: KafkaForwarderOptions): Promise<KafkaForwarder> {
  return Promise.reject(new Error('not yet'));
}
