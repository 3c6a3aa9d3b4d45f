//! Raw configuration values and their typed parsers.
//!
//! Every setting has two spellings: an environment variable and a TOML key. The environment
//! wins over the file. Parsers return plain messages; the caller prefixes them with both
//! spellings so the operator can fix whichever they used. Nothing here stops at the first
//! problem: the caller collects them all.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use figment::providers::{Format, Toml};
use figment::value::{Dict, Value};

/// A setting's two names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Key {
    /// Environment variable.
    pub env: &'static str,
    /// TOML key (top level of the file).
    pub toml: &'static str,
    /// Whether the value is a secret: secrets are never repeated in messages.
    pub secret: bool,
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (toml: {})", self.env, self.toml)
    }
}

/// A value as the operator wrote it.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Raw<'a> {
    /// From the environment: always text.
    Env(&'a str),
    /// From the TOML file: typed.
    Toml(&'a Value),
}

/// Every problem found so far, already prefixed with the setting's names.
#[derive(Debug, Default)]
pub(crate) struct Problems(pub Vec<String>);

impl Problems {
    /// Records a problem with one setting.
    pub fn key(&mut self, key: &Key, message: impl fmt::Display) {
        self.0.push(format!("{key}: {message}"));
    }

    /// Records a problem that is not about one setting (e.g. the file itself).
    pub fn other(&mut self, message: impl Into<String>) {
        self.0.push(message.into());
    }
}

/// The merged inputs: the environment and the parsed TOML table.
#[derive(Debug, Default)]
pub(crate) struct Sources {
    env: BTreeMap<String, String>,
    toml: Dict,
}

impl Sources {
    /// Parses the TOML text (a syntax error is recorded and the file ignored, so the
    /// environment is still checked) and indexes the environment (last duplicate wins, like a
    /// shell).
    pub fn new(
        toml: Option<&str>,
        toml_label: &str,
        env: &[(String, String)],
        problems: &mut Problems,
    ) -> Sources {
        let toml = match toml {
            None => Dict::new(),
            Some(text) => match Toml::from_str::<Dict>(text) {
                Ok(dict) => dict,
                Err(e) => {
                    problems.other(format!(
                        "SESSIOND_CONFIG ({toml_label}): not valid TOML: {}",
                        e.to_string().trim_end()
                    ));
                    Dict::new()
                }
            },
        };
        Sources {
            env: env.iter().cloned().collect(),
            toml,
        }
    }

    /// The value of `key`, environment first. An empty environment variable counts as unset,
    /// as container tooling often exports `NAME=` for "no value".
    pub fn get(&self, key: &Key) -> Option<Raw<'_>> {
        if let Some(v) = self.env.get(key.env).filter(|v| !v.trim().is_empty()) {
            return Some(Raw::Env(v));
        }
        self.toml.get(key.toml).map(Raw::Toml)
    }

    /// A top-level value of the TOML file (for groups with their own tables, e.g. `[oidc]`).
    pub fn toml_value(&self, key: &str) -> Option<&Value> {
        self.toml.get(key)
    }

    /// The non-empty environment variables whose names start with `prefix`, by name order.
    pub fn env_with_prefix<'a>(
        &'a self,
        prefix: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a str)> {
        self.env
            .iter()
            .filter(move |(k, v)| k.starts_with(prefix) && !v.trim().is_empty())
            .map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Keys of the TOML file that no setting uses.
    pub fn unknown_toml_keys<'a>(&'a self, known: &'a [Key]) -> impl Iterator<Item = &'a str> {
        self.toml
            .keys()
            .map(String::as_str)
            .filter(move |k| !known.iter().any(|key| key.toml == *k))
    }

    /// `SESSIOND_*` variables that no setting uses (likely typos).
    pub fn unknown_env_keys<'a>(
        &'a self,
        known: &'a [Key],
        also_known: &'a [&'a str],
    ) -> impl Iterator<Item = &'a str> {
        self.env.keys().map(String::as_str).filter(move |k| {
            k.starts_with("SESSIOND_")
                && !known.iter().any(|key| key.env == *k)
                && !also_known.contains(k)
        })
    }
}

/// How a value is shown in a message: quoted, shortened, or hidden if secret.
pub(crate) fn shown(key: &Key, raw: Raw<'_>) -> String {
    if key.secret {
        return "(value hidden)".into();
    }
    let text = match raw {
        Raw::Env(s) => s.to_string(),
        Raw::Toml(Value::String(_, s)) => s.clone(),
        Raw::Toml(v) => return kind(v).to_string(),
    };
    let short: String = text.chars().take(64).collect();
    if short.len() < text.len() {
        format!("{:?}…", short)
    } else {
        format!("{short:?}")
    }
}

/// What a TOML value is, for "expected X, found Y" messages.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::String(..) => "a string",
        Value::Char(..) => "a character",
        Value::Bool(..) => "a boolean",
        Value::Num(..) => "a number",
        Value::Empty(..) => "an empty value",
        Value::Dict(..) => "a table",
        Value::Array(..) => "an array",
    }
}

/// A text value. TOML must give a string.
pub(crate) fn text(key: &Key, raw: Raw<'_>) -> Result<String, String> {
    match raw {
        Raw::Env(s) => Ok(s.trim().to_string()),
        Raw::Toml(Value::String(_, s)) => Ok(s.trim().to_string()),
        Raw::Toml(v) => Err(format!("expected a string, found {}", kind(v))),
    }
    .and_then(|s| {
        if s.is_empty() {
            Err(format!("{} must not be empty", shown(key, raw)))
        } else {
            Ok(s)
        }
    })
}

/// A duration in humantime syntax (`15m`, `10s`, `250ms`, `1h 30m`). A leading `-` gets its
/// own message: humantime has no negative durations and its own error would be cryptic.
pub(crate) fn duration(key: &Key, raw: Raw<'_>) -> Result<Duration, String> {
    const HINT: &str = "is not a duration (e.g. 15m, 10s)";
    let s = match raw {
        Raw::Env(s) => s,
        Raw::Toml(Value::String(_, s)) => s.as_str(),
        Raw::Toml(Value::Num(_, n)) => {
            return Err(match n.to_i128() {
                Some(i) if i < 0 => format!("{i} must be a positive duration (e.g. 15m, 10s)"),
                _ => "a bare number is not a duration: write it with a unit as a string \
                      (e.g. \"15m\", \"10s\")"
                    .to_string(),
            });
        }
        Raw::Toml(v) => return Err(format!("expected a duration string, found {}", kind(v))),
    };
    let s = s.trim();
    if s.starts_with('-') {
        return Err(format!(
            "{} must be a positive duration (e.g. 15m, 10s)",
            shown(key, raw)
        ));
    }
    humantime::parse_duration(s).map_err(|_| format!("{} {HINT}", shown(key, raw)))
}

/// A non-negative integer that fits `T`.
pub(crate) fn integer<T>(key: &Key, raw: Raw<'_>) -> Result<T, String>
where
    T: TryFrom<i128> + Into<u128> + Bounded,
{
    let n: i128 = match raw {
        Raw::Env(s) => s.trim().parse().map_err(|_| not_a_number(key, raw))?,
        Raw::Toml(Value::Num(_, n)) => n.to_i128().ok_or_else(|| not_a_number(key, raw))?,
        Raw::Toml(Value::String(_, s)) => s.trim().parse().map_err(|_| not_a_number(key, raw))?,
        Raw::Toml(v) => return Err(format!("expected a whole number, found {}", kind(v))),
    };
    if n < 0 {
        return Err(format!("{n} must not be negative"));
    }
    T::try_from(n).map_err(|_| format!("{n} is too large (at most {})", T::MAX.into()))
}

fn not_a_number(key: &Key, raw: Raw<'_>) -> String {
    format!("{} is not a whole number", shown(key, raw))
}

/// Unsigned integer types `integer` can produce.
pub(crate) trait Bounded: Sized {
    /// The largest value.
    const MAX: Self;
}
impl Bounded for u32 {
    const MAX: Self = u32::MAX;
}
impl Bounded for u64 {
    const MAX: Self = u64::MAX;
}

/// A size in bytes: a whole number, or a number with a unit `B`, `KiB`, `MiB` (or `KB`, `MB`,
/// taken as binary units too, since that is what people mean for body limits).
pub(crate) fn byte_size(key: &Key, raw: Raw<'_>) -> Result<u64, String> {
    let s = match raw {
        Raw::Toml(Value::String(_, s)) => s.as_str(),
        Raw::Env(s) => s,
        _ => return integer::<u64>(key, raw),
    };
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let hint = || {
        format!(
            "{} is not a size (e.g. 65536, 64KiB, 1MiB)",
            shown(key, raw)
        )
    };
    let n: u64 = digits.parse().map_err(|_| hint())?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1024,
        "m" | "mb" | "mib" => 1024 * 1024,
        _ => return Err(hint()),
    };
    n.checked_mul(factor)
        .ok_or_else(|| format!("{} is too large", shown(key, raw)))
}

/// A list of strings: comma-separated in the environment; a string or an array of strings in
/// TOML. Blank items are dropped.
pub(crate) fn list(_key: &Key, raw: Raw<'_>) -> Result<Vec<String>, String> {
    let items: Vec<String> = match raw {
        Raw::Env(s) => s.split(',').map(|p| p.trim().to_string()).collect(),
        Raw::Toml(Value::String(_, s)) => vec![s.trim().to_string()],
        Raw::Toml(Value::Array(_, values)) => values
            .iter()
            .map(|v| match v {
                Value::String(_, s) => Ok(s.trim().to_string()),
                other => Err(format!(
                    "expected an array of strings, found {} in it",
                    kind(other)
                )),
            })
            .collect::<Result<_, _>>()?,
        Raw::Toml(v) => {
            return Err(format!(
                "expected a string or an array of strings, found {}",
                kind(v)
            ));
        }
    };
    Ok(items.into_iter().filter(|s| !s.is_empty()).collect())
}

/// The known key closest to `unknown`, if it is close enough to be a likely typo.
pub(crate) fn suggestion<'a>(
    unknown: &str,
    candidates: impl Iterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .map(|c| (edit_distance(unknown, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance over characters; inputs are short key names.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = substitution.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// An origin as browsers send it: `scheme://host[:port]`, nothing else (no path, query,
/// fragment or user info). `scheme_ok` narrows the schemes; every failure but an unparsable
/// value gives the same message, so the caller adds only its own rules.
pub(crate) fn plain_origin(s: &str, scheme_ok: impl Fn(&str) -> bool) -> Result<url::Url, String> {
    let url = url::Url::parse(s).map_err(|_| format!("{s:?} is not an origin"))?;
    let plain = scheme_ok(url.scheme())
        && url.host_str().is_some()
        && url.path() == "/"
        && !s.ends_with('/')
        && url.query().is_none()
        && url.fragment().is_none()
        && url.username().is_empty()
        && url.password().is_none();
    if !plain {
        return Err(format!(
            "{s:?} is not an origin (scheme://host[:port], no path)"
        ));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: Key = Key {
        env: "SESSIOND_X",
        toml: "x",
        secret: false,
    };
    const SECRET: Key = Key {
        env: "SESSIOND_S",
        toml: "s",
        secret: true,
    };

    fn toml_value(text: &str) -> Value {
        Toml::from_str::<Dict>(&format!("x = {text}")).unwrap()["x"].clone()
    }

    #[test]
    fn durations_parse_from_env_and_toml_strings() {
        assert_eq!(
            duration(&K, Raw::Env("15m")).unwrap(),
            Duration::from_secs(900)
        );
        assert_eq!(
            duration(&K, Raw::Env(" 250ms ")).unwrap(),
            Duration::from_millis(250)
        );
        let v = toml_value("\"1h 30m\"");
        assert_eq!(
            duration(&K, Raw::Toml(&v)).unwrap(),
            Duration::from_secs(5400)
        );
    }

    #[test]
    fn negative_and_malformed_durations_have_clear_messages() {
        let e = duration(&K, Raw::Env("-5m")).unwrap_err();
        assert!(e.contains("must be a positive duration"), "{e}");
        let e = duration(&K, Raw::Env("abc")).unwrap_err();
        assert_eq!(e, "\"abc\" is not a duration (e.g. 15m, 10s)");
        let v = toml_value("-5");
        assert!(
            duration(&K, Raw::Toml(&v))
                .unwrap_err()
                .contains("positive")
        );
        let v = toml_value("300");
        assert!(duration(&K, Raw::Toml(&v)).unwrap_err().contains("unit"));
    }

    #[test]
    fn integers_reject_negatives_overflow_and_text() {
        assert_eq!(integer::<u32>(&K, Raw::Env("16")).unwrap(), 16);
        assert!(
            integer::<u32>(&K, Raw::Env("-1"))
                .unwrap_err()
                .contains("negative")
        );
        assert!(
            integer::<u32>(&K, Raw::Env("4294967296"))
                .unwrap_err()
                .contains("too large")
        );
        assert!(
            integer::<u32>(&K, Raw::Env("lots"))
                .unwrap_err()
                .contains("not a whole number")
        );
        let v = toml_value("7");
        assert_eq!(integer::<u64>(&K, Raw::Toml(&v)).unwrap(), 7);
        let v = toml_value("\"7\"");
        assert_eq!(integer::<u64>(&K, Raw::Toml(&v)).unwrap(), 7);
        let v = toml_value("true");
        assert!(integer::<u64>(&K, Raw::Toml(&v)).is_err());
    }

    #[test]
    fn sizes_accept_binary_units() {
        assert_eq!(byte_size(&K, Raw::Env("65536")).unwrap(), 65536);
        assert_eq!(byte_size(&K, Raw::Env("64KiB")).unwrap(), 65536);
        assert_eq!(byte_size(&K, Raw::Env("1 MiB")).unwrap(), 1 << 20);
        let v = toml_value("1024");
        assert_eq!(byte_size(&K, Raw::Toml(&v)).unwrap(), 1024);
        assert!(byte_size(&K, Raw::Env("12 parsecs")).is_err());
        assert!(byte_size(&K, Raw::Env("KiB")).is_err());
    }

    #[test]
    fn lists_come_from_commas_strings_or_arrays() {
        assert_eq!(
            list(&K, Raw::Env("a.pem, b.pem,,")).unwrap(),
            vec!["a.pem", "b.pem"]
        );
        let v = toml_value("\"one.pem\"");
        assert_eq!(list(&K, Raw::Toml(&v)).unwrap(), vec!["one.pem"]);
        let v = toml_value("[\"a.pem\", \"b.pem\"]");
        assert_eq!(list(&K, Raw::Toml(&v)).unwrap(), vec!["a.pem", "b.pem"]);
        let v = toml_value("[1]");
        assert!(list(&K, Raw::Toml(&v)).is_err());
    }

    #[test]
    fn secrets_are_never_repeated() {
        assert_eq!(shown(&SECRET, Raw::Env("hunter2")), "(value hidden)");
        let e = duration(&SECRET, Raw::Env("hunter2")).unwrap_err();
        assert!(!e.contains("hunter2"));
    }

    #[test]
    fn long_values_are_shortened_in_messages() {
        let long = "x".repeat(1000);
        assert!(shown(&K, Raw::Env(&long)).len() < 100);
    }

    #[test]
    fn environment_wins_and_empty_variables_count_as_unset() {
        let mut p = Problems::default();
        let env = vec![("SESSIOND_X".to_string(), "from-env".to_string())];
        let s = Sources::new(Some("x = \"from-file\""), "test", &env, &mut p);
        assert!(matches!(s.get(&K), Some(Raw::Env("from-env"))));
        let env = vec![("SESSIOND_X".to_string(), "".to_string())];
        let s = Sources::new(Some("x = \"from-file\""), "test", &env, &mut p);
        assert!(matches!(s.get(&K), Some(Raw::Toml(_))));
        assert!(p.0.is_empty());
    }

    #[test]
    fn bad_toml_is_one_problem_naming_the_file() {
        let mut p = Problems::default();
        let s = Sources::new(Some("x = = 1"), "sessiond.toml", &[], &mut p);
        assert_eq!(p.0.len(), 1);
        assert!(p.0[0].contains("sessiond.toml"), "{}", p.0[0]);
        assert!(s.get(&K).is_none());
    }

    #[test]
    fn typos_get_suggestions() {
        let known = ["access_ttl", "refresh_idle_ttl", "bind"];
        assert_eq!(
            suggestion("acess_ttl", known.into_iter()),
            Some("access_ttl")
        );
        assert_eq!(suggestion("completely_else", known.into_iter()), None);
    }
}
