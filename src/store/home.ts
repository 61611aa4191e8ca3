import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { StatetrailError } from "../errors";
import { parseHexHash, type HexHash } from "../chain/hash";
import { parseProtocol, type InstanceProtocol } from "../protocol/schema";

/**
 * The data directory (`--home`, default `~/.statetrail`). Everything the server publishes lives here,
 * content-addressed, so it survives restarts:
 *   identity.json, keystore.json, tls/{cert,key}.pem
 *   models/<hash>.asl.json          exact model bytes
 *   states/<hash>.json              exact state data bytes
 *   instances/<hash>/input.json     exact input bytes
 *   instances/<hash>/protocol.json  the signed instance protocol
 *   instances/<hash>/journal.jsonl  the tracker's journal
 *   chain.json                      the chain the directory was first used with (chain id, genesis block hash)
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
    return this.path("states", `${parseHexHash(hash, "state hash")}.json`);
  }

  instanceDir(hash: HexHash): string {
    return this.path("instances", parseHexHash(hash, "instance hash"));
  }

  protocolFile(hash: HexHash): string {
    return path.join(this.instanceDir(hash), "protocol.json");
  }

  inputFile(hash: HexHash): string {
    return path.join(this.instanceDir(hash), "input.json");
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

  writeProtocol(protocol: InstanceProtocol): void {
    fs.mkdirSync(this.instanceDir(protocol.instance_hash), { recursive: true });
    writeAtomic(this.protocolFile(protocol.instance_hash), Buffer.from(JSON.stringify(protocol, null, 2) + "\n"));
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

  readProtocol(instance: HexHash): InstanceProtocol {
    return parseProtocol(readOrNotFound(this.protocolFile(instance), `instance ${instance}`).toString("utf8"));
  }

  chainFile(): string {
    return this.path("chain.json");
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
