//! The few HTML pages a user sees: what is being linked, for whom, and how it ended. Small,
//! static, no scripts; every dynamic value is HTML-escaped.

use axum::response::{Html, IntoResponse, Response};
use http::StatusCode;

/// Escapes text for HTML element content and double-quoted attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:40rem;margin:4rem auto;padding:0 1rem;color:#1d2330}\
h1{font-size:1.4rem}.ok{color:#13653a}.bad{color:#9b1c1c}table{border-collapse:collapse;width:100%}\
td,th{text-align:left;padding:.4rem;border-bottom:1px solid #dde}button{padding:.3rem .8rem}small{color:#667}";

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
<title>{} · Portcullis</title><style>{STYLE}</style></head><body>{body}<p><small>Portcullis MCP gateway</small></p></body></html>",
        escape(title)
    );
    let mut response = (status, Html(html)).into_response();
    // The pages carry nothing cacheable and must not be framed (clickjacking on consent).
    let headers = response.headers_mut();
    headers.insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    headers.insert(
        http::header::X_FRAME_OPTIONS,
        http::HeaderValue::from_static("DENY"),
    );
    headers.insert(
        http::header::CONTENT_SECURITY_POLICY,
        http::HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"),
    );
    response
}

pub fn failure(status: StatusCode, title: &str, reason: &str) -> Response {
    page(
        status,
        title,
        &format!(
            "<h1 class=\"bad\">{}</h1><p>{}</p>",
            escape(title),
            escape(reason)
        ),
    )
}

pub fn linked(provider: &str, user: &str) -> Response {
    page(
        StatusCode::OK,
        "Account connected",
        &format!(
            "<h1 class=\"ok\">Your {} account is connected</h1><p>Linked for <b>{}</b>. You can close this window and retry the tool call in your MCP client.</p>",
            escape(provider),
            escape(user)
        ),
    )
}

/// One row of the connections page.
pub struct ConnectionRow {
    pub provider: String,
    pub scopes: Vec<String>,
    pub linked_at: String,
    pub expires: String,
}

pub fn connections(
    user: &str,
    rows: &[ConnectionRow],
    csrf: &str,
    notice: Option<&str>,
) -> Response {
    let mut body = format!(
        "<h1>Connected accounts</h1><p>Signed in as <b>{}</b>.</p>",
        escape(user)
    );
    if let Some(notice) = notice {
        body.push_str(&format!("<p class=\"ok\">{}</p>", escape(notice)));
    }
    if rows.is_empty() {
        body.push_str("<p>No accounts are linked yet. Tools that need one will give you a link when you use them.</p>");
    } else {
        body.push_str("<table><tr><th>Provider</th><th>Scopes</th><th>Linked</th><th>Access token expires</th><th></th></tr>");
        for row in rows {
            body.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><form method=\"post\" action=\"/connections/revoke\">\
<input type=\"hidden\" name=\"provider\" value=\"{}\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
<button type=\"submit\">Revoke</button></form></td></tr>",
                escape(&row.provider),
                escape(&row.scopes.join(" ")),
                escape(&row.linked_at),
                escape(&row.expires),
                escape(&row.provider),
                escape(csrf),
            ));
        }
        body.push_str("</table>");
    }
    page(StatusCode::OK, "Connected accounts", &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
