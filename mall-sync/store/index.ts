export type { MallStore, StoreHealth, StoreReport } from './store.ts';
export { PostgresMallStore } from './postgres.ts';
export type { PostgresStoreOptions } from './postgres.ts';
export { migrate } from './postgres-migrate.ts';
export { EmbeddedMallStore, storePaths } from './embedded.ts';
export type { EmbeddedStoreOptions } from './embedded.ts';
export * from './state.ts';
export * from './dict.ts';
