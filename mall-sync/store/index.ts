export type { MallStore } from './store.ts';
export { EmbeddedMallStore, storePaths } from './embedded.ts';
export type { EmbeddedStoreOptions } from './embedded.ts';
export * from './state.ts';
export * from './dict.ts';
