export { startResolver, type Resolver, type ResolverOptions, type ResolverStats } from './server.ts';
export { Iterator, classify, DEFAULT_LIMITS, type IteratorOptions, type Limits, type Resolution, type RootHint } from './iterator.ts';
export { Cache, RANK, type CacheOptions, type CacheStats } from './cache.ts';
export { Acl, AclError, DEFAULT_ALLOW, parseCidr } from './acl.ts';
export { queryServer, UpstreamTimeout, type Reply, type Server } from './upstream.ts';
