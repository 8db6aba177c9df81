use base64ct::{Base64UrlUnpadded, Encoding};
use ed25519_dalek::Verifier;
use jwt_compact::alg::{Ed25519, Hs256, Hs256Key};
use jwt_compact::{AlgorithmExt, Claims, Header, UntrustedToken};

use super::*;

const ISS: &str = "tepi";
const AUD: &str = "tepi-api";

fn seed(byte: u8) -> String {
    Base64UrlUnpadded::encode_string(&[byte; 32])
}

fn keys(spec: &[(&str, u8)]) -> SigningKeys {
    let raw: Vec<String> = spec
        .iter()
        .map(|(kid, b)| format!("{kid}:{}", seed(*b)))
        .collect();
    SigningKeys::parse(&raw.join(",")).unwrap()
}

fn claims() -> AccessClaims {
    AccessClaims {
        iss: ISS.into(),
        aud: AUD.into(),
        sub: "usr_1".into(),
        tenant: "acme".into(),
        role: "admin".into(),
        jti: "jti-1".into(),
    }
}

fn at(secs: u64) -> Timestamp {
    Timestamp::from_unix_micros(secs * 1_000_000)
}

const T0: u64 = 1_800_000_000;

fn b64(json: &str) -> String {
    Base64UrlUnpadded::encode_string(json.as_bytes())
}

#[test]
fn a_signed_token_verifies_and_carries_its_claims() {
    let keys = keys(&[("k1", 1)]);
    let token = keys.sign(claims(), at(T0));
    let got = keys.verify(&token, at(T0 + 60), ISS, AUD).unwrap();
    assert_eq!(got, claims());
    let header = UntrustedToken::new(&token).unwrap();
    assert_eq!(header.algorithm(), "EdDSA");
    assert_eq!(header.header().key_id.as_deref(), Some("k1"));
}

#[test]
fn time_claims_are_checked_with_leeway_against_the_given_clock() {
    let keys = keys(&[("k1", 1)]);
    let token = keys.sign(claims(), at(T0));
    let exp = T0 + ACCESS_TOKEN_SECONDS as u64;
    let leeway = LEEWAY_SECONDS as u64;
    let cases = [
        (T0, Ok(()), "at issuance"),
        (exp + leeway, Ok(()), "expired but within leeway"),
        (
            exp + leeway + 1,
            Err(TokenError::Expired),
            "expired beyond leeway",
        ),
        (T0 - leeway, Ok(()), "clock slightly behind the issuer"),
        (
            T0 - leeway - 1,
            Err(TokenError::NotYetValid),
            "nbf in the future beyond leeway",
        ),
    ];
    for (now, want, why) in cases {
        let got = keys.verify(&token, at(now), ISS, AUD).map(drop);
        assert_eq!(got, want, "{why}");
    }
}

#[test]
fn issuer_and_audience_must_match() {
    let keys = keys(&[("k1", 1)]);
    let token = keys.sign(claims(), at(T0));
    assert_eq!(
        keys.verify(&token, at(T0), "someone-else", AUD),
        Err(TokenError::WrongIssuer)
    );
    assert_eq!(
        keys.verify(&token, at(T0), ISS, "another-api"),
        Err(TokenError::WrongAudience)
    );
}

#[test]
fn rotation_signs_with_the_first_key_and_verifies_with_all() {
    let old = keys(&[("old", 1)]);
    let rotated = keys(&[("new", 2), ("old", 1)]);
    let retired = keys(&[("new", 2)]);
    let old_token = old.sign(claims(), at(T0));
    let new_token = rotated.sign(claims(), at(T0));
    assert_eq!(rotated.active_kid(), "new");
    assert!(
        rotated.verify(&old_token, at(T0), ISS, AUD).is_ok(),
        "old key still verifies"
    );
    assert!(rotated.verify(&new_token, at(T0), ISS, AUD).is_ok());
    assert_eq!(
        retired.verify(&old_token, at(T0), ISS, AUD),
        Err(TokenError::UnknownKey),
        "a removed key no longer verifies"
    );
}

#[test]
fn forged_and_malformed_tokens_are_refused() {
    let keys = keys(&[("k1", 1)]);
    let good = keys.sign(claims(), at(T0));
    let (signing_input, _) = good.rsplit_once('.').unwrap();
    let payload = signing_input.split_once('.').unwrap().1;

    // alg "none" with an empty signature.
    let none = format!("{}.{payload}.", b64(r#"{"alg":"none","kid":"k1"}"#));
    // HS256 keyed with the public key, the classic algorithm confusion.
    let public = keys.jwks()["keys"][0]["x"].as_str().unwrap().to_owned();
    let mut public_bytes = [0u8; 32];
    Base64UrlUnpadded::decode(&public, &mut public_bytes).unwrap();
    let hs = Hs256
        .token(
            &Header::empty().with_key_id("k1"),
            &Claims::new(claims()),
            &Hs256Key::new(public_bytes),
        )
        .unwrap();
    // Signed by a key Tepi does not know, under a known kid.
    let stranger = self::keys(&[("k1", 9)]).sign(claims(), at(T0));
    // Signed correctly, under a kid that is not configured.
    let unknown_kid = self::keys(&[("k2", 1)]).sign(claims(), at(T0));
    // A valid signature over different claims.
    let mut elevated = claims();
    elevated.tenant = "other".into();
    let tampered_payload = b64(&serde_json::to_string(&Claims::new(elevated)).unwrap());
    let tampered = good.replacen(payload, &tampered_payload, 1);

    let cases = [
        (none, TokenError::UnsupportedAlgorithm, "alg none"),
        (
            hs,
            TokenError::UnsupportedAlgorithm,
            "HS256 with the public key",
        ),
        (stranger, TokenError::BadSignature, "foreign key"),
        (unknown_kid, TokenError::UnknownKey, "unknown kid"),
        (tampered, TokenError::BadSignature, "tampered claims"),
        ("not-a-jwt".to_owned(), TokenError::Malformed, "no dots"),
        (
            "a.b.c".to_owned(),
            TokenError::Malformed,
            "garbage segments",
        ),
        (String::new(), TokenError::Malformed, "empty"),
    ];
    for (token, want, why) in cases {
        assert_eq!(keys.verify(&token, at(T0), ISS, AUD), Err(want), "{why}");
    }
}

#[test]
fn tokens_without_kid_or_time_claims_are_refused() {
    let keys = keys(&[("k1", 1)]);
    let key = SigningKey::from_bytes(&[1; 32]);
    let no_kid = Ed25519
        .token(&Header::empty(), &Claims::new(claims()), &key)
        .unwrap();
    assert_eq!(
        keys.verify(&no_kid, at(T0), ISS, AUD),
        Err(TokenError::UnknownKey)
    );
    let no_exp = Ed25519
        .token(
            &Header::empty().with_key_id("k1"),
            &Claims::new(claims()),
            &key,
        )
        .unwrap();
    assert_eq!(
        keys.verify(&no_exp, at(T0), ISS, AUD),
        Err(TokenError::MissingClaim)
    );
}

#[test]
fn jwks_publishes_each_public_key_and_nothing_secret() {
    let keys = keys(&[("new", 2), ("old", 1)]);
    let jwks = keys.jwks();
    let published: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(published, ["new", "old"]);
    let jwk = &jwks["keys"][0];
    assert_eq!(jwk["kty"], "OKP");
    assert_eq!(jwk["crv"], "Ed25519");
    assert_eq!(jwk["alg"], "EdDSA");
    assert!(jwk.get("d").is_none(), "no private part");
    // The published key verifies a token's signature on its own.
    let token = keys.sign(claims(), at(T0));
    let (input, signature) = token.rsplit_once('.').unwrap();
    let mut x = [0u8; 32];
    Base64UrlUnpadded::decode(jwk["x"].as_str().unwrap(), &mut x).unwrap();
    let mut sig = [0u8; 64];
    Base64UrlUnpadded::decode(signature, &mut sig).unwrap();
    VerifyingKey::from_bytes(&x)
        .unwrap()
        .verify(input.as_bytes(), &Signature::from_bytes(&sig))
        .expect("signature verifies with the published key");
}

#[test]
fn malformed_key_secrets_are_reported_without_the_seed() {
    let good = seed(1);
    let cases = [
        (String::new(), "entry 1 is not"),
        ("k1".to_owned(), "entry 1 is not"),
        (format!("bad kid!:{good}"), "key id must be"),
        (format!("k1:{good},k1:{good}"), "appears twice"),
        ("k1:!!!!".to_owned(), "not base64url"),
        ("k1:AAAA".to_owned(), "must be 32 bytes"),
    ];
    for (raw, want) in cases {
        let err = SigningKeys::parse(&raw).unwrap_err();
        assert!(err.contains(want), "{raw:?}: {err}");
        assert!(!err.contains(&good), "the seed never appears in errors");
    }
    assert!(format!("{:?}", keys(&[("k1", 1)])).contains("k1"));
    assert!(!format!("{:?}", keys(&[("k1", 1)])).contains(&good));
}

#[test]
fn tokens_interoperate_with_an_independent_jwt_implementation() {
    let keys = keys(&[("k1", 1)]);
    let signing = SigningKey::from_bytes(&[1; 32]);
    let now = chrono::DateTime::from_timestamp(T0.cast_signed(), 0).unwrap();

    // Ours, read by jwt-compact: the header, the signature and every claim.
    let ours = keys.sign(claims(), at(T0));
    let untrusted = UntrustedToken::new(&ours).unwrap();
    assert_eq!(untrusted.algorithm(), "EdDSA");
    assert_eq!(untrusted.header().key_id.as_deref(), Some("k1"));
    let read = Ed25519
        .validator::<AccessClaims>(&signing.verifying_key())
        .validate(&untrusted)
        .expect("jwt-compact verifies the signature");
    let read = read.claims();
    assert_eq!(read.custom, claims());
    assert_eq!(read.issued_at, Some(now));
    assert_eq!(read.not_before, Some(now));
    let exp = now + chrono::Duration::seconds(ACCESS_TOKEN_SECONDS);
    assert_eq!(read.expiration, Some(exp));

    // jwt-compact's, read by ours, with the expiry it set.
    let mut theirs = Claims::new(claims());
    theirs.issued_at = Some(now);
    theirs.not_before = Some(now);
    theirs.expiration = Some(now + chrono::Duration::seconds(60));
    let token = Ed25519
        .token(&Header::empty().with_key_id("k1"), &theirs, &signing)
        .unwrap();
    assert_eq!(
        keys.verify_with_expiry(&token, at(T0), ISS, AUD),
        Ok((claims(), T0.cast_signed() + 60))
    );
}

#[test]
fn odd_headers_signatures_and_claims_are_refused_by_kind() {
    let keys = keys(&[("k1", 1)]);
    let signing = SigningKey::from_bytes(&[1; 32]);
    let good = keys.sign(claims(), at(T0));
    let (_, payload_and_sig) = good.split_once('.').unwrap();
    let (payload, _) = payload_and_sig.split_once('.').unwrap();
    // A token over any header and payload, correctly signed by k1.
    let signed = |header: &str, payload: &str| {
        let input = format!("{}.{}", b64(header), b64(payload));
        let signature = signing.sign(input.as_bytes()).to_bytes();
        format!("{input}.{}", Base64UrlUnpadded::encode_string(&signature))
    };
    let claims_json = String::from_utf8(Base64UrlUnpadded::decode_vec(payload).unwrap()).unwrap();
    let cases = [
        (format!("{good}.x"), TokenError::Malformed, "four segments"),
        (
            signed(r#"{"kid":"k1"}"#, &claims_json),
            TokenError::Malformed,
            "no alg",
        ),
        (
            signed(r#"{"alg":"EdDSA","kid":7}"#, &claims_json),
            TokenError::Malformed,
            "kid not a string",
        ),
        (
            signed(r#"["EdDSA"]"#, &claims_json),
            TokenError::Malformed,
            "header not an object",
        ),
        (
            format!(
                "{}.{payload}.{}",
                b64(r#"{"alg":"EdDSA","kid":"k1"}"#),
                b64("short")
            ),
            TokenError::BadSignature,
            "a signature of the wrong length",
        ),
        (
            signed(r#"{"alg":"EdDSA","kid":"k1"}"#, "[]"),
            TokenError::Malformed,
            "claims not an object",
        ),
        (
            signed(
                r#"{"alg":"EdDSA","kid":"k1"}"#,
                &claims_json.replace("\"tenant\":\"acme\"", "\"tenant\":1"),
            ),
            TokenError::Malformed,
            "a claim of the wrong type",
        ),
        (
            signed(
                r#"{"alg":"EdDSA","kid":"k1"}"#,
                &claims_json.replace(&format!("\"exp\":{}", T0 + 900), "\"exp\":1.5"),
            ),
            TokenError::Malformed,
            "a time that is not whole seconds",
        ),
        (
            signed(
                r#"{"alg":"EdDSA","kid":"k1"}"#,
                &claims_json.replace(&format!("\"iat\":{T0}"), &format!("\"iat\":{}", T0 + 3600)),
            ),
            TokenError::IssuedInFuture,
            "issued in the future",
        ),
    ];
    for (token, want, why) in cases {
        assert_eq!(keys.verify(&token, at(T0), ISS, AUD), Err(want), "{why}");
    }
    // The same header and claims, signed: accepted (the cases differ
    // only in what they name).
    assert!(
        keys.verify(
            &signed(r#"{"alg":"EdDSA","kid":"k1"}"#, &claims_json),
            at(T0),
            ISS,
            AUD
        )
        .is_ok()
    );
}
