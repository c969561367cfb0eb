//! Serving a provider inside the test process and pointing Terraform at it with
//! `TF_REATTACH_PROVIDERS`, Terraform's debug mode: lets a test drive any framework provider (a
//! test-only one, or the real one with test doubles) through the real protocol layer and a real
//! Terraform, without building a binary for it.

use std::net::SocketAddr;
use std::sync::mpsc;
use std::thread::JoinHandle;

use iaprun::framework::Provider;

/// A provider served on 127.0.0.1 (plaintext, as reattach mode requires) until dropped.
pub struct Reattached {
    pub address: SocketAddr,
    source: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Reattached {
    /// Serves `provider` for the provider source address `source`
    /// (e.g. `registry.terraform.io/example/fixture`) on its own runtime thread, so tests may block
    /// on Terraform while it answers.
    pub fn serve<P: Provider>(provider: P, source: &str) -> Self {
        let (address_tx, address_rx) = mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
                    .await
                    .expect("bind 127.0.0.1");
                address_tx
                    .send(listener.local_addr().expect("address"))
                    .expect("test waiting for the address");
                let result = iaprun::protocol::serve_with(listener, None, provider, async {
                    let _ = stopped.await;
                })
                .await;
                if let Err(e) = result {
                    eprintln!("reattached provider failed: {e}");
                }
            });
        });
        let address = address_rx
            .recv()
            .expect("the provider thread reports its address");
        Self {
            address,
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
                "Addr": { "Network": "tcp", "String": self.address.to_string() },
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
