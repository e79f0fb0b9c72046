import type { Server as HttpServer } from 'node:http';
import type { NextFunction, Request, Response } from 'express';
import { MallposError, type ErrorCode } from '../core/index.ts';

type Handler = (req: Request, res: Response) => Promise<unknown> | unknown;

/**
 * Wraps an express handler: its result is the JSON body; a thrown typed error goes to
 * the error handler, which answers with its status and code. Used by the vendor server
 * and the mall alike.
 */
export function route(run: Handler) {
  return (req: Request, res: Response, next: NextFunction) => {
    Promise.resolve()
      .then(() => run(req, res))
      .then((body) => {
        if (!res.headersSent) res.json(body);
      }, next);
  };
}

/** Listens, turning the usual start-up failures into typed errors a person can act on. */
export function listen(http: HttpServer, port: number, host: string, codes: { inUse: ErrorCode; badHost: ErrorCode }): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => {
      http.off('listening', onListening);
      if (err.code === 'EADDRINUSE') reject(new MallposError(codes.inUse, `port ${port} on ${host} is already in use: stop the other process or choose --port`));
      else if (err.code === 'EACCES') reject(new MallposError(codes.inUse, `not allowed to listen on ${host}:${port}`));
      else if (err.code === 'EADDRNOTAVAIL' || err.code === 'ENOTFOUND') reject(new MallposError(codes.badHost, `cannot listen on ${host}: no such local address`));
      else reject(err);
    };
    const onListening = () => {
      http.off('error', onError);
      resolve();
    };
    http.once('error', onError);
    http.once('listening', onListening);
    http.listen(port, host);
  });
}

/** How long requests in flight get to finish when a server closes. */
export const CLOSE_GRACE_MS = 5_000;

/**
 * Stops listening and resolves once every connection is gone. Idle keep-alive
 * connections close at once; a connection a client keeps busy gets `graceMs` to finish
 * its request and is then cut, so a polling client cannot hold a shutdown open forever.
 * A request cut that way had no answer: its client retries it with the same
 * idempotency key.
 */
export function closeServer(http: HttpServer, graceMs = CLOSE_GRACE_MS): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => http.closeAllConnections(), graceMs);
    timer.unref();
    http.close(() => {
      clearTimeout(timer);
      resolve();
    });
    http.closeIdleConnections();
  });
}
