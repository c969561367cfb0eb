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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn concurrent_reads_make_one_call_and_failures_are_not_cached() {
        let cache: Arc<Coalesced<u32>> = Arc::new(Coalesced::default());
        let calls = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let (cache, calls) = (cache.clone(), calls.clone());
            tasks.push(tokio::spawn(async move {
                cache
                    .get_or_fetch("k", || async {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::task::yield_now().await;
                        Ok::<_, String>(7)
                    })
                    .await
            }));
        }
        for t in tasks {
            assert_eq!(t.await.expect("task"), Ok(7));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        let failed = cache
            .get_or_fetch("e", || async { Err::<u32, _>("down") })
            .await;
        assert_eq!(failed, Err("down"));
        assert_eq!(
            cache.get_or_fetch("e", || async { Ok::<_, &str>(3) }).await,
            Ok(3)
        );

        cache.put("k", 9);
        assert_eq!(
            cache.get_or_fetch("k", || async { Ok::<_, &str>(1) }).await,
            Ok(9)
        );
        cache.invalidate("k");
        assert_eq!(
            cache.get_or_fetch("k", || async { Ok::<_, &str>(1) }).await,
            Ok(1)
        );
    }
}
