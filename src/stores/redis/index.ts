/**
 * The Redis store: one governed map shared by many processes and machines, in Redis or Redis
 * Cluster, with an in-process near cache kept coherent by RESP3 client tracking. See
 * docs/redis.md. node-redis is loaded only when `connectRedis`/`openRedisGovernedMap` is called.
 */
export { RemoteGovernedMap, RemoteMapCounters, escapeGlob } from './remote-governed-map.ts';
export type { RemoteGovernedMapOptions, RemoteMapStatsSnapshot, Int64Bounds, NearCacheConfig } from './remote-governed-map.ts';
export { openRedisGovernedMap } from './open.ts';
export type { OpenRedisGovernedMapOptions } from './open.ts';
export { connectRedis } from './connect.ts';
export type { RedisConnectionOptions, RedisTlsOptions } from './connect.ts';
export type { RedisLink, LinkListener } from './link.ts';
export { LinkFailure } from './link.ts';
export { int64Codec, stringCodec, INT64_MIN, INT64_MAX } from './codec.ts';
export type { ValueCodec } from './codec.ts';
export { RedisUnavailableError, RedisValueCorruptError, RedisCommandRefusedError } from './errors.ts';
export type { WriteOutcome, UnavailableReason } from './errors.ts';
export { CAS_SET, CAS_DELETE, BOUNDED_ADD, Status } from './lua.ts';
export type { LuaScript } from './lua.ts';
