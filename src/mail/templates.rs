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
}
