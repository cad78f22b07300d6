//! The columnar batch that crosses the WebAssembly boundary, and the core that
//! classifies it.
//!
//! Rule authors never need this module: [`export_rule!`](crate::export_rule)
//! wires a rule to [`classify`], and [`testing`](crate::testing) drives the same
//! function natively. It is public so that the format is documented in one place
//! and so that other code (a host, a benchmark) can produce and check batches the
//! way the SDK does:
//!
//! - [`encode`] turns events into an [`EventBatch`];
//! - [`BatchView::new`] checks a batch, which then hands out borrowing [`Event`]s;
//! - [`classify`] runs a rule over a batch and returns its [`Verdicts`];
//! - [`check_verdicts`] checks verdicts the way a host should before trusting them.
//!
//! The types [`EventBatch`], [`StringColumn`], [`DictColumn`], [`Verdicts`] and
//! [`RuleInfo`] are the records of the `tally:rules/classifier` WIT interface.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use crate::{Action, ContentKind, Event, Rule, UserTier, Verdict};

pub use crate::__private::bindings::exports::tally::rules::classifier::{
    DictColumn, EventBatch, RuleInfo, StringColumn, Verdicts,
};

/// The dictionary key that stands for null (only `brand-id` uses it).
pub const NULL_KEY: u32 = u32::MAX;

/// A checked [`EventBatch`] that hands out borrowing [`Event`]s.
///
/// [`BatchView::new`] does all the checking up front, including the UTF-8
/// check of every string column (once per column, not per event) and the
/// range check of every dictionary key, so that [`BatchView::event`] is a
/// handful of loads that cannot fail. Loads of fields a rule never reads are
/// left out by the compiler, since nothing in `event` can panic.
#[derive(Debug)]
pub struct BatchView<'a> {
    event_ids: Strings<'a>,
    occurred_at: &'a [i64],
    ingested_at: &'a [i64],
    creator_keys: &'a [u32],
    creators: Strings<'a>,
    template_keys: &'a [u32],
    templates: Strings<'a>,
    brand_keys: &'a [u32],
    brands: Strings<'a>,
    content_kind: &'a [u8],
    action: &'a [u8],
    user_tier: &'a [u8],
    country: &'a str,
}

impl<'a> BatchView<'a> {
    /// Checks that `batch` is well formed.
    ///
    /// A batch is well formed when every column has one element per event (two
    /// bytes per event for `country`), every string column's offsets start at 0,
    /// never decrease and end at the length of its bytes, every string is valid
    /// UTF-8, every dictionary key is in range (or null, for `brand-id` only),
    /// every enumeration code is known, and every country is two ASCII upper-case
    /// letters. The number of events is the length of `occurred-at`.
    ///
    /// The rest of the usage-event contract (the length of an event id,
    /// non-empty creator and template ids) is the host's to enforce before it
    /// builds a batch, and is not checked again here.
    ///
    /// # Errors
    ///
    /// A message starting with `malformed batch:` that names the first problem
    /// found.
    pub fn new(batch: &'a EventBatch) -> Result<Self, String> {
        let events = batch.occurred_at.len();
        let event_ids = Strings::new(&batch.event_id, "event-id")?;
        let lengths = [
            ("event-id", event_ids.len()),
            ("ingested-at", batch.ingested_at.len()),
            ("creator-id.keys", batch.creator_id.keys.len()),
            ("template-id.keys", batch.template_id.keys.len()),
            ("brand-id.keys", batch.brand_id.keys.len()),
            ("content-kind", batch.content_kind.len()),
            ("action", batch.action.len()),
            ("user-tier", batch.user_tier.len()),
        ];
        for (name, len) in lengths {
            if len != events {
                return Err(format!(
                    "malformed batch: `{name}` has {len} values, expected {events} (one per event, as in `occurred-at`)"
                ));
            }
        }
        if batch.country.len() != 2 * events {
            return Err(format!(
                "malformed batch: `country` has {} bytes, expected {} (two per event)",
                batch.country.len(),
                2 * events
            ));
        }

        let creators = dictionary(&batch.creator_id, "creator-id", false, &event_ids)?;
        let templates = dictionary(&batch.template_id, "template-id", false, &event_ids)?;
        let brands = dictionary(&batch.brand_id, "brand-id", true, &event_ids)?;

        let codes = [
            ("content-kind", &batch.content_kind, ContentKind::ALL.len()),
            ("action", &batch.action, Action::ALL.len()),
            ("user-tier", &batch.user_tier, UserTier::ALL.len()),
        ];
        for (name, codes, known) in codes {
            if let Some(index) = first_failing(codes, |code| usize::from(code) < known) {
                return Err(format!(
                    "malformed batch: `{name}` of event {index} (`{}`) has the unknown code {} (known: 0 to {})",
                    event_ids.get(index),
                    codes[index],
                    known - 1
                ));
            }
        }

        if let Some(at) = first_failing(&batch.country, |b| b.is_ascii_uppercase()) {
            let event = at / 2;
            return Err(format!(
                "malformed batch: the country of event {event} (`{}`) is {:?}, not two ASCII upper-case letters",
                event_ids.get(event),
                String::from_utf8_lossy(&batch.country[2 * event..2 * event + 2]),
            ));
        }
        let country = std::str::from_utf8(&batch.country)
            .map_err(|e| format!("malformed batch: `country` is not valid UTF-8 ({e})"))?;

        Ok(Self {
            event_ids,
            occurred_at: &batch.occurred_at,
            ingested_at: &batch.ingested_at,
            creator_keys: &batch.creator_id.keys,
            creators,
            template_keys: &batch.template_id.keys,
            templates,
            brand_keys: &batch.brand_id.keys,
            brands,
            content_kind: &batch.content_kind,
            action: &batch.action,
            user_tier: &batch.user_tier,
            country,
        })
    }

    /// The number of events.
    pub fn len(&self) -> usize {
        self.occurred_at.len()
    }

    /// Whether the batch has no events.
    pub fn is_empty(&self) -> bool {
        self.occurred_at.is_empty()
    }

    /// Event `index` of the batch.
    ///
    /// # Panics
    ///
    /// If `index` is not less than [`len`](Self::len), like slice indexing.
    #[inline(always)]
    pub fn event(&self, index: usize) -> Event<'a> {
        assert!(
            index < self.len(),
            "event {index} of a batch of {}",
            self.len()
        );
        // `new` checked that every column has an element for each index below
        // `len`, every key and code is in range, and every string is valid
        // UTF-8 cut on character boundaries. The fallbacks below are never
        // taken; they keep this free of panics, so that the compiler can drop
        // the loads of fields a rule does not read.
        let key = |keys: &[u32]| keys.get(index).copied().unwrap_or(NULL_KEY);
        let code = |codes: &[u8]| codes.get(index).copied().map_or(0, usize::from);
        let brand_id = match key(self.brand_keys) {
            NULL_KEY => None,
            key => Some(self.brands.get(key as usize)),
        };
        Event {
            event_id: self.event_ids.get(index),
            occurred_at_ms: self.occurred_at[index],
            ingested_at_ms: self.ingested_at.get(index).copied().unwrap_or(0),
            creator_id: self.creators.get(key(self.creator_keys) as usize),
            template_id: self.templates.get(key(self.template_keys) as usize),
            brand_id,
            content_kind: ContentKind::ALL
                .get(code(self.content_kind))
                .copied()
                .unwrap_or(ContentKind::Template),
            action: Action::ALL
                .get(code(self.action))
                .copied()
                .unwrap_or(Action::View),
            user_tier: UserTier::ALL
                .get(code(self.user_tier))
                .copied()
                .unwrap_or(UserTier::Free),
            country: self
                .country
                .get(2 * index..2 * index + 2)
                .unwrap_or_default(),
        }
    }

    /// The events, in batch order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = Event<'a>> + '_ {
        (0..self.len()).map(|index| self.event(index))
    }
}

/// Runs `rule` over every event of `batch`: what a rule component's `classify`
/// export does.
///
/// The verdicts come back as columns, in batch order; `reasons` lists the
/// distinct reason codes in order of first appearance, and `reason` indexes it.
/// No memory is allocated per event.
///
/// # Errors
///
/// If the batch is malformed (see [`BatchView::new`]), if the rule returns a
/// negative rate or a non-zero rate for an event that is not payable, or if the
/// rule uses more than 65,536 distinct reason codes in one batch.
pub fn classify<R: Rule>(rule: &R, batch: &EventBatch) -> Result<Verdicts, String> {
    classify_columns(rule, batch).map(VerdictColumns::into_verdicts)
}

/// What a rule component's `metadata` export returns for `R`.
pub fn metadata<R: Rule>() -> RuleInfo {
    RuleInfo {
        name: R::NAME.to_owned(),
        version: R::VERSION.to_owned(),
        sdk_version: crate::SDK_VERSION.to_owned(),
    }
}

/// Checks that `verdicts` is a valid answer for a batch of `events` events: one
/// element per event in `payable`, `rate-micros` and `reason`; `payable` is 0
/// or 1; every rate is non-negative, and 0 when not payable; every reason index
/// is in range; the reason codes are distinct.
///
/// [`classify`] only returns verdicts that pass; a host should check what comes
/// back from a component in the same way.
///
/// # Errors
///
/// A message starting with `invalid verdicts:` that names the first problem found.
pub fn check_verdicts(verdicts: &Verdicts, events: usize) -> Result<(), String> {
    let columns = [
        ("payable", verdicts.payable.len()),
        ("rate-micros", verdicts.rate_micros.len()),
        ("reason", verdicts.reason.len()),
    ];
    for (name, len) in columns {
        if len != events {
            return Err(format!(
                "invalid verdicts: `{name}` has {len} elements, expected {events} (one per event)"
            ));
        }
    }
    let rows = verdicts
        .payable
        .iter()
        .zip(&verdicts.rate_micros)
        .zip(&verdicts.reason);
    for (index, ((&payable, &rate), &reason)) in rows.enumerate() {
        if payable > 1 {
            return Err(format!(
                "invalid verdicts: `payable` of event {index} is {payable}, not 0 or 1"
            ));
        }
        if rate < 0 || (payable == 0 && rate != 0) {
            return Err(format!(
                "invalid verdicts: event {index} has a rate of {rate} with payable = {payable}"
            ));
        }
        if usize::from(reason) >= verdicts.reasons.len() {
            return Err(format!(
                "invalid verdicts: the reason index {reason} of event {index} is out of range ({} reasons)",
                verdicts.reasons.len()
            ));
        }
    }
    let mut seen = HashMap::with_capacity(verdicts.reasons.len());
    for (index, reason) in verdicts.reasons.iter().enumerate() {
        if let Some(first) = seen.insert(reason.as_str(), index) {
            return Err(format!(
                "invalid verdicts: the reason `{reason}` is listed twice (at {first} and {index})"
            ));
        }
    }
    Ok(())
}

/// Encodes `events` into a batch, in order: what a host does before calling a
/// rule. Dictionary values are listed in order of first appearance.
///
/// # Errors
///
/// If a country is not exactly two bytes long (it would shift every later
/// country), or if a string column would exceed 4 GiB. Other invalid values (a
/// lower-case country, say) are encoded as they are and rejected by
/// [`BatchView::new`].
pub fn encode(events: &[Event<'_>]) -> Result<EventBatch, String> {
    let mut event_id = StringColumnBuilder::with_capacity(events.len());
    let mut creator_id = DictColumnBuilder::with_capacity(events.len());
    let mut template_id = DictColumnBuilder::with_capacity(events.len());
    let mut brand_id = DictColumnBuilder::with_capacity(events.len());
    let mut country = Vec::with_capacity(2 * events.len());
    for (index, event) in events.iter().enumerate() {
        event_id.push(event.event_id, "event-id")?;
        creator_id.push(Some(event.creator_id), "creator-id")?;
        template_id.push(Some(event.template_id), "template-id")?;
        brand_id.push(event.brand_id, "brand-id")?;
        if event.country.len() != 2 {
            return Err(format!(
                "cannot encode event {index} (`{}`): its country {:?} is not two bytes long",
                event.event_id, event.country
            ));
        }
        country.extend_from_slice(event.country.as_bytes());
    }
    Ok(EventBatch {
        event_id: event_id.finish(),
        occurred_at: events.iter().map(|e| e.occurred_at_ms).collect(),
        ingested_at: events.iter().map(|e| e.ingested_at_ms).collect(),
        creator_id: creator_id.finish(),
        template_id: template_id.finish(),
        brand_id: brand_id.finish(),
        content_kind: events.iter().map(|e| e.content_kind.code()).collect(),
        action: events.iter().map(|e| e.action.code()).collect(),
        user_tier: events.iter().map(|e| e.user_tier.code()).collect(),
        country,
    })
}

/// Verdict columns whose reason codes are still `&'static str`.
pub(crate) struct VerdictColumns {
    pub(crate) payable: Vec<u8>,
    pub(crate) rate_micros: Vec<i64>,
    pub(crate) reason: Vec<u16>,
    pub(crate) reasons: Vec<&'static str>,
    /// The index of every reason, by value.
    reason_index: HashMap<&'static str, u16>,
}

/// Among the first this many reasons, a scan by pointer finds a reason's index.
const SCANNED_REASONS: usize = 8;

impl VerdictColumns {
    fn with_capacity(events: usize) -> Self {
        Self {
            payable: Vec::with_capacity(events),
            rate_micros: Vec::with_capacity(events),
            reason: Vec::with_capacity(events),
            reasons: Vec::new(),
            reason_index: HashMap::new(),
        }
    }

    #[inline(always)]
    fn push(&mut self, verdict: Verdict) -> Result<(), String> {
        let index = self.reason_index(verdict.reason)?;
        self.payable.push(u8::from(verdict.payable));
        self.rate_micros.push(verdict.rate_micros);
        self.reason.push(index);
        Ok(())
    }

    #[inline(always)]
    fn reason_index(&mut self, reason: &'static str) -> Result<u16, String> {
        // A rule uses a handful of reason codes, nearly always the same string
        // literals: a scan that compares pointers is the fast path.
        let mut seen = self.reasons.iter().take(SCANNED_REASONS);
        match seen.position(|&known| std::ptr::eq(known, reason)) {
            Some(index) => Ok(index as u16),
            None => self.reason_index_by_value(reason),
        }
    }

    /// The index of a reason that is not among the first few by pointer.
    #[cold]
    #[inline(never)]
    fn reason_index_by_value(&mut self, reason: &'static str) -> Result<u16, String> {
        if let Some(&index) = self.reason_index.get(reason) {
            return Ok(index);
        }
        let index = u16::try_from(self.reasons.len()).map_err(|_| {
            format!(
                "the rule used more than {} distinct reason codes in one batch",
                usize::from(u16::MAX) + 1
            )
        })?;
        self.reasons.push(reason);
        self.reason_index.insert(reason, index);
        Ok(index)
    }

    pub(crate) fn into_verdicts(self) -> Verdicts {
        Verdicts {
            payable: self.payable,
            rate_micros: self.rate_micros,
            reason: self.reason,
            reasons: self.reasons.into_iter().map(str::to_owned).collect(),
        }
    }
}

/// The core shared by the WebAssembly export and the native test harness.
pub(crate) fn classify_columns<R: Rule>(
    rule: &R,
    batch: &EventBatch,
) -> Result<VerdictColumns, String> {
    let view = BatchView::new(batch)?;
    let mut columns = VerdictColumns::with_capacity(view.len());
    for index in 0..view.len() {
        let verdict = rule.classify(&view.event(index));
        if let Err(problem) = verdict.check() {
            return Err(format!(
                "rule {} {} returned {problem} for event `{}`",
                R::NAME,
                R::VERSION,
                view.event(index).event_id
            ));
        }
        columns.push(verdict)?;
    }
    Ok(columns)
}

/// A checked string column: all of its values as one `&str`, and the offsets
/// that cut it into values.
#[derive(Clone, Copy, Debug)]
struct Strings<'a> {
    text: &'a str,
    /// One more element than there are values, starting with 0, never
    /// decreasing, ending at `text.len()`, each on a character boundary.
    offsets: &'a [u32],
}

impl<'a> Strings<'a> {
    /// Checks the offsets of `column` and that each of its values is valid
    /// UTF-8: the bytes are checked once, as a whole, and each offset must fall
    /// on a character boundary.
    fn new(column: &'a StringColumn, name: &str) -> Result<Self, String> {
        let offsets = column.offsets.as_slice();
        let bytes = column.bytes.as_slice();
        match offsets.first() {
            None => {
                return Err(format!(
                    "malformed batch: `{name}.offsets` is empty; it must hold one more element than there are values, starting with 0"
                ));
            }
            Some(&first) if first != 0 => {
                return Err(format!(
                    "malformed batch: `{name}.offsets` starts with {first}, not 0"
                ));
            }
            Some(_) => {}
        }
        let ascending = offsets
            .iter()
            .zip(&offsets[1..])
            .fold(true, |all, (start, end)| all & (start <= end));
        let ends = offsets[offsets.len() - 1] as usize == bytes.len();
        let checked = if ascending && ends { 0 } else { offsets.len() };
        for (index, pair) in offsets[..checked].windows(2).enumerate() {
            let (start, end) = (pair[0] as usize, pair[1] as usize);
            if end < start {
                return Err(format!(
                    "malformed batch: `{name}.offsets` decreases at value {index} (from {start} to {end})"
                ));
            }
            if end > bytes.len() {
                return Err(format!(
                    "malformed batch: value {index} of `{name}` ends at byte {end}, past the {} bytes of the column",
                    bytes.len()
                ));
            }
        }
        let last = offsets[offsets.len() - 1] as usize;
        if last != bytes.len() {
            return Err(format!(
                "malformed batch: `{name}.offsets` ends at {last}, but the column has {} bytes",
                bytes.len()
            ));
        }
        let not_utf8 = |at: usize, problem: &dyn std::fmt::Display| {
            // The value that holds byte `at`: the last one starting at or before it.
            let index = offsets.partition_point(|&offset| offset as usize <= at) - 1;
            format!("malformed batch: value {index} of `{name}` is not valid UTF-8 ({problem})")
        };
        let text = std::str::from_utf8(bytes).map_err(|e| not_utf8(e.valid_up_to(), &e))?;
        if let Some(&split) = offsets
            .iter()
            .find(|&&offset| !text.is_char_boundary(offset as usize))
        {
            let at = split as usize - 1;
            return Err(not_utf8(at, &"it ends inside a character"));
        }
        Ok(Self { text, offsets })
    }

    fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    /// Value `index`, or `""` if there is no such value. `new` checked the
    /// offsets, so this never panics and the compiler can drop a lookup whose
    /// value is not used.
    #[inline(always)]
    fn get(&self, index: usize) -> &'a str {
        let offset = |i: usize| self.offsets.get(i).map_or(0, |&o| o as usize);
        self.text
            .get(offset(index)..offset(index + 1))
            .unwrap_or_default()
    }
}

/// The index of the first value that is not `ok`, if any: a branch-free sweep
/// that the compiler can vectorize, then a search only when something failed.
#[inline]
fn first_failing<T: Copy>(values: &[T], ok: impl Fn(T) -> bool) -> Option<usize> {
    if values.iter().fold(true, |all, &value| all & ok(value)) {
        None
    } else {
        values.iter().position(|&value| !ok(value))
    }
}

/// Checks a dictionary column: its values, and that every key is in range.
fn dictionary<'a>(
    column: &'a DictColumn,
    name: &str,
    nullable: bool,
    event_ids: &Strings<'_>,
) -> Result<Strings<'a>, String> {
    let values = Strings::new(&column.values, &format!("{name}.values"))?;
    let bad = first_failing(&column.keys, |key| {
        (key as usize) < values.len() || (nullable && key == NULL_KEY)
    });
    let Some(index) = bad else {
        return Ok(values);
    };
    let key = column.keys[index];
    let event = event_ids.get(index);
    if key == NULL_KEY {
        Err(format!(
            "malformed batch: `{name}` of event {index} (`{event}`) is null; only `brand-id` may be null"
        ))
    } else {
        Err(format!(
            "malformed batch: `{name}` key {key} of event {index} (`{event}`) is out of range ({} values)",
            values.len()
        ))
    }
}

struct StringColumnBuilder {
    offsets: Vec<u32>,
    bytes: Vec<u8>,
}

impl StringColumnBuilder {
    fn with_capacity(values: usize) -> Self {
        let mut offsets = Vec::with_capacity(values + 1);
        offsets.push(0);
        Self {
            offsets,
            bytes: Vec::new(),
        }
    }

    fn push(&mut self, value: &str, name: &str) -> Result<(), String> {
        self.bytes.extend_from_slice(value.as_bytes());
        let end = u32::try_from(self.bytes.len())
            .map_err(|_| format!("cannot encode the batch: `{name}` exceeds 4 GiB"))?;
        self.offsets.push(end);
        Ok(())
    }

    fn finish(self) -> StringColumn {
        StringColumn {
            offsets: self.offsets,
            bytes: self.bytes,
        }
    }
}

struct DictColumnBuilder<'a> {
    keys: Vec<u32>,
    index: HashMap<&'a str, u32>,
    values: StringColumnBuilder,
}

impl<'a> DictColumnBuilder<'a> {
    fn with_capacity(events: usize) -> Self {
        Self {
            keys: Vec::with_capacity(events),
            index: HashMap::new(),
            values: StringColumnBuilder::with_capacity(0),
        }
    }

    fn push(&mut self, value: Option<&'a str>, name: &str) -> Result<(), String> {
        let key = match value {
            None => NULL_KEY,
            Some(value) => match self.index.entry(value) {
                Entry::Occupied(entry) => *entry.get(),
                Entry::Vacant(entry) => {
                    // `values.offsets` holds one more element than there are values.
                    let key = u32::try_from(self.values.offsets.len() - 1)
                        .ok()
                        .filter(|&key| key != NULL_KEY)
                        .ok_or_else(|| {
                            format!("cannot encode the batch: too many `{name}` values")
                        })?;
                    self.values.push(value, name)?;
                    *entry.insert(key)
                }
            },
        };
        self.keys.push(key);
        Ok(())
    }

    fn finish(self) -> DictColumn {
        DictColumn {
            keys: self.keys,
            values: self.values.finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::event;

    /// Breaks one thing in a valid value.
    type Breaker<T> = fn(&mut T);

    /// Pays 1 micro per byte of the creator id, with a reason per action, so the
    /// tests can see which event each verdict came from.
    #[derive(Default)]
    struct Echo;

    impl Rule for Echo {
        const NAME: &'static str = "echo";
        const VERSION: &'static str = "0.1.0";

        fn classify(&self, event: &Event<'_>) -> Verdict {
            match event.action {
                Action::View => Verdict::not_payable("view"),
                _ => Verdict::payable_with(event.creator_id.len() as i64, event.action.as_str()),
            }
        }
    }

    fn sample() -> EventBatch {
        encode(&[
            event()
                .event_id("a")
                .creator_id("ann")
                .action(Action::Use)
                .build(),
            event()
                .event_id("b")
                .creator_id("bo")
                .brand_id("acme")
                .action(Action::View)
                .content_kind(ContentKind::Font)
                .user_tier(UserTier::Enterprise)
                .country("BR")
                .build(),
            event()
                .event_id("c")
                .creator_id("ann")
                .action(Action::Export)
                .build(),
            event()
                .event_id("d")
                .creator_id("cyd")
                .action(Action::Use)
                .brand_id("acme")
                .build(),
        ])
        .unwrap()
    }

    fn error(batch: &EventBatch) -> String {
        BatchView::new(batch).unwrap_err()
    }

    #[test]
    fn encode_then_view_round_trips() {
        let events = [
            event().event_id("a").build(),
            event()
                .event_id("b")
                .occurred_at_ms(-5)
                .ingested_at_ms(7)
                .creator_id("crème")
                .template_id("t-2")
                .brand_id("acme")
                .content_kind(ContentKind::Audio)
                .action(Action::Publish)
                .user_tier(UserTier::Teams)
                .country("ID")
                .build(),
            event().event_id("c").brand_id("acme").build(),
        ];
        let batch = encode(&events).unwrap();
        assert_eq!(batch.creator_id.keys, [0, 1, 0]);
        assert_eq!(batch.brand_id.keys, [NULL_KEY, 0, 0]);
        assert_eq!(batch.brand_id.values.offsets, [0, 4]);
        assert_eq!(batch.country, b"USIDUS");
        let view = BatchView::new(&batch).unwrap();
        assert_eq!(view.len(), 3);
        assert!(!view.is_empty());
        assert_eq!(view.iter().collect::<Vec<_>>(), events);
    }

    #[test]
    fn empty_batch_is_valid() {
        let batch = encode(&[]).unwrap();
        assert_eq!(batch.event_id.offsets, [0]);
        assert!(BatchView::new(&batch).unwrap().is_empty());
        let verdicts = classify(&Echo, &batch).unwrap();
        assert!(verdicts.payable.is_empty() && verdicts.reasons.is_empty());
    }

    #[test]
    fn classify_builds_columns_with_reasons_in_order_of_first_appearance() {
        let verdicts = classify(&Echo, &sample()).unwrap();
        assert_eq!(verdicts.payable, [1, 0, 1, 1]);
        assert_eq!(verdicts.rate_micros, [3, 0, 3, 3]);
        assert_eq!(verdicts.reasons, ["use", "view", "export"]);
        assert_eq!(verdicts.reason, [0, 1, 2, 0]);
        check_verdicts(&verdicts, 4).unwrap();
    }

    #[test]
    fn metadata_reports_rule_and_sdk() {
        let info = metadata::<Echo>();
        assert_eq!(info.name, "echo");
        assert_eq!(info.version, "0.1.0");
        assert_eq!(info.sdk_version, env!("CARGO_PKG_VERSION"));
    }

    #[test]
    fn every_column_must_have_one_element_per_event() {
        let cases: [(&str, Breaker<EventBatch>); 10] = [
            ("`event-id` has 3 values", |b| {
                b.event_id.offsets.pop();
                b.event_id.bytes.pop();
            }),
            ("`ingested-at` has 5 values", |b| b.ingested_at.push(0)),
            ("`creator-id.keys` has 3", |b| {
                b.creator_id.keys.pop();
            }),
            ("`template-id.keys` has 3", |b| {
                b.template_id.keys.pop();
            }),
            ("`brand-id.keys` has 3", |b| {
                b.brand_id.keys.pop();
            }),
            ("`content-kind` has 3", |b| {
                b.content_kind.pop();
            }),
            ("`action` has 5", |b| b.action.push(0)),
            ("`user-tier` has 3", |b| {
                b.user_tier.pop();
            }),
            ("`country` has 6 bytes, expected 8", |b| {
                b.country.truncate(6)
            }),
            ("`country` has 9 bytes", |b| b.country.push(b'X')),
        ];
        for (expected, break_it) in cases {
            let mut batch = sample();
            break_it(&mut batch);
            let message = error(&batch);
            assert!(message.starts_with("malformed batch: "), "{message}");
            assert!(message.contains(expected), "{message} lacks {expected}");
            assert_eq!(classify(&Echo, &batch).unwrap_err(), message);
        }
        // `occurred-at` sets the number of events.
        let mut batch = sample();
        batch.occurred_at.pop();
        assert!(error(&batch).contains("expected 3"));
    }

    #[test]
    fn offsets_must_start_at_zero_never_decrease_and_end_at_the_bytes() {
        let mut batch = sample();
        batch.event_id.offsets.clear();
        assert!(error(&batch).contains("`event-id.offsets` is empty"));

        let mut batch = sample();
        batch.creator_id.values.offsets[0] = 1;
        assert!(error(&batch).contains("`creator-id.values.offsets` starts with 1"));

        let mut batch = sample();
        batch.template_id.values.offsets = vec![0, 0];
        batch.template_id.values.bytes = b"t".to_vec();
        assert!(error(&batch).contains("`template-id.values.offsets` ends at 0"));

        let mut batch = sample();
        batch.event_id.offsets = vec![0, 1, 0, 2, 3];
        assert!(error(&batch).contains("decreases at value 1"));

        let mut batch = sample();
        batch.brand_id.values.offsets = vec![0, 99];
        assert!(error(&batch).contains("value 0 of `brand-id.values` ends at byte 99"));
    }

    #[test]
    fn strings_must_be_utf8() {
        let mut batch = sample();
        batch.event_id.bytes[1] = 0xff;
        assert!(error(&batch).contains("value 1 of `event-id` is not valid UTF-8"));

        let mut batch = sample();
        batch.creator_id.values.bytes[0] = 0xc3;
        assert!(error(&batch).contains("value 0 of `creator-id.values` is not valid UTF-8"));

        let mut batch = sample();
        batch.template_id.values.bytes[0] = 0x80;
        assert!(error(&batch).contains("`template-id.values` is not valid UTF-8"));

        let mut batch = sample();
        batch.brand_id.values.bytes[3] = 0xfe;
        assert!(error(&batch).contains("`brand-id.values` is not valid UTF-8"));

        // A multi-byte character split across two values is caught too.
        let mut batch = sample();
        batch.creator_id.values = StringColumn {
            offsets: vec![0, 1, 2, 3],
            bytes: "é!".as_bytes().to_vec(),
        };
        assert!(error(&batch).contains("value 0 of `creator-id.values` is not valid UTF-8"));
    }

    #[test]
    fn keys_must_be_in_range_and_only_brands_may_be_null() {
        let mut batch = sample();
        batch.creator_id.keys[2] = 3;
        assert!(
            error(&batch)
                .contains("`creator-id` key 3 of event 2 (`c`) is out of range (3 values)")
        );

        let mut batch = sample();
        batch.template_id.keys[0] = NULL_KEY;
        assert!(error(&batch).contains("`template-id` of event 0 (`a`) is null"));

        let mut batch = sample();
        batch.creator_id.keys[1] = NULL_KEY;
        assert!(error(&batch).contains("`creator-id` of event 1 (`b`) is null"));

        let mut batch = sample();
        batch.brand_id.keys[3] = 1;
        assert!(error(&batch).contains("`brand-id` key 1 of event 3 (`d`) is out of range"));
    }

    #[test]
    fn codes_must_be_known() {
        let mut batch = sample();
        batch.content_kind[1] = 5;
        assert!(
            error(&batch)
                .contains("`content-kind` of event 1 (`b`) has the unknown code 5 (known: 0 to 4)")
        );
        let mut batch = sample();
        batch.action[3] = 4;
        assert!(error(&batch).contains("`action` of event 3 (`d`) has the unknown code 4"));
        let mut batch = sample();
        batch.user_tier[0] = 200;
        assert!(error(&batch).contains("`user-tier` of event 0 (`a`) has the unknown code 200"));
    }

    #[test]
    fn countries_must_be_two_upper_case_ascii_letters() {
        for bad in ["br", "B1", "é"] {
            let mut batch = sample();
            batch.country.splice(2..4, bad.bytes());
            let message = error(&batch);
            assert!(
                message.contains("the country of event 1 (`b`)"),
                "{bad}: {message}"
            );
        }
        let too_long = event().country("USA").build();
        assert!(
            encode(&[too_long])
                .unwrap_err()
                .contains("\"USA\" is not two bytes")
        );
    }

    #[test]
    fn verdicts_that_break_the_contract_fail_the_batch() {
        #[derive(Default)]
        struct Negative;
        impl Rule for Negative {
            const NAME: &'static str = "negative";
            const VERSION: &'static str = "1.0.0";
            fn classify(&self, event: &Event<'_>) -> Verdict {
                Verdict::payable(if event.event_id == "c" { -1 } else { 1 })
            }
        }
        let message = classify(&Negative, &sample()).unwrap_err();
        assert_eq!(
            message,
            "rule negative 1.0.0 returned a negative rate (-1) for event `c`"
        );

        #[derive(Default)]
        struct PaidButNot;
        impl Rule for PaidButNot {
            const NAME: &'static str = "paid-but-not";
            const VERSION: &'static str = "1.0.0";
            fn classify(&self, _: &Event<'_>) -> Verdict {
                Verdict {
                    rate_micros: 10,
                    ..Verdict::not_payable("nope")
                }
            }
        }
        let message = classify(&PaidButNot, &sample()).unwrap_err();
        assert!(message.contains("a rate of 10 for an event that is not payable"));
    }

    #[test]
    fn reasons_are_limited_to_what_a_u16_indexes() {
        #[derive(Default)]
        struct Chatty;
        impl Rule for Chatty {
            const NAME: &'static str = "chatty";
            const VERSION: &'static str = "1.0.0";
            fn classify(&self, event: &Event<'_>) -> Verdict {
                // A distinct reason per event, through a leaked table built once.
                static REASONS: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
                let reasons = REASONS.get_or_init(|| {
                    (0..=65_536)
                        .map(|i| &*Box::leak(format!("r{i}").into_boxed_str()))
                        .collect()
                });
                Verdict::not_payable(reasons[event.occurred_at_ms as usize])
            }
        }
        let events: Vec<_> = (0..=65_536)
            .map(|i| event().occurred_at_ms(i).build())
            .collect();
        let batch = encode(&events).unwrap();
        let message = classify(&Chatty, &batch).unwrap_err();
        assert!(
            message.contains("more than 65536 distinct reason codes"),
            "{message}"
        );
        let verdicts = classify(&Chatty, &encode(&events[..65_536]).unwrap()).unwrap();
        assert_eq!(verdicts.reasons.len(), 65_536);
        assert_eq!(verdicts.reason[65_535], 65_535);
    }

    #[test]
    fn equal_reasons_from_different_strings_share_an_index() {
        #[derive(Default)]
        struct TwoCopies;
        impl Rule for TwoCopies {
            const NAME: &'static str = "two-copies";
            const VERSION: &'static str = "1.0.0";
            fn classify(&self, event: &Event<'_>) -> Verdict {
                static OWNED: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();
                let other = *OWNED.get_or_init(|| Box::leak(String::from("same").into_boxed_str()));
                Verdict::not_payable(if event.event_id == "a" { "same" } else { other })
            }
        }
        let verdicts = classify(&TwoCopies, &sample()).unwrap();
        assert_eq!(verdicts.reasons, ["same"]);
        assert_eq!(verdicts.reason, [0, 0, 0, 0]);
    }

    #[test]
    fn check_verdicts_catches_every_problem() {
        let good = classify(&Echo, &sample()).unwrap();
        check_verdicts(&good, 4).unwrap();
        assert!(
            check_verdicts(&good, 5)
                .unwrap_err()
                .contains("`payable` has 4 elements, expected 5")
        );

        let cases: [(&str, Breaker<Verdicts>); 7] = [
            ("`rate-micros` has 3", |v| {
                v.rate_micros.pop();
            }),
            ("`reason` has 5", |v| v.reason.push(0)),
            ("`payable` of event 0 is 2", |v| v.payable[0] = 2),
            ("event 2 has a rate of -3", |v| v.rate_micros[2] = -3),
            ("event 1 has a rate of 9 with payable = 0", |v| {
                v.rate_micros[1] = 9
            }),
            ("reason index 3 of event 3 is out of range", |v| {
                v.reason[3] = 3
            }),
            ("`use` is listed twice (at 0 and 3)", |v| {
                v.reasons.push("use".into())
            }),
        ];
        for (expected, break_it) in cases {
            let mut verdicts = good.clone();
            break_it(&mut verdicts);
            let message = check_verdicts(&verdicts, 4).unwrap_err();
            assert!(message.starts_with("invalid verdicts: "), "{message}");
            assert!(message.contains(expected), "{message} lacks {expected}");
        }
    }
}
