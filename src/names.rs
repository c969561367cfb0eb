//! Names of the Google objects the resources manage, and the parsing of import ids and IAP resource
//! names. Every parser returns a message fit for a diagnostic detail rather than panicking.

use std::fmt;
use std::sync::OnceLock;

use regex::Regex;

fn re(cell: &'static OnceLock<Regex>, pattern: &str) -> &'static Regex {
    cell.get_or_init(|| Regex::new(pattern).expect("static pattern"))
}

/// A project id (`my-project`, optionally domain-scoped `example.com:my-project`) or project number.
/// Project ids: 6 to 30 lowercase letters, digits and hyphens, starting with a letter and not ending
/// with a hyphen (Resource Manager's documented rule).
pub fn is_project(text: &str) -> bool {
    static PROJECT: OnceLock<Regex> = OnceLock::new();
    re(
        &PROJECT,
        r"^(?:[a-z][a-z0-9.-]{0,60}[a-z0-9]:)?[a-z][a-z0-9-]{4,28}[a-z0-9]$|^[1-9][0-9]{0,19}$",
    )
    .is_match(text)
}

/// A project number (digits only).
pub fn is_project_number(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 20
        && text.bytes().all(|b| b.is_ascii_digit())
        && !text.starts_with('0')
}

/// A Google Cloud region such as `us-central1` or `northamerica-northeast1` (not a zone).
pub fn is_region(text: &str) -> bool {
    static REGION: OnceLock<Regex> = OnceLock::new();
    re(&REGION, r"^[a-z]+(?:-[a-z]+)+[0-9]{1,2}$").is_match(text)
}

/// A Cloud Run service name: lowercase letters, digits and hyphens, starting with a letter, at most
/// 49 characters, not ending with a hyphen.
pub fn is_run_service(text: &str) -> bool {
    static SERVICE: OnceLock<Regex> = OnceLock::new();
    re(&SERVICE, r"^[a-z](?:[a-z0-9-]{0,47}[a-z0-9])?$").is_match(text)
}

/// A Compute Engine resource name (RFC 1035 label, at most 63 characters), or a numeric id.
pub fn is_compute_name(text: &str) -> bool {
    static NAME: OnceLock<Regex> = OnceLock::new();
    re(&NAME, r"^[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?$").is_match(text)
}

/// Which IAP-protected object a resource name designates.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum IapTarget {
    /// A Cloud Run service with IAP enabled directly: `iap_web/cloud_run-{region}/services/{name}`.
    CloudRun { region: String, service: String },
    /// A global backend service: `iap_web/compute/services/{name}`.
    BackendService { name: String },
    /// A regional backend service: `iap_web/compute-{region}/services/{name}`.
    RegionBackendService { region: String, name: String },
}

/// An IAP resource name: the target of IAP IAM policies.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IapResource {
    /// Project id or number, as written.
    pub project: String,
    pub target: IapTarget,
}

impl IapResource {
    /// Parses `projects/{p}/iap_web/{cloud_run-R|compute|compute-R}/services/{name}`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let hint = "Expected projects/PROJECT/iap_web/cloud_run-REGION/services/SERVICE, \
                    projects/PROJECT/iap_web/compute/services/BACKEND_SERVICE or \
                    projects/PROJECT/iap_web/compute-REGION/services/BACKEND_SERVICE";
        let parts: Vec<&str> = text.split('/').collect();
        let ["projects", project, "iap_web", kind, "services", name] = parts.as_slice() else {
            return Err(format!("{text:?} is not an IAP resource name. {hint}."));
        };
        if !is_project(project) {
            return Err(format!(
                "{project:?} is not a valid project id or number. {hint}."
            ));
        }
        let target = if let Some(region) = kind.strip_prefix("cloud_run-") {
            if !is_region(region) {
                return Err(format!(
                    "{region:?} in {kind:?} is not a region such as us-central1."
                ));
            }
            if !is_run_service(name) {
                return Err(format!("{name:?} is not a valid Cloud Run service name."));
            }
            IapTarget::CloudRun {
                region: region.to_string(),
                service: name.to_string(),
            }
        } else if *kind == "compute" || kind.starts_with("compute-") {
            if !is_compute_name(name) && !is_project_number(name) {
                return Err(format!("{name:?} is not a valid backend service name."));
            }
            match kind.strip_prefix("compute-") {
                None => IapTarget::BackendService {
                    name: name.to_string(),
                },
                Some(region) if is_region(region) => IapTarget::RegionBackendService {
                    region: region.to_string(),
                    name: name.to_string(),
                },
                Some(region) => {
                    return Err(format!(
                        "{region:?} in {kind:?} is not a region such as us-central1."
                    ))
                }
            }
        } else if *kind == "cloud-run" || kind.starts_with("cloud-run-") {
            return Err(format!(
                "{kind:?} uses a hyphen; IAP names Cloud Run resources cloud_run-REGION with an underscore."
            ));
        } else {
            return Err(format!("{kind:?} is not an IAP web resource type. {hint}."));
        };
        Ok(Self {
            project: project.to_string(),
            target,
        })
    }

    /// The same resource under another project reference (id or number).
    pub fn with_project(&self, project: &str) -> Self {
        Self {
            project: project.to_string(),
            target: self.target.clone(),
        }
    }
}

impl fmt::Display for IapResource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.project;
        match &self.target {
            IapTarget::CloudRun { region, service } => {
                write!(
                    f,
                    "projects/{p}/iap_web/cloud_run-{region}/services/{service}"
                )
            }
            IapTarget::BackendService { name } => {
                write!(f, "projects/{p}/iap_web/compute/services/{name}")
            }
            IapTarget::RegionBackendService { region, name } => {
                write!(f, "projects/{p}/iap_web/compute-{region}/services/{name}")
            }
        }
    }
}

/// Parts of an import id; absent parts come from the provider's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceId {
    pub project: Option<String>,
    pub location: Option<String>,
    pub service: String,
}

/// Parses a Cloud Run service import id: `projects/{p}/locations/{l}/services/{s}`, `{p}/{l}/{s}`,
/// `{l}/{s}` or `{s}`.
pub fn parse_service_id(id: &str) -> Result<ServiceId, String> {
    let parts: Vec<&str> = id.split('/').collect();
    let (project, location, service) = match parts.as_slice() {
        ["projects", p, "locations", l, "services", s] => (Some(*p), Some(*l), *s),
        [p, l, s] => (Some(*p), Some(*l), *s),
        [l, s] => (None, Some(*l), *s),
        [s] => (None, None, *s),
        _ => {
            return Err(format!(
                "{id:?} is not a Cloud Run service id. Use projects/PROJECT/locations/REGION/services/SERVICE, \
                 PROJECT/REGION/SERVICE, REGION/SERVICE or SERVICE."
            ))
        }
    };
    check_parts(project, location)?;
    if !is_run_service(service) {
        return Err(format!(
            "{service:?} is not a valid Cloud Run service name."
        ));
    }
    Ok(ServiceId {
        project: project.map(str::to_string),
        location: location.map(str::to_string),
        service: service.to_string(),
    })
}

/// Parts of a backend service import id; `region` is set for regional backend services.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendServiceId {
    pub project: Option<String>,
    pub region: Option<String>,
    pub name: String,
}

/// Parses a backend service import id: `projects/{p}/global/backendServices/{n}`,
/// `projects/{p}/regions/{r}/backendServices/{n}`, `{p}/{n}` or `{n}`.
pub fn parse_backend_service_id(id: &str) -> Result<BackendServiceId, String> {
    let parts: Vec<&str> = id.split('/').collect();
    let (project, region, name) = match parts.as_slice() {
        ["projects", p, "global", "backendServices", n] => (Some(*p), None, *n),
        ["projects", p, "regions", r, "backendServices", n] => (Some(*p), Some(*r), *n),
        [p, n] => (Some(*p), None, *n),
        [n] => (None, None, *n),
        _ => {
            return Err(format!(
                "{id:?} is not a backend service id. Use projects/PROJECT/global/backendServices/NAME, \
                 projects/PROJECT/regions/REGION/backendServices/NAME, PROJECT/NAME or NAME."
            ))
        }
    };
    check_parts(project, region)?;
    if !is_compute_name(name) {
        return Err(format!("{name:?} is not a valid backend service name."));
    }
    Ok(BackendServiceId {
        project: project.map(str::to_string),
        region: region.map(str::to_string),
        name: name.to_string(),
    })
}

/// Parses an access binding import id: `RESOURCE ROLE` or `RESOURCE ROLE CONDITION_TITLE` (the
/// title may contain spaces).
pub fn parse_access_binding_id(id: &str) -> Result<(IapResource, String, Option<String>), String> {
    let mut parts = id.splitn(3, ' ');
    let (Some(resource), Some(role)) = (parts.next(), parts.next()) else {
        return Err(format!(
            "{id:?} is not an access binding id. Use \"RESOURCE ROLE\" or \"RESOURCE ROLE CONDITION_TITLE\", for example \"projects/my-project/iap_web/cloud_run-us-central1/services/hello roles/iap.httpsResourceAccessor\"."
        ));
    };
    let resource = IapResource::parse(resource)?;
    if !role.starts_with("roles/") && !role.contains("/roles/") {
        return Err(format!(
            "{role:?} is not a role name such as roles/iap.httpsResourceAccessor."
        ));
    }
    let title = parts
        .next()
        .map(str::to_string)
        .filter(|t| !t.trim().is_empty());
    Ok((resource, role.to_string(), title))
}

fn check_parts(project: Option<&str>, region: Option<&str>) -> Result<(), String> {
    if let Some(p) = project.filter(|p| !is_project(p)) {
        return Err(format!("{p:?} is not a valid project id or number."));
    }
    if let Some(r) = region.filter(|r| !is_region(r)) {
        return Err(format!("{r:?} is not a region such as us-central1."));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn import_ids_with_and_without_condition() {
        let (r, role, title) = parse_access_binding_id(
            "projects/p-123456/iap_web/compute/services/web roles/iap.httpsResourceAccessor",
        )
        .expect("parses");
        assert_eq!(
            r.to_string(),
            "projects/p-123456/iap_web/compute/services/web"
        );
        assert_eq!(
            (role.as_str(), title),
            ("roles/iap.httpsResourceAccessor", None)
        );
        let (_, _, title) = parse_access_binding_id(
            "projects/p-123456/iap_web/compute/services/web roles/iap.httpsResourceAccessor office hours",
        )
        .expect("parses");
        assert_eq!(title.as_deref(), Some("office hours"));
        for bad in [
            "",
            "projects/p-123456/iap_web/compute/services/web",
            "nonsense roles/x",
            "projects/p-123456/iap_web/compute/services/web viewer",
        ] {
            assert!(parse_access_binding_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn iap_resource_names_round_trip() {
        for text in [
            "projects/my-project/iap_web/cloud_run-us-central1/services/hello",
            "projects/123456789012/iap_web/compute/services/web-backend",
            "projects/my-project/iap_web/compute-europe-west1/services/web-backend",
        ] {
            let parsed = IapResource::parse(text).expect(text);
            assert_eq!(parsed.to_string(), text);
        }
        let r = IapResource::parse("projects/p-123456/iap_web/cloud_run-us-east1/services/s")
            .expect("parses");
        assert_eq!(
            r.target,
            IapTarget::CloudRun {
                region: "us-east1".into(),
                service: "s".into()
            }
        );
        assert_eq!(
            r.with_project("42").to_string(),
            "projects/42/iap_web/cloud_run-us-east1/services/s"
        );
    }

    #[test]
    fn bad_iap_resource_names_explain_themselves() {
        let cases = [
            (
                "projects/my-project/iap_web/cloud-run-us-central1/services/x",
                "underscore",
            ),
            (
                "projects/my-project/iap_web/cloud_run-us-central1-a/services/x",
                "region",
            ),
            ("projects/My_Project/iap_web/compute/services/x", "project"),
            (
                "projects/my-project/iap_web/appengine/services/x",
                "not an IAP web resource type",
            ),
            ("my-project/hello", "not an IAP resource name"),
            ("", "not an IAP resource name"),
            (
                "projects/my-project/iap_web/compute/services/Bad_Name",
                "backend service name",
            ),
        ];
        for (text, expected) in cases {
            let err = IapResource::parse(text).expect_err(text);
            assert!(err.contains(expected), "{text}: {err}");
        }
    }

    #[test]
    fn service_ids_in_every_form() {
        let full = parse_service_id("projects/my-project/locations/us-central1/services/hello")
            .expect("full");
        assert_eq!(full.project.as_deref(), Some("my-project"));
        assert_eq!(full.location.as_deref(), Some("us-central1"));
        assert_eq!(
            parse_service_id("my-project/us-central1/hello"),
            Ok(full.clone())
        );
        let short = parse_service_id("us-central1/hello").expect("short");
        assert_eq!(
            (short.project, short.location.as_deref()),
            (None, Some("us-central1"))
        );
        assert_eq!(
            parse_service_id("hello").map(|s| s.service),
            Ok("hello".to_string())
        );
        for bad in [
            "",
            "a/b/c/d",
            "us-central1/Hello",
            "my-project/uscentral/hello",
            "projects/p/locations/l",
        ] {
            assert!(parse_service_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn backend_ids_in_every_form() {
        let g = parse_backend_service_id("projects/my-project/global/backendServices/web")
            .expect("global");
        assert_eq!(
            (g.project.as_deref(), g.region, g.name.as_str()),
            (Some("my-project"), None, "web")
        );
        let r = parse_backend_service_id(
            "projects/my-project/regions/europe-west1/backendServices/web",
        )
        .expect("regional");
        assert_eq!(r.region.as_deref(), Some("europe-west1"));
        assert_eq!(
            parse_backend_service_id("my-project/web").map(|b| b.project),
            Ok(Some("my-project".to_string()))
        );
        assert_eq!(
            parse_backend_service_id("web").map(|b| b.name),
            Ok("web".to_string())
        );
        for bad in ["", "a/b/c", "projects/p/zones/z/backendServices/x", "-web"] {
            assert!(parse_backend_service_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn value_rules() {
        assert!(
            is_project("my-project")
                && is_project("example.com:my-project")
                && is_project("1234567")
        );
        assert!(!is_project("short") && !is_project("Upper-case1") && !is_project("ends-with-"));
        assert!(is_region("us-central1") && is_region("northamerica-northeast1"));
        assert!(!is_region("us-central1-a") && !is_region("global") && !is_region("US-CENTRAL1"));
        assert!(
            is_run_service("hello") && !is_run_service("Hello") && !is_run_service(&"a".repeat(50))
        );
    }
}
