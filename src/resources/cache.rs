//! Read coalescing: concurrent reads of one object within a provider process share one API call,
//! and later reads in the same process reuse its answer. Terraform starts a fresh provider process per
//! phase, so a cached answer lives at most for one plan or apply; writes never start from it.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

/// A map of values fetched at most once per key (until invalidated or replaced).
pub struct Coalesced<V> {
    cells: Mutex<HashMap<String, Arc<OnceCell<V>>>>,
}

impl<V: Clone> Default for Coalesced<V> {
    fn default() -> Self {
        Self {
            cells: Mutex::new(HashMap::new()),
        }
    }
}

impl<V: Clone> Coalesced<V> {
    fn cell(&self, key: &str) -> Arc<OnceCell<V>> {
        let mut cells = self
            .cells
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        cells.entry(key.to_string()).or_default().clone()
    }

    /// The cached value of `key`, or the result of `fetch`, run by exactly one of the concurrent
    /// callers. A failed fetch is not cached: the next caller tries again.
    pub async fn get_or_fetch<E, F, Fut>(&self, key: &str, fetch: F) -> Result<V, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>>,
    {
        self.cell(key).get_or_try_init(fetch).await.cloned()
    }

    /// Replaces the cached value (after a write, with what the write returned).
    pub fn put(&self, key: &str, value: V) {
        let cell = OnceCell::new_with(Some(value));
        let mut cells = self
            .cells
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        cells.insert(key.to_string(), Arc::new(cell));
    }

    /// Forgets the cached value.
    pub fn invalidate(&self, key: &str) {
        let mut cells = self
            .cells
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        cells.remove(key);
    }
}
