import { type HexHash } from "../chain/hash";
import { DEFAULT_PAGE_SIZE, PROTOCOL_VERSION, type Registries, type UnsignedProtocol } from "./schema";

/**
 * The issuer's content-addressed URLs (DESIGN.md): the one definition the tracker writes into protocols,
 * the CLI prints and the verifier requires.
 */
export const contentUrls = (base: string) => {
  const root = base.replace(/\/+$/, "");
  return {
    model: (hash: HexHash) => `${root}/models/${hash}`,
    state: (hash: HexHash) => `${root}/states/${hash}`,
    input: (instance: HexHash) => `${root}/instances/${instance}/input`,
    protocol: (instance: HexHash) => `${root}/instances/${instance}/protocol`,
    /** Page `index` of a protocol (pages.ts). */
    page: (instance: HexHash, index: number) => `${root}/instances/${instance}/protocol/pages/${index}`,
  };
};

/** A protocol of a just-created instance: no state yet, running. */
export function initialProtocol(fields: {
  chainId: number;
  registries: Registries;
  issuer: UnsignedProtocol["issuer"];
  modelHash: HexHash;
  instanceHash: HexHash;
  nonce: HexHash;
  inputDigest: HexHash;
  created: UnsignedProtocol["created"];
}): UnsignedProtocol {
  const urls = contentUrls(fields.issuer.url);
  return {
    protocol_version: PROTOCOL_VERSION,
    chain_id: fields.chainId,
    registries: fields.registries,
    issuer: fields.issuer,
    model_hash: fields.modelHash,
    model_data: urls.model(fields.modelHash),
    instance_hash: fields.instanceHash,
    instance_data: urls.input(fields.instanceHash),
    instance_nonce: fields.nonce,
    input_digest: fields.inputDigest,
    created: fields.created,
    status: "running",
    instance_protocol: [],
    page_size: DEFAULT_PAGE_SIZE,
    head: { seq: -1, state_hash: fields.instanceHash },
    terminated: null,
  };
}
