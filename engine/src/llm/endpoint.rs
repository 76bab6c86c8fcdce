//! Where a model's calls go and how they authenticate, per provider kind.

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use crate::model::{ModelConnection, ProviderKind};

/// The `anthropic-version` every Messages request carries.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// One model's call target: the URL, the headers (the key marked sensitive, so
/// reqwest never prints it) and the model name the body carries.
#[derive(Clone)]
pub struct Endpoint {
    kind: ProviderKind,
    url: String,
    headers: HeaderMap,
    model: String,
    breaker_key: String,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("kind", &self.kind)
            .field("url", &self.url)
            .field("model", &self.model)
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    pub fn new(conn: &ModelConnection) -> Result<Endpoint, String> {
        let base = conn.provider.base_url.trim_end_matches('/');
        let model = conn.model.upstream.clone();
        let url = match conn.provider.kind {
            ProviderKind::OpenAi => format!("{base}/chat/completions"),
            ProviderKind::AzureOpenAi => match &conn.provider.azure_api_version {
                Some(version) => format!(
                    "{base}/openai/deployments/{}/chat/completions?api-version={}",
                    urlencoding(&model),
                    urlencoding(version)
                ),
                None => format!("{base}/openai/v1/chat/completions"),
            },
            ProviderKind::Anthropic => format!("{base}/v1/messages"),
        };
        let mut headers = HeaderMap::new();
        if let Some(key) = &conn.api_key {
            let (name, value) = match conn.provider.kind {
                ProviderKind::OpenAi => ("authorization", format!("Bearer {}", key.expose())),
                ProviderKind::AzureOpenAi => ("api-key", key.expose().to_owned()),
                ProviderKind::Anthropic => ("x-api-key", key.expose().to_owned()),
            };
            let mut value = HeaderValue::from_str(&value).map_err(|_| {
                format!(
                    "the credential of provider \"{}\" is not a valid header value",
                    conn.provider.name
                )
            })?;
            value.set_sensitive(true);
            headers.insert(HeaderName::from_static(name), value);
        }
        if conn.provider.kind == ProviderKind::Anthropic {
            headers.insert(
                HeaderName::from_static("anthropic-version"),
                HeaderValue::from_static(ANTHROPIC_VERSION),
            );
        }
        Ok(Endpoint {
            kind: conn.provider.kind,
            breaker_key: format!("{} {} {}", conn.provider.kind, base, model),
            url,
            headers,
            model,
        })
    }

    pub fn kind(&self) -> ProviderKind {
        self.kind
    }

    /// The model name the request body carries (Azure ignores it).
    pub fn model(&self) -> &str {
        &self.model
    }

    /// The circuit breaker's key: kind, base URL and model.
    pub fn breaker_key(&self) -> &str {
        &self.breaker_key
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// A POST to the endpoint with its headers; the caller adds the JSON body.
    pub fn post(&self, client: &reqwest::Client) -> reqwest::RequestBuilder {
        client.post(&self.url).headers(self.headers.clone())
    }
}

/// Percent-encodes a path or query component (deployment names, API versions).
fn urlencoding(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::ids::{ModelId, ProviderId};
    use crate::model::{LanguageModel, Provider};
    use crate::secrets::Secret;

    /// A connection for unit tests.
    pub(crate) fn connection(
        kind: ProviderKind,
        base: &str,
        version: Option<&str>,
    ) -> ModelConnection {
        let now = chrono::Utc::now();
        ModelConnection {
            model: LanguageModel {
                id: ModelId::new(),
                name: "m".into(),
                provider: "p".into(),
                upstream: "gpt 4o".into(),
                supports_tools: true,
                supports_json: true,
                supports_streaming: true,
                stream_usage: true,
                context_tokens: 128_000,
                input_price_per_mtok: 2.5,
                output_price_per_mtok: 10.0,
                created_at: now,
                updated_at: now,
            },
            provider: Provider {
                id: ProviderId::new(),
                name: "p".into(),
                kind,
                base_url: base.into(),
                azure_api_version: version.map(str::to_owned),
                credential: Some("k".into()),
                created_at: now,
                updated_at: now,
            },
            api_key: Some(Secret::new("sk-secret-1234")),
        }
    }

    #[test]
    fn urls_and_auth_per_kind() {
        let e = Endpoint::new(&connection(ProviderKind::OpenAi, "http://h/v1/", None)).unwrap();
        assert_eq!(e.url(), "http://h/v1/chat/completions");
        assert_eq!(e.headers["authorization"], "Bearer sk-secret-1234");
        assert!(e.headers["authorization"].is_sensitive());

        let e = Endpoint::new(&connection(
            ProviderKind::AzureOpenAi,
            "https://x.openai.azure.com",
            Some("2024-10-21"),
        ))
        .unwrap();
        assert_eq!(
            e.url(),
            "https://x.openai.azure.com/openai/deployments/gpt%204o/chat/completions?api-version=2024-10-21"
        );
        assert_eq!(e.headers["api-key"], "sk-secret-1234");
        assert!(!e.headers.contains_key("authorization"));
        let e = Endpoint::new(&connection(ProviderKind::AzureOpenAi, "https://x", None)).unwrap();
        assert_eq!(e.url(), "https://x/openai/v1/chat/completions");

        let e = Endpoint::new(&connection(ProviderKind::Anthropic, "http://a", None)).unwrap();
        assert_eq!(e.url(), "http://a/v1/messages");
        assert_eq!(e.headers["x-api-key"], "sk-secret-1234");
        assert_eq!(e.headers["anthropic-version"], ANTHROPIC_VERSION);
        // The key never shows in debug output.
        assert!(!format!("{e:?}").contains("sk-secret"));
    }
}
