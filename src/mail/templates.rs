//! The texts of the mails sessiond sends. Plain text only: nothing to render, nothing to
//! inject (the only variable parts are the code, made of digits, and a number of minutes).

use sessiond_actors::ids::UserId;

use super::OutgoingMail;
use crate::codes::{Code, Purpose};

/// The mail carrying `code` for `purpose` to `to`, valid for `minutes`.
pub fn code_mail(
    purpose: Purpose,
    to: &str,
    user_id: UserId,
    code: &Code,
    minutes: i64,
) -> OutgoingMail {
    let code = code.expose_secret();
    let (subject, body) = match purpose {
        Purpose::EmailVerification => (
            "Your email verification code".to_owned(),
            format!(
                "Your email verification code is: {code}\n\n\
                 It expires in {minutes} minutes and can be used once.\n\n\
                 If you did not create an account, you can ignore this mail.\n"
            ),
        ),
        Purpose::PasswordReset => (
            "Your password reset code".to_owned(),
            format!(
                "Your password reset code is: {code}\n\n\
                 It expires in {minutes} minutes and can be used once. Resetting your \
                 password signs you out everywhere.\n\n\
                 If you did not ask to reset your password, you can ignore this mail: your \
                 password has not changed.\n"
            ),
        ),
    };
    OutgoingMail {
        to: to.to_owned(),
        subject,
        body,
        kind: purpose.as_str(),
        user_id: Some(user_id),
    }
}

/// The mail telling the owner what a completed password reset removed from the account, so
/// anything they did not expect to lose is noticed (and anything an intruder added is named).
pub fn reset_removals_mail(
    to: &str,
    user_id: UserId,
    removed: &crate::auth::reset::ResetRemovals,
) -> OutgoingMail {
    let mut lines = vec![format!(
        "- signed out of {} session(s) on every device",
        removed.sessions
    )];
    if removed.api_keys.is_empty() {
        lines.push("- no API keys to revoke".to_owned());
    } else {
        lines.push(format!("- revoked {} API key(s):", removed.api_keys.len()));
        for name in &removed.api_keys {
            // Names are the owner's own labels; keep one per line whatever they contain.
            let name: String = name.chars().filter(|c| !c.is_control()).collect();
            lines.push(format!("    * {name}"));
        }
    }
    if removed.factors.totp {
        lines.push("- removed the authenticator app (TOTP) added in the last 24 hours".to_owned());
    }
    if removed.factors.passkeys > 0 {
        lines.push(format!(
            "- removed {} passkey(s) added in the last 24 hours",
            removed.factors.passkeys
        ));
    }
    if removed.factors.recovery_codes > 0 {
        lines.push(format!(
            "- removed {} recovery code(s) created in the last 24 hours",
            removed.factors.recovery_codes
        ));
    }
    // Lines under 76 characters: the mail stays 7-bit, readable as sent.
    let body = format!(
        "Your password was reset. To protect your account, sessiond also:\n\n{}\n\n\
         Second factors you added more than 24 hours ago were kept.\n\
         If you did not reset your password, contact your administrator.\n",
        lines.join("\n")
    );
    OutgoingMail {
        to: to.to_owned(),
        subject: "Your password was reset: what was removed".to_owned(),
        body,
        kind: "password_reset_removals",
        user_id: Some(user_id),
    }
}

/// The warning that one of the owner's passkeys presented a signature counter lower than one
/// already seen: the authenticator may have been cloned. The attempt was refused.
pub fn passkey_counter_regressed_mail(
    to: &str,
    user_id: UserId,
    passkey_name: &str,
) -> OutgoingMail {
    // The name is the owner's own label; no control characters in the mail.
    let name: String = passkey_name.chars().filter(|c| !c.is_control()).collect();
    let body = format!(
        "A sign-in with your passkey \"{name}\" was refused: the authenticator's\n\
         signature counter went backwards, which can mean the passkey was copied.\n\n\
         If you did not just use this passkey, delete it from your account and\n\
         register a new one. Contact your administrator if you are unsure.\n"
    );
    OutgoingMail {
        to: to.to_owned(),
        subject: "A passkey sign-in was refused".to_owned(),
        body,
        kind: "passkey_counter_regressed",
        user_id: Some(user_id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_mail_carries_its_code_and_lifetime() {
        let code = Code::parse("012345").unwrap();
        for purpose in [Purpose::EmailVerification, Purpose::PasswordReset] {
            let mail = code_mail(purpose, "ada@example.com", UserId::new(), &code, 15);
            assert!(mail.body.contains("012345"), "{}", mail.body);
            assert!(mail.body.contains("15 minutes"), "{}", mail.body);
            assert_eq!(mail.kind, purpose.as_str());
        }
    }

    #[test]
    fn the_reset_mail_lists_what_was_removed_in_short_lines() {
        let removed = crate::auth::reset::ResetRemovals {
            sessions: 2,
            api_keys: vec!["ci".into(), "evil\nSubject: x".into()],
            factors: crate::store::mfa::RemovedFactors {
                totp: true,
                recovery_codes: 10,
                passkeys: 1,
            },
        };
        let mail = reset_removals_mail("ada@example.com", UserId::new(), &removed);
        for expected in [
            "signed out of 2 session(s)",
            "removed 1 passkey(s) added in the last 24 hours",
            "revoked 2 API key(s)",
            "    * ci",
            "    * evilSubject: x",
            "authenticator app (TOTP)",
            "removed 10 recovery code(s)",
        ] {
            assert!(
                mail.body.contains(expected),
                "{expected:?} in {}",
                mail.body
            );
        }
        assert!(mail.body.lines().all(|l| l.len() < 76), "{}", mail.body);
    }
}
