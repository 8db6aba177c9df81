//! Request bodies: JSON objects read field by field, every problem reported
//! at once with the path of the field it concerns (422), never a 5xx.

use bytes::Bytes;
use http::{Request, header};
use serde_json::{Map, Value};

use crate::api::error::ApiError;

/// One problem with one field of a request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The field's name (`email`), or empty for the body as a whole.
    pub field: String,
    /// Stable code: `required`, `invalid`, `type`, `too_long`, `unknown_field`…
    pub code: &'static str,
    pub message: String,
}

/// What is wrong with a value, before it is tied to a field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub code: &'static str,
    pub message: String,
}

impl Invalid {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// The body as a JSON object. Anything but `application/json` is 415; bytes
/// that are not JSON are 400; JSON that is not an object is 422.
pub fn json_object(req: &Request<Bytes>) -> Result<Map<String, Value>, ApiError> {
    let media_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    let is_json = media_type.as_deref().is_some_and(|m| {
        m == "application/json" || (m.starts_with("application/") && m.ends_with("+json"))
    });
    if !is_json {
        return Err(ApiError::UnsupportedMediaType {
            expected: "application/json",
        });
    }
    match serde_json::from_slice::<Value>(req.body()) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::Validation {
            errors: vec![FieldError {
                field: String::new(),
                code: "type",
                message: "the body must be a JSON object".to_owned(),
            }],
        }),
        Err(e) => Err(ApiError::MalformedJson {
            detail: format!("line {} column {}: {}", e.line(), e.column(), classify(&e)),
        }),
    }
}

fn classify(e: &serde_json::Error) -> &'static str {
    match e.classify() {
        serde_json::error::Category::Eof => "the body ends too early",
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Data | serde_json::error::Category::Io => "invalid data",
    }
}

/// Reads fields of one object, collecting every problem.
#[derive(Debug)]
pub struct Fields<'a> {
    map: &'a Map<String, Value>,
    known: Vec<&'static str>,
    errors: Vec<FieldError>,
}

impl<'a> Fields<'a> {
    pub fn new(map: &'a Map<String, Value>) -> Self {
        Self {
            map,
            known: Vec::new(),
            errors: Vec::new(),
        }
    }

    /// A field that must be present and not `null`.
    pub fn required<T>(
        &mut self,
        name: &'static str,
        parse: impl FnOnce(&Value) -> Result<T, Invalid>,
    ) -> Option<T> {
        self.known.push(name);
        match self.map.get(name) {
            None | Some(Value::Null) => {
                self.errors.push(FieldError {
                    field: name.to_owned(),
                    code: "required",
                    message: format!("{name} is required"),
                });
                None
            }
            Some(value) => self.parse(name, value, parse),
        }
    }

    /// A field that may be absent or `null`.
    pub fn optional<T>(
        &mut self,
        name: &'static str,
        parse: impl FnOnce(&Value) -> Result<T, Invalid>,
    ) -> Option<T> {
        self.known.push(name);
        match self.map.get(name) {
            None | Some(Value::Null) => None,
            Some(value) => self.parse(name, value, parse),
        }
    }

    /// Reports a problem found across fields.
    pub fn reject(&mut self, field: &str, invalid: Invalid) {
        self.errors.push(FieldError {
            field: field.to_owned(),
            code: invalid.code,
            message: invalid.message,
        });
    }

    fn parse<T>(
        &mut self,
        name: &'static str,
        value: &Value,
        parse: impl FnOnce(&Value) -> Result<T, Invalid>,
    ) -> Option<T> {
        match parse(value) {
            Ok(v) => Some(v),
            Err(invalid) => {
                self.reject(name, invalid);
                None
            }
        }
    }

    /// Ends reading: unknown fields are errors too (they are usually typos).
    pub fn finish(mut self) -> Result<(), ApiError> {
        let unknown: Vec<String> = self
            .map
            .keys()
            .filter(|k| !self.known.contains(&k.as_str()))
            .cloned()
            .collect();
        for key in unknown {
            self.errors.push(FieldError {
                message: format!("{key} is not a field of this request"),
                field: key,
                code: "unknown_field",
            });
        }
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Validation {
                errors: self.errors,
            })
        }
    }
}

/// A string of at most `max` characters.
pub fn string(max: usize) -> impl FnOnce(&Value) -> Result<String, Invalid> {
    move |value| {
        let s = value
            .as_str()
            .ok_or_else(|| Invalid::new("type", "must be a string"))?;
        if s.chars().count() > max {
            return Err(Invalid::new(
                "too_long",
                format!("must be at most {max} characters"),
            ));
        }
        Ok(s.to_owned())
    }
}

/// A string turned into a domain type by `parse`.
pub fn parsed<T>(
    max: usize,
    parse: impl FnOnce(&str) -> Result<T, Invalid>,
) -> impl FnOnce(&Value) -> Result<T, Invalid> {
    move |value| string(max)(value).and_then(|s| parse(&s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(content_type: Option<&str>, body: &str) -> Request<Bytes> {
        let mut builder = Request::post("/x");
        if let Some(ct) = content_type {
            builder = builder.header(header::CONTENT_TYPE, ct);
        }
        builder
            .body(Bytes::copy_from_slice(body.as_bytes()))
            .unwrap()
    }

    #[test]
    fn bodies_must_be_json_objects() {
        let cases = [
            (Some("application/json"), "{}", Ok(()), "object"),
            (
                Some("application/json; charset=utf-8"),
                "{}",
                Ok(()),
                "with parameters",
            ),
            (Some("application/merge-patch+json"), "{}", Ok(()), "+json"),
            (None, "{}", Err("unsupported_media_type"), "no content type"),
            (
                Some("text/plain"),
                "{}",
                Err("unsupported_media_type"),
                "text",
            ),
            (
                Some("application/json"),
                "{",
                Err("malformed_json"),
                "truncated",
            ),
            (Some("application/json"), "", Err("malformed_json"), "empty"),
            (
                Some("application/json"),
                "[1]",
                Err("validation_failed"),
                "array",
            ),
            (
                Some("application/json"),
                "\"s\"",
                Err("validation_failed"),
                "string",
            ),
        ];
        for (ct, body, want, why) in cases {
            let got = json_object(&request(ct, body))
                .map(drop)
                .map_err(|e| e.code());
            assert_eq!(got, want, "{why}");
        }
    }

    #[test]
    fn every_field_problem_is_reported_with_its_path() {
        let map: Map<String, Value> =
            serde_json::from_str(r#"{"name": 5, "note": "far too long", "emial": "typo"}"#)
                .unwrap();
        let mut fields = Fields::new(&map);
        let email = fields.required("email", string(10));
        let name = fields.required("name", string(10));
        let note = fields.optional("note", string(3));
        let absent = fields.optional("absent", string(3));
        assert_eq!((email, name, note, absent), (None, None, None, None));
        let Err(ApiError::Validation { errors }) = fields.finish() else {
            panic!("validation must fail");
        };
        let got: Vec<(&str, &str)> = errors.iter().map(|e| (e.field.as_str(), e.code)).collect();
        assert_eq!(
            got,
            [
                ("email", "required"),
                ("name", "type"),
                ("note", "too_long"),
                ("emial", "unknown_field")
            ]
        );
    }
}
