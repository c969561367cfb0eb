//! Read coalescing: concurrent reads of one object within a provider process share one API call,
//! and later reads in the same process reuse its answer. Terraform starts a fresh provider process per
//! phase, so a cached answer lives at most for one plan or apply; writes never start from it.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::OnceCell;

/// A map of values fetched at most once per key (until invalidated or replaced). Callers that ask
/// while a fetch runs share its outcome, an error too; an error is not kept for later callers.
pub struct Coalesced<V, E> {
    cells: Mutex<HashMap<String, Fetch<V, E>>>,
}

/// The outcome of one fetch, shared by the callers waiting on it.
type Fetch<V, E> = Arc<OnceCell<Result<V, E>>>;

impl<V: Clone, E: Clone> Default for Coalesced<V, E> {
    fn default() -> Self {
        Self {
            cells: Mutex::new(HashMap::new()),
        }
    }
}

impl<V: Clone, E: Clone> Coalesced<V, E> {
    /// The cached value of `key`, or the outcome of `fetch`, run by exactly one of the concurrent
    /// callers. A failed fetch answers the callers that were waiting on it and is then dropped: the
    /// next caller fetches again. (Waiting callers each fetching again in turn made an unreachable
    /// API cost one full retry budget per resource, one after another.)
    pub async fn get_or_fetch<F, Fut>(&self, key: &str, fetch: F) -> Result<V, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>>,
    {
        let cell = shared_entry(&self.cells, key);
        let outcome = cell.get_or_init(fetch).await.clone();
        if outcome.is_err() {
            let mut cells = lock(&self.cells);
            if cells.get(key).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
                cells.remove(key);
            }
        }
        outcome
    }

    /// Replaces the cached value (after a write, with what the write returned).
    pub fn put(&self, key: &str, value: V) {
        let cell = OnceCell::new_with(Some(Ok(value)));
        lock(&self.cells).insert(key.to_string(), Arc::new(cell));
    }

    /// Forgets the cached value.
    pub fn invalidate(&self, key: &str) {
        lock(&self.cells).remove(key);
    }
}

/// The entry of `key`, made on first use, shared with every caller that asks for it meanwhile.
fn shared_entry<T: Default>(map: &Mutex<HashMap<String, Arc<T>>>, key: &str) -> Arc<T> {
    lock(map).entry(key.to_string()).or_default().clone()
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Whether objects exist, asked at apply, where an answer must be fresh. Two rules keep the calls
/// few without answering anyone from before it asked, except with a yes:
/// - **Single flight, started after the caller arrived.** At most one read of an object runs at a
///   time; callers that ask while it runs wait and then share the next read, which starts after all
///   of them asked (and get its answer, an error too). A no, or an error, is never kept.
/// - **A yes is kept for the process** (one apply). What it may miss is the object deleted later in
///   the apply, which a fresh read cannot exclude either: the object may go between the check and
///   the write. The write then meets the missing object itself (see [`Existence::forget`]).
pub struct Existence<E> {
    slots: Mutex<HashMap<String, Arc<ExistenceSlot<E>>>>,
}

impl<E> Default for Existence<E> {
    fn default() -> Self {
        Self {
            slots: Mutex::default(),
        }
    }
}

struct ExistenceSlot<E> {
    /// Whether a read (or [`Existence::saw`]) has answered yes in this process.
    seen: Mutex<Seen>,
    /// Held by the caller reading: one read at a time.
    reading: tokio::sync::Mutex<()>,
    /// The read that callers asking now will share; not started yet.
    next: Mutex<Option<Round<E>>>,
}

/// The answer of one read, shared by the callers that asked before it started.
type Round<E> = Arc<OnceCell<Result<bool, E>>>;

impl<E> Default for ExistenceSlot<E> {
    fn default() -> Self {
        Self {
            seen: Mutex::default(),
            reading: tokio::sync::Mutex::default(),
            next: Mutex::default(),
        }
    }
}

/// A kept yes, and how many times one was forgotten: a read that started before the last
/// [`Existence::forget`] may have seen the object before the write found it gone, so its yes is not
/// kept.
#[derive(Default)]
struct Seen {
    yes: bool,
    forgets: u64,
}

impl<E: Clone> Existence<E> {
    fn slot(&self, key: &str) -> Arc<ExistenceSlot<E>> {
        shared_entry(&self.slots, key)
    }

    /// Whether `key` exists: a yes seen before in this process, else the answer of a `read` that
    /// started after this call (run by one of the callers sharing it).
    pub async fn check<F, Fut>(&self, key: &str, read: F) -> Result<bool, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<bool, E>>,
    {
        let slot = self.slot(key);
        if lock(&slot.seen).yes {
            return Ok(true);
        }
        let round = lock(&slot.next)
            .get_or_insert_with(Default::default)
            .clone();
        let _reading = slot.reading.lock().await;
        if let Some(answer) = round.get() {
            return answer.clone();
        }
        let forgets = {
            let seen = lock(&slot.seen);
            if seen.yes {
                return Ok(true);
            }
            seen.forgets
        };
        // This round's read starts now: whoever asks from here on waits for the next one.
        {
            let mut next = lock(&slot.next);
            if next.as_ref().is_some_and(|n| Arc::ptr_eq(n, &round)) {
                *next = None;
            }
        }
        // A read cancelled here answers nobody: the next caller in line reads instead.
        let exists = read().await;
        if matches!(exists, Ok(true)) {
            let mut seen = lock(&slot.seen);
            if seen.forgets == forgets {
                seen.yes = true;
            }
        }
        // Only this caller sets the round (it holds `reading`), so this cannot fail.
        let _ = round.set(exists.clone());
        exists
    }

    /// Records a yes read elsewhere in this process (a plan-time check).
    pub fn saw(&self, key: &str) {
        lock(&self.slot(key).seen).yes = true;
    }

    /// Forgets a yes: a write found the object missing, so the next check reads again (a read
    /// already out keeps no yes either).
    pub fn forget(&self, key: &str) {
        let slot = self.slot(key);
        let mut seen = lock(&slot.seen);
        seen.yes = false;
        seen.forgets += 1;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use tokio::sync::Notify;

    use super::*;

    /// A read that counts itself, answers `exists`, and waits for `release` first when given one.
    async fn read(
        calls: &AtomicUsize,
        exists: bool,
        release: Option<&Notify>,
    ) -> Result<bool, String> {
        calls.fetch_add(1, Ordering::SeqCst);
        if let Some(release) = release {
            release.notified().await;
        }
        Ok(exists)
    }

    #[tokio::test]
    async fn callers_waiting_on_a_failed_fetch_share_its_error_and_the_next_caller_fetches_again() {
        let (coalesced, calls) = (Coalesced::<bool, String>::default(), AtomicUsize::new(0));
        // join_all polls every caller once before the fetch's sleep can end: all ten wait on it.
        let fetch = || async {
            calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            Err::<bool, _>("unreachable".to_string())
        };
        let answers =
            futures::future::join_all((0..10).map(|_| coalesced.get_or_fetch("p", fetch))).await;
        let unreachable = Err("unreachable".to_string());
        assert!(answers.iter().all(|a| *a == unreachable), "{answers:?}");
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "one fetch for the ten callers"
        );
        // The error is not kept: the next caller fetches again, and a success is kept.
        let ok = coalesced.get_or_fetch("p", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok::<_, String>(true)
        });
        assert_eq!(ok.await, Ok(true));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        let kept = coalesced.get_or_fetch("p", || async { Err("not called".to_string()) });
        assert_eq!(kept.await, Ok(true));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    /// The caller running a fetch is dropped (Terraform stopped that resource): a caller waiting
    /// on it runs its own fetch rather than waiting forever or sharing a cancellation.
    #[tokio::test]
    async fn a_waiting_caller_fetches_itself_when_the_fetching_caller_is_cancelled() {
        let coalesced = Arc::new(Coalesced::<u32, String>::default());
        let started = Arc::new(Notify::new());
        let fetching = tokio::spawn({
            let (coalesced, started) = (coalesced.clone(), started.clone());
            async move {
                let fetch = || async move {
                    started.notify_one();
                    std::future::pending::<Result<u32, String>>().await
                };
                coalesced.get_or_fetch("k", fetch).await
            }
        });
        started.notified().await;
        let waiting = tokio::spawn({
            let coalesced = coalesced.clone();
            async move { coalesced.get_or_fetch("k", || async { Ok(7) }).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        fetching.abort();
        let answer = tokio::time::timeout(Duration::from_secs(5), waiting).await;
        assert_eq!(answer.expect("not stuck").expect("joined"), Ok(7));
        let kept = coalesced.get_or_fetch("k", || async { Ok(0) }).await;
        assert_eq!(kept, Ok(7));
    }

    /// A write's value put while a fetch runs that then fails: the failure drops only its own
    /// entry, not the value the write put.
    #[tokio::test]
    async fn a_failed_fetch_leaves_a_value_put_meanwhile() {
        let coalesced = Coalesced::<u32, String>::default();
        let fetch = coalesced.get_or_fetch("k", || async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            Err("down".to_string())
        });
        let put = async {
            tokio::time::sleep(Duration::from_millis(5)).await;
            coalesced.put("k", 5);
        };
        let (failed, ()) = tokio::join!(fetch, put);
        assert_eq!(failed, Err("down".to_string()));
        let kept = coalesced.get_or_fetch("k", || async { Ok(0) }).await;
        assert_eq!(kept, Ok(5));
    }

    #[tokio::test]
    async fn concurrent_checks_share_one_read_and_a_yes_is_kept() {
        let (existence, calls) = (Existence::default(), AtomicUsize::new(0));
        let checks = (0..20).map(|_| existence.check("t", || read(&calls, true, None)));
        let answers = futures::future::join_all(checks).await;
        assert!(answers.iter().all(|a| *a == Ok(true)), "{answers:?}");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(
            existence.check("t", || read(&calls, true, None)).await,
            Ok(true)
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1, "the yes is kept");
        // Another object is another read.
        assert_eq!(
            existence.check("u", || read(&calls, true, None)).await,
            Ok(true)
        );
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_no_is_never_kept_and_a_forgotten_yes_is_read_again() {
        let (existence, calls) = (Existence::default(), AtomicUsize::new(0));
        assert_eq!(
            existence.check("t", || read(&calls, false, None)).await,
            Ok(false)
        );
        assert_eq!(
            existence.check("t", || read(&calls, true, None)).await,
            Ok(true)
        );
        assert_eq!(calls.load(Ordering::SeqCst), 2, "the no was read again");
        existence.forget("t");
        assert_eq!(
            existence.check("t", || read(&calls, false, None)).await,
            Ok(false)
        );
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        let failed: Result<bool, String> =
            existence.check("t", || async { Err("down".into()) }).await;
        assert_eq!(failed, Err("down".into()));
        assert_eq!(
            existence.check("t", || read(&calls, false, None)).await,
            Ok(false)
        );
        assert_eq!(
            calls.load(Ordering::SeqCst),
            4,
            "an error is not kept either"
        );
        existence.saw("t");
        assert_eq!(
            existence.check("t", || read(&calls, false, None)).await,
            Ok(true)
        );
        assert_eq!(
            calls.load(Ordering::SeqCst),
            4,
            "a yes seen elsewhere is kept"
        );
    }

    #[tokio::test]
    async fn callers_sharing_a_read_that_fails_share_its_error_not_one_read_each() {
        let (existence, calls, release) =
            (Existence::default(), AtomicUsize::new(0), Notify::new());
        let failing = || {
            existence.check("t", || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err::<bool, String>("down".into())
            })
        };
        // Three callers arrive while a read runs; the read they share then fails.
        let (first, a, b, c, ()) = tokio::join!(
            existence.check("t", || read(&calls, false, Some(&release))),
            failing(),
            failing(),
            failing(),
            async { release.notify_one() },
        );
        assert_eq!(first, Ok(false));
        for answer in [a, b, c] {
            assert_eq!(answer, Err("down".to_string()));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 2, "one read for the three");
        // The error is not kept.
        assert_eq!(
            existence.check("t", || read(&calls, true, None)).await,
            Ok(true)
        );
    }

    #[tokio::test]
    async fn a_read_cancelled_while_others_wait_leaves_the_next_of_them_to_read() {
        let (existence, calls) = (Existence::default(), AtomicUsize::new(0));
        let (release, never) = (Notify::new(), Notify::new());
        let cancelled = tokio::time::timeout(
            Duration::from_millis(20),
            existence.check("t", || read(&calls, true, Some(&never))),
        );
        // Two callers arrive while a read runs; the one that reads for both is cancelled.
        let (first, cancelled, waiter, ()) = tokio::join!(
            existence.check("t", || read(&calls, false, Some(&release))),
            cancelled,
            existence.check("t", || read(&calls, true, None)),
            async { release.notify_one() },
        );
        assert_eq!(first, Ok(false));
        assert!(cancelled.is_err(), "timed out");
        assert_eq!(waiter, Ok(true), "answered by a read of its own");
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_yes_from_a_read_that_started_before_a_forget_is_not_kept() {
        let (existence, calls, release) =
            (Existence::default(), AtomicUsize::new(0), Notify::new());
        let mut first = Box::pin(existence.check("t", || read(&calls, true, Some(&release))));
        assert!(futures::poll!(&mut first).is_pending());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // A write meets the missing object while that read is still out.
        existence.forget("t");
        release.notify_one();
        assert_eq!(first.await, Ok(true), "its own callers get its answer");
        assert_eq!(
            existence.check("t", || read(&calls, false, None)).await,
            Ok(false),
            "the next check reads again"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn callers_arriving_during_a_read_share_the_next_one_not_its_answer() {
        let existence = Arc::new(Existence::default());
        let calls = Arc::new(AtomicUsize::new(0));
        let release = Arc::new(Notify::new());
        let check = |exists: bool| {
            let (existence, calls, release) = (existence.clone(), calls.clone(), release.clone());
            tokio::spawn(async move {
                existence
                    .check("t", || read(&calls, exists, Some(&release)))
                    .await
            })
        };
        // The first read runs (and says no) while three more callers arrive.
        let first = check(false);
        while calls.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let later: Vec<_> = (0..3).map(|_| check(true)).collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 1, "the later callers wait");
        release.notify_one();
        assert_eq!(first.await.expect("first"), Ok(false));
        // Their own read started after they asked: its yes, not the first read's no.
        while calls.load(Ordering::SeqCst) == 1 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        release.notify_one();
        for answer in later {
            assert_eq!(answer.await.expect("later"), Ok(true));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 2, "three callers, one read");
    }

    /// Apply-time checks of access resources against the emulator, counted in its request log.
    mod at_apply {
        use std::time::Instant;

        use serde_json::json;

        use crate::emulator::{Emulator, Options};
        use crate::google::{self, Clients, Config};
        use crate::names::IapResource;
        use crate::resources::access_binding::{checks, write_policy, Access};
        use crate::resources::Context;

        const PROJECT: &str = "check-project";
        const REGION: &str = "us-central1";

        /// An emulator with the Cloud Run service `svc`, and a context on it.
        async fn emulated() -> (Emulator, Context) {
            let options = Options {
                open: true,
                ..Options::default()
            };
            let emulator = crate::emulator::spawn(options).await.expect("emulator");
            let seed = json!({"run_services": [{
                "project": PROJECT, "location": REGION, "name": "svc",
                "spec": {"template": {"containers": [{"image": "us-docker.pkg.dev/cloudrun/container/hello"}]}}
            }]});
            emulator.seed_json(&seed.to_string()).await.expect("seeded");
            let clients = Clients::new(Config::emulator(&emulator.host())).expect("clients");
            emulator.clear_requests();
            (emulator, Context::new(None, None, clients))
        }

        fn target(emulator: &Emulator, service: &str) -> IapResource {
            let number = emulator.project_number(PROJECT).expect("number");
            let name = format!("projects/{number}/iap_web/cloud_run-{REGION}/services/{service}");
            IapResource::parse(&name).expect("IAP resource")
        }

        /// Reads of the Cloud Run service `service` in the request log.
        fn service_reads(emulator: &Emulator, service: &str) -> usize {
            let path = format!("/services/{service}");
            let reads = emulator.requests();
            reads
                .iter()
                .filter(|r| r.method == "GET" && r.path.ends_with(&path))
                .count()
        }

        fn checks_found(findings: &[crate::validation::Finding]) -> Vec<&str> {
            findings.iter().map(|f| f.check).collect()
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn concurrent_apply_time_checks_of_one_target_make_one_read() {
            let (emulator, ctx) = emulated().await;
            let svc = target(&emulator, "svc");
            let all = (0..30).map(|_| checks(&ctx, &[], &svc, true));
            for found in futures::future::join_all(all).await {
                assert_eq!(checks_found(&found.expect("checked")), Vec::<&str>::new());
            }
            assert_eq!(service_reads(&emulator, "svc"), 1);
            // Later checks in this apply keep the yes.
            checks(&ctx, &[], &svc, true).await.expect("checked");
            assert_eq!(service_reads(&emulator, "svc"), 1);
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_missing_target_is_read_again_at_each_check_and_reported() {
            let (emulator, ctx) = emulated().await;
            let ghost = target(&emulator, "ghost");
            for expected_reads in 1..=2 {
                let found = checks(&ctx, &[], &ghost, true).await.expect("checked");
                assert_eq!(checks_found(&found), ["target_missing"]);
                assert_eq!(service_reads(&emulator, "ghost"), expected_reads);
            }
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_write_that_finds_the_target_gone_fails_on_target_missing() {
            let (emulator, ctx) = emulated().await;
            let svc = target(&emulator, "svc");
            let found = checks(&ctx, &[], &svc, true).await.expect("checked");
            assert!(found.is_empty(), "{found:?}");
            // Deleted after the check whose yes this apply keeps.
            let url = format!(
                "http://{}/v2/projects/{PROJECT}/locations/{REGION}/services/svc",
                emulator.host()
            );
            let deleted = reqwest::Client::new()
                .delete(&url)
                .send()
                .await
                .expect("delete");
            assert!(deleted.status().is_success(), "{deleted:?}");
            let access = Access::default();
            let deadline = Instant::now() + std::time::Duration::from_secs(30);
            let add =
                |p: &mut google::Policy| p.add_member("roles/viewer", "user:a@example.com", None);
            let failed = write_policy(&ctx, &access, &svc, deadline, "add a member", add)
                .await
                .expect_err("the IAP resource is gone");
            assert!(failed.summary.starts_with("target_missing"), "{failed:?}");
            let sets = emulator.requests();
            let sets = sets
                .iter()
                .filter(|r| r.path.ends_with(":setIamPolicy") && r.status == 200);
            assert_eq!(sets.count(), 0, "nothing written");
        }
    }
}
