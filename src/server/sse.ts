import fs from "node:fs";
import path from "node:path";
import type { IncomingMessage, ServerResponse } from "node:http";
import { type HexHash } from "../chain/hash";
import { pageOf } from "../protocol/pages";
import { parseHead, type ProtocolHead } from "../protocol/schema";
import { type Home } from "../store/home";

/**
 * Server-Sent Events for `GET /instances/<hash>/events`.
 *
 * On connect a client receives every entry after its `Last-Event-ID` (event `state`, id = seq, data = the
 * protocol entry: its line in the page, RFC 8785 canonical JSON), then one `state` event per newly registered entry
 * and one `status` event once the instance has terminated. Comment lines keep idle connections alive.
 *
 * What is new is told by the signed head (its `entries` count); the entries themselves are read from the pages, only
 * the pages from the client's next seq on, one at a time: a protocol is never loaded whole. Heads come from two
 * sources, so both an in-process tracker and a separate `statetrail serve` process stream: `notify(head)`, called by
 * the tracker, and a watch on `instances/<hash>/protocol.json` (fs.watch on the directory, since the file is replaced
 * by rename, plus a stat poll as a fallback for file systems where fs.watch is silent). Delivery is idempotent: each
 * client remembers the last seq it was sent.
 */

export interface EventStreamOptions {
  /** Concurrent SSE clients over all instances (default 1000). */
  maxClients?: number;
  /** Interval of the `: heartbeat` comment (default 15 s). */
  heartbeatMs?: number;
  /** Stat poll of protocol.json (default 2 s; the fast path is fs.watch). */
  pollIntervalMs?: number;
  /** Wait this long after a file change before reading it (default 50 ms). */
  debounceMs?: number;
  /** Use fs.watch (default true); false leaves only the stat poll. */
  watch?: boolean;
  /** Drop a client whose unsent output exceeds this (default 4 MiB): a stalled reader can't exhaust memory. */
  maxBufferedBytes?: number;
  /** Reconnect delay advertised to clients (`retry:`, default 2000 ms). */
  retryMs?: number;
}

interface Client {
  res: ServerResponse;
  channel: Channel;
  lastSeq: number;
  statusSent: boolean;
  /** Set while the socket's buffer is full: delivery resumes on `drain` with the newest head seen. */
  pending?: ProtocolHead;
  draining: boolean;
}

/** The entry lines of a page read (the header left out), by the stamp of the file they were read from. */
interface PageLines {
  index: number;
  stamp: string;
  lines: string[];
}

interface Channel {
  instance: HexHash;
  clients: Set<Client>;
  watcher?: fs.FSWatcher;
  poll?: NodeJS.Timeout;
  debounce?: NodeJS.Timeout;
  stamp?: string;
  reading: boolean;
  rereadAfter: boolean;
  /** The last pages read for this instance's clients (most clients want the same, open, page). */
  pages: PageLines[];
}

/** The data of the `status` event. */
export interface StatusEventData {
  instance_hash: HexHash;
  status: ProtocolHead["status"];
  head: ProtocolHead["head"];
  terminated: ProtocolHead["terminated"];
}

export class SseHub {
  readonly maxClients: number;
  private readonly heartbeatMs: number;
  private readonly pollIntervalMs: number;
  private readonly debounceMs: number;
  private readonly watch: boolean;
  private readonly maxBufferedBytes: number;
  private readonly retryMs: number;
  private readonly channels = new Map<HexHash, Channel>();
  private heartbeat?: NodeJS.Timeout;
  private count = 0;
  private closed = false;

  constructor(
    private readonly home: Home,
    options: EventStreamOptions = {},
  ) {
    this.maxClients = options.maxClients ?? 1000;
    this.heartbeatMs = options.heartbeatMs ?? 15_000;
    this.pollIntervalMs = options.pollIntervalMs ?? 2000;
    this.debounceMs = options.debounceMs ?? 50;
    this.watch = options.watch ?? true;
    this.maxBufferedBytes = options.maxBufferedBytes ?? 4 * 1024 * 1024;
    this.retryMs = options.retryMs ?? 2000;
  }

  get clientCount(): number {
    return this.count;
  }

  /** Whether one more client may subscribe. */
  canAccept(): boolean {
    return !this.closed && this.count < this.maxClients;
  }

  /**
   * Starts the stream on `res` (the caller has validated the hash, found the head and checked `canAccept()`),
   * replays the entries after `lastSeq` (reading the pages from there only) and keeps the client until it disconnects.
   */
  subscribe(req: IncomingMessage, res: ServerResponse, head: ProtocolHead, lastSeq = -1): void {
    res.writeHead(200, {
      "Content-Type": "text/event-stream; charset=utf-8",
      "Cache-Control": "no-store",
      Connection: "keep-alive",
      "X-Accel-Buffering": "no",
    });
    res.flushHeaders();
    req.socket.setNoDelay(true);
    req.socket.setTimeout(0);

    const channel = this.channel(head.instance_hash);
    const client: Client = { res, channel, lastSeq, statusSent: false, draining: false };
    channel.clients.add(client);
    this.count += 1;
    this.startHeartbeat();

    const remove = (): void => {
      if (!channel.clients.delete(client)) return;
      this.count -= 1;
      if (channel.clients.size === 0) this.dispose(channel);
      if (this.count === 0) this.stopHeartbeat();
    };
    res.on("close", remove);
    req.on("close", remove);

    this.write(client, `retry: ${this.retryMs}\n\n`);
    this.deliver(client, head);
    // The file may have changed between the caller's read and the watch starting: look once more.
    this.schedule(channel);
  }

  /** In-process notification from a tracker: sends what `head` counts and a client lacks to its subscribers. */
  notify(head: ProtocolHead): void {
    const channel = this.channels.get(head.instance_hash);
    if (!channel) return;
    for (const client of [...channel.clients]) this.deliver(client, head);
  }

  /** Ends every stream and stops every watch. */
  close(): void {
    this.closed = true;
    for (const channel of [...this.channels.values()]) {
      for (const client of [...channel.clients]) {
        channel.clients.delete(client);
        this.count -= 1;
        client.res.end();
      }
      this.dispose(channel);
    }
    this.stopHeartbeat();
  }

  private channel(instance: HexHash): Channel {
    const existing = this.channels.get(instance);
    if (existing) return existing;
    const channel: Channel = { instance, clients: new Set(), reading: false, rereadAfter: false, pages: [] };
    this.channels.set(instance, channel);
    const file = this.home.protocolFile(instance);
    channel.stamp = stampOf(file);
    if (this.watch) {
      try {
        channel.watcher = fs.watch(path.dirname(file), { persistent: false }, (_event, name) => {
          if (!name || name === path.basename(file)) this.schedule(channel);
        });
        channel.watcher.on("error", () => {
          channel.watcher?.close();
          channel.watcher = undefined;
        });
      } catch {
        channel.watcher = undefined; // the poll below still sees changes
      }
    }
    channel.poll = setInterval(() => {
      const stamp = stampOf(file);
      if (stamp !== channel.stamp) this.schedule(channel);
    }, this.pollIntervalMs);
    channel.poll.unref();
    return channel;
  }

  private dispose(channel: Channel): void {
    channel.watcher?.close();
    clearInterval(channel.poll);
    clearTimeout(channel.debounce);
    channel.watcher = undefined;
    if (this.channels.get(channel.instance) === channel) this.channels.delete(channel.instance);
  }

  private schedule(channel: Channel): void {
    if (this.channels.get(channel.instance) !== channel) return;
    clearTimeout(channel.debounce);
    channel.debounce = setTimeout(() => void this.reload(channel), this.debounceMs);
    channel.debounce.unref();
  }

  private async reload(channel: Channel): Promise<void> {
    if (channel.reading) {
      channel.rereadAfter = true;
      return;
    }
    channel.reading = true;
    try {
      const file = this.home.protocolFile(channel.instance);
      channel.stamp = stampOf(file);
      let head: ProtocolHead;
      try {
        head = parseHead(await fs.promises.readFile(file));
      } catch {
        return; // missing or half-written by a non-atomic writer: the next change or poll retries
      }
      if (head.instance_hash !== channel.instance) return;
      if (this.channels.get(channel.instance) !== channel) return;
      for (const client of [...channel.clients]) this.deliver(client, head);
    } finally {
      channel.reading = false;
      if (channel.rereadAfter) {
        channel.rereadAfter = false;
        this.schedule(channel);
      }
    }
  }

  /**
   * Sends what `client` has not seen of the entries `head` counts, read from the pages from the client's next seq on.
   * Honours backpressure: when the socket's buffer is full (a long replay, a slow reader) it stops and resumes on
   * `drain`, so memory per client stays bounded (one page) without dropping clients that are merely behind.
   */
  private deliver(client: Client, head: ProtocolHead): void {
    if (client.draining) {
      if (!client.pending || newer(head, client.pending)) client.pending = head;
      return;
    }
    const last = head.entries - 1;
    while (client.lastSeq < last) {
      const { index, position } = pageOf(client.lastSeq + 1, head.page_size);
      const lines = this.pageLines(client.channel, index);
      // Not on disk (yet, or a store being rebuilt by a resume): the next head or change delivers it.
      if (!lines || position >= lines.length) break;
      for (let at = position; at < lines.length && client.lastSeq < last; at += 1) {
        const seq = index * head.page_size + at;
        const line = lines[at];
        if (!lineHasSeq(line, seq)) return; // a page not of this layout: send nothing out of order
        const sent = this.write(client, `id: ${seq}\nevent: state\ndata: ${line}\n\n`);
        if (sent === "gone") return;
        client.lastSeq = seq;
        if (sent === "full") return this.waitForDrain(client, head);
      }
    }
    if (head.status !== "running" && client.lastSeq >= last && !client.statusSent) {
      const data: StatusEventData = {
        instance_hash: head.instance_hash,
        status: head.status,
        head: head.head,
        terminated: head.terminated,
      };
      const sent = this.write(client, `event: status\ndata: ${JSON.stringify(data)}\n\n`);
      if (sent !== "gone") client.statusSent = true;
    }
  }

  /**
   * The entry lines of page `index` (its whole lines, the header left out), or undefined when it is not there. The
   * lines read are reused while the file is the same (inode, size and modification time: an append changes the size,
   * a resume's rebuild the inode).
   */
  private pageLines(channel: Channel, index: number): string[] | undefined {
    const file = this.home.pageFile(channel.instance, index);
    const stamp = stampOf(file);
    if (stamp === undefined) return undefined;
    const cached = channel.pages.find((page) => page.index === index && page.stamp === stamp);
    if (cached) return cached.lines;
    let bytes: Buffer;
    try {
      bytes = fs.readFileSync(file);
    } catch {
      return undefined;
    }
    const text = bytes.subarray(0, bytes.lastIndexOf(0x0a) + 1).toString("utf8");
    const lines = text.split("\n").slice(1, -1); // the header, and what follows the last newline
    channel.pages = [{ index, stamp, lines }, ...channel.pages.filter((page) => page.index !== index)];
    channel.pages.length = Math.min(channel.pages.length, 2);
    return lines;
  }

  private waitForDrain(client: Client, head: ProtocolHead): void {
    client.draining = true;
    if (!client.pending || newer(head, client.pending)) client.pending = head;
    client.res.once("drain", () => {
      client.draining = false;
      const next = client.pending;
      client.pending = undefined;
      if (next) this.deliver(client, next);
    });
  }

  /**
   * Writes to one client: "ok", "full" (buffer above its high-water mark: wait for drain) or "gone".
   * A client whose unsent output still exceeds `maxBufferedBytes` is dropped.
   */
  private write(client: Client, text: string): "ok" | "full" | "gone" {
    const { res } = client;
    if (res.writableEnded || res.destroyed) return "gone";
    const ok = res.write(text);
    if (res.writableLength > this.maxBufferedBytes) {
      res.destroy();
      return "gone";
    }
    return ok ? "ok" : "full";
  }

  private startHeartbeat(): void {
    if (this.heartbeat) return;
    this.heartbeat = setInterval(() => {
      for (const channel of this.channels.values()) {
        for (const client of [...channel.clients]) if (!client.draining) this.write(client, ": heartbeat\n\n");
      }
    }, this.heartbeatMs);
    this.heartbeat.unref();
  }

  private stopHeartbeat(): void {
    clearInterval(this.heartbeat);
    this.heartbeat = undefined;
  }
}

/** Whether `a` is a later head of the same protocol than `b` (more entries, or terminated). */
function newer(a: ProtocolHead, b: ProtocolHead): boolean {
  const length = a.entries - b.entries;
  if (length !== 0) return length > 0;
  return a.status !== "running" && b.status === "running";
}

/** Whether an entry line is entry `seq` (a store whose pages don't match its head is not streamed out of order). */
function lineHasSeq(line: string, seq: number): boolean {
  try {
    return (JSON.parse(line) as { seq?: unknown }).seq === seq;
  } catch {
    return false;
  }
}

/** Identity of a file version as far as stat can tell (rename gives a new inode, writes change mtime/size). */
function stampOf(file: string): string | undefined {
  try {
    const stat = fs.statSync(file, { bigint: true });
    return `${stat.ino}:${stat.size}:${stat.mtimeNs}`;
  } catch {
    return undefined;
  }
}

/** Parses a `Last-Event-ID` value: a non-negative integer seq, or undefined when absent. Throws on garbage. */
export function parseLastEventId(value: string | string[] | undefined): number | undefined {
  if (value === undefined) return undefined;
  const text = Array.isArray(value) ? value[0] : value;
  if (text === undefined || text.trim() === "") return undefined;
  if (!/^\d{1,15}$/.test(text.trim())) throw new RangeError(`Last-Event-ID must be a sequence number, got "${text}"`);
  return Number(text.trim());
}
