//! IAP API v1: IAM policies of IAP resources and IAP settings.

use std::sync::Arc;
use std::time::Instant;

use serde_json::{json, Value};

use super::error::Error;
use super::iam::{IamWriter, Policy, PolicyStore};
use super::operation::with_verb;
use super::transport::{name_segments, Api, BaseUrl, Call, Replay, Transport};

/// IAP resource name of a Cloud Run service with direct IAP.
pub fn cloud_run_resource(project: &str, location: &str, service: &str) -> String {
    format!("projects/{project}/iap_web/cloud_run-{location}/services/{service}")
}

/// IAP resource name of a backend service (`region` for a regional one).
pub fn backend_service_resource(project: &str, region: Option<&str>, name: &str) -> String {
    match region {
        Some(region) => format!("projects/{project}/iap_web/compute-{region}/services/{name}"),
        None => format!("projects/{project}/iap_web/compute/services/{name}"),
    }
}

/// The `aud` of the `X-Goog-IAP-JWT-Assertion` IAP sends to a Cloud Run service with direct IAP
/// (Google's Cloud Run IAP documentation; not the `iap_web` name).
pub fn cloud_run_jwt_audience(project_number: &str, location: &str, service: &str) -> String {
    format!("/projects/{project_number}/locations/{location}/services/{service}")
}

/// The `aud` of the IAP JWT behind a backend service: its numeric compute `id`, not its name
/// (`region` for a regional one).
pub fn backend_service_jwt_audience(
    project_number: &str,
    region: Option<&str>,
    id: &str,
) -> String {
    match region {
        Some(region) => format!("/projects/{project_number}/regions/{region}/backendServices/{id}"),
        None => format!("/projects/{project_number}/global/backendServices/{id}"),
    }
}

/// IAP settings of a resource: the OAuth client in use, plus the whole object.
#[derive(Debug, Clone, PartialEq)]
pub struct IapSettings {
    pub name: String,
    /// `accessSettings.oauthSettings.clientId`; absent means the Google-managed client.
    pub oauth_client_id: Option<String>,
    /// The whole object as received (`clientSecret` is input-only and never returned).
    pub raw: Value,
}

/// IAP API v1 client.
#[derive(Debug, Clone)]
pub struct IapClient {
    transport: Arc<Transport>,
    base: BaseUrl,
    iam: Arc<IamWriter>,
}

impl IapClient {
    pub(crate) fn new(transport: Arc<Transport>, base: BaseUrl, iam: Arc<IamWriter>) -> IapClient {
        IapClient {
            transport,
            base,
            iam,
        }
    }

    /// getIamPolicy (a POST; version 3 requested in the body, as conditions need).
    pub async fn iam_policy(&self, resource: &str) -> Result<Policy, Error> {
        let url = self.base.join(with_verb(&["v1"], resource, "getIamPolicy"));
        // Read-only despite the POST, so safe to repeat.
        let call = Call::post(Api::Iap, url)
            .body(json!({ "options": { "requestedPolicyVersion": 3 } }))
            .replay(Replay::Safe);
        self.transport.send_as(call).await
    }

    /// setIamPolicy with `{policy}`; retried only when the policy carries an etag.
    pub async fn set_iam_policy(&self, resource: &str, policy: &Policy) -> Result<Policy, Error> {
        let url = self.base.join(with_verb(&["v1"], resource, "setIamPolicy"));
        let replay = if policy.etag.is_some() {
            Replay::Safe
        } else {
            Replay::Unsafe
        };
        let call = Call::post(Api::Iap, url)
            .body(json!({ "policy": policy.to_value() }))
            .replay(replay);
        self.transport.send_as(call).await
    }

    /// Etag-guarded read-modify-write of an IAP resource's IAM policy.
    pub async fn modify_iam_policy(
        &self,
        resource: &str,
        deadline: Instant,
        modify: impl FnMut(&mut Policy) -> bool,
    ) -> Result<Policy, Error> {
        let store = IapPolicy {
            client: self.clone(),
            resource: resource.to_string(),
        };
        self.iam.read_modify_write(store, deadline, modify).await
    }

    /// getIapSettings (`GET v1/{name}:iapSettings`).
    pub async fn iap_settings(&self, name: &str) -> Result<IapSettings, Error> {
        let url = self.base.join(with_verb(&["v1"], name, "iapSettings"));
        let raw = self.transport.send(Call::get(Api::Iap, url)).await?;
        if !raw.is_object() {
            return Err(Error::decode("IAP settings", "not a JSON object"));
        }
        Ok(IapSettings::from_raw(name, raw))
    }

    /// updateIapSettings (`PATCH v1/{name}:iapSettings`) of exactly the `mask` paths (each with the
    /// `iapSettings.` prefix). Never called with an empty mask: no mask replaces every setting.
    pub async fn update_iap_settings(
        &self,
        name: &str,
        body: Value,
        mask: &[String],
        deadline: Instant,
    ) -> Result<IapSettings, Error> {
        if mask.is_empty() {
            return Err(Error::decode("IAP settings update", "an empty update mask"));
        }
        let mut url = self.base.join(with_verb(&["v1"], name, "iapSettings"));
        url.query_pairs_mut()
            .append_pair("updateMask", &mask.join(","));
        // The same masked body twice leaves the same settings: safe to repeat.
        let call = Call::patch(Api::Iap, url)
            .body(body)
            .replay(Replay::Safe)
            .deadline(Some(deadline));
        let raw = self.transport.send(call).await?;
        if !raw.is_object() {
            return Err(Error::decode("IAP settings", "not a JSON object"));
        }
        Ok(IapSettings::from_raw(name, raw))
    }

    /// validateAttributeExpression: Ok when IAP accepts the CEL `expression` for `name`'s
    /// attribute propagation; a 400 names what is wrong.
    pub async fn validate_attribute_expression(
        &self,
        name: &str,
        expression: &str,
    ) -> Result<(), Error> {
        let mut url = self
            .base
            .join(with_verb(&["v1"], name, "validateAttributeExpression"));
        url.query_pairs_mut().append_pair("expression", expression);
        // Read-only despite the POST.
        let call = Call::post(Api::Iap, url).replay(Replay::Safe);
        self.transport.send(call).await.map(drop)
    }
}

impl IapSettings {
    fn from_raw(name: &str, raw: Value) -> IapSettings {
        let oauth_client_id = raw
            .pointer("/accessSettings/oauthSettings/clientId")
            .and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty())
            .map(str::to_string);
        IapSettings {
            name: raw
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or(name)
                .to_string(),
            oauth_client_id,
            raw,
        }
    }
}

#[derive(Clone)]
struct IapPolicy {
    client: IapClient,
    resource: String,
}

impl PolicyStore for IapPolicy {
    fn key(&self) -> String {
        // Project id and number name the same policy; the caller passes one canonical form.
        format!(
            "iap {}",
            name_segments(&self.resource).collect::<Vec<_>>().join("/")
        )
    }

    async fn read(&self) -> Result<Policy, Error> {
        self.client.iam_policy(&self.resource).await
    }

    async fn write(&self, policy: &Policy) -> Result<Policy, Error> {
        self.client.set_iam_policy(&self.resource, policy).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_names() {
        assert_eq!(
            cloud_run_resource("123", "us-central1", "svc"),
            "projects/123/iap_web/cloud_run-us-central1/services/svc"
        );
        assert_eq!(
            backend_service_resource("p", None, "bs"),
            "projects/p/iap_web/compute/services/bs"
        );
        assert_eq!(
            backend_service_resource("p", Some("europe-west1"), "bs"),
            "projects/p/iap_web/compute-europe-west1/services/bs"
        );
    }
}
