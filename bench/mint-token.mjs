// Prints an access token as Tepi signs one (core/src/auth/keys.rs): EdDSA
// over the first key of JWT_SIGNING_KEYS (`kid:seed`, read from the
// environment, never from arguments), header {alg, kid, typ}, claims
// iss/aud/sub/tenant/role/jti with iat = nbf = now and exp = now + 15 min.
//
// Used by scripts/bench.sh under bare `workerd serve`, where no database
// exists to log in against; under wrangler dev and Spin it logs in instead.
//
//   JWT_SIGNING_KEYS=kid:seed node bench/mint-token.mjs TENANT SUBJECT [ROLE]
import { createPrivateKey, randomBytes, sign } from "node:crypto";

const [tenant, sub, role = "user"] = process.argv.slice(2);
if (!tenant || !sub) {
  console.error("usage: JWT_SIGNING_KEYS=kid:seed node bench/mint-token.mjs TENANT SUBJECT [ROLE]");
  process.exit(2);
}
const first = (process.env.JWT_SIGNING_KEYS || "").split(",")[0].trim();
const colon = first.indexOf(":");
const seed = Buffer.from(first.slice(colon + 1), "base64url");
if (colon < 1 || seed.length !== 32) {
  console.error("JWT_SIGNING_KEYS must start with kid:seed, the seed 32 bytes in base64url");
  process.exit(2);
}
// PKCS#8 wrapping of a raw Ed25519 seed (RFC 8410).
const key = createPrivateKey({
  key: Buffer.concat([Buffer.from("302e020100300506032b657004220420", "hex"), seed]),
  format: "der",
  type: "pkcs8",
});
const part = (value) => Buffer.from(JSON.stringify(value)).toString("base64url");
const now = Math.floor(Date.now() / 1000);
const header = part({ alg: "EdDSA", kid: first.slice(0, colon), typ: "JWT" });
const claims = part({
  iss: process.env.JWT_ISSUER || "tepi",
  aud: process.env.JWT_AUDIENCE || "tepi-api",
  sub,
  tenant,
  role,
  jti: randomBytes(16).toString("hex"),
  iat: now,
  nbf: now,
  exp: now + 15 * 60,
});
const signature = sign(null, Buffer.from(`${header}.${claims}`), key).toString("base64url");
console.log(`${header}.${claims}.${signature}`);
