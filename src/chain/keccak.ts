import { keccak256 } from "ethers";

/**
 * Keccak-256 of bytes, for the hashing done per state (Merkle leaves and proofs): hash-wasm's WebAssembly Keccak
 * once {@link prepareKeccak} has loaded it, ethers' (JavaScript) until then. Both give the same values (see the
 * tests); the WebAssembly one takes under 1 µs for a leaf where ethers' takes about 9 µs on this machine, which
 * was a third of verifying a Merkle-anchored entry. WebAssembly is compiled asynchronously, so whoever hashes in
 * bulk awaits {@link prepareKeccak} first; a caller that doesn't is only slower.
 */

interface Hasher {
  init(): Hasher;
  update(data: Uint8Array): Hasher;
  digest(format: "binary"): Uint8Array;
}

type KeccakModule = { createKeccak(bits: 256): Promise<Hasher> };

let hasher: Hasher | undefined;
let loading: Promise<void> | undefined;

/** Loads the WebAssembly Keccak once. Never rejects: if WebAssembly can't be used, hashing stays on ethers'. */
export function prepareKeccak(): Promise<void> {
  loading ??= (async () => {
    try {
      // The single-algorithm build (11 KB) rather than the package's index of every algorithm.
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const wasm = require("hash-wasm/dist/keccak.umd.min.js") as KeccakModule;
      const candidate = await wasm.createKeccak(256);
      // A known answer before it is trusted with anything: keccak256("") as every Ethereum library has it.
      candidate.init();
      const empty = Buffer.from(candidate.digest("binary")).toString("hex");
      if (empty === "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470") hasher = candidate;
    } catch {
      // No WebAssembly here (e.g. --jitless): ethers' Keccak is correct, only slower.
    }
  })();
  return loading;
}

/** Keccak-256 of `data`, as 32 bytes (a fresh Buffer). */
export function keccak256Bytes(data: Uint8Array): Buffer {
  if (hasher) {
    hasher.init();
    hasher.update(data);
    const digest = hasher.digest("binary");
    return Buffer.from(digest.buffer, digest.byteOffset, digest.byteLength);
  }
  return Buffer.from(keccak256(data).slice(2), "hex");
}

/**
 * Keccak-256 of `data` written into `out` at `offset` (32 bytes), for callers that hash into a buffer of their own
 * (the Merkle proof checks): no Buffer made per digest.
 */
export function keccak256Into(data: Uint8Array, out: Uint8Array, offset = 0): void {
  if (hasher) {
    hasher.init();
    hasher.update(data);
    out.set(hasher.digest("binary"), offset);
    return;
  }
  out.set(Buffer.from(keccak256(data).slice(2), "hex"), offset);
}

/** Whether the WebAssembly Keccak is in use (for tests and benchmarks). */
export function keccakIsFast(): boolean {
  return hasher !== undefined;
}
