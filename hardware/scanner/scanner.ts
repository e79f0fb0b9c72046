/**
 * The barcode scanner as the rest of mallpos sees it. Business logic depends on this
 * interface only, never on `serialport`, so that the terminal runs the same with a
 * real device, the virtual scanner or a test double.
 */

/**
 * Where the scanner stands.
 *
 * - `connected`: the device is open and codes are being read from `path`.
 * - `disconnected`: the scanner was started but the device is not open, because it
 *   could not be opened or went away (unplugged, cable pulled, driver error). `error`
 *   says why in words a technician can act on; `retryInMs` says when the next attempt
 *   to open it is due. The scanner keeps retrying by itself until `stop()`.
 * - `stopped`: before `start()` and after `stop()`. Nothing is retried.
 */
export type ScannerStatus = {
  state: 'connected' | 'disconnected' | 'stopped';
  path?: string;
  error?: string;
  retryInMs?: number;
};

/** A symbology as named by the code's AIM identifier, e.g. `{ id: ']E0', name: 'EAN-13' }`. */
export interface ScanSymbology {
  id: string;
  name: string;
}

/**
 * One code read from the scanner.
 *
 * `code` is printable ASCII with the terminator and any AIM identifier removed; GS1
 * codes keep their GS (0x1D) field separators. `symbology` is present only when the
 * scanner is configured to send AIM identifiers. `at` is when the code's terminator
 * was read, in milliseconds since the epoch.
 */
export interface Scan {
  code: string;
  symbology?: ScanSymbology;
  at: number;
}

/**
 * Something went wrong with the bytes or with a listener, but scanning goes on.
 *
 * Kinds: `overlong` (a line over the length limit was discarded), `noise` (bytes that
 * cannot be part of a code were dropped; many of them usually mean a wrong baud rate
 * or parity), `unterminated` (bytes with no line ending were discarded after a pause,
 * or when the device went away; the scanner probably sends no CR/LF suffix),
 * `queue-full` (scans arrived faster than listeners handled them and one was
 * dropped), `listener-error` (a scan listener threw or rejected).
 */
export interface ScannerWarning {
  kind: string;
  message: string;
}

/**
 * A barcode scanner.
 *
 * Rules every implementation keeps:
 * - `start()` resolves once the first attempt to open the device has finished,
 *   whether or not it succeeded: a missing device is a `disconnected` status with
 *   retries, not an error, because a cashier may plug the scanner in later. It
 *   rejects only for a configuration that can never work. Calling it while started
 *   does nothing.
 * - `stop()` closes the device and cancels retries; it resolves when the device is
 *   closed, so that the same path can be opened again at once. Scans read but not yet
 *   delivered are dropped. Calling it while stopped does nothing.
 * - Status changes are announced through `onStatus` as they happen: `disconnected`
 *   as soon as the device is lost, `connected` again by itself when it comes back.
 * - Scans are delivered one at a time, in the order they were read: the next scan is
 *   not delivered until every listener has returned and, for a listener that returns
 *   a promise, until that promise has settled. Waiting scans are bounded; past the
 *   bound a scan is dropped with a `queue-full` warning rather than memory growing.
 * - A double read of the same code by the device within a short window is
 *   delivered once; the same code read again after the window, which is a cashier
 *   scanning a second item, is delivered again.
 * - A listener that throws does not stop the scanner or other listeners; it is
 *   reported as a `listener-error` warning.
 * - Each `on*` method returns a function that unsubscribes that listener.
 */
export interface Scanner {
  start(): Promise<void>;
  stop(): Promise<void>;
  status(): ScannerStatus;
  onScan(cb: (s: Scan) => void): () => void;
  onStatus(cb: (s: ScannerStatus) => void): () => void;
  onWarning(cb: (w: ScannerWarning) => void): () => void;
}
