//! Serving a provider inside the test process and pointing Terraform at it with
//! `TF_REATTACH_PROVIDERS`, Terraform's debug mode: lets a test drive any framework provider (a
//! test-only one, or the real one with test doubles) through the real protocol layer and a real
//! Terraform, without building a binary for it.

use std::path::PathBuf;
use std::sync::mpsc;
use std::thread::JoinHandle;

use iaprun::framework::Provider;

/// A provider served on a unix socket (plaintext, as reattach mode requires), as go-plugin's
/// debug servers do, until dropped.
pub struct Reattached {
    /// The socket's path.
    pub socket: PathBuf,
    /// Holds the socket; removed on drop.
    directory: tempfile::TempDir,
    source: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Reattached {
    /// Serves `provider` for the provider source address `source`
    /// (e.g. `registry.terraform.io/example/fixture`) on its own runtime thread, so tests may block
    /// on Terraform while it answers.
    pub fn serve<P: Provider>(provider: P, source: &str) -> Self {
        // In the system's temporary directory: a socket path may be at most 107 bytes long.
        let directory = tempfile::tempdir().expect("a directory for the socket");
        let socket = directory.path().join("plugin.sock");
        let (bound_tx, bound_rx) = mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let path = socket.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let listener = tokio::net::UnixListener::bind(&path).expect("bind the socket");
                bound_tx.send(()).expect("test waiting for the socket");
                let result = iaprun::protocol::serve_with(listener, None, provider, async {
                    let _ = stopped.await;
                })
                .await;
                if let Err(e) = result {
                    eprintln!("reattached provider failed: {e}");
                }
            });
        });
        bound_rx
            .recv()
            .expect("the provider thread reports the socket bound");
        Self {
            socket,
            directory,
            source: source.to_string(),
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// The value of `TF_REATTACH_PROVIDERS` that makes Terraform use this server.
    pub fn env_value(&self) -> String {
        serde_json::json!({
            self.source.clone(): {
                "Protocol": "grpc",
                "ProtocolVersion": 5,
                "Pid": std::process::id(),
                // Test mode: Terraform neither waits for nor kills the process.
                "Test": true,
                "Addr": { "Network": "unix", "String": self.socket.display().to_string() },
            }
        })
        .to_string()
    }
}

impl Drop for Reattached {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
