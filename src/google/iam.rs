//! IAM policies: types that round-trip unknown fields, binding edits, and the etag-guarded
//! read-modify-write shared by the Run and IAP clients, which folds concurrent edits of one
//! policy into one write.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot, Notify};

use super::error::Error;
use super::transport::Transport;

/// An IAM policy (`google.iam.v1.Policy`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Policy {
    /// Policy format version (1 or 3; 3 when bindings carry conditions).
    pub version: Option<i64>,
    /// Concurrency token from the read; send it back unchanged.
    pub etag: Option<String>,
    /// Role bindings, in the order the API returned them.
    pub bindings: Vec<Binding>,
    /// Every other field (`auditConfigs`, ...), kept as received.
    pub extra: Map<String, Value>,
}

/// One role binding.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Binding {
    pub role: String,
    pub members: Vec<String>,
    pub condition: Option<Condition>,
    /// Unknown fields, kept as received.
    pub extra: Map<String, Value>,
}

/// An IAM condition (`google.type.Expr`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Condition {
    pub expression: String,
    pub title: Option<String>,
    pub description: Option<String>,
    pub location: Option<String>,
    /// Unknown fields, kept as received.
    pub extra: Map<String, Value>,
}

impl Condition {
    /// A condition with a title and expression.
    pub fn new(title: impl Into<String>, expression: impl Into<String>) -> Condition {
        Condition {
            expression: expression.into(),
            title: Some(title.into()),
            ..Condition::default()
        }
    }

    /// Whether two conditions are the same for binding purposes (title, description,
    /// expression; an absent string equals an empty one).
    pub fn same_as(&self, other: &Condition) -> bool {
        fn text(s: &Option<String>) -> &str {
            s.as_deref().unwrap_or("")
        }
        self.expression == other.expression
            && text(&self.title) == text(&other.title)
            && text(&self.description) == text(&other.description)
    }

    fn from_value(value: Value) -> Result<Condition, String> {
        let mut map = into_object(value, "condition")?;
        Ok(Condition {
            expression: take_string(&mut map, "expression")?.unwrap_or_default(),
            title: take_string(&mut map, "title")?,
            description: take_string(&mut map, "description")?,
            location: take_string(&mut map, "location")?,
            extra: map,
        })
    }

    fn to_value(&self) -> Value {
        let mut map = self.extra.clone();
        map.insert("expression".into(), Value::String(self.expression.clone()));
        put_string(&mut map, "title", &self.title);
        put_string(&mut map, "description", &self.description);
        put_string(&mut map, "location", &self.location);
        Value::Object(map)
    }
}

fn same_condition(a: Option<&Condition>, b: Option<&Condition>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => a.same_as(b),
        _ => false,
    }
}

impl Binding {
    /// Whether this binding is for `role` under exactly `condition`.
    pub fn matches(&self, role: &str, condition: Option<&Condition>) -> bool {
        self.role == role && same_condition(self.condition.as_ref(), condition)
    }

    fn from_value(value: Value) -> Result<Binding, String> {
        let mut map = into_object(value, "binding")?;
        let members = match map.remove("members") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .into_iter()
                .map(|m| match m {
                    Value::String(s) => Ok(s),
                    other => Err(format!("binding member is not a string: {other}")),
                })
                .collect::<Result<_, _>>()?,
            Some(other) => return Err(format!("binding members is not a list: {other}")),
        };
        let condition = match map.remove("condition") {
            None | Some(Value::Null) => None,
            Some(value) => Some(Condition::from_value(value)?),
        };
        Ok(Binding {
            role: take_string(&mut map, "role")?.unwrap_or_default(),
            members,
            condition,
            extra: map,
        })
    }

    fn to_value(&self) -> Value {
        let mut map = self.extra.clone();
        map.insert("role".into(), Value::String(self.role.clone()));
        map.insert(
            "members".into(),
            Value::Array(self.members.iter().cloned().map(Value::String).collect()),
        );
        if let Some(condition) = &self.condition {
            map.insert("condition".into(), condition.to_value());
        }
        Value::Object(map)
    }
}

impl Policy {
    /// Parses a policy from JSON, keeping unknown fields.
    pub fn from_value(value: Value) -> Result<Policy, String> {
        let mut map = into_object(value, "policy")?;
        let version = match map.remove("version") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => Some(
                n.as_i64()
                    .ok_or_else(|| format!("policy version {n} is not an integer"))?,
            ),
            Some(other) => return Err(format!("policy version is not a number: {other}")),
        };
        let bindings = match map.remove("bindings") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .into_iter()
                .map(Binding::from_value)
                .collect::<Result<_, _>>()?,
            Some(other) => return Err(format!("policy bindings is not a list: {other}")),
        };
        Ok(Policy {
            version,
            etag: take_string(&mut map, "etag")?,
            bindings,
            extra: map,
        })
    }

    /// The policy as JSON, unknown fields included.
    pub fn to_value(&self) -> Value {
        let mut map = self.extra.clone();
        if let Some(version) = self.version {
            map.insert("version".into(), Value::from(version));
        }
        put_string(&mut map, "etag", &self.etag);
        if !self.bindings.is_empty() {
            map.insert(
                "bindings".into(),
                Value::Array(self.bindings.iter().map(Binding::to_value).collect()),
            );
        }
        Value::Object(map)
    }

    /// Members bound to `role` under `condition` (across duplicate bindings), as stored.
    pub fn members(&self, role: &str, condition: Option<&Condition>) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for binding in self.bindings.iter().filter(|b| b.matches(role, condition)) {
            for member in &binding.members {
                if !out.iter().any(|m| same_member(m, member)) {
                    out.push(member.clone());
                }
            }
        }
        out
    }

    /// Whether `member` holds `role` under `condition` (member case rules applied).
    pub fn has_member(&self, role: &str, member: &str, condition: Option<&Condition>) -> bool {
        self.bindings
            .iter()
            .filter(|b| b.matches(role, condition))
            .any(|b| b.members.iter().any(|m| same_member(m, member)))
    }

    /// The binding of `role` under `condition`; with `title_only` (what an import id names), a
    /// condition matches on its title alone.
    pub fn binding(
        &self,
        role: &str,
        condition: Option<&Condition>,
        title_only: bool,
    ) -> Option<&Binding> {
        self.bindings
            .iter()
            .find(|b| match (condition, &b.condition) {
                (Some(wanted), Some(c)) if title_only => b.role == role && wanted.title == c.title,
                _ => b.matches(role, condition),
            })
    }

    /// Whether any binding carries a condition (such a policy must be written as version 3).
    pub fn has_conditions(&self) -> bool {
        self.bindings.iter().any(|b| b.condition.is_some())
    }

    /// Adds `member` to the (`role`, `condition`) binding; false when it was already there.
    pub fn add_member(&mut self, role: &str, member: &str, condition: Option<&Condition>) -> bool {
        if self.has_member(role, member, condition) {
            return false;
        }
        let member = normalize_member(member);
        match self
            .bindings
            .iter_mut()
            .find(|b| b.matches(role, condition))
        {
            Some(binding) => binding.members.push(member),
            None => self.bindings.push(Binding {
                role: role.to_string(),
                members: vec![member],
                condition: condition.cloned(),
                extra: Map::new(),
            }),
        }
        true
    }

    /// Removes `member` from the (`role`, `condition`) binding, dropping it if it empties;
    /// false when the member was not there.
    pub fn remove_member(
        &mut self,
        role: &str,
        member: &str,
        condition: Option<&Condition>,
    ) -> bool {
        let mut changed = false;
        for binding in self
            .bindings
            .iter_mut()
            .filter(|b| b.matches(role, condition))
        {
            let before = binding.members.len();
            binding.members.retain(|m| !same_member(m, member));
            changed |= binding.members.len() != before;
        }
        if changed {
            self.bindings
                .retain(|b| !(b.matches(role, condition) && b.members.is_empty()));
        }
        changed
    }

    /// Makes `members` exactly the members of (`role`, `condition`), leaving every other
    /// binding untouched; an empty list removes the binding. False when nothing changed.
    pub fn set_binding(
        &mut self,
        role: &str,
        condition: Option<&Condition>,
        members: &[String],
    ) -> bool {
        let mut desired: Vec<String> = Vec::new();
        for member in members {
            let member = normalize_member(member);
            if !desired.contains(&member) {
                desired.push(member);
            }
        }
        let matching: Vec<usize> = self
            .bindings
            .iter()
            .enumerate()
            .filter(|(_, b)| b.matches(role, condition))
            .map(|(i, _)| i)
            .collect();
        if let [only] = matching.as_slice() {
            let current = &self.bindings[*only].members;
            let mut current_norm: Vec<String> =
                current.iter().map(|m| normalize_member(m)).collect();
            let mut desired_sorted = desired.clone();
            current_norm.sort();
            current_norm.dedup();
            desired_sorted.sort();
            if current_norm == desired_sorted && current.len() == desired.len() {
                return false;
            }
        }
        if matching.is_empty() && desired.is_empty() {
            return false;
        }
        let position = matching.first().copied().unwrap_or(self.bindings.len());
        let extra = matching
            .first()
            .map(|&i| self.bindings[i].extra.clone())
            .unwrap_or_default();
        let mut index = 0;
        self.bindings.retain(|_| {
            let keep = !matching.contains(&index);
            index += 1;
            keep
        });
        if !desired.is_empty() {
            let position = position.min(self.bindings.len());
            self.bindings.insert(
                position,
                Binding {
                    role: role.to_string(),
                    members: desired,
                    condition: condition.cloned(),
                    extra,
                },
            );
        }
        true
    }

    /// Readies a modified policy for setIamPolicy: drops empty bindings (the API rejects
    /// them) and selects version 3 when conditions are present.
    pub fn prepare_for_write(&mut self) {
        self.bindings.retain(|b| !b.members.is_empty());
        if self.has_conditions() {
            self.version = Some(3);
        }
    }
}

impl Serialize for Policy {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_value().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Policy {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Policy::from_value(value).map_err(serde::de::Error::custom)
    }
}

/// Canonical form of an IAM member: Google lower-cases the email or domain of `user:`,
/// `group:`, `serviceAccount:` and `domain:` members; everything else (`principal://`,
/// `principalSet://`, `allUsers`, `deleted:` ...) is kept as written.
pub fn normalize_member(member: &str) -> String {
    let member = member.trim();
    for prefix in ["user:", "group:", "serviceAccount:", "domain:"] {
        if let Some(rest) = member.strip_prefix(prefix) {
            return format!("{prefix}{}", rest.to_lowercase());
        }
    }
    member.to_string()
}

fn same_member(a: &str, b: &str) -> bool {
    normalize_member(a) == normalize_member(b)
}

fn into_object(value: Value, what: &str) -> Result<Map<String, Value>, String> {
    match value {
        Value::Object(map) => Ok(map),
        other => Err(format!("{what} is not a JSON object: {}", brief(&other))),
    }
}

fn take_string(map: &mut Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    match map.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(format!("{key} is not a string: {}", brief(&other))),
    }
}

fn put_string(map: &mut Map<String, Value>, key: &str, value: &Option<String>) {
    if let Some(value) = value {
        map.insert(key.into(), Value::String(value.clone()));
    }
}

fn brief(value: &Value) -> String {
    let text = value.to_string();
    if text.len() > 80 {
        format!("{}…", text.chars().take(80).collect::<String>())
    } else {
        text
    }
}

// ---------------------------------------------------------------------------------------------
// Read-modify-write, folded per policy.

/// Where a policy lives: something with getIamPolicy and setIamPolicy. Owned, because the task
/// writing a batch may outlive the caller that started it.
pub(crate) trait PolicyStore: Clone + Send + Sync + 'static {
    /// The policy's identity in this process (callers pass one canonical form per policy).
    fn key(&self) -> String;
    /// getIamPolicy.
    fn read(&self) -> impl Future<Output = Result<Policy, Error>> + Send;
    /// setIamPolicy; answers the policy as written.
    fn write(&self, policy: &Policy) -> impl Future<Output = Result<Policy, Error>> + Send;
}

/// Read-modify-write cycles allowed per attempt of the retry policy.
pub const CONFLICT_ATTEMPTS_FACTOR: u32 = 4;

/// Conflicts back off this many times less than failed calls (1 s at first by default): a 409 is
/// another writer's read-modify-write, over in a round trip or two, not an overloaded server; and
/// the edits queued meanwhile go out with the retry anyway.
const CONFLICT_BACKOFF_DIVISOR: u32 = 8;

/// After a write that carried at least this many edits, the next one waits for more.
const HOLD_AFTER_EDITS: usize = 2;

/// The longest such wait, whatever the last write took (one slowed by retries, say).
const HOLD_AT_MOST: Duration = Duration::from_millis(500);

/// The IAM writer every API client shares. Writes of one policy fold: while a batch is being
/// written, further edits queue and go out together in the next read-modify-write, each caller
/// still getting its own outcome. A batch starts from the policy as this process last read or
/// wrote it; its etag either proves it current or earns a 409 and a re-read, so a stale copy
/// costs a call, never a change.
#[derive(Debug)]
pub(crate) struct IamWriter {
    transport: Arc<Transport>,
    policies: Arc<Policies>,
}

type Policies = Mutex<HashMap<String, Slot>>;

/// One policy's writes in this process.
#[derive(Debug, Default)]
struct Slot {
    /// A task is writing batches of this policy; it takes `queue` before it stops.
    writing: bool,
    /// Edits waiting for the next batch.
    queue: Vec<Editor>,
    /// The policy as this process last read or wrote it (always with an etag).
    known: Option<Policy>,
    /// Woken when an edit joins `queue`.
    arrived: Arc<Notify>,
}

/// A caller waiting on a batch. Its edit borrows the caller's data, so it runs in the caller's
/// task: the batch hands it the draft and gets it back edited.
#[derive(Debug)]
struct Editor {
    turns: mpsc::UnboundedSender<Turn>,
}

#[derive(Debug)]
enum Turn {
    /// Apply your edit to this draft; answer with it and whether the edit changed it.
    Edit(Policy, oneshot::Sender<(Policy, bool)>),
    /// Your edit's outcome: the policy written (or read, when nothing changed), or the error.
    Done(Result<Policy, Error>),
}

impl Editor {
    fn new() -> (Editor, mpsc::UnboundedReceiver<Turn>) {
        let (turns, receiver) = mpsc::unbounded_channel();
        (Editor { turns }, receiver)
    }

    /// The draft with this caller's edit applied; `None` when the caller has gone away.
    async fn edit(&self, draft: Policy) -> Option<(Policy, bool)> {
        let (reply, answer) = oneshot::channel();
        self.turns.send(Turn::Edit(draft, reply)).ok()?;
        answer.await.ok()
    }

    fn finish(self, outcome: Result<Policy, Error>) {
        // A caller that went away needs no answer.
        let _ = self.turns.send(Turn::Done(outcome));
    }
}

fn finish_all(group: Vec<Editor>, outcome: &Result<Policy, Error>) {
    for editor in group {
        editor.finish(outcome.clone());
    }
}

fn lock(policies: &Policies) -> MutexGuard<'_, HashMap<String, Slot>> {
    policies
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl IamWriter {
    pub(crate) fn new(transport: Arc<Transport>) -> Self {
        Self {
            transport,
            policies: Arc::default(),
        }
    }

    /// Has `modify` edit the policy in the next batch written to it, and returns the policy that
    /// write left (or the one read, when no edit of the batch changed anything). On 409 ABORTED
    /// (a concurrent change) the edit goes into a later batch, after a backoff, until `deadline`.
    /// `modify` may run several times, on a new draft each time; its last run is what was written.
    pub(crate) async fn read_modify_write<S: PolicyStore>(
        &self,
        store: S,
        deadline: Instant,
        mut modify: impl FnMut(&mut Policy) -> bool,
    ) -> Result<Policy, Error> {
        let transport = &self.transport;
        // Google's advice for a 409 here is to retry the whole cycle, and many writers of one policy
        // (a parallel apply, other tools) make conflicts common, so they get a larger budget than a
        // failed call; the deadline still bounds it.
        let max_attempts = transport
            .retry
            .max_attempts
            .max(1)
            .saturating_mul(CONFLICT_ATTEMPTS_FACTOR);
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.commit(&store, &mut modify).await {
                Err(e) if e.is_conflict() => {
                    let delay = transport.backoff(attempt) / CONFLICT_BACKOFF_DIVISOR;
                    if attempt >= max_attempts || Instant::now() + delay >= deadline {
                        return Err(e.with_hint(format!(
                            "The policy kept changing concurrently; gave up after {attempt} attempts"
                        )));
                    }
                    tracing::debug!(resource = %store.key(), attempt, "IAM policy conflict, re-reading");
                    // Writers of this policy queued behind us go meanwhile; the retry starts from a
                    // fresh read.
                    transport.pause(delay).await?;
                }
                outcome => return outcome,
            }
        }
    }

    /// One attempt: joins the batch being gathered for the policy (starting its writer when none
    /// runs) and applies `modify` whenever the batch asks, until the batch reports the outcome.
    async fn commit<S: PolicyStore>(
        &self,
        store: &S,
        modify: &mut impl FnMut(&mut Policy) -> bool,
    ) -> Result<Policy, Error> {
        let key = store.key();
        let (editor, mut turns) = Editor::new();
        let first = {
            let mut policies = lock(&self.policies);
            let slot = policies.entry(key.clone()).or_default();
            if slot.writing {
                slot.queue.push(editor);
                slot.arrived.notify_one();
                None
            } else {
                slot.writing = true;
                Some((editor, slot.arrived.clone()))
            }
        };
        if let Some((first, arrived)) = first {
            // A task of its own, so a caller Terraform cancels cannot strand the others.
            let writer = BatchWriter {
                policies: self.policies.clone(),
                key,
                store: store.clone(),
                arrived,
            };
            tokio::spawn(writer.run(first));
        }
        while let Some(turn) = turns.recv().await {
            match turn {
                Turn::Edit(mut draft, reply) => {
                    let changed = modify(&mut draft);
                    // The batch carries on without this edit if it stopped listening.
                    let _ = reply.send((draft, changed));
                }
                Turn::Done(outcome) => return outcome,
            }
        }
        // The writer task was dropped unfinished: the runtime is shutting down.
        Err(Error::Cancelled)
    }
}

/// The task writing one policy's batches until its queue is empty.
struct BatchWriter<S> {
    policies: Arc<Policies>,
    key: String,
    store: S,
    arrived: Arc<Notify>,
}

/// Releases a stopped writer's policy if its task is dropped unfinished: the queued callers are
/// answered (their channels close) rather than left waiting.
struct Claim<'a> {
    policies: &'a Policies,
    key: &'a str,
    held: bool,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        if self.held {
            lock(self.policies).remove(self.key);
        }
    }
}

impl<S: PolicyStore> BatchWriter<S> {
    /// Writes the batch of `first`, then whatever queued meanwhile, batch after batch. After a
    /// batch of several edits, the next one waits for one edit more than that batch carried, for at
    /// most half the time the batch took: edits that come that thick come from a parallel apply
    /// whose next ones are on their way, and a write that waits a little for them saves a whole
    /// write later (docs/performance.md, "IAM writes that fold"). A lone edit never waits.
    async fn run(self, first: Editor) {
        let mut claim = Claim {
            policies: &self.policies,
            key: &self.key,
            held: true,
        };
        let mut known = lock(&self.policies)
            .get_mut(&self.key)
            .and_then(|slot| slot.known.take());
        let mut batch = vec![first];
        loop {
            let (edits, started) = (batch.len(), tokio::time::Instant::now());
            known = self.write_batch(batch, known).await;
            if edits >= HOLD_AFTER_EDITS {
                let until = started.elapsed().min(HOLD_AT_MOST * 2) / 2;
                self.gather(edits + 1, tokio::time::Instant::now() + until)
                    .await;
            }
            let mut policies = lock(&self.policies);
            let slot = policies.entry(self.key.clone()).or_default();
            if slot.queue.is_empty() {
                // Only a copy with an etag may start a write: its etag guards against a stale copy.
                match known.filter(|p| p.etag.is_some()) {
                    Some(policy) => {
                        slot.writing = false;
                        slot.known = Some(policy);
                    }
                    None => {
                        policies.remove(&self.key);
                    }
                }
                claim.held = false;
                return;
            }
            batch = std::mem::take(&mut slot.queue);
            if batch.len() > 1 {
                tracing::debug!(resource = %self.key, edits = batch.len(), "IAM policy edits folded into one write");
            }
        }
    }

    /// Waits until `edits` are queued, or until `until`.
    async fn gather(&self, edits: usize, until: tokio::time::Instant) {
        loop {
            // `notify_one` keeps a permit while nobody waits: an edit queued between the look at
            // the queue and the wait still ends the wait.
            let arrived = self.arrived.notified();
            let queued = lock(&self.policies).get(&self.key).map(|s| s.queue.len());
            if queued.is_none_or(|n| n >= edits) {
                return;
            }
            if tokio::time::timeout_at(until, arrived).await.is_err() {
                return;
            }
        }
    }

    /// Writes one batch: every edit applied to one copy of the policy, one setIamPolicy. A write
    /// refused for what it asks is split in halves until each edit meets only its own error.
    /// `base` is the policy as last known (`None`: read it). Returns the policy as it now stands,
    /// `None` when that is unknown.
    async fn write_batch(&self, batch: Vec<Editor>, mut base: Option<Policy>) -> Option<Policy> {
        // Whether `base` comes from a read of this batch with no write since: only then may a batch
        // that changes nothing answer without writing. A copy from earlier is confirmed first.
        let mut read_now = false;
        let mut groups = vec![batch];
        while let Some(mut group) = groups.pop() {
            let current = match &base {
                Some(policy) => policy.clone(),
                None => match self.store.read().await {
                    Ok(policy) => {
                        read_now = true;
                        base = Some(policy.clone());
                        policy
                    }
                    Err(e) => {
                        let outcome = Err(e);
                        finish_all(group, &outcome);
                        for group in groups {
                            finish_all(group, &outcome);
                        }
                        return None;
                    }
                },
            };
            let (mut draft, changed) = match apply_edits(&group, current.clone()).await {
                Ok(edited) => edited,
                Err(gone) => {
                    // That caller went away, with the draft: the rest start again from `base`.
                    group.remove(gone);
                    if !group.is_empty() {
                        groups.push(group);
                    }
                    continue;
                }
            };
            if !changed {
                if read_now {
                    finish_all(group, &Ok(current));
                } else {
                    base = None;
                    groups.push(group);
                }
                continue;
            }
            draft.prepare_for_write();
            match self.store.write(&draft).await {
                Ok(written) => {
                    read_now = false;
                    base = Some(written.clone());
                    finish_all(group, &Ok(written));
                }
                Err(e) if group.len() > 1 && may_be_one_edits_fault(&e) => {
                    tracing::debug!(resource = %self.key, edits = group.len(), error = %e, "folded IAM policy write refused; splitting it");
                    let second = group.split_off(group.len() / 2);
                    groups.push(second);
                    groups.push(group);
                }
                Err(e) if e.is_conflict() && !read_now => {
                    // `base` was a remembered copy (or this batch's last write) and is stale: the
                    // read it saved is due now. Only a conflict after a fresh read is contention,
                    // which the callers back off from.
                    tracing::debug!(resource = %self.key, "remembered IAM policy was stale; re-reading");
                    base = None;
                    groups.push(group);
                }
                Err(e) => {
                    // A 409 means `base` was stale; after any other failure it may be.
                    read_now = false;
                    base = None;
                    finish_all(group, &Err(e));
                }
            }
        }
        base
    }
}

/// `draft` with every edit of `group` applied in turn, and whether any changed it; `Err` holds the
/// index of an editor whose caller went away.
async fn apply_edits(group: &[Editor], mut draft: Policy) -> Result<(Policy, bool), usize> {
    let mut changed = false;
    for (i, editor) in group.iter().enumerate() {
        let (edited, edit_changed) = editor.edit(draft).await.ok_or(i)?;
        draft = edited;
        changed |= edit_changed;
    }
    Ok((draft, changed))
}

/// Whether a refused write may be the fault of one edit in it (400: a member or condition the API
/// rejects), so the batch is worth splitting. Conflicts, missing resources, permissions and outages
/// are every edit's.
fn may_be_one_edits_fault(error: &Error) -> bool {
    matches!(error, Error::Api(e) if e.http_status == 400)
}

#[cfg(test)]
mod writer_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy(value: Value) -> Policy {
        Policy::from_value(value).expect("valid policy")
    }

    #[test]
    fn round_trips_unknown_fields() {
        let original = json!({
            "version": 3, "etag": "BwYx=",
            "auditConfigs": [{"service": "allServices", "auditLogConfigs": [{"logType": "DATA_READ"}]}],
            "bindings": [
                {"role": "roles/a", "members": ["user:a@x.com"], "futureField": {"n": 1.50}},
                {"role": "roles/b", "members": ["group:g@x.com"],
                 "condition": {"title": "t", "expression": "true", "extraCond": 7}}
            ]
        });
        let p = policy(original.clone());
        assert_eq!(p.version, Some(3));
        assert_eq!(p.bindings.len(), 2);
        assert_eq!(p.to_value(), original);
        let through_serde: Policy =
            serde_json::from_str(&serde_json::to_string(&p).expect("serialize")).expect("parse");
        assert_eq!(through_serde, p);
    }

    #[test]
    fn rejects_wrong_types_without_panicking() {
        assert!(Policy::from_value(json!([])).is_err());
        assert!(Policy::from_value(json!({"bindings": "x"})).is_err());
        assert!(Policy::from_value(json!({"bindings": [{"role": 1}]})).is_err());
        assert!(Policy::from_value(json!({"bindings": [{"members": [1]}]})).is_err());
        assert!(Policy::from_value(json!({"version": "3"})).is_err());
        assert!(Policy::from_value(json!({"version": 1.5})).is_err());
        assert!(Policy::from_value(json!({"etag": null})).is_ok());
        assert!(serde_json::from_str::<Policy>(r#"{"bindings":[{"condition":"x"}]}"#).is_err());
    }

    #[test]
    fn normalises_members() {
        assert_eq!(
            normalize_member("user:Alice@Example.COM"),
            "user:alice@example.com"
        );
        assert_eq!(normalize_member("group:G@X.com"), "group:g@x.com");
        assert_eq!(
            normalize_member("serviceAccount:SA@p.iam.gserviceaccount.com"),
            "serviceAccount:sa@p.iam.gserviceaccount.com"
        );
        assert_eq!(normalize_member("domain:Example.com"), "domain:example.com");
        let principal =
            "principal://iam.googleapis.com/locations/global/workforcePools/P/subject/Bob";
        assert_eq!(normalize_member(principal), principal);
        assert_eq!(normalize_member("allUsers"), "allUsers");
        assert_eq!(normalize_member(" user:a@b.c "), "user:a@b.c");
    }

    #[test]
    fn add_and_remove_member() {
        let mut p = policy(json!({"etag": "e", "bindings": [
            {"role": "roles/run.invoker", "members": ["user:a@x.com"]},
            {"role": "roles/other", "members": ["user:z@x.com"]}
        ]}));
        assert!(!p.add_member("roles/run.invoker", "user:A@X.com", None));
        assert!(p.add_member("roles/run.invoker", "serviceAccount:S@x.com", None));
        assert_eq!(
            p.members("roles/run.invoker", None),
            vec!["user:a@x.com", "serviceAccount:s@x.com"]
        );
        let cond = Condition::new("t", "true");
        assert!(p.add_member("roles/run.invoker", "user:b@x.com", Some(&cond)));
        assert_eq!(p.bindings.len(), 3);
        assert!(!p.has_member("roles/run.invoker", "user:b@x.com", None));
        assert!(p.has_member("roles/run.invoker", "user:b@x.com", Some(&cond)));

        assert!(p.remove_member("roles/run.invoker", "user:b@x.com", Some(&cond)));
        assert_eq!(p.bindings.len(), 2, "emptied binding dropped");
        assert!(!p.remove_member("roles/run.invoker", "user:nobody@x.com", None));
        assert!(p.remove_member("roles/run.invoker", "user:A@x.com", None));
        assert_eq!(
            p.members("roles/run.invoker", None),
            vec!["serviceAccount:s@x.com"]
        );
        assert_eq!(p.members("roles/other", None), vec!["user:z@x.com"]);
    }

    #[test]
    fn set_binding_is_authoritative_for_its_pair_only() {
        let original = json!({"version": 3, "etag": "e", "auditConfigs": [{"service": "s"}], "bindings": [
            {"role": "roles/x", "members": ["user:keep@x.com", "user:Mixed@X.com"], "unknown": true},
            {"role": "roles/iap.httpsResourceAccessor", "members": ["user:old@x.com"]},
            {"role": "roles/iap.httpsResourceAccessor", "members": ["user:c@x.com"],
             "condition": {"title": "t", "expression": "e1"}},
            {"role": "roles/iap.httpsResourceAccessor", "members": ["user:dup@x.com"]}
        ]});
        let mut p = policy(original.clone());
        let desired = vec!["user:New@x.com".to_string(), "group:g@x.com".to_string()];
        assert!(p.set_binding("roles/iap.httpsResourceAccessor", None, &desired));
        let v = p.to_value();
        let bindings = v["bindings"].as_array().expect("bindings");
        assert_eq!(bindings.len(), 3);
        assert_eq!(
            bindings[0], original["bindings"][0],
            "other binding byte for byte"
        );
        assert_eq!(
            bindings[1],
            json!({"role": "roles/iap.httpsResourceAccessor", "members": ["user:new@x.com", "group:g@x.com"]})
        );
        assert_eq!(
            bindings[2], original["bindings"][2],
            "conditional binding untouched"
        );
        assert_eq!(v["auditConfigs"], original["auditConfigs"]);
        assert_eq!(v["etag"], "e");

        // Same members in another order and case: no change.
        let same = vec!["group:g@x.com".to_string(), "user:new@X.com".to_string()];
        assert!(!p.set_binding("roles/iap.httpsResourceAccessor", None, &same));

        // The conditional pair is separate; empty list removes it.
        let cond = Condition::new("t", "e1");
        assert!(p.set_binding("roles/iap.httpsResourceAccessor", Some(&cond), &[]));
        assert_eq!(p.bindings.len(), 2);
        assert!(!p.set_binding("roles/iap.httpsResourceAccessor", Some(&cond), &[]));
        assert!(p.set_binding("roles/new", Some(&cond), &["user:q@x.com".to_string()]));
        assert_eq!(
            p.bindings.last().map(|b| b.role.as_str()),
            Some("roles/new")
        );
    }

    #[test]
    fn condition_identity_ignores_location_and_absent_description() {
        let a = Condition::new("t", "expr");
        let mut b = Condition::new("t", "expr");
        b.description = Some(String::new());
        b.location = Some("file.cel".into());
        assert!(a.same_as(&b));
        b.description = Some("d".into());
        assert!(!a.same_as(&b));
    }

    #[test]
    fn prepare_for_write_sets_version_and_drops_empty_bindings() {
        let mut p = policy(json!({"bindings": [
            {"role": "roles/a", "members": []},
            {"role": "roles/b", "members": ["user:a@x.com"], "condition": {"title": "t", "expression": "true"}}
        ]}));
        p.prepare_for_write();
        assert_eq!(p.bindings.len(), 1);
        assert_eq!(p.version, Some(3));
        let mut plain = policy(
            json!({"version": 1, "bindings": [{"role": "roles/a", "members": ["user:a@x.com"]}]}),
        );
        plain.prepare_for_write();
        assert_eq!(plain.version, Some(1));
    }
}
