//! Progress on stderr, drawn only when stderr is a terminal.
//!
//! Each stage of a run gets one line: a bar when the amount of work is known
//! that fits the terminal's width
//! (`classify [=====>      ] 812,345/2,000,000  1.9M records/s  ETA 2 s`),
//! a counter when it is not (`ingest ⠙ 1,234,567 records  1.9M records/s  0.6 s`)
//! and a spinner with the time spent for stages that report no count
//! (`dedup ⠙ 1.2 s`). A line is redrawn at most 10 times a second and cleared
//! when its stage ends (or fails): nothing of it stays on the terminal, and
//! nothing at all is written when stderr is not a terminal, when `TERM` is
//! unset or `dumb`, or when progress is disabled (`--quiet`).

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressFinish, ProgressState, ProgressStyle};
use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How often a visible line is redrawn.
const REDRAW: Duration = Duration::from_millis(100);

/// What the line of a stage shows.
#[derive(Clone, Copy)]
enum Kind {
    /// A bar towards a known total, with a rate and an ETA.
    Bar,
    /// A count of what was done, with a rate and the time spent.
    Counter,
    /// Only the time spent.
    Stage,
}

/// A progress line for one stage; invisible when stderr is not a terminal or
/// progress is disabled. It is cleared by [`Progress::finish`], and also when
/// dropped unfinished (a stage that failed), so it never stays on the terminal.
pub struct Progress {
    bar: ProgressBar,
    /// The highest position reported so far: positions reported from several
    /// threads never make the line go backwards.
    position: Arc<AtomicU64>,
}

impl Progress {
    /// Starts a stage that counts records. With `total`, shows a bar with the
    /// rate and the time left; without, a counter with the rate.
    pub fn start(stage: &str, total: Option<u64>, enabled: bool) -> Progress {
        Progress::counting(stage, total, "records", enabled)
    }

    /// Like [`Progress::start`], counting `unit` (a plural noun, such as
    /// `records`, `shards` or `days`).
    pub fn counting(
        stage: &str,
        total: Option<u64>,
        unit: &'static str,
        enabled: bool,
    ) -> Progress {
        let kind = if total.is_some() {
            Kind::Bar
        } else {
            Kind::Counter
        };
        Progress::new(stage, kind, total, unit, enabled)
    }

    /// Starts a stage that reports no count (dedup, aggregate, commit): a
    /// spinner with the time spent so far.
    pub fn stage(stage: &str, enabled: bool) -> Progress {
        Progress::new(stage, Kind::Stage, None, "", enabled)
    }

    fn new(
        stage: &str,
        kind: Kind,
        total: Option<u64>,
        unit: &'static str,
        enabled: bool,
    ) -> Progress {
        let position = Arc::new(AtomicU64::new(0));
        // The draw target is chosen before anything can be drawn: a bar made
        // on the default target and redirected afterwards leaves what it drew
        // there on the terminal for good.
        let target = if enabled && std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr_with_hz(10)
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(total, target)
            .with_style(style(kind, unit))
            .with_prefix(stage.to_string())
            .with_finish(ProgressFinish::AndClear);
        if !bar.is_hidden() {
            // Draws the line at once, then keeps the spinner, the rate and
            // the times current even when no position is reported.
            bar.enable_steady_tick(REDRAW);
        }
        Progress { bar, position }
    }

    /// Whether the line is drawn at all.
    pub fn is_visible(&self) -> bool {
        !self.bar.is_hidden()
    }

    /// Sets the position (the work done so far). Positions lower than one
    /// already reported are ignored.
    pub fn set(&self, position: u64) {
        let highest = self.position.fetch_max(position, Ordering::Relaxed);
        if position > highest {
            self.bar.set_position(position);
        }
    }

    /// Advances the position by `delta`.
    pub fn inc(&self, delta: u64) {
        let now = self.position.fetch_add(delta, Ordering::Relaxed) + delta;
        self.bar.set_position(now);
    }

    /// Sets the total once it is known (a counter becomes a bar only in its
    /// figures: the rate and the time left use it).
    pub fn set_total(&self, total: u64) {
        self.bar.set_length(total);
    }

    /// Ends the stage and clears its line.
    pub fn finish(self) {
        self.bar.finish_and_clear();
    }
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Progress")
            .field("stage", &self.bar.prefix())
            .field("position", &self.position.load(Ordering::Relaxed))
            .field("visible", &self.is_visible())
            .finish()
    }
}

/// The line's template and the keys it uses, all formatted here so that
/// every figure reads as a person would write it.
fn style(kind: Kind, unit: &'static str) -> ProgressStyle {
    let template = match kind {
        Kind::Bar => "{prefix:>10} [{wide_bar}] {done}{rate}{eta}",
        Kind::Counter => "{prefix:>10} {spinner} {done}{rate}  {spent}",
        Kind::Stage => "{prefix:>10} {spinner} {spent}",
    };
    ProgressStyle::with_template(template)
        .expect("progress templates are valid")
        .progress_chars("=> ")
        .tick_chars("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏ ")
        .with_key(
            "done",
            move |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                let rate_shown = per_second(state.pos(), state.elapsed()).is_some();
                let _ = write!(w, "{}", done(state.pos(), state.len(), unit, rate_shown));
            },
        )
        .with_key(
            "rate",
            move |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                if let Some(rate) = per_second(state.pos(), state.elapsed()) {
                    let _ = write!(w, "  {}", rate_text(rate, unit));
                }
            },
        )
        .with_key(
            "eta",
            |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                if let Some(left) = time_left(state.pos(), state.len(), state.elapsed()) {
                    let _ = write!(w, "  ETA {}", eta_text(left));
                }
            },
        )
        .with_key(
            "spent",
            |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{}", duration_text(state.elapsed()));
            },
        )
}

/// `1,234 records` or, towards a total, `1,234/5,000 records`; towards a
/// total without the unit once a rate names it (`1,234/5,000`), to keep the
/// line short.
fn done(position: u64, total: Option<u64>, unit: &str, rate_shown: bool) -> String {
    let shown = crate::report::thousands(position);
    match total {
        Some(total) if rate_shown => format!("{shown}/{}", crate::report::thousands(total)),
        Some(total) => format!("{shown}/{} {unit}", crate::report::thousands(total)),
        None => format!("{shown} {unit}"),
    }
}

/// The average rate since the start, once there is one to tell.
fn per_second(position: u64, elapsed: Duration) -> Option<f64> {
    let seconds = elapsed.as_secs_f64();
    (position > 0 && seconds >= 0.05).then(|| position as f64 / seconds)
}

/// The time left at the average rate so far, when the total is known and
/// the rate has settled a little (after a quarter of a second).
pub fn time_left(position: u64, total: Option<u64>, elapsed: Duration) -> Option<Duration> {
    let total = total?;
    if position == 0 || position >= total || elapsed < Duration::from_millis(250) {
        return None;
    }
    let seconds = elapsed.as_secs_f64() * (total - position) as f64 / position as f64;
    Some(Duration::from_secs_f64(seconds.min(1e9)))
}

/// A rate with at most one decimal and a metric prefix: `950 records/s`,
/// `2.5 shards/s`, `190.3k records/s`, `1.9M records/s`.
pub fn rate_text(per_second: f64, unit: &str) -> String {
    format!("{}{unit}/s", scaled(per_second))
}

/// `per_second` with one decimal below 10 and none up to 1,000, then in
/// thousands (k), millions (M) or billions (G) with one decimal; a space
/// before the unit when there is no prefix.
fn scaled(x: f64) -> String {
    if !x.is_finite() || x < 0.0 {
        return "? ".to_string();
    }
    // Decided on the rounded figure, so that 999.96 reads 1.0k, not 1000.0.
    if format!("{x:.1}").parse::<f64>().unwrap_or(x) < 10.0 {
        let text = format!("{x:.1}");
        return format!("{} ", text.strip_suffix(".0").unwrap_or(&text));
    }
    if x.round() < 1_000.0 {
        return format!("{x:.0} ");
    }
    let mut value = x / 1_000.0;
    for prefix in ["k", "M", "G"] {
        if (value * 10.0).round() / 10.0 < 1_000.0 || prefix == "G" {
            return format!("{value:.1}{prefix} ");
        }
        value /= 1_000.0;
    }
    unreachable!("the last prefix returns")
}

/// The time left, in whole seconds rounded up: `3 s`, `1 min 05 s`.
pub fn eta_text(left: Duration) -> String {
    let seconds = left.as_secs() + u64::from(left.subsec_nanos() > 0);
    seconds_text(seconds.max(1))
}

/// A duration as a person reads it: `0.4 s`, `12 s`, `3 min 05 s`,
/// `1 h 02 min`.
pub fn duration_text(d: Duration) -> String {
    let seconds = d.as_secs_f64();
    if seconds < 10.0 {
        return format!("{seconds:.1} s");
    }
    seconds_text(d.as_secs() + u64::from(d.subsec_millis() >= 500))
}

/// Whole seconds: `12 s`, `3 min 05 s`, `1 h 02 min`.
fn seconds_text(seconds: u64) -> String {
    match seconds {
        0..60 => format!("{seconds} s"),
        60..3_600 => format!("{} min {:02} s", seconds / 60, seconds % 60),
        _ => format!("{} h {:02} min", seconds / 3_600, seconds % 3_600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_have_at_most_one_decimal() {
        let cases = [
            (0.26, "0.3 shards/s"),
            (2.5, "2.5 shards/s"),
            (3.0, "3 shards/s"),
            (9.96, "10 shards/s"),
            (950.4, "950 records/s"),
            (999.6, "1.0k records/s"),
            (190_312.0, "190.3k records/s"),
            (999_960.0, "1.0M records/s"),
            (1_934_567.89, "1.9M records/s"),
            (12_345_678.0, "12.3M records/s"),
            (4.2e9, "4.2G records/s"),
        ];
        for (rate, want) in cases {
            let unit = if want.contains("shards") {
                "shards"
            } else {
                "records"
            };
            assert_eq!(rate_text(rate, unit), want, "{rate}");
        }
    }

    #[test]
    fn durations_read_as_a_person_writes_them() {
        let cases = [
            (0.0, "0.0 s"),
            (0.44, "0.4 s"),
            (9.94, "9.9 s"),
            (12.4, "12 s"),
            (59.4, "59 s"),
            (59.6, "1 min 00 s"),
            (185.0, "3 min 05 s"),
            (3_725.0, "1 h 02 min"),
        ];
        for (seconds, want) in cases {
            assert_eq!(duration_text(Duration::from_secs_f64(seconds)), want);
        }
        // The time left in whole seconds, rounded up.
        for (seconds, want) in [
            (0.01, "1 s"),
            (2.2, "3 s"),
            (59.5, "1 min 00 s"),
            (70.0, "1 min 10 s"),
            (4_000.0, "1 h 06 min"),
        ] {
            assert_eq!(eta_text(Duration::from_secs_f64(seconds)), want);
        }
    }

    #[test]
    fn the_time_left_needs_a_total_and_some_progress() {
        let s = Duration::from_secs;
        assert_eq!(time_left(250, Some(1_000), s(1)), Some(s(3)));
        assert_eq!(time_left(500, Some(1_000), s(4)), Some(s(4)));
        assert_eq!(time_left(500, None, s(4)), None, "no total, no ETA");
        assert_eq!(time_left(0, Some(1_000), s(4)), None, "no rate yet");
        assert_eq!(time_left(1_000, Some(1_000), s(4)), None, "done");
        assert_eq!(time_left(10, Some(1_000), Duration::from_millis(10)), None);
    }

    #[test]
    fn counts_use_thousands_separators() {
        assert_eq!(done(1_234_567, None, "records", true), "1,234,567 records");
        assert_eq!(
            done(0, Some(2_000_000), "records", false),
            "0/2,000,000 records"
        );
        assert_eq!(done(812, Some(2_000_000), "records", true), "812/2,000,000");
    }

    #[test]
    fn a_hidden_line_takes_positions_in_any_order() {
        let bar = Progress::start("ingest", None, false);
        assert!(!bar.is_visible());
        bar.set(10);
        bar.set(4);
        bar.inc(1);
        assert_eq!(bar.position.load(Ordering::Relaxed), 11);
        bar.finish();
        let stage = Progress::stage("dedup", false);
        assert!(!stage.is_visible());
        stage.finish();
    }
}
