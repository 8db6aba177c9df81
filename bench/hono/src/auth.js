// Tepi's authentication of `Authorization: Bearer` (core/src/auth/keys.rs
// and middleware.rs) with hono/jwt: EdDSA access tokens looked up by `kid`
// in the public JWK set Tepi serves at /.well-known/jwks.json (given to this
// worker as the JWKS variable), then iat/nbf/exp with 30 s leeway, iss, aud
// and the claims Tepi requires. Refusals carry Tepi's reasons.
//
// Each key is imported into WebCrypto once per isolate and handed to
// hono/jwt's `verify` as a CryptoKey, as Tepi parses its keys once per
// isolate. (`verifyWithJwks` would import the JWK again on every request.)

import { decode, verify } from "hono/jwt";

const LEEWAY_SECONDS = 30;
const TENANT = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
const API_KEY_PREFIX = "tpk_"; // pragma: allowlist secret (the prefix, as core/src/secret.rs)

/** An authentication failure: the problem Tepi answers. */
export class AuthError extends Error {
  constructor(kind, reason) {
    super(reason ?? kind);
    this.kind = kind; // "unauthenticated" | "invalid_token" | "invalid_api_key" | "auth_unavailable" | "storage_unavailable"
    this.reason = reason;
  }
}

const invalid = (reason) => new AuthError("invalid_token", reason);

/** The public keys by kid, imported once per isolate (per JWKS value). */
let keyCache = { raw: undefined, keys: null };
function publicKeys(raw) {
  if (keyCache.raw === raw) return keyCache.keys;
  let keys = null;
  try {
    const set = JSON.parse(raw);
    keys = new Map();
    for (const jwk of set.keys ?? []) {
      if (jwk.kty === "OKP" && jwk.crv === "Ed25519" && typeof jwk.kid === "string") {
        const { kty, crv, x } = jwk;
        keys.set(jwk.kid, crypto.subtle.importKey("jwk", { kty, crv, x }, { name: "Ed25519" }, false, ["verify"]));
      }
    }
    if (keys.size === 0) keys = null;
  } catch {
    keys = null;
  }
  keyCache = { raw, keys };
  return keys;
}

/** The bearer credential: `<scheme> <credential>`, scheme `bearer` in any case, credential trimmed and not empty. */
function bearer(headers) {
  const value = headers.get("authorization");
  if (value === null) return null;
  const space = value.indexOf(" ");
  if (space < 0 || value.slice(0, space).toLowerCase() !== "bearer") return null;
  const credential = value.slice(space + 1).trim();
  return credential === "" ? null : credential;
}

const isText = (v) => typeof v === "string";
const isTime = (v) => typeof v === "number" && Number.isFinite(v);

/** Verifies an access token at `nowSecs`; answers its claims or throws AuthError. */
async function verifyToken(token, keys, nowSecs, issuer, audience) {
  let header;
  try {
    header = decode(token).header;
  } catch {
    throw invalid("the token is malformed");
  }
  if (header === null || typeof header !== "object") throw invalid("the token is malformed");
  if (header.alg !== "EdDSA") throw invalid("the token's algorithm is not EdDSA");
  const key = isText(header.kid) ? keys.get(header.kid) : undefined;
  if (key === undefined) throw invalid("the token's key id is unknown");
  let claims;
  try {
    // Signature (and header shape) by hono/jwt; its time checks have no
    // leeway, so they are done below with Tepi's 30 s.
    claims = await verify(token, await key, { alg: "EdDSA", exp: false, nbf: false, iat: false });
  } catch (e) {
    throw invalid(e?.name === "JwtTokenSignatureMismatched" ? "the token's signature is invalid" : "the token is malformed");
  }
  const { iss, aud, sub, tenant, role, jti, exp, nbf, iat } = claims;
  if (![iss, aud, sub, tenant, role, jti].every(isText)) throw invalid("the token is malformed");
  if (![exp, nbf, iat].every((t) => t === undefined || isTime(t))) throw invalid("the token is malformed");
  if (exp === undefined) throw invalid("the token lacks a required claim");
  if (nowSecs > exp + LEEWAY_SECONDS) throw invalid("the token has expired");
  if (nbf === undefined) throw invalid("the token lacks a required claim");
  if (nowSecs < nbf - LEEWAY_SECONDS) throw invalid("the token is not valid yet");
  if (iat === undefined) throw invalid("the token lacks a required claim");
  if (iat > nowSecs + LEEWAY_SECONDS) throw invalid("the token was issued in the future");
  if (iss !== issuer) throw invalid("the token's issuer is not accepted");
  if (aud !== audience) throw invalid("the token is for another audience");
  if ([sub, tenant, role, jti].some((c) => c === "")) throw invalid("the token lacks a required claim");
  if (!TENANT.test(tenant)) throw invalid("the token's tenant is malformed");
  if (role !== "admin" && role !== "user") throw invalid("the token's role is unknown");
  return { kind: "user", tenant, subject: sub, role };
}

async function sha256Hex(text) {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** An API key (`tpk_…`), looked up by its SHA-256 digest as Tepi does. */
async function verifyApiKey(db, key) {
  if (!db) throw new AuthError("storage_unavailable");
  let row;
  try {
    row = await db.prepare("SELECT id, tenant_id, scopes FROM api_keys WHERE key_hash = ?1").bind(await sha256Hex(key)).first();
  } catch (e) {
    console.error(`api key lookup failed: ${e}`);
    throw new AuthError("storage_unavailable");
  }
  if (row === null || !TENANT.test(row.tenant_id)) throw new AuthError("invalid_api_key");
  return { kind: "api_key", tenant: row.tenant_id, subject: row.id };
}

/** Who is calling: `{ kind, tenant, subject, role }`, or throws AuthError. */
export async function authenticate(req, env, nowSecs) {
  const keys = env.JWKS ? publicKeys(env.JWKS) : null;
  if (keys === null) throw new AuthError("auth_unavailable");
  const credential = bearer(req.headers);
  if (credential === null) throw new AuthError("unauthenticated");
  if (credential.startsWith(API_KEY_PREFIX)) return verifyApiKey(env.DB, credential);
  return verifyToken(credential, keys, nowSecs, env.JWT_ISSUER || "tepi", env.JWT_AUDIENCE || "tepi-api");
}
