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
 */
export class Home {
  readonly root: string;

  constructor(root?: string) {
    this.root = path.resolve(root ?? process.env.STATETRAIL_HOME ?? path.join(os.homedir(), ".statetrail"));
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
