export type { MallStore, StoreHealth, StoreReport } from './store.ts';
// PostgreSQL's store is imported from './postgres.ts' where one is opened, so that a mall on
// its embedded journal does not load the PostgreSQL client.
export type { PostgresMallStore, PostgresStoreOptions } from './postgres.ts';
export { EmbeddedMallStore, storePaths } from './embedded.ts';
export type { EmbeddedStoreOptions } from './embedded.ts';
export * from './state.ts';
export * from './dict.ts';
