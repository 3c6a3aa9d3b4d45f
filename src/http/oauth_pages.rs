//! The server-rendered pages of the authorization endpoint: login, second factor, consent and
//! error. Plain HTML built here (no template engine, no framework, no CDN), one same-origin
//! style sheet and, on the login page, one same-origin script for the passkey button
//! (`/oauth2/assets/*`, compiled into the binary).
//!
//! **The contract** (`API-OAUTH.md`; other engineers' clients drive these pages without a
//! browser): every form carries the hidden fields `request` and `csrf`, and the element ids
//! `#email`, `#password`, `#login-submit`, `#mfa-code`, `#mfa-submit`, `#passkey-login`,
//! `#consent-allow`, `#consent-deny`, `#error-message` are stable.
//!
//! **CSP** ([`csp`]): the pages load only their own style sheet and script, and forms may post
//! to sessiond itself and be redirected to the client's redirect URI (browsers apply
//! `form-action` to the redirect after a post), nothing else.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::auth::oauth::authorize::Pending;

/// The passkey button's script.
pub const LOGIN_JS: &str = include_str!("oauth_pages/login.js");
/// The pages' style sheet.
pub const PAGES_CSS: &str = include_str!("oauth_pages/pages.css");

/// A sign-in method offered beside the password (the social providers of issue #14): its
/// label and the URL that starts it. Empty until providers exist.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExternalLogin {
    /// The button's text, e.g. "Continue with GitHub".
    pub name: String,
    /// Where the button leads (a same-origin start URL).
    pub start_url: String,
}

/// Escapes text for HTML content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The Content-Security-Policy of a page whose forms may end at `redirect_uri` (None: the
/// error page, whose only link is back).
pub fn csp(redirect_uri: Option<&str>) -> HeaderValue {
    let target = redirect_uri
        .and_then(|u| url::Url::parse(u).ok())
        .map(|u| match u.origin() {
            url::Origin::Tuple(..) => format!(" {}", u.origin().ascii_serialization()),
            // A native app's private-use scheme (`com.example.app:/cb`).
            url::Origin::Opaque(_) => format!(" {}:", u.scheme()),
        })
        .unwrap_or_default();
    let text = format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' https:; \
         connect-src 'self'; form-action 'self'{target}; frame-ancestors 'none'; \
         base-uri 'none'"
    );
    HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static(
        "default-src 'none'; style-src 'self'; form-action 'self'; frame-ancestors 'none'",
    ))
}

/// A page as a response: `status`, HTML, its CSP, never cached. `Referrer-Policy:
/// same-origin` instead of the API's `no-referrer`: under `no-referrer` browsers send
/// `Origin: null` with the page's form posts, and the forms' check needs the real origin; a
/// navigation to another origin still carries no referrer.
pub fn page(status: StatusCode, csp: HeaderValue, html: String) -> Response {
    (
        status,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (header::CONTENT_SECURITY_POLICY, csp),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("same-origin"),
            ),
        ],
        html,
    )
        .into_response()
}

fn document(title: &str, body: &str, script: bool) -> String {
    let script = if script {
        r#"<script src="/oauth2/assets/login.js" defer></script>"#
    } else {
        ""
    };
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}</title><link rel=\"stylesheet\" href=\"/oauth2/assets/pages.css\">{script}\
         </head><body><main>{body}</main></body></html>\n",
        escape(title)
    )
}

fn hidden(pending: &Pending) -> String {
    format!(
        "<input type=\"hidden\" name=\"request\" value=\"{}\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        pending.id,
        escape(&pending.csrf)
    )
}

fn message(error: Option<&str>, notice: Option<&str>) -> String {
    let mut out = String::new();
    if let Some(notice) = notice {
        out.push_str(&format!("<p class=\"notice\">{}</p>", escape(notice)));
    }
    match error {
        Some(e) => out.push_str(&format!(
            "<p id=\"error-message\" class=\"error\" role=\"alert\">{}</p>",
            escape(e)
        )),
        None => out.push_str("<p id=\"error-message\" class=\"error\" role=\"alert\" hidden></p>"),
    }
    out
}

/// What the login page shows.
#[derive(Debug)]
pub struct LoginView<'a> {
    /// The request.
    pub pending: &'a Pending,
    /// The email field's value (the typed one, or `login_hint`).
    pub email: Option<&'a str>,
    /// A failed attempt's message.
    pub error: Option<&'a str>,
    /// Why a signed-in user must sign in again.
    pub notice: Option<&'a str>,
    /// Whether the passkey button is offered (passkeys are configured).
    pub passkeys: bool,
    /// Other sign-in methods (social providers).
    pub external: &'a [ExternalLogin],
}

/// The login page.
pub fn login(v: &LoginView<'_>) -> String {
    let app = escape(&v.pending.client.name);
    let email = escape(
        v.email
            .or(v.pending.params.login_hint.as_deref())
            .unwrap_or(""),
    );
    let passkey = if v.passkeys {
        "<button type=\"button\" id=\"passkey-login\">Sign in with a passkey</button>"
    } else {
        ""
    };
    let external: String = if v.external.is_empty() {
        String::new()
    } else {
        let links: String = v
            .external
            .iter()
            .map(|e| {
                format!(
                    "<a href=\"{}\">{}</a>",
                    escape(&e.start_url),
                    escape(&e.name)
                )
            })
            .collect();
        format!("<div class=\"social\">{links}</div>")
    };
    let body = format!(
        "<h1>Sign in to continue to {app}</h1>{}\
         <form method=\"post\" action=\"/oauth2/login\">{}\
         <label for=\"email\">Email</label>\
         <input type=\"email\" id=\"email\" name=\"email\" value=\"{email}\" autocomplete=\"username webauthn\" required>\
         <label for=\"password\">Password</label>\
         <input type=\"password\" id=\"password\" name=\"password\" autocomplete=\"current-password\" required>\
         <div class=\"actions\"><button type=\"submit\" id=\"login-submit\">Sign in</button>{passkey}</div>\
         </form>{external}",
        message(v.error, v.notice),
        hidden(v.pending),
    );
    document("Sign in", &body, v.passkeys)
}

/// The second-factor page.
pub fn mfa(pending: &Pending, challenge: &str, error: Option<&str>) -> String {
    let body = format!(
        "<h1>Second factor</h1>{}\
         <form method=\"post\" action=\"/oauth2/login/mfa\">{}\
         <input type=\"hidden\" name=\"challenge\" value=\"{}\">\
         <label for=\"mfa-code\">Code from your authenticator app, or a recovery code</label>\
         <input type=\"text\" id=\"mfa-code\" name=\"code\" autocomplete=\"one-time-code\" inputmode=\"text\" required>\
         <button type=\"submit\" id=\"mfa-submit\">Continue</button></form>",
        message(error, None),
        hidden(pending),
        escape(challenge),
    );
    document("Second factor", &body, false)
}

/// What a scope means, in words.
fn scope_words(scope: &str) -> String {
    match scope {
        "openid" => "Confirm who you are (sign you in)".to_owned(),
        "profile" => "See your name".to_owned(),
        "email" => "See your email address and whether it is verified".to_owned(),
        "offline_access" => "Stay connected when you are not using it".to_owned(),
        other => format!("Use the \u{201c}{other}\u{201d} permission"),
    }
}

/// The consent page. `logo_url`: the application's logo, if it has one.
pub fn consent(pending: &Pending, logo_url: Option<&str>) -> String {
    let app = escape(&pending.client.name);
    let logo = logo_url
        .map(|u| format!("<img class=\"logo\" src=\"{}\" alt=\"\">", escape(u)))
        .unwrap_or_default();
    let description = pending
        .client
        .description
        .as_deref()
        .map(|d| format!("<p>{}</p>", escape(d)))
        .unwrap_or_default();
    let scopes: String = pending
        .params
        .scope
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(|s| format!("<li>{}</li>", escape(&scope_words(s))))
        .collect();
    let body = format!(
        "{logo}<h1>{app} wants to access your account</h1>{description}\
         <p>It asks to:</p><ul class=\"scopes\">{scopes}</ul>{}\
         <form method=\"post\" action=\"/oauth2/consent\">{}\
         <div class=\"actions\">\
         <button type=\"submit\" id=\"consent-allow\" name=\"decision\" value=\"allow\">Allow</button>\
         <button type=\"submit\" id=\"consent-deny\" name=\"decision\" value=\"deny\">Deny</button>\
         </div></form>",
        message(None, None),
        hidden(pending),
    );
    document("Allow access", &body, false)
}

/// The error page (the request cannot be answered at the client).
pub fn error(text: &str) -> String {
    let body = format!(
        "<h1>Sign-in request refused</h1>\
         <p id=\"error-message\" class=\"error\" role=\"alert\">{}</p>",
        escape(text)
    );
    document("Sign-in error", &body, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_and_csp() {
        assert_eq!(
            escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        let c = csp(Some("https://app.example/cb?x=1"));
        assert!(
            c.to_str()
                .unwrap()
                .contains("form-action 'self' https://app.example;")
        );
        let native = csp(Some("com.example.app:/cb"));
        assert!(
            native
                .to_str()
                .unwrap()
                .contains("form-action 'self' com.example.app:;")
        );
        assert!(csp(None).to_str().unwrap().contains("form-action 'self';"));
    }
}
