import { type AbstractProvider } from "ethers";
import { getText, resolveAddress, reverseRecord } from "../chain/ens";
import { type EnsReader } from "./types";

/**
 * An {@link EnsReader} over an ethers provider whose Network carries an `EnsPlugin` (chain/provider.ts
 * `connect` with the deployment's ENS registry). `primaryName` is the raw reverse record, unconfirmed and read
 * without a forward lookup: V2 checks its normal form and its forward address itself, so that it can say which link
 * is broken.
 */
export function ensReaderFromProvider(provider: AbstractProvider): EnsReader {
  return {
    primaryName: (address) => reverseRecord(provider, address),
    resolveAddress: (name) => resolveAddress(provider, name),
    text: (name, key) => getText(provider, name, key),
  };
}
