//! The emulated world (projects and every API's resources) and the request journal.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::Write;
use std::sync::{Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::error::ApiError;
use super::{compute, iap, run, service_usage, token, Options};

/// Lock a mutex, recovering the data if a holder panicked.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The organization every project belongs to unless the admin API says otherwise.
pub(crate) const DEFAULT_ORGANIZATION: &str = "100200300400";
pub(crate) const DEFAULT_ORGANIZATION_DOMAIN: &str = "example.com";

/// Services enabled in a project that nobody has touched.
const DEFAULT_ENABLED: &[&str] = &[
    "iap.googleapis.com",
    "run.googleapis.com",
    "compute.googleapis.com",
    "serviceusage.googleapis.com",
    "cloudresourcemanager.googleapis.com",
    "iam.googleapis.com",
];

/// A project's parent in the resource hierarchy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parent {
    /// `organization` or `folder`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The organization or folder id.
    pub id: String,
}

/// One project.
#[derive(Clone, Debug)]
pub(crate) struct Project {
    pub id: String,
    pub number: String,
    pub parent: Option<Parent>,
    pub organization_domain: String,
    /// Explicit enable/disable decisions; others follow `DEFAULT_ENABLED`.
    pub services: BTreeMap<String, bool>,
    /// Services whose service agent exists (generateServiceIdentity was called, or admin seeded it).
    pub agents: BTreeSet<String>,
    /// The project's own IAM policy (projects.getIamPolicy / setIamPolicy).
    pub policy: super::iam::Policy,
    /// Agents still propagating (an `agent_propagation` fault): unusable in IAM policies until then.
    pub agents_propagating: BTreeMap<String, std::time::Instant>,
    /// Organization policy `iam.allowedPolicyMemberDomains`: reject allUsers/allAuthenticatedUsers.
    pub restrict_public_members: bool,
    pub create_time: String,
}

impl Project {
    pub fn service_enabled(&self, service: &str) -> bool {
        self.services
            .get(service)
            .copied()
            .unwrap_or_else(|| DEFAULT_ENABLED.contains(&service))
    }

    pub fn admin_view(&self) -> Value {
        json!({
            "project_id": self.id,
            "project_number": self.number,
            "parent": self.parent,
            "organization_domain": self.organization_domain,
            "services": self.services,
            "service_agents": self.agents,
            "restrict_public_members": self.restrict_public_members,
        })
    }
}

/// Why a project reference does not resolve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProjectError {
    /// Not a syntactically valid project id or number.
    Invalid,
    /// A number no project has.
    Unknown,
}

impl ProjectError {
    /// The answer an API gives for this project reference.
    pub fn to_api(self, ident: &str, legacy: bool) -> ApiError {
        match (self, legacy) {
            (ProjectError::Invalid, _) => ApiError::invalid(format!(
                "Invalid project: '{ident}' is not a valid project ID."
            )),
            (ProjectError::Unknown, true) => {
                ApiError::not_found(format!("The resource 'projects/{ident}' was not found"))
            }
            (ProjectError::Unknown, false) => ApiError::permission_denied(format!(
                "Permission denied on resource project {ident} (or it may not exist)."
            )),
        }
    }
}

/// All projects, addressable by id or number.
#[derive(Default)]
pub(crate) struct Projects {
    by_id: BTreeMap<String, Project>,
    by_number: BTreeMap<String, String>,
}

/// Project ids: 6 to 30 characters, lowercase letters, digits and hyphens, starting with a letter.
pub(crate) fn valid_project_id(id: &str) -> bool {
    let bytes = id.as_bytes();
    (6..=30).contains(&bytes.len())
        && bytes.first().is_some_and(u8::is_ascii_lowercase)
        && bytes
            .last()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
}

fn is_number(text: &str) -> bool {
    !text.is_empty() && text.len() <= 19 && text.bytes().all(|b| b.is_ascii_digit())
}

impl Projects {
    /// The project named by an id (created on first use) or a number.
    pub fn resolve(&mut self, ident: &str, wall: &str) -> Result<&mut Project, ProjectError> {
        let id = if is_number(ident) {
            self.by_number
                .get(ident)
                .cloned()
                .ok_or(ProjectError::Unknown)?
        } else if valid_project_id(ident) {
            if !self.by_id.contains_key(ident) {
                self.create(ident, wall);
            }
            ident.to_string()
        } else {
            return Err(ProjectError::Invalid);
        };
        self.by_id.get_mut(&id).ok_or(ProjectError::Unknown)
    }

    /// The project named by an id or number, without creating it.
    pub fn get(&self, ident: &str) -> Option<&Project> {
        match self.by_number.get(ident) {
            Some(id) => self.by_id.get(id),
            None => self.by_id.get(ident),
        }
    }

    pub fn by_number(&self, number: &str) -> Option<&Project> {
        self.by_number.get(number).and_then(|id| self.by_id.get(id))
    }

    pub fn all(&self) -> impl Iterator<Item = &Project> {
        self.by_id.values()
    }

    /// Create a project with a given number (a seed file's); an existing project must have it.
    pub fn create_numbered(&mut self, id: &str, number: &str, wall: &str) -> Result<(), String> {
        if !valid_project_id(id) {
            return Err(format!(
                "'{id}' is not a valid project id (6 to 30 lowercase letters, digits, hyphens)"
            ));
        }
        if !is_number(number) || number.starts_with('0') {
            return Err(format!("project number '{number}' is not a number"));
        }
        if let Some(owner) = self.by_number.get(number).filter(|owner| *owner != id) {
            return Err(format!(
                "project number {number} already names project '{owner}'"
            ));
        }
        if let Some(existing) = self.by_id.get(id) {
            if existing.number != number {
                return Err(format!(
                    "project '{id}' exists already with number {}",
                    existing.number
                ));
            }
            return Ok(());
        }
        self.create(id, wall);
        if let Some(project) = self.by_id.get_mut(id) {
            self.by_number.remove(&project.number);
            project.number = number.to_string();
        }
        self.by_number.insert(number.to_string(), id.to_string());
        Ok(())
    }

    fn create(&mut self, id: &str, wall: &str) {
        let digest = Sha256::digest(format!("iaprun-emulator project {id}").as_bytes());
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&digest[..8]);
        let span = 900_000_000_000u64;
        let mut offset = u64::from_be_bytes(bytes) % span;
        let mut number = (100_000_000_000 + offset).to_string();
        while self.by_number.contains_key(&number) {
            offset = (offset + 1) % span;
            number = (100_000_000_000 + offset).to_string();
        }
        self.by_number.insert(number.clone(), id.to_string());
        self.by_id.insert(
            id.to_string(),
            Project {
                id: id.to_string(),
                number,
                parent: Some(Parent {
                    kind: "organization".to_string(),
                    id: DEFAULT_ORGANIZATION.to_string(),
                }),
                organization_domain: DEFAULT_ORGANIZATION_DOMAIN.to_string(),
                services: BTreeMap::new(),
                agents: BTreeSet::new(),
                agents_propagating: BTreeMap::new(),
                policy: Default::default(),
                restrict_public_members: false,
                create_time: wall.to_string(),
            },
        );
    }
}

/// The e-mail of a service's agent in a project, e.g. IAP's `service-N@gcp-sa-iap.iam.gserviceaccount.com`.
pub(crate) fn agent_email(service: &str, number: &str) -> String {
    match service {
        "run.googleapis.com" => {
            format!("service-{number}@serverless-robot-prod.iam.gserviceaccount.com")
        }
        "compute.googleapis.com" => {
            format!("service-{number}@compute-system.iam.gserviceaccount.com")
        }
        other => {
            let short = other.split('.').next().unwrap_or(other);
            format!("service-{number}@gcp-sa-{short}.iam.gserviceaccount.com")
        }
    }
}

/// The (project number, service) of a service-agent e-mail.
pub(crate) fn parse_agent_email(email: &str) -> Option<(String, String)> {
    let (local, domain) = email.split_once('@')?;
    let number = local.strip_prefix("service-")?;
    if !is_number(number) {
        return None;
    }
    let service = match domain {
        "serverless-robot-prod.iam.gserviceaccount.com" => "run.googleapis.com".to_string(),
        "compute-system.iam.gserviceaccount.com" => "compute.googleapis.com".to_string(),
        other => format!(
            "{}.googleapis.com",
            other
                .strip_prefix("gcp-sa-")?
                .strip_suffix(".iam.gserviceaccount.com")?
        ),
    };
    Some((number.to_string(), service))
}

/// Everything the APIs change; one lock makes every API call atomic.
#[derive(Default)]
pub(crate) struct World {
    pub projects: Projects,
    pub run: run::RunState,
    pub iap: iap::IapState,
    pub compute: compute::ComputeState,
    pub usage: service_usage::UsageState,
    pub tokens: token::TokenState,
    seq: u64,
}

impl World {
    /// A fresh number, unique within this world.
    pub fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }
}

/// One API request as the request log records it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// HTTP method.
    pub method: String,
    /// Path, without the query string.
    pub path: String,
    /// The raw query string, or "".
    pub query: String,
    /// The parsed JSON body, or null (secret fields are redacted).
    pub body: Value,
    /// The HTTP status answered; 0 when the connection was dropped without an answer.
    pub status: u16,
}

/// A request that does not conform to the discovery documents.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Mismatch {
    /// HTTP method.
    pub method: String,
    /// Path, without the query string.
    pub path: String,
    /// The raw query string, or "".
    pub query: String,
    /// The discovery method the request was matched to, if any.
    pub method_id: Option<String>,
    /// What does not conform, in Google's words.
    pub problems: Vec<String>,
}

/// The request log and conformance findings.
#[derive(Default)]
pub(crate) struct Journal {
    pub requests: Vec<RequestRecord>,
    pub mismatches: Vec<Mismatch>,
    /// Emulator responses that do not fit the documents' response schemas (an emulator bug).
    pub response_problems: Vec<Mismatch>,
    pub file: Option<File>,
}

impl Journal {
    pub fn record(&mut self, entry: RequestRecord) {
        if let Some(file) = self.file.as_mut() {
            let line = serde_json::to_string(&entry).unwrap_or_default();
            if let Err(error) = writeln!(file, "{line}").and_then(|_| file.flush()) {
                tracing::warn!(%error, "cannot append to the request log");
            }
        }
        self.requests.push(entry);
    }
}

/// Fields whose values never reach the request log.
const SECRET_FIELDS: &[&str] = &[
    "oauth2ClientSecret",
    "clientSecret",
    "private_key",
    "assertion",
];

/// A copy of a body with secret values replaced.
pub(crate) fn redact(value: &Value) -> Value {
    match value {
        Value::Object(object) => Value::Object(
            object
                .iter()
                .map(|(key, child)| {
                    let child = if SECRET_FIELDS.contains(&key.as_str()) && child.is_string() {
                        Value::String("REDACTED".to_string())
                    } else {
                        redact(child)
                    };
                    (key.clone(), child)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(redact).collect()),
        other => other.clone(),
    }
}

/// State shared by every connection of one emulator.
pub(crate) struct Shared {
    pub options: Options,
    pub world: Mutex<World>,
    pub faults: Mutex<super::faults::Faults>,
    pub journal: Mutex<Journal>,
}

impl Shared {
    pub fn new(options: Options) -> std::io::Result<Shared> {
        let file = match &options.request_log {
            Some(path) => Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            ),
            None => None,
        };
        Ok(Shared {
            options,
            world: Mutex::new(World::default()),
            faults: Mutex::new(Default::default()),
            journal: Mutex::new(Journal {
                file,
                ..Journal::default()
            }),
        })
    }

    /// Forget everything: resources, projects, faults, keys, and the in-memory journal.
    pub fn reset(&self) {
        *lock(&self.world) = World::default();
        *lock(&self.faults) = Default::default();
        let mut journal = lock(&self.journal);
        journal.requests.clear();
        journal.mismatches.clear();
        journal.response_problems.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_stable_and_alias_ids() {
        let mut a = Projects::default();
        let mut b = Projects::default();
        let n1 = a
            .resolve("my-project", "t")
            .map(|p| p.number.clone())
            .unwrap();
        let n2 = b
            .resolve("my-project", "t")
            .map(|p| p.number.clone())
            .unwrap();
        assert_eq!(n1, n2);
        assert_eq!(n1.len(), 12);
        assert_eq!(
            a.resolve(&n1, "t").map(|p| p.id.clone()).unwrap(),
            "my-project"
        );
        assert_ne!(
            a.resolve("other-project", "t")
                .map(|p| p.number.clone())
                .unwrap(),
            n1
        );
    }

    #[test]
    fn bad_references() {
        let mut p = Projects::default();
        assert_eq!(
            p.resolve("Bad_Project", "t").err(),
            Some(ProjectError::Invalid)
        );
        assert_eq!(
            p.resolve("123456789012", "t").err(),
            Some(ProjectError::Unknown)
        );
    }

    #[test]
    fn agent_emails_round_trip() {
        for service in [
            "iap.googleapis.com",
            "run.googleapis.com",
            "compute.googleapis.com",
        ] {
            let email = agent_email(service, "123456789012");
            assert_eq!(
                parse_agent_email(&email),
                Some(("123456789012".to_string(), service.to_string()))
            );
        }
        assert_eq!(parse_agent_email("someone@example.com"), None);
    }

    #[test]
    fn redaction() {
        let v = json!({"iap": {"enabled": true, "oauth2ClientSecret": "s3cret"}});
        assert_eq!(
            redact(&v),
            json!({"iap": {"enabled": true, "oauth2ClientSecret": "REDACTED"}})
        );
    }
}
