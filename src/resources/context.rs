//! The run-time context resources run with: API clients, the provider's defaults, reads coalesced
//! within one provider process, and what other resources plan in this run.

use std::sync::Arc;

use super::cache::Coalesced;
use crate::google;

/// What every resource receives once the provider block is configured.
pub struct Context {
    /// The provider's default project, if any.
    default_project: Option<String>,
    /// The provider's default region, if any.
    default_region: Option<String>,
    /// The provider block's project / region is unknown at plan (it comes from a resource not
    /// applied yet): resources that default to it plan an unknown value, not the environment's.
    unknown_defaults: (bool, bool),
    pub clients: google::Clients,
    /// Projects by id or number, read once per process.
    projects: Coalesced<Arc<google::Project>>,
    /// IAP policies by canonical resource name, for refresh; writes always read afresh.
    pub policies: Coalesced<google::Policy>,
    /// Whether the target of an IAP resource exists, by canonical resource name (plan-time checks).
    pub targets: Coalesced<bool>,
    /// Whether an IAP resource uses a custom OAuth client, by canonical resource name; a backend
    /// planned in this process records its configured client here (plan-time checks).
    pub custom_oauth_clients: Coalesced<bool>,
    /// The domain of the organization above a project (`None`: no organization), by project.
    pub organization_domains: Coalesced<Option<String>>,
    /// IAP this plan switches on, so `double_iap` sees both layers before either is applied.
    planned_iap: std::sync::Mutex<PlannedIap>,
    /// Access resources this plan manages, so `binding_conflict` sees two of them before either is
    /// applied; grouped by the binding they touch, so recording one is not a scan of all.
    planned_access: std::sync::Mutex<PlannedAccessByBinding>,
}

/// Planned access resources by (resource, role, condition), each group in the order planned.
type PlannedAccessByBinding = std::collections::HashMap<
    (String, String, Option<(String, String, String)>),
    Vec<crate::validation::PlannedAccess>,
>;

/// IAP planned in this process: Cloud Run services with direct IAP, and the services behind each
/// backend with IAP. Keys are `{project_number}/{location}/{service}`.
#[derive(Debug, Default)]
struct PlannedIap {
    direct: std::collections::BTreeSet<String>,
    behind: std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("default_project", &self.default_project)
            .field("default_region", &self.default_region)
            .finish_non_exhaustive()
    }
}

impl Context {
    /// A context over ready clients.
    pub fn new(
        default_project: Option<String>,
        default_region: Option<String>,
        clients: google::Clients,
    ) -> Self {
        Self {
            default_project,
            default_region,
            unknown_defaults: (false, false),
            clients,
            projects: Coalesced::default(),
            policies: Coalesced::default(),
            targets: Coalesced::default(),
            custom_oauth_clients: Coalesced::default(),
            organization_domains: Coalesced::default(),
            planned_iap: Default::default(),
            planned_access: Default::default(),
        }
    }

    /// Marks the provider's project and/or region as unknown in this plan.
    pub fn with_unknown_defaults(mut self, project: bool, region: bool) -> Self {
        self.unknown_defaults = (project, region);
        self
    }

    /// Whether the provider's project is unknown in this plan.
    pub fn project_unknown(&self) -> bool {
        self.unknown_defaults.0
    }

    /// Whether the provider's region is unknown in this plan.
    pub fn region_unknown(&self) -> bool {
        self.unknown_defaults.1
    }

    /// The project to use: the resource's own, else the provider's.
    pub fn project<'a>(&'a self, configured: Option<&'a str>) -> Option<&'a str> {
        configured.or(self.default_project.as_deref())
    }

    /// The region to use: the resource's own, else the provider's.
    pub fn region<'a>(&'a self, configured: Option<&'a str>) -> Option<&'a str> {
        configured.or(self.default_region.as_deref())
    }

    /// The project (number, parent) behind an id or number, read once per process.
    pub async fn project_info(&self, project: &str) -> Result<Arc<google::Project>, google::Error> {
        self.projects
            .get_or_fetch(project, || async {
                self.clients
                    .resource_manager
                    .project(project)
                    .await
                    .map(Arc::new)
            })
            .await
    }
}

impl Context {
    fn planned(&self) -> std::sync::MutexGuard<'_, PlannedIap> {
        self.planned_iap
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records that this plan enables direct IAP on `service` and returns the backend services
    /// planned with IAP in front of it. Recording first means that of two resources planned at the
    /// same time, at least the later one sees the other.
    pub fn plan_direct_iap(&self, service: &str) -> Vec<String> {
        let mut planned = self.planned();
        planned.direct.insert(service.to_string());
        planned
            .behind
            .iter()
            .filter(|(_, services)| services.contains(service))
            .map(|(backend, _)| backend.clone())
            .collect()
    }

    /// Records that this plan enables IAP on `backend` in front of `services` and returns those of
    /// them planned with direct IAP.
    pub fn plan_backend_iap(&self, backend: &str, services: &[String]) -> Vec<String> {
        let mut planned = self.planned();
        planned
            .behind
            .insert(backend.to_string(), services.iter().cloned().collect());
        services
            .iter()
            .filter(|s| planned.direct.contains(*s))
            .cloned()
            .collect()
    }

    /// Records an access resource planned in this process and returns those recorded before it on
    /// the same (resource, role, condition). As with IAP, of two planned at once the later sees the
    /// earlier. An identical record is the same resource planned again (Terraform plans the create
    /// half of a replacement a second time), never a conflict: two resources alike to the last
    /// member are not told apart.
    pub fn plan_access(
        &self,
        access: crate::validation::PlannedAccess,
    ) -> Vec<crate::validation::PlannedAccess> {
        let mut planned = self
            .planned_access
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let key = (
            access.resource.clone(),
            access.role.clone(),
            access.condition.clone(),
        );
        let same_binding = planned.entry(key).or_default();
        let others = same_binding
            .iter()
            .filter(|o| **o != access)
            .cloned()
            .collect();
        if !same_binding.contains(&access) {
            same_binding.push(access);
        }
        others
    }

    /// The primary domain of the organization above `project`, read once per process.
    pub async fn organization_domain(
        &self,
        project: &str,
    ) -> Result<Option<String>, google::Error> {
        let info = self.project_info(project).await?;
        self.organization_domains
            .get_or_fetch(&info.project_number, || async {
                let rm = &self.clients.resource_manager;
                match rm.organization_of(&info).await? {
                    Some(org) => rm.organization_domain(&org).await,
                    None => Ok(None),
                }
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validation::{AccessKind, PlannedAccess};

    fn access(resource: &str, title: &str, config: &str) -> PlannedAccess {
        PlannedAccess {
            kind: AccessKind::Binding,
            resource: resource.to_string(),
            role: "roles/iap.httpsResourceAccessor".to_string(),
            condition: Some((title.to_string(), String::new(), "true".to_string())),
            config: config.to_string(),
        }
    }

    #[test]
    fn planned_access_sees_the_earlier_resources_on_its_own_binding_only() {
        let clients =
            google::Clients::new(google::Config::emulator("127.0.0.1:9")).expect("clients");
        let ctx = Context::new(None, None, clients);
        let first = access("r1", "t1", "first");
        assert!(ctx.plan_access(first.clone()).is_empty());
        // Another condition or another resource is another binding.
        assert!(ctx.plan_access(access("r1", "t2", "title")).is_empty());
        assert!(ctx.plan_access(access("r2", "t1", "resource")).is_empty());
        let second = access("r1", "t1", "second");
        assert_eq!(ctx.plan_access(second.clone()), vec![first.clone()]);
        // The same resource planned again sees the other, never itself, and is recorded once.
        assert_eq!(ctx.plan_access(first.clone()), vec![second.clone()]);
        assert_eq!(
            ctx.plan_access(access("r1", "t1", "third")),
            [first, second],
            "in the order planned"
        );
    }
}
