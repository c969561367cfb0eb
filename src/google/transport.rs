//! The one HTTP transport every API client shares: auth, user agent, timeouts, retries, stop.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rand::Rng;
use reqwest::header::{HeaderMap, AUTHORIZATION, RETRY_AFTER};
use reqwest::{Method, Url};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::{watch, Mutex};

use super::error::{ApiError, Error};
use super::{Config, Credentials, CLOUD_PLATFORM_SCOPE, EMULATOR_TOKEN};

/// Largest response body accepted; Google's answers here are a few KiB.
pub(crate) const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// How failed calls are retried. Also paces operation polling and conflict retries.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// First backoff delay.
    pub initial_delay: Duration,
    /// Largest backoff delay (a server-requested delay may be longer).
    pub max_delay: Duration,
    /// Growth factor between attempts.
    pub multiplier: f64,
    /// Attempts per call, the first one included.
    pub max_attempts: u32,
    /// Overall time budget for one call and its retries.
    pub deadline: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            initial_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
            multiplier: 2.0,
            max_attempts: 8,
            deadline: Duration::from_secs(300),
        }
    }
}

/// Exponential backoff with jitter: a delay in `[base/2, base]`, where base grows by
/// `multiplier` from `initial_delay` and is capped at `max_delay`. `attempt` starts at 1.
pub fn backoff_delay(policy: &RetryPolicy, attempt: u32, rng: &mut impl Rng) -> Duration {
    let exponent = attempt.saturating_sub(1).min(64) as i32;
    let factor = policy.multiplier.max(1.0).powi(exponent);
    let base = (policy.initial_delay.as_secs_f64() * factor)
        .min(policy.max_delay.as_secs_f64())
        .max(0.0);
    let jittered = if base > 0.0 {
        rng.gen_range(base / 2.0..=base)
    } else {
        0.0
    };
    Duration::try_from_secs_f64(jittered).unwrap_or(policy.max_delay)
}

/// Parses `Retry-After`: delta-seconds or an HTTP date (RFC 9110 section 10.2.3).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

// ---------------------------------------------------------------------------------------------
// Retry predicates. Each names the Google behaviour that makes a retry the right answer.

/// 500, 502, 503 and 504 are transient: Google's guidance for INTERNAL, UNAVAILABLE and
/// DEADLINE_EXCEEDED (and front-end 502s) is to retry with exponential backoff.
pub(crate) fn is_transient_server_error(error: &ApiError) -> bool {
    matches!(error.http_status, 500 | 502 | 503 | 504)
}

/// 429 RESOURCE_EXHAUSTED is how Google signals per-minute rate limits; they clear on their
/// own, usually with a RetryInfo delay to honour. A 429 whose ErrorInfo names another reason is
/// a hard quota (`QUOTA_EXCEEDED`, compute's `quotaExceeded`, ...): waiting does not lift it
/// within a run, so it is not retried (the google provider's `Is429RetryableQuotaError` rule:
/// retry only rate limits, ErrorInfo `RATE_LIMIT_EXCEEDED`). A 429 without a reason, or one that
/// says when to retry (RetryInfo), is taken as a rate limit.
pub(crate) fn is_rate_limited(error: &ApiError) -> bool {
    if error.http_status != 429 {
        return false;
    }
    match error.reason.as_deref() {
        None => true,
        Some("RATE_LIMIT_EXCEEDED" | "rateLimitExceeded" | "userRateLimitExceeded") => true,
        Some(_) => error.retry_delay.is_some(),
    }
}

/// Compute reports rate limits and its concurrent-operations quota as 403 (`rateLimitExceeded`,
/// `userRateLimitExceeded`, `CONCURRENT_OPERATIONS_QUOTA_EXCEEDED`); these clear with time,
/// unlike a real permission denial.
pub(crate) fn is_compute_retryable_403(error: &ApiError) -> bool {
    error.http_status == 403
        && matches!(
            error.reason.as_deref(),
            Some("rateLimitExceeded")
                | Some("userRateLimitExceeded")
                | Some("CONCURRENT_OPERATIONS_QUOTA_EXCEEDED")
        )
}

/// Compute answers 400 `resourceNotReady` while a just-changed resource is still settling.
pub(crate) fn is_compute_resource_not_ready(error: &ApiError) -> bool {
    error.http_status == 400 && error.reason.as_deref() == Some("resourceNotReady")
}

/// Compute answers 409 `operationInProgress` while another operation holds the resource.
pub(crate) fn is_compute_operation_in_progress(error: &ApiError) -> bool {
    error.http_status == 409 && error.reason.as_deref() == Some("operationInProgress")
}

/// Whether an error answer from `api` is worth retrying (for calls that may be repeated).
pub(crate) fn is_retryable_api_error(api: Api, error: &ApiError) -> bool {
    is_transient_server_error(error)
        || is_rate_limited(error)
        || (api == Api::Compute
            && (is_compute_retryable_403(error)
                || is_compute_resource_not_ready(error)
                || is_compute_operation_in_progress(error)))
}

/// Connection failures and timeouts leave the outcome unknown; only a call that may be
/// repeated safely is retried after one.
pub(crate) fn is_retryable_transport_error(error: &reqwest::Error) -> bool {
    !error.is_builder() && !error.is_redirect() && !error.is_status()
}

// ---------------------------------------------------------------------------------------------

/// Which API a call goes to (some retry rules are compute-only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Api {
    Run,
    Iap,
    Compute,
    ServiceUsage,
    ResourceManager,
}

/// Whether repeating a call is harmless: read-only, or guarded by an etag or request id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Replay {
    Safe,
    Unsafe,
}

/// One logical API call (possibly several HTTP attempts).
#[derive(Debug, Clone)]
pub(crate) struct Call {
    api: Api,
    method: Method,
    url: Url,
    body: Option<Value>,
    replay: Replay,
    deadline: Option<Instant>,
    timeout: Option<Duration>,
}

impl Call {
    pub(crate) fn new(api: Api, method: Method, url: Url) -> Call {
        let replay = if method == Method::GET {
            Replay::Safe
        } else {
            Replay::Unsafe
        };
        Call {
            api,
            method,
            url,
            body: None,
            replay,
            deadline: None,
            timeout: None,
        }
    }

    pub(crate) fn get(api: Api, url: Url) -> Call {
        Call::new(api, Method::GET, url)
    }

    pub(crate) fn post(api: Api, url: Url) -> Call {
        Call::new(api, Method::POST, url)
    }

    pub(crate) fn patch(api: Api, url: Url) -> Call {
        Call::new(api, Method::PATCH, url)
    }

    pub(crate) fn body(mut self, body: Value) -> Call {
        self.body = Some(body);
        self
    }

    pub(crate) fn replay(mut self, replay: Replay) -> Call {
        self.replay = replay;
        self
    }

    pub(crate) fn deadline(mut self, deadline: Option<Instant>) -> Call {
        self.deadline = deadline;
        self
    }

    /// Overrides the per-request timeout (long-polling waits need more than the default).
    pub(crate) fn timeout(mut self, timeout: Duration) -> Call {
        self.timeout = Some(timeout);
        self
    }

    /// `METHOD path` for messages: no query string, no host.
    pub(crate) fn label(&self) -> String {
        format!(
            "{} {}",
            self.method,
            self.url.path().trim_start_matches('/')
        )
    }
}

/// A base URL that is known to accept path segments.
#[derive(Debug, Clone)]
pub(crate) struct BaseUrl(Url);

impl BaseUrl {
    /// Appends path segments, each percent-encoded as one segment.
    pub(crate) fn join<S: AsRef<str>>(&self, segments: impl IntoIterator<Item = S>) -> Url {
        let mut url = self.0.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty();
            for segment in segments {
                path.push(segment.as_ref());
            }
        }
        url
    }
}

/// Splits a resource name (`{+name}` in discovery: slashes kept) into path segments.
pub(crate) fn name_segments(name: &str) -> impl Iterator<Item = &str> {
    name.trim_matches('/').split('/')
}

pub(crate) fn parse_base_url(setting: &str, text: &str) -> Result<BaseUrl, Error> {
    let mut url = Url::parse(text.trim()).map_err(|e| {
        Error::Config(format!(
            "the {setting} endpoint {text:?} is not a valid URL: {e}"
        ))
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(Error::Config(format!(
            "the {setting} endpoint {text:?} must be an http:// or https:// URL with a host"
        )));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(Error::Config(format!(
            "the {setting} endpoint {text:?} must not have a query or fragment"
        )));
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(BaseUrl(url))
}

// ---------------------------------------------------------------------------------------------
// Tokens.

enum TokenSource {
    Static(String),
    /// A gcp_auth provider, rebuilt from `origin` when a token is rejected with 401.
    Provider {
        origin: ProviderOrigin,
        current: Mutex<Option<(u64, Arc<dyn gcp_auth::TokenProvider>)>>,
    },
}

enum ProviderOrigin {
    KeyJson(String),
    KeyFile(PathBuf),
    ApplicationDefault,
}

impl ProviderOrigin {
    fn describe(&self) -> String {
        match self {
            ProviderOrigin::KeyJson(_) => "the service-account key in `credentials`".into(),
            ProviderOrigin::KeyFile(path) => format!("the key file {}", path.display()),
            ProviderOrigin::ApplicationDefault => "application default credentials".into(),
        }
    }

    async fn build(&self) -> Result<Arc<dyn gcp_auth::TokenProvider>, Error> {
        let fail = |e: gcp_auth::Error| {
            Error::Auth(format!(
                "could not load {}: {}",
                self.describe(),
                error_chain(&e)
            ))
        };
        match self {
            ProviderOrigin::KeyJson(json) => Ok(Arc::new(
                gcp_auth::CustomServiceAccount::from_json(json).map_err(fail)?,
            )),
            ProviderOrigin::KeyFile(path) => Ok(Arc::new(
                gcp_auth::CustomServiceAccount::from_file(path).map_err(fail)?,
            )),
            ProviderOrigin::ApplicationDefault => {
                off_runtime(gcp_auth::provider()).await?.map_err(fail)
            }
        }
    }
}

/// Runs a gcp_auth future on tokio's blocking pool. Its last fallback for application default
/// credentials runs the gcloud CLI with a blocking `std::process::Command` (at start and whenever
/// the token expires), which would stall the provider's one runtime thread: every call, timer and
/// Stop with it. The runtime's own thread keeps driving IO and timers meanwhile.
async fn off_runtime<F>(future: F) -> Result<F::Output, Error>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || runtime.block_on(future))
        .await
        .map_err(|e| Error::Auth(format!("the credential lookup did not finish: {e}")))
}

impl TokenSource {
    fn new(credentials: &Credentials) -> Result<TokenSource, Error> {
        let origin = match credentials {
            Credentials::AccessToken(token) => {
                if token.trim().is_empty() {
                    return Err(Error::Config("the access token is empty".into()));
                }
                return Ok(TokenSource::Static(token.trim().to_string()));
            }
            Credentials::Emulator => return Ok(TokenSource::Static(EMULATOR_TOKEN.into())),
            Credentials::ServiceAccountJson(json) => ProviderOrigin::KeyJson(json.clone()),
            Credentials::ServiceAccountFile(path) => ProviderOrigin::KeyFile(path.clone()),
            Credentials::ApplicationDefault => ProviderOrigin::ApplicationDefault,
        };
        // Keys are checked now so a bad key is a configuration error, not a failed apply.
        let current = match &origin {
            ProviderOrigin::KeyJson(json) => {
                let account = gcp_auth::CustomServiceAccount::from_json(json).map_err(|e| {
                    Error::Config(format!(
                        "the service-account key in `credentials` is invalid: {}",
                        error_chain(&e)
                    ))
                })?;
                Some((0, Arc::new(account) as Arc<dyn gcp_auth::TokenProvider>))
            }
            ProviderOrigin::KeyFile(path) => {
                let account = gcp_auth::CustomServiceAccount::from_file(path).map_err(|e| {
                    Error::Config(format!(
                        "the service-account key file {} is unusable: {}",
                        path.display(),
                        error_chain(&e)
                    ))
                })?;
                Some((0, Arc::new(account) as Arc<dyn gcp_auth::TokenProvider>))
            }
            ProviderOrigin::ApplicationDefault => None,
        };
        Ok(TokenSource::Provider {
            origin,
            current: Mutex::new(current),
        })
    }

    /// A bearer token and the provider generation it came from.
    async fn token(&self) -> Result<(String, u64), Error> {
        match self {
            TokenSource::Static(token) => Ok((token.clone(), 0)),
            TokenSource::Provider { origin, current } => {
                let (generation, provider) = {
                    let mut slot = current.lock().await;
                    match slot.as_ref() {
                        Some((g, p)) => (*g, p.clone()),
                        None => {
                            let provider = origin.build().await?;
                            *slot = Some((0, provider.clone()));
                            (0, provider)
                        }
                    }
                };
                let token = match origin {
                    // Key-based providers only sign and fetch: no blocking call to move away.
                    ProviderOrigin::ApplicationDefault => {
                        off_runtime(async move { provider.token(&[CLOUD_PLATFORM_SCOPE]).await })
                            .await?
                    }
                    _ => provider.token(&[CLOUD_PLATFORM_SCOPE]).await,
                };
                let token = token.map_err(|e| {
                    let chain = error_chain(&e);
                    // gcp_auth keeps the token endpoint's answer (invalid_grant and its reason)
                    // out of the error and logs it at WARN: say where to find it.
                    let hint = if chain.ends_with("token request failed") {
                        "; the token endpoint's answer is in the provider's log (TF_LOG=warn)"
                    } else {
                        ""
                    };
                    Error::Auth(format!(
                        "could not obtain an access token from {}: {chain}{hint}",
                        origin.describe(),
                    ))
                })?;
                Ok((token.as_str().to_string(), generation))
            }
        }
    }

    /// Replaces the provider (dropping its token cache) unless another caller already did.
    /// Returns false when the source cannot produce a different token.
    async fn refresh(&self, generation: u64) -> Result<bool, Error> {
        match self {
            TokenSource::Static(_) => Ok(false),
            TokenSource::Provider { origin, current } => {
                let mut slot = current.lock().await;
                if slot.as_ref().is_some_and(|(g, _)| *g == generation) {
                    let provider = origin.build().await?;
                    *slot = Some((generation + 1, provider));
                }
                Ok(true)
            }
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            TokenSource::Static(_) => "static token",
            TokenSource::Provider { origin, .. } => match origin {
                ProviderOrigin::KeyJson(_) => "service-account key JSON",
                ProviderOrigin::KeyFile(_) => "service-account key file",
                ProviderOrigin::ApplicationDefault => "application default credentials",
            },
        }
    }
}

// ---------------------------------------------------------------------------------------------

/// Makes every in-flight and future call through the transport fail with [`Error::Cancelled`]
/// (Terraform's StopProvider).
#[derive(Debug, Clone)]
pub struct StopHandle(Arc<watch::Sender<bool>>);

impl StopHandle {
    /// Stops all calls.
    pub fn stop(&self) {
        self.0.send_replace(true);
    }

    /// Whether [`StopHandle::stop`] was called.
    pub fn is_stopped(&self) -> bool {
        *self.0.borrow()
    }
}

/// HTTP client shared by all API clients.
pub(crate) struct Transport {
    http: reqwest::Client,
    tokens: TokenSource,
    pub(crate) retry: RetryPolicy,
    request_timeout: Duration,
    stop: Arc<watch::Sender<bool>>,
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport")
            .field("tokens", &self.tokens.kind())
            .field("retry", &self.retry)
            .field("request_timeout", &self.request_timeout)
            .finish_non_exhaustive()
    }
}

/// What one HTTP attempt produced.
enum Attempt {
    Answer {
        status: u16,
        headers: HeaderMap,
        body: Vec<u8>,
    },
    Failed(reqwest::Error),
    TooLarge,
}

impl Transport {
    pub(crate) fn new(config: Config, retry: RetryPolicy) -> Result<Transport, Error> {
        if config.request_timeout.is_zero() {
            return Err(Error::Config("request_timeout must be positive".into()));
        }
        let http = reqwest::Client::builder()
            .user_agent(config.user_agent.clone())
            .connect_timeout(config.request_timeout.min(Duration::from_secs(30)))
            .build()
            .map_err(|e| Error::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(Transport {
            http,
            tokens: TokenSource::new(&config.credentials)?,
            retry,
            request_timeout: config.request_timeout,
            stop: Arc::new(watch::channel(false).0),
        })
    }

    pub(crate) fn stop_handle(&self) -> StopHandle {
        StopHandle(self.stop.clone())
    }

    fn check_stopped(&self) -> Result<(), Error> {
        if *self.stop.borrow() {
            Err(Error::Cancelled)
        } else {
            Ok(())
        }
    }

    /// Resolves when the stop handle fires.
    async fn stopped(&self) {
        let mut rx = self.stop.subscribe();
        // An error means the sender is gone, which cannot happen while `self` lives.
        let _ = rx.wait_for(|stopped| *stopped).await;
    }

    /// Sleeps for `delay`, or fails with `Cancelled` if the provider is stopped meanwhile.
    pub(crate) async fn pause(&self, delay: Duration) -> Result<(), Error> {
        self.check_stopped()?;
        tokio::select! {
            _ = tokio::time::sleep(delay) => Ok(()),
            _ = self.stopped() => Err(Error::Cancelled),
        }
    }

    /// Backoff for the n-th retry of a loop driven by a caller (conflicts, polling).
    pub(crate) fn backoff(&self, attempt: u32) -> Duration {
        backoff_delay(&self.retry, attempt, &mut rand::thread_rng())
    }

    /// Sends a call, retrying as its replay safety allows; returns the JSON answer.
    pub(crate) async fn send(&self, call: Call) -> Result<Value, Error> {
        let body = self.send_raw(&call).await?;
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Object(Default::default()));
        }
        serde_json::from_slice(&body).map_err(|e| Error::decode(call.label(), e))
    }

    /// Sends a call and decodes the answer into `T`.
    pub(crate) async fn send_as<T: DeserializeOwned>(&self, call: Call) -> Result<T, Error> {
        let label = call.label();
        let value = self.send(call).await?;
        serde_json::from_value(value).map_err(|e| Error::decode(label, e))
    }

    async fn send_raw(&self, call: &Call) -> Result<Vec<u8>, Error> {
        let started = Instant::now();
        let budget_end = started + self.retry.deadline;
        let retry_until = match call.deadline {
            Some(deadline) => deadline.min(budget_end),
            None => budget_end,
        };
        let max_attempts = self.retry.max_attempts.max(1);
        let mut attempt: u32 = 0;
        let mut refreshed = false;
        loop {
            attempt += 1;
            self.check_stopped()?;
            let (token, generation) = tokio::select! {
                t = self.tokens.token() => t?,
                _ = self.stopped() => return Err(Error::Cancelled),
            };
            let outcome = tokio::select! {
                o = self.attempt(call, &token) => o,
                _ = self.stopped() => return Err(Error::Cancelled),
            };
            let (status, headers, body) = match outcome {
                Attempt::Answer {
                    status,
                    headers,
                    body,
                } => (status, headers, body),
                Attempt::TooLarge => {
                    tracing::debug!(call = %call.label(), attempt, "response body too large");
                    return Err(Error::decode(
                        call.label(),
                        format!("response body larger than {MAX_BODY_BYTES} bytes"),
                    ));
                }
                Attempt::Failed(e) => {
                    let message = error_chain(&e);
                    tracing::debug!(call = %call.label(), attempt, error = %message, "request failed");
                    if call.replay == Replay::Safe && is_retryable_transport_error(&e) {
                        let delay = self.backoff(attempt);
                        if attempt < max_attempts && Instant::now() + delay < retry_until {
                            self.pause(delay).await?;
                            continue;
                        }
                    }
                    return Err(Error::Transport {
                        request: call.label(),
                        message,
                    });
                }
            };
            tracing::debug!(
                method = %call.method,
                path = %call.url.path(),
                status,
                attempt,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "google api response"
            );
            if (200..300).contains(&status) {
                if tracing::enabled!(tracing::Level::TRACE) {
                    tracing::trace!(call = %call.label(), body = %redacted_text(&body), "response body");
                }
                return Ok(body);
            }
            let mut error = ApiError::from_body(status, &body);
            error.request = Some(call.label());
            if let Some(delay) = headers
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, SystemTime::now()))
            {
                error.retry_delay = Some(delay);
            }
            if error.is_unauthenticated() && !refreshed {
                refreshed = true;
                if self.tokens.refresh(generation).await? {
                    attempt -= 1;
                    continue;
                }
            }
            if error.is_unauthenticated() {
                error.hint = Some(format!(
                    "The access token from the {} was rejected; check that it is current and \
                     valid for the cloud-platform scope",
                    self.tokens.kind()
                ));
            }
            if call.replay == Replay::Safe && is_retryable_api_error(call.api, &error) {
                let delay = error.retry_delay.unwrap_or_else(|| self.backoff(attempt));
                if attempt < max_attempts && Instant::now() + delay < retry_until {
                    tracing::debug!(call = %call.label(), attempt, delay_ms = delay.as_millis() as u64, "retrying");
                    self.pause(delay).await?;
                    continue;
                }
            }
            return Err(Error::Api(Box::new(error)));
        }
    }

    async fn attempt(&self, call: &Call, token: &str) -> Attempt {
        let mut timeout = call.timeout.unwrap_or(self.request_timeout);
        if let Some(deadline) = call.deadline {
            // Never hold a request open past the caller's deadline (but allow a short answer).
            let left = deadline.saturating_duration_since(Instant::now());
            timeout = timeout.min(left.max(Duration::from_secs(1)));
        }
        let mut request = self
            .http
            .request(call.method.clone(), call.url.clone())
            .header(AUTHORIZATION, format!("Bearer {token}"))
            .timeout(timeout);
        if let Some(body) = &call.body {
            if tracing::enabled!(tracing::Level::TRACE) {
                tracing::trace!(call = %call.label(), body = %redacted(body), "request body");
            }
            request = request.json(body);
        }
        let mut response = match request.send().await {
            Ok(r) => r,
            Err(e) => return Attempt::Failed(e),
        };
        let status = response.status().as_u16();
        let headers = std::mem::take(response.headers_mut());
        if response
            .content_length()
            .is_some_and(|n| n > MAX_BODY_BYTES as u64)
        {
            return Attempt::TooLarge;
        }
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > MAX_BODY_BYTES {
                        return Attempt::TooLarge;
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => return Attempt::Failed(e),
            }
        }
        Attempt::Answer {
            status,
            headers,
            body,
        }
    }
}

/// Joins an error and its sources into one line.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let next = e.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = e.source();
    }
    text
}

/// Whether a JSON key holds a secret that must never be logged.
fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    (key.contains("secret") && !key.ends_with("sha256"))
        || key.contains("private_key")
        || key.contains("privatekey")
        || key == "access_token"
        || key == "refresh_token"
        || key == "id_token"
        || key == "assertion"
}

/// A copy of a JSON body with secret values replaced, for logs.
pub(crate) fn redacted(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let v = if is_secret_key(k) {
                        Value::String("<redacted>".into())
                    } else {
                        redacted(v)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(redacted).collect()),
        other => other.clone(),
    }
}

fn redacted_text(body: &[u8]) -> String {
    match serde_json::from_slice::<Value>(body) {
        Ok(value) => redacted(&value).to_string(),
        Err(_) => format!("<{} bytes, not JSON>", body.len()),
    }
}

#[cfg(test)]
mod tests;
