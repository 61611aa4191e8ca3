import net from "node:net";
import type { AddressInfo, Socket } from "node:net";

/**
 * A TCP proxy between a client (the tracker's JSON-RPC provider) and a chain node, for fault tests (DESIGN.md,
 * "Faults"). It forwards bytes both ways and can, on command:
 *   - drop every open connection (both sides destroyed, as when a node or a NAT drops them),
 *   - refuse: stop listening, so connecting fails with ECONNREFUSED, for a while or until told otherwise,
 *   - reset: accept and reset each new connection at once (ECONNRESET),
 *   - blackhole: accept and never forward or answer (the client's own time-outs must fire),
 *   - delay every chunk in both directions.
 */
export interface RpcProxy {
  /** `http://127.0.0.1:<port>` of the proxy. */
  readonly url: string;
  readonly port: number;
  readonly stats: { connections: number; dropped: number; refused: number; bytesUp: number; bytesDown: number };
  /** Destroys every open connection, both sides. */
  dropAll(): void;
  /** Stops listening (ECONNREFUSED) for `ms`, or until {@link accept} when `ms` is omitted. Drops open connections. */
  refuse(ms?: number): Promise<void>;
  /** Listens again after {@link refuse}. */
  accept(): Promise<void>;
  /** New connections are reset on accept while on. */
  reset(on: boolean): void;
  /** The next `count` new connections are reset on accept (a fault that ends by itself, counted, not timed). */
  resetNext(count: number): void;
  /** New connections are accepted and never answered while on. */
  blackhole(on: boolean): void;
  /** Delays each forwarded chunk by `ms` (0: no delay). */
  delay(ms: number): void;
  close(): Promise<void>;
}

/** Starts a proxy on a free loopback port forwarding to `target` (`http://host:port`). */
export async function startRpcProxy(target: string): Promise<RpcProxy> {
  const { hostname, port: targetPort } = new URL(target);
  const pairs = new Set<{ client: Socket; upstream: Socket }>();
  const stats = { connections: 0, dropped: 0, refused: 0, bytesUp: 0, bytesDown: 0 };
  let delayMs = 0;
  let resetting = false;
  let resetsLeft = 0;
  let holing = false;
  let listening = false;
  let refuseTimer: NodeJS.Timeout | undefined;
  const held = new Set<Socket>();

  const forward = (from: Socket, to: Socket, count: (n: number) => void): void => {
    from.on("data", (chunk: Buffer) => {
      count(chunk.length);
      const send = (): void => {
        if (!to.destroyed) to.write(chunk);
      };
      if (delayMs > 0) {
        // Keep order under delay: pause the source while a chunk waits.
        from.pause();
        setTimeout(() => {
          send();
          from.resume();
        }, delayMs);
      } else send();
    });
  };

  const server = net.createServer((client) => {
    stats.connections += 1;
    client.on("error", () => undefined);
    if (resetting || resetsLeft > 0) {
      if (!resetting) resetsLeft -= 1;
      stats.refused += 1;
      client.resetAndDestroy();
      return;
    }
    if (holing) {
      held.add(client);
      client.on("close", () => held.delete(client));
      return;
    }
    const upstream = net.connect(Number(targetPort), hostname);
    upstream.on("error", () => client.destroy());
    const pair = { client, upstream };
    pairs.add(pair);
    const end = (): void => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on("close", end);
    upstream.on("close", end);
    forward(client, upstream, (n) => (stats.bytesUp += n));
    forward(upstream, client, (n) => (stats.bytesDown += n));
  });

  const listen = (port: number): Promise<void> =>
    new Promise((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, "127.0.0.1", () => {
        server.removeListener("error", reject);
        listening = true;
        resolve();
      });
    });
  await listen(0);
  const port = (server.address() as AddressInfo).port;

  const proxy: RpcProxy = {
    url: `http://127.0.0.1:${port}`,
    port,
    stats,
    dropAll() {
      for (const { client, upstream } of pairs) {
        stats.dropped += 1;
        client.destroy();
        upstream.destroy();
      }
      pairs.clear();
      for (const socket of held) socket.destroy();
    },
    async refuse(ms?: number) {
      clearTimeout(refuseTimer);
      if (listening) {
        listening = false;
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        proxy.dropAll();
        await closed;
      }
      proxy.dropAll();
      if (ms !== undefined) {
        refuseTimer = setTimeout(() => void proxy.accept(), ms);
        refuseTimer.unref();
      }
    },
    async accept() {
      clearTimeout(refuseTimer);
      if (!listening) await listen(port);
    },
    reset(on) {
      resetting = on;
    },
    resetNext(count) {
      resetsLeft = count;
    },
    blackhole(on) {
      holing = on;
      if (!on) for (const socket of held) socket.destroy();
    },
    delay(ms) {
      delayMs = ms;
    },
    async close() {
      clearTimeout(refuseTimer);
      resetting = false;
      holing = false;
      if (listening) {
        listening = false;
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        proxy.dropAll();
        await closed;
      }
      proxy.dropAll();
    },
  };
  return proxy;
}
