//! The IAM writer against the in-process emulator: concurrent edits of one policy fold into few
//! writes, a remembered copy saves reads but never loses a change, conflicts re-read, and each edit
//! meets only its own error.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use super::*;
use crate::emulator::{Emulator, FaultSpec, Options};
use crate::google::testutil::fast_retries;
use crate::google::{cloud_run_resource, Clients, Config, IapClient};

const ROLE: &str = "roles/iap.httpsResourceAccessor";
const OTHER_ROLE: &str = "roles/iap.tunnelResourceAccessor";

/// An emulator with one Cloud Run service, clients for it, and the service's IAP resource name.
async fn emulated() -> (Emulator, Clients, String) {
    let emulator = crate::emulator::spawn(Options::default())
        .await
        .expect("emulator");
    let seed = json!({"run_services": [{
        "project": "fold-project", "location": "us-central1", "name": "svc",
        "spec": {"template": {"containers": [{"image": "us-docker.pkg.dev/cloudrun/container/hello"}]}}
    }]});
    emulator.seed_json(&seed.to_string()).await.expect("seeded");
    let number = emulator
        .project_number("fold-project")
        .expect("project number");
    let clients = Clients::with_retry_policy(Config::emulator(&emulator.host()), fast_retries())
        .expect("clients");
    emulator.clear_requests();
    (
        emulator,
        clients,
        cloud_run_resource(&number, "us-central1", "svc"),
    )
}

fn deadline() -> Instant {
    Instant::now() + Duration::from_secs(60)
}

fn user(n: usize) -> String {
    format!("user:u{n}@example.com")
}

/// Status of every logged request whose path ends with `verb` (`:getIamPolicy`, `:setIamPolicy`).
fn statuses(emulator: &Emulator, verb: &str) -> Vec<u16> {
    emulator
        .requests()
        .iter()
        .filter(|r| r.path.ends_with(verb))
        .map(|r| r.status)
        .collect()
}

/// The policy as it stands.
async fn current(clients: &Clients, resource: &str) -> Policy {
    clients.iap.iam_policy(resource).await.expect("policy")
}

/// Another tool's read-modify-write of the policy, straight through the client.
async fn write_out_of_band(clients: &Clients, resource: &str, edit: impl FnOnce(&mut Policy)) {
    let mut theirs = current(clients, resource).await;
    edit(&mut theirs);
    clients
        .iap
        .set_iam_policy(resource, &theirs)
        .await
        .expect("out-of-band write");
}

fn add_oob(policy: &mut Policy) {
    policy.add_member(OTHER_ROLE, "user:oob@example.com", None);
}

fn fault(spec: serde_json::Value) -> FaultSpec {
    serde_json::from_value(spec).expect("fault spec")
}

/// The IAP policy through the real client, with a gate the test holds shut so that a write stays
/// in flight until the test has queued what it wants behind it.
#[derive(Clone)]
struct Gated {
    iap: IapClient,
    resource: String,
    gate: Arc<Semaphore>,
}

impl PolicyStore for Gated {
    fn key(&self) -> String {
        self.resource.clone()
    }

    async fn read(&self) -> Result<Policy, Error> {
        self.iap.iam_policy(&self.resource).await
    }

    async fn write(&self, policy: &Policy) -> Result<Policy, Error> {
        let _pass = self.gate.acquire().await.map_err(|_| Error::Cancelled)?;
        self.iap.set_iam_policy(&self.resource, policy).await
    }
}

/// A writer of its own whose first edit (adding user 0) is in flight, its write held at a shut gate.
struct Held {
    emulator: Emulator,
    clients: Clients,
    resource: String,
    writer: Arc<IamWriter>,
    store: Gated,
    first: JoinHandle<Result<Policy, Error>>,
}

async fn first_write_held() -> Held {
    let (emulator, clients, resource) = emulated().await;
    let writer = Arc::new(IamWriter::new(clients.transport.clone()));
    let store = Gated {
        iap: clients.iap.clone(),
        resource: resource.clone(),
        gate: Arc::new(Semaphore::new(0)),
    };
    let first = add(&writer, &store, user(0));
    until_queued(&writer, &store, 0).await;
    Held {
        emulator,
        clients,
        resource,
        writer,
        store,
        first,
    }
}

/// Starts a caller adding `member` to ROLE.
fn add(
    writer: &Arc<IamWriter>,
    store: &Gated,
    member: String,
) -> JoinHandle<Result<Policy, Error>> {
    let (writer, store) = (writer.clone(), store.clone());
    tokio::spawn(async move {
        writer
            .read_modify_write(store, deadline(), |p| p.add_member(ROLE, &member, None))
            .await
    })
}

/// Waits until the writer's slot for `store` is writing with `queued` edits waiting.
async fn until_queued(writer: &IamWriter, store: &Gated, queued: usize) {
    loop {
        let now = lock(&writer.policies)
            .get(&store.key())
            .map(|slot| (slot.writing, slot.queue.len()));
        if now == Some((true, queued)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn edits_queued_behind_a_write_go_out_together_in_the_next_one() {
    let held = first_write_held().await;
    let (writer, store) = (&held.writer, &held.store);
    let rest: Vec<_> = (1..=30).map(|n| add(writer, store, user(n))).collect();
    until_queued(writer, store, 30).await;
    store.gate.add_permits(1);

    let written = held.first.await.expect("task").expect("first edit");
    assert_eq!(written.members(ROLE, None), vec![user(0)]);
    for (n, task) in (1..=30).zip(rest) {
        let written = task.await.expect("task").expect("queued edit");
        assert!(written.has_member(ROLE, &user(n), None), "{n}: {written:?}");
    }
    // One write for the first edit, one for the thirty queued behind it, and one read in all.
    assert_eq!(statuses(&held.emulator, ":setIamPolicy"), [200, 200]);
    assert_eq!(statuses(&held.emulator, ":getIamPolicy"), [200]);
    let policy = current(&held.clients, &held.resource).await;
    assert_eq!(policy.members(ROLE, None).len(), 31);
    assert!(
        held.emulator.mismatches().is_empty(),
        "{:?}",
        held.emulator.mismatches()
    );
}

/// The edits of a held writer's first two batches: user 0 alone, then users 1 and 2 together,
/// each write taking `slow` longer than it would.
async fn two_batches_written(held: &Held, slow: Duration) {
    let (writer, store) = (&held.writer, &held.store);
    let pair = [add(writer, store, user(1)), add(writer, store, user(2))];
    until_queued(writer, store, 2).await;
    let delay = json!({
        "kind": "delay", "method": "POST", "path_regex": ":setIamPolicy$", "count": 2,
        "delay_ms": slow.as_millis() as u64
    });
    held.emulator.add_fault(fault(delay)).expect("fault");
    // Open from here on.
    store.gate.add_permits(1);
    for task in pair {
        task.await.expect("task").expect("paired edit");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn after_a_folded_write_the_next_one_waits_for_more_edits_than_it_carried() {
    let held = first_write_held().await;
    two_batches_written(&held, Duration::from_secs(1)).await;
    // The pair's write took over 1 s, so the writer gathers for up to 0.5 s: three edits
    // coming one after another go out in one write, not as a lone edit and then the rest.
    let (writer, store) = (&held.writer, &held.store);
    let three: Vec<_> = (3..=5).map(|n| add(writer, store, user(n))).collect();
    for (n, task) in (3..=5).zip(three) {
        let written = task.await.expect("task").expect("gathered edit");
        assert!(written.has_member(ROLE, &user(n), None), "{n}: {written:?}");
    }
    assert_eq!(statuses(&held.emulator, ":setIamPolicy"), [200, 200, 200]);
    held.first.await.expect("task").expect("first edit");
    let policy = current(&held.clients, &held.resource).await;
    assert_eq!(policy.members(ROLE, None).len(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_gathering_writer_still_writes_what_came_when_its_wait_ends() {
    let held = first_write_held().await;
    two_batches_written(&held, Duration::from_millis(100)).await;
    // One edit, fewer than the three the writer gathers for: written when the wait ends.
    let (writer, store) = (&held.writer, &held.store);
    let lone = add(writer, store, user(3));
    let written = tokio::time::timeout(Duration::from_secs(10), lone).await;
    let written = written.expect("written when the wait ended").expect("task");
    assert!(written.expect("lone edit").has_member(ROLE, &user(3), None));
    assert_eq!(statuses(&held.emulator, ":setIamPolicy"), [200, 200, 200]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_caller_that_goes_away_while_the_writer_gathers_strands_nobody() {
    let held = first_write_held().await;
    two_batches_written(&held, Duration::from_secs(1)).await;
    // The writer gathers three edits: the first queued goes away, the two after it still land.
    let (writer, store) = (&held.writer, &held.store);
    let gone = add(writer, store, user(3));
    until_queued(writer, store, 1).await;
    gone.abort();
    let rest: Vec<_> = (4..=5).map(|n| add(writer, store, user(n))).collect();
    for (n, task) in (4..=5).zip(rest) {
        let written = tokio::time::timeout(Duration::from_secs(10), task).await;
        let written = written.expect("answered").expect("task").expect("edit");
        assert!(written.has_member(ROLE, &user(n), None), "{n}: {written:?}");
        assert!(!written.has_member(ROLE, &user(3), None), "{written:?}");
    }
    assert_eq!(statuses(&held.emulator, ":setIamPolicy"), [200, 200, 200]);
    let idle = async {
        while lock(&writer.policies)
            .get(&store.key())
            .is_none_or(|slot| slot.writing)
        {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), idle)
        .await
        .expect("the writer went idle");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_bad_member_in_a_folded_write_fails_only_its_own_edit() {
    let held = first_write_held().await;
    let (writer, store) = (&held.writer, &held.store);
    // The API refuses a `user:` member without an e-mail address (400 INVALID_ARGUMENT).
    let bad = "user:not-an-email";
    let mut queued: Vec<(String, _)> = Vec::new();
    for n in 1..=10 {
        let member = if n == 4 { bad.to_string() } else { user(n) };
        queued.push((member.clone(), add(writer, store, member)));
    }
    until_queued(writer, store, 10).await;
    store.gate.add_permits(1);

    held.first.await.expect("task").expect("first edit");
    for (member, task) in queued {
        let outcome = task.await.expect("task");
        if member == bad {
            let e = outcome.expect_err("the bad member is refused");
            assert_eq!(e.http_status(), Some(400), "{e}");
            assert!(e.to_string().contains(bad), "{e}");
        } else {
            let written =
                outcome.unwrap_or_else(|e| panic!("{member} failed for another edit: {e}"));
            assert!(written.has_member(ROLE, &member, None));
        }
    }
    let policy = current(&held.clients, &held.resource).await;
    let mut want: Vec<String> = (0..=10).filter(|n| *n != 4).map(user).collect();
    want.sort();
    let mut got = policy.members(ROLE, None);
    got.sort();
    assert_eq!(got, want);
    // The refused write of ten was split in halves, not retried edit by edit: the first write,
    // the ten, and at most two writes per halving (⌈log₂ 10⌉ = 4) to corner the bad one.
    let sets = statuses(&held.emulator, ":setIamPolicy");
    assert!(sets.len() <= 1 + 1 + 2 * 4, "{sets:?}");
    assert_eq!(sets[..2], [200, 400], "the bad member went out folded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancelled_caller_strands_no_other() {
    let held = first_write_held().await;
    let (writer, store) = (&held.writer, &held.store);
    let mut queued: Vec<_> = (1..=5).map(|n| add(writer, store, user(n))).collect();
    until_queued(writer, store, 5).await;
    // The caller whose edit is in flight and one waiting in the queue both go away.
    held.first.abort();
    queued.remove(2).abort();
    store.gate.add_permits(1);

    for (n, task) in [1, 2, 4, 5].into_iter().zip(queued) {
        let written = task.await.expect("task").expect("queued edit");
        assert!(written.has_member(ROLE, &user(n), None));
    }
    let policy = current(&held.clients, &held.resource).await;
    assert!(!policy.has_member(ROLE, &user(3), None), "{policy:?}");
    // The writer goes idle, keeping what it wrote last for the next batch.
    let idle = async {
        loop {
            let slot = lock(&writer.policies)
                .get(&store.key())
                .map(|slot| (slot.writing, slot.queue.len(), slot.known.is_some()));
            if slot == Some((false, 0, true)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), idle)
        .await
        .expect("the writer went idle");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_start_from_the_last_write_and_a_stale_copy_costs_a_conflict_not_a_change() {
    let (emulator, clients, resource) = emulated().await;
    let add_user = |n: usize| {
        let (iap, resource) = (clients.iap.clone(), resource.clone());
        async move {
            iap.modify_iam_policy(&resource, deadline(), |p| {
                p.add_member(ROLE, &user(n), None)
            })
            .await
        }
    };
    for n in 0..5 {
        add_user(n).await.expect("edit");
    }
    // One read, then each write starts from the one before.
    assert_eq!(statuses(&emulator, ":getIamPolicy"), [200]);
    assert_eq!(statuses(&emulator, ":setIamPolicy"), [200; 5]);

    // Another tool changes the policy: the remembered copy is stale.
    write_out_of_band(&clients, &resource, add_oob).await;
    emulator.clear_requests();
    add_user(5).await.expect("edit after the out-of-band write");
    assert_eq!(statuses(&emulator, ":setIamPolicy"), [409, 200]);
    assert_eq!(statuses(&emulator, ":getIamPolicy"), [200]);
    let policy = current(&clients, &resource).await;
    assert_eq!(policy.members(OTHER_ROLE, None), ["user:oob@example.com"]);
    assert_eq!(policy.members(ROLE, None).len(), 6);

    // Another tool removes a member: "already there" on the remembered copy is checked by a read.
    write_out_of_band(&clients, &resource, |p| {
        assert!(p.remove_member(ROLE, &user(5), None));
    })
    .await;
    let written = add_user(5).await.expect("added again");
    assert!(written.has_member(ROLE, &user(5), None));
    let policy = current(&clients, &resource).await;
    assert!(policy.has_member(ROLE, &user(5), None), "{policy:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn under_injected_conflicts_every_folded_edit_lands_and_only_conflicts_re_read() {
    let (emulator, clients, resource) = emulated().await;
    write_out_of_band(&clients, &resource, add_oob).await;
    emulator
        .add_fault(fault(json!({
            "kind": "stale_etag", "method": "POST", "path_regex": ":setIamPolicy$", "count": 3
        })))
        .expect("fault");
    emulator.clear_requests();
    let tasks: Vec<_> = (0..40)
        .map(|n| {
            let (iap, resource) = (clients.iap.clone(), resource.clone());
            tokio::spawn(async move {
                iap.modify_iam_policy(&resource, deadline(), |p| {
                    p.set_binding(
                        ROLE,
                        Some(&Condition::new(format!("slot-{n}"), "true")),
                        &[user(n)],
                    )
                })
                .await
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task").expect("edit");
    }
    let sets = statuses(&emulator, ":setIamPolicy");
    let conflicts = sets.iter().filter(|s| **s == 409).count();
    assert_eq!(conflicts, 3, "{sets:?}");
    assert!(
        sets.len() < 40,
        "forty edits folded into fewer writes: {sets:?}"
    );
    // The first read, then one after each conflict and none otherwise.
    assert_eq!(statuses(&emulator, ":getIamPolicy").len(), 1 + conflicts);
    let policy = current(&clients, &resource).await;
    assert_eq!(policy.members(OTHER_ROLE, None), ["user:oob@example.com"]);
    for n in 0..40 {
        let slot = Condition::new(format!("slot-{n}"), "true");
        assert_eq!(policy.members(ROLE, Some(&slot)), [user(n)], "slot-{n}");
    }
    assert!(
        emulator.mismatches().is_empty(),
        "{:?}",
        emulator.mismatches()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stale_remembered_copy_is_read_again_at_once_not_after_a_backoff() {
    let (emulator, fast, resource) = emulated().await;
    // The default retry policy: a conflict's backoff takes half a second or more.
    let clients = Clients::new(Config::emulator(&emulator.host())).expect("clients");
    let edit = |n: usize, until: Instant| {
        let (iap, resource) = (clients.iap.clone(), resource.clone());
        async move {
            iap.modify_iam_policy(&resource, until, |p| p.add_member(ROLE, &user(n), None))
                .await
        }
    };
    edit(0, deadline()).await.expect("first edit");
    write_out_of_band(&fast, &resource, add_oob).await;
    emulator.clear_requests();
    // Too soon for any backoff: only a read right after the conflict meets it.
    let soon = Instant::now() + Duration::from_millis(400);
    edit(1, soon)
        .await
        .expect("edit on a stale remembered copy");
    assert_eq!(statuses(&emulator, ":setIamPolicy"), [409, 200]);
    assert_eq!(statuses(&emulator, ":getIamPolicy"), [200]);
    let policy = current(&clients, &resource).await;
    assert_eq!(policy.members(OTHER_ROLE, None), ["user:oob@example.com"]);
    assert_eq!(policy.members(ROLE, None), [user(0), user(1)]);
}
