//! Parameter descriptions and their validation (`external_api::validate_parameters`,
//! `clean_param`, moodle-ws.md §1.2, §1.3).

use super::envelope::Exc;
use super::form::Node;
use super::php::{clean_text, php_empty, php_intval, php_trim, strip_tags};

/// Moodle's PARAM_* types used by the functions here; `name` is what debuginfo shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum T {
    Int,
    Bool,
    Text,
    NoTags,
    Raw,
    RawTrimmed,
    Alpha,
    AlphaNumExt,
    Plugin,
    Auth,
    Lang,
    Theme,
    SafeDir,
    Username,
    Timezone,
}

impl T {
    pub(super) fn name(self) -> &'static str {
        match self {
            T::Int => "int",
            T::Bool => "bool",
            T::Text => "text",
            T::NoTags => "notags",
            T::Raw => "raw",
            T::RawTrimmed => "raw_trimmed",
            T::Alpha => "alpha",
            T::AlphaNumExt => "alphanumext",
            T::Plugin => "plugin",
            T::Auth => "auth",
            T::Lang => "lang",
            T::Theme => "theme",
            T::SafeDir => "safedir",
            T::Username => "username",
            T::Timezone => "timezone",
        }
    }
}

/// Installed plugins and language packs of the simulated site.
#[rustfmt::skip]
pub(super) const AUTH_PLUGINS: &[&str] = &[
    "cas", "db", "email", "ldap", "lti", "manual", "mnet", "nologin", "none", "oauth2",
    "shibboleth", "webservice",
];
/// Auth plugins that store passwords in Moodle: a new user needs a password or createpassword.
pub(super) const INTERNAL_AUTHS: &[&str] = &["manual", "email", "none"];
pub(super) const LANGS: &[&str] = &["en"];
pub(super) const THEMES: &[&str] = &["boost", "classic"];

/// A parameter description: `external_value`, `external_single_structure`,
/// `external_multiple_structure`.
pub(super) enum Desc {
    Val(T),
    Single(Vec<Key>),
    Multi(Box<Desc>),
}

pub(super) struct Key {
    pub(super) name: &'static str,
    pub(super) desc: Desc,
    pub(super) req: Req,
}

/// VALUE_REQUIRED, VALUE_OPTIONAL, VALUE_DEFAULT (a scalar default, or an empty list/object).
pub(super) enum Req {
    Required,
    Optional,
    Default(&'static str),
    DefaultEmpty,
}

pub(super) fn val(t: T) -> Desc {
    Desc::Val(t)
}
pub(super) fn single(keys: Vec<Key>) -> Desc {
    Desc::Single(keys)
}
pub(super) fn multi(desc: Desc) -> Desc {
    Desc::Multi(Box::new(desc))
}
pub(super) fn req(name: &'static str, desc: Desc) -> Key {
    Key {
        name,
        desc,
        req: Req::Required,
    }
}
pub(super) fn opt(name: &'static str, desc: Desc) -> Key {
    Key {
        name,
        desc,
        req: Req::Optional,
    }
}
pub(super) fn def(name: &'static str, desc: Desc, default: &'static str) -> Key {
    Key {
        name,
        desc,
        req: Req::Default(default),
    }
}
pub(super) fn def_empty(name: &'static str, desc: Desc) -> Key {
    Key {
        name,
        desc,
        req: Req::DefaultEmpty,
    }
}

/// Validated parameters: cleaned scalars (as text), lists, objects in declared key order.
#[derive(Clone, Debug)]
pub(super) enum V {
    S(String),
    L(Vec<V>),
    O(Vec<(&'static str, V)>),
}

// The functions read their parameters through these. Validation has already made every
// declared key the declared shape, so an error here is a mismatch between a function and
// its own declaration: a bug in the simulator, answered as Moodle answers its own bugs
// (`codingerror`) instead of taking the server down.
impl V {
    pub(super) fn get(&self, key: &str) -> Option<&V> {
        match self {
            V::O(entries) => entries.iter().find(|(k, _)| *k == key).map(|(_, v)| v),
            _ => None,
        }
    }
    pub(super) fn as_str(&self) -> Result<&str, Exc> {
        match self {
            V::S(s) => Ok(s),
            _ => Err(undeclared("a scalar that is a list or an object")),
        }
    }
    /// Values validated as PARAM_INT are canonical integers, so this parses.
    pub(super) fn as_int(&self) -> Result<i64, Exc> {
        let s = self.as_str()?;
        s.parse()
            .map_err(|_| undeclared(&format!("\"{s}\" as an int")))
    }
    pub(super) fn str(&self, key: &str) -> Result<&str, Exc> {
        self.required(key)?.as_str()
    }
    pub(super) fn int(&self, key: &str) -> Result<i64, Exc> {
        self.required(key)?.as_int()
    }
    pub(super) fn opt_str(&self, key: &str) -> Result<Option<&str>, Exc> {
        self.get(key).map(V::as_str).transpose()
    }
    pub(super) fn opt_int(&self, key: &str) -> Result<Option<i64>, Exc> {
        self.get(key).map(V::as_int).transpose()
    }
    pub(super) fn list(&self, key: &str) -> &[V] {
        match self.get(key) {
            Some(V::L(items)) => items,
            _ => &[],
        }
    }
    fn required(&self, key: &str) -> Result<&V, Exc> {
        self.get(key)
            .ok_or_else(|| undeclared(&format!("the missing key {key}")))
    }
}

fn undeclared(what: &str) -> Exc {
    Exc::coding(
        &format!("the simulator read {what} that its parameter description does not give"),
        None,
    )
}

/// Checks `node` against `desc`; the error is the debuginfo Moodle builds, path included
/// (`users => Invalid parameter value detected: username => …`).
pub(super) fn validate(desc: &Desc, node: &Node) -> Result<V, String> {
    match desc {
        Desc::Val(t) => match node {
            Node::Leaf(bytes) => validate_scalar(*t, bytes),
            Node::Map(_) => Err("Scalar type expected, array or object received.".into()),
        },
        Desc::Single(keys) => {
            let Node::Map(entries) = node else {
                return Err(only_arrays(node));
            };
            let mut out = Vec::new();
            for key in keys {
                match entries.iter().find(|(k, _)| k == key.name) {
                    Some((_, child)) => {
                        let v = validate(&key.desc, child).map_err(|e| {
                            format!("{} => Invalid parameter value detected: {e}", key.name)
                        })?;
                        out.push((key.name, v));
                    }
                    None => match key.req {
                        Req::Required => {
                            return Err(format!(
                                "Missing required key in single structure: {}",
                                key.name
                            ));
                        }
                        Req::Optional => {}
                        Req::Default(value) => out.push((key.name, V::S(value.into()))),
                        Req::DefaultEmpty => {
                            let empty = validate(&key.desc, &Node::Map(Vec::new()))?;
                            out.push((key.name, empty));
                        }
                    },
                }
            }
            let unexpected: Vec<&str> = entries
                .iter()
                .map(|(k, _)| k.as_str())
                .filter(|k| !keys.iter().any(|key| key.name == *k))
                .collect();
            if !unexpected.is_empty() {
                return Err(format!(
                    "Unexpected keys ({}) detected in parameter array.",
                    unexpected.join(", ")
                ));
            }
            Ok(V::O(out))
        }
        Desc::Multi(item) => {
            let Node::Map(entries) = node else {
                return Err(only_arrays(node));
            };
            // The keys only need to be distinct: Moodle walks the values in order.
            entries
                .iter()
                .map(|(_, child)| validate(item, child))
                .collect::<Result<_, _>>()
                .map(V::L)
        }
    }
}

fn only_arrays(node: &Node) -> String {
    format!(
        "Only arrays accepted. The bad value is: '{}'",
        node.text().unwrap_or_default()
    )
}

/// `validate_param`: the cleaned value must equal the value sent (PARAM_BOOL has its own
/// rule).
fn validate_scalar(t: T, bytes: &[u8]) -> Result<V, String> {
    let shown = String::from_utf8_lossy(bytes);
    let error = || {
        format!(
            "Invalid external api parameter: the value is \"{shown}\", the server was expecting \"{}\" type",
            t.name()
        )
    };
    // fix_utf8 drops invalid sequences, so such a value never equals its cleaned form.
    let Ok(s) = std::str::from_utf8(bytes) else {
        return Err(error());
    };
    let ok = match t {
        T::Bool => s == "0" || s == "1",
        _ => clean(t, s) == s,
    };
    if ok { Ok(V::S(s.into())) } else { Err(error()) }
}

/// `clean_param` for the types above.
pub(super) fn clean(t: T, s: &str) -> String {
    match t {
        T::Int => php_intval(s).to_string(),
        T::Bool => (if php_empty(s) { "0" } else { "1" }).into(),
        T::Text => clean_text(s),
        T::NoTags => strip_tags(s, &[]),
        T::Raw => s.into(),
        T::RawTrimmed => php_trim(s).into(),
        T::Alpha => s.chars().filter(|c| c.is_ascii_alphabetic()).collect(),
        T::AlphaNumExt | T::SafeDir => s
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
            .collect(),
        T::Plugin => clean_plugin(s),
        T::Auth => installed(&clean_plugin(s), AUTH_PLUGINS),
        T::Lang => installed(&clean(T::SafeDir, s), LANGS),
        T::Theme => installed(&clean_plugin(s), THEMES),
        T::Username => clean_username(s),
        T::Timezone => {
            if is_timezone(s) {
                s.into()
            } else {
                String::new()
            }
        }
    }
}

fn installed(name: &str, list: &[&str]) -> String {
    if list.contains(&name) {
        name.into()
    } else {
        String::new()
    }
}

/// PARAM_PLUGIN: `[a-z0-9_]` only, and a valid plugin name (`^[a-z](?:[a-z0-9_](?!__))*[a-z0-9]+$`).
fn clean_plugin(s: &str) -> String {
    let s: String = s
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    let valid = s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !s.contains("__");
    if valid { s } else { String::new() }
}

/// PARAM_USERNAME with `extendedusernamechars` off (moodle-ws.md §4).
fn clean_username(s: &str) -> String {
    php_trim(s)
        .to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-._@".contains(*c))
        .collect()
}

/// PARAM_TIMEZONE: `99`, an hour offset, or a zone name such as `Europe/London`.
fn is_timezone(s: &str) -> bool {
    if s == "99" {
        return true;
    }
    if let Ok(hours) = s.parse::<f64>() {
        return (-13.0..=13.0).contains(&hours) && (hours * 2.0).fract() == 0.0;
    }
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.chars().count() > 1
        && chars.all(|c| c.is_ascii_alphanumeric() || "/_-+".contains(c))
}
