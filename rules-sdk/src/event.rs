//! The event a rule classifies, and its enumerations.

use core::fmt;

/// One usage event, as a rule sees it.
///
/// Every field of the usage-event contract is here. The strings borrow from the
/// batch the event came in, so building an `Event` costs no allocation; copy out
/// what you need to keep.
///
/// The host only sends valid, deduplicated events: `event_id` is 1 to 128 bytes,
/// `creator_id` and `template_id` are non-empty, and `country` is two ASCII
/// upper-case letters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Event<'a> {
    /// The idempotency key.
    pub event_id: &'a str,
    /// When the usage happened, milliseconds since the Unix epoch, UTC.
    pub occurred_at_ms: i64,
    /// When the event reached the pipeline, milliseconds since the Unix epoch, UTC.
    pub ingested_at_ms: i64,
    /// Who made the content that was used.
    pub creator_id: &'a str,
    /// The piece of content that was used.
    pub template_id: &'a str,
    /// The customer brand that used the content, if any.
    pub brand_id: Option<&'a str>,
    /// What kind of content was used.
    pub content_kind: ContentKind,
    /// What the user did with it.
    pub action: Action,
    /// The plan of the user who did it.
    pub user_tier: UserTier,
    /// Two ASCII upper-case letters, for example `BR`.
    pub country: &'a str,
}

/// Defines a fieldless enumeration that travels as a one-byte code.
macro_rules! coded_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident { $($(#[$vmeta:meta])* $variant:ident = $code:literal => $text:literal,)+ }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        pub enum $name {
            $($(#[$vmeta])* $variant = $code,)+
        }

        impl $name {
            /// Every value, in code order: `ALL[code]` has that code.
            pub const ALL: [Self; [$($code),+].len()] = [$(Self::$variant),+];

            /// The one-byte code this value travels as in a batch.
            pub const fn code(self) -> u8 {
                self as u8
            }

            /// The value with this code, or `None` for an unknown code.
            pub const fn from_code(code: u8) -> Option<Self> {
                match code {
                    $($code => Some(Self::$variant),)+
                    _ => None,
                }
            }

            /// The value's name in the usage-event contract, for example `"video"`.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

coded_enum! {
    /// What kind of content was used.
    pub enum ContentKind {
        /// A template (code 0).
        Template = 0 => "template",
        /// An image (code 1).
        Image = 1 => "image",
        /// A video (code 2).
        Video = 2 => "video",
        /// An audio track (code 3).
        Audio = 3 => "audio",
        /// A font (code 4).
        Font = 4 => "font",
    }
}

coded_enum! {
    /// What the user did with the content.
    pub enum Action {
        /// Looked at it (code 0).
        View = 0 => "view",
        /// Used it in a design (code 1).
        Use = 1 => "use",
        /// Exported a design that contains it (code 2).
        Export = 2 => "export",
        /// Published a design that contains it (code 3).
        Publish = 3 => "publish",
    }
}

coded_enum! {
    /// The plan of the user who used the content.
    pub enum UserTier {
        /// The free plan (code 0).
        Free = 0 => "free",
        /// The pro plan (code 1).
        Pro = 1 => "pro",
        /// The teams plan (code 2).
        Teams = 2 => "teams",
        /// The enterprise plan (code 3).
        Enterprise = 3 => "enterprise",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_match_the_contract() {
        for (code, kind) in ContentKind::ALL.into_iter().enumerate() {
            assert_eq!(usize::from(kind.code()), code);
            assert_eq!(ContentKind::from_code(kind.code()), Some(kind));
        }
        for (code, action) in Action::ALL.into_iter().enumerate() {
            assert_eq!(usize::from(action.code()), code);
            assert_eq!(Action::from_code(action.code()), Some(action));
        }
        for (code, tier) in UserTier::ALL.into_iter().enumerate() {
            assert_eq!(usize::from(tier.code()), code);
            assert_eq!(UserTier::from_code(tier.code()), Some(tier));
        }
        let names = |all: &[&str]| all.join(",");
        assert_eq!(
            names(&ContentKind::ALL.map(ContentKind::as_str)),
            "template,image,video,audio,font"
        );
        assert_eq!(
            names(&Action::ALL.map(Action::as_str)),
            "view,use,export,publish"
        );
        assert_eq!(
            names(&UserTier::ALL.map(UserTier::as_str)),
            "free,pro,teams,enterprise"
        );
        assert_eq!(ContentKind::from_code(5), None);
        assert_eq!(Action::from_code(4), None);
        assert_eq!(UserTier::from_code(255), None);
        assert_eq!(ContentKind::Video.to_string(), "video");
    }
}
