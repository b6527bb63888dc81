//! PHP-style form encoding of web-service parameters (`users[0][email]=…`).
//!
//! Moodle compares every cleaned scalar with what was sent, as text, so values must
//! already be canonical: integers in plain decimal, booleans `0`/`1`. Optional fields
//! are left out rather than sent empty (`""` is not an int, and for text it means
//! "set to empty"); an empty list cannot be encoded at all, so it sends nothing.

/// Ordered form fields of one web-service call (without `wstoken`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FormParams(pub Vec<(String, String)>);

/// A value that can be a form field; `None` (for `Option`) means "leave the key out".
pub trait FormValue {
    /// The canonical text Moodle expects, or `None` to send nothing.
    fn form_value(self) -> Option<String>;
}

impl FormValue for &str {
    fn form_value(self) -> Option<String> {
        Some(self.to_owned())
    }
}

impl FormValue for &String {
    fn form_value(self) -> Option<String> {
        Some(self.clone())
    }
}

impl FormValue for String {
    fn form_value(self) -> Option<String> {
        Some(self)
    }
}

impl FormValue for i64 {
    fn form_value(self) -> Option<String> {
        // `Display` for integers is already Moodle's canonical form: no `+`, no zeros.
        Some(self.to_string())
    }
}

impl FormValue for bool {
    fn form_value(self) -> Option<String> {
        Some(if self { "1" } else { "0" }.to_owned())
    }
}

impl<T: FormValue> FormValue for Option<T> {
    fn form_value(self) -> Option<String> {
        self.and_then(FormValue::form_value)
    }
}

impl FormParams {
    /// No fields yet.
    pub fn new() -> Self {
        FormParams(Vec::new())
    }

    /// Top-level `name=value` (nothing when the value is `None`).
    pub fn field(&mut self, name: &str, value: impl FormValue) -> &mut Self {
        self.root().field(name, value);
        self
    }

    /// A list of scalars: `name[0]=…`, `name[1]=…` (indexes count only sent values).
    pub fn list<V: FormValue>(
        &mut self,
        name: &str,
        values: impl IntoIterator<Item = V>,
    ) -> &mut Self {
        self.root().list(name, values);
        self
    }

    /// A list of objects: `name[i][key]=…`, each filled by `fill`.
    pub fn objects<T>(
        &mut self,
        name: &str,
        items: impl IntoIterator<Item = T>,
        fill: impl FnMut(&mut FormObject<'_>, T),
    ) -> &mut Self {
        self.root().objects(name, items, fill);
        self
    }

    /// One object: `name[key]=…`.
    pub fn object(&mut self, name: &str, fill: impl FnOnce(&mut FormObject<'_>)) -> &mut Self {
        self.root().object(name, fill);
        self
    }

    /// The fields in the order they will be sent.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.0
    }

    /// The value of `key`, if it is sent.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn root(&mut self) -> FormObject<'_> {
        FormObject {
            params: self,
            prefix: String::new(),
        }
    }
}

/// The fields of one object inside [`FormParams`], written under its prefix
/// (`courses[0]`), so nesting (`courses[0][customfields][1][value]`) composes.
pub struct FormObject<'a> {
    params: &'a mut FormParams,
    prefix: String,
}

impl FormObject<'_> {
    /// `prefix[name]=value` (nothing when the value is `None`).
    pub fn field(&mut self, name: &str, value: impl FormValue) -> &mut Self {
        if let Some(value) = value.form_value() {
            let key = self.key(name);
            self.params.0.push((key, value));
        }
        self
    }

    /// `prefix[name][i]=value` for each sent value, i = 0, 1, 2, …
    pub fn list<V: FormValue>(
        &mut self,
        name: &str,
        values: impl IntoIterator<Item = V>,
    ) -> &mut Self {
        let base = self.key(name);
        let sent = values.into_iter().filter_map(FormValue::form_value);
        for (i, value) in sent.enumerate() {
            self.params.0.push((format!("{base}[{i}]"), value));
        }
        self
    }

    /// `prefix[name][i][…]` for each item, filled by `fill`.
    pub fn objects<T>(
        &mut self,
        name: &str,
        items: impl IntoIterator<Item = T>,
        mut fill: impl FnMut(&mut FormObject<'_>, T),
    ) -> &mut Self {
        let base = self.key(name);
        for (i, item) in items.into_iter().enumerate() {
            let mut child = FormObject {
                params: self.params,
                prefix: format!("{base}[{i}]"),
            };
            fill(&mut child, item);
        }
        self
    }

    /// `prefix[name][…]`, filled by `fill`.
    pub fn object(&mut self, name: &str, fill: impl FnOnce(&mut FormObject<'_>)) -> &mut Self {
        let mut child = FormObject {
            prefix: self.key(name),
            params: self.params,
        };
        fill(&mut child);
        self
    }

    fn key(&self, name: &str) -> String {
        debug_assert!(
            !name.is_empty() && !name.contains(['[', ']', '=', '&']),
            "form names are code constants: {name:?}"
        );
        if self.prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{}[{name}]", self.prefix)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys_and_values(params: &FormParams) -> Vec<String> {
        params
            .pairs()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect()
    }

    #[test]
    fn encodes_nested_lists_scalar_lists_and_objects_in_order() {
        let mut p = FormParams::new();
        p.field("field", "email")
            .list("values", ["a@x.org", "b@x.org"])
            .object("options", |o| {
                o.list("ids", [5_i64, 7]);
            })
            .objects("courses", [("First Aid", 2_i64)], |o, (name, cat)| {
                o.field("fullname", name).field("categoryid", cat).objects(
                    "customfields",
                    [("level", "2")],
                    |cf, (k, v)| {
                        cf.field("shortname", k).field("value", v);
                    },
                );
            });
        assert_eq!(
            keys_and_values(&p),
            [
                "field=email",
                "values[0]=a@x.org",
                "values[1]=b@x.org",
                "options[ids][0]=5",
                "options[ids][1]=7",
                "courses[0][fullname]=First Aid",
                "courses[0][categoryid]=2",
                "courses[0][customfields][0][shortname]=level",
                "courses[0][customfields][0][value]=2",
            ]
        );
    }

    #[test]
    fn scalars_are_canonical_and_none_is_left_out() {
        let mut p = FormParams::new();
        p.field("zero", 0_i64)
            .field("negative", -7_i64)
            .field("big", 1_803_978_000_i64)
            .field("yes", true)
            .field("no", false)
            .field("absent", None::<i64>)
            .field("absent_text", None::<&str>)
            .field("present", Some("x"))
            .field("empty_but_given", "");
        assert_eq!(
            keys_and_values(&p),
            [
                "zero=0",
                "negative=-7",
                "big=1803978000",
                "yes=1",
                "no=0",
                "present=x",
                "empty_but_given=",
            ]
        );
    }

    #[test]
    fn empty_lists_send_nothing_and_indexes_count_sent_values() {
        let mut p = FormParams::new();
        p.list("values", Vec::<&str>::new())
            .objects("items", Vec::<i64>::new(), |o, v| {
                o.field("v", v);
            })
            .list("ids", [Some(1_i64), None, Some(3)]);
        assert_eq!(keys_and_values(&p), ["ids[0]=1", "ids[1]=3"]);
        assert_eq!(p.get("ids[1]"), Some("3"));
        assert_eq!(p.get("values[0]"), None);
    }
}
