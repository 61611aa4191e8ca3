import { recoverProtocolSigner } from "../../protocol/signing";
import { type Step } from "../context";
import { Findings, sameAddress } from "../findings";

/** V8: the protocol's EIP-191 signature over its RFC 8785 canonical form (without `signature`) recovers to the issuer. */
export const signatureStep: Step = {
  id: "V8",
  async run({ protocol }) {
    const findings = new Findings();
    const signer = recoverProtocolSigner(protocol);
    const issuer = protocol.issuer.address;
    if (!signer) findings.fail("the protocol signature is malformed");
    else if (!sameAddress(signer, issuer))
      findings.fail(`the protocol is signed by ${signer}, not the issuer ${issuer}`);
    return findings.outcome(`signature recovers to the issuer ${issuer}`);
  },
};
