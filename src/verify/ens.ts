import { getAddress, type AbstractProvider } from "ethers";
import { type EnsReader } from "./types";

/**
 * An {@link EnsReader} over an ethers provider whose Network carries an `EnsPlugin` (see chain/provider.ts
 * `connect`). `primaryName` is ethers' `lookupAddress`, which already returns null unless the reverse name
 * resolves forward to the same address; V2 checks the forward record again on its own.
 */
export function ensReaderFromProvider(provider: AbstractProvider): EnsReader {
  return {
    primaryName: (address) => provider.lookupAddress(getAddress(address)),
    resolveAddress: (name) => provider.resolveName(name),
    async text(name, key) {
      const resolver = await provider.getResolver(name);
      return resolver ? resolver.getText(key) : null;
    },
  };
}
