//! Asking for a mailed code (email verification, password reset): a real code for an eligible
//! account, mailed; a decoy for any other address. Both go through the same rules
//! ([`Codes::issue`]), so the answer does not tell whether the account exists. Confirming an
//! email-verification code ([`CodeFlows::verify_email`]); the password-reset confirmation is
//! [`super::reset::complete`].
//!
//! No HTTP here: handlers map [`StoreError`] and [`AuthError`] (a refused code is
//! [`AuthError::Code`]) to API errors in `http/error.rs`.

use chrono::{DateTime, Utc};
use sessiond_actors::clock::SharedClock;
use sessiond_actors::store::StoreError;
use uuid::Uuid;

use super::AuthError;
use crate::codes::{Checked, Code, CodeError, Codes, Issued, Purpose};
use crate::domain::Email;
use crate::mail::Mailer;
use crate::mail::templates::code_mail;
use crate::store::audit::{AuditClient, AuditEvent};
use crate::store::verification::Redemption;
use crate::store::{Store, User, UserStatus};

/// What the code flows work with, borrowed from the application's services.
#[derive(Clone, Copy)]
pub struct CodeFlows<'a> {
    /// The rules and the code key.
    pub codes: &'a Codes,
    /// Accounts and the code rows.
    pub store: &'a Store,
    /// The outgoing-mail queue (never waited on).
    pub mailer: &'a Mailer,
    /// "Now".
    pub clock: &'a SharedClock,
}

impl CodeFlows<'_> {
    /// Issues a code of `purpose` for `user` and queues its mail, unless the rules answer an
    /// earlier code again (cooldown, daily limit). Never waits for the mail server.
    pub async fn send_code(&self, user: &User, purpose: Purpose) -> Result<Issued, StoreError> {
        let issued = self
            .codes
            .issue(
                self.store,
                &user.email,
                Some(user.id),
                purpose,
                self.clock.now(),
            )
            .await?;
        match &issued.code {
            Some(code) => {
                let minutes = self.codes.policy().ttl.num_minutes().max(1);
                self.mailer
                    .send(code_mail(purpose, &user.email, user.id, code, minutes));
                tracing::info!(
                    purpose = purpose.as_str(),
                    user_id = %user.id,
                    verification_id = %issued.id,
                    "code queued for mailing"
                );
            }
            None => tracing::debug!(
                purpose = purpose.as_str(),
                user_id = %user.id,
                "no new code: cooldown or daily limit"
            ),
        }
        Ok(issued)
    }

    /// A code for the account behind `email` when it is active and `eligible` says it should
    /// get one, else a decoy filed under the same address. Either way the answer has the same
    /// shape, follows the same cooldown and limits, and costs about the same.
    pub async fn code_or_decoy(
        &self,
        email: &Email,
        purpose: Purpose,
        eligible: impl FnOnce(&User) -> bool,
    ) -> Result<Issued, StoreError> {
        let user = self.store.find_user_by_email(email.as_str()).await?;
        match user {
            Some(user) if user.status == UserStatus::Active && eligible(&user) => {
                self.send_code(&user, purpose).await
            }
            _ => {
                self.codes
                    .issue(self.store, email.as_str(), None, purpose, self.clock.now())
                    .await
            }
        }
    }

    /// Confirms an email-verification code: checks it (spending an attempt) and redeems it,
    /// which sets the account's `email_verified_at`. Answers the account as it now is. A code
    /// that a concurrent request redeemed first is [`CodeError::Invalid`].
    pub async fn verify_email(
        &self,
        verification_id: Uuid,
        code: &Code,
        client: &AuditClient,
    ) -> Result<User, AuthError> {
        let now = self.clock.now();
        let checked = self
            .codes
            .check(
                self.store,
                verification_id,
                Purpose::EmailVerification,
                code,
                now,
            )
            .await?;
        let event = redeemed_event("email_verified", &checked, client, now);
        let redeemed = self
            .store
            .redeem_verification_code(
                verification_id,
                now,
                Redemption::VerifyEmail(checked.user),
                &event,
            )
            .await?;
        if !redeemed {
            // A concurrent request with the same code won.
            return Err(CodeError::Invalid.into());
        }
        self.store
            .get_user(checked.user)
            .await?
            .ok_or(AuthError::Code(CodeError::Invalid))
    }
}

/// The audit event of a redeemed code (`email_verified`, `password_reset`): the account, the
/// verification id (opaque) and where the request came from; never the code.
pub fn redeemed_event(
    kind: &str,
    checked: &Checked,
    client: &AuditClient,
    now: DateTime<Utc>,
) -> AuditEvent {
    AuditEvent::new(kind, now)
        .user(checked.user)
        .client(client)
        .detail("verification_id", checked.id.to_string())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use sessiond_actors::clock::SystemClock;

    use super::*;
    use crate::codes::{CodeKey, CodePolicy, MAX_ATTEMPTS};
    use crate::mail::{DEFAULT_QUEUE, DEV_MAIL_FROM, MailSettings};
    use crate::store::NewUser;

    /// The flow without HTTP, on a real SQLite store and a development-mode mailer: a real
    /// address and an unknown one get the same sequence of answers, and only the real one mail.
    #[tokio::test]
    async fn real_and_unknown_addresses_get_the_same_answers_and_only_one_mail() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(&crate::testing::fresh_sqlite_url(dir.path()))
            .await
            .unwrap();
        store.migrate().await.unwrap();
        let mailer = Mailer::start(&MailSettings {
            smtp: None,
            from: DEV_MAIL_FROM.to_owned(),
            queue: DEFAULT_QUEUE,
        })
        .unwrap();
        let clock: SharedClock = Arc::new(SystemClock);
        let codes = Codes::new(
            CodeKey::from_bytes([9; 32]),
            CodePolicy {
                ttl: chrono::Duration::minutes(15),
                resend_cooldown: chrono::Duration::seconds(60),
                daily_limit: 10,
                max_attempts: MAX_ATTEMPTS,
            },
        );
        let flows = CodeFlows {
            codes: &codes,
            store: &store,
            mailer: &mailer,
            clock: &clock,
        };
        store
            .create_user(&NewUser {
                email: "ada@example.com".into(),
                name: None,
                password_hash: None,
            })
            .await
            .unwrap();
        for address in ["ada@example.com", "nobody@example.com"] {
            let email = Email::parse(address).unwrap();
            let first = flows
                .code_or_decoy(&email, Purpose::PasswordReset, |_| true)
                .await
                .unwrap();
            let again = flows
                .code_or_decoy(&email, Purpose::PasswordReset, |_| true)
                .await
                .unwrap();
            assert_eq!(first.id, again.id, "{address}");
            assert_eq!(first.expires_at, again.expires_at, "{address}");
            assert!(again.code.is_none());
        }
        assert_eq!(mailer.counts().queued, 1);
        store.close().await;
    }
}
