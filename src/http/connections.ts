/**
 * MAX_CONNECTIONS without letting silent clients hold every slot. Node's own `maxConnections`
 * refuses the newest connection, so a client that opens the allowed number of sockets and sends
 * nothing (or keeps them idle between requests) locks everyone else out until HEADERS_TIMEOUT
 * or KEEP_ALIVE_TIMEOUT. Here, at the cap, the connection that has waited longest without a
 * request in progress is closed to make room; only when every connection is busy answering a
 * request is the new one refused. A connection is busy from the moment its request headers
 * are complete until its response ends, so uploads, downloads and long polls are never cut.
 */
import type { Server as HttpServer, IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

export interface ConnectionCap {
  /** Connections open now, and how many of them wait without a request in progress. */
  stats(): { open: number; waiting: number };
}

export function capConnections(server: HttpServer, max: number, onEvict?: (socket: Socket) => void): ConnectionCap {
  let open = 0;
  // Insertion order is the order in which connections started to wait: the first is the oldest.
  const waiting = new Set<Socket>();
  server.on('connection', (socket: Socket) => {
    if (max > 0 && open >= max) {
      const oldest = waiting.values().next().value;
      if (!oldest) {
        socket.destroy();
        return;
      }
      waiting.delete(oldest);
      onEvict?.(oldest);
      oldest.destroy();
    }
    open++;
    waiting.add(socket);
    socket.once('close', () => {
      open--;
      waiting.delete(socket);
    });
  });
  server.on('request', (request: IncomingMessage, response: ServerResponse) => {
    const socket = request.socket;
    waiting.delete(socket);
    response.once('close', () => {
      if (!socket.destroyed) waiting.add(socket);
    });
  });
  return { stats: () => ({ open, waiting: waiting.size }) };
}
