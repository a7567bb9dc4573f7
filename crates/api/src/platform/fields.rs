//! Reading a JSON object field by field, so every bad field is named in the
//! 400 answer (serde stops at the first and names it in its own words).

use serde::Serialize;
use serde_json::{Map, Value};

/// One field that is wrong, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// The field's JSON name (empty for the body as a whole).
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl FieldError {
    /// An error about `field`.
    pub fn new(field: &str, message: impl Into<String>) -> FieldError {
        FieldError {
            field: field.to_owned(),
            message: message.into(),
        }
    }
}

/// What a request says about one field: nothing, or a value.
#[derive(Debug, Clone, PartialEq)]
pub enum Given<T> {
    /// The field is absent (or was refused): keep what is there.
    Absent,
    /// The field's value.
    Value(T),
}

/// The fields of a request body, taken one at a time; what is left at the
/// end is unknown and reported.
pub struct Fields {
    object: Map<String, Value>,
    /// Every problem found so far.
    pub errors: Vec<FieldError>,
}

impl Fields {
    /// The body's fields, or the error that it is not a JSON object.
    pub fn parse(body: &[u8]) -> Result<Fields, FieldError> {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(object)) => Ok(Fields {
                object,
                errors: Vec::new(),
            }),
            Ok(_) => Err(FieldError::new("", "the body must be a JSON object")),
            Err(e) => Err(FieldError::new(
                "",
                format!("the body is not valid JSON: {e}"),
            )),
        }
    }

    /// A field's value. `null` is refused rather than read as "clear": a
    /// field left out keeps its value, and an empty string or list clears it,
    /// so one request cannot mean two things.
    fn take(&mut self, name: &str) -> Given<Value> {
        match self.object.remove(name) {
            None => Given::Absent,
            Some(Value::Null) => {
                self.errors.push(FieldError::new(
                    name,
                    "must not be null (leave it out to keep it, or send an empty value)",
                ));
                Given::Absent
            }
            Some(value) => Given::Value(value),
        }
    }

    /// A string field.
    pub fn string(&mut self, name: &str) -> Given<String> {
        match self.take(name) {
            Given::Value(Value::String(s)) => Given::Value(s),
            Given::Value(_) => {
                self.errors.push(FieldError::new(name, "must be a string"));
                Given::Absent
            }
            Given::Absent => Given::Absent,
        }
    }

    /// A list of strings.
    pub fn strings(&mut self, name: &str) -> Given<Vec<String>> {
        match self.take(name) {
            Given::Value(Value::Array(items)) => {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    match item {
                        Value::String(s) => out.push(s),
                        _ => {
                            self.errors
                                .push(FieldError::new(name, "must be a list of strings"));
                            return Given::Absent;
                        }
                    }
                }
                Given::Value(out)
            }
            Given::Value(_) => {
                self.errors
                    .push(FieldError::new(name, "must be a list of strings"));
                Given::Absent
            }
            Given::Absent => Given::Absent,
        }
    }

    /// A boolean field.
    pub fn boolean(&mut self, name: &str) -> Given<bool> {
        match self.take(name) {
            Given::Value(Value::Bool(b)) => Given::Value(b),
            Given::Value(_) => {
                self.errors
                    .push(FieldError::new(name, "must be true or false"));
                Given::Absent
            }
            Given::Absent => Given::Absent,
        }
    }

    /// An object field, kept as it came.
    pub fn object(&mut self, name: &str) -> Given<Map<String, Value>> {
        match self.take(name) {
            Given::Value(Value::Object(map)) => Given::Value(map),
            Given::Value(_) => {
                self.errors.push(FieldError::new(name, "must be an object"));
                Given::Absent
            }
            Given::Absent => Given::Absent,
        }
    }

    /// Reports every field nobody asked for, and returns all errors.
    pub fn finish(mut self) -> Vec<FieldError> {
        let mut unknown: Vec<String> = self.object.keys().cloned().collect();
        unknown.sort();
        for name in unknown {
            self.errors
                .push(FieldError::new(&name, "is not a field of this resource"));
        }
        self.errors
    }
}

/// Applies a string field to a stored value: absent keeps it.
pub fn apply_string(target: &mut String, given: Given<String>) {
    match given {
        Given::Absent => {}
        Given::Value(v) => *target = v,
    }
}

/// Applies a list field to a stored value: absent keeps it.
pub fn apply_strings(target: &mut Vec<String>, given: Given<Vec<String>>) {
    match given {
        Given::Absent => {}
        Given::Value(v) => *target = v,
    }
}

/// Applies a boolean field: absent keeps it.
pub fn apply_bool(target: &mut bool, given: Given<bool>) {
    match given {
        Given::Absent => {}
        Given::Value(v) => *target = v,
    }
}
