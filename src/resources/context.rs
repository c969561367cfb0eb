//! The run-time context resources run with: API clients, the provider's defaults, reads coalesced
//! within one provider process, and what other resources plan in this run.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::cache::{Coalesced, Existence};
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
    projects: Coalesced<Arc<google::Project>, google::Error>,
    /// IAP policies by canonical resource name, for refresh; writes never start from these (the
    /// IAM writer keeps its own copy, guarded by its etag: see `google::iam`).
    pub policies: Coalesced<google::Policy, google::Error>,
    /// Whether the target of an IAP resource exists, by canonical resource name (plan-time checks).
    pub targets: Coalesced<bool, google::Error>,
    /// The same, asked at apply: fresh reads shared by the callers waiting, and a yes kept (see
    /// [`Existence`] for the rule).
    pub live_targets: Existence<google::Error>,
    /// Whether an IAP resource uses a custom OAuth client, by canonical resource name; a backend
    /// planned in this process records its configured client here (plan-time checks).
    pub custom_oauth_clients: Coalesced<bool, google::Error>,
    /// The domain of the organization above a project (`None`: no organization), by project.
    pub organization_domains: Coalesced<Option<String>, google::Error>,
    /// IAP this run plans and removes, so `double_iap` sees both layers before either is applied.
    planned_iap: std::sync::Mutex<PlannedIap>,
    /// Counts the IAP removals finished in this process, for applies that wait on one.
    removals: watch::Sender<u64>,
    /// Access resources this plan manages, so `binding_conflict` sees two of them before either is
    /// applied; indexed by the binding they touch, so recording one is not a scan of all.
    planned_access: std::sync::Mutex<PlannedAccessIndex>,
}

/// Planned access resources in one list, in the order planned, chained by a hash of their
/// (resource, role, condition) and their kind: no second copy of those strings, and no list per
/// binding (most bindings have one resource, and a list of one reserves room for four). Two
/// bindings whose hashes collide share a chain, so readers compare the bindings themselves. A
/// member reads only the bindings' chain, so planning many members on one role stays cheap.
#[derive(Default)]
struct PlannedAccessIndex<S = std::collections::hash_map::RandomState> {
    hasher: S,
    /// Each record with the record before it on its chain.
    records: Vec<(crate::validation::PlannedAccess, Option<usize>)>,
    /// The last record of each chain.
    last: std::collections::HashMap<(u64, crate::validation::AccessKind), usize>,
    /// Hashes of the whole member records, so a member planned again is found without a scan.
    member_hashes: std::collections::HashSet<u64>,
}

impl<S: std::hash::BuildHasher> PlannedAccessIndex<S> {
    /// Records `access` (once: an identical record is the same resource planned again) and
    /// returns those recorded before it on its binding that it is at odds with, bindings first,
    /// each kind in the order planned.
    fn record(
        &mut self,
        access: crate::validation::PlannedAccess,
    ) -> Vec<crate::validation::PlannedAccess> {
        use crate::validation::AccessKind;
        let hash = self
            .hasher
            .hash_one((&access.resource, &access.role, &access.condition));
        let mut others = Vec::new();
        for kind in [AccessKind::Binding, AccessKind::Member] {
            if access.kind.at_odds(kind) {
                let start = others.len();
                others.extend(
                    self.chain(hash, kind)
                        .filter(|o| o.same_binding(&access) && **o != access)
                        .cloned(),
                );
                // Chains run newest first.
                others[start..].reverse();
            }
        }
        let known = match access.kind {
            AccessKind::Binding => self.chain(hash, access.kind).any(|o| *o == access),
            AccessKind::Member => {
                !self.member_hashes.insert(self.hasher.hash_one(&access))
                    && self.chain(hash, access.kind).any(|o| *o == access)
            }
        };
        if !known {
            let before = self.last.insert((hash, access.kind), self.records.len());
            self.records.push((access, before));
        }
        others
    }

    /// The records of one chain, newest first.
    fn chain(
        &self,
        hash: u64,
        kind: crate::validation::AccessKind,
    ) -> impl Iterator<Item = &crate::validation::PlannedAccess> {
        let mut next = self.last.get(&(hash, kind)).copied();
        std::iter::from_fn(move || {
            let (access, before) = &self.records[next?];
            next = *before;
            Some(access)
        })
    }
}

/// IAP planned in this process: Cloud Run services with direct IAP, the services behind each
/// backend with IAP (each with whether this run switches it on), and the layers this run removes.
/// Service keys are `{project_number}/{location}/{service}`, backend keys
/// `{project_number}/{region or global}/{name}`.
#[derive(Debug, Default)]
struct PlannedIap {
    direct: BTreeMap<String, bool>,
    behind: BTreeMap<String, (BTreeSet<String>, bool)>,
    direct_removed: BTreeSet<String>,
    backends_removed: BTreeSet<String>,
    /// Removals running in this process, by the services they expose.
    removing: BTreeMap<String, usize>,
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
            live_targets: Existence::default(),
            custom_oauth_clients: Coalesced::default(),
            organization_domains: Coalesced::default(),
            planned_iap: Default::default(),
            removals: watch::Sender::new(0),
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

    /// Records that this run keeps direct IAP on `service` (`switching_on`: turns it on) and returns
    /// the backend services planned with IAP in front of it, each with whether this run switches
    /// it on. Recording first means that of two resources planned at the same time, at least the
    /// later one sees the other.
    pub fn plan_direct_iap(&self, service: &str, switching_on: bool) -> BTreeMap<String, bool> {
        let mut planned = self.planned();
        planned.direct.insert(service.to_string(), switching_on);
        planned
            .behind
            .iter()
            .filter(|(_, (services, _))| services.contains(service))
            .map(|(backend, (_, on))| (backend.clone(), *on))
            .collect()
    }

    /// Records that this run keeps IAP on `backend` (`switching_on`: turns it on) in front of
    /// `services`, and returns those of them planned with direct IAP, each with whether this run
    /// switches it on.
    pub fn plan_backend_iap(
        &self,
        backend: &str,
        services: &[String],
        switching_on: bool,
    ) -> BTreeMap<String, bool> {
        let mut planned = self.planned();
        let behind = services.iter().cloned().collect();
        planned
            .behind
            .insert(backend.to_string(), (behind, switching_on));
        services
            .iter()
            .filter_map(|s| planned.direct.get(s).map(|on| (s.clone(), *on)))
            .collect()
    }

    /// Records that this run removes direct IAP on `service` (its `iaprun_service_iap` is destroyed).
    pub fn plan_direct_removal(&self, service: &str) {
        self.planned().direct_removed.insert(service.to_string());
    }

    /// Records that this run removes IAP on `backend` (its `iaprun_backend_iap` is destroyed).
    pub fn plan_backend_removal(&self, backend: &str) {
        self.planned().backends_removed.insert(backend.to_string());
    }

    /// Whether this run removes direct IAP on `service`, as planned so far.
    pub fn direct_removed(&self, service: &str) -> bool {
        self.planned().direct_removed.contains(service)
    }

    /// Whether this run removes IAP on `backend`, as planned so far.
    pub fn backend_removed(&self, backend: &str) -> bool {
        self.planned().backends_removed.contains(backend)
    }

    /// Marks a removal of IAP in front of `services` as running in this process until the guard
    /// drops; an apply waiting on those services waits for it to finish.
    pub fn begin_removal(&self, services: Vec<String>) -> Removal<'_> {
        let mut planned = self.planned();
        for s in &services {
            *planned.removing.entry(s.clone()).or_default() += 1;
        }
        Removal {
            ctx: self,
            services,
        }
    }

    /// Whether a removal of IAP in front of any of `services` runs in this process.
    pub fn removing(&self, services: &[String]) -> bool {
        let planned = self.planned();
        services.iter().any(|s| planned.removing.contains_key(s))
    }

    /// A receiver that sees every IAP removal finished in this process from now on.
    pub fn removals(&self) -> watch::Receiver<u64> {
        self.removals.subscribe()
    }

    /// Waits until a removal finishes after `seen` was taken, `pause` passes or `deadline` comes,
    /// whichever is first.
    pub async fn await_removal(
        &self,
        seen: &mut watch::Receiver<u64>,
        pause: Duration,
        deadline: Instant,
    ) {
        let until = deadline.min(Instant::now() + pause);
        let _ = tokio::time::timeout_at(until.into(), seen.changed()).await;
    }

    /// Records an access resource planned in this process and returns those recorded before it on
    /// the same (resource, role, condition) that it is at odds with (a member meets only the
    /// bindings). As with IAP, of two planned at once the later sees the earlier. An identical
    /// record is the same resource planned again (Terraform plans the create half of a replacement
    /// a second time), never a conflict: two resources alike to the last member are not told apart.
    pub fn plan_access(
        &self,
        access: crate::validation::PlannedAccess,
    ) -> Vec<crate::validation::PlannedAccess> {
        self.planned_access
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .record(access)
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

/// A removal of IAP running in this process (see [`Context::begin_removal`]).
pub struct Removal<'a> {
    ctx: &'a Context,
    services: Vec<String>,
}

impl Drop for Removal<'_> {
    fn drop(&mut self) {
        let mut planned = self.ctx.planned();
        for s in &self.services {
            if let Some(n) = planned.removing.get_mut(s) {
                *n -= 1;
                if *n == 0 {
                    planned.removing.remove(s);
                }
            }
        }
        drop(planned);
        self.ctx.removals.send_modify(|n| *n += 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context() -> Context {
        let config = google::Config::default();
        let clients = google::Clients::new(config).expect("clients");
        Context::new(None, None, clients)
    }

    #[test]
    fn each_side_sees_the_other_with_whether_it_switches_on() {
        let ctx = context();
        assert!(ctx.plan_direct_iap("42/r/hello", false).is_empty());
        let seen = ctx.plan_backend_iap("42/global/web", &["42/r/hello".into()], true);
        assert_eq!(seen, BTreeMap::from([("42/r/hello".to_string(), false)]));
        let seen = ctx.plan_direct_iap("42/r/hello", false);
        assert_eq!(seen, BTreeMap::from([("42/global/web".to_string(), true)]));
        assert!(ctx
            .plan_backend_iap("42/global/other", &["42/r/else".into()], false)
            .is_empty());
    }

    #[test]
    fn removals_are_recorded_by_layer() {
        let ctx = context();
        assert!(!ctx.direct_removed("42/r/hello"));
        ctx.plan_direct_removal("42/r/hello");
        assert!(ctx.direct_removed("42/r/hello"));
        assert!(!ctx.backend_removed("42/global/web"));
        ctx.plan_backend_removal("42/global/web");
        assert!(ctx.backend_removed("42/global/web"));
        assert!(!ctx.direct_removed("42/r/else"));
    }

    #[tokio::test]
    async fn a_running_removal_is_seen_until_it_ends_and_wakes_a_waiter() {
        let ctx = Arc::new(context());
        let services = vec!["42/r/hello".to_string()];
        let mut seen = ctx.removals();
        let first = ctx.begin_removal(services.clone());
        let second = ctx.begin_removal(services.clone());
        assert!(ctx.removing(&services));
        assert!(!ctx.removing(&["42/r/else".to_string()]));
        drop(first);
        assert!(ctx.removing(&services), "the other one still runs");
        drop(second);
        assert!(!ctx.removing(&services));
        // Each finished removal is news to a receiver taken before it.
        assert!(seen.has_changed().expect("sender alive"));
        assert_eq!(*seen.borrow_and_update(), 2);
        let far = Instant::now() + Duration::from_secs(600);
        let waiter = {
            let ctx = ctx.clone();
            tokio::spawn(async move {
                ctx.await_removal(&mut seen, Duration::from_secs(600), far)
                    .await;
                *seen.borrow()
            })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "nothing finished yet: it waits");
        drop(ctx.begin_removal(services));
        assert_eq!(waiter.await.expect("waiter"), 3);
    }

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

    fn member(resource: &str, config: &str) -> PlannedAccess {
        PlannedAccess {
            kind: AccessKind::Member,
            condition: None,
            ..access(resource, "", config)
        }
    }

    #[test]
    fn a_member_meets_only_the_bindings_and_a_binding_meets_everything_once() {
        let mut index = PlannedAccessIndex::<std::collections::hash_map::RandomState>::default();
        let binding = PlannedAccess {
            condition: None,
            ..access("r1", "", "binding")
        };
        // Members among themselves compose: nothing comes back however many share the role.
        for n in 0..50 {
            assert!(index.record(member("r1", &format!("m{n}"))).is_empty());
        }
        let seen = index.record(binding.clone());
        assert_eq!(seen.len(), 50, "the binding meets every member");
        assert_eq!(seen[0], member("r1", "m0"), "in the order planned");
        // A member planned again is recorded once, and now meets the binding only.
        assert_eq!(
            index.record(member("r1", "m7")),
            std::slice::from_ref(&binding)
        );
        let second = PlannedAccess {
            config: "second".into(),
            ..binding.clone()
        };
        let seen = index.record(second);
        assert_eq!(
            seen.len(),
            51,
            "50 members and the first binding, the replanned one once"
        );
        assert_eq!(seen[0], binding);
    }

    /// Hashes everything to one value, so every binding shares one group.
    #[derive(Default)]
    struct Colliding;

    impl std::hash::BuildHasher for Colliding {
        type Hasher = Constant;
        fn build_hasher(&self) -> Constant {
            Constant
        }
    }

    struct Constant;

    impl std::hash::Hasher for Constant {
        fn finish(&self) -> u64 {
            7
        }
        fn write(&mut self, _: &[u8]) {}
    }

    #[test]
    fn bindings_whose_hashes_collide_stay_apart() {
        let mut index = PlannedAccessIndex::<Colliding>::default();
        let first = access("r1", "t1", "first");
        assert!(index.record(first.clone()).is_empty());
        assert!(index.record(access("r2", "t1", "resource")).is_empty());
        assert!(index.record(member("r1", "m")).is_empty());
        assert!(index.record(member("r1", "m")).is_empty());
        assert_eq!(index.last.len(), 2, "one chain for each kind");
        assert_eq!(
            index.record(access("r1", "t1", "second")),
            std::slice::from_ref(&first)
        );
        let unconditional = PlannedAccess {
            condition: None,
            ..access("r1", "", "binding")
        };
        assert_eq!(
            index.record(unconditional),
            [member("r1", "m")],
            "the member was recorded once, though every record hashes alike"
        );
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
        assert_eq!(
            ctx.plan_access(second.clone()),
            std::slice::from_ref(&first)
        );
        // The same resource planned again sees the other, never itself, and is recorded once.
        assert_eq!(
            ctx.plan_access(first.clone()),
            std::slice::from_ref(&second)
        );
        assert_eq!(
            ctx.plan_access(access("r1", "t1", "third")),
            [first, second],
            "in the order planned"
        );
    }
}
