//! `iaprun_iap_settings`: IAP settings (`iapSettings`) of one protected resource, managed field by
//! field. Every PATCH names in its `updateMask` exactly the fields the configuration sets or set
//! before (reauth settings as one unit, as the API demands); other fields are never sent.
//!
//! The blocks mirror the API: a model attribute `a_b` is the API field `aB` at the same place,
//! so the mask, the request body and the read all come from one walk of the schema over the
//! model as JSON. Only the secrets differ: `client_secret` and `client_secret_wo` are both
//! `clientSecret` (input only), and `client_secret_sha256` is read from `clientSecretSha256`.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value as Json};

use super::access_binding::{plan_resource, resource_gone};
use super::backend_iap::secret_sha256;
use super::prelude::*;
use crate::framework::timeouts::Timeouts;
use crate::names::IapResource;
use crate::validation::settings as rules;

/// The resource type.
pub struct IapSettings;

/// Config, plan and state of one `iaprun_iap_settings`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Model {
    pub id: Attr<String>,
    pub resource: Attr<String>,
    pub access_settings: Attr<AccessSettings>,
    pub application_settings: Attr<ApplicationSettings>,
    pub timeouts: Attr<Timeouts>,
}

/// `access_settings`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct AccessSettings {
    pub cors_settings: Attr<Cors>,
    pub oauth_settings: Attr<OAuth>,
    pub allowed_domains_settings: Attr<AllowedDomains>,
    pub reauth_settings: Attr<Reauth>,
    pub gcip_settings: Attr<Gcip>,
    pub workforce_identity_settings: Attr<WorkforceIdentity>,
    pub identity_sources: Attr<Vec<String>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Cors {
    pub allow_http_options: Attr<bool>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct OAuth {
    pub client_id: Attr<String>,
    pub client_secret: Attr<String>,
    pub client_secret_wo: Attr<String>,
    pub client_secret_wo_version: Attr<serde_json::Number>,
    pub client_secret_sha256: Attr<String>,
    pub login_hint: Attr<String>,
    pub programmatic_clients: Attr<Vec<String>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct AllowedDomains {
    pub enable: Attr<bool>,
    pub domains: Attr<Vec<String>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Reauth {
    pub method: Attr<String>,
    pub max_age: Attr<String>,
    pub policy_type: Attr<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Gcip {
    pub tenant_ids: Attr<Vec<String>>,
    pub login_page_uri: Attr<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct WorkforceIdentity {
    pub workforce_pools: Attr<Vec<String>>,
    pub oauth2: Attr<OAuth2>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct OAuth2 {
    pub client_id: Attr<String>,
    pub client_secret: Attr<String>,
    pub client_secret_sha256: Attr<String>,
}

/// `application_settings`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ApplicationSettings {
    pub access_denied_page_settings: Attr<AccessDeniedPage>,
    pub cookie_domain: Attr<String>,
    pub attribute_propagation_settings: Attr<AttributePropagation>,
    pub csm_settings: Attr<Csm>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct AccessDeniedPage {
    pub access_denied_page_uri: Attr<String>,
    pub generate_troubleshooting_uri: Attr<bool>,
    pub remediation_token_generation_enabled: Attr<bool>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct AttributePropagation {
    pub enable: Attr<bool>,
    pub expression: Attr<String>,
    pub output_credentials: Attr<Vec<String>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Csm {
    pub rctoken_aud: Attr<String>,
}

const SHA_POINTER: &str = "/accessSettings/oauthSettings/clientSecretSha256";
const WORKFORCE_SHA_POINTER: &str =
    "/accessSettings/workforceIdentitySettings/oauth2/clientSecretSha256";

impl Model {
    /// The secret each OAuth client block is given (state-stored or write-only), by the API
    /// pointer of its SHA-256.
    fn configured_secrets(&self) -> BTreeMap<&'static str, Attr<String>> {
        let mut out = BTreeMap::new();
        if let Some(a) = self.access_settings.get() {
            if let Some(o) = a.oauth_settings.get() {
                let secret = match &o.client_secret {
                    Attr::Null => o.client_secret_wo.clone(),
                    s => s.clone(),
                };
                out.insert(SHA_POINTER, secret);
            }
            if let Some(o) = a
                .workforce_identity_settings
                .get()
                .and_then(|w| w.oauth2.get())
            {
                out.insert(WORKFORCE_SHA_POINTER, o.client_secret.clone());
            }
        }
        out
    }

    /// The `client_secret_sha256` attributes, by the API pointer they are read from.
    fn shas_mut(&mut self) -> Vec<(&'static str, &mut Attr<String>)> {
        let mut out = Vec::new();
        if let Attr::Known(a) = &mut self.access_settings {
            if let Attr::Known(o) = &mut a.oauth_settings {
                out.push((SHA_POINTER, &mut o.client_secret_sha256));
            }
            if let Attr::Known(w) = &mut a.workforce_identity_settings {
                if let Attr::Known(o) = &mut w.oauth2 {
                    out.push((WORKFORCE_SHA_POINTER, &mut o.client_secret_sha256));
                }
            }
        }
        out
    }

    fn client_id(&self) -> &Attr<String> {
        static NULL: Attr<String> = Attr::Null;
        self.access_settings
            .get()
            .and_then(|a| a.oauth_settings.get())
            .map_or(&NULL, |o| &o.client_id)
    }

    fn expression(&self) -> Option<&str> {
        self.application_settings
            .get()?
            .attribute_propagation_settings
            .get()?
            .expression
            .as_deref()
    }
}

fn secret_description(what: &str) -> String {
    format!(
        "{what} A secret rotated outside Terraform shows as drift through the API's SHA-256 of it. \
         Terraform 1.0.3 crashes (\"value is marked, so must be unmarked first\") showing any \
         change of this block, drift included, while the secret is set; a saved plan \
         (`terraform plan -out=tfplan`, then `terraform apply tfplan`) still applies."
    )
}

fn string_list(name: &str, description: &str) -> Attribute {
    Attribute::string_list(name)
        .optional()
        .description(description)
}

fn access_settings_block() -> NestedBlock {
    let oauth = Block::new("The OAuth client IAP signs users in with, and the clients allowed programmatic access.")
        .attribute(Attribute::string("client_id").optional().description(
            "Client id of a custom OAuth client. Needed for users outside the organization and for projects without one.",
        ))
        .attribute(Attribute::string("client_secret").optional().sensitive().description(secret_description(
            "Secret of the custom OAuth client; stored in state (sensitive). Prefer `client_secret_wo` on Terraform 1.11+.",
        )))
        .attribute(Attribute::string("client_secret_wo").optional().sensitive().write_only().description(
            "Write-only secret of the custom OAuth client (Terraform 1.11+): never stored in plan or state. Change `client_secret_wo_version` to send a new value.",
        ))
        .attribute(Attribute::number("client_secret_wo_version").optional().description(
            "Version of `client_secret_wo`; change it when the secret changes.",
        ))
        .attribute(Attribute::string("client_secret_sha256").computed().description(
            "SHA-256 of the client secret as the API reports it.",
        ))
        .attribute(Attribute::string("login_hint").optional().description(
            "Domain hint sent to the sign-in page, such as `example.com`.",
        ))
        .attribute(string_list("programmatic_clients",
            "OAuth client ids (`NUMBER-ID.apps.googleusercontent.com`) allowed programmatic access with the Google-managed client: CI jobs and CLI tools with their own OAuth client.",
        ));
    let workforce = Block::new("Workforce identity federation: the pool and its OAuth client.")
        .attribute(string_list(
            "workforce_pools",
            "Workforce pool names (at most one): `locations/global/workforcePools/POOL`.",
        ))
        .block(NestedBlock::single(
            "oauth2",
            Block::new("The OAuth client of the workforce pool.")
                .attribute(
                    Attribute::string("client_id")
                        .optional()
                        .description("OAuth client id."),
                )
                .attribute(
                    Attribute::string("client_secret")
                        .optional()
                        .sensitive()
                        .description(secret_description(
                            "OAuth client secret; stored in state (sensitive).",
                        )),
                )
                .attribute(
                    Attribute::string("client_secret_sha256")
                        .computed()
                        .description("SHA-256 of the client secret as the API reports it."),
                ),
        ));
    NestedBlock::single("access_settings", Block::new("Who may sign in and how: the OAuth client, CORS, allowed domains, re-authentication, identity sources.")
        .block(NestedBlock::single("cors_settings", Block::new("CORS preflight handling.")
            .attribute(Attribute::bool("allow_http_options").optional().description(
                "Let HTTP OPTIONS (CORS preflight) requests through IAP unauthenticated; preflights fail without it.",
            ))))
        .block(NestedBlock::single("oauth_settings", oauth))
        .block(NestedBlock::single("allowed_domains_settings", Block::new("Restricts sign-in to accounts of these domains.")
            .attribute(Attribute::bool("enable").optional().description("Whether the domain restriction applies."))
            .attribute(string_list("domains", "Domains such as `example.com` (or `*.example.com`)."))))
        .block(NestedBlock::single("reauth_settings", Block::new(
            "Forces users to sign in again after `max_age`. Managed as one unit, as the API demands: an attribute left unset here is cleared.",
        )
            .attribute(Attribute::string("method").optional().description(
                "`LOGIN`, `PASSWORD`, `SECURE_KEY` or `ENROLLED_SECOND_FACTORS`.",
            ))
            .attribute(Attribute::string("max_age").optional().description(
                "How long a sign-in lasts, as a duration in seconds such as `3600s`.",
            ))
            .attribute(Attribute::string("policy_type").optional().description(
                "`MINIMUM` (settings below may be stricter) or `DEFAULT` (settings below may override).",
            ))))
        .block(NestedBlock::single("gcip_settings", Block::new("Identity Platform (GCIP) sign-in.")
            .attribute(string_list("tenant_ids", "Identity Platform tenant ids."))
            .attribute(Attribute::string("login_page_uri").optional().description("URL of the sign-in page."))))
        .block(NestedBlock::single("workforce_identity_settings", workforce))
        .attribute(string_list("identity_sources", "Identity sources; `WORKFORCE_IDENTITY_FEDERATION` is the only one.")))
}

fn application_settings_block() -> NestedBlock {
    NestedBlock::single("application_settings", Block::new("How IAP behaves towards the application: the access-denied page, cookies, attributes passed on.")
        .block(NestedBlock::single("access_denied_page_settings", Block::new("A custom page for denied users.")
            .attribute(Attribute::string("access_denied_page_uri").optional().description("URL of the access-denied page."))
            .attribute(Attribute::bool("generate_troubleshooting_uri").optional().description("Whether the page gets a troubleshooting link."))
            .attribute(Attribute::bool("remediation_token_generation_enabled").optional().description("Whether the page gets a remediation token."))))
        .attribute(Attribute::string("cookie_domain").optional().description("Domain IAP sets its cookie on, such as `example.com`."))
        .block(NestedBlock::single("attribute_propagation_settings", Block::new("User attributes IAP passes to the application.")
            .attribute(Attribute::bool("enable").optional().description("Whether attributes are passed on."))
            .attribute(Attribute::string("expression").optional().description(
                "CEL expression choosing the attributes; checked with IAP's validateAttributeExpression at plan when the API is reachable.",
            ))
            .attribute(string_list("output_credentials", "Where the attributes go: `HEADER`, `JWT`, `RCTOKEN`."))))
        .block(NestedBlock::single("csm_settings", Block::new("Context-sensitive monitoring.")
            .attribute(Attribute::string("rctoken_aud").optional().description("Audience of the RCToken.")))))
}

#[async_trait]
impl Resource<Context> for IapSettings {
    type Model = Model;
    type Private = ();
    const TYPE_NAME: &'static str = "iaprun_iap_settings";

    fn schema() -> Schema {
        Schema::new(0, Block::new(
            "IAP settings of one protected resource: a custom OAuth client (its secret write-only on Terraform 1.11+), programmatic clients, allowed domains, CORS preflights, re-authentication, the access-denied page. Authoritative only for the fields set here: each update names exactly them in its update mask, settings made by others are never sent or changed, and destroy clears only these fields.",
        )
        .attribute(Attribute::string("id").computed().description("The IAP resource name, as `resource`."))
        .attribute(Attribute::string("resource").required().force_new().description(
            "IAP resource name, such as `iaprun_service_iap.x.iap_resource_name` or `iaprun_backend_iap.x.iap_resource_name` (project id or number). Changing it replaces the resource.",
        ))
        .block(access_settings_block())
        .block(application_settings_block())
        .block(timeouts_block(true, true, true)))
    }

    fn validate(config: &Model, _: ClientCapabilities) -> Diagnostics {
        let mut diags = validation::access_config(&config.resource, &Attr::Null, None);
        if config.access_settings.is_null() && config.application_settings.is_null() {
            diags.error(
                "Nothing to manage",
                "Set access_settings or application_settings: this resource manages only the settings it is given.",
            );
        }
        let json = json_of(config);
        validate_values(&json, &mut diags);
        validate_pools(&json, &mut diags);
        validate_secrets(config, &mut diags);
        diags
    }

    async fn plan(&self, ctx: &Context, plan: &mut Plan<Model>) -> Diagnostics {
        let secrets = plan.config.configured_secrets();
        for (pointer, sha) in plan.planned.shas_mut() {
            *sha = match secrets.get(pointer) {
                Some(Attr::Known(secret)) => Attr::Known(secret_sha256(secret)),
                Some(Attr::Unknown(_)) => Attr::unknown(),
                _ => Attr::Null,
            };
        }
        let (_, target) = match plan_resource(ctx, plan, |m| &mut m.resource).await {
            Ok(planned) => planned,
            Err(d) => return d,
        };
        plan.planned.id = plan.planned.resource.clone();
        // Access bindings planned after this one (their resource refers to this one) judge their
        // members by the client planned here (managed_oauth_external).
        if !plan.config.client_id().is_null() {
            ctx.custom_oauth_clients.put(&target.to_string(), true);
        }
        match plan.config.expression() {
            Some(expression) => check_expression(ctx, &target, expression).await,
            None => Diagnostics::new(),
        }
    }

    async fn create(&self, ctx: &Context, change: Change<'_, Model, ()>) -> Applied<Model> {
        converge(ctx, change).await
    }

    async fn read(&self, ctx: &Context, state: Model) -> Result<Read<Model>, Diagnostic> {
        let Some(resource) = state.resource.get().cloned() else {
            return Ok(Read::Found(state));
        };
        let target = common::canonical(ctx, &resource).await?;
        let read = ctx.clients.iap.iap_settings(&target.to_string()).await;
        let doing = || format!("read the IAP settings of {resource}");
        let Some(settings) = common::unless_gone(read, doing)? else {
            return Ok(resource_gone(&resource, Self::TYPE_NAME));
        };
        // Right after import nothing is managed yet: take every setting the API reports.
        let adopt = state.access_settings.is_null() && state.application_settings.is_null();
        let mut json = json_of(&state);
        if let Some(fields) = json.as_object_mut() {
            for nested in settings_blocks(&Self::schema().block) {
                read_nested(nested, &settings.raw, fields, adopt, false);
            }
        }
        let mut state: Model = serde_json::from_value(json).map_err(|e| {
            Diagnostic::error(
                "Unreadable IAP settings",
                format!("The settings of {resource} do not fit the model: {e}"),
            )
        })?;
        state.id = Attr::Known(resource);
        Ok(Read::Found(state))
    }

    async fn delete(&self, ctx: &Context, delete: Delete<'_, Model, ()>) -> Deleted {
        let Delete {
            prior, deadline, ..
        } = delete;
        let resource = prior.resource.get().cloned().unwrap_or_default();
        let mask = managed_mask(&[&prior]);
        if mask.is_empty() {
            return Ok(());
        }
        let target = common::canonical(ctx, &resource).await?;
        let cleared = ctx
            .clients
            .iap
            .update_iap_settings(
                &target.to_string(),
                Json::Object(Map::new()),
                &mask,
                deadline,
            )
            .await;
        let doing = || format!("clear the IAP settings this resource set on {resource}");
        common::unless_gone(cleared, doing).map(drop)
    }

    async fn import(&self, _: &Context, id: &str) -> Result<Model, Diagnostic> {
        IapResource::parse(id).map_err(|e| Diagnostic::error("Invalid import id", e))?;
        Ok(Model {
            id: id.into(),
            resource: id.into(),
            ..Model::default()
        })
    }
}

/// Sends the configured fields, and clears those set before and now removed, in one PATCH.
async fn converge(ctx: &Context, change: Change<'_, Model, ()>) -> Applied<Model> {
    let Change {
        prior,
        planned,
        config,
        deadline,
        ..
    } = change;
    let resource = planned.resource.get().cloned().unwrap_or_default();
    let target = common::canonical(ctx, &resource)
        .await
        .map_err(Failure::unchanged(&prior))?;
    let mut next = planned;
    next.id = Attr::Known(resource.clone());
    let mask = match &prior {
        Some(prior) => managed_mask(&[&config, prior]),
        None => managed_mask(&[&config]),
    };
    let mut reported = Json::Null;
    if !mask.is_empty() {
        let body = request_body(&json_of(&config));
        match ctx
            .clients
            .iap
            .update_iap_settings(&target.to_string(), body, &mask, deadline)
            .await
        {
            Ok(updated) => reported = updated.raw,
            Err(e) => {
                let d = common::api_error(&format!("update the IAP settings of {resource}"), &e);
                return Err(Failure::new(prior, d));
            }
        }
    }
    for (pointer, sha) in next.shas_mut() {
        if sha.is_unknown() {
            *sha = Attr::from_option(
                reported
                    .pointer(pointer)
                    .and_then(Json::as_str)
                    .map(str::to_string),
            );
        }
    }
    Ok(next)
}

/// Plan-time check of the CEL expression by IAP itself; skipped when the API cannot answer
/// (the resource does not exist yet, no permission, offline): only a 400 is a finding.
async fn check_expression(ctx: &Context, target: &IapResource, expression: &str) -> Diagnostics {
    match ctx
        .clients
        .iap
        .validate_attribute_expression(&target.to_string(), expression)
        .await
    {
        Err(e) if e.http_status() == Some(400) => Diagnostic::error(
            "Invalid attribute expression",
            format!("IAP rejected the CEL expression: {}", e.message()),
        )
        .at(AttributePath::attr("application_settings")
            .then_attr("attribute_propagation_settings")
            .then_attr("expression"))
        .into(),
        _ => Diagnostics::new(),
    }
}

// ---- the walk: model JSON (snake_case) against API JSON (camelCase) ---------------------------

fn schema_block() -> Block {
    <IapSettings as Resource<Context>>::schema().block
}

fn json_of(model: &Model) -> Json {
    serde_json::to_value(model).unwrap_or(Json::Null)
}

fn camel(snake: &str) -> String {
    let mut out = String::new();
    let mut upper = false;
    for c in snake.chars() {
        match c {
            '_' => upper = true,
            c if upper => {
                out.push(c.to_ascii_uppercase());
                upper = false;
            }
            c => out.push(c),
        }
    }
    out
}

/// The top-level blocks that hold settings (not `timeouts`).
fn settings_blocks(block: &Block) -> impl Iterator<Item = &NestedBlock> {
    block
        .blocks
        .iter()
        .filter(|b| b.type_name.ends_with("_settings"))
}

/// The API field an attribute at `path` (model names) writes, as an update-mask path; `None`
/// for attributes that are not API fields.
fn api_path(path: &[&str]) -> Option<String> {
    let (last, parents) = path.split_last()?;
    if *last == "client_secret_wo_version" {
        return None;
    }
    if parents.contains(&"reauth_settings") {
        return Some("accessSettings.reauthSettings".into());
    }
    let field = match *last {
        "client_secret" | "client_secret_wo" | "client_secret_sha256" => "clientSecret".to_string(),
        other => camel(other),
    };
    let mut parts: Vec<String> = parents.iter().map(|p| camel(p)).collect();
    parts.push(field);
    Some(parts.join("."))
}

/// Every attribute set (not null) in `json`, with its path of model names.
fn set_leaves<'a>(
    block: &Block,
    json: &'a Json,
    path: &mut Vec<String>,
    out: &mut Vec<(Vec<String>, &'a Json)>,
) {
    for a in &block.attributes {
        if let Some(v) = json.get(&a.name).filter(|v| !v.is_null()) {
            path.push(a.name.clone());
            out.push((path.clone(), v));
            path.pop();
        }
    }
    for b in &block.blocks {
        if let Some(v) = json.get(&b.type_name).filter(|v| v.is_object()) {
            path.push(b.type_name.clone());
            set_leaves(&b.block, v, path, out);
            path.pop();
        }
    }
}

fn leaves_of(json: &Json) -> Vec<(Vec<String>, &Json)> {
    let block = schema_block();
    let mut out = Vec::new();
    for b in settings_blocks(&block) {
        if let Some(v) = json.get(&b.type_name).filter(|v| v.is_object()) {
            set_leaves(&b.block, v, &mut vec![b.type_name.clone()], &mut out);
        }
    }
    out
}

/// The update mask of every field some model manages, `iapSettings.`-prefixed and sorted.
fn managed_mask(models: &[&Model]) -> Vec<String> {
    let mut mask = BTreeSet::new();
    for model in models {
        let json = json_of(model);
        for (path, _) in leaves_of(&json) {
            let path: Vec<&str> = path.iter().map(String::as_str).collect();
            if let Some(p) = api_path(&path) {
                mask.insert(format!("iapSettings.{p}"));
            }
        }
    }
    mask.into_iter().collect()
}

/// The `IapSettings` request body of the configured fields (secrets included, hashes not).
fn request_body(config: &Json) -> Json {
    let mut body = Json::Object(Map::new());
    for (path, value) in leaves_of(config) {
        if path
            .last()
            .is_some_and(|l| l == "client_secret_sha256" || l == "client_secret_wo_version")
        {
            continue;
        }
        let path: Vec<&str> = path.iter().map(String::as_str).collect();
        let Some(p) = api_path(&path) else { continue };
        // Reauth settings are one mask unit but separate fields in the body.
        let p = match path.split_last() {
            Some((last, _)) if p == "accessSettings.reauthSettings" => {
                format!("{p}.{}", camel(last))
            }
            _ => p,
        };
        let mut at = &mut body;
        for part in p.split('.') {
            if !at.is_object() {
                *at = Json::Object(Map::new());
            }
            at = at
                .as_object_mut()
                .map(|m| m.entry(part.to_string()).or_insert(Json::Null))
                .expect("made an object above");
        }
        *at = value.clone();
    }
    body
}

/// A value the API omits when it is the default: false, "", [].
fn is_zero(value: &Json) -> bool {
    matches!(value, Json::Bool(false))
        || value.as_str() == Some("")
        || value.as_array().is_some_and(Vec::is_empty)
}

/// Refreshes the managed attributes of `state` (one block's model JSON) from `api` (the same
/// block in IapSettings JSON): set ones (all of a `whole` block), or, when `adopt`ing, every one
/// the API reports. Secrets are never read back; their SHA-256 is.
fn read_into(block: &Block, api: &Json, state: &mut Map<String, Json>, adopt: bool, whole: bool) {
    for a in &block.attributes {
        if matches!(
            a.name.as_str(),
            "client_secret" | "client_secret_wo" | "client_secret_wo_version"
        ) {
            continue;
        }
        let current = state.get(&a.name).cloned().unwrap_or(Json::Null);
        let reported = api.get(camel(&a.name)).filter(|v| !v.is_null());
        let managed = whole || !current.is_null();
        match reported {
            Some(v) if managed || adopt => {
                state.insert(a.name.clone(), v.clone());
            }
            None if managed && !is_zero(&current) => {
                state.insert(a.name.clone(), Json::Null);
            }
            _ => {}
        }
    }
    for nested in &block.blocks {
        read_nested(nested, api, state, adopt, whole);
    }
}

/// [`read_into`] for the nested block `nested` of `parent`; when adopting, a block the API
/// reports is created.
fn read_nested(
    nested: &NestedBlock,
    api_parent: &Json,
    parent: &mut Map<String, Json>,
    adopt: bool,
    whole: bool,
) {
    let api = api_parent
        .get(camel(&nested.type_name))
        .filter(|v| v.is_object());
    let child = parent.entry(nested.type_name.clone()).or_insert(Json::Null);
    if child.is_null() && adopt && api.is_some() {
        *child = Json::Object(Map::new());
    }
    if let Some(fields) = child.as_object_mut() {
        let whole = whole || nested.type_name == "reauth_settings";
        read_into(
            &nested.block,
            api.unwrap_or(&Json::Null),
            fields,
            adopt,
            whole,
        );
    }
}

// ---- validation ---------------------------------------------------------------------------

/// Every value with a format, on its attribute; unknown values (not strings in JSON) are skipped.
fn validate_values(config: &Json, diags: &mut Diagnostics) {
    type Rule = fn(&str) -> Result<(), String>;
    let checks: [(&str, &str, Rule); 11] = [
        (
            "access_settings.reauth_settings.method",
            "Invalid re-authentication method",
            rules::reauth_method,
        ),
        (
            "access_settings.reauth_settings.policy_type",
            "Invalid re-authentication policy type",
            rules::reauth_policy_type,
        ),
        (
            "access_settings.reauth_settings.max_age",
            "Invalid duration",
            rules::duration,
        ),
        (
            "access_settings.allowed_domains_settings.domains",
            "Invalid domain",
            rules::domain,
        ),
        (
            "access_settings.oauth_settings.programmatic_clients",
            "Invalid OAuth client id",
            rules::oauth_client_id,
        ),
        (
            "access_settings.oauth_settings.login_hint",
            "Invalid login hint",
            rules::domain,
        ),
        (
            "access_settings.gcip_settings.login_page_uri",
            "Invalid URL",
            rules::uri,
        ),
        (
            "access_settings.identity_sources",
            "Invalid identity source",
            rules::identity_source,
        ),
        (
            "application_settings.access_denied_page_settings.access_denied_page_uri",
            "Invalid URL",
            rules::uri,
        ),
        (
            "application_settings.cookie_domain",
            "Invalid cookie domain",
            rules::cookie_domain,
        ),
        (
            "application_settings.attribute_propagation_settings.output_credentials",
            "Invalid output credential",
            rules::output_credential,
        ),
    ];
    for (path, summary, check) in &checks {
        let parts: Vec<&str> = path.split('.').collect();
        let value = parts.iter().try_fold(config, |v, p| v.get(p));
        let mut at = AttributePath::attr(parts[0]);
        for p in &parts[1..] {
            at = at.then_attr(p);
        }
        let mut report = |text: &str, at: AttributePath| {
            if let Err(e) = check(text) {
                diags.attribute_error(at, *summary, e);
            }
        };
        match value {
            Some(Json::String(s)) => report(s, at),
            Some(Json::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    if let Some(s) = item.as_str() {
                        report(s, at.clone().then_index(i as i64));
                    }
                }
            }
            _ => {}
        }
    }
}

/// `workforceIdentitySettings.workforcePools`: "Only one workforce pool is accepted" (IAP v1
/// discovery document), so a second one would fail the apply.
fn validate_pools(config: &Json, diags: &mut Diagnostics) {
    let pools = config
        .pointer("/access_settings/workforce_identity_settings/workforce_pools")
        .and_then(Json::as_array);
    if pools.is_some_and(|p| p.len() > 1) {
        diags.attribute_error(
            AttributePath::attr("access_settings")
                .then_attr("workforce_identity_settings")
                .then_attr("workforce_pools"),
            "Too many workforce pools",
            "IAP accepts only one workforce pool: list one.",
        );
    }
}

/// The OAuth client: one kind of secret, a secret only with a client id, a version only with the
/// write-only secret.
fn validate_secrets(config: &Model, diags: &mut Diagnostics) {
    let Some(o) = config
        .access_settings
        .get()
        .and_then(|a| a.oauth_settings.get())
    else {
        return;
    };
    let at = |name: &str| {
        AttributePath::attr("access_settings")
            .then_attr("oauth_settings")
            .then_attr(name)
    };
    if !o.client_secret.is_null() && !o.client_secret_wo.is_null() {
        diags.attribute_error(
            at("client_secret_wo"),
            "Conflicting secrets",
            "Set either client_secret or client_secret_wo, not both.",
        );
    }
    if o.client_id.is_null() && (!o.client_secret.is_null() || !o.client_secret_wo.is_null()) {
        let given = if o.client_secret.is_null() {
            "client_secret_wo"
        } else {
            "client_secret"
        };
        diags.attribute_error(
            at(given),
            "OAuth client id missing",
            "A client secret was given without client_id. Set both for a custom OAuth client.",
        );
    }
    if !o.client_secret_wo_version.is_null() && o.client_secret_wo.is_null() {
        diags.attribute_error(
            at("client_secret_wo_version"),
            "Version without a write-only secret",
            "client_secret_wo_version only has an effect together with client_secret_wo.",
        );
    }
    if o.client_id.get().is_some_and(|i| i.trim().is_empty()) {
        diags.attribute_error(at("client_id"), "Empty OAuth client id", "Leave client_id unset to keep the OAuth client IAP has; an empty string is not a client id.");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_paths_follow_the_model_names() {
        assert_eq!(
            api_path(&["access_settings", "cors_settings", "allow_http_options"]).as_deref(),
            Some("accessSettings.corsSettings.allowHttpOptions")
        );
        assert_eq!(
            api_path(&["access_settings", "reauth_settings", "max_age"]).as_deref(),
            Some("accessSettings.reauthSettings")
        );
        assert_eq!(
            api_path(&["access_settings", "oauth_settings", "client_secret_wo"]).as_deref(),
            Some("accessSettings.oauthSettings.clientSecret")
        );
        assert_eq!(
            api_path(&[
                "access_settings",
                "oauth_settings",
                "client_secret_wo_version"
            ]),
            None
        );
        assert_eq!(
            api_path(&["application_settings", "csm_settings", "rctoken_aud"]).as_deref(),
            Some("applicationSettings.csmSettings.rctokenAud")
        );
    }

    #[test]
    fn a_second_workforce_pool_is_refused_on_its_attribute() {
        let with_pools = |pools: &[&str]| -> Model {
            serde_json::from_value(serde_json::json!({
                "resource": "projects/my-project/iap_web/cloud_run-us-central1/services/s",
                "access_settings": {"workforce_identity_settings": {"workforce_pools": pools}}
            }))
            .expect("model")
        };
        let caps = ClientCapabilities::default();
        let two = with_pools(&[
            "locations/global/workforcePools/a",
            "locations/global/workforcePools/b",
        ]);
        let diags = <IapSettings as Resource<Context>>::validate(&two, caps);
        let at = AttributePath::attr("access_settings")
            .then_attr("workforce_identity_settings")
            .then_attr("workforce_pools");
        assert!(
            diags
                .iter()
                .any(|d| d.path.as_ref() == Some(&at) && d.summary == "Too many workforce pools"),
            "{diags:?}"
        );
        let one = with_pools(&["locations/global/workforcePools/a"]);
        let diags = <IapSettings as Resource<Context>>::validate(&one, caps);
        assert!(diags.is_empty(), "{diags:?}");
    }
}
