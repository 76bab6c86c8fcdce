//! How a tool reaches an HTTP server: its base URL, credentials kept apart from it,
//! a timeout, and a bound on what it reads back. Shared by the Prometheus and
//! Alertmanager clients so that credentials and failures are handled once.

use std::time::Duration;

use chrono::Utc;
use reqwest::header::HeaderMap;
use reqwest::redirect::Policy;
use reqwest::{Method, RequestBuilder, StatusCode, Url};

use super::error::{ErrorKind, Result, ToolError, kind_of_status, transport};

/// Responses larger than this are refused: a tool's answer goes to a model, and a
/// query that returns more needs narrowing, not a bigger buffer.
const MAX_BODY: usize = 16 * 1024 * 1024;

/// Credentials for a server. `Debug` shows the kind only.
#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    Bearer(String),
    Basic { user: String, password: String },
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::Bearer(_) => f.write_str("Bearer(<redacted>)"),
            Auth::Basic { user, .. } => write!(f, "Basic({user}, <redacted>)"),
        }
    }
}

/// A server's answer that arrived: status, headers and the (bounded) body.
pub(crate) struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    /// The kind of failure this answer's status means (only for non-2xx).
    pub fn error_kind(&self) -> ErrorKind {
        kind_of_status(self.status, &self.headers, Utc::now())
    }

    /// The body as text for a message: a JSON string unquoted, at most 500 chars.
    pub fn excerpt(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        let text = serde_json::from_str::<String>(&text).unwrap_or_else(|_| text.into_owned());
        let text = text.trim();
        match text.char_indices().nth(500) {
            Some((at, _)) => format!("{}…", &text[..at]),
            None => text.to_owned(),
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Endpoint {
    /// "Prometheus at http://host:9090/": names the server in messages.
    name: String,
    base: Url,
    auth: Option<Auth>,
    http: reqwest::Client,
    timeout: Duration,
}

impl Endpoint {
    /// `base_url` may carry `user:password@`: it becomes Basic credentials (unless
    /// `auth` is given) and leaves the URL, so no message or log can show it.
    pub fn new(
        server: &str,
        base_url: &str,
        auth: Option<Auth>,
        timeout: Duration,
    ) -> Result<Endpoint> {
        Self::build(server, base_url, auth, timeout, Policy::default())
    }

    /// An endpoint that follows no redirect: what is sent to it (a signed request)
    /// goes to this URL or nowhere; a 3xx answer is a permanent failure.
    pub fn without_redirects(server: &str, url: &str, timeout: Duration) -> Result<Endpoint> {
        Self::build(server, url, None, timeout, Policy::none())
    }

    fn build(
        server: &str,
        base_url: &str,
        auth: Option<Auth>,
        timeout: Duration,
        redirects: Policy,
    ) -> Result<Endpoint> {
        let mut base = Url::parse(base_url)
            .map_err(|e| ToolError::permanent(format!("{server}: invalid base URL: {e}")))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(ToolError::permanent(format!(
                "{server}: base URL must be http or https"
            )));
        }
        let from_url = (!base.username().is_empty()).then(|| Auth::Basic {
            user: base.username().to_owned(),
            password: base.password().unwrap_or_default().to_owned(),
        });
        // Cannot fail on an http(s) URL.
        let _ = base.set_username("");
        let _ = base.set_password(None);
        let http = reqwest::Client::builder()
            .redirect(redirects)
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .build()
            .map_err(|e| transport(server, e))?;
        Ok(Endpoint {
            name: format!("{server} at {base}"),
            base,
            auth: auth.or(from_url),
            http,
            timeout,
        })
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The base URL (credentials removed).
    pub fn base(&self) -> &Url {
        &self.base
    }

    /// A request to the base URL's path followed by `segments` (each escaped).
    pub fn request(&self, method: Method, segments: &[&str]) -> RequestBuilder {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        self.authenticated(self.http.request(method, url))
    }

    /// A request to the base URL exactly as configured (its trailing '/' and query
    /// kept): for an endpoint that is one URL, such as a webhook.
    pub fn request_to_base(&self, method: Method) -> RequestBuilder {
        self.authenticated(self.http.request(method, self.base.clone()))
    }

    fn authenticated(&self, request: RequestBuilder) -> RequestBuilder {
        match &self.auth {
            None => request,
            Some(Auth::Bearer(token)) => request.bearer_auth(token),
            Some(Auth::Basic { user, password }) => request.basic_auth(user, Some(password)),
        }
    }

    /// The failure a non-2xx `answer` means: classified by its status (and
    /// Retry-After), quoting what the server said.
    pub fn failure(&self, answer: &Answer) -> ToolError {
        ToolError {
            kind: answer.error_kind(),
            message: format!(
                "{} answered {}: {}",
                self.name,
                answer.status,
                answer.excerpt()
            ),
        }
    }

    /// Sends `request` and reads the answer, whatever its status. Only a missing
    /// answer (or one too large) is an error here.
    pub async fn send(&self, request: RequestBuilder) -> Result<Answer> {
        let mut response = request.send().await.map_err(|e| transport(&self.name, e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| transport(&self.name, e))?
        {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(ToolError::permanent(format!(
                    "{}: answer larger than {} MiB; narrow the request",
                    self.name,
                    MAX_BODY / (1024 * 1024)
                )));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Answer {
            status,
            headers,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_the_url_leave_it() {
        let endpoint = Endpoint::new(
            "Prometheus",
            "https://alice:s3cret@prom.example:9090/prefix/",
            None,
            Duration::from_secs(5),
        )
        .expect("endpoint");
        assert_eq!(
            endpoint.name(),
            "Prometheus at https://prom.example:9090/prefix/"
        );
        assert_eq!(
            endpoint.auth,
            Some(Auth::Basic {
                user: "alice".into(),
                password: "s3cret".into()
            })
        );
        assert!(!format!("{endpoint:?}").contains("s3cret"));
        let request = endpoint
            .request(Method::GET, &["api", "v1", "query"])
            .build()
            .expect("request");
        assert_eq!(
            request.url().as_str(),
            "https://prom.example:9090/prefix/api/v1/query"
        );
    }

    #[test]
    fn only_http_urls() {
        for url in ["ftp://host/", "not a url", "mailto:ops@example.com"] {
            let error =
                Endpoint::new("Prometheus", url, None, Duration::from_secs(1)).expect_err(url);
            assert_eq!(error.kind, ErrorKind::Permanent);
        }
    }
}
