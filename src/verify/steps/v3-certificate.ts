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
      for (const entry of protocol.instance_protocol) {
        if (entry.timestamp < record.notBefore || entry.timestamp > record.notAfter) {
          findings.fail(
            `state seq ${entry.seq} at ${iso(entry.timestamp)} lies outside the certificate's window ${window}`,
            "CERT_EXPIRED",
          );
        }
      }
      if (protocol.issuer.certificate_fingerprint !== fingerprint) {
        findings.note(`the protocol names certificate ${short(protocol.issuer.certificate_fingerprint)} (rotated?)`);
      }
      return findings.outcome(
        `certificate ${short(fingerprint)} registered for the issuer (signature checked on-chain), valid ${window}, ` +
          `covers now and all ${protocol.instance_protocol.length} state times, not revoked`,
      );
    } catch (error) {
      findings.error(error);
      return findings.outcome("");
    }
  },
};
