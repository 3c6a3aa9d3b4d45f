//! Validated domain values built from untrusted input.
//!
//! Each type can only be built through its `parse` constructor, so a value of the type is proof
//! that the input was checked (and, where documented, normalised). The HTTP layer collects the
//! [`FieldError`]s of every field of a request and answers `422 validation_failed` with all of
//! them at once.

use std::fmt;

use unicode_normalization::UnicodeNormalization;

/// One invalid field of a request: which field, and a message fit to show to the client.
///
/// Messages never repeat the submitted value: the value may be a password.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// The field's name as the API spells it (e.g. `email`).
    pub field: &'static str,
    /// What is wrong, in plain words.
    pub message: String,
}

impl FieldError {
    /// A problem with `field`.
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for FieldError {}

/// Longest address accepted (RFC 5321 path limit minus the angle brackets).
const EMAIL_MAX_CHARS: usize = 254;
/// Longest local part (RFC 5321 §4.5.3.1.1).
const EMAIL_LOCAL_MAX_CHARS: usize = 64;

/// A normalised e-mail address. Two addresses are the same account exactly when their
/// normalised forms are equal, so this normalisation defines uniqueness and must not change
/// without migrating stored addresses.
///
/// Normalisation, in this order:
/// 1. surrounding whitespace is trimmed;
/// 2. Unicode NFC: a decomposed `E` + `◌́` becomes the single `É`, so the same address typed
///    on two keyboards is one account;
/// 3. lowercase (full Unicode lowercasing, local part included: nobody runs two mailboxes that
///    differ only by case, and treating them as one prevents look-alike duplicates), then NFC
///    again in case the case mapping produced a composable sequence.
///
/// Then validation (on characters, not bytes): at most 254 characters; exactly one `@`; a
/// non-empty local part of at most 64 characters; a non-empty domain; no whitespace or control
/// characters anywhere. Deliberately no further syntax checks (no dot required in the domain,
/// no quoting rules): the only real proof of an address is a mail that arrives.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    /// Normalises then validates `input` (see the type's documentation).
    pub fn parse(input: &str) -> Result<Email, FieldError> {
        let err = |m: &str| Err(FieldError::new("email", m));
        // NFC once more after lowercasing: case mapping may emit sequences that compose.
        let lowered = input.trim().nfc().collect::<String>().to_lowercase();
        let normalised: String = lowered.nfc().collect();
        if normalised.is_empty() {
            return err("must not be empty");
        }
        if normalised.chars().count() > EMAIL_MAX_CHARS {
            return err("must be at most 254 characters");
        }
        if normalised
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
        {
            return err("must not contain spaces or control characters");
        }
        let mut parts = normalised.split('@');
        let (Some(local), Some(domain), None) = (parts.next(), parts.next(), parts.next()) else {
            return err("must contain exactly one @");
        };
        if local.is_empty() {
            return err("must have a name before the @");
        }
        if local.chars().count() > EMAIL_LOCAL_MAX_CHARS {
            return err("the part before the @ must be at most 64 characters");
        }
        if domain.is_empty() {
            return err("must have a domain after the @");
        }
        Ok(Email(normalised))
    }

    /// The normalised address.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Email {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Fewest characters in a password (NIST SP 800-63B minimum).
pub const PASSWORD_MIN_CHARS: usize = 8;
/// Most characters in a password: long enough for passphrases and managers, short enough that
/// hashing cost stays bounded.
pub const PASSWORD_MAX_CHARS: usize = 128;

/// A candidate password: 8 to 128 characters (Unicode scalar values, not bytes). No
/// composition rules (NIST SP 800-63B advises against them). Kept verbatim: no trimming, no
/// normalisation, because the stored hashes are computed over exactly these bytes.
///
/// A secret: `Debug` prints `Password(..)` and there is no `Display`.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    /// Checks the length; the value is otherwise taken as is.
    pub fn parse(input: String) -> Result<Password, FieldError> {
        let n = input.chars().count();
        if n < PASSWORD_MIN_CHARS {
            return Err(FieldError::new(
                "password",
                format!("must be at least {PASSWORD_MIN_CHARS} characters"),
            ));
        }
        if n > PASSWORD_MAX_CHARS {
            return Err(FieldError::new(
                "password",
                format!("must be at most {PASSWORD_MAX_CHARS} characters"),
            ));
        }
        Ok(Password(input))
    }

    /// The password itself, for hashing. The name makes every use stand out in review.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(..)")
    }
}

/// Longest display or device name, in characters.
pub const NAME_MAX_CHARS: usize = 100;

/// Shared rule of the free-text labels: trimmed, NFC-normalised (so equal-looking names are
/// equal strings), 1 to `NAME_MAX_CHARS` characters, no control characters (they break logs
/// and terminals and have no business in a label).
fn parse_label(field: &'static str, input: &str) -> Result<String, FieldError> {
    let s: String = input.trim().nfc().collect();
    if s.is_empty() {
        return Err(FieldError::new(field, "must not be empty"));
    }
    if s.chars().count() > NAME_MAX_CHARS {
        return Err(FieldError::new(
            field,
            format!("must be at most {NAME_MAX_CHARS} characters"),
        ));
    }
    if s.chars().any(char::is_control) {
        return Err(FieldError::new(
            field,
            "must not contain control characters",
        ));
    }
    Ok(s)
}

/// A user's display name: trimmed, NFC, 1–100 characters, no control characters. Optional at
/// the API level: absent means "no name", present-but-blank is an error.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DisplayName(String);

impl DisplayName {
    /// Trims, normalises and validates (see the type's documentation).
    pub fn parse(input: &str) -> Result<DisplayName, FieldError> {
        parse_label("display_name", input).map(DisplayName)
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DisplayName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A client-supplied label for a session's device ("Work laptop"): same rules as
/// [`DisplayName`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DeviceName(String);

impl DeviceName {
    /// Trims, normalises and validates (see [`DisplayName`]).
    pub fn parse(input: &str) -> Result<DeviceName, FieldError> {
        parse_label("device_name", input).map(DeviceName)
    }

    /// The label.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The label as an owned string (what the session record stores).
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for DeviceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_is_trimmed_nfc_normalised_and_lowercased() {
        let composed = "  JOS\u{00C9}@Example.COM ";
        let decomposed = "  JOSE\u{0301}@Example.COM ";
        assert_ne!(composed, decomposed);
        let a = Email::parse(composed).unwrap();
        let b = Email::parse(decomposed).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.as_str(), "jos\u{00E9}@example.com");
    }

    #[test]
    fn valid_emails_are_accepted() {
        for ok in [
            "a@b",
            "user.name+tag@example.co.uk",
            "ünïcödé@exämple.de",
            "x@localhost",
        ] {
            assert!(Email::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn invalid_emails_are_rejected() {
        let long_local = format!("{}@example.com", "a".repeat(65));
        let too_long = format!("a@{}", "b".repeat(253));
        for bad in [
            "",
            "   ",
            "no-at-sign",
            "two@@example.com",
            "a@b@c",
            "@example.com",
            "user@",
            "us er@example.com",
            "user@exa\tmple.com",
            "user@exam\u{0007}ple.com",
            long_local.as_str(),
            too_long.as_str(),
        ] {
            let e = Email::parse(bad).unwrap_err();
            assert_eq!(e.field, "email", "{bad:?}");
        }
    }

    #[test]
    fn email_length_limits_count_characters_not_bytes() {
        // 64 two-byte characters: 128 bytes but a valid local part.
        let local = "é".repeat(64);
        assert!(Email::parse(&format!("{local}@example.com")).is_ok());
        assert!(Email::parse(&format!("{local}é@example.com")).is_err());
        // Exactly 254 characters overall is fine, 255 is not.
        let ok = format!("a@{}", "b".repeat(252));
        assert_eq!(ok.chars().count(), 254);
        assert!(Email::parse(&ok).is_ok());
        assert!(Email::parse(&format!("{ok}b")).is_err());
    }

    #[test]
    fn password_length_is_counted_in_characters() {
        assert!(Password::parse("1234567".into()).is_err());
        assert!(Password::parse("12345678".into()).is_ok());
        // Eight characters, sixteen bytes.
        assert!(Password::parse("éééééééé".into()).is_ok());
        // Seven characters, fourteen bytes: still too short.
        assert!(Password::parse("ééééééé".into()).is_err());
        assert!(Password::parse("x".repeat(128)).is_ok());
        let e = Password::parse("x".repeat(129)).unwrap_err();
        assert_eq!(e.field, "password");
    }

    #[test]
    fn password_is_kept_verbatim() {
        let p = Password::parse("  padded  ".into()).unwrap();
        assert_eq!(p.expose_secret(), "  padded  ");
    }

    #[test]
    fn password_never_shows_in_debug_or_errors() {
        let p = Password::parse("hunter2hunter2".into()).unwrap();
        assert_eq!(format!("{p:?}"), "Password(..)");
        let e = Password::parse("short".into()).unwrap_err();
        assert!(!e.to_string().contains("short"));
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(DisplayName::parse("  Ada  ").unwrap().as_str(), "Ada");
        assert_eq!(
            DeviceName::parse(" Work laptop ").unwrap().as_str(),
            "Work laptop"
        );
        assert!(DisplayName::parse("x".repeat(100).as_str()).is_ok());
        assert!(DisplayName::parse("x".repeat(101).as_str()).is_err());
        assert!(DeviceName::parse("é".repeat(100).as_str()).is_ok());
        assert!(DeviceName::parse("é".repeat(101).as_str()).is_err());
    }

    #[test]
    fn names_reject_blank_and_control_characters() {
        for bad in ["", "   ", "a\u{0000}b", "line\nbreak", "bell\u{0007}"] {
            assert_eq!(DisplayName::parse(bad).unwrap_err().field, "display_name");
            assert_eq!(DeviceName::parse(bad).unwrap_err().field, "device_name");
        }
    }

    #[test]
    fn names_are_nfc_normalised() {
        assert_eq!(
            DisplayName::parse("Jose\u{0301}").unwrap(),
            DisplayName::parse("Jos\u{00E9}").unwrap()
        );
    }
}
