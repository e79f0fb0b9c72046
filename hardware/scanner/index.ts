export * from './scanner.ts';
export * from './framing.ts';
export * from './serial-scanner.ts';
export * from './virtual-scanner.ts';
