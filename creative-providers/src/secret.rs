//! API keys that never print.
//!
//! An [`ApiKey`] holds a credential and refuses to show it: `Debug` and `Display`
//! print `***`, it does not implement `Serialize`, and the only way to read it is
//! [`ApiKey::expose`], which the HTTP layer calls once per request to build a
//! header marked sensitive. Keys come from a spec's settings, preferably as the
//! name of an environment variable (`api_key_env`), so the spec file itself holds
//! no secret.

use std::fmt;
use std::sync::Arc;

use creative_core::ConfigError;

/// A credential that prints as `***`.
///
/// ```
/// use creative_providers::secret::ApiKey;
/// let k = ApiKey::new("sk-very-secret");
/// assert_eq!(format!("{k:?} {k}"), "ApiKey(***) ***");
/// assert_eq!(k.expose(), "sk-very-secret");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(Arc<str>);

impl ApiKey {
    /// Wrap a key.
    pub fn new(key: impl AsRef<str>) -> Self {
        ApiKey(Arc::from(key.as_ref().trim()))
    }

    /// The key itself. Call it only to build the outgoing request header.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Read a key from the environment variable `var`; `None` when unset or empty.
    pub fn from_env(var: &str) -> Option<Self> {
        std::env::var(var)
            .ok()
            .filter(|v| !v.trim().is_empty())
            .map(ApiKey::new)
    }

    /// Resolve a provider's key from its settings.
    ///
    /// In order: an inline `api_key` (discouraged: it puts the secret in the spec
    /// file), the variable named by `api_key_env`, then the backend's conventional
    /// variable `default_env` (such as `OPENAI_API_KEY`). A variable named
    /// explicitly but unset is an error naming the variable (never its value); a
    /// missing key is `Ok(None)` and the backend decides whether it needs one.
    pub fn resolve(
        inline: Option<&str>,
        env_name: Option<&str>,
        default_env: Option<&str>,
    ) -> Result<Option<ApiKey>, ConfigError> {
        if let Some(k) = inline.filter(|k| !k.trim().is_empty()) {
            return Ok(Some(ApiKey::new(k)));
        }
        if let Some(var) = env_name {
            return match ApiKey::from_env(var) {
                Some(k) => Ok(Some(k)),
                None => Err(ConfigError::new(
                    "api_key_env",
                    format!("environment variable `{var}` is not set or empty"),
                )),
            };
        }
        Ok(default_env.and_then(ApiKey::from_env))
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_hide_the_key() {
        let k = ApiKey::new("sk-abc123");
        assert!(!format!("{k:?}").contains("abc123"));
        assert!(!format!("{k}").contains("abc123"));
        assert!(!format!("{:?}", Some(k.clone())).contains("abc123"));
    }

    #[test]
    fn inline_wins_then_named_env_then_default_env() {
        std::env::set_var("CREATIVE_TEST_KEY_A", "from-env-a");
        std::env::set_var("CREATIVE_TEST_KEY_B", "from-env-b");
        let k = ApiKey::resolve(Some("inline"), Some("CREATIVE_TEST_KEY_A"), None).unwrap();
        assert_eq!(k.unwrap().expose(), "inline");
        let k = ApiKey::resolve(None, Some("CREATIVE_TEST_KEY_A"), Some("CREATIVE_TEST_KEY_B")).unwrap();
        assert_eq!(k.unwrap().expose(), "from-env-a");
        let k = ApiKey::resolve(None, None, Some("CREATIVE_TEST_KEY_B")).unwrap();
        assert_eq!(k.unwrap().expose(), "from-env-b");
        assert!(ApiKey::resolve(None, None, Some("CREATIVE_TEST_KEY_UNSET_X"))
            .unwrap()
            .is_none());
    }

    #[test]
    fn a_named_but_unset_variable_is_an_error_naming_it() {
        let e = ApiKey::resolve(None, Some("CREATIVE_TEST_KEY_UNSET_Y"), None).unwrap_err();
        assert!(e.to_string().contains("CREATIVE_TEST_KEY_UNSET_Y"), "{e}");
    }
}
