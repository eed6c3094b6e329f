//! The XML of the STS Query protocol: result documents, `ErrorResponse` bodies and
//! the error codes with the HTTP statuses real STS answers them with.

use http::StatusCode;

/// The namespace every STS 2011-06-15 document carries.
pub(crate) const NAMESPACE: &str = "https://sts.amazonaws.com/doc/2011-06-15/";

/// Escapes text for an XML element or attribute value. Also drops characters XML
/// 1.0 cannot carry at all, so that no input can make the document unparseable.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => {}
            c => out.push(c),
        }
    }
    out
}

/// An STS error as the client sees it: code, message and HTTP status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StsFault {
    pub code: &'static str,
    pub message: String,
    pub status: StatusCode,
}

impl StsFault {
    fn new(code: &'static str, status: StatusCode, message: impl Into<String>) -> Self {
        StsFault {
            code,
            message: message.into(),
            status,
        }
    }

    pub fn validation(message: impl Into<String>) -> Self {
        Self::new("ValidationError", StatusCode::BAD_REQUEST, message)
    }

    pub(crate) fn invalid_identity_token(message: impl Into<String>) -> Self {
        Self::new("InvalidIdentityToken", StatusCode::BAD_REQUEST, message)
    }

    pub(crate) fn expired_token_exception(message: impl Into<String>) -> Self {
        Self::new("ExpiredTokenException", StatusCode::BAD_REQUEST, message)
    }

    pub(crate) fn access_denied(message: impl Into<String>) -> Self {
        Self::new("AccessDenied", StatusCode::FORBIDDEN, message)
    }

    pub(crate) fn malformed_policy_document(message: impl Into<String>) -> Self {
        Self::new("MalformedPolicyDocument", StatusCode::BAD_REQUEST, message)
    }

    pub(crate) fn packed_policy_too_large(message: impl Into<String>) -> Self {
        Self::new("PackedPolicyTooLarge", StatusCode::BAD_REQUEST, message)
    }

    pub(crate) fn invalid_parameter_value(message: impl Into<String>) -> Self {
        Self::new("InvalidParameterValue", StatusCode::BAD_REQUEST, message)
    }

    pub(crate) fn invalid_client_token_id() -> Self {
        Self::new(
            "InvalidClientTokenId",
            StatusCode::FORBIDDEN,
            "The security token included in the request is invalid.",
        )
    }

    pub(crate) fn signature_does_not_match(message: impl Into<String>) -> Self {
        Self::new("SignatureDoesNotMatch", StatusCode::FORBIDDEN, message)
    }

    pub(crate) fn expired_token() -> Self {
        Self::new(
            "ExpiredToken",
            StatusCode::FORBIDDEN,
            "The security token included in the request is expired",
        )
    }

    pub(crate) fn missing_authentication_token() -> Self {
        Self::new(
            "MissingAuthenticationToken",
            StatusCode::FORBIDDEN,
            "Request is missing Authentication Token",
        )
    }

    pub(crate) fn incomplete_signature(message: impl Into<String>) -> Self {
        Self::new("IncompleteSignature", StatusCode::BAD_REQUEST, message)
    }

    pub(crate) fn invalid_action(message: impl Into<String>) -> Self {
        Self::new("InvalidAction", StatusCode::BAD_REQUEST, message)
    }

    pub(crate) fn too_large(limit: usize) -> Self {
        Self::new(
            "RequestEntityTooLarge",
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("Request body is larger than {limit} bytes"),
        )
    }

    /// STS's answer above its request rate (400, `<Type>Sender</Type>`), which
    /// SDKs retry as throttling.
    pub(crate) fn throttling() -> Self {
        Self::new("Throttling", StatusCode::BAD_REQUEST, "Rate exceeded")
    }

    /// A server-side failure (`<Type>Receiver</Type>`), which SDKs retry.
    pub(crate) fn service_unavailable(message: impl Into<String>) -> Self {
        Self::new(
            "ServiceUnavailable",
            StatusCode::SERVICE_UNAVAILABLE,
            message,
        )
    }

    pub(crate) fn method_not_allowed(method: &str) -> Self {
        Self::new(
            "InvalidHttpMethod",
            StatusCode::METHOD_NOT_ALLOWED,
            format!("HTTP method {method} is not allowed; use POST or GET"),
        )
    }

    /// The `ErrorResponse` document; `Receiver` errors are the server's (5xx).
    pub fn to_xml(&self, request_id: &str) -> String {
        let kind = if self.status.is_server_error() {
            "Receiver"
        } else {
            "Sender"
        };
        format!(
            "<ErrorResponse xmlns=\"{NAMESPACE}\">\n  <Error>\n    <Type>{kind}</Type>\n    \
             <Code>{}</Code>\n    <Message>{}</Message>\n  </Error>\n  <RequestId>{}</RequestId>\n\
             </ErrorResponse>\n",
            escape(self.code),
            escape(&self.message),
            escape(request_id)
        )
    }
}

/// Builds `<{action}Response>` around `<{action}Result>` with the given elements
/// (their text is escaped as it is written), plus `ResponseMetadata`.
pub(crate) fn result_document(action: &str, elements: &[Element<'_>], request_id: &str) -> String {
    let mut body = String::new();
    for e in elements {
        e.write(&mut body, 4);
    }
    format!(
        "<{action}Response xmlns=\"{NAMESPACE}\">\n  <{action}Result>\n{body}  </{action}Result>\n  \
         <ResponseMetadata>\n    <RequestId>{}</RequestId>\n  </ResponseMetadata>\n</{action}Response>\n",
        escape(request_id)
    )
}

/// A result element: text (escaped when written) or nested elements.
pub(crate) enum Element<'a> {
    Text(&'a str, String),
    Nested(&'a str, Vec<Element<'a>>),
}

impl Element<'_> {
    fn write(&self, out: &mut String, indent: usize) {
        let pad = " ".repeat(indent);
        match self {
            Element::Text(name, value) => {
                out.push_str(&format!("{pad}<{name}>{}</{name}>\n", escape(value)));
            }
            Element::Nested(name, children) => {
                out.push_str(&format!("{pad}<{name}>\n"));
                for c in children {
                    c.write(out, indent + 2);
                }
                out.push_str(&format!("{pad}</{name}>\n"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_should_cover_markup_and_quotes() {
        assert_eq!(
            escape(r#"<a href="x">&'y'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&apos;y&apos;&lt;/a&gt;"
        );
        assert_eq!(escape("plain text"), "plain text");
    }

    #[test]
    fn escape_should_drop_characters_xml_cannot_carry() {
        assert_eq!(escape("a\u{0}b\u{1b}c\nd"), "abc\nd");
    }

    #[test]
    fn error_document_should_escape_the_message() {
        let xml = StsFault::validation("Value '<x>&' at 'roleSessionName'").to_xml("rid");
        assert!(xml.starts_with(&format!("<ErrorResponse xmlns=\"{NAMESPACE}\">")));
        assert!(xml.contains("<Type>Sender</Type>"));
        assert!(xml.contains("<Code>ValidationError</Code>"));
        assert!(xml.contains("Value &apos;&lt;x&gt;&amp;&apos;"));
        assert!(xml.contains("<RequestId>rid</RequestId>"));
    }

    #[test]
    fn result_document_should_nest_and_escape() {
        let xml = result_document(
            "GetCallerIdentity",
            &[
                Element::Text("Arn", "a&b".into()),
                Element::Nested("X", vec![Element::Text("Y", "<".into())]),
            ],
            "rid",
        );
        assert!(xml.contains("<GetCallerIdentityResult>"));
        assert!(xml.contains("<Arn>a&amp;b</Arn>"));
        assert!(xml.contains("<X>\n      <Y>&lt;</Y>\n    </X>"));
        assert!(xml.contains("<ResponseMetadata>\n    <RequestId>rid</RequestId>"));
    }
}
