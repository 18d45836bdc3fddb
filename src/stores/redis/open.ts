import { connectRedis } from './connect.ts';
import type { RedisConnectionOptions } from './connect.ts';
import { refuseUnknownOptions } from '../../map/known-options.ts';
import { REMOTE_MAP_OPTIONS, RemoteGovernedMap, remoteMapSettings } from './remote-governed-map.ts';
import type { RemoteGovernedMapOptions } from './remote-governed-map.ts';

export interface OpenRedisGovernedMapOptions<V> extends Omit<RemoteGovernedMapOptions<V>, 'link' | 'ownsLink'> {
  /** Where Redis is: `{ url }` for one server, `{ clusterNodes }` for a cluster, plus timeouts. */
  readonly redis: RedisConnectionOptions;
}

/** Every key of OpenRedisGovernedMapOptions: the map's own keys, less the link it builds, plus `redis`. */
const OPEN_OPTIONS: ReadonlySet<string> = new Set([...[...REMOTE_MAP_OPTIONS].filter((key) => key !== 'link' && key !== 'ownsLink'), 'redis']);

/**
 * Connects to Redis (loading node-redis only now) and returns a map that owns the connection:
 * `dispose()` closes it. To share one connection among several maps, call `connectRedis` once
 * and pass its link to each `new RemoteGovernedMap({ link, ... })`.
 */
export async function openRedisGovernedMap<V>(options: OpenRedisGovernedMapOptions<V>): Promise<RemoteGovernedMap<V>> {
  // Refused before connecting: a misspelt key is found without a round trip to Redis.
  refuseUnknownOptions(options, OPEN_OPTIONS, 'openRedisGovernedMap');
  const { redis, ...mapOptions } = options;
  // The map's own settings too (a missing validator, impossible bounds): with Redis down they
  // would otherwise wait for the connect timeout and be reported as an outage.
  remoteMapSettings(mapOptions);
  const link = await connectRedis(redis);
  try {
    const map = new RemoteGovernedMap<V>({ ...mapOptions, link, ownsLink: true });
    await map.refreshSize().catch(() => undefined);
    return map;
  } catch (error) {
    await link.close();
    throw error;
  }
}
