//! OAuth 2.0 token endpoint: the service-account JWT-bearer exchange, verified with RS256 against
//! keys the admin API generated or registered.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use base64::Engine;
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::pkcs8::{DecodePublicKey, EncodePrivateKey, LineEnding};
use rsa::signature::Verifier;
use rsa::{RsaPrivateKey, RsaPublicKey};
use serde_json::{json, Value};
use sha2::Sha256;

use super::error::json_response;
use super::state::{lock, valid_project_id, RequestRecord, Shared};
use super::EmulatorState;

/// One service account the token endpoint knows.
#[derive(Clone, Debug)]
pub(crate) struct Account {
    pub key_id: String,
    pub public_key: RsaPublicKey,
    pub token_uri: Option<String>,
}

/// Registered service-account keys and issued tokens.
#[derive(Default)]
pub(crate) struct TokenState {
    pub accounts: BTreeMap<String, Account>,
    pub issued: u64,
}

const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

fn oauth_error(error: &str, description: &str) -> Response {
    json_response(
        400,
        &json!({"error": error, "error_description": description}),
    )
}

/// `POST /token`.
pub(crate) async fn exchange(
    State(state): State<EmulatorState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let shared = &state.0;
    if shared.options.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(shared.options.latency_ms)).await;
    }
    let fired = lock(&shared.faults).fire("POST", "/token", false);
    if !fired.delay.is_zero() {
        tokio::time::sleep(fired.delay).await;
    }
    let response = match fired.terminal.and_then(|t| t.into_error("/token")) {
        Some(error) => error.response(false),
        None => {
            let host = headers
                .get("host")
                .and_then(|h| h.to_str().ok())
                .map(str::to_string);
            answer(shared, &body, host.as_deref())
        }
    };
    lock(&shared.journal).record(RequestRecord {
        method: "POST".into(),
        path: "/token".into(),
        query: String::new(),
        body: Value::Null,
        status: response.status().as_u16(),
    });
    response
}

fn answer(shared: &Shared, body: &[u8], host: Option<&str>) -> Response {
    let form: Vec<(String, String)> = serde_urlencoded::from_bytes(body).unwrap_or_default();
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    match field("grant_type") {
        Some(GRANT_TYPE) => {}
        Some(other) => {
            return oauth_error(
                "unsupported_grant_type",
                &format!("Invalid grant_type: {other}"),
            )
        }
        None => return oauth_error("invalid_request", "Missing required parameter: grant_type"),
    }
    let Some(assertion) = field("assertion") else {
        return oauth_error("invalid_request", "Missing required parameter: assertion");
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut world = lock(&shared.world);
    match verify(&world.tokens, assertion, host, now) {
        Ok(()) => {
            world.tokens.issued += 1;
            let token = format!("ya29.emu-{}", uuid::Uuid::new_v4().simple());
            json_response(
                200,
                &json!({"access_token": token, "expires_in": 3599, "token_type": "Bearer"}),
            )
        }
        Err((error, description)) => oauth_error(error, &description),
    }
}

/// Decode base64url with or without `=` padding (some clients pad).
fn b64url(segment: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(segment.trim_end_matches('='))
        .ok()
}

type Refusal = (&'static str, String);

fn grant(description: &str) -> Refusal {
    ("invalid_grant", description.to_string())
}

/// Check a JWT-bearer assertion: RS256 signature by a known account, audience, lifetime, scope.
fn verify(
    tokens: &TokenState,
    assertion: &str,
    host: Option<&str>,
    now: i64,
) -> Result<(), Refusal> {
    let segments: Vec<&str> = assertion.split('.').collect();
    let [header_b64, claims_b64, signature_b64] = segments.as_slice() else {
        return Err(grant(
            "Invalid JWT: the assertion must have three segments.",
        ));
    };
    let json_of =
        |segment: &str| -> Option<Value> { serde_json::from_slice(&b64url(segment)?).ok() };
    let header = json_of(header_b64)
        .ok_or_else(|| grant("Invalid JWT: the header is not base64url JSON."))?;
    let claims = json_of(claims_b64)
        .ok_or_else(|| grant("Invalid JWT: the claim set is not base64url JSON."))?;
    if header.get("alg").and_then(Value::as_str) != Some("RS256") {
        return Err(grant("Invalid JWT: only RS256 signatures are accepted."));
    }
    let issuer = claims
        .get("iss")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let account = tokens
        .accounts
        .get(issuer)
        .ok_or_else(|| grant("Invalid grant: account not found"))?;
    if let Some(kid) = header.get("kid").and_then(Value::as_str) {
        if kid != account.key_id {
            return Err(grant("Invalid JWT Signature."));
        }
    }
    let signature_bytes = b64url(signature_b64).ok_or_else(|| grant("Invalid JWT Signature."))?;
    let signature = Signature::try_from(signature_bytes.as_slice())
        .map_err(|_| grant("Invalid JWT Signature."))?;
    let signed = format!("{header_b64}.{claims_b64}");
    VerifyingKey::<Sha256>::new(account.public_key.clone())
        .verify(signed.as_bytes(), &signature)
        .map_err(|_| grant("Invalid JWT Signature."))?;

    let audience = claims
        .get("aud")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let mut accepted = vec![
        "https://oauth2.googleapis.com/token".to_string(),
        "https://www.googleapis.com/oauth2/v4/token".to_string(),
    ];
    accepted.extend(account.token_uri.clone());
    if let Some(host) = host {
        accepted.push(format!("http://{host}/token"));
    }
    if !accepted.iter().any(|a| a == audience) {
        return Err(grant("Invalid JWT: Failed audience check."));
    }
    let iat = claims.get("iat").and_then(Value::as_i64);
    let exp = claims.get("exp").and_then(Value::as_i64);
    let timely = match (iat, exp) {
        (Some(iat), Some(exp)) => iat <= now + 300 && exp > now && exp > iat && exp - iat <= 3600,
        _ => false,
    };
    if !timely {
        return Err(grant(
            "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your \
             iat and exp values in the JWT claim.",
        ));
    }
    match claims.get("sub") {
        None | Some(Value::Null) | Some(Value::String(_)) => {}
        Some(_) => return Err(grant("Invalid JWT: 'sub' must be a string.")),
    }
    let scoped = claims
        .get("scope")
        .and_then(Value::as_str)
        .is_some_and(|s| !s.trim().is_empty())
        || claims
            .get("target_audience")
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty());
    if !scoped {
        return Err((
            "invalid_scope",
            "Invalid OAuth scope or ID token audience provided.".to_string(),
        ));
    }
    Ok(())
}

/// Create (or replace) a service-account key and answer the key file JSON. Without
/// `public_key_pem` a 2048-bit RSA key is generated and its private half returned.
pub(crate) fn create_account(
    shared: &Shared,
    project: Option<&str>,
    account: Option<&str>,
    public_key_pem: Option<&str>,
    token_uri: &str,
) -> Result<Value, String> {
    let project = project.unwrap_or("emulator-project");
    if !valid_project_id(project) {
        return Err(format!("invalid project_id '{project}'"));
    }
    let account = account.unwrap_or("terraform");
    let valid_account = (6..=30).contains(&account.len())
        && account
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && account
            .as_bytes()
            .first()
            .is_some_and(u8::is_ascii_lowercase);
    if !valid_account {
        return Err(format!(
            "invalid account_id '{account}': 6-30 lowercase letters, digits, hyphens"
        ));
    }
    let (public_key, private_pem) = match public_key_pem {
        Some(pem) => (
            RsaPublicKey::from_public_key_pem(pem)
                .map_err(|e| format!("invalid public_key_pem: {e}"))?,
            None,
        ),
        None => {
            let private =
                RsaPrivateKey::new(&mut rand::thread_rng(), 2048).map_err(|e| e.to_string())?;
            let pem = private
                .to_pkcs8_pem(LineEnding::LF)
                .map_err(|e| e.to_string())?;
            (RsaPublicKey::from(&private), Some(pem.to_string()))
        }
    };
    let email = format!("{account}@{project}.iam.gserviceaccount.com");
    let key_id: String = uuid::Uuid::new_v4().simple().to_string();
    let client_id: String = {
        let digest = <Sha256 as sha2::Digest>::digest(email.as_bytes());
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&digest[..8]);
        format!("1{:020}", u64::from_be_bytes(bytes))
    };
    lock(&shared.world).tokens.accounts.insert(
        email.clone(),
        Account {
            key_id: key_id.clone(),
            public_key,
            token_uri: Some(token_uri.to_string()),
        },
    );
    let mut key = json!({
        "type": "service_account",
        "project_id": project,
        "private_key_id": key_id,
        "client_email": email,
        "client_id": client_id,
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "client_x509_cert_url": format!("https://www.googleapis.com/robot/v1/metadata/x509/{}", email.replace('@', "%40")),
        "universe_domain": "googleapis.com",
    });
    if let Some(pem) = private_pem {
        key["private_key"] = json!(pem);
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padded_and_unpadded_base64url() {
        assert_eq!(b64url("YWI"), Some(b"ab".to_vec()));
        assert_eq!(b64url("YWI="), Some(b"ab".to_vec()));
        assert_eq!(b64url("%%%"), None);
    }

    #[test]
    fn unknown_issuer_and_malformed_assertions() {
        let tokens = TokenState::default();
        assert_eq!(
            verify(&tokens, "a.b", None, 0).unwrap_err().0,
            "invalid_grant"
        );
        let header =
            base64::engine::general_purpose::URL_SAFE.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
        let claims = base64::engine::general_purpose::URL_SAFE.encode(br#"{"iss":"x@y"}"#);
        let refusal = verify(&tokens, &format!("{header}.{claims}.AAAA"), None, 0).unwrap_err();
        assert_eq!(refusal.1, "Invalid grant: account not found");
    }
}
