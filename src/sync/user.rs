//! Users: payload → link → idnumber → unique email → create (one per call).

use super::{Run, Step, SyncError};
use crate::events::UserInfo;
use crate::moodle::{NewUser, User, UserField};
use crate::store::{Entity, Link, LinkKind};

/// Moodle's `user.username` limit, less room for a clash suffix (`-99`).
const USERNAME_ROOM: usize = 100 - 3;
/// How many clash suffixes to try before giving up.
const MAX_SUFFIX: u32 = 20;

/// A username from an email, reduced to what Moodle accepts (moodle-ws.md §4):
/// lower case, only `a-z 0-9 . @ _ -`.
pub(crate) fn username_from(email: Option<&str>, fallback: &str) -> String {
    let clean = |s: &str| -> String {
        s.trim()
            .to_lowercase()
            .chars()
            .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || ".@_-".contains(*c))
            .take(USERNAME_ROOM)
            .collect()
    };
    let from_email = email.map(clean).unwrap_or_default();
    if from_email
        .trim_matches(|c: char| ".@_-".contains(c))
        .is_empty()
    {
        clean(fallback)
    } else {
        from_email
    }
}

fn with_suffix(base: &str, n: u32) -> String {
    if n <= 1 {
        base.to_string()
    } else {
        format!("{base}-{n}")
    }
}

fn same_email(user: &User, email: &str) -> bool {
    user.email
        .as_deref()
        .is_some_and(|e| e.trim().eq_ignore_ascii_case(email.trim()))
}

const VISIBILITY_HINT: &str = "if such an account exists, the token cannot see it: give the integration role moodle/user:viewalldetails and moodle/site:viewuseridentity";

impl Run<'_, '_> {
    /// The Moodle user of a booking, created (and written back) when Moodle has none.
    pub(crate) async fn find_or_create_user(&mut self, user: &UserInfo) -> Step<i64> {
        if let Some(id) = self.find_user(user).await? {
            return Ok(id);
        }
        let idnumber = self.ctx.config.user_idnumber(&user.id);
        let id = self.create_user(user, &idnumber).await?;
        self.outcome.moodle.user_id = Some(id);
        self.write_back(Entity::User, &user.id, id).await?;
        Ok(id)
    }

    /// The Moodle user of a booking, looked up in order: payload → link →
    /// idnumber → unique email; `None` when Moodle has none.
    pub(crate) async fn find_user(&mut self, user: &UserInfo) -> Step<Option<i64>> {
        let ctx = self.ctx;
        let link = ctx.links.link(ctx.tenant, LinkKind::User, &user.id).await?;

        if let Some(given) = user.moodle_id {
            if link.as_ref().is_none_or(|l| l.moodle_id != given) {
                let found = ctx
                    .moodle
                    .users_by_field(UserField::Id, &given.to_string())
                    .await?;
                if found.is_empty() {
                    return Err(SyncError::data(format!(
                        "Moodle user {given} (user.moodle_id of accessplanit user {}) does not exist: correct the user's Moodle ID in accessplanit",
                        user.id
                    ))
                    .into());
                }
                self.remember_user(&user.id, given).await?;
                self.outcome
                    .step(format!("user linked to the given Moodle user {given}"));
            }
            self.outcome.moodle.user_id = Some(given);
            return Ok(Some(given));
        }

        if let Some(l) = link {
            self.outcome.moodle.user_id = Some(l.moodle_id);
            return Ok(Some(l.moodle_id));
        }

        let idnumber = ctx.config.user_idnumber(&user.id);
        let by_idnumber = ctx
            .moodle
            .users_by_field(UserField::Idnumber, &idnumber)
            .await?;
        // Idnumbers may repeat in Moodle; the oldest account is the one we made first.
        if let Some(u) = by_idnumber.iter().min_by_key(|u| u.id) {
            return self
                .adopt_user(user, u.id, format!("user found by idnumber {idnumber}"))
                .await;
        }

        if ctx.config.match_users_by_email {
            if let Some(email) = user.email.as_deref() {
                let matches = self.users_with_email_exactly(email).await?;
                if let [only] = matches.as_slice() {
                    return self
                        .adopt_user(user, only.id, format!("user matched by email: {}", only.id))
                        .await;
                }
                if matches.len() > 1 {
                    self.outcome.step(format!(
                        "{} Moodle accounts share the email: not matched by email",
                        matches.len()
                    ));
                }
            }
        }

        Ok(None)
    }

    /// Users whose email is `email` as given or lower-cased (most sites store
    /// emails lower-case): exact look-ups, shared with other jobs' (both values
    /// usually ride in the same call). An account whose email differs in
    /// another way of case is found when Moodle refuses the create (its
    /// duplicate check ignores case) — see [`Self::create_user`].
    async fn users_with_email_exactly(&self, email: &str) -> Step<Vec<User>> {
        let moodle = self.ctx.moodle;
        let lower = email.to_lowercase();
        let (mut found, also) = if lower == email {
            (
                moodle.users_by_field(UserField::Email, email).await?,
                Vec::new(),
            )
        } else {
            let (given, lowered) = futures::join!(
                moodle.users_by_field(UserField::Email, email),
                moodle.users_by_field(UserField::Email, &lower),
            );
            (given?, lowered?)
        };
        for user in also {
            if found.iter().all(|u| u.id != user.id) {
                found.push(user);
            }
        }
        Ok(found.into_iter().filter(|u| same_email(u, email)).collect())
    }

    /// Users whose email equals `email` ignoring case (Moodle's LIKE also
    /// treats `_` and `%` as wildcards, so equality is checked here).
    async fn users_with_email(&self, email: &str) -> Step<Vec<User>> {
        let found = self.ctx.moodle.users_by_email_like(email).await?;
        Ok(found.into_iter().filter(|u| same_email(u, email)).collect())
    }

    async fn adopt_user(&mut self, user: &UserInfo, id: i64, step: String) -> Step<Option<i64>> {
        self.remember_user(&user.id, id).await?;
        self.outcome.step(step);
        self.outcome.moodle.user_id = Some(id);
        self.write_back(Entity::User, &user.id, id).await?;
        Ok(Some(id))
    }

    async fn remember_user(&self, apit_id: &str, moodle_id: i64) -> Step<()> {
        let link = Link {
            moodle_id,
            last_sent: None,
        };
        let ctx = self.ctx;
        ctx.links
            .put_link(ctx.tenant, LinkKind::User, apit_id, &link)
            .await?;
        Ok(())
    }

    /// `core_user_create_users`, one user per call; Moodle's `invalidparameter`
    /// says nothing about which rule failed, so look up to find out.
    async fn create_user(&mut self, user: &UserInfo, idnumber: &str) -> Step<i64> {
        let ctx = self.ctx;
        let (Some(first), Some(last), Some(email)) = (
            user.first_name.as_deref(),
            user.last_name.as_deref(),
            user.email.as_deref(),
        ) else {
            return Err(SyncError::data(format!(
                "accessplanit user {} is not in Moodle and the event lacks first_name, last_name or email to create it",
                user.id
            ))
            .into());
        };
        let base = username_from(Some(email), &ctx.config.user_idnumber(&user.id));
        for n in 1..=MAX_SUFFIX {
            let new = NewUser {
                username: with_suffix(&base, n),
                firstname: first.to_string(),
                lastname: last.to_string(),
                email: email.to_string(),
                idnumber: idnumber.to_string(),
            };
            let err = match ctx.moodle.create_user(&new).await {
                Ok(id) => {
                    self.remember_user(&user.id, id).await?;
                    self.outcome
                        .step(format!("user created: {id} (username {})", new.username));
                    return Ok(id);
                }
                Err(e) if e.errorcode() == Some("invalidparameter") => e,
                Err(e) => return Err(e.into()),
            };
            // Which rule did it break? Username taken, email taken, or bad data.
            let holders = ctx
                .moodle
                .users_by_field(UserField::Username, &new.username)
                .await?;
            if let Some(holder) = holders.first() {
                let ours = holder.idnumber.as_deref() == Some(idnumber)
                    || (ctx.config.match_users_by_email && same_email(holder, email));
                if ours {
                    self.remember_user(&user.id, holder.id).await?;
                    self.outcome.step(format!(
                        "user already existed with username {}: {}",
                        new.username, holder.id
                    ));
                    return Ok(holder.id);
                }
                self.outcome.step(format!(
                    "username {} belongs to another person: trying a suffix",
                    new.username
                ));
                continue;
            }
            let same_email_users = self.users_with_email(email).await?;
            return Err(match same_email_users.as_slice() {
                [] => SyncError::data(format!(
                    "Moodle refused to create user {email} (username {}): Moodle finds the email address or a name invalid ({err}); {VISIBILITY_HINT}",
                    new.username
                )),
                [other] if ctx.config.match_users_by_email => {
                    self.remember_user(&user.id, other.id).await?;
                    self.outcome
                        .step(format!("user matched by email after create: {}", other.id));
                    return Ok(other.id);
                }
                [other] => SyncError::data(format!(
                    "Moodle user {} already has the email {email} and match_users_by_email is off: enter that Moodle ID on the accessplanit user, or turn match_users_by_email on",
                    other.id
                )),
                many => SyncError::data(format!(
                    "{} Moodle accounts share the email {email}: enter the right Moodle ID on the accessplanit user",
                    many.len()
                )),
            }
            .into());
        }
        Err(SyncError::data(format!(
            "usernames {base} to {} are all taken by other people: create the Moodle account by hand and enter its ID in accessplanit",
            with_suffix(&base, MAX_SUFFIX)
        ))
        .into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_follow_moodle_rules() {
        let cases = [
            (
                "Ada.Lovelace+mdl@Example.COM",
                "ada.lovelacemdl@example.com",
            ),
            ("Zoë@x.io", "zo@x.io"),
            ("o'brien@x.ie", "obrien@x.ie"),
            ("  ADA@EXAMPLE.COM ", "ada@example.com"),
        ];
        for (email, want) in cases {
            assert_eq!(username_from(Some(email), "apit-user-U1"), want, "{email}");
        }
        assert_eq!(username_from(Some("ééé@"), "apit-user-U1"), "apit-user-u1");
        assert_eq!(username_from(None, "apit-user-U1"), "apit-user-u1");
        let long = format!("{}@x.io", "a".repeat(200));
        assert_eq!(username_from(Some(&long), "f").len(), USERNAME_ROOM);
        assert_eq!(with_suffix("ada@x.io", 1), "ada@x.io");
        assert_eq!(with_suffix("ada@x.io", 2), "ada@x.io-2");
    }
}
