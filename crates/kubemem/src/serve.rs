//! Serving the in-memory API over plain HTTP on loopback, so that real clients
//! (`kubectl`, the operator binary via a kubeconfig) can talk to it.

use std::net::SocketAddr;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::ApiServer;

/// A running HTTP listener for an [`ApiServer`].
#[derive(Debug)]
pub struct Served {
    addr: SocketAddr,
    stop: CancellationToken,
}

impl Served {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`, the `server` of a kubeconfig.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kubeconfig (YAML) pointing at this server with namespace `default`.
    pub fn kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: azlin-local\n  cluster:\n    server: {}\ncontexts:\n- name: azlin-local\n  context:\n    cluster: azlin-local\n    user: azlin-local\n    namespace: default\ncurrent-context: azlin-local\nusers:\n- name: azlin-local\n  user: {{}}\n",
            self.url()
        )
    }

    /// Stops accepting connections.
    pub fn stop(&self) {
        self.stop.cancel();
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl ApiServer {
    /// Serves this API over HTTP on `addr` (use port 0 for any free port) until the
    /// returned handle is stopped or dropped. Only meant for loopback addresses.
    pub async fn serve(&self, addr: SocketAddr) -> std::io::Result<Served> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let stop = CancellationToken::new();
        let token = stop.clone();
        let api = self.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    _ = token.cancelled() => break,
                    accepted = listener.accept() => match accepted {
                        Ok(conn) => conn,
                        Err(e) => {
                            tracing::warn!(error = %e, "in-memory API: accept failed");
                            continue;
                        }
                    },
                };
                let service = TowerToHyperService::new(api.clone());
                let conn_token = token.clone();
                tokio::spawn(async move {
                    let builder = auto::Builder::new(TokioExecutor::new());
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    tokio::select! {
                        _ = conn_token.cancelled() => {}
                        r = conn => if let Err(e) = r {
                            tracing::debug!(error = %e, "in-memory API connection ended");
                        }
                    }
                });
            }
        });
        Ok(Served { addr, stop })
    }
}
