import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { StatetrailError } from "../errors";
import { parseHexHash, type HexHash } from "../chain/hash";
import {
  accumulatorOf,
  decodePage,
  encodePages,
  entryLine,
  headOf,
  nextAccumulator,
  pageCount,
  pageHeaderLine,
} from "../protocol/pages";
import { parseHead, type InstanceProtocol, type ProtocolEntry, type ProtocolHead } from "../protocol/schema";

/**
 * The data directory (`--home`, default `~/.statetrail`). Everything the server publishes lives here,
 * content-addressed, so it survives restarts:
 *   identity.json, keystore.json, tls/{cert,key}.pem
 *   models/<hash>.asl.json          exact model bytes
 *   states/<hash>.json              exact state data bytes
 *   instances/<hash>/input.json     exact input bytes
 *   instances/<hash>/protocol.json  the signed head of the instance protocol (version 3)
 *   instances/<hash>/pages/<k>.jsonl page k of its entries, append-only (src/protocol/pages.ts)
 *   instances/<hash>/journal.jsonl  the tracker's journal
 *   chain.json                      the chain the directory was first used with (chain id, genesis block hash)
 *   access.json, access.log         who may read what the server publishes, and every change to it (store/access.ts)
 */
/**
 * `~` and `~/…` are the user's home directory, as a shell would expand them (a `--home ~/x` inside quotes or a
 * variable reaches statetrail unexpanded); `~user/…` is refused rather than made a folder named `~user`.
 */
export function expandHome(dir: string): string {
  if (dir === "~") return os.homedir();
  if (dir.startsWith("~/") || dir.startsWith(`~${path.sep}`)) return path.join(os.homedir(), dir.slice(2));
  if (dir.startsWith("~")) {
    throw new StatetrailError("INVALID_ARGUMENT", `--home ${dir}: only ~ and ~/… are expanded`, {
      hint: "give the data directory as an absolute path, or as ~/… for one in your home directory",
    });
  }
  return dir;
}

export class Home {
  readonly root: string;

  constructor(root?: string) {
    this.root = path.resolve(expandHome(root ?? process.env.STATETRAIL_HOME ?? path.join(os.homedir(), ".statetrail")));
  }

  path(...parts: string[]): string {
    return path.join(this.root, ...parts);
  }

  ensure(): this {
    for (const dir of ["models", "states", "instances", "tls"]) fs.mkdirSync(this.path(dir), { recursive: true });
    return this;
  }

  modelFile(hash: HexHash): string {
    return this.path("models", `${parseHexHash(hash, "model hash")}.asl.json`);
  }

  stateFile(hash: HexHash): string {
    // A state document: JSON lines, the state data then its disclosures (disclosure.ts).
    return this.path("states", `${parseHexHash(hash, "state hash")}.jsonl`);
  }

  instanceDir(hash: HexHash): string {
    return this.path("instances", parseHexHash(hash, "instance hash"));
  }

  protocolFile(hash: HexHash): string {
    return path.join(this.instanceDir(hash), "protocol.json");
  }

  /** Page `index` of an instance's protocol: JSON lines, a header then one entry per line (pages.ts). */
  pageFile(hash: HexHash, index: number): string {
    if (!Number.isSafeInteger(index) || index < 0) throw new StatetrailError("INVALID_ARGUMENT", `page ${index}`);
    return path.join(this.instanceDir(hash), "pages", `${index}.jsonl`);
  }

  /** The execution input's exact bytes (the tracker's own copy, to resume a run; never served). */
  inputFile(hash: HexHash): string {
    return path.join(this.instanceDir(hash), "input.json");
  }

  /** The execution input's disclosure document (disclosure.ts `sealInput`): what `/instances/<h>/input` serves. */
  inputDocumentFile(hash: HexHash): string {
    return path.join(this.instanceDir(hash), "input.jsonl");
  }

  journalFile(hash: HexHash): string {
    return path.join(this.instanceDir(hash), "journal.jsonl");
  }

  writeModel(hash: HexHash, bytes: Buffer): void {
    writeAtomic(this.modelFile(hash), bytes);
  }

  writeState(hash: HexHash, bytes: Buffer): void {
    writeAtomic(this.stateFile(hash), bytes);
  }

  writeInput(instance: HexHash, bytes: Buffer): void {
    fs.mkdirSync(this.instanceDir(instance), { recursive: true });
    writeAtomic(this.inputFile(instance), bytes);
  }

  writeInputDocument(instance: HexHash, document: Buffer): void {
    fs.mkdirSync(this.instanceDir(instance), { recursive: true });
    writeAtomic(this.inputDocumentFile(instance), document);
  }

  /**
   * Writes a whole protocol: every page (rewritten), then the head. For a protocol built at once (tests, resume,
   * benchmarks); the tracker appends with {@link appendEntries} and {@link writeHead} instead.
   */
  writeProtocol(protocol: InstanceProtocol): void {
    const instance = protocol.instance_hash;
    fs.mkdirSync(path.join(this.instanceDir(instance), "pages"), { recursive: true });
    encodePages(protocol).forEach((bytes, index) => writeAtomic(this.pageFile(instance, index), bytes));
    this.writeHead(headOf(protocol));
  }

  /** Replaces the signed head (constant size) atomically: readers see the old head or the new one. */
  writeHead(head: ProtocolHead): void {
    fs.mkdirSync(this.instanceDir(head.instance_hash), { recursive: true });
    writeAtomic(this.protocolFile(head.instance_hash), Buffer.from(JSON.stringify(head, null, 2) + "\n"));
  }

  /**
   * Appends entries `from`, `from + 1`, … to the pages (a page file is begun with its header line when its first
   * entry comes): O(1) bytes per entry, nothing rewritten. `accumulatorBefore` is the accumulator after entry
   * `from - 1` (the instance hash for 0), needed for a new page's header. Appends never overlap (one tracker per
   * instance); a reader sees whole lines only (the server serves up to the last newline).
   */
  appendEntries(
    instance: HexHash,
    pageSize: number,
    from: number,
    entries: readonly ProtocolEntry[],
    accumulatorBefore: HexHash,
  ): HexHash {
    fs.mkdirSync(path.join(this.instanceDir(instance), "pages"), { recursive: true });
    let accumulator = accumulatorBefore;
    let pending = "";
    let pageIndex = Math.floor(from / pageSize);
    const flush = (): void => {
      if (pending) fs.appendFileSync(this.pageFile(instance, pageIndex), pending);
      pending = "";
    };
    entries.forEach((entry, offset) => {
      const seq = from + offset;
      const index = Math.floor(seq / pageSize);
      if (index !== pageIndex) {
        flush();
        pageIndex = index;
      }
      // A page's header is written with its first entry, unless it is already there (page 0 of an instance is
      // begun with its header by beginPages, so an instance without a state has its one empty page).
      if (seq % pageSize === 0 && !(index === 0 && fileSize(this.pageFile(instance, 0)) > 0)) {
        pending += pageHeaderLine(instance, index, accumulator) + "\n";
      }
      const line = entryLine(entry);
      accumulator = nextAccumulator(accumulator, line);
      pending += line + "\n";
    });
    flush();
    return accumulator;
  }

  /**
   * Begins the pages of a new instance: page 0 with its header line and no entry (the one empty page of an instance
   * without a state, pages.ts `pageCount`), unless it exists already.
   */
  beginPages(instance: HexHash): void {
    const file = this.pageFile(instance, 0);
    if (fileSize(file) > 0) return;
    writeAtomic(file, Buffer.from(pageHeaderLine(instance, 0, instance) + "\n"));
  }

  /**
   * Replaces every page of an instance by the pages of `entries` (a resume rebuilds the pages from the journal and
   * the chain, whatever a killed tracker left on disk: pages ahead of or behind its journal, a torn last line).
   * The new pages are written (and fsync'd) in a folder of their own, then swapped in by renames, so a reader sees the
   * old pages or the new ones. Returns the accumulator after the last entry.
   */
  replacePages(instance: HexHash, pageSize: number, entries: readonly ProtocolEntry[]): HexHash {
    const dir = path.join(this.instanceDir(instance), "pages");
    const fresh = `${dir}.rebuild-${process.pid}`;
    const old = `${dir}.old-${process.pid}`;
    fs.rmSync(fresh, { recursive: true, force: true });
    fs.rmSync(old, { recursive: true, force: true });
    fs.mkdirSync(fresh, { recursive: true });
    encodePages({ instance_hash: instance, instance_protocol: [...entries], page_size: pageSize }).forEach(
      (bytes, index) => writeAtomic(path.join(fresh, `${index}.jsonl`), bytes),
    );
    if (fs.existsSync(dir)) fs.renameSync(dir, old);
    fs.renameSync(fresh, dir);
    fs.rmSync(old, { recursive: true, force: true });
    return accumulatorOf(instance, entries);
  }

  /**
   * Page `index` as it may be served: its whole lines only (up to the last newline: an append may be under way), or
   * undefined when the page does not exist (or has no whole line yet). `lines` counts them, the header included.
   */
  async readServablePage(instance: HexHash, index: number): Promise<{ bytes: Buffer; lines: number } | undefined> {
    let bytes: Buffer;
    try {
      bytes = await fs.promises.readFile(this.pageFile(instance, index));
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === "ENOENT" || code === "ENOTDIR") return undefined;
      throw error;
    }
    const end = bytes.lastIndexOf(0x0a);
    if (end < 0) return undefined;
    const whole = bytes.subarray(0, end + 1);
    let lines = 0;
    for (let at = whole.indexOf(0x0a); at >= 0; at = whole.indexOf(0x0a, at + 1)) lines += 1;
    return { bytes: whole, lines };
  }

  /**
   * Entries `from` to `to - 1` of a protocol the head describes, read from the pages that hold them only (each page
   * checked against its own header's accumulator: for the issuer's own tools, e.g. the last entries of a long run;
   * {@link readProtocol} checks everything against the head).
   */
  readEntries(
    head: Pick<ProtocolHead, "instance_hash" | "page_size" | "entries">,
    from: number,
    to: number,
  ): ProtocolEntry[] {
    const end = Math.min(to, head.entries);
    const entries: ProtocolEntry[] = [];
    for (let seq = Math.max(0, from); seq < end;) {
      const index = Math.floor(seq / head.page_size);
      const bytes = this.readPage(head.instance_hash, index);
      const firstLine = bytes.subarray(0, bytes.indexOf(0x0a));
      const accumulatorBefore = (JSON.parse(firstLine.toString("utf8")) as { accumulator_before?: string })
        .accumulator_before;
      const page = decodePage(bytes.subarray(0, bytes.lastIndexOf(0x0a) + 1), {
        instanceHash: head.instance_hash,
        index,
        accumulatorBefore: String(accumulatorBefore),
        wanted: Math.min(head.page_size, end - index * head.page_size),
      });
      for (const entry of page.entries) if (entry.seq >= seq && entry.seq < end) entries.push(entry);
      const next = (index + 1) * head.page_size;
      if (page.entries.length < Math.min(head.page_size, end - index * head.page_size)) {
        throw new StatetrailError("PAGE_INVALID", `page ${index} of instance ${head.instance_hash} is short`);
      }
      seq = next;
    }
    return entries;
  }

  /** Makes what was appended to page `index` durable (before a head that counts it is written). */
  syncPage(instance: HexHash, index: number): void {
    let fd: number;
    try {
      fd = fs.openSync(this.pageFile(instance, index), "r");
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return;
      throw error;
    }
    try {
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  }

  /** The signed head of an instance (parsed and schema-checked). */
  readHead(instance: HexHash): ProtocolHead {
    return parseHead(readOrNotFound(this.protocolFile(instance), `instance ${instance}`));
  }

  /** The bytes of page `index`, or NOT_FOUND. */
  readPage(instance: HexHash, index: number): Buffer {
    return readOrNotFound(this.pageFile(instance, index), `page ${index} of instance ${instance}`);
  }

  /**
   * The whole protocol of an instance, head and every entry, each page checked against the head's accumulator chain.
   * For tools that need everything of a small instance; the server and verifier read pages one at a time.
   */
  readProtocol(instance: HexHash): InstanceProtocol {
    const head = this.readHead(instance);
    const entries: ProtocolEntry[] = [];
    let accumulator = head.instance_hash;
    for (let index = 0; index < pageCount(head.entries, head.page_size); index += 1) {
      const page = decodePage(this.readPage(instance, index), {
        instanceHash: head.instance_hash,
        index,
        accumulatorBefore: accumulator,
        wanted: head.entries - entries.length,
      });
      entries.push(...page.entries);
      accumulator = page.accumulatorAfter;
    }
    if (accumulator !== head.accumulator || entries.length !== head.entries) {
      throw new StatetrailError(
        "PAGE_INVALID",
        `the stored pages of instance ${instance} are not what its head commits to`,
      );
    }
    return { ...head, instance_protocol: entries };
  }

  readModel(hash: HexHash): Buffer {
    return readOrNotFound(this.modelFile(hash), `model ${hash}`);
  }

  readState(hash: HexHash): Buffer {
    return readOrNotFound(this.stateFile(hash), `state ${hash}`);
  }

  readInput(instance: HexHash): Buffer {
    return readOrNotFound(this.inputFile(instance), `input of instance ${instance}`);
  }

  chainFile(): string {
    return this.path("chain.json");
  }

  /** The access policy (store/access.ts; absent: everything is served to anyone). */
  accessFile(): string {
    return this.path("access.json");
  }

  /** JSON lines, one per change of the access policy. */
  accessLogFile(): string {
    return this.path("access.log");
  }

  /** The chain this data directory belongs to, or null before its first use with a chain. */
  readChain(): ChainRecord | null {
    let text: string;
    try {
      text = fs.readFileSync(this.chainFile(), "utf8");
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return null;
      throw error;
    }
    const record = JSON.parse(text) as Partial<ChainRecord>;
    if (
      record.statetrail_chain !== 1 ||
      typeof record.chain_id !== "number" ||
      typeof record.genesis_hash !== "string" ||
      !/^0x[0-9a-f]{64}$/.test(record.genesis_hash)
    ) {
      throw new StatetrailError("INVALID_JSON", `${this.chainFile()} is not a chain record`, {
        hint: "delete it: the next command records the chain it is used with again",
      });
    }
    return record as ChainRecord;
  }

  writeChain(record: ChainRecord): void {
    writeAtomic(this.chainFile(), Buffer.from(JSON.stringify(record, null, 2) + "\n"));
  }

  listModels(): HexHash[] {
    return listNames(this.path("models"), ".asl.json");
  }

  listInstances(): HexHash[] {
    const dir = this.path("instances");
    if (!fs.existsSync(dir)) return [];
    return fs
      .readdirSync(dir)
      .filter((name) => /^[0-9a-f]{64}$/.test(name) && fs.existsSync(path.join(dir, name, "protocol.json")));
  }
}

/**
 * `chain.json`: the chain a data directory belongs to, recorded when it is first used with one. Its identity
 * (certificate registration, ENS name) and its instances exist on that chain only; a local chain that restarts
 * keeps its chain id (31337) but starts from a new genesis block.
 */
export interface ChainRecord {
  statetrail_chain: 1;
  chain_id: number;
  /** Hash of block 0, lower-case 0x-hex. */
  genesis_hash: string;
  /** The RPC endpoint it was first used through (informational). */
  rpc_url: string;
  recorded_at: string;
}

function listNames(dir: string, suffix: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return fs
    .readdirSync(dir)
    .filter((name) => name.endsWith(suffix))
    .map((name) => name.slice(0, -suffix.length));
}

/** The size of a file, 0 when it does not exist. */
function fileSize(file: string): number {
  try {
    return fs.statSync(file).size;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return 0;
    throw error;
  }
}

function readOrNotFound(file: string, what: string): Buffer {
  try {
    return fs.readFileSync(file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") {
      throw new StatetrailError("NOT_FOUND", `${what} is not in this data directory`, { cause: error });
    }
    throw error;
  }
}

/** Write to a temporary file, fsync, then rename: a reader never sees half a file, a crash leaves the old one. */
export function writeAtomic(file: string, bytes: Buffer): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const temp = `${file}.${process.pid}.tmp`;
  const fd = fs.openSync(temp, "w");
  try {
    fs.writeSync(fd, bytes);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(temp, file);
}
