//! Input checks of IAP settings (`iaprun_iap_settings`), each on one value and citing where the
//! rule comes from. Each returns `Err` with the reason; the resource reports it on the attribute.
//! Sources: the IAP v1 discovery document (`IapSettings` and its parts) and Google's IAP docs.

/// `reauthSettings.method`: the discovery document's enum, without the unspecified value.
pub const REAUTH_METHODS: &[&str] = &["LOGIN", "PASSWORD", "SECURE_KEY", "ENROLLED_SECOND_FACTORS"];

/// `reauthSettings.policyType`: the discovery document's enum, without the unspecified value.
pub const REAUTH_POLICY_TYPES: &[&str] = &["MINIMUM", "DEFAULT"];

/// `attributePropagationSettings.outputCredentials`: the discovery document's enum.
pub const OUTPUT_CREDENTIALS: &[&str] = &["HEADER", "JWT", "RCTOKEN"];

/// `identitySources`: the only value the discovery document lists.
pub const IDENTITY_SOURCES: &[&str] = &["WORKFORCE_IDENTITY_FEDERATION"];

/// A value of one of the enums above.
pub fn one_of(value: &str, allowed: &[&str]) -> Result<(), String> {
    if allowed.contains(&value) {
        Ok(())
    } else {
        Err(format!("{value:?} is not one of {}.", allowed.join(", ")))
    }
}

/// `reauthSettings.method`.
pub fn reauth_method(value: &str) -> Result<(), String> {
    one_of(value, REAUTH_METHODS)
}

/// `reauthSettings.policyType`.
pub fn reauth_policy_type(value: &str) -> Result<(), String> {
    one_of(value, REAUTH_POLICY_TYPES)
}

/// An element of `identitySources`.
pub fn identity_source(value: &str) -> Result<(), String> {
    one_of(value, IDENTITY_SOURCES)
}

/// An element of `attributePropagationSettings.outputCredentials`.
pub fn output_credential(value: &str) -> Result<(), String> {
    one_of(value, OUTPUT_CREDENTIALS)
}

/// `reauthSettings.maxAge`: a protobuf Duration in JSON (`"3600s"`, fractions up to nanoseconds),
/// positive. IAP's docs: the time after which re-authentication is required.
pub fn duration(value: &str) -> Result<(), String> {
    let bad = || {
        format!("{value:?} is not a duration in seconds such as \"3600s\" or \"1.5s\" (a number followed by s).")
    };
    let number = value.strip_suffix('s').ok_or_else(bad)?;
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits(whole) || !digits(fraction) || fraction.len() > 9 {
        return Err(bad());
    }
    if number.contains('.') && fraction.is_empty() {
        return Err(bad());
    }
    if whole.bytes().all(|b| b == b'0') && fraction.bytes().all(|b| b == b'0') {
        return Err(format!("{value:?} is zero; give a positive duration."));
    }
    Ok(())
}

/// `allowedDomainsSettings.domains`: a DNS domain such as `example.com`, optionally a `*.`
/// wildcard for its subdomains; no scheme, path or port.
pub fn domain(value: &str) -> Result<(), String> {
    let name = value.strip_prefix("*.").unwrap_or(value);
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    let labels: Vec<&str> = name.split('.').collect();
    if name.len() > 253 || labels.len() < 2 || !labels.iter().all(|l| label_ok(l)) {
        return Err(format!(
            "{value:?} is not a domain such as example.com (or *.example.com): no scheme, path, port or spaces."
        ));
    }
    Ok(())
}

/// `accessDeniedPageUri` and `gcipSettings.loginPageUri`: an absolute https (or http) URL with a
/// host, as IAP redirects the browser there.
pub fn uri(value: &str) -> Result<(), String> {
    match reqwest::Url::parse(value) {
        Ok(u) if matches!(u.scheme(), "https" | "http") && u.host_str().is_some() => Ok(()),
        Ok(_) => Err(format!("{value:?} must be an https:// URL with a host.")),
        Err(e) => Err(format!(
            "{value:?} is not a URL ({e}); give an https:// URL."
        )),
    }
}

/// `oauthSettings.programmaticClients`: OAuth 2.0 client ids, as the Google Cloud console shows
/// them (`{number}-{id}.apps.googleusercontent.com`). Bare client ids are not IAM members: an
/// email or `serviceAccount:` here is a mistake (IAP programmatic access docs).
pub fn oauth_client_id(value: &str) -> Result<(), String> {
    let Some(prefix) = value.strip_suffix(".apps.googleusercontent.com") else {
        let hint = if value.contains('@') || value.contains(':') {
            " Principals (users, service accounts) belong in iaprun_access_binding members; this list takes OAuth client ids."
        } else {
            ""
        };
        return Err(format!(
            "{value:?} is not an OAuth client id such as 1234567890-abc123.apps.googleusercontent.com.{hint}"
        ));
    };
    let ok = !prefix.is_empty()
        && prefix
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{value:?} is not an OAuth client id: before .apps.googleusercontent.com only lower-case letters, digits and hyphens."
        ))
    }
}

/// `cookieDomain`: a domain IAP may set its cookie on, such as `example.com` or `.example.com`.
pub fn cookie_domain(value: &str) -> Result<(), String> {
    domain(value.strip_prefix('.').unwrap_or(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums() {
        assert!(reauth_method("SECURE_KEY").is_ok());
        assert!(reauth_policy_type("DEFAULT").is_ok());
        assert!(identity_source("WORKFORCE_IDENTITY_FEDERATION").is_ok());
        assert!(output_credential("JWT").is_ok());
        assert!(output_credential("COOKIE").is_err());
        assert!(one_of("METHOD_UNSPECIFIED", REAUTH_METHODS).is_err());
        assert!(one_of("login", REAUTH_METHODS).is_err());
        assert!(one_of("MINIMUM", REAUTH_POLICY_TYPES).is_ok());
        assert!(one_of("MAXIMUM", REAUTH_POLICY_TYPES)
            .unwrap_err()
            .contains("MINIMUM, DEFAULT"));
    }

    #[test]
    fn durations() {
        for ok in ["3600s", "1.5s", "0.000000001s", "86400s"] {
            assert!(duration(ok).is_ok(), "{ok}");
        }
        for bad in [
            "3600",
            "1h",
            "s",
            "-5s",
            "1.s",
            "0s",
            "0.0s",
            "1.0000000001s",
            " 60s",
        ] {
            assert!(duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn domains() {
        for ok in ["example.com", "*.example.com", "a-b.example.co.uk"] {
            assert!(domain(ok).is_ok(), "{ok}");
        }
        for bad in [
            "example",
            "https://example.com",
            "example.com/x",
            "ex ample.com",
            "-a.com",
            "example.com:443",
            "",
        ] {
            assert!(domain(bad).is_err(), "{bad}");
        }
        assert!(cookie_domain(".example.com").is_ok());
        assert!(cookie_domain("..example.com").is_err());
    }

    #[test]
    fn uris() {
        assert!(uri("https://example.com/denied").is_ok());
        assert!(uri("example.com/denied").is_err());
        assert!(uri("ftp://example.com").is_err());
        assert!(uri("https://").is_err());
    }

    #[test]
    fn oauth_client_ids() {
        assert!(oauth_client_id("1234567890-abc123def.apps.googleusercontent.com").is_ok());
        assert!(oauth_client_id(".apps.googleusercontent.com").is_err());
        assert!(oauth_client_id("1234-ABC.apps.googleusercontent.com").is_err());
        let e = oauth_client_id("serviceAccount:ci@p.iam.gserviceaccount.com").unwrap_err();
        assert!(e.contains("iaprun_access_binding"), "{e}");
        assert!(!oauth_client_id("12345").unwrap_err().contains("members"));
    }
}
