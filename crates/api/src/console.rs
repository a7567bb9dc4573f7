//! The web console: `GET /console` (and `/console/`, `/console/<asset>`)
//! serves a small single-page application written as plain HTML, CSS and
//! ES modules in `crates/api/console/`, compiled into the binary so that
//! an operator needs nothing but the one file, and nothing is fetched from
//! elsewhere at run time.
//!
//! The console calls the same API as every other client: it signs its own
//! short-lived access tokens in the browser (WebCrypto, HS256) from the API
//! key and secret the operator enters, keeps the secret in the tab's
//! `sessionStorage`, and never sends it. The pages themselves are public
//! (they hold no data); everything they show comes from authenticated API
//! calls.
//!
//! Every answer carries a strict Content-Security-Policy (scripts, styles
//! and requests from this origin only, no inline script or style, no
//! framing), `X-Content-Type-Options: nosniff`, `X-Frame-Options: DENY`
//! and `Cache-Control: no-cache`, so that a browser revalidates and an
//! upgraded binary's console is the one shown.

use std::sync::Arc;

use axum::extract::Path;
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::ApiState;

/// The policy: nothing but this origin, no inline code, no plugins, no
/// framing, no `<base>` rewriting, and forms that never navigate (they are
/// submitted by the scripts).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; font-src 'self'; \
     object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// One embedded file.
#[derive(Debug, Clone, Copy)]
pub struct Asset {
    /// Its name under `/console/`.
    pub name: &'static str,
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// Its bytes.
    pub body: &'static [u8],
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const SVG: &str = "image/svg+xml";

/// Every file of the console. `index.html` is also what `/console` and
/// `/console/` answer.
pub const ASSETS: &[Asset] = &[
    Asset {
        name: "index.html",
        content_type: HTML,
        body: include_bytes!("../console/index.html"),
    },
    Asset {
        name: "style.css",
        content_type: CSS,
        body: include_bytes!("../console/style.css"),
    },
    Asset {
        name: "favicon.svg",
        content_type: SVG,
        body: include_bytes!("../console/favicon.svg"),
    },
    Asset {
        name: "app.js",
        content_type: JS,
        body: include_bytes!("../console/app.js"),
    },
    Asset {
        name: "api.js",
        content_type: JS,
        body: include_bytes!("../console/api.js"),
    },
    Asset {
        name: "ui.js",
        content_type: JS,
        body: include_bytes!("../console/ui.js"),
    },
    Asset {
        name: "routing.js",
        content_type: JS,
        body: include_bytes!("../console/routing.js"),
    },
    Asset {
        name: "carriers.js",
        content_type: JS,
        body: include_bytes!("../console/carriers.js"),
    },
    Asset {
        name: "calls.js",
        content_type: JS,
        body: include_bytes!("../console/calls.js"),
    },
    Asset {
        name: "bans.js",
        content_type: JS,
        body: include_bytes!("../console/bans.js"),
    },
    Asset {
        name: "ladder.js",
        content_type: JS,
        body: include_bytes!("../console/ladder.js"),
    },
];

/// The embedded file called `name`, if there is one.
pub fn asset(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.name == name)
}

/// The console's routes.
pub(crate) fn routes() -> Router<Arc<ApiState>> {
    Router::new()
        .route("/console", get(index))
        .route("/console/", get(index))
        .route("/console/{*name}", get(named))
}

async fn index() -> Response {
    serve(Some("index.html"))
}

async fn named(Path(name): Path<String>) -> Response {
    serve(Some(&name))
}

/// The answer for a file name: the file, or 404; with the security headers
/// either way.
pub fn serve(name: Option<&str>) -> Response {
    let mut response = match name.and_then(asset) {
        Some(asset) => {
            let mut response = (StatusCode::OK, asset.body).into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            );
            response
        }
        None => {
            let mut response =
                (StatusCode::NOT_FOUND, "no such file in the console\n").into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            response
        }
    };
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // The console's URLs carry no secrets, but its hash names calls and
    // numbers: no other site learns them from a Referer.
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header<'a>(response: &'a Response, name: &str) -> &'a str {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    #[test]
    fn every_asset_is_served_with_its_type_and_the_security_headers() {
        for asset in ASSETS {
            let response = serve(Some(asset.name));
            assert_eq!(response.status(), StatusCode::OK, "{}", asset.name);
            assert_eq!(header(&response, "content-type"), asset.content_type);
            assert_eq!(header(&response, "cache-control"), "no-cache");
            assert_eq!(header(&response, "x-content-type-options"), "nosniff");
            assert_eq!(header(&response, "x-frame-options"), "DENY");
            assert_eq!(
                header(&response, "content-security-policy"),
                CONTENT_SECURITY_POLICY
            );
            assert!(!asset.body.is_empty(), "{}", asset.name);
        }
    }

    #[test]
    fn an_unknown_or_nested_name_is_404_with_the_same_headers() {
        for name in ["nope.js", "../Cargo.toml", "a/app.js", "", "APP.JS"] {
            let response = serve(Some(name));
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "{name}");
            assert_eq!(header(&response, "x-frame-options"), "DENY");
            assert_eq!(
                header(&response, "content-security-policy"),
                CONTENT_SECURITY_POLICY
            );
        }
    }

    #[test]
    fn the_policy_allows_no_inline_code_and_no_other_origin() {
        assert!(!CONTENT_SECURITY_POLICY.contains("unsafe"));
        assert!(!CONTENT_SECURITY_POLICY.contains("http"));
        assert!(!CONTENT_SECURITY_POLICY.contains('*'));
        assert!(CONTENT_SECURITY_POLICY.starts_with("default-src 'self';"));
    }

    /// The page itself has no inline script, style or handler (the policy
    /// would block them), and every script it loads is embedded.
    #[test]
    fn the_page_has_no_inline_code_and_loads_only_embedded_files() {
        let html = std::str::from_utf8(include_bytes!("../console/index.html")).unwrap_or("");
        assert!(!html.contains("<style"), "inline style element");
        assert!(!html.contains("style="), "inline style attribute");
        let handler = html.split(" on").skip(1).find(|rest| {
            let name: String = rest.chars().take_while(char::is_ascii_alphabetic).collect();
            !name.is_empty() && rest[name.len()..].starts_with('=')
        });
        assert!(handler.is_none(), "inline event handler: on{handler:?}");
        for tag in html.split("<script").skip(1) {
            assert!(tag.contains("src="), "inline script: <script{tag}");
        }
        for part in html.split("/console/").skip(1) {
            let name: String = part
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '.' || *c == '-')
                .collect();
            assert!(asset(&name).is_some(), "{name} is not embedded");
        }
        for asset in ASSETS.iter().filter(|a| a.content_type == JS) {
            let text = std::str::from_utf8(asset.body).unwrap_or("");
            for line in text
                .lines()
                .filter(|l| l.trim_start().starts_with("import "))
            {
                let Some(from) = line.split('\'').nth(1) else {
                    continue;
                };
                let name = from.trim_start_matches("./");
                assert!(
                    super::asset(name).is_some(),
                    "{}: imports {from}, which is not embedded",
                    asset.name
                );
            }
        }
    }
}
