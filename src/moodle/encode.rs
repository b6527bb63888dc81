//! PHP-style form encoding of web-service parameters (`users[0][email]=…`).

/// Ordered form fields of one web-service call (without `wstoken`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FormParams(pub Vec<(String, String)>);
