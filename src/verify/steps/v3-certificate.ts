import { type Step } from "../context";
import { Findings, iso, sameAddress, short } from "../findings";

/**
 * V3: the certificate the issuer's server presented is registered in the trusted CertificateRegistry for
 * the issuer (the registry checked the holder's EIP-712 signature on-chain when it accepted the
 * registration, so holder = issuer is the proof), not revoked, and inside its registered window now and at
 * every state's timestamp; the X.509 window also covers now.
 */
export const certificateStep: Step = {
  id: "V3",
  async run(context) {
    const { protocol, certificate, chain } = context;
    if (!certificate) return { status: "skip", detail: "no server certificate was captured (see V1)" };
    const findings = new Findings();
    const fingerprint = certificate.fingerprint;
    const issuer = protocol.issuer.address;
    try {
      const now = await context.now();
      const record = await chain.certificateOf(fingerprint, issuer);
      if (!record.holder) {
        findings.fail(
          `server certificate ${fingerprint} is not registered in the trusted CertificateRegistry`,
          "CERT_NOT_REGISTERED",
        );
        return findings.outcome("");
      }
      if (!sameAddress(record.holder, issuer)) {
        findings.fail(
          `server certificate ${fingerprint} is registered to ${record.holder}, not the issuer ${issuer}`,
          "CERT_NOT_REGISTERED",
        );
      }
      if (record.revokedAt !== 0) {
        findings.fail(`server certificate ${fingerprint} was revoked at ${iso(record.revokedAt)}`, "CERT_REVOKED");
      }
      const window = `${iso(record.notBefore)} to ${iso(record.notAfter)}`;
      if (now < record.notBefore || now > record.notAfter) {
        findings.fail(
          `server certificate is ${now > record.notAfter ? "expired" : "not yet valid"} at ${iso(now)} (registered window ${window})`,
          "CERT_EXPIRED",
        );
      }
      if (now < certificate.notBefore || now > certificate.notAfter) {
        findings.fail(
          `the X.509 certificate is outside its own window (${iso(certificate.notBefore)} to ${iso(certificate.notAfter)}) at ${iso(now)}`,
          "CERT_EXPIRED",
        );
      }
      // The served certificate authenticates the server now; what the states say rests on the issuer's
      // signature and the chain. After a rotation the protocol still names the certificate of its run:
      // that one must have been the issuer's too.
      const named = protocol.issuer.certificate_fingerprint;
      if (named !== fingerprint) {
        const earlier = await chain.certificateOf(named, issuer);
        if (!earlier.holder || !sameAddress(earlier.holder, issuer)) {
          findings.fail(`the protocol names certificate ${named}, which is not registered for the issuer`);
        } else {
          findings.note(
            `the protocol names certificate ${short(named)} (rotated since${earlier.revokedAt ? `, revoked at ${iso(earlier.revokedAt)}` : ""})`,
          );
        }
      }
      return findings.outcome(
        `certificate ${short(fingerprint)} registered for the issuer (signature checked on-chain), valid ${window}, ` +
          `covers now, not revoked`,
      );
    } catch (error) {
      findings.error(error);
      return findings.outcome("");
    }
  },
};
