// Types of format.js, for the tests that hold it to core's money formatting.
export function minorPerUnit(currency: string): number;
export function formatMinor(minor: number, currency: string): string;
export function formatMinorPlain(minor: number, currency: string): string;
export function parseMoney(text: string, currency: string): number | null;
export function formatUnits(n: number, token: string): string;
export function sentence(text: string): string;
export function localTime(iso: string): string;
export function formatAge(seconds: number): string;
