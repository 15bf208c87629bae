//! Test support: a scripted ARM stand-in on 127.0.0.1:0 that answers each (method, path) with a
//! queue of canned replies and records every request, for fault, retry and LRO tests.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::client::ArmClient;
use super::config::ArmConfig;

/// A canned reply. `{base}` in header values and string bodies is replaced by the server's base URL.
#[derive(Debug, Clone)]
pub struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    /// A JSON reply.
    pub fn json(status: u16, body: Value) -> Reply {
        Reply {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string(),
        }
    }

    /// An empty reply.
    pub fn empty(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: String::new(),
        }
    }

    /// An ARM error envelope.
    pub fn error(status: u16, code: &str, message: &str) -> Reply {
        Reply::json(status, json!({"error": {"code": code, "message": message}}))
    }

    /// An async-operation status body.
    pub fn operation(status: &str) -> Reply {
        Reply::json(200, json!({"status": status}))
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
}

/// A recorded request.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Method.
    pub method: String,
    /// Path.
    pub path: String,
    /// Query string.
    pub query: String,
    /// `Authorization` header.
    pub authorization: Option<String>,
    /// Body.
    pub body: String,
}

struct Rule {
    method: String,
    path: String,
    replies: VecDeque<Reply>,
}

#[derive(Default)]
struct ScriptState {
    base: String,
    rules: Vec<Rule>,
    log: Vec<Recorded>,
}

/// The scripted server; stops when dropped.
pub struct ScriptServer {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    state: Arc<Mutex<ScriptState>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ScriptServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(State(state): State<Arc<Mutex<ScriptState>>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_else(|_| Bytes::new());
    let method = parts.method.to_string();
    let path = parts.uri.path().to_string();
    let Ok(mut st) = state.lock() else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    st.log.push(Recorded {
        method: method.clone(),
        path: path.clone(),
        query: parts.uri.query().unwrap_or_default().to_string(),
        authorization: parts
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    let base = st.base.clone();
    let reply = st
        .rules
        .iter_mut()
        .find(|r| r.method.eq_ignore_ascii_case(&method) && r.path.eq_ignore_ascii_case(&path))
        .and_then(|r| {
            if r.replies.len() > 1 {
                r.replies.pop_front()
            } else {
                r.replies.front().cloned()
            }
        })
        .unwrap_or_else(|| Reply::error(404, "ResourceNotFound", "not scripted"));
    drop(st);
    let mut response = (
        StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        reply.body.replace("{base}", &base),
    )
        .into_response();
    for (k, v) in reply.headers {
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(&v.replace("{base}", &base)),
        ) {
            response.headers_mut().insert(k, v);
        }
    }
    response
}

impl ScriptServer {
    /// Starts the server on 127.0.0.1 with an OS-chosen port.
    pub async fn start() -> ScriptServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let base = format!("http://{}", listener.local_addr().expect("local addr"));
        let (state, app) = Self::app(&base);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        ScriptServer { base, state, task }
    }

    /// Starts the server over HTTPS with a fresh CA; returns the CA certificate as PEM.
    pub async fn start_tls() -> (ScriptServer, String) {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
        use tokio_rustls::rustls;

        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("ca key"))
            .expect("ca cert");
        let leaf_key = KeyPair::generate().expect("leaf key");
        let leaf = CertificateParams::new(vec!["127.0.0.1".to_string()])
            .expect("leaf params")
            .signed_by(&leaf_key, &ca)
            .expect("leaf cert");
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into());
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der().clone()], key)
        .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let base = format!("https://{}", listener.local_addr().expect("local addr"));
        let (state, app) = Self::app(&base);
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, app) = (acceptor.clone(), app.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper_util::service::TowerToHyperService::new(app);
                    let _ = hyper_util::server::conn::auto::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
                });
            }
        });
        (ScriptServer { base, state, task }, ca.pem())
    }

    fn app(base: &str) -> (Arc<Mutex<ScriptState>>, axum::Router) {
        let state = Arc::new(Mutex::new(ScriptState {
            base: base.to_string(),
            ..Default::default()
        }));
        (
            state.clone(),
            axum::Router::new().fallback(handle).with_state(state),
        )
    }

    /// Scripts `method path`: replies are served in order, the last one repeats.
    pub fn on(&self, method: &str, path: &str, replies: Vec<Reply>) {
        let rule = Rule {
            method: method.to_string(),
            path: path.to_string(),
            replies: replies.into(),
        };
        self.state.lock().expect("script state").rules.push(rule);
    }

    /// All requests so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().expect("script state").log.clone()
    }

    /// How many requests hit `method path`.
    pub fn count(&self, method: &str, path: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.method == method && r.path == path)
            .count()
    }

    /// Emulator-style config (static token `test-token`, fast LRO and retries) for subscription `sub`.
    pub fn config(&self) -> ArmConfig {
        ArmConfig::for_emulator(&self.base, "sub", "test-token").expect("valid config")
    }

    /// A client from [`ScriptServer::config`].
    pub fn client(&self) -> ArmClient {
        ArmClient::new(self.config()).expect("client")
    }
}
