// Identities, tokens and handshake crypto. Pure: no I/O (key files are (de)serialised here,
// read and written by the daemon and CLI).

export {
  parseLabel,
  parseUserLabel,
  canonicalLabels,
  userLabels,
  labelsEqual,
  isSystemKey,
  type Label,
  type CanonicalLabels,
} from './labels.js';

export {
  createCa,
  createHostKey,
  createSecret,
  serializeCa,
  parseCaFile,
  serializeCaPublic,
  parseCaPublicFile,
  serializeHostIdentity,
  parseHostIdentityFile,
  serializeSecret,
  parseSecretFile,
  MIN_SECRET_BYTES,
  type EcPublicJwk,
  type EcPrivateJwk,
  type CaKeyPair,
  type CaPublic,
  type HostKeyPair,
  type HostIdentity,
  type PskHostIdentity,
  type CaHostIdentity,
  type SecretPurpose,
} from './keys.js';

export {
  issueHostCertificate,
  inspectCertificate,
  verifyHostCertificate,
  type CertificateClaims,
  type IssueHostCertificateOptions,
} from './certificate.js';

export {
  createTokenIssuer,
  MAX_TOKEN_BYTES,
  type TokenClaims,
  type TokenPu,
  type TokenIssuer,
  type TokenVerifier,
  type TokenVerifierOptions,
  type VerifyResult,
  type VerifiedToken,
  type VerifyFailure,
  type VerifyFailureReason,
  type VerifyStats,
} from './tokens.js';

export { createTokenVerifier } from './token-verifier.js';

export {
  createNonceSource,
  createEphemeralKey,
  createKeyAgreement,
  x25519PublicKey,
  sessionKey,
  mac,
  macEqual,
  NODE_DIGESTS,
  NONCE_BYTES,
  MAC_BYTES,
  SESSION_KEY_BYTES,
  type Digests,
  type NonceSource,
  type EphemeralKey,
  type KeyAgreement,
  type KeyAgreementStats,
} from './session.js';

export { Lru } from './lru.js';

export {
  createHostTrust,
  checkHostTrust,
  certificateId,
  labelBindingProblem,
  NO_HOST_TRUST,
  CERT_ID_PREFIX,
  type HostTrust,
  type HostTrustInput,
  type HostTrustRefusal,
  type LabelBinding,
} from './revocation.js';
