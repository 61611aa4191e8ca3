import fs from "node:fs";
import { createEngine } from "../../src/engine";
import { type Engine, type EngineEvent } from "../../src/engine/types";
import { loadModelFromBytes } from "../../src/model/load";
import { type ProtocolHead } from "../../src/protocol/schema";
import { type TestIssuer } from "../../test/helpers/issuer";
import { benchModelBytes, iterationsFor } from "./build";
import { counter, int, type Progress } from "./common";

export interface PublicationRow {
  states: number;
  mode: "multi";
  /** Heads published during the run (the tracker publishes at most every 250 ms, and at the end). */
  publications: number;
  /** Bytes written to the head file (protocol.json, rewritten whole, atomically) per publication. */
  head_bytes_per_publication: number;
  head_bytes_max: number;
  /** Bytes appended to the pages, per entry published. */
  page_bytes_per_entry: number;
  /** Bytes written to the head and the pages in one publication: mean, and the largest. */
  bytes_per_publication: number;
  bytes_per_publication_max: number;
  /** Entries a publication added: mean and largest. */
  entries_per_publication: number;
  entries_per_publication_max: number;
  /** What a publication of N new entries costs, per new entry (head bytes / N + page bytes per entry): mean. */
  bytes_per_publication_per_new_entry: number;
  /** The largest page file written to (bytes), and whether any page byte was written twice (a page rewritten). */
  page_rewrites: number;
  /** The last publication that added one entry or more: its bytes (head + pages) and entries. */
  last: { bytes: number; entries: number };
  measured_at: string;
}

export interface PublicationResults {
  model: string;
  rows: PublicationRow[];
  /** Head bytes and page bytes per entry equal within 5 % at every size: publishing costs O(1) per state. */
  constant: boolean;
}

/** Bytes written through node:fs to an instance's head and pages, counted as they are written. */
class WriteCounter {
  head = 0;
  pages = 0;
  /** Page bytes written at offsets already written (a page rewritten rather than appended). */
  rewritten = 0;
  private readonly fds = new Map<number, string>();
  /** Inside appendFileSync or writeFileSync (whose own writeSync calls are not counted again). */
  private depth = 0;
  private readonly pageSizes = new Map<string, number>();
  private readonly restore: Array<() => void> = [];

  install(): void {
    const patch = <K extends "openSync" | "writeSync" | "closeSync" | "appendFileSync" | "writeFileSync">(
      name: K,
      wrap: (original: (typeof fs)[K]) => (typeof fs)[K],
    ): void => {
      const original = fs[name];
      (fs as Record<K, unknown>)[name] = wrap(original.bind(fs) as (typeof fs)[K]);
      this.restore.push(() => ((fs as Record<K, unknown>)[name] = original));
    };
    patch(
      "openSync",
      (original) =>
        ((file: fs.PathLike, ...rest: unknown[]) => {
          const fd = (original as (...args: unknown[]) => number)(file, ...rest);
          this.fds.set(fd, String(file));
          return fd;
        }) as typeof fs.openSync,
    );
    patch(
      "closeSync",
      (original) =>
        ((fd: number) => {
          this.fds.delete(fd);
          original(fd);
        }) as typeof fs.closeSync,
    );
    patch(
      "writeSync",
      (original) =>
        ((fd: number, buffer: unknown, ...rest: unknown[]) => {
          const written = (original as (...args: unknown[]) => number)(fd, buffer, ...rest);
          const file = this.fds.get(fd);
          // Counted here only when called directly: appendFileSync and writeFileSync write through it (counted below).
          if (file && this.depth === 0) this.count(file, written, false);
          return written;
        }) as typeof fs.writeSync,
    );
    const whole =
      (append: boolean | "flag") =>
      (original: (...args: unknown[]) => void) =>
      (file: fs.PathOrFileDescriptor, data: string | Uint8Array, options?: unknown) => {
        const outermost = this.depth === 0; // appendFileSync writes through writeFileSync: counted once
        this.depth += 1;
        try {
          original(file, data, options);
        } finally {
          this.depth -= 1;
        }
        if (!outermost) return;
        const flag = typeof options === "object" && options !== null ? (options as { flag?: string }).flag : undefined;
        const appending = append === "flag" ? typeof flag === "string" && flag.startsWith("a") : append;
        if (typeof file !== "number") {
          this.count(String(file), typeof data === "string" ? Buffer.byteLength(data) : data.length, appending);
        }
      };
    patch("appendFileSync", whole(true) as unknown as (original: typeof fs.appendFileSync) => typeof fs.appendFileSync);
    patch("writeFileSync", whole("flag") as unknown as (original: typeof fs.writeFileSync) => typeof fs.writeFileSync);
  }

  uninstall(): void {
    for (const undo of this.restore.splice(0)) undo();
  }

  private count(file: string, bytes: number, append: boolean): void {
    if (!file.includes("/instances/")) return;
    if (/\/protocol\.json(\.\d+\.tmp)?$/.test(file)) this.head += bytes;
    else if (/\/pages\/\d+\.jsonl(\.\d+\.tmp)?$/.test(file)) {
      this.pages += bytes;
      const page = file.replace(/\.\d+\.tmp$/, "");
      if (!append) this.rewritten += Math.min(bytes, this.pageSizes.get(page) ?? 0);
      this.pageSizes.set(page, (append ? (this.pageSizes.get(page) ?? 0) : 0) + bytes);
    }
  }
}

/**
 * Bytes written per publication by the tracker (protocol v3: each new entry's line appended to the open page, the
 * constant-size head rewritten and signed): real tracked runs of the benchmark loop model (the local engine's events
 * with the echo Task handler, replayed; multi mode) of 10 and 10,000 states, every write to the instance's head and pages counted by a wrapper
 * around node:fs, snapshot at each published head.
 */
export async function measurePublication(issuer: TestIssuer, progress: Progress): Promise<PublicationResults> {
  const rows: PublicationRow[] = [];
  for (const states of [10, 10_000]) {
    const model = loadModelFromBytes(benchModelBytes(iterationsFor(states)), { source: `bench-loop-${states}` });
    const label = `publication: a tracked run of ${int(states)} states`;
    const input = { batchId: `publication-${states}` };
    progress.set(label, true);
    const show = counter(progress, (done) => `${label}: ${int(done)} final`);
    const writes = new WriteCounter();
    const publications: Array<{ head: number; pages: number; entries: number }> = [];
    let last = { head: 0, pages: 0, entries: 0 };
    const measuredAt = new Date().toISOString();
    // The local engine's events, recorded by an untracked run, then fed to the tracker as fast as it takes them:
    // the engine interpreting thousands of states in one burst starves the event loop (the node's keep-alive
    // connection closes under a request: "socket hang up"), and the engine's pace is not what is measured here.
    const local = createEngine({ engine: "local", taskHandler: "echo", skipWaits: true, maxSteps: 10 * states });
    await local.prepare(model);
    const events: EngineEvent[] = [];
    for await (const event of local.run(model, { input, executionName: `publication-${states}` })) events.push(event);
    const replay: Engine = {
      name: "local",
      prepare: async () => undefined,
      async *run() {
        for (const event of events) {
          yield event;
          await new Promise((resolve) => setImmediate(resolve)); // I/O between events, as a real engine allows
        }
      },
    };
    const tracker = issuer.tracker(replay, {
      anchor: "multi",
      maxInFlight: 16,
      onProgress: (event) => event.kind === "final" && show(event.seq + 1),
      onProtocol: (head: ProtocolHead) => {
        publications.push({
          head: writes.head - last.head,
          pages: writes.pages - last.pages,
          entries: head.entries - last.entries,
        });
        last = { head: writes.head, pages: writes.pages, entries: head.entries };
        issuer.server.notify(head);
      },
    });
    writes.install();
    let head: ProtocolHead;
    try {
      head = await tracker.run(model, Buffer.from(JSON.stringify(input)));
    } finally {
      writes.uninstall();
      tracker.close();
    }
    if (head.entries !== states) throw new Error(`the run published ${head.entries} entries, not ${states}`);
    const growing = publications.filter((publication) => publication.entries > 0);
    const mean = (values: number[]): number => values.reduce((a, b) => a + b, 0) / Math.max(1, values.length);
    const lastGrowing = growing[growing.length - 1];
    rows.push({
      states,
      mode: "multi",
      publications: publications.length,
      head_bytes_per_publication: Math.round(mean(publications.map((p) => p.head))),
      head_bytes_max: Math.max(...publications.map((p) => p.head)),
      page_bytes_per_entry: Math.round((writes.pages / states) * 10) / 10,
      bytes_per_publication: Math.round(mean(publications.map((p) => p.head + p.pages))),
      bytes_per_publication_max: Math.max(...publications.map((p) => p.head + p.pages)),
      entries_per_publication: Math.round(mean(growing.map((p) => p.entries)) * 10) / 10,
      entries_per_publication_max: Math.max(...growing.map((p) => p.entries)),
      bytes_per_publication_per_new_entry: Math.round(mean(growing.map((p) => (p.head + p.pages) / p.entries))),
      page_rewrites: writes.rewritten,
      last: { bytes: lastGrowing.head + lastGrowing.pages, entries: lastGrowing.entries },
      measured_at: measuredAt,
    });
    fs.rmSync(issuer.home.instanceDir(head.instance_hash), { recursive: true, force: true });
  }
  const within = (a: number, b: number): boolean => Math.abs(a - b) <= 0.05 * Math.max(a, b);
  const [small, large] = [rows[0], rows[rows.length - 1]];
  return {
    model: "the verifier benchmark's loop model (scripts/bench/build.ts benchModelBytes)",
    rows,
    constant:
      within(small.head_bytes_per_publication, large.head_bytes_per_publication) &&
      within(small.page_bytes_per_entry, large.page_bytes_per_entry) &&
      rows.every((row) => row.page_rewrites === 0),
  };
}
